//! [`Polls`] in memory.

use super::MemoryJobs;
use crate::ids::{ChunkIndex, JobId};
use crate::now_ms;
use crate::store::{Polls, StoreError};

impl Polls for MemoryJobs {
    async fn poll_later(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        every_ms: u64,
    ) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            if let Some(c) = job.chunks.get_mut(&index)
                && !c.status.is_final()
            {
                c.poll_every_ms = Some(every_ms);
                // Due then, as DynamoDB's write of the chunk's `poll_at` (and its group's).
                job.taken.insert(index, (c.status, now_ms() + every_ms));
            }
            Ok(())
        })
    }

    async fn claim_poll(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        taken_at_ms: u64,
    ) -> Result<bool, StoreError> {
        // As DynamoDB's conditional update: taken if the chunk is still due at `taken_at_ms`
        // (the due date the sweeper's take set), and then it is due a moment later.
        self.with(job_id, |job| {
            let Some(c) = job.chunks.get(&index) else {
                return Ok(false);
            };
            if job.chunk_due(c) != Some(taken_at_ms) {
                return Ok(false);
            }
            let status = c.status;
            job.taken.insert(index, (status, taken_at_ms + 1));
            Ok(true)
        })
    }
}
