//! What became of one record ([`Disposition`]): its label for the log line, its metrics; and why
//! a stage could not go on ([`Failure`]), carried by `?` and turned into its disposition here.

use std::collections::HashMap;
use std::time::Duration;

use relay_shared::bodies::BodyStoreError;
use relay_shared::callback::Attempted;
use relay_shared::metrics::{self, Metrics};
use relay_shared::providers::client::FetchError;
use relay_shared::store::StoreError;

use crate::RATE_LIMIT_WAIT;

/// What became of one record. A stage that cannot go on fails with a [`Failure`], which comes to
/// one of these (`Retry`, `Parked`, `Deferred`, `Paced`).
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
    /// Before it is put back (`FetchWorker::put_back` does it): to wait at least that long.
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

impl Disposition {
    /// Its name in the log line (`outcome`).
    pub fn label(&self) -> &'static str {
        match self {
            Disposition::Applied { .. } => "applied",
            Disposition::Duplicate => "duplicate",
            Disposition::Parked(_) => "parked",
            Disposition::Retry(_) => "retry",
            Disposition::Deferred(..) => "deferred",
            Disposition::Paced(_) => "paced",
            Disposition::Polled(_) => "polled",
            Disposition::TimedOut(_) => "timed_out",
            Disposition::Dropped(_) => "dropped",
            Disposition::Orphaned => "orphaned",
            Disposition::Callback(a) => match a {
                Attempted::Skipped => "callback_skipped",
                Attempted::Delivered { .. } => "callback_delivered",
                Attempted::Failed { .. } => "callback_failed",
                Attempted::GaveUp { .. } => "callback_given_up",
                Attempted::LeaseLost => "callback_lease_lost",
            },
        }
    }

    /// Why, when it says (no contact data: reasons are the relay's own words or the provider's
    /// error class).
    pub fn detail(&self) -> Option<&str> {
        match self {
            Disposition::Parked(r)
            | Disposition::Retry(r)
            | Disposition::Deferred(_, r)
            | Disposition::Polled(r)
            | Disposition::Dropped(r) => Some(r),
            Disposition::Callback(Attempted::Failed { why, .. } | Attempted::GaveUp { why }) => {
                Some(why)
            }
            _ => None,
        }
    }

    /// Adds what it counts to a batch's metrics line (parked ones are counted per reason by
    /// [`batch_metrics`]).
    pub fn count(&self, line: &mut Metrics) {
        match self {
            Disposition::Applied { new, .. } => {
                line.add(metrics::RESULTS_STORED, *new as u64);
            }
            Disposition::Duplicate => {
                line.add(metrics::DUPLICATES, 1);
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
            Disposition::Callback(Attempted::Delivered { .. }) => {
                line.add(metrics::CALLBACKS_DELIVERED, 1);
            }
            Disposition::Callback(Attempted::Failed { .. }) => {
                line.add(metrics::CALLBACK_ATTEMPTS_FAILED, 1);
            }
            Disposition::Callback(Attempted::GaveUp { .. }) => {
                line.add(metrics::CALLBACK_ATTEMPTS_FAILED, 1);
                line.add(metrics::CALLBACKS_GIVEN_UP, 1);
            }
            Disposition::TimedOut(contacts) => {
                line.add(metrics::CHUNKS_TIMED_OUT, 1);
                line.add(metrics::CONTACTS_TIMED_OUT, *contacts as u64);
            }
            Disposition::Parked(_) | Disposition::Polled(_) | Disposition::Callback(_) => {}
        }
    }
}

/// Why a stage could not go on, carried by `?`. What it comes to for the record is decided in one
/// place, `From<Failure> for Disposition`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// A store call failed: retried after the visibility timeout.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writes are done but the job did not settle: retried; the retry finds its writes
    /// done, which settles.
    #[error("job not settled: {0}")]
    Settle(StoreError),
    /// A claim-checked body could not be read: retried.
    #[error(transparent)]
    Body(#[from] BodyStoreError),
    /// The provider's GET failed: not ready, rate-limited, failing for now, or refusing for good.
    #[error(transparent)]
    Provider(#[from] FetchError),
    /// No request slot is in reach: the delivery waits in the queue this long (nothing spent).
    #[error("waiting for a request slot")]
    Paced(Duration),
    /// An id not linked yet that several chunks await: retried, by when one has it.
    #[error("provider id not linked yet, and several chunks await it")]
    Unlinked,
    /// The delivery can never be processed: parked with this reason.
    #[error("{0}")]
    Unprocessable(String),
}

impl Failure {
    pub(crate) fn unprocessable(reason: impl Into<String>) -> Failure {
        Failure::Unprocessable(reason.into())
    }
}

/// What a failure comes to: a store or body failure, an unsettled job and an id several chunks
/// await are retried after the visibility timeout; a provider not ready or rate-limiting is
/// deferred (put back on the queue, delayed); a refusal or a delivery that can never be
/// processed is parked.
impl From<Failure> for Disposition {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Store(e) => Disposition::Retry(e.to_string()),
            Failure::Body(e) => Disposition::Retry(e.to_string()),
            Failure::Settle(_) | Failure::Unlinked => Disposition::Retry(f.to_string()),
            // FullEnrich: "Enrichment not ready, try again in 30 seconds".
            Failure::Provider(FetchError::NotReady) => {
                Disposition::Deferred(Duration::ZERO, "results not ready".into())
            }
            Failure::Provider(FetchError::RateLimited(after)) => Disposition::Deferred(
                after.unwrap_or(RATE_LIMIT_WAIT),
                "provider rate limit".into(),
            ),
            Failure::Provider(FetchError::Retryable(m)) => Disposition::Retry(m),
            Failure::Provider(FetchError::Permanent(m)) => Disposition::Parked(m),
            Failure::Paced(wait) => Disposition::Paced(wait),
            Failure::Unprocessable(reason) => Disposition::Parked(reason),
        }
    }
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
        if let Disposition::Parked(reason) = &h.disposition {
            *parked.entry(metrics::reason_class(reason)).or_insert(0) += 1;
        }
        h.disposition.count(&mut line);
        if let Disposition::Applied { new, .. } = h.disposition {
            if h.poll {
                line.add(metrics::RESULTS_RECOVERED, new as u64);
            }
            if let Some(at) = h.received_at_ms.filter(|_| new > 0) {
                line.observe(
                    metrics::END_TO_END_LATENCY,
                    now_ms.saturating_sub(at) as f64,
                );
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
