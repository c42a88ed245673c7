//! The submit lease and start bookkeeping: a chunk taken for its start, released, marked
//! `start_unconfirmed`, expired, split in halves; the job's status while it starts.

use super::DynamoJobStore;
use super::attrs::{
    Item, cancellation_codes, get_n, get_s, n, s, unavailable, unless_condition_failed,
};
use super::items::chunk_item;
use super::items::parse_chunk;
use super::keys::{chunk_sk, final_sk, job_pk};
use crate::ids::{ChunkIndex, JobId};
use crate::jobs::{Chunk, ChunkStatus, JobStatus};
use crate::now_ms;
use crate::store::Jobs;
use crate::store::{StoreError, SubmitLedger};
use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem, Update, WriteRequest};

impl SubmitLedger for DynamoJobStore {
    /// Takes a pending chunk for its start: `pending` → `starting`, held by `owner` until
    /// `lease_ms` from now, in one transaction with a check of the job's head: a job stopped
    /// (`stopped`, written with a stopping error) or deleted has no chunk taken. From here on
    /// the start may reach the provider, so the chunk never goes back to `pending` unless the
    /// provider is known not to have taken it ([`Self::release_submit`]). `None`: the chunk is
    /// not pending, or the job is stopped.
    async fn begin_submit(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Option<Chunk>, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Data(e.to_string());
        let fence = aws_sdk_dynamodb::types::ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s("META"))
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(stopped) AND attribute_not_exists(deleted_at) AND attribute_not_exists(creating)",
            )
            .build()
            .map_err(build)?;
        let take = take_update(self, job_id, index, owner, lease_ms)
            .build()
            .map_err(build)?;
        let out = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().condition_check(fence).build())
            .transact_items(TransactWriteItem::builder().update(take).build())
            .send()
            .await;
        match out {
            Ok(_) => self.chunk(job_id, index).await,
            Err(e) => match cancellation_codes(&e) {
                Some(codes) if codes.iter().any(|c| c == "ConditionalCheckFailed") => Ok(None),
                _ => Err(unavailable(e)),
            },
        }
    }

    /// Takes a pending chunk to end it without a start: the take of [`Self::begin_submit`]
    /// without the head's fence.
    async fn begin_fail(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Option<Chunk>, StoreError> {
        let out = self
            .chunk_update(job_id, index)
            .update_expression("SET #status = :starting, submit_until = :until, submit_owner = :me")
            .condition_expression(
                "#status = :pending OR (#status = :starting AND submit_owner = :me)",
            )
            .expression_attribute_values(":pending", s(ChunkStatus::Pending.as_str()))
            .expression_attribute_values(":starting", s(ChunkStatus::Starting.as_str()))
            .expression_attribute_values(":until", n(now_ms() + lease_ms))
            .expression_attribute_values(":me", s(owner))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match unless_condition_failed(out)? {
            Some(out) => out.attributes.as_ref().map(parse_chunk).transpose(),
            None => Ok(None),
        }
    }

    /// Puts a chunk `owner` is starting back to `pending`: the provider is known not to have
    /// taken the start (refused before sending, or answered 429).
    async fn release_submit(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        owner: &str,
    ) -> Result<(), StoreError> {
        let out = self
            .chunk_update(job_id, index)
            .update_expression(
                "SET #status = :pending, poll_at = :due REMOVE submit_until, submit_owner",
            )
            .expression_attribute_values(":due", n(now_ms() + self.start_overdue_ms))
            .condition_expression("#status = :starting AND submit_owner = :me")
            .expression_attribute_values(":pending", s(ChunkStatus::Pending.as_str()))
            .expression_attribute_values(":starting", s(ChunkStatus::Starting.as_str()))
            .expression_attribute_values(":me", s(owner))
            .send()
            .await;
        unless_condition_failed(out).map(|_| ())
    }

    /// Marks a chunk whose start may have reached the provider, and whose answer is lost,
    /// `start_unconfirmed`: by its `owner`, or by anyone once the owner's lease ran out (the
    /// worker died). Returns whether this call marked it.
    async fn mark_unconfirmed(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        owner: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        // Who marks it: the owner, or this call. A mark the SDK sends again after its answer
        // was lost finds its own earlier write and still reports it as this call's.
        let by = owner
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let out = self
            .chunk_update(job_id, index)
            .update_expression(
                "SET #status = :unconfirmed, unconfirmed_at = :now, unconfirmed_by = :by REMOVE submit_until, submit_owner",
            )
            .condition_expression(
                "(#status = :starting AND (submit_owner = :me OR submit_until < :now)) OR (#status = :unconfirmed AND unconfirmed_by = :by AND unconfirmed_at = :now)",
            )
            .expression_attribute_values(":by", s(by))
            .expression_attribute_values(
                ":unconfirmed",
                s(ChunkStatus::StartUnconfirmed.as_str()),
            )
            .expression_attribute_values(":starting", s(ChunkStatus::Starting.as_str()))
            .expression_attribute_values(":me", s(owner.unwrap_or("")))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.is_some())
    }

    /// Ends the wait of an unconfirmed chunk (`start_unconfirmed` → `failed`), unless a webhook
    /// adopted it meanwhile. Returns whether this call ended it; only then may its contacts be
    /// failed. A webhook that comes later finds no chunk waiting and is parked, body intact.
    async fn expire_unconfirmed(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
    ) -> Result<bool, StoreError> {
        // A fresh mark per call: the SDK resending this expiry after its answer was lost finds
        // its own earlier write, and still reports the chunk as ended by this call.
        let by = uuid::Uuid::new_v4().to_string();
        let out = self
            .chunk_update(job_id, index)
            .update_expression("SET #status = :failed, expired_by = :by")
            .condition_expression(
                "#status = :unconfirmed OR (#status = :failed AND expired_by = :by)",
            )
            .expression_attribute_values(":by", s(by))
            .expression_attribute_values(":failed", s(ChunkStatus::Failed.as_str()))
            .expression_attribute_values(":unconfirmed", s(ChunkStatus::StartUnconfirmed.as_str()))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.is_some())
    }

    /// Replaces a chunk `owner` is starting, which the provider refused as a whole, by its two
    /// halves (new pending chunks with fresh indices), in one transaction with the job's chunk
    /// count. Returns the halves.
    async fn split_chunk(
        &self,
        job_id: &JobId,
        chunk: &Chunk,
        owner: &str,
    ) -> Result<Vec<Chunk>, StoreError> {
        for _ in 0..5 {
            let meta = self
                .get_job(job_id)
                .await?
                .ok_or_else(|| StoreError::Data(format!("job {job_id} has no head")))?;
            let (halves, items) = split_writes(self, job_id, chunk, owner, meta.chunk_seq)?;
            let tx = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items));
            match tx.send().await {
                Ok(_) => return Ok(halves),
                Err(e) => {
                    let codes = cancellation_codes(&e).ok_or_else(|| unavailable(e))?;
                    if codes.get(1).map(String::as_str) == Some("ConditionalCheckFailed") {
                        return Err(StoreError::Conflict(format!(
                            "chunk {} is no longer held by this worker",
                            chunk.index
                        )));
                    }
                    // Another chunk of the job was split meanwhile: read the head again.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
        Err(StoreError::unavailable(format!(
            "chunk {} could not be split",
            chunk.index
        )))
    }

    /// Counts a chunk as submitted and moves the job to `submitting`, or to `running` once every
    /// chunk is out. Returns the job's new status.
    async fn count_submitted(&self, job_id: &JobId) -> Result<JobStatus, StoreError> {
        let out = self
            .meta_item_update(job_id)
            .update_expression("ADD submitted :one SET updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now_ms()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(unavailable)?;
        let item = out.attributes.unwrap_or_default();
        let submitted: u64 = get_n(&item, "submitted").unwrap_or(0);
        let chunks: u64 = get_n(&item, "chunks").unwrap_or(0);
        let next = if submitted >= chunks {
            JobStatus::Running
        } else {
            JobStatus::Submitting
        };
        // Only forward: accepted → submitting → running; never over a settled status.
        let result = self
            .meta_item_update(job_id)
            .update_expression("SET #status = :next")
            .condition_expression("#status IN (:a, :b)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":next", s(next.as_str()))
            .expression_attribute_values(":a", s(JobStatus::Accepted.as_str()))
            .expression_attribute_values(
                ":b",
                s(if next == JobStatus::Running {
                    JobStatus::Submitting
                } else {
                    JobStatus::Accepted
                }
                .as_str()),
            )
            .send()
            .await;
        Ok(match unless_condition_failed(result)? {
            Some(_) => next,
            None => get_s(&item, "status")
                .and_then(|v| v.parse::<JobStatus>().ok())
                .unwrap_or(next),
        })
    }

    /// Deletes up to `limit` items of a job other than its head (chunks first, as they sort:
    /// `CHUNK#` before `CONTACT#`, `PID#`, `RESULT#`; every result write is conditional on its
    /// chunk, so none lands once they are gone), 25 per BatchWriteItem. Returns how many it
    /// deleted; 0 means none is left.
    async fn delete_items(&self, job_id: &JobId, limit: usize) -> Result<usize, StoreError> {
        // Every sort key of a job sorts between "!" and "~"; the head is one of them.
        let mut keys: Vec<Item> = self
            .query_range_of(job_id, "!", "~", Some(limit + 1), Some("pk, sk"))
            .await?
            .into_iter()
            .filter(|i| get_s(i, "sk") != Some("META"))
            .collect();
        keys.truncate(limit);
        let deleted = keys.len();
        let requests: Vec<WriteRequest> = keys
            .into_iter()
            .map(|key| {
                WriteRequest::builder()
                    .delete_request(
                        aws_sdk_dynamodb::types::DeleteRequest::builder()
                            .set_key(Some(key))
                            .build()
                            .expect("key set"),
                    )
                    .build()
            })
            .collect();
        self.batch_write_all(requests).await?;
        Ok(deleted)
    }

    /// The head made a tombstone: the caller's name, options and callback removed, counts and
    /// status kept, `erased_at` set, out of the `due` index; gone by TTL when its retention ends.
    async fn abandon_creation(&self, job_id: &JobId) -> Result<bool, StoreError> {
        let now = now_ms();
        let out = self
            .meta_item_update(job_id)
            .update_expression(
                "SET deleted_at = if_not_exists(deleted_at, :now), updated_at = :now",
            )
            .condition_expression("attribute_exists(creating)")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.is_some())
    }

    async fn finish_erasure(&self, job_id: &JobId) -> Result<(), StoreError> {
        let out = self
            .meta_item_update(job_id)
            .update_expression(
                "SET erased_at = if_not_exists(erased_at, :now) REMOVE #name, options, creating, callback_url, cb_status, cb_attempts, cb_since, cb_code, cb_error, poll_shard, poll_at",
            )
            .condition_expression("attribute_exists(deleted_at)")
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":now", n(now_ms()))
            .send()
            .await;
        unless_condition_failed(out)?;
        Ok(())
    }
}

/// The take of a pending chunk for `owner` (also its own hold: the SDK resending a take
/// after its answer was lost; taken for another's, the start would be skipped and the
/// chunk never started).
fn take_update(
    store: &DynamoJobStore,
    job_id: &JobId,
    index: ChunkIndex,
    owner: &str,
    lease_ms: u64,
) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    Update::builder()
        .table_name(&store.table)
        .key("pk", s(job_pk(job_id)))
        .key("sk", s(chunk_sk(index)))
        // Due again for the sweeper a minute after the lease: a worker that died mid-start
        // leaves the chunk to be marked unconfirmed then.
        .update_expression(
            "SET #status = :starting, submit_until = :until, submit_owner = :me, poll_at = :due",
        )
        .condition_expression("#status = :pending OR (#status = :starting AND submit_owner = :me)")
        .expression_attribute_values(":due", n(now_ms() + lease_ms + 60_000))
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":pending", s(ChunkStatus::Pending.as_str()))
        .expression_attribute_values(":starting", s(ChunkStatus::Starting.as_str()))
        .expression_attribute_values(":until", n(now_ms() + lease_ms))
        .expression_attribute_values(":me", s(owner))
}

/// A split's transaction: the head's chunk count, the parent made `split` (held by `owner`)
/// and recorded final in its group, the two halves put as new pending chunks. Returns the
/// halves and the transaction's items.
fn split_writes(
    store: &DynamoJobStore,
    job_id: &JobId,
    chunk: &Chunk,
    owner: &str,
    chunk_seq: u64,
) -> Result<(Vec<Chunk>, Vec<TransactWriteItem>), StoreError> {
    let pk = job_pk(job_id);
    let first = chunk.count.div_ceil(2);
    let mut halves = Chunk::plan_range(chunk.offset, first, first, chunk_seq as u32);
    halves.extend(Chunk::plan_range(
        chunk.offset + first,
        chunk.count - first,
        chunk.count - first,
        chunk_seq as u32 + 1,
    ));
    let parts: Vec<ChunkIndex> = halves.iter().map(|c| c.index).collect();
    let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Data(e.to_string());
    let head = Update::builder()
        .table_name(&store.table)
        .key("pk", s(&pk))
        .key("sk", s("META"))
        .update_expression("SET chunk_seq = :next, updated_at = :now ADD chunks :more")
        .condition_expression("chunk_seq = :seen OR attribute_not_exists(chunk_seq)")
        .expression_attribute_values(":next", n(chunk_seq + halves.len() as u64))
        .expression_attribute_values(":seen", n(chunk_seq))
        .expression_attribute_values(":more", n(halves.len() as u64 - 1))
        .expression_attribute_values(":now", n(now_ms()))
        .build()
        .map_err(build)?;
    let parent = Update::builder()
        .table_name(&store.table)
        .key("pk", s(&pk))
        .key("sk", s(chunk_sk(chunk.index)))
        .update_expression("SET #status = :split, parts = :parts REMOVE submit_until, submit_owner")
        .condition_expression("#status = :starting AND submit_owner = :me")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":split", s(ChunkStatus::Split.as_str()))
        .expression_attribute_values(":starting", s(ChunkStatus::Starting.as_str()))
        .expression_attribute_values(":me", s(owner))
        .expression_attribute_values(
            ":parts",
            s(serde_json::to_string(&parts).unwrap_or_default()),
        )
        .build()
        .map_err(build)?;
    // The parent is final from here on: it joins its group of final chunks in the same
    // transaction (the halves are new indices the job now waits for).
    let group = Update::builder()
        .table_name(&store.table)
        .key("pk", s(&pk))
        .key("sk", s(final_sk(chunk.index)))
        .update_expression("ADD f :i SET expires_at = if_not_exists(expires_at, :exp)")
        .expression_attribute_values(
            ":i",
            aws_sdk_dynamodb::types::AttributeValue::Ns(vec![chunk.index.to_string()]),
        )
        .expression_attribute_values(":exp", n(store.expires_at()))
        .build()
        .map_err(build)?;
    let mut items = vec![
        TransactWriteItem::builder().update(head).build(),
        TransactWriteItem::builder().update(parent).build(),
        TransactWriteItem::builder().update(group).build(),
    ];
    for half in &halves {
        let mut item = store.expiring(chunk_item(&pk, half));
        // Due for its start like every new chunk (its message may be lost).
        item.insert("poll_at".into(), n(now_ms() + store.start_overdue_ms));
        let put = Put::builder()
            .table_name(&store.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(build)?;
        items.push(TransactWriteItem::builder().put(put).build());
    }
    Ok((halves, items))
}
