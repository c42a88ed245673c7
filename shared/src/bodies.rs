//! The claim-check store: delivery bodies too large for one SQS message live in S3, and the
//! envelope carries their bucket, key, size and SHA-256. Keys are
//! `deliveries/{provider}/{job}/{delivery_id}` ([`delivery_key`]): a job's bodies share one
//! prefix ([`job_prefix`]), by which its erasure deletes them.

use std::future::Future;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

#[derive(Debug, thiserror::Error)]
#[error("body store: {0}")]
pub struct BodyStoreError(pub String);

/// Where one delivery's body is kept. A delivery of a global webhook (no job in its URL, `job_id`
/// empty) is kept under `~global`, which no job id can be.
pub fn delivery_key(provider: crate::Provider, job_id: &str, delivery_id: &str) -> String {
    let job = if job_id.is_empty() { "~global" } else { job_id };
    format!("{}{delivery_id}", job_prefix(provider, job))
}

/// The prefix every claim-checked body of a job is kept under.
pub fn job_prefix(provider: crate::Provider, job_id: &str) -> String {
    format!("deliveries/{}/{job_id}/", provider.as_str())
}

pub trait BodyStore: Send + Sync + 'static {
    fn bucket(&self) -> &str;
    fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(), BodyStoreError>> + Send;
    fn get(&self, key: &str) -> impl Future<Output = Result<Vec<u8>, BodyStoreError>> + Send;
    /// Deletes one body (none there is no error).
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), BodyStoreError>> + Send;
    /// Deletes every body under `prefix` (a job's, [`job_prefix`]); returns how many.
    fn delete_prefix(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<usize, BodyStoreError>> + Send;
}

#[derive(Debug, Clone)]
pub struct S3Bodies {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Bodies {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Bodies {
            client,
            bucket: bucket.into(),
        }
    }
}

impl BodyStore for S3Bodies {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), BodyStoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| BodyStoreError(DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, BodyStoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| BodyStoreError(DisplayErrorContext(&e).to_string()))?;
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| BodyStoreError(e.to_string()))?;
        Ok(data.into_bytes().to_vec())
    }

    async fn delete(&self, key: &str) -> Result<(), BodyStoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| BodyStoreError(DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }

    /// ListObjectsV2 by prefix, 1,000 keys a page, each page deleted with one DeleteObjects.
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, BodyStoreError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let err = |e: &dyn std::fmt::Display| BodyStoreError(e.to_string());
        let mut deleted = 0;
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| BodyStoreError(DisplayErrorContext(&e).to_string()))?;
            let keys: Vec<ObjectIdentifier> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<_, _>>()
                .map_err(|e| err(&e))?;
            if keys.is_empty() {
                continue;
            }
            let n = keys.len();
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(keys))
                        .quiet(true)
                        .build()
                        .map_err(|e| err(&e))?,
                )
                .send()
                .await
                .map_err(|e| BodyStoreError(DisplayErrorContext(&e).to_string()))?;
            if !out.errors().is_empty() {
                return Err(BodyStoreError(format!(
                    "{} of {n} bodies not deleted",
                    out.errors().len()
                )));
            }
            deleted += n;
        }
        Ok(deleted)
    }
}

/// Bodies in memory (feature `memory`).
#[cfg(feature = "memory")]
#[derive(Debug, Default)]
pub struct MemoryBodies {
    bodies: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
}

#[cfg(feature = "memory")]
impl BodyStore for MemoryBodies {
    fn bucket(&self) -> &str {
        "memory"
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), BodyStoreError> {
        self.bodies.lock().unwrap().insert(key.to_string(), bytes);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, BodyStoreError> {
        self.bodies
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or_else(|| BodyStoreError(format!("no body {key}")))
    }

    async fn delete(&self, key: &str) -> Result<(), BodyStoreError> {
        self.bodies.lock().unwrap().remove(key);
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<usize, BodyStoreError> {
        let mut bodies = self.bodies.lock().unwrap();
        let before = bodies.len();
        bodies.retain(|k, _| !k.starts_with(prefix));
        Ok(before - bodies.len())
    }
}

#[cfg(feature = "memory")]
impl MemoryBodies {
    /// The keys of every body kept.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.bodies.lock().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }
}
