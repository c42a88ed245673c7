//! The requests every concern of the jobs table builds on: item reads and updates, ranges,
//! batch writes, a chunk's update, a new job's chunk puts.

use super::DynamoJobStore;
use super::attrs::{Item, n, put_request, s, unless_condition_failed};
use super::attrs::{cancellation_reasons, unavailable};
use super::counts::{Names, UpdateParts, Values};
use super::items::{chunk_item, parse_result, stored_at};
use super::keys::{chunk_sk, final_sk, job_pk, poll_shard, result_sk};
use crate::ids::ContactIndex;
use crate::ids::{ChunkIndex, JobId};
use crate::jobs::{Chunk, ContactResult, JobError, JobStatus};
use crate::now_ms;
use crate::store::{ChunkUpdate, StoreError};
use aws_sdk_dynamodb::types::{Update, WriteRequest};
use futures::StreamExt;

impl DynamoJobStore {
    /// Makes chunk `index`'s group due by `at` at the latest (a start, or a poll that set the
    /// chunk's next one): it enters the `due` index, or its due date moves sooner. A group due
    /// already (a sweep may be reading it right now) is moved to `at`, so that the sweep's
    /// own next date does not overwrite this chunk's.
    pub(super) async fn group_due_by(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        at: u64,
    ) -> Result<(), StoreError> {
        let out = self
            .item_update(job_id, &final_sk(index))
            .update_expression(
                "SET poll_shard = :ps, poll_at = :at, expires_at = if_not_exists(expires_at, :exp)",
            )
            .condition_expression(
                "attribute_not_exists(poll_at) OR poll_at > :at OR poll_at <= :now",
            )
            .expression_attribute_values(":ps", s(poll_shard(job_id)))
            .expression_attribute_values(":at", n(at))
            .expression_attribute_values(":now", n(now_ms()))
            .expression_attribute_values(":exp", n(self.expires_at()))
            .send()
            .await;
        unless_condition_failed(out).map(|_| ())
    }

    /// BatchWriteItem in 25s, retrying unprocessed items with backoff.
    /// Many writes: 25 items per call, 8 calls in flight (50,000 contacts are 2,000 calls).
    pub(super) async fn batch_write_all(
        &self,
        requests: Vec<WriteRequest>,
    ) -> Result<(), StoreError> {
        let batches: Vec<Vec<WriteRequest>> = requests.chunks(25 * 8).map(<[_]>::to_vec).collect();
        let writes = futures::stream::iter(batches.into_iter().map(|b| self.batch_write(b)))
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        writes.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(())
    }

    pub(super) async fn batch_write(
        &self,
        requests: Vec<WriteRequest>,
    ) -> Result<usize, StoreError> {
        let mut calls = 0;
        for batch in requests.chunks(25) {
            let mut pending = batch.to_vec();
            let mut waits = crate::retry::BackoffBuilder::build(crate::retry::exponential(
                std::time::Duration::from_millis(50),
                8,
            ));
            while !pending.is_empty() {
                calls += 1;
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(unavailable)?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if !pending.is_empty() {
                    let Some(wait) = waits.next() else {
                        return Err(StoreError::unavailable("unprocessed items persist"));
                    };
                    tokio::time::sleep(wait).await;
                }
            }
        }
        Ok(calls)
    }

    /// One TransactWriteItems call: `None` when it applied; when it was canceled, each item's
    /// reason (its code, and the item that refused when one was asked for and returned).
    pub(super) async fn transact(
        &self,
        items: &[aws_sdk_dynamodb::types::TransactWriteItem],
    ) -> Result<Option<Vec<(String, Option<Item>)>>, StoreError> {
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items.to_vec()))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(None),
            Err(e) => Ok(Some(
                cancellation_reasons(&e).ok_or_else(|| unavailable(e))?,
            )),
        }
    }

    /// An UpdateItem on one item of the job (no attribute names bound).
    pub(super) fn item_update(
        &self,
        job_id: &JobId,
        sk: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(sk))
    }

    /// An UpdateItem on the job's head.
    pub(super) fn meta_item_update(
        &self,
        job_id: &JobId,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.item_update(job_id, "META")
    }

    /// An UpdateItem on one chunk item.
    pub(super) fn chunk_item_update(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.item_update(job_id, &chunk_sk(index))
    }

    /// An UpdateItem on one chunk item, `#status` bound to its status attribute: the start of
    /// every conditional transition of a chunk's state.
    pub(super) fn chunk_update(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.chunk_item_update(job_id, index)
            .expression_attribute_names("#status", "status")
    }

    pub async fn set_job_status(
        &self,
        job_id: &JobId,
        status: JobStatus,
        error: Option<&JobError>,
    ) -> Result<(), StoreError> {
        let mut req = self
            .meta_item_update(job_id)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":st", s(status.as_str()))
            .expression_attribute_values(":now", n(now_ms()));
        req = match error {
            Some(e) => req
                .update_expression("SET #status = :st, updated_at = :now, #error = :err")
                .expression_attribute_names("#error", "error")
                .expression_attribute_values(
                    ":err",
                    s(serde_json::to_string(e).unwrap_or_default()),
                ),
            None => req.update_expression("SET #status = :st, updated_at = :now"),
        };
        req.send().await.map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn query_range(
        &self,
        job_id: &JobId,
        from: &str,
        to: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        self.query_range_of(job_id, from, to, limit, None).await
    }

    /// Items of the job with sort keys in `from ..= to`, every page, at most `limit`; only the
    /// `projection` attributes when one is given.
    pub(super) async fn query_range_of(
        &self,
        job_id: &JobId,
        from: &str,
        to: &str,
        limit: Option<usize>,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(job_pk(job_id)))
                .expression_attribute_values(":from", s(from))
                .expression_attribute_values(":to", s(to))
                .set_projection_expression(projection.map(str::to_string))
                .consistent_read(true)
                .set_limit(limit.map(|l| (l - out.len()).min(1000) as i32))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() || limit.is_some_and(|l| out.len() >= l) {
                return Ok(out);
            }
        }
    }

    /// The result row stored for contact `index`, and when it was written.
    pub(super) async fn stored_row(
        &self,
        job_id: &JobId,
        index: ContactIndex,
    ) -> Result<Option<(ContactResult, u64)>, StoreError> {
        self.item(job_id, &result_sk(index))
            .await?
            .map(|item| Ok((parse_result(&item)?, stored_at(&item))))
            .transpose()
    }

    /// The items of `keys` that exist, read consistently with BatchGetItem (at most 100 keys;
    /// unprocessed keys again, five times at most).
    pub(super) async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        let mut wanted = keys;
        for _ in 0..5 {
            if wanted.is_empty() {
                break;
            }
            let got = self
                .client
                .batch_get_item()
                .request_items(
                    &self.table,
                    aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                        .set_keys(Some(std::mem::take(&mut wanted)))
                        .consistent_read(true)
                        .build()
                        .map_err(|e| StoreError::Data(e.to_string()))?,
                )
                .send()
                .await
                .map_err(unavailable)?;
            found.extend(
                got.responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default(),
            );
            wanted = got
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
        }
        if !wanted.is_empty() {
            return Err(StoreError::unavailable(
                "a batch read left keys unprocessed",
            ));
        }
        Ok(found)
    }

    /// One item of a job, read consistently.
    pub(super) async fn item(&self, job_id: &JobId, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    /// `SET` status, credits and error on a chunk: the start of an update expression.
    pub(super) fn chunk_update_builder(&self, job_id: &JobId, c: &ChunkUpdate) -> UpdateParts {
        let mut expr = String::from("SET #status = :st");
        let mut b = Update::builder()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(chunk_sk(c.index)))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":st", s(c.status.as_str()));
        if let Some(credits) = c.credits {
            expr.push_str(", credits = :cr");
            b = b.expression_attribute_values(":cr", n(credits));
        }
        if let Some(e) = &c.error {
            expr.push_str(", #error = :err");
            b = b
                .expression_attribute_names("#error", "error")
                .expression_attribute_values(
                    ":err",
                    s(serde_json::to_string(e).unwrap_or_default()),
                );
        }
        UpdateParts { b, expr }
    }

    /// One `Update` (the transaction item shape the chunk builders make) sent as an UpdateItem.
    pub(super) fn update_item_of(&self, u: &aws_sdk_dynamodb::types::Update) -> UpdateItemRequest {
        self.client
            .update_item()
            .table_name(u.table_name())
            .set_key(Some(u.key().clone()))
            .update_expression(u.update_expression())
            .set_condition_expression(u.condition_expression().map(str::to_string))
            .set_expression_attribute_names(u.expression_attribute_names().cloned())
            .set_expression_attribute_values(u.expression_attribute_values().cloned())
    }

    /// The puts of a new job's chunks: every chunk is due for its start by `start_due`, and its
    /// group is in the `due` index from the start: a start message that is lost (a failed send,
    /// the submit DLQ) is sent again by the sweeper.
    pub(super) fn plan_requests(&self, job_id: &JobId, chunks: &[Chunk]) -> Vec<WriteRequest> {
        let pk = job_pk(job_id);
        let mut requests = Vec::new();
        let start_due = now_ms() + self.start_overdue_ms;
        let mut groups = std::collections::BTreeSet::new();
        for c in chunks {
            let mut item = self.expiring(chunk_item(&pk, c));
            item.insert("poll_at".into(), n(start_due));
            requests.push(put_request(item));
            groups.insert(final_sk(c.index));
        }
        for sk in groups {
            let item = Item::from([
                ("pk".to_string(), s(&pk)),
                ("sk".to_string(), s(sk)),
                ("poll_shard".to_string(), s(poll_shard(job_id))),
                ("poll_at".to_string(), n(start_due)),
            ]);
            requests.push(put_request(self.expiring(item)));
        }
        requests
    }
}

type UpdateItemRequest =
    aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;

/// Binds [`Counts::placeholders`]' names and values on an UpdateItem request.
pub(super) fn bound(req: UpdateItemRequest, (names, values): (Names, Values)) -> UpdateItemRequest {
    let req = names
        .into_iter()
        .fold(req, |r, (k, v)| r.expression_attribute_names(k, v));
    values
        .into_iter()
        .fold(req, |r, (k, v)| r.expression_attribute_values(k, v))
}
