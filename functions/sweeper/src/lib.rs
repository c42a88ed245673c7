//! The sweeper: on a schedule (EventBridge, every few minutes) it finds in the jobs table's sparse
//! `due` index what is overdue, takes each (its due date moved `hold` on, so the next sweep asks
//! again only if this one's message did nothing) and puts one message for it on the queue whose
//! function acts on it:
//!
//! | due | message | queue |
//! |---|---|---|
//! | a started chunk whose results have not come for `POLL_AFTER_SECONDS` | a poll | webhook (bulk-fetch) |
//! | a chunk not started past its start's due time (its start message lost) | its start | submit (worker) |
//! | a chunk whose start is unconfirmed | its confirmation check | submit |
//! | a job's completion callback | a callback attempt | webhook |
//! | a deleted job not erased, or a creation abandoned | its erasure | submit |
//!
//! Generic over [`DueIndex`], so the rules are tested on the in-memory twin in milliseconds;
//! DynamoDB's own index semantics are `tests/it/poll.rs`'s.

mod deployed;

use std::time::Duration;

use futures::StreamExt;
use relay_shared::callback::CallbackRequest;
use relay_shared::envelope::{PollRequest, SubmitAction, SubmitChunk};
use relay_shared::metrics::{self, Metrics};
use relay_shared::queue::Queue;
use relay_shared::store::{Due, DueAction, DueIndex, ReadCost, StoreError};

pub struct Sweeper<J, Q> {
    pub jobs: J,
    /// The webhook queue: polls and completion callbacks.
    pub queue: Q,
    /// The submit queue: the starts (and confirmation checks) of chunks whose messages were
    /// lost, and a deleted job whose erasure is overdue (its message lost, its worker dead).
    pub submit_queue: Q,
    /// How long a chunk taken for a poll stays out of later sweeps (its poll's time to run).
    pub hold: Duration,
    /// Chunks taken per sweep at most (the rest wait for the next sweep).
    pub limit: usize,
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sweep {
    /// Chunks (and callbacks) found due.
    pub due: usize,
    /// Messages put on a queue for them.
    pub enqueued: usize,
    /// Due items another sweep (or a poll) moved on meanwhile.
    pub skipped: usize,
    /// Messages that could not be queued (the item is due again after `hold`).
    pub failed: usize,
    /// Erasures of deleted jobs (or abandoned creations) asked for.
    pub erasures: usize,
    /// What reading the `due` index cost.
    pub read: ReadCost,
}

impl Sweep {
    /// This sweep as one EMF line; `None` is a sweep that failed (one sweep error).
    pub fn metrics(sweep: Option<&Sweep>) -> Metrics {
        let mut m = Metrics::new("sweeper");
        match sweep {
            Some(s) => {
                m.add(metrics::CHUNKS_DUE, s.due as u64)
                    .add(metrics::POLLS_QUEUED, s.enqueued as u64)
                    .add(metrics::ERASURES_QUEUED, s.erasures as u64)
                    .add(metrics::SWEEP_ERRORS, s.failed as u64);
            }
            None => {
                m.add(metrics::SWEEP_ERRORS, 1);
            }
        }
        m
    }
}

/// What became of one due item.
enum Taken {
    Sent(DueAction),
    Skipped,
    Failed,
}

impl<J: DueIndex, Q: Queue> Sweeper<J, Q> {
    pub async fn sweep(&self) -> Result<Sweep, StoreError> {
        let hold = self.hold.as_millis() as u64;
        let now = relay_shared::now_ms();
        let (mut due, read) = self.jobs.due_chunks(now, self.limit, hold).await?;
        let mut sweep = Sweep {
            due: due.len(),
            read,
            ..Sweep::default()
        };
        due.extend(self.jobs.due_erasures(now, self.limit).await?);
        let outcomes: Vec<Taken> = futures::stream::iter(due)
            .map(|d| self.send(d, hold))
            .buffer_unordered(16)
            .collect()
            .await;
        for o in outcomes {
            match o {
                Taken::Sent(DueAction::Erase) => sweep.erasures += 1,
                Taken::Sent(_) => sweep.enqueued += 1,
                Taken::Skipped => sweep.skipped += 1,
                Taken::Failed => sweep.failed += 1,
            }
        }
        Ok(sweep)
    }

    /// Takes one due item and sends its message.
    async fn send(&self, d: Due, hold: u64) -> Taken {
        let taken = match self.jobs.take_due(&d, hold).await {
            Ok(Some(taken)) => taken,
            Ok(None) => return Taken::Skipped,
            Err(e) => {
                tracing::warn!(job_id = %d.job_id, error = %e, "due item not taken");
                return Taken::Failed;
            }
        };
        let index = d.chunk.unwrap_or_default();
        let (queue, message) = match d.action {
            DueAction::Poll => (
                &self.queue,
                PollRequest::new(&d.job_id, index, d.poll_at_ms)
                    .taken_at(taken)
                    .to_json(),
            ),
            // A chunk whose start message was lost (a failed send, the submit DLQ, a worker
            // gone): its start again, which only a pending chunk can take.
            DueAction::Start => (&self.submit_queue, SubmitChunk::start(&d.job_id, index)),
            DueAction::ConfirmCheck => (
                &self.submit_queue,
                SubmitChunk::message(&d.job_id, index, SubmitAction::ConfirmCheck),
            ),
            // A completion callback due (its message lost, its attempt dead, or its next
            // attempt further off than SQS delays): taken with the new due date.
            DueAction::Callback => (
                &self.queue,
                CallbackRequest::new(&d.job_id, Some(taken)).to_json(),
            ),
            DueAction::Erase => (&self.submit_queue, SubmitChunk::delete(&d.job_id)),
        };
        match queue.send(message).await {
            Ok(_) => Taken::Sent(d.action),
            Err(e) => {
                tracing::warn!(job_id = %d.job_id, action = ?d.action, error = %e, "due message not queued");
                Taken::Failed
            }
        }
    }
}

#[cfg(test)]
mod tests;
