//! [`DynamoJobStore`]: job lifecycle, results and counters, idempotency keys, the submit
//! lease and the shared rate schedule, over the jobs table.

use futures::StreamExt;
use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, Update, WriteRequest};

use crate::jobs::{
    CallbackStatus, Chunk, ChunkStatus, Contact, ContactResult, JobError, JobMeta, JobStatus,
};
use crate::now_ms;

use super::*;

#[derive(Debug, Clone)]
pub struct DynamoJobStore {
    pub(super) client: Client,
    pub(super) table: String,
    /// How long a bulk apply holds its chunk before another worker may take it over.
    pub apply_lease_ms: u64,
    /// How long a started chunk may go without its results before its first poll.
    pub poll_after_ms: u64,
    /// How long every item of a job is kept after it is written (`RESULT_RETENTION_DAYS`):
    /// DynamoDB's TTL deletes it then (`expires_at`).
    pub retention_s: u64,
    /// How long a chunk may stay not started before the sweeper sends its start again.
    pub start_overdue_ms: u64,
    /// How long after a `DELETE` its erasure is due for the sweeper ([`ERASE_GRACE`]).
    pub erase_grace_ms: u64,
    /// How long a job may stay `creating` before the sweeper erases it ([`CREATION_GRACE`]).
    pub creation_grace_ms: u64,
}

impl DynamoJobStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoJobStore {
            client,
            table: table.into(),
            apply_lease_ms: 120_000,
            poll_after_ms: DEFAULT_POLL_AFTER_MS,
            retention_s: DEFAULT_RETENTION_DAYS * 86_400,
            start_overdue_ms: DEFAULT_START_OVERDUE_MS,
            erase_grace_ms: ERASE_GRACE.as_millis() as u64,
            creation_grace_ms: CREATION_GRACE.as_millis() as u64,
        }
    }

    /// How long a job may stay `creating` before the sweeper erases it (tests: at once).
    pub fn with_creation_grace(mut self, grace: std::time::Duration) -> Self {
        self.creation_grace_ms = grace.as_millis() as u64;
        self
    }

    /// How long a chunk may stay not started before the sweeper sends its start again.
    pub fn with_start_overdue(mut self, after: std::time::Duration) -> Self {
        self.start_overdue_ms = after.as_millis() as u64;
        self
    }

    /// How long after a `DELETE` the sweeper looks for its erasure (tests: at once).
    pub fn with_erase_grace(mut self, grace: std::time::Duration) -> Self {
        self.erase_grace_ms = grace.as_millis() as u64;
        self
    }

    /// How long a started chunk may go without its results before it is polled
    /// (`POLL_AFTER_SECONDS`).
    pub fn with_poll_after(mut self, after: std::time::Duration) -> Self {
        self.poll_after_ms = after.as_millis() as u64;
        self
    }

    /// Makes chunk `index`'s group due by `at` at the latest (a start, or a poll that set the
    /// chunk's next one): it enters the `due` index, or its due date moves sooner. A group due
    /// already (a sweep may be reading it right now) is moved to `at`, so that the sweep's
    /// own next date does not overwrite this chunk's.
    pub(super) async fn group_due_by(
        &self,
        job_id: &str,
        index: u32,
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

    /// Writes a provider id's link to its chunk (`PID#<id>`), carrying the chunk's one contact
    /// when it has one ([`Link::new`]), conditional on the chunk still naming this id: a link
    /// (which may carry a contact) never lands after the job's erasure deleted its chunks.
    /// `false`: the chunk is gone or names another id.
    async fn put_link(
        &self,
        job_id: &str,
        chunk: ChunkRef,
        provider_id: &str,
        contact: Option<&Contact>,
    ) -> Result<bool, StoreError> {
        let pk = job_pk(job_id);
        let mut link = Item::from([
            ("pk".to_string(), s(&pk)),
            ("sk".to_string(), s(format!("PID#{provider_id}"))),
            ("chunk".to_string(), n(chunk.index)),
            ("offset".to_string(), n(chunk.offset)),
            ("count".to_string(), n(chunk.count)),
            ("expires_at".to_string(), n(self.expires_at())),
            // The `provider_ids` index: a global webhook's event finds its job by the id.
            ("gpid".to_string(), s(provider_id)),
        ]);
        if let Some(c) = Link::new(chunk, contact).contact {
            link.insert("contact".into(), AttributeValue::M(contact_item(&pk, &c)));
        }
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Data(e.to_string());
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(link))
            .build()
            .map_err(build)?;
        let check = aws_sdk_dynamodb::types::ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(chunk_sk(chunk.index)))
            .condition_expression("provider_id = :pid")
            .expression_attribute_values(":pid", s(provider_id))
            .build()
            .map_err(build)?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(
                aws_sdk_dynamodb::types::TransactWriteItem::builder()
                    .put(put)
                    .build(),
            )
            .transact_items(
                aws_sdk_dynamodb::types::TransactWriteItem::builder()
                    .condition_check(check)
                    .build(),
            )
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e) => match cancellation_reasons(&e) {
                // The chunk is gone (erased) or names another id now.
                Some(r) if r.last().is_some_and(|(c, _)| c == "ConditionalCheckFailed") => {
                    Ok(false)
                }
                _ => Err(unavailable(e)),
            },
        }
    }

    /// An update of rate schedule `name`'s item (`RATE#<name>`).
    fn rate_update(
        &self,
        name: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("RATE#{name}")))
            .key("sk", s("RATE"))
    }

    /// A rate schedule's `next_at`, read strongly.
    async fn rate_next_at(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("RATE#{name}")))
            .key("sk", s("RATE"))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item.as_ref().and_then(|i| get_n(i, "next_at")))
    }

    /// How long a job's items are kept (`RESULT_RETENTION_DAYS`).
    pub fn with_retention(mut self, retention: std::time::Duration) -> Self {
        self.retention_s = retention.as_secs();
        self
    }

    /// `item` with its expiry: kept `retention_s` from now, then deleted by TTL.
    pub(super) fn expiring(&self, mut item: Item) -> Item {
        item.insert("expires_at".into(), n(self.expires_at()));
        item
    }

    /// When an item written now expires (seconds, DynamoDB's TTL).
    pub(super) fn expires_at(&self) -> u64 {
        now_ms() / 1000 + self.retention_s
    }

    /// How long a bulk apply holds its chunk (`APPLY_LEASE_SECONDS`).
    pub fn with_apply_lease(mut self, lease: std::time::Duration) -> Self {
        self.apply_lease_ms = lease.as_millis() as u64;
        self
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

    /// An UpdateItem on one item of the job (no attribute names bound).
    pub(super) fn item_update(
        &self,
        job_id: &str,
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
        job_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.item_update(job_id, "META")
    }

    /// An UpdateItem on one chunk item.
    pub(super) fn chunk_item_update(
        &self,
        job_id: &str,
        index: u32,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.item_update(job_id, &chunk_sk(index))
    }

    /// An UpdateItem on one chunk item, `#status` bound to its status attribute: the start of
    /// every conditional transition of a chunk's state.
    pub(super) fn chunk_update(
        &self,
        job_id: &str,
        index: u32,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.chunk_item_update(job_id, index)
            .expression_attribute_names("#status", "status")
    }

    pub async fn set_job_status(
        &self,
        job_id: &str,
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
        job_id: &str,
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
        job_id: &str,
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
        job_id: &str,
        index: u64,
    ) -> Result<Option<(ContactResult, u64)>, StoreError> {
        self.item(job_id, &result_sk(index))
            .await?
            .map(|item| Ok((parse_result(&item)?, stored_at(&item))))
            .transpose()
    }

    /// One item of a job, read consistently.
    pub(super) async fn item(&self, job_id: &str, sk: &str) -> Result<Option<Item>, StoreError> {
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
    pub(super) fn chunk_update_builder(&self, job_id: &str, c: &ChunkUpdate) -> UpdateParts {
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
}

impl JobStore for DynamoJobStore {
    /// Reserves the next start slot of a rate limit shared by every worker (`name`, one start
    /// per `interval_ms`). Returns the time (ms) at which this caller may start. Two writes at
    /// most and never a lost race: an idle limit is taken at `now`; a busy one is extended by one
    /// interval with an atomic `ADD`, and the slot is the one before the new end.
    /// One schedule item per name, `next_at`: when the next request may go. An idle schedule
    /// (`next_at` passed) gives its slot at once; a busy one gives the slot behind the last
    /// taken only while that is within `max_wait_ms` (one conditional update either way), so
    /// the schedule is never booked further ahead than its callers will really wait.
    async fn take_slot(
        &self,
        name: &str,
        interval_ms: u64,
        max_wait_ms: u64,
    ) -> Result<Slot, StoreError> {
        // Twice at most: a busy schedule can fall idle between the two writes.
        for _ in 0..2 {
            let now = now_ms();
            let idle = self
                .rate_update(name)
                .update_expression("SET next_at = :next, expires_at = :exp")
                .condition_expression("attribute_not_exists(next_at) OR next_at <= :now")
                .expression_attribute_values(":next", n(now + interval_ms))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":exp", n(now / 1000 + 86_400))
                .send()
                .await;
            if unless_condition_failed(idle)?.is_some() {
                return Ok(Slot::At(now));
            }
            let limit = now + max_wait_ms;
            let busy = self
                .rate_update(name)
                .update_expression("SET next_at = next_at + :interval")
                .condition_expression("next_at > :now AND next_at <= :limit")
                .expression_attribute_values(":interval", n(interval_ms))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":limit", n(limit))
                .return_values(ReturnValue::UpdatedNew)
                .return_values_on_condition_check_failure(
                    aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            match busy {
                Ok(out) => {
                    let end: u64 = out
                        .attributes
                        .as_ref()
                        .and_then(|a| get_n(a, "next_at"))
                        .ok_or_else(|| StoreError::Data("rate slot without next_at".into()))?;
                    return Ok(Slot::At(end - interval_ms));
                }
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                        let next_at: Option<u64> = c.item().and_then(|i| get_n(i, "next_at"));
                        match next_at {
                            // Idle again: take it on the next turn.
                            Some(at) if at <= now => continue,
                            Some(at) => {
                                return Ok(Slot::Busy {
                                    retry_in_ms: at.saturating_sub(limit).max(interval_ms),
                                });
                            }
                            // An emulator that does not return the item: read it.
                            None => {
                                let at: u64 = self.rate_next_at(name).await?.unwrap_or(0);
                                if at <= now {
                                    continue;
                                }
                                return Ok(Slot::Busy {
                                    retry_in_ms: at.saturating_sub(limit).max(interval_ms),
                                });
                            }
                        }
                    }
                    _ => return Err(unavailable(e)),
                },
            }
        }
        Ok(Slot::Busy {
            retry_in_ms: interval_ms,
        })
    }

    async fn return_slot(
        &self,
        name: &str,
        at_ms: u64,
        interval_ms: u64,
    ) -> Result<bool, StoreError> {
        let out = self
            .rate_update(name)
            .update_expression("SET next_at = :at")
            .condition_expression("next_at = :after")
            .expression_attribute_values(":at", n(at_ms))
            .expression_attribute_values(":after", n(at_ms + interval_ms))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.is_some())
    }

    async fn link_chunk(
        &self,
        job_id: &str,
        chunk: ChunkRef,
        provider_id: &str,
        credits: Option<f64>,
        contact: Option<&Contact>,
    ) -> Result<bool, StoreError> {
        let pk = job_pk(job_id);
        let poll_at = now_ms() + self.poll_after_ms;
        // The group first: a chunk started is never out of the sweeper's sight, even if this
        // worker dies before the chunk write.
        self.group_due_by(job_id, chunk.index, poll_at).await?;
        let mut expr = String::from(
            "SET provider_id = :pid, #status = :st, started_at = :now, poll_at = :pa, poll_every = :pe REMOVE submit_until, submit_owner, unconfirmed_at",
        );
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(chunk_sk(chunk.index)))
            .condition_expression(
                "attribute_exists(pk) AND #status IN (:pending, :starting, :unconfirmed)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pid", s(provider_id))
            .expression_attribute_values(":now", n(now_ms()))
            .expression_attribute_values(":pa", n(poll_at))
            .expression_attribute_values(":pe", n(self.poll_after_ms))
            .expression_attribute_values(":st", s(ChunkStatus::Submitted.as_str()))
            .expression_attribute_values(":pending", s(ChunkStatus::Pending.as_str()))
            .expression_attribute_values(":starting", s(ChunkStatus::Starting.as_str()))
            .expression_attribute_values(":unconfirmed", s(ChunkStatus::StartUnconfirmed.as_str()));
        if let Some(c) = credits {
            expr = expr.replacen("#status = :st", "#status = :st, credits = :cr", 1);
            update = update.expression_attribute_values(":cr", n(c));
        }
        let linked = unless_condition_failed(update.update_expression(expr).send().await)?;
        if linked.is_none() {
            // Linked already (a webhook adopted the chunk before the start's answer came), or
            // the chunk moved on without this id.
            let now = self.chunk(job_id, chunk.index).await?;
            if now.and_then(|c| c.provider_id).as_deref() != Some(provider_id) {
                return Ok(false);
            }
        }
        self.put_link(job_id, chunk, provider_id, contact).await
    }

    async fn claim_poll(
        &self,
        job_id: &str,
        index: u32,
        taken_at_ms: u64,
    ) -> Result<bool, StoreError> {
        let out = self
            .chunk_item_update(job_id, index)
            .update_expression("SET poll_at = :next")
            .condition_expression("poll_at = :taken")
            .expression_attribute_values(":taken", n(taken_at_ms))
            .expression_attribute_values(":next", n(taken_at_ms + 1))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.is_some())
    }

    async fn take_candidate(&self, job_id: &str, index: u32, max: u32) -> Result<bool, StoreError> {
        let out = self
            .chunk_item_update(job_id, index)
            .update_expression("ADD candidates :one")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(candidates) OR candidates < :max)",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.is_some())
    }

    async fn correct_link(
        &self,
        job_id: &str,
        chunk: ChunkRef,
        provider_id: &str,
        contact: Option<&Contact>,
    ) -> Result<(), StoreError> {
        let pk = job_pk(job_id);
        let out = self
            .chunk_item_update(job_id, chunk.index)
            .update_expression("SET provider_id = :pid")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":pid", s(provider_id))
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await
            .map_err(unavailable)?;
        let wrong = out
            .attributes
            .as_ref()
            .and_then(|a| get_s(a, "provider_id"))
            .filter(|w| *w != provider_id)
            .map(str::to_string);
        self.put_link(job_id, chunk, provider_id, contact).await?;
        if let Some(wrong) = wrong {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(&pk))
                .key("sk", s(format!("PID#{wrong}")))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn stored_indices(
        &self,
        job_id: &str,
        from: u64,
        to: u64,
    ) -> Result<HashSet<u64>, StoreError> {
        let items = self
            .query_range_of(job_id, &result_sk(from), &result_sk(to), None, Some("sk"))
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| index_of(get_s(i, "sk"), "RESULT#"))
            .collect())
    }

    async fn chunk(&self, job_id: &str, index: u32) -> Result<Option<Chunk>, StoreError> {
        self.item(job_id, &chunk_sk(index))
            .await?
            .as_ref()
            .map(parse_chunk)
            .transpose()
    }

    /// Records why a job (partly) failed; its status settles when every contact is accounted for.
    async fn set_job_error(&self, job_id: &str, error: &JobError) -> Result<(), StoreError> {
        let update = self
            .meta_item_update(job_id)
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(
                ":err",
                s(serde_json::to_string(error).unwrap_or_default()),
            )
            .expression_attribute_values(":now", n(now_ms()));
        // A stopping error is written with `stopped` (the fence of every later start); an
        // error that does not stop the job never replaces one that did.
        let update = if error.stops_submission() {
            update
                .update_expression(
                    "SET #error = :err, updated_at = :now, stopped = if_not_exists(stopped, :code)",
                )
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":code", s(&error.code))
        } else {
            update
                .update_expression("SET #error = :err, updated_at = :now")
                .condition_expression("attribute_exists(pk) AND attribute_not_exists(stopped)")
        };
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e) if error.stops_submission() => Err(unavailable(e)),
            // Stopped already (or no head: a job erased meanwhile): nothing to record.
            Err(e) => unless_condition_failed::<(), _, _>(Err(e)).map(|_| ()),
        }
    }

    async fn chunks(&self, job_id: &str) -> Result<Vec<Chunk>, StoreError> {
        // Up to `CHUNK#~`: the groups of final chunks and duplicate shards sort after it.
        let items = self.query_range(job_id, "CHUNK#", "CHUNK#~", None).await?;
        items.iter().map(parse_chunk).collect()
    }

    async fn get_job(&self, job_id: &str) -> Result<Option<JobMeta>, StoreError> {
        // Past its retention a job is gone, whenever TTL gets round to deleting it.
        self.item(job_id, "META")
            .await?
            .as_ref()
            .filter(|i| !expired(i))
            .map(parse_meta)
            .transpose()
    }

    async fn job_head(&self, job_id: &str) -> Result<Option<JobMeta>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s("META"))
            .send()
            .await
            .map_err(unavailable)?;
        out.item
            .as_ref()
            .filter(|i| !expired(i))
            .map(parse_meta)
            .transpose()
    }

    async fn find_link(&self, job_id: &str, provider_id: &str) -> Result<Option<Link>, StoreError> {
        // Eventually consistent first (half the read units): a link is written seconds before
        // its provider can answer. A miss is read again, strongly, before anything costlier.
        for consistent in [false, true] {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(job_pk(job_id)))
                .key("sk", s(format!("PID#{provider_id}")))
                .consistent_read(consistent)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(item) = out.item {
                return Ok(Some(Link {
                    chunk: ChunkRef {
                        index: get_n(&item, "chunk").unwrap_or(0),
                        offset: get_n(&item, "offset").unwrap_or(0),
                        count: get_n(&item, "count").unwrap_or(0),
                    },
                    contact: match item.get("contact").and_then(|v| v.as_m().ok()) {
                        Some(m) => Some(parse_contact(m)?),
                        None => None,
                    },
                }));
            }
        }
        // The link is written just after the chunk; if a worker died in between, the chunk
        // itself still names its provider id.
        let chunk = self
            .chunks(job_id)
            .await?
            .into_iter()
            .find(|c| c.provider_id.as_deref() == Some(provider_id));
        Ok(chunk.map(|c| Link {
            chunk: ChunkRef::from(&c),
            contact: None,
        }))
    }

    async fn contacts(
        &self,
        job_id: &str,
        offset: u64,
        count: u64,
    ) -> Result<Vec<Contact>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        if count == 1 {
            // One contact (a per-contact event with the relay's `rid`) is read by its key.
            let item = self.item(job_id, &contact_sk(offset)).await?;
            return item.as_ref().map(parse_contact).into_iter().collect();
        }
        let items = self
            .query_range(
                job_id,
                &contact_sk(offset),
                &contact_sk(offset + count - 1),
                None,
            )
            .await?;
        items.iter().map(parse_contact).collect()
    }

    async fn store_result(
        &self,
        job_id: &str,
        chunk_index: u32,
        result: ContactResult,
        update: Option<ChunkUpdate>,
    ) -> Result<Stored, StoreError> {
        self.put_result(job_id, chunk_index, result, update).await
    }

    async fn store_chunk(
        &self,
        job_id: &str,
        chunk: ChunkRef,
        results: Vec<ContactResult>,
        update: ChunkUpdate,
    ) -> Result<Stored, StoreError> {
        self.put_chunk_results(job_id, chunk, results, update).await
    }

    async fn poll_later(&self, job_id: &str, index: u32, every_ms: u64) -> Result<(), StoreError> {
        let at = now_ms() + every_ms;
        let out = self
            .chunk_item_update(job_id, index)
            .update_expression("SET poll_every = :e, poll_at = :at")
            .condition_expression("attribute_exists(poll_at)")
            .expression_attribute_values(":e", n(every_ms))
            .expression_attribute_values(":at", n(at))
            .send()
            .await;
        if unless_condition_failed(out)?.is_some() {
            // Sooner than the sweep that took it expects it back, perhaps.
            self.group_due_by(job_id, index, at).await?;
        }
        Ok(())
    }

    async fn add_duplicate(&self, job_id: &str) -> Result<(), StoreError> {
        // Spread over shards: a storm of repeats does not all write one item.
        let shard = u32::from(uuid::Uuid::new_v4().as_bytes()[0]) % DUP_SHARDS;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(dup_sk(shard)))
            .update_expression("ADD #n :one SET expires_at = if_not_exists(expires_at, :exp)")
            .expression_attribute_names("#n", "n")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":exp", n(self.expires_at()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn settle_job(&self, job_id: &str) -> Result<Option<JobStatus>, StoreError> {
        let Some(meta) = self.get_job(job_id).await? else {
            return Ok(None);
        };
        if meta.status.is_terminal() {
            return Ok(None);
        }
        // The groups of final chunks first (small items): the chunks are summed only when every
        // index the head knows is in one.
        let groups = self
            .query_range(job_id, "CHUNK#~F", "CHUNK#~F~", None)
            .await?;
        if Figures::of(&groups).final_chunks < meta.chunk_seq {
            return Ok(None);
        }
        // Every chunk final, every contact counted (rows from per-contact webhooks stay
        // provisional until their batch replaces them: their chunk is not final till then).
        let figures = self.figures(job_id, false).await?;
        if !figures.all_final || figures.counts.done < meta.contacts as i64 {
            return Ok(None);
        }
        let status = JobStatus::settled(meta.contacts, figures.counts.failed.max(0) as u64);
        let now = now_ms();
        let (names, values, figures_set) = figures.counts.placeholders(JOB_COUNTS, " = ");
        let mut update = bound(self.meta_item_update(job_id), (names, values));
        update = if meta.callback_url.is_some() {
            // The job's end and its callback's due date are one write: a settler that dies
            // right after still leaves the callback to the sweeper (the head joins the `due`
            // index).
            update
                .update_expression(format!(
                    "SET #status = :st, updated_at = :now, {figures_set}, cb_status = :pending, cb_attempts = :zero, cb_since = :now, poll_shard = :shard, poll_at = :now"
                ))
                .expression_attribute_values(":pending", s(CallbackStatus::Pending.as_str()))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":shard", s(poll_shard(job_id)))
        } else {
            update.update_expression(format!(
                "SET #status = :st, updated_at = :now, {figures_set}"
            ))
        };
        // Never for a deleted job: its head waits for its erasure, and calls back no one.
        let result = update
            .condition_expression("#status IN (:a, :b, :c) AND attribute_not_exists(deleted_at)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":st", s(status.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":a", s(JobStatus::Accepted.as_str()))
            .expression_attribute_values(":b", s(JobStatus::Submitting.as_str()))
            .expression_attribute_values(":c", s(JobStatus::Running.as_str()))
            .send()
            .await;
        Ok(unless_condition_failed(result)?.map(|_| status))
    }

    async fn job_view(&self, job_id: &str) -> Result<Option<JobMeta>, StoreError> {
        match self.get_job(job_id).await? {
            Some(meta) => Ok(Some(self.with_figures(meta).await?)),
            None => Ok(None),
        }
    }
}

impl DynamoJobStore {
    /// The puts of a new job's chunks: every chunk is due for its start by `start_due`, and its
    /// group is in the `due` index from the start: a start message that is lost (a failed send,
    /// the submit DLQ) is sent again by the sweeper.
    pub(super) fn plan_requests(&self, job_id: &str, chunks: &[Chunk]) -> Vec<WriteRequest> {
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

impl JobWriter for DynamoJobStore {
    /// Writes a new job: its head first (marked `creating`, not listed, in the `due` index's
    /// erasure partition `creation_grace_ms` on), then its contacts and chunks, then the head's
    /// mark is cleared (it is listed, and leaves the index) unless the job was deleted meanwhile.
    async fn create_job(
        &self,
        meta: &JobMeta,
        chunks: &[Chunk],
        contacts: &[Contact],
    ) -> Result<(), StoreError> {
        let pk = job_pk(&meta.job_id);
        let now = now_ms();
        let mut head = self.expiring(meta_item(meta));
        // Listed once created (the `recent` index is keyed on it).
        head.remove("list_pk");
        head.insert("creating".into(), n(now));
        head.insert("poll_shard".into(), s(ERASE_SHARD));
        head.insert("poll_at".into(), n(now + self.creation_grace_ms));
        let conflict = || StoreError::Conflict(format!("job {} exists", meta.job_id));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(head))
            // A new job, or one still being created (a retry's: nothing of it started).
            .condition_expression(
                "attribute_not_exists(pk) OR (attribute_exists(creating) AND attribute_not_exists(deleted_at))",
            )
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_conditional_check_failed_exception() => conflict(),
                _ => unavailable(e),
            })?;
        let mut requests: Vec<WriteRequest> = Vec::new();
        for c in contacts {
            requests.push(put_request(self.expiring(contact_item(&pk, c))));
        }
        requests.extend(self.plan_requests(&meta.job_id, chunks));
        self.batch_write_all(requests).await?;
        let done = self
            .meta_item_update(&meta.job_id)
            .update_expression("SET list_pk = :l REMOVE creating, poll_shard, poll_at")
            .condition_expression("attribute_exists(creating) AND attribute_not_exists(deleted_at)")
            .expression_attribute_values(":l", s(LIST_PK))
            .send()
            .await;
        if unless_condition_failed(done)?.is_none() {
            // Cleared already (this write's answer was lost, and the SDK sent it again), or
            // the job was deleted while it was written.
            match self.get_job(&meta.job_id).await? {
                Some(m) if !m.creating && !m.deleted => {}
                _ => return Err(conflict()),
            }
        }
        Ok(())
    }

    /// Job heads newest first, `limit` (at most 100) a page, after `cursor`: one query of the
    /// keys-only `recent` index, then one consistent BatchGetItem of the heads.
    async fn list_jobs(
        &self,
        limit: usize,
        cursor: Option<&JobsCursor>,
    ) -> Result<(Vec<JobMeta>, Option<JobsCursor>), StoreError> {
        let start = cursor.map(|c| {
            HashMap::from([
                ("list_pk".to_string(), s(LIST_PK)),
                ("created_at".to_string(), n(c.created_at_ms)),
                ("pk".to_string(), s(job_pk(&c.job_id))),
                ("sk".to_string(), s("META")),
            ])
        });
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("recent")
            .key_condition_expression("list_pk = :l")
            .expression_attribute_values(":l", s(LIST_PK))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 100) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(unavailable)?;
        let keys: Vec<String> = page
            .items()
            .iter()
            .filter_map(|i| get_s(i, "pk").map(str::to_string))
            .collect();
        let mut heads: HashMap<String, JobMeta> = HashMap::new();
        if !keys.is_empty() {
            let mut wanted: Vec<Item> = keys
                .iter()
                .map(|pk| HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s("META"))]))
                .collect();
            for _ in 0..5 {
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
                for item in got
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    if expired(&item) || item.contains_key("deleted_at") {
                        continue;
                    }
                    let meta = parse_meta(&item)?;
                    heads.insert(job_pk(&meta.job_id), meta);
                }
                wanted = got
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if wanted.is_empty() {
                    break;
                }
            }
        }
        // Their figures: a running job's summed over its chunks, an ended one's duplicates.
        let heads: Vec<JobMeta> = keys.iter().filter_map(|k| heads.remove(k)).collect();
        let jobs: Vec<JobMeta> = futures::stream::iter(heads)
            .map(|meta| self.with_figures(meta))
            .buffered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let next = page.last_evaluated_key.as_ref().and_then(|k| {
            Some(JobsCursor {
                created_at_ms: get_n(k, "created_at")?,
                job_id: get_s(k, "pk")?.strip_prefix("JOB#")?.to_string(),
            })
        });
        Ok((jobs, next))
    }

    /// Marks a job deleted (`DELETE /jobs/{id}`), in one write: it reads as deleted from now on;
    /// its callback is gone (URL and state removed: a pending one is never attempted again);
    /// its head moves to the `due` index's erasure partition, due `erase_grace_ms` on, where the
    /// sweeper finds it until its erasure is done. `false`: no such job, or erased already.
    async fn mark_deleted(&self, job_id: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let out = self
            .meta_item_update(job_id)
            .update_expression(
                "SET deleted_at = if_not_exists(deleted_at, :now), updated_at = :now, poll_shard = :erase, poll_at = :due REMOVE callback_url, cb_status, cb_attempts, cb_since, cb_code, cb_error",
            )
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(erased_at)")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":erase", s(ERASE_SHARD))
            .expression_attribute_values(":due", n(now + self.erase_grace_ms))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.is_some())
    }

    /// Results in contact order from index `from`, at most `limit`.
    async fn results(
        &self,
        job_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<ContactResult>, StoreError> {
        let items = self
            .query_range(job_id, &result_sk(from), "RESULT#~", Some(limit))
            .await?;
        items.iter().map(parse_result).collect()
    }
}
