//! A deleted job's erasure, a message at a time.

use relay_shared::bodies::BodyStore;
use relay_shared::jobs::JobStatus;
use relay_shared::now_ms;
use relay_shared::providers::submit::Submitter;
use relay_shared::queue::Queue;
use relay_shared::store::Waterfalls;
use relay_shared::store::{
    CreditBudget, DRAFT_TTL, JobWriter, Links, RateSchedule, Results, StoreError, SubmitLedger,
};

use super::{ChunkSubmitter, SubmitChunk, Submitted};
use relay_shared::JobId;

/// Items one erasure message deletes (then the next message goes on): well inside the worker's
/// timeout at 25 items per BatchWriteItem, 8 in flight.
pub const ERASE_PER_MESSAGE: usize = 5_000;

impl<J, S: Submitter, Q: Queue, B: BodyStore> ChunkSubmitter<J, S, Q, B>
where
    J: SubmitLedger + JobWriter + Results + Links + RateSchedule + CreditBudget + Waterfalls,
{
    /// Deletes up to [`ERASE_PER_MESSAGE`] items of a deleted job; if more are left, the rest
    /// goes on in a new message. Once none is left: its claim-checked bodies, then the head
    /// made a tombstone (the erasure is done: the sweeper stops asking for it). A job whose
    /// creation was abandoned (the sweeper asks for it [`CREATION_GRACE`] after its head was
    /// written) is marked deleted first, and erased the same way.
    ///
    /// [`CREATION_GRACE`]: relay_shared::store::CREATION_GRACE
    pub(crate) async fn erase(&self, job_id: &JobId) -> Result<Submitted, StoreError> {
        let Some(mut meta) = self.jobs.get_job(job_id).await? else {
            return Ok(Submitted::Skipped);
        };
        if meta.creating && !meta.deleted {
            meta.deleted = self.jobs.abandon_creation(job_id).await?;
            if meta.deleted {
                tracing::info!(%job_id, "job creation abandoned: erasing it");
            }
        }
        // A draft never started is erased once it is due (the sweeper asks for it then), as if
        // it had been deleted.
        if !meta.deleted
            && meta.status == JobStatus::Draft
            && meta.created_at_ms + DRAFT_TTL.as_millis() as u64 <= now_ms()
            && self.jobs.mark_deleted(job_id).await?
        {
            tracing::info!(%job_id, "draft expired unstarted: erasing it");
            meta.deleted = true;
        }
        if !meta.deleted {
            // Only a deleted job is erased (a message naming another is not ours to act on).
            return Ok(Submitted::Skipped);
        }
        if meta.erased {
            return Ok(Submitted::Skipped);
        }
        let deleted = self.jobs.delete_items(job_id, ERASE_PER_MESSAGE).await?;
        if deleted == 0 {
            let prefix = relay_shared::bodies::job_prefix(meta.provider, job_id);
            let bodies = self
                .bodies
                .delete_prefix(&prefix)
                .await
                .map_err(|e| StoreError::unavailable(e.to_string()))?;
            self.jobs.finish_erasure(job_id).await?;
            tracing::info!(%job_id, bodies, "job erased");
            return Ok(Submitted::Skipped);
        }
        match self.queue.send(SubmitChunk::delete(job_id)).await {
            Ok(_) => Ok(Submitted::Skipped),
            Err(e) => Ok(Submitted::Retry(format!("erasure not continued: {e}"))),
        }
    }
}
