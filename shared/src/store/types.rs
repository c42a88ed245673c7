//! The stores' types: what their traits take and answer, their errors and their constants.

use crate::Provider;
use crate::ids::ContactIndex;
use crate::ids::{ChunkIndex, JobId, ProviderId};
use crate::jobs::{CallbackStatus, Chunk, ChunkStatus, Contact, JobError, JobMeta};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttling, a network failure, a conflicting transaction: worth retrying. `source`: the
    /// SDK's error, when one caused it (its service code and message are in `message`).
    #[error("store unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// An item that cannot be read back (corrupt or from an incompatible version).
    #[error("store data: {0}")]
    Data(String),
    /// A conditional write lost (e.g. the job already exists).
    #[error("condition failed: {0}")]
    Conflict(String),
}

impl StoreError {
    /// Unavailable for a reason of the store's own (no SDK error behind it).
    pub fn unavailable(message: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            message: message.into(),
            source: None,
        }
    }
}

/// Where a provider id's contacts sit in the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub index: ChunkIndex,
    pub offset: u64,
    pub count: u64,
}

impl ChunkRef {
    /// Whether contact `index` is one of this chunk's.
    pub fn holds(&self, index: ContactIndex) -> bool {
        (self.offset..self.offset + self.count).contains(&index.0)
    }
}

impl From<&Chunk> for ChunkRef {
    fn from(c: &Chunk) -> ChunkRef {
        ChunkRef {
            index: c.index,
            offset: c.offset,
            count: c.count,
        }
    }
}

/// A provider id's link: its chunk, and the contact of a one-contact chunk when the link
/// carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub chunk: ChunkRef,
    pub contact: Option<Contact>,
}

impl Link {
    /// The link of `chunk`, carrying `contact` when it is the chunk's one contact (otherwise
    /// nothing: a chunk of several contacts reads them by range).
    pub fn new(chunk: ChunkRef, contact: Option<&Contact>) -> Link {
        let contact = contact
            .filter(|c| chunk.count == 1 && c.index == ContactIndex(chunk.offset))
            .cloned();
        Link { chunk, contact }
    }
}

/// What a new chunk outcome sets on the chunk item.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkUpdate {
    pub index: ChunkIndex,
    pub status: ChunkStatus,
    pub credits: Option<f64>,
    pub error: Option<JobError>,
}

/// What [`CreditBudget::reserve_credits`] made of a chunk's reservation.
///
/// [`CreditBudget::reserve_credits`]: super::CreditBudget::reserve_credits
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reserve {
    /// Reserved now: the budget has that much less left.
    Reserved,
    /// The chunk holds its reservation already (an earlier try of its start): nothing more.
    Held,
    /// It does not fit in what is left (`left`): nothing reserved; the chunk must not start.
    Exhausted { left: f64 },
    /// The chunk is not pending (taken, started or ended meanwhile): nothing reserved.
    NotPending,
    /// The job has no budget: nothing to reserve from.
    Unlimited,
}

/// How many results a [`Results::store_result`] or [`Results::store_chunk`] call added and found already stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub new: usize,
    pub existing: usize,
    /// Provisional rows replaced by the final result set.
    pub replaced: usize,
    pub write_calls: usize,
    /// The group of final chunks this call's chunk joined, when it made the chunk final (or
    /// found it final and made sure it is in its group).
    pub final_group: Option<FinalGroup>,
    /// The chunk the result was counted on is still waiting for its provider id (its start's
    /// answer was lost, or is not recorded yet): a trusted delivery naming the id adopts it.
    pub awaiting_link: bool,
}

impl Stored {
    /// Whether this write may have ended the job: it completed its group of final chunks (by a
    /// head that knew `chunk_seq` chunk indices). A stale `chunk_seq` only asks too early.
    pub fn may_settle(&self, chunk_seq: u64) -> bool {
        self.final_group.is_some_and(|g| g.complete(chunk_seq))
    }
}

/// How many chunk indices share one group of final chunks (`CHUNK#~F<group>`).
pub const FINAL_GROUP: u32 = 128;

/// A group of final chunks as one write left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalGroup {
    pub group: u32,
    /// How many of its chunks are final.
    pub size: u64,
}

impl FinalGroup {
    /// Every chunk index of the group below `chunk_seq` is final.
    pub fn complete(self, chunk_seq: u64) -> bool {
        let first = u64::from(self.group) * u64::from(FINAL_GROUP);
        self.size >= chunk_seq.saturating_sub(first).min(u64::from(FINAL_GROUP))
    }
}

/// A slot of a shared rate schedule ([`RateSchedule::take_slot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Taken: the request may be sent at this time (ms), and must be (or the slot returned).
    At(u64),
    /// Not taken: the schedule is booked further ahead than the caller can wait; a slot is in
    /// reach again in this many ms.
    Busy { retry_in_ms: u64 },
}

/// Where a page of `GET /jobs` stopped: the last head's creation time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsCursor {
    pub created_at_ms: u64,
    pub job_id: JobId,
}

/// A page of a staged job's contacts: from contact `offset`, `count` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub offset: u64,
    pub count: u64,
    /// The SHA-256 of the page's body as sent (hex): the same page again is recognised by it.
    pub sha256: String,
    /// Every contact of the page is written.
    pub complete: bool,
}

/// What [`JobDrafts::put_page`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageWrite {
    /// The page's contacts are written (now, or finished from an attempt that stopped midway).
    Written,
    /// The same page was complete already: nothing written.
    Unchanged,
    /// The offset holds another page (another body).
    Conflict,
    /// The job is not a draft taking pages: started, being started, or deleted.
    Closed,
}

/// How long a draft waits for its start: then it is erased as a DELETE would (the sweeper finds
/// it in the erasure partition). Its deadline counts from its creation, as every job's does.
pub const DRAFT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// What an `Idempotency-Key` was used for before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// This request holds the key: create (or finish creating) this job.
    Owned { job_id: JobId },
    /// Another request holds the key and may still be working: retry after this long.
    InUse { retry_after_ms: u64 },
    /// The key was used with another body.
    Mismatch { job_id: JobId },
    /// An earlier request created this job.
    Created { job_id: JobId },
}

/// What the sweeper found due: a chunk for a poll or for its start, or a job head for its
/// completion callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub job_id: JobId,
    /// The chunk; `None`: the job's completion callback.
    pub chunk: Option<ChunkIndex>,
    /// Its `poll_at` as read (ms): taking it is conditional on it.
    pub poll_at_ms: u64,
    /// What is due.
    pub action: DueAction,
}

/// What a due item asks of the sweeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueAction {
    /// A started chunk whose results have not come: a poll, on the webhook queue.
    Poll,
    /// A chunk not started (its start message lost, or its worker gone) past its start's due
    /// time: a start message again, on the submit queue (a chunk is still started at most
    /// once: only a pending chunk can be taken).
    Start,
    /// A chunk whose start is unconfirmed: its confirmation check again, on the submit queue.
    ConfirmCheck,
    /// The job's completion callback.
    Callback,
    /// A deleted job's erasure, overdue.
    Erase,
}

/// What a series of queries cost, by DynamoDB's rules: each page is charged a read unit per 4 KB
/// of the items it returned (rounded up, at least one), half that when eventually consistent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReadCost {
    pub queries: usize,
    pub items: usize,
    pub bytes: usize,
    pub read_units: f64,
}

/// A callback taken for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackTake {
    /// The job's head as it is now (its attempt already counted).
    pub meta: JobMeta,
    /// Holds the attempt: recording it is conditional on this (`poll_at`).
    pub lease: u64,
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackAttempt {
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why there was no answer (timeout, connection refused), when there was none.
    pub error: Option<String>,
    /// `Delivered`; `Pending` with `next_at`: try again then; `Failed`: given up.
    pub status: CallbackStatus,
    pub next_at: Option<u64>,
}

/// How long an orphan is kept.
pub const ORPHAN_RETENTION_DAYS: u64 = 30;

/// An event no chunk knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Orphan {
    pub provider: Provider,
    /// The provider's id of the search (Enrow `id`).
    pub provider_id: ProviderId,
    /// The event's name (Enrow `event`).
    pub event: String,
    pub received_at_ms: u64,
    /// Which delivery brought it (unique per HTTP request).
    pub delivery_id: String,
    /// What the event says it cost (Enrow `credits.cost`).
    pub credits: Option<f64>,
}

impl Orphan {
    /// Its sort key: newest first is descending.
    pub fn sort_key(&self) -> String {
        format!("{:013}#{}", self.received_at_ms, self.delivery_id)
    }
}

/// Where a page of `GET /orphans` stopped: the last orphan's sort key ([`Orphan::sort_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphansCursor(pub String);

/// Whether a claim was won (the semantics of AWS Powertools' idempotency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This worker owns the event now: apply it, then complete or release.
    Claimed,
    /// Applied already (`COMPLETED`): drop this copy.
    Duplicate,
    /// Being applied by another worker whose lease still runs: this copy must wait and be tried
    /// again (if the holder fails and releases, this copy is the one that applies it).
    InProgress,
}

/// How long after a `DELETE` the sweeper looks for the job's erasure, should its message have
/// been lost (the worker erases a job in seconds to minutes).
pub const ERASE_GRACE: std::time::Duration = std::time::Duration::from_secs(900);

/// How long a job may stay `creating` (its head written, its `POST /jobs` not finished) before
/// the sweeper takes it for abandoned and erases it: well past the `Idempotency-Key` lease, so a
/// retry that takes the job over has long finished or given up.
pub const CREATION_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long a job's items are kept, unless configured (`RESULT_RETENTION_DAYS`).
pub const DEFAULT_RETENTION_DAYS: u64 = 90;

/// How long a started chunk waits for its results before its first poll, unless configured
/// (`POLL_AFTER_SECONDS`).
pub const DEFAULT_POLL_AFTER_MS: u64 = 600_000;

/// The longest interval between two polls of a chunk.
pub const MAX_POLL_EVERY_MS: u64 = 3_600_000;

/// How long a chunk may stay not started (pending, or being started) before the sweeper sends
/// its start message again, unless configured ([`DynamoJobStore::with_start_overdue`]): longer
/// than SQS's longest delay, so a start waiting in the queue for its slot is not doubled.
pub const DEFAULT_START_OVERDUE_MS: u64 = 20 * 60_000;

/// An account's balance as last read ([`super::BalanceCache::cached_balance`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CachedBalance {
    pub credits: Option<f64>,
    pub read_at_ms: Option<u64>,
}

impl CachedBalance {
    /// The figure, when it was read within `max_age_ms` of `now_ms`.
    pub fn fresh(&self, now_ms: u64, max_age_ms: u64) -> Option<f64> {
        let read_at = self.read_at_ms?;
        (now_ms.saturating_sub(read_at) < max_age_ms)
            .then_some(self.credits)
            .flatten()
    }
}
