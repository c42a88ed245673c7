//! [`Results`] in memory.

use super::MemoryJobs;
use super::job::{add, final_group, update_chunk};
use crate::ids::ContactIndex;
use crate::ids::{ChunkIndex, JobId};
use crate::jobs::{CallbackState, CallbackStatus, ContactResult, JobStatus};
use crate::now_ms;
use crate::store::counts::Counts;
use crate::store::counts::rows_to_write;
use crate::store::{ChunkRef, ChunkUpdate, CreditBudget, Results, StoreError, Stored};
use std::collections::HashSet;

impl Results for MemoryJobs {
    async fn store_result(
        &self,
        job_id: &JobId,
        chunk_index: ChunkIndex,
        result: ContactResult,
        update: Option<ChunkUpdate>,
    ) -> Result<Stored, StoreError> {
        self.write_fails()?;
        let stored = self.with(job_id, |job| {
            // As DynamoDB's row put, conditional on its chunk: nothing of an erased job is
            // written again.
            if !job.chunks.contains_key(&chunk_index) {
                return Err(StoreError::Conflict(format!(
                    "chunk {chunk_index} is gone (its job was erased)"
                )));
            }
            let old = job.results.get(&result.index);
            let replaced = match old {
                None => false,
                Some(old) if result.replaces(old) => true,
                Some(_) => {
                    return Ok(Stored {
                        existing: 1,
                        write_calls: 1,
                        final_group: final_group(job, chunk_index),
                        ..Stored::default()
                    });
                }
            };
            let delta = Counts::of([result.outcome])
                .minus(old.map_or_else(Counts::default, |o| Counts::of([o.outcome])));
            let chunk = job
                .chunks
                .get_mut(&chunk_index)
                .ok_or_else(|| StoreError::Data(format!("no chunk {chunk_index}")))?;
            if let Some(u) = &update {
                update_chunk(chunk, u);
            }
            let awaiting_link = chunk.status.awaits_confirmation() && chunk.provider_id.is_none();
            let counted = job.counted.entry(chunk_index).or_default();
            *counted = *counted + delta;
            add(job.meta.as_mut().expect("checked"), delta);
            job.results.insert(result.index, result);
            let becomes_final = update.as_ref().is_some_and(|u| u.status.is_final());
            Ok(Stored {
                new: usize::from(!replaced),
                existing: 0,
                replaced: usize::from(replaced),
                write_calls: 1,
                final_group: final_group(job, chunk_index).filter(|_| becomes_final),
                awaiting_link,
            })
        })?;
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
        self.write_fails()?;
        let stored = self.with(job_id, |job| {
            // As DynamoDB's, under the chunk's lease: no chunk, no rows.
            if !job.chunks.contains_key(&chunk.index) {
                return Err(StoreError::Conflict(format!(
                    "chunk {} is gone (its job was erased)",
                    chunk.index
                )));
            }
            let mut stored = Stored {
                write_calls: 2,
                ..Stored::default()
            };
            let rows: Vec<ContactResult> =
                rows_to_write(chunk, &results, |i| job.results.get(&i), &mut stored)?
                    .into_iter()
                    .cloned()
                    .collect();
            for r in rows {
                job.results.insert(r.index, r);
            }
            let total = Counts::of(
                job.results
                    .range(ContactIndex(chunk.offset)..ContactIndex(chunk.offset + chunk.count))
                    .map(|(_, r)| r.outcome),
            );
            let counted = job.counted.entry(chunk.index).or_default();
            let delta = total.minus(*counted);
            *counted = total;
            stored.new = delta.done.max(0) as usize;
            if let Some(c) = job.chunks.get_mut(&chunk.index) {
                update_chunk(c, &update);
            }
            add(job.meta.as_mut().expect("checked"), delta);
            stored.final_group = final_group(job, chunk.index);
            Ok(stored)
        })?;
        self.release_reported(job_id, &update).await?;
        Ok(stored)
    }

    async fn stored_indices(
        &self,
        job_id: &JobId,
        from: ContactIndex,
        to: ContactIndex,
    ) -> Result<HashSet<ContactIndex>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs
            .get(job_id)
            .map(|j| j.results.range(from..=to).map(|(i, _)| *i).collect())
            .unwrap_or_default())
    }

    async fn add_duplicate(&self, job_id: &JobId) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            job.meta.as_mut().expect("checked").duplicates += 1;
            Ok(())
        })
    }

    async fn settle_job(&self, job_id: &JobId) -> Result<Option<JobStatus>, StoreError> {
        self.with(job_id, |job| {
            let chunks_final = job.chunks.values().all(|c| c.status.is_final());
            let meta = job.meta.as_ref().expect("checked");
            // A step that passes contacts on waits for each final chunk to have.
            let passed = !meta.passes_on
                || job
                    .chunks
                    .values()
                    .all(|c| c.passed || c.status == crate::jobs::ChunkStatus::Split);
            if meta.status.is_terminal()
                || meta.deleted
                || meta.open
                || meta.done < meta.contacts
                || !chunks_final
                || !passed
            {
                return Ok(None);
            }
            let status = JobStatus::settled(meta.contacts, meta.failed);
            end_job(job, status);
            Ok(Some(status))
        })
    }
}

/// Ends a job with `status`: its callback, if it has a URL, due now.
pub(super) fn end_job(job: &mut super::JobState, status: JobStatus) {
    let now = now_ms();
    let meta = job.meta.as_mut().expect("checked");
    meta.status = status;
    meta.updated_at_ms = now;
    if meta.callback_url.is_some() {
        meta.callback = Some(CallbackState {
            status: CallbackStatus::Pending,
            attempts: 0,
            last_status_code: None,
            last_error: None,
            next_attempt_at: Some(now),
            since_ms: now,
        });
        job.callback_due = Some(now);
    }
}
