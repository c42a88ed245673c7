//! bulk-fetch: every delivery applied exactly once.
//!
//! Per SQS record: decode the envelope → read the body (inline or claim-checked) → parse the event
//! and its identity → dedupe claim → apply (fetch bulk results when the event carries none, map
//! rows to contacts, store results with exact counters) → complete the claim. A retryable failure
//! releases the claim and reports the record in `batchItemFailures`; a delivery that can never be
//! processed is parked in the DLQ with its reason, body intact, and the rest of the batch goes on.

mod deployed;
pub use deployed::DeployedWorker;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use relay_shared::Provider;
use relay_shared::bodies::BodyStore;
use relay_shared::callback::{Attempted, CallbackRequest, CallbackTarget, Callbacks};
use relay_shared::envelope::{Body, Envelope, PollRequest, PollTarget, Signature};
use relay_shared::jobs::{
    Chunk, ChunkStatus, Contact, ContactResult, EnrowFields, JobError, JobMeta, JobStatus,
    Operation, Outcome, RECORD_KEY, from_enrow, from_fullenrich, reasons,
};
use relay_shared::metrics::{self, Metrics};
use relay_shared::now_ms;
use relay_shared::providers::Hook;
use relay_shared::providers::client::{FetchError, ProviderClient};
use relay_shared::providers::enrow::{self, EventKind};
use relay_shared::providers::fullenrich::{self, JobStatus as FeStatus};
use relay_shared::queue::{MAX_DELAY, Queue};
use relay_shared::store::{
    CallbackStore, ChunkRef, ChunkUpdate, Claim, DEFAULT_POLL_AFTER_MS, DedupeStore, JobStore,
    Link, MAX_POLL_EVERY_MS, Orphan, OrphanStore, Slot, StoreError, Stored,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What became of one record. A step that cannot go on returns one as its error (`Retry`,
/// `Parked` or `Deferred`), and `?` carries store and provider failures there.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Applied: `new` results stored, `existing` already there.
    Applied { new: usize, existing: usize },
    /// The same event was applied (or is being applied) already: dropped and counted.
    Duplicate,
    /// Can never be processed: parked in the DLQ with this reason.
    Parked(String),
    /// Failed for now: back to SQS, retried after the visibility timeout.
    Retry(String),
    /// The provider is not ready or rate-limits: the delivery was put back on the queue as a new
    /// message delayed this long (so waiting never uses up its receive count), and this one done.
    /// As the error of a step (`Err(Deferred(at_least, ..))`): to be put back, waiting at least
    /// that long ([`Worker::fail`] does it).
    Deferred(Duration, String),
    /// Waiting for a slot of the provider account's request schedule: put back on the queue
    /// as a new message delayed until a slot is in reach. Nothing was spent, and the wait is
    /// not a provider failure: it neither doubles nor counts towards [`MAX_REQUEUES`].
    Paced(Duration),
    /// A poll that applied nothing: the chunk was final already, or its results are not ready
    /// (its next poll is scheduled), or the provider failed (the sweeper polls again when due).
    Polled(String),
    /// A delivery for a job the caller deleted: dropped, its body kept nowhere.
    Dropped(String),
    /// An event of a global webhook for a search no chunk knows: kept as an orphan
    /// (`GET /orphans`), never parked, never fetched.
    Orphaned,
    /// A poll past the job's deadline: this many contacts of the chunk got no result and are
    /// `timed_out`; the chunk ended.
    TimedOut(usize),
    /// A completion callback message: what its attempt did.
    Callback(Attempted),
}

/// A store failure: retried after the visibility timeout.
impl From<StoreError> for Disposition {
    fn from(e: StoreError) -> Self {
        Disposition::Retry(e.to_string())
    }
}

impl From<FetchError> for Disposition {
    fn from(e: FetchError) -> Self {
        match e {
            // FullEnrich: "Enrichment not ready, try again in 30 seconds".
            FetchError::NotReady => {
                Disposition::Deferred(Duration::ZERO, "results not ready".into())
            }
            FetchError::RateLimited(after) => Disposition::Deferred(
                after.unwrap_or(RATE_LIMIT_WAIT),
                "provider rate limit".into(),
            ),
            FetchError::Retryable(m) => Disposition::Retry(m),
            FetchError::Permanent(m) => Disposition::Parked(m),
        }
    }
}

/// The first wait of a deferred delivery (results not ready, a claim held by another delivery);
/// it doubles with each requeue (to SQS's 15 min). FullEnrich: "try again in 30 seconds".
pub const NOT_READY_WAIT: Duration = Duration::from_secs(30);
/// How long a job may wait for its results after its last chunk started, unless configured
/// (`JOB_DEADLINE_HOURS`) or set per job (`options.deadline_hours`).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// FullEnrich's 429 says "Try again in 1m".
pub const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// After this many delayed requeues (about a day of waiting) a delivery goes back to ordinary SQS
/// retries, and so to the DLQ with its body if its provider never answers.
pub const MAX_REQUEUES: u32 = 100;
/// A FullEnrich GET waits in-process for its slot at most this long; a later slot is waited for
/// in the queue.
const MAX_SLOT_WAIT: Duration = Duration::from_secs(20);

/// How many ids a chunk waiting for its own may have fetched on the word of an unsigned body.
pub const MAX_CANDIDATES: u32 = 3;
/// What a delivery must still have of its invocation after waiting for a request slot: the
/// provider call's own timeout plus this, for the writes that follow it.
const WRITE_RESERVE: Duration = Duration::from_secs(10);
/// The shortest wait in the queue for a request slot (SQS delays are whole seconds).
const PACED_MIN_WAIT: Duration = Duration::from_secs(1);

/// A parsed delivery: the event's identity and what applying it means.
enum Action {
    FullenrichBatch {
        id: String,
        job: fullenrich::Job,
        /// The body carried a valid `X-Signature-SHA1`: its records are FullEnrich's.
        signed: bool,
    },
    FullenrichContact {
        job: fullenrich::Job,
        signed: bool,
    },
    EnrowSingle {
        id: String,
        result: enrow::SingleResult,
        /// The event's top-level `custom` (where `verification_finished` carries it).
        custom: Option<Value>,
        raw: Value,
        credits: Option<f64>,
    },
    EnrowBulk {
        id: String,
        credits: Option<f64>,
        /// The results, when a poll fetched them already (one GET per poll).
        prefetched: Option<enrow::BulkResults>,
    },
}

impl Action {
    /// The Enrow search id an Enrow event names.
    fn enrow_id(&self) -> Option<&str> {
        match self {
            Action::EnrowSingle { id, .. } | Action::EnrowBulk { id, .. } => Some(id),
            _ => None,
        }
    }

    /// One contact's result (or a snapshot of several), written row by row.
    fn is_single_result(&self) -> bool {
        matches!(
            self,
            Action::EnrowSingle { .. } | Action::FullenrichContact { .. }
        )
    }
}

pub struct Worker<J, D, P, B, Q> {
    pub jobs: J,
    pub dedupe: D,
    pub providers: P,
    pub bodies: B,
    pub dead_letters: Q,
    /// Signs and sends completion callbacks.
    pub callbacks: Callbacks,
    /// The webhook queue: where a delivery waits again, delayed, for a provider that is not
    /// ready or rate-limits.
    pub requeue: Q,
    /// One FullEnrich request per this interval for the whole account, shared with the starts:
    /// result GETs reserve their slot in the same schedule (`fullenrich`).
    pub fullenrich_interval: Duration,
    /// The first wait of a deferred delivery ([`NOT_READY_WAIT`] unless configured).
    pub not_ready_wait: Duration,
    /// How long a job waits for its results after its last chunk started, unless the job says
    /// (`options.deadline_hours`): then the contacts still open are `timed_out`.
    pub deadline: Duration,
}

impl<J, D, P, B, Q> Worker<J, D, P, B, Q>
where
    J: JobStore + CallbackStore + OrphanStore,
    D: DedupeStore,
    P: ProviderClient,
    B: BodyStore,
    Q: Queue,
{
    /// Processes a batch concurrently; reports only the records to retry. Prints the batch's
    /// metrics as one EMF line (and one per parked reason).
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let handled = futures::future::join_all(event.records.iter().map(|r| self.handle(r))).await;
        let response = relay_shared::queue::batch_response(&event.records, &handled, |h| {
            matches!(h.disposition, Disposition::Retry(_))
        });
        for line in batch_metrics(&handled, relay_shared::now_ms()) {
            line.emit();
        }
        response
    }

    /// Processes one record (parking it when it can never be processed) and logs one line.
    pub async fn handle_record(&self, record: &SqsMessage) -> Disposition {
        self.handle(record).await.disposition
    }

    async fn handle(&self, record: &SqsMessage) -> Handled {
        let started = std::time::Instant::now();
        let (disposition, env, poll) = self.process(record).await;
        let disposition = match disposition {
            Disposition::Parked(reason) => match self.park(record, &reason, env.as_ref()).await {
                Ok(()) => Disposition::Parked(reason),
                Err(e) => Disposition::Retry(format!("parking failed ({e}); reason: {reason}")),
            },
            d => d,
        };
        let (outcome, detail) = match &disposition {
            Disposition::Applied { .. } => ("applied", None),
            Disposition::Duplicate => ("duplicate", None),
            Disposition::Parked(r) => ("parked", Some(r.as_str())),
            Disposition::Retry(r) => ("retry", Some(r.as_str())),
            Disposition::Deferred(_, r) => ("deferred", Some(r.as_str())),
            Disposition::Paced(_) => ("paced", None),
            Disposition::Polled(r) => ("polled", Some(r.as_str())),
            Disposition::TimedOut(_) => ("timed_out", None),
            Disposition::Dropped(r) => ("dropped", Some(r.as_str())),
            Disposition::Orphaned => ("orphaned", None),
            Disposition::Callback(a) => match a {
                Attempted::Skipped => ("callback_skipped", None),
                Attempted::Delivered { .. } => ("callback_delivered", None),
                Attempted::Failed { why, .. } => ("callback_failed", Some(why.as_str())),
                Attempted::GaveUp { why } => ("callback_given_up", Some(why.as_str())),
                Attempted::LeaseLost => ("callback_lease_lost", None),
            },
        };
        let (new, existing) = match disposition {
            Disposition::Applied { new, existing } => (new, existing),
            _ => (0, 0),
        };
        // A callback request carries no envelope: its job is in the request.
        let callback_job = matches!(disposition, Disposition::Callback(_))
            .then(|| CallbackRequest::from_json(record.body.as_deref().unwrap_or_default()))
            .flatten()
            .map(|c| c.callback.job_id);
        tracing::info!(
            provider = env.as_ref().map(|e| e.provider.as_str()),
            job_id = env
                .as_ref()
                .map(|e| e.job_id.as_str())
                .or(callback_job.as_deref()),
            hook = env.as_ref().map(|e| e.hook.as_str()),
            delivery_id = env.as_ref().map(|e| e.delivery_id.as_str()),
            message_id = record.message_id.as_deref(),
            outcome,
            detail,
            new,
            existing,
            latency_ms = started.elapsed().as_millis() as u64,
            "delivery processed"
        );
        Handled {
            disposition,
            poll,
            received_at_ms: env.map(|e| e.received_at_ms),
        }
    }

    async fn park(
        &self,
        record: &SqsMessage,
        reason: &str,
        env: Option<&Envelope>,
    ) -> Result<(), relay_shared::queue::QueueError> {
        let body = record.body.clone().unwrap_or_default();
        let message_id = record.message_id.clone().unwrap_or_default();
        let job_id = env.map(|e| e.job_id.clone()).unwrap_or_default();
        self.dead_letters
            .send_with_attributes(
                body,
                &[
                    ("reason", reason),
                    ("source_message_id", &message_id),
                    ("job_id", &job_id),
                ],
            )
            .await
            .map(|_| ())
    }

    /// What became of a record, its envelope (a delivery's), and whether it was a poll.
    async fn process(&self, record: &SqsMessage) -> (Disposition, Option<Envelope>, bool) {
        if let Some(poll) = PollRequest::from_json(record.body.as_deref().unwrap_or_default()) {
            return (self.poll(&poll.poll).await, None, true);
        }
        if let Some(ask) = CallbackRequest::from_json(record.body.as_deref().unwrap_or_default()) {
            return (self.callback(&ask.callback).await, None, false);
        }
        let Ok(env) = Envelope::from_json(record.body.as_deref().unwrap_or_default()) else {
            return (
                Disposition::Parked("unreadable envelope".into()),
                None,
                false,
            );
        };
        let disposition = self.process_envelope(&env).await;
        (disposition, Some(env), false)
    }

    async fn process_envelope(&self, env: &Envelope) -> Disposition {
        let raw = match self.body_bytes(env).await {
            Ok(raw) => raw,
            Err(f) => return self.fail(env, f).await,
        };
        let (key, action) = match parse(env, &raw) {
            Ok(parsed) => parsed,
            Err(reason) => return Disposition::Parked(reason),
        };
        // A global webhook's URL names no job: the job is the one a chunk of which is linked to
        // the event's id; an id no chunk knows is an orphan, kept for the user to see.
        let job_id = match (env.hook, action.enrow_id()) {
            (Hook::Global, Some(id)) => {
                match self.jobs.job_of_provider_id(env.provider, id).await {
                    Ok(Some(job_id)) => job_id,
                    Ok(None) => return self.keep_orphan(env, &key, &action, &raw).await,
                    Err(e) => return Disposition::Retry(e.to_string()),
                }
            }
            _ => env.job_id.clone(),
        };
        // Scoped to the job of the URL: a caller holding one job's URL who posts events naming
        // another job's provider ids claims keys of its own job only, and burns nothing of the
        // other job (the event itself is then parked: its id is no chunk of this job). A global
        // event found its job by its id: its key is the one the job's own URL gives it, so the
        // same event on both URLs applies once.
        let key = format!("{job_id}#{key}");
        let meta = match self.jobs.job_head(&job_id).await {
            Ok(Some(meta)) => meta,
            Ok(None) => return Disposition::Parked("unknown job".into()),
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        if meta.deleted {
            // Erased at the caller's request: its data is not kept, not even in the DLQ.
            return self.drop_delivery(env, "the job was deleted").await;
        }
        if meta.provider != env.provider {
            return Disposition::Parked("provider does not match the job".into());
        }

        match self.apply_once(&meta, &key, action, true).await {
            Ok(disposition) => disposition,
            Err(failure) => {
                // The head read first may be a second stale, and a DELETE may come while the
                // delivery is applied: a delivery that failed (its link or chunk erased, say) is
                // dropped if its job is deleted now, never parked or put back with its data.
                if matches!(self.jobs.get_job(&job_id).await, Ok(Some(m)) if m.deleted) {
                    return self
                        .drop_delivery(env, "the job was deleted while its delivery was applied")
                        .await;
                }
                self.fail(env, failure).await
            }
        }
    }

    /// Keeps a global webhook's event for a search no chunk knows as an orphan, once per event
    /// (its claim, `~orphan#<key>`, is no job's: `~` is in no job id). Never parked, never
    /// fetched; its body (a single event's result: contact data) is kept nowhere.
    async fn keep_orphan(
        &self,
        env: &Envelope,
        key: &str,
        action: &Action,
        raw: &[u8],
    ) -> Disposition {
        let claim = format!("~orphan#{key}");
        let owner = uuid::Uuid::new_v4().to_string();
        match self.dedupe.claim(&claim, &owner).await {
            Ok(Claim::Claimed) => {}
            Ok(Claim::Duplicate) => return Disposition::Duplicate,
            Ok(Claim::InProgress) => {
                let wait =
                    Disposition::Deferred(Duration::ZERO, "being kept by another delivery".into());
                return self.fail(env, wait).await;
            }
            Err(e) => return Disposition::Retry(e.to_string()),
        }
        // Parsed once already (`parse`): its name and cost are there.
        let event = enrow::Event::parse(raw).ok();
        let orphan = Orphan {
            provider: env.provider,
            provider_id: action.enrow_id().unwrap_or_default().to_string(),
            event: event
                .as_ref()
                .and_then(|e| e.event.as_ref())
                .map(|k| k.to_string())
                .unwrap_or_default(),
            received_at_ms: env.received_at_ms,
            delivery_id: env.delivery_id.clone(),
            credits: event.and_then(|e| e.credits.cost),
        };
        if let Err(e) = self.jobs.put_orphan(&orphan).await {
            if let Err(e) = self.dedupe.release(&claim, &owner).await {
                tracing::warn!(error = %e, "claim not released; it expires with its lease");
            }
            return Disposition::Retry(e.to_string());
        }
        if let Err(e) = self.dedupe.complete(&claim, &owner).await {
            // Kept; a redelivery keeps it again once the lease runs out (a second orphan).
            tracing::warn!(error = %e, "claim not completed");
        }
        // A claim-checked copy of the body goes (the bucket's lifecycle rule would take it in
        // the end).
        if let Body::Stored { key, .. } = &env.body
            && let Err(e) = self.bodies.delete(key).await
        {
            tracing::warn!(error = %e, "orphan's claim-checked body not deleted");
        }
        Disposition::Orphaned
    }

    /// A delivery for a deleted job: dropped, its claim-checked body (if any) deleted with it.
    async fn drop_delivery(&self, env: &Envelope, why: &str) -> Disposition {
        if let Body::Stored { key, .. } = &env.body
            && let Err(e) = self.bodies.delete(key).await
        {
            // Its job's erasure deletes every body under the job's prefix (or the bucket's
            // lifecycle rule, in the end).
            tracing::warn!(job_id = %env.job_id, error = %e, "dropped delivery's body not deleted");
        }
        Disposition::Dropped(why.into())
    }

    /// Applies the event once. A single result (Enrow single, FullEnrich `contact_finished`)
    /// needs no claim: its row's conditional put is the exactly-once gate, and a copy that finds
    /// its row stored is a duplicate (which also repairs a count or a group its first copy may
    /// have died before writing). A bulk event claims its key (scoped to its job): a copy that
    /// meets a completed claim is a duplicate (`count_duplicate`: a provider's repeat, counted on
    /// the job); one that meets a live claim must wait (`Err(Defer)`): if the holder fails, this
    /// copy is the one that applies it. `Err`: nothing applied, the claim released.
    async fn apply_once(
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
    async fn settle_after(&self, meta: &JobMeta, stored: &Stored) -> Result<(), Disposition> {
        if stored.may_settle(meta.chunk_seq)
            && let Err(e) = self.settle(meta).await
        {
            return Err(Disposition::Retry(format!("job not settled: {e}")));
        }
        Ok(())
    }

    /// A poll of a started chunk whose results have not come (the sweeper's message): one GET by
    /// its provider id, then the results applied under the same key as the notification they
    /// stand for (FullEnrich `fe:batch:{id}:{status}`, Enrow `enrow:{event}:{id}`), so a webhook
    /// and a poll of one completion apply once. Not ready: the next poll waits twice as long,
    /// up to an hour.
    async fn poll(&self, target: &PollTarget) -> Disposition {
        let job_id = target.job_id.as_str();
        let meta = match self.jobs.get_job(job_id).await {
            Ok(Some(meta)) if meta.deleted => {
                return Disposition::Polled("the job was deleted".into());
            }
            Ok(Some(meta)) => meta,
            Ok(None) => return Disposition::Parked("poll of an unknown job".into()),
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let chunk = match self.jobs.chunk(job_id, target.chunk).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Disposition::Parked("poll of an unknown chunk".into()),
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let Some(pid) = chunk
            .provider_id
            .clone()
            .filter(|_| chunk.status == ChunkStatus::Submitted)
        else {
            return Disposition::Polled(format!("chunk is {}", chunk.status.as_str()));
        };
        // The sweeper's take of this poll, once: a second delivery of the same message makes
        // no second GET.
        if let Some(taken) = target.taken_at_ms {
            match self.jobs.claim_poll(job_id, chunk.index, taken).await {
                Ok(true) => {}
                Ok(false) => return Disposition::Polled("this poll was made already".into()),
                Err(e) => return Disposition::Retry(e.to_string()),
            }
        }
        let op = meta.operation;
        let fetched = match meta.provider {
            Provider::Fullenrich => match self.fullenrich_job(op, &pid).await {
                Ok(job) => match job.status.clone() {
                    Some(status) if status.is_terminal() => Ok((
                        format!("fe:batch:{pid}:{}", status.as_str()),
                        // From the provider's API: its records are FullEnrich's.
                        Action::FullenrichBatch {
                            id: pid.clone(),
                            job,
                            signed: true,
                        },
                    )),
                    _ => Err(Disposition::Deferred(
                        Duration::ZERO,
                        "results not ready".into(),
                    )),
                },
                Err(f) => Err(f),
            },
            // A chunk of one contact was started on the single endpoint.
            Provider::Enrow if chunk.count == 1 => {
                match self.providers.enrow_single(op, &pid).await {
                    Ok((result, raw)) => Ok((
                        format!("enrow:{}:{pid}", enrow_event(op, true)),
                        Action::EnrowSingle {
                            id: pid.clone(),
                            custom: result.custom.clone(),
                            result,
                            raw,
                            credits: None,
                        },
                    )),
                    Err(e) => Err(e.into()),
                }
            }
            Provider::Enrow => match self.providers.enrow_bulk(op, &pid).await {
                Ok(bulk) => Ok((
                    format!("enrow:{}:{pid}", enrow_event(op, false)),
                    Action::EnrowBulk {
                        id: pid.clone(),
                        credits: None,
                        prefetched: Some(bulk),
                    },
                )),
                Err(e) => Err(e.into()),
            },
        };
        let result = match fetched {
            Ok((key, action)) => {
                let key = format!("{job_id}#{key}");
                self.apply_once(&meta, &key, action, false).await
            }
            Err(f) => Err(f),
        };
        let failure = match result {
            Ok(Disposition::Duplicate) => {
                return Disposition::Polled("applied already (by its webhook)".into());
            }
            Ok(d) => return d,
            Err(failure) => failure,
        };
        // Nothing came back. Past the job's deadline, the chunk's open contacts time out,
        // whatever the provider answered.
        match self.past_deadline(&meta, &chunk).await {
            Ok(true) => return self.time_out(&meta, &chunk).await,
            Ok(false) => {}
            Err(e) => return Disposition::Retry(e.to_string()),
        }
        let reason = match failure {
            // The provider does not know the id (FullEnrich 404, Enrow "Could not retrieve"):
            // no poll will ever find it, so the chunk ends now with the provider's reason.
            Disposition::Parked(reason) => return self.end_lost(&meta, &chunk, &reason).await,
            // No request slot this time: the chunk stays taken by the sweep until its hold
            // ends, then the next sweep polls it (nothing was spent).
            Disposition::Paced(_) => {
                return Disposition::Polled("waiting for a request slot".into());
            }
            Disposition::Deferred(_, reason) => reason,
            // The sweeper took the chunk until its next due time: it polls again then.
            Disposition::Retry(reason) => return Disposition::Polled(format!("failed: {reason}")),
            other => return Disposition::Polled(format!("failed: {other:?}")),
        };
        // Not ready: the next poll waits twice as long, up to an hour, and not past the chunk's
        // own deadline.
        let every = chunk.poll_every_ms.unwrap_or(DEFAULT_POLL_AFTER_MS);
        let to_deadline = chunk
            .started_at_ms
            .map(|t| (t + self.deadline_of(&meta).as_millis() as u64).saturating_sub(now_ms()))
            .unwrap_or(u64::MAX)
            .max(1000);
        let next = (every * 2).min(MAX_POLL_EVERY_MS).min(to_deadline);
        match self.jobs.poll_later(job_id, chunk.index, next).await {
            Ok(()) => Disposition::Polled(format!("{reason}; next poll in {} s", next / 1000)),
            Err(e) => Disposition::Polled(format!("{reason}; not rescheduled: {e}")),
        }
    }

    /// A poll's provider does not know the chunk's id: its contacts without a result end
    /// `failed` with [`reasons::PROVIDER_LOST`] (results already stored stand), the chunk ends
    /// `failed` with the provider's answer, and the job settles.
    async fn end_lost(&self, meta: &JobMeta, chunk: &Chunk, answer: &str) -> Disposition {
        let job_id = meta.job_id.as_str();
        let contacts = match self.jobs.contacts(job_id, chunk.offset, chunk.count).await {
            Ok(c) => c,
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let results = contacts
            .iter()
            .map(|c| ContactResult::failed(c, reasons::PROVIDER_LOST))
            .collect();
        let update = ChunkUpdate {
            index: chunk.index,
            status: ChunkStatus::Failed,
            credits: None,
            error: Some(JobError::new(
                reasons::PROVIDER_LOST,
                format!("the provider does not know this chunk's id ({answer})"),
            )),
        };
        let stored = match self
            .jobs
            .store_chunk(job_id, ChunkRef::from(chunk), results, update)
            .await
        {
            Ok(s) => s,
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        if let Err(d) = self.settle_after(meta, &stored).await {
            return d;
        }
        tracing::warn!(
            job_id,
            chunk = chunk.index,
            failed = stored.new,
            "poll: the provider does not know the chunk's id; chunk ended"
        );
        Disposition::Polled(format!("ended: {answer}"))
    }

    /// How long this job waits for its results after its last chunk started.
    fn deadline_of(&self, meta: &JobMeta) -> Duration {
        meta.deadline(self.deadline)
    }

    /// Settles the job when its results are all in. If that ended it and it has a callback URL,
    /// the callback is asked for now (else the sweeper finds it due within its interval).
    async fn settle(&self, meta: &JobMeta) -> Result<Option<JobStatus>, StoreError> {
        let settled = self.jobs.settle_job(&meta.job_id).await?;
        if settled.is_some() && meta.callback_url.is_some() {
            let ask = CallbackRequest::new(&meta.job_id, None).to_json();
            if let Err(e) = self.requeue.send(ask).await {
                tracing::warn!(job_id = %meta.job_id, error = %e, "callback not queued: the sweeper will");
            }
        }
        Ok(settled)
    }

    /// One attempt of a job's completion callback, if it is due (see [`relay_shared::callback`]).
    /// A failed attempt is asked for again after its backoff (SQS delays up to 15 minutes;
    /// longer waits are the sweeper's).
    async fn callback(&self, target: &CallbackTarget) -> Disposition {
        let attempted = match self.callbacks.attempt(&self.jobs, target).await {
            Ok(a) => a,
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let job_id = target.job_id.as_str();
        if let Attempted::Failed { next_at, .. } = &attempted {
            let wait = Duration::from_millis(next_at.saturating_sub(now_ms()));
            if wait <= MAX_DELAY {
                let ask = CallbackRequest::new(job_id, Some(*next_at)).to_json();
                if let Err(e) = self.requeue.send_delayed(ask, wait).await {
                    tracing::warn!(job_id, error = %e, "callback retry not queued: the sweeper will");
                }
            }
        }
        Disposition::Callback(attempted)
    }

    /// Whether the job's deadline has passed: every chunk has started (or is final), and the
    /// last one started longer ago than the job's deadline. Cheap while `chunk`'s own start is
    /// recent; then one query of the job's chunks.
    async fn past_deadline(&self, meta: &JobMeta, chunk: &Chunk) -> Result<bool, StoreError> {
        let wait = self.deadline_of(meta).as_millis() as u64;
        let now = now_ms();
        let started = |c: &Chunk| c.started_at_ms.unwrap_or(meta.created_at_ms);
        if started(chunk) + wait > now {
            return Ok(false);
        }
        let mut last = 0;
        for c in self.jobs.chunks(&meta.job_id).await? {
            match c.status {
                ChunkStatus::Submitted => last = last.max(started(&c)),
                s if s.is_final() => last = last.max(c.started_at_ms.unwrap_or(0)),
                // Not started yet (or its start is unconfirmed, which has its own timeout).
                _ => return Ok(false),
            }
        }
        Ok(last + wait <= now)
    }

    /// The deadline passed: the chunk's contacts without a result get a `timed_out`
    /// placeholder (a late result still replaces it, moving the counters exactly), the chunk
    /// ends `failed`, and the job settles (`partially_failed`, or `failed` if nothing came).
    async fn time_out(&self, meta: &JobMeta, chunk: &Chunk) -> Disposition {
        let job_id = meta.job_id.as_str();
        let hours = self.deadline_of(meta).as_secs() / 3600;
        let contacts = match self.jobs.contacts(job_id, chunk.offset, chunk.count).await {
            Ok(c) => c,
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let placeholders = contacts.iter().map(ContactResult::timed_out).collect();
        let update = ChunkUpdate {
            index: chunk.index,
            status: ChunkStatus::Failed,
            credits: None,
            error: Some(JobError::new(
                reasons::TIMED_OUT,
                format!("no results {hours} h after the job's last chunk started"),
            )),
        };
        let stored = match self
            .jobs
            .store_chunk(job_id, ChunkRef::from(chunk), placeholders, update)
            .await
        {
            Ok(s) => s,
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        if stored.may_settle(meta.chunk_seq)
            && let Err(e) = self.settle(meta).await
        {
            return Disposition::Retry(format!("job not settled: {e}"));
        }
        tracing::warn!(
            job_id,
            chunk = chunk.index,
            timed_out = stored.new,
            "deadline passed: open contacts timed out"
        );
        Disposition::TimedOut(stored.new)
    }

    /// What a failure comes to: a deferral is a new, delayed copy of the delivery on the queue
    /// (the receive count of the copy starts at zero); if that cannot be sent, an ordinary retry.
    async fn fail(&self, env: &Envelope, failure: Disposition) -> Disposition {
        match failure {
            Disposition::Paced(wait) => {
                let delay = env.paced_delay(wait).min(relay_shared::queue::MAX_DELAY);
                let mut again = env.clone();
                again.paced = again.paced.saturating_add(1);
                match self.requeue.send_delayed(again.to_json(), delay).await {
                    Ok(_) => Disposition::Paced(delay),
                    Err(e) => Disposition::Retry(format!(
                        "waiting for a request slot; requeue failed: {e}"
                    )),
                }
            }
            Disposition::Deferred(_, r) if env.requeues >= MAX_REQUEUES => {
                Disposition::Retry(format!("{r}; requeued {MAX_REQUEUES} times already"))
            }
            Disposition::Deferred(wait, r) => {
                let backoff = self.not_ready_wait * 2u32.saturating_pow(env.requeues.min(5));
                let delay = wait.max(backoff).min(relay_shared::queue::MAX_DELAY);
                let mut again = env.clone();
                again.requeues += 1;
                match self.requeue.send_delayed(again.to_json(), delay).await {
                    Ok(_) => Disposition::Deferred(delay, r),
                    Err(e) => Disposition::Retry(format!("{r}; requeue failed: {e}")),
                }
            }
            other => other,
        }
    }

    /// Takes the next slot of the account's FullEnrich schedule (shared with the starts) if it
    /// is near enough to wait for here: within [`MAX_SLOT_WAIT`], and early enough that the GET
    /// and the writes after it still fit in the invocation. Otherwise nothing is taken and the
    /// delivery waits in the queue until a slot is in reach (`Paced`): a slot taken is a
    /// request made.
    async fn fullenrich_slot(&self) -> Result<(), Disposition> {
        let reserve = self.providers.timeout() + WRITE_RESERVE;
        let Some(max_wait) = relay_shared::invocation::bounded_wait(MAX_SLOT_WAIT, reserve) else {
            return Err(Disposition::Paced(PACED_MIN_WAIT));
        };
        let interval = self.fullenrich_interval.as_millis() as u64;
        match self
            .jobs
            .take_slot("fullenrich", interval, max_wait.as_millis() as u64)
            .await?
        {
            Slot::At(at) => {
                let wait = Duration::from_millis(at.saturating_sub(now_ms()));
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Slot::Busy { retry_in_ms } => Err(Disposition::Paced(
                Duration::from_millis(retry_in_ms).max(PACED_MIN_WAIT),
            )),
        }
    }

    /// A FullEnrich result GET, paced with every other FullEnrich request of the account.
    async fn fullenrich_job(
        &self,
        op: Operation,
        id: &str,
    ) -> Result<fullenrich::Job, Disposition> {
        self.fullenrich_slot().await?;
        Ok(self.providers.fullenrich_job(op, id).await?)
    }

    async fn body_bytes(&self, env: &Envelope) -> Result<Vec<u8>, Disposition> {
        match &env.body {
            Body::Stored { key, sha256, .. } => {
                let bytes = self
                    .bodies
                    .get(key)
                    .await
                    .map_err(|e| Disposition::Retry(e.to_string()))?;
                if hex::encode(Sha256::digest(&bytes)) != *sha256 {
                    return Err(Disposition::Parked(
                        "claim-checked body does not match its SHA-256".into(),
                    ));
                }
                Ok(bytes)
            }
            inline => inline
                .inline_bytes()
                .expect("inline body")
                .map_err(|_| Disposition::Parked("undecodable body".into())),
        }
    }

    /// The chunk a provider id belongs to. An id not linked yet belongs to a chunk whose start
    /// is unconfirmed (its answer was lost, or has not been recorded yet): the contacts the
    /// delivery names (`rids`: the record keys the relay sent) pick the chunk, which adopts the
    /// id. `single`: whether the event is a single-contact one, when the delivery names no
    /// contact. An id no chunk of this job can have is parked: the URL's job does not own it.
    async fn chunk_of(
        &self,
        meta: &JobMeta,
        provider_id: &str,
        rids: &[u64],
        single: Option<bool>,
    ) -> Result<Link, Disposition> {
        if let Some(link) = self.jobs.find_link(&meta.job_id, provider_id).await? {
            return Ok(link);
        }
        let chunk = self.adopt(meta, provider_id, rids, single).await?;
        Ok(Link::new(chunk, None))
    }

    /// A provider id that is linked to no chunk: the chunk awaiting confirmation of its start
    /// that the delivery names adopts it ([`Self::chunk_of`]).
    async fn adopt(
        &self,
        meta: &JobMeta,
        provider_id: &str,
        rids: &[u64],
        single: Option<bool>,
    ) -> Result<ChunkRef, Disposition> {
        let job_id = meta.job_id.as_str();
        let chunks = self.jobs.chunks(job_id).await?;
        let awaiting: Vec<&Chunk> = chunks
            .iter()
            .filter(|c| c.status.awaits_confirmation() && c.provider_id.is_none())
            .collect();
        let candidate = if rids.is_empty() {
            let fit: Vec<&&Chunk> = awaiting
                .iter()
                .filter(|c| single.is_none_or(|s| (c.count == 1) == s))
                .collect();
            match fit.as_slice() {
                [one] => Some(**one),
                [] => None,
                _ => {
                    return Err(Disposition::Retry(
                        "provider id not linked yet, and several chunks await it".into(),
                    ));
                }
            }
        } else {
            awaiting
                .iter()
                .find(|c| rids.iter().all(|r| c.holds(*r)))
                .copied()
        };
        let Some(chunk) = candidate else {
            return Err(Disposition::Parked(
                "provider id belongs to no chunk of this job".into(),
            ));
        };
        let at = ChunkRef::from(chunk);
        if self
            .jobs
            .link_chunk(job_id, at, provider_id, None, None)
            .await?
        {
            tracing::info!(
                job_id,
                chunk = chunk.index,
                "unconfirmed start adopted by its webhook"
            );
            return Ok(at);
        }
        // Linked meanwhile by the worker that started it, or by a concurrent delivery.
        match self.jobs.find_chunk(job_id, provider_id).await? {
            Some(c) => Ok(c),
            None => Err(Disposition::Parked(
                "provider id belongs to no chunk of this job".into(),
            )),
        }
    }

    /// An id that no chunk of the job is linked to, from a body that cannot vouch for it: it
    /// may be fetched only as a candidate of a chunk still waiting for its id (its start's
    /// answer lost, or not recorded yet), [`MAX_CANDIDATES`] per chunk. Any other is dropped
    /// and counted, and costs the account no request.
    async fn candidate(&self, meta: &JobMeta) -> Result<(), Disposition> {
        let job_id = meta.job_id.as_str();
        let chunks = self.jobs.chunks(job_id).await?;
        for c in chunks
            .iter()
            .filter(|c| c.status.awaits_confirmation() && c.provider_id.is_none())
        {
            if self
                .jobs
                .take_candidate(job_id, c.index, MAX_CANDIDATES)
                .await?
            {
                tracing::info!(
                    job_id,
                    chunk = c.index,
                    "an unknown id fetched as the candidate of a chunk awaiting its id"
                );
                return Ok(());
            }
        }
        Err(Disposition::Dropped(
            "provider id belongs to no chunk of this job".into(),
        ))
    }

    /// The chunk that holds contact `index` now: its planned chunk, or, in a job where chunks
    /// were split, the half that holds it (read only then).
    async fn chunk_index_of(&self, meta: &JobMeta, index: u64) -> Result<u32, Disposition> {
        let planned = (index / meta.chunk_size.max(1)) as u32;
        if meta.chunk_seq <= meta.chunks {
            return Ok(planned);
        }
        let mut at = planned;
        for _ in 0..64 {
            let Some(chunk) = self.jobs.chunk(&meta.job_id, at).await? else {
                break;
            };
            if chunk.status != ChunkStatus::Split {
                return Ok(chunk.index);
            }
            let mut next = None;
            for part in &chunk.parts {
                if let Some(c) = self.jobs.chunk(&meta.job_id, *part).await?
                    && c.holds(index)
                {
                    next = Some(c.index);
                }
            }
            match next {
                Some(n) => at = n,
                None => break,
            }
        }
        Ok(at)
    }

    async fn apply(&self, meta: &JobMeta, action: Action) -> Result<Stored, Disposition> {
        let job_id = meta.job_id.as_str();
        let op = meta.operation;
        match action {
            Action::FullenrichBatch {
                id,
                mut job,
                signed,
            } => {
                let status = job.status.clone().unwrap_or(FeStatus::Other(String::new()));
                let linked = self.jobs.find_chunk(job_id, &id).await?;
                if linked.is_none() && !signed {
                    // Anyone holding the URL could have sent it: an id no chunk knows is fetched
                    // only as one of the few candidates a chunk still waiting for its id allows.
                    self.candidate(meta).await?;
                }
                // The result GET is the source of truth for a body that is not signed (anyone
                // holding the URL could have sent it: it is only a trigger), for a finished
                // batch without its records, and for one not terminal (which the batch webhook
                // should never be). A canceled or out-of-credits batch may rightly carry none.
                let finished_empty = status == FeStatus::Finished
                    && job.data.is_empty()
                    && linked.is_none_or(|c| c.count > 0);
                if !signed || !status.is_terminal() || finished_empty {
                    job = self
                        .fullenrich_job(op, &id)
                        .await
                        .map_err(|f| unknown_to_provider(f, linked.is_some()))?;
                }
                let chunk = match linked {
                    Some(c) => c,
                    None => {
                        let rids: Vec<u64> = job.data.iter().filter_map(fullenrich_rid).collect();
                        self.adopt(meta, &id, &rids, None).await?
                    }
                };
                let status = job.status.clone().unwrap_or(FeStatus::Other(String::new()));
                if !status.is_terminal() {
                    return Err(Disposition::Deferred(
                        Duration::ZERO,
                        format!("enrichment {status}"),
                    ));
                }
                let contacts = self
                    .jobs
                    .contacts(job_id, chunk.offset, chunk.count)
                    .await?;
                let mut results = map_fullenrich(op, &contacts, &job.data);
                let (chunk_status, reason) = match status {
                    FeStatus::Finished => (ChunkStatus::Completed, "missing_from_results"),
                    FeStatus::CreditsInsufficient => {
                        (ChunkStatus::Failed, reasons::CREDITS_INSUFFICIENT)
                    }
                    _ => (ChunkStatus::Failed, reasons::CANCELED),
                };
                let error = (chunk_status == ChunkStatus::Failed).then(|| {
                    JobError::new(reason, format!("FullEnrich ended the enrichment {status}"))
                });
                if let Some(e) = &error {
                    // Out of credits or canceled stops the job: chunks not started yet are not
                    // started (job-submit-worker reads this error before every start).
                    self.jobs.set_job_error(job_id, e).await?;
                    // Records of a job that ran out of credits or was canceled may be present
                    // but empty: those contacts were not enriched, not "not found". A record
                    // that finished with nothing found stays `not_found`.
                    for r in results
                        .iter_mut()
                        .filter(|r| r.outcome == Outcome::NotFound && !fullenrich::finished(&r.raw))
                    {
                        r.outcome = Outcome::Failed;
                        r.reason = Some(reason.to_string());
                    }
                }
                fill_missing(&mut results, &contacts, reason);
                let update = ChunkUpdate {
                    index: chunk.index,
                    status: chunk_status,
                    credits: job.cost.credits,
                    error,
                };
                Ok(self
                    .jobs
                    .store_chunk(job_id, chunk, results, update)
                    .await?)
            }
            Action::FullenrichContact { job, signed } => {
                if !signed {
                    // Not trusted as results: anyone holding the URL could have sent it. The
                    // enrichment's results come with its batch webhook, fetched from the API
                    // when that is unsigned too (a GET now would only answer "in progress").
                    tracing::info!(
                        job_id,
                        "unsigned contact_finished: its results will come from the API"
                    );
                    return Ok(Stored::default());
                }
                let finished: Vec<fullenrich::Record> = job
                    .data
                    .iter()
                    .filter(|r| r.is_finished())
                    .cloned()
                    .collect();
                if finished.is_empty() {
                    return Ok(Stored::default()); // a snapshot with nothing finished yet
                }
                // The contacts the records name, read in one range (a snapshot can name many).
                let rids: Vec<u64> = finished
                    .iter()
                    .filter_map(fullenrich_rid)
                    .filter(|i| *i < meta.contacts)
                    .collect();
                let mut contacts = Vec::new();
                if let (Some(lo), Some(hi)) = (rids.iter().min(), rids.iter().max()) {
                    contacts.extend(
                        self.jobs
                            .contacts(job_id, *lo, hi - lo + 1)
                            .await?
                            .into_iter()
                            .filter(|c| rids.contains(&c.index)),
                    );
                }
                for record in &finished {
                    if fullenrich_rid(record).is_some_and(|i| i < meta.contacts) {
                        continue;
                    }
                    if let Some(id) = &job.id {
                        let chunk = self.chunk_of(meta, id, &[], None).await?.chunk;
                        contacts.extend(
                            self.jobs
                                .contacts(job_id, chunk.offset, chunk.count)
                                .await?,
                        );
                    }
                }
                let mut results = map_fullenrich(op, &contacts, &finished);
                if results.is_empty() {
                    return Err(Disposition::Parked(
                        "contact_finished record maps to no contact".into(),
                    ));
                }
                // A snapshot repeats what earlier deliveries stored: one keys-only query finds
                // those, and only the rest are written.
                let mut existing = 0;
                if results.len() > 1 {
                    let lo = results.iter().map(|r| r.index).min().unwrap_or(0);
                    let hi = results.iter().map(|r| r.index).max().unwrap_or(0);
                    let have = self.jobs.stored_indices(job_id, lo, hi).await?;
                    let before = results.len();
                    results.retain(|r| !have.contains(&r.index));
                    existing = before - results.len();
                }
                // Provisional: the chunk's final result set replaces them. A snapshot's records
                // are stored 8 at a time (most of them are stored already and cost one call).
                let writes = futures::stream::iter(results.into_iter().map(|mut r| async move {
                    r.provisional = true;
                    let chunk_index = self.chunk_index_of(meta, r.index).await?;
                    Ok::<_, Disposition>(
                        self.jobs.store_result(job_id, chunk_index, r, None).await?,
                    )
                }))
                .buffer_unordered(8)
                .collect::<Vec<_>>()
                .await;
                let mut stored = Stored {
                    existing,
                    ..Stored::default()
                };
                for s in writes {
                    let s = s?;
                    stored.new += s.new;
                    stored.existing += s.existing;
                    stored.replaced += s.replaced;
                    stored.write_calls += s.write_calls;
                    stored.awaiting_link |= s.awaiting_link;
                    if stored.final_group.is_none() || s.may_settle(meta.chunk_seq) {
                        stored.final_group = s.final_group.or(stored.final_group);
                    }
                }
                // A signed body is FullEnrich's own: a chunk still waiting for its id (its
                // start's answer was lost) adopts the enrichment it names, so the sweeper can
                // poll it and its batch webhook maps, instead of timing out as unconfirmed.
                if stored.awaiting_link
                    && let Some(id) = &job.id
                {
                    match self.adopt(meta, id, &rids, None).await {
                        Ok(_) => {}
                        Err(d) => {
                            tracing::warn!(job_id, disposition = ?d, "contact_finished did not adopt its chunk")
                        }
                    }
                }
                Ok(stored)
            }
            Action::EnrowSingle {
                id,
                mut result,
                custom,
                mut raw,
                credits,
            } => {
                // The link carries a one-contact chunk's contact (one read for both).
                let link = match self.jobs.find_link(job_id, &id).await? {
                    Some(link) => link,
                    None => {
                        // Not linked: Enrow does not sign, so the body is only a hint. A chunk
                        // still waiting for its id may adopt it once Enrow's own answer for the
                        // id (a GET) names one of its contacts; any other id is dropped.
                        self.candidate(meta).await?;
                        let (fetched, fetched_raw) = self
                            .providers
                            .enrow_single(op, &id)
                            .await
                            .map_err(|e| unknown_to_provider(e.into(), false))?;
                        result = fetched;
                        raw = fetched_raw;
                        let rids: Vec<u64> = result
                            .custom
                            .as_ref()
                            .or(custom.as_ref())
                            .and_then(record_key)
                            .into_iter()
                            .collect();
                        Link::new(self.adopt(meta, &id, &rids, Some(true)).await?, None)
                    }
                };
                let Link { chunk, contact } = link;
                let contact = match contact {
                    Some(c) => c,
                    None => self
                        .jobs
                        .contacts(job_id, chunk.offset, 1)
                        .await?
                        .pop()
                        .ok_or_else(|| Disposition::Parked("chunk has no contact".into()))?,
                };
                let fields = EnrowFields {
                    qualification: result.qualification.as_ref(),
                    email: result.email.as_deref(),
                    number: result.number.as_deref(),
                };
                let stored = from_enrow(op, &contact, fields, raw);
                let update = ChunkUpdate {
                    index: chunk.index,
                    status: ChunkStatus::Completed,
                    credits,
                    error: None,
                };
                Ok(self
                    .jobs
                    .store_result(job_id, chunk.index, stored, Some(update))
                    .await?)
            }
            Action::EnrowBulk {
                id,
                credits,
                prefetched,
            } => {
                let linked = self.jobs.find_chunk(job_id, &id).await?;
                if linked.is_none() {
                    // Enrow does not sign its webhooks: an id no chunk knows is fetched only as
                    // one of the few candidates a chunk still waiting for its id allows.
                    self.candidate(meta).await?;
                }
                let bulk = match prefetched {
                    Some(bulk) => bulk,
                    None => self
                        .providers
                        .enrow_bulk(op, &id)
                        .await
                        .map_err(|e| unknown_to_provider(e.into(), linked.is_some()))?,
                };
                let chunk = match linked {
                    Some(c) => c,
                    None => {
                        let rids: Vec<u64> = bulk
                            .rows()
                            .filter_map(|(row, _)| row.custom.as_ref().and_then(record_key))
                            .collect();
                        self.adopt(meta, &id, &rids, Some(false)).await?
                    }
                };
                let contacts = self
                    .jobs
                    .contacts(job_id, chunk.offset, chunk.count)
                    .await?;
                let failed = bulk.status() == Some(&enrow::BulkStatus::Failed);
                let mut results = map_enrow_bulk(op, &contacts, &bulk);
                let reason = if failed {
                    "provider_failed"
                } else {
                    "missing_from_results"
                };
                fill_missing(&mut results, &contacts, reason);
                let update = ChunkUpdate {
                    index: chunk.index,
                    status: if failed {
                        ChunkStatus::Failed
                    } else {
                        ChunkStatus::Completed
                    },
                    credits: credits.or(bulk.credits_cost()),
                    error: failed.then(|| JobError {
                        code: "provider_failed".into(),
                        message: "Enrow reported the bulk as failed".into(),
                    }),
                };
                Ok(self
                    .jobs
                    .store_chunk(job_id, chunk, results, update)
                    .await?)
            }
        }
    }
}

/// The event's identity (the dedupe key, providers.md §5) and what to do with it. `Err` is the
/// reason a delivery can never be processed.
fn parse(env: &Envelope, raw: &[u8]) -> Result<(String, Action), String> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err("empty body".into());
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_err() {
        return Err("body is not JSON".into());
    }
    match (env.provider, env.hook) {
        (Provider::Fullenrich, Hook::Batch) => {
            let job = fullenrich::parse_batch(raw).map_err(|_| "not a FullEnrich job object")?;
            let id = job.id.clone().ok_or("FullEnrich batch without id")?;
            let status = job
                .status
                .as_ref()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            Ok((
                format!("fe:batch:{id}:{status}"),
                Action::FullenrichBatch {
                    id,
                    job,
                    signed: env.signature == Signature::Verified,
                },
            ))
        }
        (Provider::Fullenrich, Hook::Contact) => {
            let job = fullenrich::parse_contact_finished(raw)
                .map_err(|_| "not a FullEnrich contact_finished body")?;
            if job.data.is_empty() {
                return Err("contact_finished without a record".into());
            }
            let scope = job.id.clone().unwrap_or_else(|| env.job_id.clone());
            // The identity of what the body finishes: the record keys of its finished records
            // (a body may be the whole enrichment, most of it still running); the same snapshot
            // delivered again is the same event, a later one with more finished is another.
            let mut finished: Vec<String> = job
                .data
                .iter()
                .filter(|r| r.is_finished())
                .map(|record| {
                    record.custom_str(RECORD_KEY).unwrap_or_else(|| {
                        let input = record.raw.get("input").cloned().unwrap_or(Value::Null);
                        hex::encode(Sha256::digest(input.to_string().as_bytes()))
                    })
                })
                .collect();
            finished.sort();
            let record_key = match finished.as_slice() {
                [one] => one.clone(),
                [] => format!("none:{}", hex::encode(Sha256::digest(raw))),
                many => hex::encode(Sha256::digest(many.join(",").as_bytes())),
            };
            Ok((
                format!("fe:contact:{scope}:{record_key}"),
                Action::FullenrichContact {
                    job,
                    signed: env.signature == Signature::Verified,
                },
            ))
        }
        (Provider::Enrow, _) => {
            let event = enrow::Event::parse(raw).map_err(|_| "not an Enrow event")?;
            let kind = event.event.clone().ok_or("Enrow event without a name")?;
            if let EventKind::Other(name) = &kind {
                return Err(format!("unknown Enrow event {name:?}"));
            }
            let id = event.id.clone().ok_or("Enrow event without id")?;
            let key = format!("enrow:{kind}:{id}");
            let credits = event.credits.cost;
            if kind.is_bulk() {
                return Ok((
                    key,
                    Action::EnrowBulk {
                        id,
                        credits,
                        prefetched: None,
                    },
                ));
            }
            let result = event
                .single_result()
                .ok_or("Enrow single event without a result")?;
            let raw: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
            Ok((
                key,
                Action::EnrowSingle {
                    id,
                    result,
                    custom: event.custom.clone(),
                    raw,
                    credits,
                },
            ))
        }
        (Provider::Fullenrich, Hook::Event | Hook::Global) => Err("no such FullEnrich hook".into()),
    }
}

/// A GET the provider answered "no such id": for an id no chunk was linked to (a candidate
/// fetched on an unsigned body's word) the delivery is dropped and counted, never parked with
/// its body; for a linked one it stays what it was.
fn unknown_to_provider(failure: Disposition, linked: bool) -> Disposition {
    match failure {
        Disposition::Parked(reason) if !linked => {
            Disposition::Dropped(format!("the provider does not know the id ({reason})"))
        }
        other => other,
    }
}

/// The Enrow event that announces an operation's results (providers.md §3.3).
fn enrow_event(op: Operation, single: bool) -> EventKind {
    match (op, single) {
        (Operation::EmailVerify, true) => EventKind::VerificationFinished,
        (Operation::EmailVerify, false) => EventKind::BulkVerificationFinished,
        (Operation::PhoneFind, true) => EventKind::SinglePhoneSearchFinished,
        (Operation::PhoneFind, false) => EventKind::BulkPhoneSearchFinished,
        (_, true) => EventKind::SingleSearchFinished,
        (_, false) => EventKind::BulkSearchFinished,
    }
}

/// The record key (contact index) the relay sent as `custom`, however it came back: a string
/// (`"7"`), a number, an object with `rid`, or that object serialized to a string.
fn record_key(custom: &Value) -> Option<u64> {
    match custom {
        Value::String(s) => s.trim().parse().ok().or_else(|| {
            serde_json::from_str::<Value>(s)
                .ok()
                .filter(Value::is_object)
                .as_ref()
                .and_then(record_key)
        }),
        Value::Number(n) => n.as_u64(),
        Value::Object(o) => o.get(RECORD_KEY).and_then(record_key),
        _ => None,
    }
}

/// The contact index a FullEnrich record names (`custom.rid`).
fn fullenrich_rid(record: &fullenrich::Record) -> Option<u64> {
    record.custom_str(RECORD_KEY).and_then(|r| r.parse().ok())
}

/// Maps FullEnrich records to contacts: by the record key the relay put in `custom`, else by input
/// (email for reverse lookups; LinkedIn URL, else name + domain). Order does not matter.
fn map_fullenrich(
    op: Operation,
    contacts: &[Contact],
    records: &[fullenrich::Record],
) -> Vec<ContactResult> {
    let by_index: HashMap<u64, &Contact> = contacts.iter().map(|c| (c.index, c)).collect();
    let norm = |s: Option<&str>| s.map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase());
    let mut out: HashMap<u64, ContactResult> = HashMap::new();
    for record in records {
        let by_key = record
            .custom_str(RECORD_KEY)
            .and_then(|r| r.parse::<u64>().ok())
            .and_then(|i| by_index.get(&i).copied());
        let contact = by_key.or_else(|| {
            let input = &record.input;
            contacts.iter().find(|c| match op {
                Operation::ReverseEmail => {
                    norm(input.email.as_deref()).is_some()
                        && norm(input.email.as_deref()) == norm(c.field("email"))
                }
                _ => {
                    let li = norm(input.professional_network_url.as_deref());
                    if li.is_some() && li == norm(c.field("linkedin_url")) {
                        return true;
                    }
                    norm(input.first_name.as_deref()).is_some()
                        && norm(input.first_name.as_deref()) == norm(c.field("first_name"))
                        && norm(input.last_name.as_deref()) == norm(c.field("last_name"))
                        && (norm(input.company_domain.as_deref()) == norm(c.field("domain"))
                            || norm(input.company_name.as_deref()) == norm(c.field("company_name")))
                }
            })
        });
        match contact {
            Some(c) if !out.contains_key(&c.index) => {
                out.insert(c.index, from_fullenrich(op, c, record));
            }
            Some(_) => {}
            None => tracing::warn!("a FullEnrich record maps to no contact of its chunk"),
        }
    }
    let mut v: Vec<_> = out.into_values().collect();
    v.sort_by_key(|r| r.index);
    v
}

/// Maps Enrow bulk rows to contacts: verification rows by email (their index is a UUID), others
/// by `index` (position in the chunk), else by the record key sent as `custom`.
fn map_enrow_bulk(
    op: Operation,
    contacts: &[Contact],
    bulk: &enrow::BulkResults,
) -> Vec<ContactResult> {
    let offset = contacts.first().map(|c| c.index).unwrap_or(0);
    let mut by_email: HashMap<String, Vec<&Contact>> = HashMap::new();
    if op == Operation::EmailVerify {
        for c in contacts {
            if let Some(e) = c.field("email") {
                by_email
                    .entry(e.trim().to_ascii_lowercase())
                    .or_default()
                    .push(c);
            }
        }
    }
    let mut out: HashMap<u64, ContactResult> = HashMap::new();
    let mut unmapped = 0usize;
    for (row, raw) in bulk.rows() {
        let targets: Vec<&Contact> = if op == Operation::EmailVerify {
            row.email
                .as_deref()
                .and_then(|e| by_email.get(&e.trim().to_ascii_lowercase()))
                .cloned()
                .unwrap_or_default()
        } else {
            let from_custom = || match &row.custom {
                Some(Value::String(s)) => s.parse::<u64>().ok(),
                Some(Value::Object(o)) => o.get(RECORD_KEY).and_then(|v| match v {
                    Value::String(s) => s.parse().ok(),
                    other => other.as_u64(),
                }),
                Some(Value::Number(n)) => n.as_u64(),
                _ => None,
            };
            let by_position = row
                .index
                .as_deref()
                .and_then(|i| i.parse::<u64>().ok())
                .map(|i| offset + i);
            from_custom()
                .filter(|i| contacts.iter().any(|c| c.index == *i))
                .or(by_position)
                .and_then(|i| contacts.get((i - offset) as usize).filter(|c| c.index == i))
                .into_iter()
                .collect()
        };
        if targets.is_empty() {
            unmapped += 1;
        }
        for c in targets {
            let fields = EnrowFields {
                qualification: row.qualification.as_ref(),
                email: row.email.as_deref(),
                number: row.number.as_deref(),
            };
            out.entry(c.index)
                .or_insert_with(|| from_enrow(op, c, fields, raw.clone()));
        }
    }
    if unmapped > 0 {
        tracing::warn!(
            unmapped,
            "Enrow bulk rows that map to no contact of their chunk"
        );
    }
    let mut v: Vec<_> = out.into_values().collect();
    v.sort_by_key(|r| r.index);
    v
}

/// Every contact of the chunk without a result gets a `failed` one with `reason`, so the job
/// accounts for every contact.
fn fill_missing(results: &mut Vec<ContactResult>, contacts: &[Contact], reason: &str) {
    let have: HashSet<u64> = results.iter().map(|r| r.index).collect();
    results.extend(
        contacts
            .iter()
            .filter(|c| !have.contains(&c.index))
            .map(|c| ContactResult::failed(c, reason)),
    );
    results.sort_by_key(|r| r.index);
}

/// One record handled: what became of it, whether it was a poll, and when its webhook reached
/// ingest (a delivery's envelope).
pub struct Handled {
    pub disposition: Disposition,
    pub poll: bool,
    pub received_at_ms: Option<u64>,
}

/// A batch's metrics at `now_ms`: one EMF line with the counts (and the end-to-end latency of
/// every delivery that stored results), plus one per reason deliveries were parked for.
pub fn batch_metrics(handled: &[Handled], now_ms: u64) -> Vec<Metrics> {
    let mut line = Metrics::new("bulk-fetch");
    let mut parked: HashMap<String, u64> = HashMap::new();
    for h in handled {
        if h.poll {
            line.add(metrics::POLLS_MADE, 1);
        }
        match &h.disposition {
            Disposition::Applied { new, .. } => {
                line.add(metrics::RESULTS_STORED, *new as u64);
                if h.poll {
                    line.add(metrics::RESULTS_RECOVERED, *new as u64);
                }
                if let Some(at) = h.received_at_ms.filter(|_| *new > 0) {
                    line.observe(
                        metrics::END_TO_END_LATENCY,
                        now_ms.saturating_sub(at) as f64,
                    );
                }
            }
            Disposition::Duplicate => {
                line.add(metrics::DUPLICATES, 1);
            }
            Disposition::Parked(reason) => {
                *parked.entry(metrics::reason_class(reason)).or_insert(0) += 1;
            }
            Disposition::Retry(_) => {
                line.add(metrics::RETRIED, 1);
            }
            Disposition::Deferred(..) | Disposition::Paced(_) => {
                line.add(metrics::DEFERRED, 1);
            }
            Disposition::Dropped(_) => {
                line.add(metrics::DELIVERIES_DROPPED, 1);
            }
            Disposition::Orphaned => {
                line.add(metrics::ORPHANS_KEPT, 1);
            }
            Disposition::Polled(_) => {}
            Disposition::Callback(a) => match a {
                Attempted::Delivered { .. } => {
                    line.add(metrics::CALLBACKS_DELIVERED, 1);
                }
                Attempted::Failed { .. } => {
                    line.add(metrics::CALLBACK_ATTEMPTS_FAILED, 1);
                }
                Attempted::GaveUp { .. } => {
                    line.add(metrics::CALLBACK_ATTEMPTS_FAILED, 1);
                    line.add(metrics::CALLBACKS_GIVEN_UP, 1);
                }
                Attempted::Skipped | Attempted::LeaseLost => {}
            },
            Disposition::TimedOut(contacts) => {
                line.add(metrics::CHUNKS_TIMED_OUT, 1);
                line.add(metrics::CONTACTS_TIMED_OUT, *contacts as u64);
            }
        }
    }
    line.add(metrics::PARKED, parked.values().sum());
    let mut lines = vec![line];
    for (reason, n) in parked {
        let mut m = Metrics::new("bulk-fetch").with_reason(&reason);
        m.add(metrics::PARKED, n);
        lines.push(m);
    }
    lines
}

#[cfg(test)]
mod behaviour_tests;
#[cfg(test)]
mod global_tests;
#[cfg(test)]
mod recovery_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn h(disposition: Disposition, poll: bool, received_at_ms: Option<u64>) -> Handled {
        Handled {
            disposition,
            poll,
            received_at_ms,
        }
    }

    #[test]
    fn a_batch_is_one_metrics_line_plus_one_per_parked_reason() {
        let handled = [
            h(
                Disposition::Applied {
                    new: 3,
                    existing: 1,
                },
                false,
                Some(1_000),
            ),
            h(
                Disposition::Applied {
                    new: 0,
                    existing: 2,
                },
                false,
                Some(1_500),
            ),
            h(
                Disposition::Applied {
                    new: 2,
                    existing: 0,
                },
                true,
                None,
            ),
            h(Disposition::Duplicate, false, Some(1_000)),
            h(Disposition::Parked("unknown job".into()), false, None),
            h(
                Disposition::Parked("poll: HTTP 404 id not found".into()),
                true,
                None,
            ),
            h(Disposition::Parked("unknown job".into()), false, None),
            h(
                Disposition::Deferred(Duration::ZERO, "not ready".into()),
                false,
                None,
            ),
            h(Disposition::Retry("throttled".into()), false, None),
            h(Disposition::TimedOut(7), true, None),
            h(Disposition::Polled("results not ready".into()), true, None),
        ];
        let lines = batch_metrics(&handled, 4_000);
        let v: Value = serde_json::from_str(&lines[0].line(4_000)).unwrap();
        assert_eq!(v["ResultsStored"], 5.0);
        assert_eq!(v["ResultsRecovered"], 2.0, "stored by polls");
        assert_eq!(v["PollsMade"], 4.0);
        assert_eq!(v["Duplicates"], 1.0);
        assert_eq!(v["Parked"], 3.0);
        assert_eq!(
            (v["Deferred"].clone(), v["Retried"].clone()),
            (1.0.into(), 1.0.into())
        );
        assert_eq!(
            (v["ChunksTimedOut"].clone(), v["ContactsTimedOut"].clone()),
            (1.0.into(), 7.0.into())
        );
        assert_eq!(
            v["EndToEndLatency"],
            serde_json::json!([3000.0]),
            "only deliveries that stored something, from the webhook's arrival"
        );
        let mut by_reason: Vec<(String, f64)> = lines[1..]
            .iter()
            .map(|m| {
                let v: Value = serde_json::from_str(&m.line(4_000)).unwrap();
                (
                    v["Reason"].as_str().unwrap().to_string(),
                    v["Parked"].as_f64().unwrap(),
                )
            })
            .collect();
        by_reason.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            by_reason,
            vec![("poll".to_string(), 1.0), ("unknown job".to_string(), 2.0)]
        );
    }
}
