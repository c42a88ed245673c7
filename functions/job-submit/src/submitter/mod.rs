//! The chunk submitter ([`ChunkSubmitter`]): one submit message at a time. `start.rs` starts a
//! chunk (prepare → take → send → on refusal), `confirm.rs` checks a start whose answer was
//! lost, `erase.rs` erases a deleted job.

use relay_shared::store::Waterfalls;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use relay_shared::ChunkIndex;
use relay_shared::JobId;
use relay_shared::ProviderId;
use relay_shared::auth::WebhookSecret;
use relay_shared::bodies::BodyStore;
use relay_shared::jobs::{Chunk, ChunkStatus, ContactResult, JobError, JobMeta};
use relay_shared::metrics::{self, Metrics};
use relay_shared::providers::submit::Submitter;
use relay_shared::queue::Queue;
use relay_shared::store::{
    ChunkRef, ChunkUpdate, CreditBudget, JobWriter, Links, RateSchedule, Results, StoreError,
    SubmitLedger,
};

pub use crate::{SubmitAction, SubmitChunk};

mod confirm;
mod erase;
mod start;

pub use erase::ERASE_PER_MESSAGE;
pub use start::{MAX_START_WAIT, START_RESERVE};

/// Starts chunks at the providers' pace, each at most once; erases deleted jobs.
pub struct ChunkSubmitter<J, S, Q, B> {
    pub jobs: J,
    /// The claim-check bucket: a job's erasure deletes its delivery bodies there.
    pub bodies: B,
    pub starter: S,
    /// The submit queue itself: rate-limited starts and confirmation checks wait there, delayed.
    pub queue: Q,
    /// The webhook queue: a job this worker ends asks there for its completion callback
    /// (bulk-fetch makes the attempts; the sweeper would find it due otherwise).
    pub callback_queue: Q,
    pub secret: WebhookSecret,
    pub public_base_url: String,
    /// Minimum time between two FullEnrich requests, over every worker and bulk-fetch.
    pub fullenrich_interval: Duration,
    /// Minimum time between two starts on one Enrow endpoint, over every worker.
    pub enrow_interval: Duration,
    /// How long a worker holds a chunk it is starting; past it, a chunk still `starting` belongs
    /// to a worker that died, and is marked `start_unconfirmed`.
    pub lease: Duration,
    /// How long an unconfirmed start may wait for its webhook.
    pub confirm_timeout: Duration,
    /// How long a job may take: a chunk still pending this long after the job was created
    /// never starts, its contacts end `timed_out` (`JOB_DEADLINE_HOURS`, or the job's own
    /// `options.deadline_hours`).
    pub deadline: Duration,
}

/// What became of one submit message.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// Started now, with this provider id.
    Started(ProviderId),
    /// Already started, being started, or final: nothing to do.
    Skipped,
    /// The start's answer was lost: the chunk waits for its webhook (never re-sent).
    Unconfirmed(String),
    /// The provider refused the chunk as a whole because of a contact: split in halves, queued.
    Split(Vec<ChunkIndex>),
    /// Put back on the queue with a delay (a 429, or a confirmation to check later); the
    /// message in hand is done.
    Deferred(Duration),
    /// The chunk's contacts are failed with this reason.
    Failed(String),
    /// Back to the queue after its visibility timeout (provider unreachable, store unavailable).
    Retry(String),
}

/// A batch of submit messages as one EMF line: starts by outcome.
pub fn starts_metrics(outcomes: &[Submitted]) -> Metrics {
    let mut m = Metrics::new("job-submit-worker");
    for o in outcomes {
        let metric = match o {
            Submitted::Started(_) => metrics::STARTS_ACCEPTED,
            Submitted::Deferred(_) => metrics::STARTS_DEFERRED,
            Submitted::Split(_) | Submitted::Failed(_) => metrics::STARTS_REFUSED,
            Submitted::Unconfirmed(_) => metrics::STARTS_UNCONFIRMED,
            Submitted::Retry(_) => metrics::STARTS_RETRIED,
            Submitted::Skipped => continue,
        };
        m.add(metric, 1);
    }
    m
}

impl<J, S: Submitter, Q: Queue, B: BodyStore> ChunkSubmitter<J, S, Q, B>
where
    J: SubmitLedger + JobWriter + Results + Links + RateSchedule + CreditBudget + Waterfalls,
{
    /// Settles the job when every contact is accounted for; a job that ended here with a
    /// callback URL asks for its callback at once.
    pub(crate) async fn settle(&self, job_id: &JobId) -> Result<(), StoreError> {
        relay_shared::callback::settle_then_ask(
            &self.jobs,
            &self.callback_queue,
            &self.queue,
            job_id,
            None,
        )
        .await?;
        Ok(())
    }

    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let outcomes = futures::future::join_all(event.records.iter().map(|r| async move {
            match serde_json::from_str::<SubmitChunk>(r.body.as_deref().unwrap_or_default()) {
                Ok(m) => self.handle(&m).await,
                Err(_) => {
                    // Not ours to drop: back to the queue, and to its DLQ after maxReceiveCount.
                    tracing::error!(
                        message_id = r.message_id.as_deref(),
                        "unreadable submit message"
                    );
                    Submitted::Retry("unreadable submit message".into())
                }
            }
        }))
        .await;
        let resp = relay_shared::queue::batch_response(&event.records, &outcomes, |o| {
            matches!(o, Submitted::Retry(_))
        });
        starts_metrics(&outcomes).emit();
        resp
    }

    /// Handles one submit message and logs one line.
    pub async fn handle(&self, m: &SubmitChunk) -> Submitted {
        let started = Instant::now();
        let outcome = match m.action {
            SubmitAction::Start => self.try_submit(&m.job_id, m.chunk).await,
            SubmitAction::ConfirmCheck => self.check_unconfirmed(&m.job_id, m.chunk).await,
            SubmitAction::Delete => self.erase(&m.job_id).await,
        }
        .unwrap_or_else(|e| Submitted::Retry(e.to_string()));
        let (what, detail) = match &outcome {
            Submitted::Started(_) => ("started", None),
            Submitted::Skipped => ("skipped", None),
            Submitted::Unconfirmed(r) => ("unconfirmed", Some(r.clone())),
            Submitted::Split(parts) => ("split", Some(format!("{parts:?}"))),
            Submitted::Deferred(d) => ("deferred", Some(format!("{} s", d.as_secs()))),
            Submitted::Failed(r) => ("failed", Some(r.clone())),
            Submitted::Retry(r) => ("retry", Some(r.clone())),
        };
        tracing::info!(
            job_id = %m.job_id,
            chunk = m.chunk.get(),
            action = ?m.action,
            outcome = what,
            detail,
            latency_ms = started.elapsed().as_millis() as u64,
            "chunk submit"
        );
        outcome
    }

    /// Starts one chunk, once.
    pub async fn submit(&self, job_id: &JobId, index: ChunkIndex) -> Submitted {
        self.handle(&SubmitChunk {
            job_id: job_id.clone(),
            chunk: index,
            action: SubmitAction::Start,
        })
        .await
    }

    /// A chunk that ended (or was split) with its reservation still held whole: settled at what
    /// it cost, if that is known (a split parent never started; a failed chunk's cost is
    /// recorded). The repair of a release that a crash or a store error stopped.
    pub(crate) async fn release_ended(
        &self,
        job_id: &JobId,
        chunk: &Chunk,
    ) -> Result<(), StoreError> {
        let held = chunk.reservation.is_some_and(|r| r.settled.is_none());
        let spent = match chunk.status {
            ChunkStatus::Split => Some(0.0),
            s if s.is_final() => chunk.credits,
            _ => None,
        };
        if let Some(spent) = spent.filter(|_| held) {
            self.jobs
                .release_credits(job_id, chunk.index, spent)
                .await?;
        }
        Ok(())
    }

    /// Takes a pending chunk and fails its contacts with the job's error (no start is made).
    pub(crate) async fn fail_pending(
        &self,
        meta: &JobMeta,
        index: ChunkIndex,
        e: JobError,
    ) -> Result<Submitted, StoreError> {
        let owner = uuid::Uuid::new_v4().to_string();
        let Some(chunk) = self
            .jobs
            .begin_fail(&meta.job_id, index, &owner, self.lease.as_millis() as u64)
            .await?
        else {
            return Ok(Submitted::Skipped);
        };
        let contacts = self
            .jobs
            .contacts(&meta.job_id, chunk.offset, chunk.count)
            .await?;
        // Taken from `pending`: never started.
        self.fail(meta, &chunk, &contacts, e, Some(0.0)).await
    }

    /// A chunk the provider will never take: its contacts end `failed` with the reason (so the
    /// job still accounts for every contact), and the job settles. `spent`: what the chunk cost,
    /// when that is known (0: the provider never took it; its reservation goes back whole);
    /// `None`: it may have been billed (an unconfirmed start), and its reservation stays.
    pub(crate) async fn fail(
        &self,
        meta: &JobMeta,
        chunk: &Chunk,
        contacts: &[relay_shared::jobs::Contact],
        e: JobError,
        spent: Option<f64>,
    ) -> Result<Submitted, StoreError> {
        let results = contacts
            .iter()
            .map(|c| ContactResult::failed(c, &e.code))
            .collect();
        let update = ChunkUpdate {
            index: chunk.index,
            status: ChunkStatus::Failed,
            credits: spent,
            error: Some(e.clone()),
        };
        self.jobs
            .store_chunk(&meta.job_id, ChunkRef::from(chunk), results, update)
            .await?;
        // A settle that fails sends the message back; the retry finds the chunk failed and
        // settles again (see `try_submit`).
        self.settle(&meta.job_id).await?;
        Ok(Submitted::Failed(e.code))
    }
}
