//! [`JobWriter`] over the jobs table: a new job under its `creating` mark, the listing,
//! `DELETE`'s mark, the results in contact order.

use super::DynamoJobStore;
use super::attrs::{Item, get_n, get_s, n, put_request, s, unavailable, unless_condition_failed};
use super::items::parse_result;
use super::items::{contact_item, expired, meta_item, parse_meta};
use super::keys::{ERASE_SHARD, LIST_PK, job_pk, result_sk};
use crate::ids::ContactIndex;
use crate::ids::JobId;
use crate::jobs::{Chunk, Contact, ContactResult, JobMeta};
use crate::now_ms;
use crate::store::Jobs;
use crate::store::{JobWriter, JobsCursor, StoreError};
use aws_sdk_dynamodb::types::WriteRequest;
use futures::StreamExt;
use std::collections::HashMap;

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
        // A waterfall's step is not listed: its waterfall is.
        let listed = if meta.step_of.is_some() {
            "REMOVE creating, poll_shard, poll_at, list_pk"
        } else {
            "SET list_pk = :l REMOVE creating, poll_shard, poll_at"
        };
        let mut done = self
            .meta_item_update(&meta.job_id)
            .update_expression(listed);
        if meta.step_of.is_none() {
            done = done.expression_attribute_values(":l", s(LIST_PK));
        }
        let done = done
            .condition_expression("attribute_exists(creating) AND attribute_not_exists(deleted_at)")
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
        let mut heads = heads_of(self, &keys).await?;
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
                job_id: JobId::new(get_s(k, "pk")?.strip_prefix("JOB#")?),
            })
        });
        Ok((jobs, next))
    }

    /// Marks a job deleted (`DELETE /jobs/{id}`), in one write: it reads as deleted from now on;
    /// its callback is gone (URL and state removed: a pending one is never attempted again);
    /// its head moves to the `due` index's erasure partition, due `erase_grace_ms` on, where the
    /// sweeper finds it until its erasure is done. `false`: no such job, or erased already.
    async fn mark_deleted(&self, job_id: &JobId) -> Result<bool, StoreError> {
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
        job_id: &JobId,
        from: ContactIndex,
        limit: usize,
    ) -> Result<Vec<ContactResult>, StoreError> {
        let items = self
            .query_range(job_id, &result_sk(from), "RESULT#~", Some(limit))
            .await?;
        items.iter().map(parse_result).collect()
    }
}

/// The heads of `keys` (their `pk`s), read consistently in one BatchGetItem
/// ([`DynamoJobStore::batch_get`]); deleted and expired heads left out.
async fn heads_of(
    store: &DynamoJobStore,
    keys: &[String],
) -> Result<HashMap<String, JobMeta>, StoreError> {
    let mut heads: HashMap<String, JobMeta> = HashMap::new();
    if keys.is_empty() {
        return Ok(heads);
    }
    let wanted: Vec<Item> = keys
        .iter()
        .map(|pk| HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s("META"))]))
        .collect();
    for item in store.batch_get(wanted).await? {
        if expired(&item) || item.contains_key("deleted_at") {
            continue;
        }
        let meta = parse_meta(&item)?;
        heads.insert(job_pk(&meta.job_id), meta);
    }
    Ok(heads)
}
