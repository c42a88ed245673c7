//! A chunk's start, once, in steps, each with its own type: [`Prepared`] (the chunk pending, its
//! request built) → its worst case reserved from the job's budget, if it has one → a rate slot
//! reserved, then [`Taken`] (the chunk taken from `pending`) → sent → what the provider's answer
//! makes of it (recorded, or a refusal handled).

use relay_shared::store::Waterfalls;
use std::ops::ControlFlow::{self, Break, Continue};
use std::time::Duration;

use relay_shared::bodies::BodyStore;
use relay_shared::jobs::{Chunk, ChunkStatus, Contact, JobError, JobMeta, JobStatus, reasons};
use relay_shared::providers::submit::{
    StartError, StartRequest, Started, Submitter, start_request,
};
use relay_shared::queue::{MAX_DELAY, Queue};
use relay_shared::retry::{Retryable, exponential};
use relay_shared::routes::webhook_urls;
use relay_shared::store::{
    ChunkRef, CreditBudget, JobWriter, Links, RateSchedule, Reserve, Results, Slot, StoreError,
    SubmitLedger,
};
use relay_shared::{Provider, now_ms};

use super::{ChunkSubmitter, SubmitChunk, Submitted};
use relay_shared::ChunkIndex;
use relay_shared::JobId;

/// What a start must still have of its invocation after waiting for its slot: the provider
/// call's own timeout plus this, for recording what came back.
pub const START_RESERVE: Duration = Duration::from_secs(10);
/// The longest a worker waits in-process for a start's slot; a later one is waited for in
/// the queue.
pub const MAX_START_WAIT: Duration = Duration::from_secs(30);

/// One step of a start: on to the next with what it made (`Continue`), or the message is done
/// (`Break`, with what became of it).
type Step<T> = Result<ControlFlow<Submitted, T>, StoreError>;

/// The value a step goes on with; a step that ended the message returns its outcome.
macro_rules! next {
    ($step:expr) => {
        match $step? {
            Continue(v) => v,
            Break(done) => return Ok(done),
        }
    };
}

/// A pending chunk ready to start: its job, its contacts, the request, and the rate limit (its
/// name and interval) the request waits on.
pub(crate) struct Prepared {
    meta: JobMeta,
    index: ChunkIndex,
    contacts: Vec<Contact>,
    request: StartRequest,
    limit: String,
    interval: Duration,
}

/// A chunk held for its start: the rate slot taken, the chunk taken from `pending` by `owner`.
pub(crate) struct Taken {
    prepared: Prepared,
    chunk: Chunk,
    owner: String,
}

impl<J, S: Submitter, Q: Queue, B: BodyStore> ChunkSubmitter<J, S, Q, B>
where
    J: SubmitLedger + JobWriter + Results + Links + RateSchedule + CreditBudget + Waterfalls,
{
    /// Starts one chunk, at most once: prepare → reserve its credits → take → send → on
    /// refusal.
    pub(crate) async fn try_submit(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
    ) -> Result<Submitted, StoreError> {
        let prepared = next!(self.prepare(job_id, index).await);
        next!(self.reserve_credits(&prepared).await);
        let at_ms = next!(self.reserve_slot(&prepared).await);
        let taken = next!(self.take(prepared, at_ms).await);
        let p = &taken.prepared;
        match self.starter.start(p.meta.operation, &p.request).await {
            Ok(started) => self.record_start(&taken, started).await,
            Err(refusal) => self.on_refusal(&taken, refusal).await,
        }
    }

    /// The chunk, if it is pending and its job may still start it, with its start request.
    async fn prepare(&self, job_id: &JobId, index: ChunkIndex) -> Step<Prepared> {
        // A job still being created starts nothing: its start messages are sent once it is (the
        // sweeper's, for a creation abandoned, come before its erasure). A draft's chunks exist
        // only once its start wrote them, and start once it is accepted.
        let live = |m: &JobMeta| !m.deleted && !m.creating && m.status != JobStatus::Draft;
        let Some(meta) = self.jobs.get_job(job_id).await?.filter(live) else {
            return Ok(Break(Submitted::Skipped));
        };
        let Some(chunk) = self.jobs.chunk(job_id, index).await? else {
            return Ok(Break(Submitted::Skipped));
        };
        if let Break(done) = self.only_pending(job_id, &chunk).await? {
            return Ok(Break(done));
        }
        // A job that already failed for good (out of credits, canceled, key refused) starts
        // nothing more.
        if let Some(e) = meta.error.as_ref().filter(|e| e.stops_submission()) {
            return self.fail_pending(&meta, index, e.clone()).await.map(Break);
        }
        // A chunk that could not start by its job's deadline never starts: the job ends.
        if self.start_deadline_passed(&meta) {
            let e = JobError::new(
                reasons::TIMED_OUT,
                "the chunk could not be started before the job's deadline",
            );
            return self.fail_pending(&meta, index, e).await.map(Break);
        }
        let hooks = webhook_urls(&self.public_base_url, &self.secret, meta.provider, job_id);
        let name = meta.name.clone().unwrap_or_else(|| job_id.to_string());
        let contacts = self
            .jobs
            .contacts(job_id, chunk.offset, chunk.count)
            .await?;
        let request = start_request(meta.operation, &name, &contacts, &meta.options, &hooks);
        let (limit, interval) = match meta.provider {
            Provider::Fullenrich => ("fullenrich".to_string(), self.fullenrich_interval),
            Provider::Enrow => (format!("enrow{}", request.path), self.enrow_interval),
        };
        Ok(Continue(Prepared {
            meta,
            index,
            contacts,
            request,
            limit,
            interval,
        }))
    }

    /// A job with a budget: the chunk's worst case reserved from it before anything of its start
    /// is spent, once (a start tried again finds it held; a start given back to `pending`
    /// keeps it). A chunk that does not fit never starts: its contacts end `budget_exhausted`,
    /// and the job's error says so (later chunks may still fit, once costs come back).
    async fn reserve_credits(&self, p: &Prepared) -> Step<()> {
        let Some(budget) = p.meta.budget else {
            return Ok(Continue(()));
        };
        let (job_id, op) = (&p.meta.job_id, p.meta.operation);
        let cost =
            relay_shared::budget::chunk_worst_case(op, &p.meta.options, p.contacts.len() as u64);
        // A waterfall's steps reserve from the waterfall's one budget (a step's head carries
        // only its ceiling).
        let from = p.meta.step_of.as_ref().map_or(job_id, |s| &s.job);
        match self
            .jobs
            .reserve_credits(from, job_id, p.index, cost)
            .await?
        {
            Reserve::Reserved | Reserve::Held | Reserve::Unlimited => Ok(Continue(())),
            Reserve::NotPending => Ok(Break(Submitted::Skipped)),
            Reserve::Exhausted { left } => {
                let e = JobError::new(
                    reasons::BUDGET_EXHAUSTED,
                    format!(
                        "a chunk's worst case ({cost} credits) did not fit in what was left of the job's max_credits ({left} of {}): its contacts were not started",
                        budget.max
                    ),
                );
                self.jobs.set_job_error(job_id, &e).await?;
                if from != job_id {
                    self.jobs.set_job_error(from, &e).await?;
                }
                self.fail_pending(&p.meta, p.index, e).await.map(Break)
            }
        }
    }

    /// Goes on with a pending chunk only; a start message for a chunk in any other state is
    /// answered here.
    async fn only_pending(
        &self,
        job_id: &JobId,
        chunk: &Chunk,
    ) -> Result<ControlFlow<Submitted>, StoreError> {
        match chunk.status {
            ChunkStatus::Pending => Ok(Continue(())),
            ChunkStatus::Starting => self.not_pending_starting(job_id, chunk).await.map(Break),
            ChunkStatus::StartUnconfirmed => {
                // The message of a start whose check may have been lost: make sure one runs.
                self.schedule_check(job_id, chunk.index, self.check_delay(chunk))
                    .await?;
                Ok(Break(Submitted::Skipped))
            }
            _ => {
                // Final or running: a settle (or a reservation's release) that failed earlier
                // gets another try here.
                self.release_ended(job_id, chunk).await?;
                self.settle(job_id).await?;
                Ok(Break(Submitted::Skipped))
            }
        }
    }

    /// The slot first, if it is near enough for the start to fit in this invocation after the
    /// wait: its time. Otherwise nothing is taken: the message waits in the queue until a slot
    /// is in reach. A slot taken is a start sent, or given back.
    async fn reserve_slot(&self, p: &Prepared) -> Step<u64> {
        let reserve = self.starter.timeout() + START_RESERVE;
        let slot = match relay_shared::invocation::bounded_wait(MAX_START_WAIT, reserve) {
            Some(max_wait) => {
                self.jobs
                    .take_slot(
                        &p.limit,
                        p.interval.as_millis() as u64,
                        max_wait.as_millis() as u64,
                    )
                    .await?
            }
            None => Slot::Busy {
                retry_in_ms: p.interval.as_millis() as u64,
            },
        };
        match slot {
            Slot::At(at) => Ok(Continue(at)),
            Slot::Busy { retry_in_ms } => {
                let wait =
                    Duration::from_millis(retry_in_ms).clamp(Duration::from_secs(1), MAX_DELAY);
                Ok(Break(
                    match self
                        .queue
                        .send_delayed(SubmitChunk::start(&p.meta.job_id, p.index), wait)
                        .await
                    {
                        Ok(_) => Submitted::Deferred(wait),
                        Err(e) => Submitted::Retry(format!("waiting for a request slot; {e}")),
                    },
                ))
            }
        }
    }

    /// At the slot's time, the chunk, right before its start and fenced by the job's head: a
    /// cancel, an out-of-credits answer or an erasure recorded before this take stops it, so a
    /// cancel answered "not started" never sees that chunk start.
    async fn take(&self, prepared: Prepared, at_ms: u64) -> Step<Taken> {
        tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms()))).await;
        let (job_id, index) = (&prepared.meta.job_id, prepared.index);
        let owner = uuid::Uuid::new_v4().to_string();
        let taken = self
            .jobs
            .begin_submit(job_id, index, &owner, self.lease.as_millis() as u64)
            .await;
        match taken {
            Ok(Some(chunk)) => Ok(Continue(Taken {
                prepared,
                chunk,
                owner,
            })),
            Ok(None) => {
                self.give_back(&prepared, at_ms).await;
                // Another worker took it meanwhile, or the job stopped: then its pending
                // chunks end with the job's error.
                if let Some(e) = self
                    .jobs
                    .get_job(job_id)
                    .await?
                    .and_then(|m| m.error)
                    .filter(JobError::stops_submission)
                {
                    return self.fail_pending(&prepared.meta, index, e).await.map(Break);
                }
                Ok(Break(Submitted::Skipped))
            }
            Err(e) => {
                self.give_back(&prepared, at_ms).await;
                // The write may have applied with its answer lost: nothing was sent, so give
                // the chunk back (a no-op unless this worker holds it), or it would look like a
                // worker that died mid-start once the lease ran out.
                if let Err(release) = self.jobs.release_submit(job_id, index, &owner).await {
                    tracing::warn!(error = %release, %job_id, chunk = index.get(), "chunk not given back; it becomes unconfirmed after its lease");
                }
                Err(e)
            }
        }
    }

    /// Gives back a slot taken for a start that is not sent.
    async fn give_back(&self, p: &Prepared, at_ms: u64) {
        if let Err(e) = self
            .jobs
            .return_slot(&p.limit, at_ms, p.interval.as_millis() as u64)
            .await
        {
            tracing::warn!(error = %e, job_id = %p.meta.job_id, "request slot not given back");
        }
    }

    /// The provider has the chunk: record its id before anything else, insisting. If it cannot
    /// be recorded, the chunk stays `starting`, becomes unconfirmed when the lease runs out, and
    /// the chunk's webhook adopts it: never a second start. A one-contact chunk's contact rides
    /// on its link: its result reads it there.
    async fn record_start(&self, t: &Taken, started: Started) -> Result<Submitted, StoreError> {
        let (job_id, index) = (&t.prepared.meta.job_id, t.prepared.index);
        let at = ChunkRef::from(&t.chunk);
        let contact = t.prepared.contacts.first();
        let linked = (|| {
            self.jobs
                .link_chunk(job_id, at, &started.id, started.credits, contact)
        })
            .retry(exponential(Duration::from_millis(200), 6))
            .notify(|e, _| tracing::warn!(error = %e, %job_id, chunk = index.get(), "recording the provider id failed; retrying"))
            .await?;
        if !linked {
            // A webhook adopted the chunk under another id meanwhile: the provider's own
            // answer is the truth, so the chunk takes this id and its webhooks map.
            tracing::error!(
                %job_id,
                chunk = index.get(),
                "the chunk was linked to another id; corrected to the start's"
            );
            self.jobs
                .correct_link(job_id, at, &started.id, contact)
                .await?;
        }
        self.jobs.count_submitted(job_id).await?;
        Ok(Submitted::Started(started.id))
    }

    /// What a start the provider did not take makes of the chunk: sent again later (only when
    /// it is known not to have been taken), unconfirmed, split, or failed.
    async fn on_refusal(&self, t: &Taken, refusal: StartError) -> Result<Submitted, StoreError> {
        let (meta, index, owner) = (&t.prepared.meta, t.prepared.index, t.owner.as_str());
        let job_id = &meta.job_id;
        let job_error = |code: &str, what: &str| {
            JobError::new(code, format!("{} {what}", meta.provider.as_str()))
        };
        let e = match refusal {
            StartError::RateLimited(after) => {
                // Not started: back to pending, and the message waits the provider's hint in
                // the queue (a new message: a long rate-limit episode never reaches the DLQ).
                self.jobs.release_submit(job_id, index, owner).await?;
                let after = after.max(t.prepared.interval);
                return match self
                    .queue
                    .send_delayed(SubmitChunk::start(job_id, index), after)
                    .await
                {
                    Ok(_) => Ok(Submitted::Deferred(after)),
                    Err(e) => Ok(Submitted::Retry(format!("rate limited; {e}"))),
                };
            }
            StartError::NotSent(m) => {
                self.jobs.release_submit(job_id, index, owner).await?;
                return Ok(Submitted::Retry(m));
            }
            StartError::Unconfirmed(m) => {
                // Unless a webhook adopted the chunk meanwhile, it waits for one: checked again
                // after the confirmation timeout.
                if self
                    .jobs
                    .mark_unconfirmed(job_id, index, Some(owner))
                    .await?
                {
                    self.schedule_check(job_id, index, self.confirm_timeout)
                        .await?;
                }
                return Ok(Submitted::Unconfirmed(m));
            }
            StartError::OutOfCredits => job_error(
                reasons::CREDITS_INSUFFICIENT,
                "reports insufficient credits",
            ),
            StartError::Unauthorized => {
                job_error(reasons::PROVIDER_UNAUTHORIZED, "refused the API key")
            }
            StartError::Rejected {
                per_contact: true, ..
            } if t.chunk.count > 1 => return self.split(t).await,
            StartError::Rejected {
                message,
                per_contact: true,
            } => JobError::new(reasons::REJECTED_BY_PROVIDER, message),
            StartError::Rejected {
                message,
                per_contact: false,
            } => JobError::new(reasons::PROVIDER_REJECTED, message),
        };
        // A refusal of the job as a whole stops its other chunks too.
        if e.code != reasons::REJECTED_BY_PROVIDER {
            self.jobs.set_job_error(job_id, &e).await?;
        }
        // Refused: the provider did not take it, and charged nothing.
        self.fail(meta, &t.chunk, &t.prepared.contacts, e, Some(0.0))
            .await
    }

    /// One contact (or a few) spoils the request: halves, recursively, so only the contacts the
    /// provider refuses end failed.
    async fn split(&self, t: &Taken) -> Result<Submitted, StoreError> {
        let job_id = &t.prepared.meta.job_id;
        let halves = match self.jobs.split_chunk(job_id, &t.chunk, &t.owner).await {
            Ok(h) => h,
            Err(StoreError::Conflict(_)) => return Ok(Submitted::Skipped),
            Err(e) => return Err(e),
        };
        // The parent never started: its reservation goes back before its halves reserve theirs
        // (a retry of this message finds it split and releases it then, `only_pending`).
        self.jobs
            .release_credits(job_id, t.chunk.index, 0.0)
            .await?;
        let parts: Vec<ChunkIndex> = halves.iter().map(|c| c.index).collect();
        for part in &parts {
            if let Err(e) = self.queue.send(SubmitChunk::start(job_id, *part)).await {
                // The halves are recorded `pending`; a retry of this message finds the parent
                // split and the job's Idempotency-Key retry re-queues pending chunks.
                return Ok(Submitted::Retry(format!("queueing a half: {e}")));
            }
        }
        Ok(Submitted::Split(parts))
    }

    /// Whether a chunk still pending can no longer start in time: the job's deadline (its own
    /// `options.deadline_hours`, else the configured one) counted from its creation passed.
    fn start_deadline_passed(&self, meta: &JobMeta) -> bool {
        // A later waterfall step's chunks come when the step before passes contacts on: its
        // wait counts from the last of them (a pass-on sets `updated_at`), not from its creation.
        let since = match &meta.step_of {
            Some(of) if of.position > 0 => meta.updated_at_ms.max(meta.created_at_ms),
            _ => meta.created_at_ms,
        };
        since + meta.deadline(self.deadline).as_millis() as u64 <= now_ms()
    }
}
