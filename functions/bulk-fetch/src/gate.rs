//! Apply once, then settle: the exactly-once gate in front of every stage that writes results.

use std::time::Duration;

use relay_shared::callback::settle_then_ask;
use relay_shared::jobs::{JobMeta, JobStatus};
use relay_shared::store::{Claim, DedupeStore, Results, StoreError, Stored};

use crate::{Action, Deps, Disposition, FetchWorker};

impl<S: Deps> FetchWorker<S> {
    /// Applies the event once. A single result (Enrow single, FullEnrich `contact_finished`)
    /// needs no claim: its row's conditional put is the exactly-once gate, and a copy that finds
    /// its row stored is a duplicate (which also repairs a count or a group its first copy may
    /// have died before writing). A bulk event claims its key (scoped to its job): a copy that
    /// meets a completed claim is a duplicate (`count_duplicate`: a provider's repeat, counted on
    /// the job); one that meets a live claim must wait (`Err(Defer)`): if the holder fails, this
    /// copy is the one that applies it. `Err`: nothing applied, the claim released.
    pub(crate) async fn apply_once(
        &self,
        meta: &JobMeta,
        key: &str,
        action: Action,
        count_duplicate: bool,
    ) -> Result<Disposition, Disposition> {
        let job_id = meta.job_id.as_str();
        if action.is_single_result() {
            let stored = self.apply(meta, action).await?;
            let duplicate = stored.new == 0 && stored.replaced == 0 && stored.existing > 0;
            if duplicate
                && count_duplicate
                && let Err(e) = self.jobs.add_duplicate(job_id).await
            {
                tracing::warn!(error = %e, "duplicate not counted");
            }
            self.settle_after(meta, &stored).await?;
            return Ok(if duplicate {
                Disposition::Duplicate
            } else {
                Disposition::Applied {
                    new: stored.new,
                    existing: stored.existing,
                }
            });
        }
        let owner = uuid::Uuid::new_v4().to_string();
        match self.dedupe.claim(key, &owner).await {
            Ok(Claim::Claimed) => {}
            Ok(Claim::Duplicate) => {
                if count_duplicate && let Err(e) = self.jobs.add_duplicate(job_id).await {
                    // The event is applied; only the statistic failed. Not worth a retry.
                    tracing::warn!(error = %e, "duplicate not counted");
                }
                // The copy that applied it may have failed to settle the job: settle here too.
                return match self.settle(meta).await {
                    Ok(_) => Ok(Disposition::Duplicate),
                    Err(e) => Err(Disposition::Retry(format!("job not settled: {e}"))),
                };
            }
            // It waits as a new, delayed message, not on its receive count: a holder that died
            // keeps the claim for a whole lease, longer than several visibility timeouts.
            Ok(Claim::InProgress) => {
                return Err(Disposition::Deferred(
                    Duration::ZERO,
                    "being applied by another delivery".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        match self.apply(meta, action).await {
            Ok(stored) => {
                if let Err(e) = self.dedupe.complete(key, &owner).await {
                    // Applied, but the claim stays in progress until its lease runs out; a
                    // redelivery then re-applies, which the conditional result writes absorb.
                    tracing::warn!(error = %e, "claim not completed");
                }
                self.settle_after(meta, &stored).await?;
                Ok(Disposition::Applied {
                    new: stored.new,
                    existing: stored.existing,
                })
            }
            Err(failure) => {
                if let Err(e) = self.dedupe.release(key, &owner).await {
                    tracing::warn!(error = %e, "claim not released; it expires with its lease");
                }
                Err(failure)
            }
        }
    }

    /// Settles the job when this write completed a group of final chunks: a job whose chunks
    /// are all final ends now. A settle that fails sends the record back; its retry finds its
    /// writes done, which settles.
    pub(crate) async fn settle_after(
        &self,
        meta: &JobMeta,
        stored: &Stored,
    ) -> Result<(), Disposition> {
        if stored.may_settle(meta.chunk_seq)
            && let Err(e) = self.settle(meta).await
        {
            return Err(Disposition::Retry(format!("job not settled: {e}")));
        }
        Ok(())
    }

    /// Settles the job when its results are all in. If that ended it and it has a callback URL,
    /// the callback is asked for now (else the sweeper finds it due within its interval).
    pub(crate) async fn settle(&self, meta: &JobMeta) -> Result<Option<JobStatus>, StoreError> {
        settle_then_ask(&self.jobs, &self.requeue, &meta.job_id, Some(meta)).await
    }
}
