//! Starts whose answer was lost: a chunk held by a worker that died, the check that waits for
//! its webhook, and the end of the wait.

use relay_shared::store::Waterfalls;
use std::time::Duration;

use relay_shared::bodies::BodyStore;
use relay_shared::jobs::{Chunk, ChunkStatus, JobError, reasons};
use relay_shared::now_ms;
use relay_shared::providers::submit::Submitter;
use relay_shared::queue::{MAX_DELAY, Queue};
use relay_shared::store::{
    CreditBudget, JobWriter, Links, RateSchedule, Results, StoreError, SubmitLedger,
};

use super::{ChunkSubmitter, SubmitAction, SubmitChunk, Submitted};
use relay_shared::ChunkIndex;
use relay_shared::JobId;

impl<J, S: Submitter, Q: Queue, B: BodyStore> ChunkSubmitter<J, S, Q, B>
where
    J: SubmitLedger + JobWriter + Results + Links + RateSchedule + CreditBudget + Waterfalls,
{
    /// A start message for a chunk some worker holds: wait while its lease runs; after it,
    /// the worker died mid-start and the chunk is unconfirmed (never started again on a guess).
    pub(crate) async fn not_pending_starting(
        &self,
        job_id: &JobId,
        chunk: &Chunk,
    ) -> Result<Submitted, StoreError> {
        if self
            .jobs
            .mark_unconfirmed(job_id, chunk.index, None)
            .await?
        {
            self.schedule_check(job_id, chunk.index, self.confirm_timeout)
                .await?;
            return Ok(Submitted::Unconfirmed(
                "the worker starting it stopped before the provider's answer was recorded".into(),
            ));
        }
        Ok(Submitted::Retry("being started by another worker".into()))
    }

    /// When the next look at an unconfirmed chunk is due.
    pub(crate) fn check_delay(&self, chunk: &Chunk) -> Duration {
        let since = Duration::from_millis(
            now_ms().saturating_sub(chunk.unconfirmed_at_ms.unwrap_or_else(now_ms)),
        );
        self.confirm_timeout.saturating_sub(since)
    }

    /// Queues a look at an unconfirmed chunk `after` from now (in steps of at most 15 minutes,
    /// SQS's longest delay).
    pub(crate) async fn schedule_check(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        after: Duration,
    ) -> Result<(), StoreError> {
        self.queue
            .send_delayed(
                SubmitChunk::message(job_id, index, SubmitAction::ConfirmCheck),
                after.min(MAX_DELAY),
            )
            .await
            .map(|_| ())
            .map_err(|e| StoreError::unavailable(e.to_string()))
    }

    /// An unconfirmed chunk's check: adopted meanwhile → done; still waiting within the timeout →
    /// look again later; past it → its contacts fail with `start_unconfirmed`.
    pub(crate) async fn check_unconfirmed(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
    ) -> Result<Submitted, StoreError> {
        let (Some(meta), Some(chunk)) = (
            self.jobs.get_job(job_id).await?,
            self.jobs.chunk(job_id, index).await?,
        ) else {
            return Ok(Submitted::Skipped);
        };
        // `failed` without its error: expired by an earlier check that stopped before the
        // contacts were failed; finish that.
        let resumed = chunk.status == ChunkStatus::Failed && chunk.error.is_none();
        if chunk.status != ChunkStatus::StartUnconfirmed && !resumed {
            return Ok(Submitted::Skipped);
        }
        let remaining = self.check_delay(&chunk);
        if !resumed && !remaining.is_zero() {
            self.schedule_check(job_id, index, remaining).await?;
            return Ok(Submitted::Deferred(remaining.min(MAX_DELAY)));
        }
        let e = JobError::new(
            reasons::START_UNCONFIRMED,
            format!(
                "the provider's answer to a start was lost and no webhook came within {} s; the relay does not start contacts again on a guess (that could bill them twice): resubmit them if they are missing",
                self.confirm_timeout.as_secs()
            ),
        );
        // Ended first, conditionally: a webhook that adopted the chunk a moment ago wins.
        if !resumed && !self.jobs.expire_unconfirmed(job_id, index).await? {
            return Ok(Submitted::Skipped);
        }
        let contacts = self
            .jobs
            .contacts(job_id, chunk.offset, chunk.count)
            .await?;
        self.jobs.set_job_error(job_id, &e).await?;
        // It may have been started and billed: its reservation stays until a webhook's cost.
        self.fail(&meta, &chunk, &contacts, e, None).await
    }
}
