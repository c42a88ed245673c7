//! [`Results`] over the jobs table: a single result ([`result_row`](super::result_row)), a
//! chunk's set ([`result_set`](super::result_set)), duplicates, the job's settling.

use super::DynamoJobStore;
use super::attrs::unavailable;
use super::attrs::{get_s, n, s, unless_condition_failed};
use super::counts::JOB_COUNTS;
use super::figures::Figures;
use super::keys::{DUP_SHARDS, dup_sk, index_of, job_pk, poll_shard, result_sk};
use super::requests::bound;
use crate::ids::ContactIndex;
use crate::ids::{ChunkIndex, JobId};
use crate::jobs::{CallbackStatus, ContactResult, JobMeta, JobStatus};
use crate::now_ms;
use crate::store::Jobs;
use crate::store::counts::Counts;
use crate::store::{ChunkRef, ChunkUpdate, CreditBudget, Results, StoreError, Stored};
use std::collections::HashSet;

impl Results for DynamoJobStore {
    async fn store_result(
        &self,
        job_id: &JobId,
        chunk_index: ChunkIndex,
        result: ContactResult,
        update: Option<ChunkUpdate>,
    ) -> Result<Stored, StoreError> {
        let stored = self
            .put_result(job_id, chunk_index, result, update.clone())
            .await?;
        if let Some(u) = &update {
            self.release_reported(job_id, u).await?;
        }
        Ok(stored)
    }

    async fn store_chunk(
        &self,
        job_id: &JobId,
        chunk: ChunkRef,
        results: Vec<ContactResult>,
        update: ChunkUpdate,
    ) -> Result<Stored, StoreError> {
        let stored = self
            .put_chunk_results(job_id, chunk, results, update.clone())
            .await?;
        self.release_reported(job_id, &update).await?;
        Ok(stored)
    }

    async fn stored_indices(
        &self,
        job_id: &JobId,
        from: ContactIndex,
        to: ContactIndex,
    ) -> Result<HashSet<ContactIndex>, StoreError> {
        let items = self
            .query_range_of(job_id, &result_sk(from), &result_sk(to), None, Some("sk"))
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| index_of(get_s(i, "sk"), "RESULT#").map(ContactIndex))
            .collect())
    }

    async fn add_duplicate(&self, job_id: &JobId) -> Result<(), StoreError> {
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

    async fn settle_job(&self, job_id: &JobId) -> Result<Option<JobStatus>, StoreError> {
        let Some(meta) = self.get_job(job_id).await? else {
            return Ok(None);
        };
        if meta.status.is_terminal() || meta.open {
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
        // A step that passes contacts on waits for each final chunk to have.
        let passed = !meta.passes_on || figures.all_passed;
        if !figures.all_final || !passed || figures.counts.done < meta.contacts as i64 {
            return Ok(None);
        }
        let status = JobStatus::settled(meta.contacts, figures.counts.failed.max(0) as u64);
        self.write_settled(&meta, figures.counts, status).await
    }
}

impl DynamoJobStore {
    /// Ends a running job with `counts` and `status` in one conditional write: with a callback
    /// URL, its callback is due in the same write. The status, when this write ended it.
    pub(super) async fn write_settled(
        &self,
        meta: &JobMeta,
        counts: Counts,
        status: JobStatus,
    ) -> Result<Option<JobStatus>, StoreError> {
        let job_id = &meta.job_id;
        let now = now_ms();
        let (names, values, figures_set) = counts.placeholders(JOB_COUNTS, " = ");
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
}
