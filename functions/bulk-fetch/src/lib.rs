//! bulk-fetch: every delivery applied exactly once.
//!
//! Per SQS record: decode the envelope → read the body (inline or claim-checked) → parse the event
//! and its identity → dedupe claim → apply (fetch bulk results when the event carries none, map
//! rows to contacts, store results with exact counters) → complete the claim. A retryable failure
//! releases the claim and reports the record in `batchItemFailures`; a delivery that can never be
//! processed is parked in the DLQ with its reason, body intact, and the rest of the batch goes on.

mod chunk;
mod deployed;
mod disposition;
mod event;
mod gate;
mod message;
mod orphan;
mod poll;
mod providers;
mod requeue;

pub(crate) use chunk::fill_missing;
pub use deployed::DeployedWorker;
pub(crate) use disposition::Failure;
pub use disposition::{Disposition, Handled, batch_metrics};
pub(crate) use event::{Action, EventKey, parse};
pub(crate) use providers::record_key;

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use relay_shared::bodies::BodyStore;
use relay_shared::callback::CallbackSender;
use relay_shared::envelope::Envelope;
use relay_shared::providers::client::ProviderClient;
use relay_shared::queue::Queue;
use relay_shared::store::{CallbackStore, DedupeStore, JobStore, OrphanStore, Waterfalls};

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

/// What a worker runs on, bound once: its jobs store, dedupe claims, provider client, body store
/// and queues. A tuple of the five implements it ([`Worker`]); each stage is an
/// `impl<S: Deps> FetchWorker<S>`.
pub trait Deps {
    type Jobs: JobStore + Waterfalls + CallbackStore + OrphanStore;
    type Dedupe: DedupeStore;
    type Providers: ProviderClient;
    type Bodies: BodyStore;
    type Queue: Queue;
}

impl<J, D, P, B, Q> Deps for (J, D, P, B, Q)
where
    J: JobStore + Waterfalls + CallbackStore + OrphanStore,
    D: DedupeStore,
    P: ProviderClient,
    B: BodyStore,
    Q: Queue,
{
    type Jobs = J;
    type Dedupe = D;
    type Providers = P;
    type Bodies = B;
    type Queue = Q;
}

/// bulk-fetch on its jobs store `J`, dedupe claims `D`, providers `P`, bodies `B` and queues
/// `Q`, built as a struct: `Worker { jobs, dedupe, .. }`.
pub type Worker<J, D, P, B, Q> = FetchWorker<(J, D, P, B, Q)>;

pub struct FetchWorker<S: Deps> {
    pub jobs: S::Jobs,
    pub dedupe: S::Dedupe,
    pub providers: S::Providers,
    pub bodies: S::Bodies,
    pub dead_letters: S::Queue,
    /// Signs and sends completion callbacks.
    pub callback_sender: CallbackSender,
    /// The webhook queue: where a delivery waits again, delayed, for a provider that is not
    /// ready or rate-limits.
    pub requeue: S::Queue,
    /// The submit queue: a waterfall step's new chunks are asked to start there.
    pub submit: S::Queue,
    /// One FullEnrich request per this interval for the whole account, shared with the starts:
    /// result GETs reserve their slot in the same schedule (`fullenrich`).
    pub fullenrich_interval: Duration,
    /// The first wait of a deferred delivery ([`NOT_READY_WAIT`] unless configured).
    pub not_ready_wait: Duration,
    /// How long a job waits for its results after its last chunk started, unless the job says
    /// (`options.deadline_hours`): then the contacts still open are `timed_out`.
    pub deadline: Duration,
}

impl<S: Deps> FetchWorker<S> {
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
        let processed = self.process(record).await;
        let env = processed.envelope;
        let disposition = match processed.disposition {
            Disposition::Parked(reason) => match self.park(record, &reason, env.as_ref()).await {
                Ok(()) => Disposition::Parked(reason),
                Err(e) => Disposition::Retry(format!("parking failed ({e}); reason: {reason}")),
            },
            d => d,
        };
        let (new, existing) = match disposition {
            Disposition::Applied { new, existing } => (new, existing),
            _ => (0, 0),
        };
        tracing::info!(
            provider = env.as_ref().map(|e| e.provider.as_str()),
            job_id = processed.job_id.as_deref(),
            hook = env.as_ref().map(|e| e.hook.as_str()),
            delivery_id = env.as_ref().map(|e| e.delivery_id.as_str()),
            message_id = record.message_id.as_deref(),
            outcome = disposition.label(),
            detail = disposition.detail(),
            new,
            existing,
            latency_ms = started.elapsed().as_millis() as u64,
            "delivery processed"
        );
        Handled {
            disposition,
            poll: processed.poll,
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
    use serde_json::Value;

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
