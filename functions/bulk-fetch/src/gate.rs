//! Apply once, then settle: the exactly-once gate in front of every stage that writes results.

use relay_shared::callback::settle_then_ask;
use relay_shared::jobs::{JobMeta, JobStatus};
use relay_shared::store::{Claim, DedupeStore, Results, StoreError, Stored};

use crate::providers::Arm;
use crate::{Action, Deps, Disposition, Failure, FetchWorker};

/// What applying an event came to, short of a failure.
#[derive(Debug)]
pub(crate) enum Applied {
    /// `new` results stored, `existing` already there.
    Stored { new: usize, existing: usize },
    /// Applied already (or being applied, its row found stored): a duplicate.
    Duplicate,
    /// Not applied now: to be put back on the queue, for this reason (its results not ready,
    /// its claim held by another delivery).
    Later(String),
    /// Dropped and counted, for this reason: an id its body cannot vouch for that no chunk of
    /// the job can have.
    Dropped(String),
}

impl From<Applied> for Disposition {
    fn from(applied: Applied) -> Self {
        match applied {
            Applied::Stored { new, existing } => Disposition::Applied { new, existing },
            Applied::Duplicate => Disposition::Duplicate,
            Applied::Later(why) => Disposition::Deferred(std::time::Duration::ZERO, why),
            Applied::Dropped(why) => Disposition::Dropped(why),
        }
    }
}

impl<S: Deps> FetchWorker<S> {
    /// Applies the event once. A single result (Enrow single, FullEnrich `contact_finished`)
    /// needs no claim: its row's conditional put is the exactly-once gate, and a copy that finds
    /// its row stored is a duplicate (which also repairs a count or a group its first copy may
    /// have died before writing). A bulk event claims its key (scoped to its job): a copy that
    /// meets a completed claim is a duplicate (`count_duplicate`: a provider's repeat, counted on
    /// the job); one that meets a live claim must wait ([`Applied::Later`]): if the holder fails,
    /// this copy is the one that applies it. Anything but stored or a duplicate: nothing
    /// applied, the claim released.
    pub(crate) async fn apply_once(
        &self,
        meta: &JobMeta,
        key: &str,
        action: Action,
        count_duplicate: bool,
    ) -> Result<Applied, Failure> {
        if action.is_single_result() {
            let stored = match self.apply(meta, action).await? {
                Arm::Stored(stored) => stored,
                unapplied => return Ok(unapplied.into()),
            };
            let duplicate = stored.new == 0 && stored.replaced == 0 && stored.existing > 0;
            if duplicate && count_duplicate {
                self.count_duplicate(meta).await;
            }
            self.settle_after(meta, &stored).await?;
            return Ok(if duplicate {
                Applied::Duplicate
            } else {
                Applied::stored(&stored)
            });
        }
        let owner = uuid::Uuid::new_v4().to_string();
        match self.dedupe.claim(key, &owner).await? {
            Claim::Claimed => {}
            Claim::Duplicate => {
                if count_duplicate {
                    self.count_duplicate(meta).await;
                }
                // The copy that applied it may have failed to settle the job: settle here too.
                self.settle(meta).await.map_err(Failure::Settle)?;
                return Ok(Applied::Duplicate);
            }
            // It waits as a new, delayed message, not on its receive count: a holder that died
            // keeps the claim for a whole lease, longer than several visibility timeouts.
            Claim::InProgress => {
                return Ok(Applied::Later("being applied by another delivery".into()));
            }
        }
        let applied = self.apply(meta, action).await;
        let Ok(Arm::Stored(stored)) = applied else {
            if let Err(e) = self.dedupe.release(key, &owner).await {
                tracing::warn!(error = %e, "claim not released; it expires with its lease");
            }
            return applied.map(Applied::from);
        };
        if let Err(e) = self.dedupe.complete(key, &owner).await {
            // Applied, but the claim stays in progress until its lease runs out; a redelivery
            // then re-applies, which the conditional result writes absorb.
            tracing::warn!(error = %e, "claim not completed");
        }
        self.settle_after(meta, &stored).await?;
        Ok(Applied::stored(&stored))
    }

    /// A provider's repeat of an event applied already, counted on the job.
    async fn count_duplicate(&self, meta: &JobMeta) {
        if let Err(e) = self.jobs.add_duplicate(&meta.job_id).await {
            // The event is applied; only the statistic failed. Not worth a retry.
            tracing::warn!(error = %e, "duplicate not counted");
        }
    }

    /// Settles the job when this write completed a group of final chunks: a job whose chunks
    /// are all final ends now. A settle that fails sends the record back; its retry finds its
    /// writes done, which settles.
    pub(crate) async fn settle_after(
        &self,
        meta: &JobMeta,
        stored: &Stored,
    ) -> Result<(), Failure> {
        // A waterfall step's chunk that became final passes its contacts on at once.
        let step_chunk_final = meta.step_of.is_some() && stored.final_group.is_some();
        if stored.may_settle(meta.chunk_seq) || step_chunk_final {
            self.settle(meta).await.map_err(Failure::Settle)?;
        }
        Ok(())
    }

    /// Settles the job when its results are all in. If that ended it and it has a callback URL,
    /// the callback is asked for now (else the sweeper finds it due within its interval).
    pub(crate) async fn settle(&self, meta: &JobMeta) -> Result<Option<JobStatus>, StoreError> {
        settle_then_ask(
            &self.jobs,
            &self.requeue,
            &self.submit,
            &meta.job_id,
            Some(meta),
        )
        .await
    }
}

impl Applied {
    fn stored(stored: &Stored) -> Applied {
        Applied::Stored {
            new: stored.new,
            existing: stored.existing,
        }
    }
}

/// What an arm's outcome comes to, once the gate has settled what it stored.
impl From<Arm> for Applied {
    fn from(arm: Arm) -> Self {
        match arm {
            Arm::Stored(stored) => Applied::stored(&stored),
            Arm::Later(why) => Applied::Later(why),
            Arm::Dropped(why) => Applied::Dropped(why),
        }
    }
}
