//! The claim-check store: delivery bodies too large for one SQS message live in S3, and the
//! envelope carries their bucket, key, size and SHA-256.

use std::future::Future;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

#[derive(Debug, thiserror::Error)]
#[error("body store: {0}")]
pub struct StoreError(pub String);

pub trait BodyStore: Send + Sync + 'static {
    fn bucket(&self) -> &str;
    fn put(&self, key: &str, bytes: Vec<u8>)
    -> impl Future<Output = Result<(), StoreError>> + Send;
    fn get(&self, key: &str) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;
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

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| StoreError(DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| StoreError(DisplayErrorContext(&e).to_string()))?;
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(data.into_bytes().to_vec())
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

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.bodies.lock().unwrap().insert(key.to_string(), bytes);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.bodies
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError(format!("no body {key}")))
    }
}
