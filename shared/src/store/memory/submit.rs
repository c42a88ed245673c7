//! [`SubmitLedger`] in memory.

use super::MemoryJobs;
use crate::ids::ProviderId;
use crate::ids::{ChunkIndex, JobId};
use crate::jobs::{Chunk, ChunkStatus, JobError, JobStatus};
use crate::now_ms;
use crate::store::{StoreError, SubmitLedger};

impl SubmitLedger for MemoryJobs {
    async fn begin_submit(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Option<Chunk>, StoreError> {
        take_pending(self, job_id, index, owner, lease_ms, true)
    }

    async fn begin_fail(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Option<Chunk>, StoreError> {
        take_pending(self, job_id, index, owner, lease_ms, false)
    }

    async fn release_submit(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        owner: &str,
    ) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            if job.starting.get(&index).is_some_and(|(o, _)| o == owner)
                && let Some(c) = job.chunks.get_mut(&index)
                && c.status == ChunkStatus::Starting
            {
                c.status = ChunkStatus::Pending;
                job.starting.remove(&index);
            }
            Ok(())
        })
    }

    async fn mark_unconfirmed(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        owner: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.with(job_id, |job| {
            let now = now_ms();
            let held = job
                .starting
                .get(&index)
                .is_some_and(|(o, until)| Some(o.as_str()) == owner || *until < now);
            match job.chunks.get_mut(&index) {
                Some(c) if c.status == ChunkStatus::Starting && held => {
                    c.status = ChunkStatus::StartUnconfirmed;
                    c.unconfirmed_at_ms = Some(now);
                    job.starting.remove(&index);
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    async fn expire_unconfirmed(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
    ) -> Result<bool, StoreError> {
        self.with(job_id, |job| match job.chunks.get_mut(&index) {
            Some(c) if c.status == ChunkStatus::StartUnconfirmed => {
                c.status = ChunkStatus::Failed;
                Ok(true)
            }
            _ => Ok(false),
        })
    }

    async fn split_chunk(
        &self,
        job_id: &JobId,
        chunk: &Chunk,
        owner: &str,
    ) -> Result<Vec<Chunk>, StoreError> {
        self.with(job_id, |job| {
            let held = job
                .starting
                .get(&chunk.index)
                .is_some_and(|(o, _)| o == owner);
            if !held
                || job.chunks.get(&chunk.index).map(|c| c.status) != Some(ChunkStatus::Starting)
            {
                return Err(StoreError::Conflict(format!(
                    "chunk {} is no longer held by this worker",
                    chunk.index
                )));
            }
            let meta = job.meta.as_mut().expect("checked");
            let first = chunk.count.div_ceil(2);
            let seq = meta.chunk_seq as u32;
            let mut halves = Chunk::plan_range(chunk.offset, first, first, seq);
            halves.extend(Chunk::plan_range(
                chunk.offset + first,
                chunk.count - first,
                chunk.count - first,
                seq + 1,
            ));
            meta.chunk_seq += halves.len() as u64;
            meta.chunks += halves.len() as u64 - 1;
            let parent = job.chunks.get_mut(&chunk.index).expect("checked");
            parent.status = ChunkStatus::Split;
            parent.parts = halves.iter().map(|c| c.index).collect();
            job.starting.remove(&chunk.index);
            for h in &halves {
                job.chunks.insert(h.index, h.clone());
            }
            Ok(halves)
        })
    }

    async fn count_submitted(&self, job_id: &JobId) -> Result<JobStatus, StoreError> {
        self.with(job_id, |job| {
            job.submitted += 1;
            let meta = job.meta.as_mut().expect("checked");
            let next = if job.submitted >= meta.chunks {
                JobStatus::Running
            } else {
                JobStatus::Submitting
            };
            // Only forward: accepted → submitting → running; never over a settled status.
            if matches!(meta.status, JobStatus::Accepted | JobStatus::Submitting) {
                meta.status = next;
            }
            Ok(meta.status)
        })
    }

    async fn delete_items(&self, job_id: &JobId, limit: usize) -> Result<usize, StoreError> {
        self.with(job_id, |job| {
            let mut left = limit;
            let mut n = drop_first(&mut job.contacts, &mut left);
            n += drop_first(&mut job.results, &mut left);
            n += drop_first(&mut job.chunks, &mut left);
            let links: Vec<ProviderId> = job.links.keys().take(left).cloned().collect();
            for k in &links {
                job.links.remove(k);
            }
            left -= links.len();
            n += links.len() + drop_first(&mut job.pages, &mut left);
            Ok(n)
        })
    }

    async fn abandon_creation(&self, job_id: &JobId) -> Result<bool, StoreError> {
        self.with(job_id, |job| {
            let meta = job.meta.as_mut().expect("checked");
            if meta.creating && !meta.deleted {
                meta.deleted = true;
                job.erase_due = Some(now_ms());
            }
            Ok(meta.creating)
        })
    }

    async fn finish_erasure(&self, job_id: &JobId) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            let meta = job.meta.as_mut().expect("checked");
            if meta.deleted {
                meta.creating = false;
                meta.name = None;
                meta.options = serde_json::Value::Null;
                meta.callback_url = None;
                meta.callback = None;
                meta.erased = true;
                job.callback_due = None;
            }
            Ok(())
        })
    }
}

/// [`SubmitLedger::begin_submit`] (`fenced`) and [`SubmitLedger::begin_fail`].
fn take_pending(
    store: &MemoryJobs,
    job_id: &JobId,
    index: ChunkIndex,
    owner: &str,
    lease_ms: u64,
    fenced: bool,
) -> Result<Option<Chunk>, StoreError> {
    store.with(job_id, |job| {
        let meta = job.meta.as_ref().expect("checked");
        if fenced
            && (meta.deleted
                || meta.creating
                || meta.error.as_ref().is_some_and(JobError::stops_submission))
        {
            return Ok(None);
        }
        let Some(c) = job.chunks.get_mut(&index) else {
            return Ok(None);
        };
        // Pending, or held by this owner already (a resent take, as DynamoDB's twin allows).
        let own = c.status == ChunkStatus::Starting
            && job.starting.get(&index).is_some_and(|(o, _)| o == owner);
        if c.status != ChunkStatus::Pending && !own {
            return Ok(None);
        }
        c.status = ChunkStatus::Starting;
        job.starting
            .insert(index, (owner.to_string(), now_ms() + lease_ms));
        Ok(Some(c.clone()))
    })
}

/// Removes up to `left` entries of `m`, first keys first; counts them off `left`.
fn drop_first<K: Ord, V>(m: &mut std::collections::BTreeMap<K, V>, left: &mut usize) -> usize {
    let mut n = 0;
    while *left > 0 && m.pop_first().is_some() {
        *left -= 1;
        n += 1;
    }
    n
}
