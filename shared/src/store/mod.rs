//! The stores: their traits, by role, over two backends: DynamoDB ([`DynamoJobStore`] on the jobs
//! table, [`DynamoDedupe`] on the dedupe table) and, with feature `memory`, the in-memory twins
//! ([`memory`]) that behaviour tests run on. The [`contract`] suite holds both to one set of cases.
//!
//! | trait | role |
//! |---|---|
//! | [`Jobs`] | a job's head, chunks and contacts, and its error |
//! | [`Results`] | results and their counters; a job settling |
//! | [`Links`] | provider ids linked to their chunks |
//! | [`Polls`] | a started chunk's polls |
//! | [`RateSchedule`] | rate schedules shared by every worker |
//! | [`CreditBudget`] | a job's credit budget: reservations before starts, released on real cost |
//! | [`JobStore`] | the five above but the budget: what a delivery's worker needs |
//! | [`JobWriter`], [`JobDrafts`] | `POST /jobs`, listing, `DELETE`; staged jobs' pages and start |
//! | [`SubmitLedger`] | a chunk's start under its lease; a job's erasure |
//! | [`IdempotencyKeys`] | `Idempotency-Key`s of `POST /jobs` |
//! | [`DueIndex`] | the sweeper's view of what is due |
//! | [`CallbackStore`] | completion callbacks' state |
//! | [`OrphanStore`] | events of a global webhook no chunk knows |
//! | [`BalanceCache`] | the providers' account balances, read at most once a minute |
//! | [`DedupeStore`] | one claim per delivery identity (the dedupe table) |
//!
//! Jobs table items, all under `pk = JOB#<job_id>`:
//!
//! | sk | what |
//! |---|---|
//! | `META` | the job: status; its budget (`max_credits`, and `cr_left`: what no reservation holds); its figures (`done`, `found`, `not_found`, `failed`) once it ended; `creating` while `POST /jobs` writes the rest (written first, in the `due` index's erasure partition until the mark is cleared) |
//! | `CHUNK#<index:05>` | one provider request: offset, count, provider id, status, credits, its reservation (`cr_hold`, and `cr_spent` once settled), and what its results count (`c_done`, `c_found`, `c_not_found`, `c_failed`) |
//! | `CHUNK#~F<group:05>` | the final chunks of indices `128·group ..`: a number set `f` |
//! | `CHUNK#~D<shard>` | duplicate deliveries, counted on one of 8 shards (`n`) |
//! | `PID#<provider_id>` | provider id → chunk (index, offset, count), written with the id; `gpid` (the id) puts it in the sparse `provider_ids` index, where a global webhook's event finds its job |
//! | `CONTACT#<index:07>` | the contact as submitted, with the caller's `custom` |
//! | `PAGE#<offset:07>` | a staged job's page of contacts from `offset`: its count, its body's hash, whether its contacts are all written ([`JobDrafts`]) |
//! | `RESULT#<index:07>` | the contact's result; written once, first write wins |
//!
//! And one partition outside the jobs: `pk = ORPHANS`, `sk = <received_at_ms:013>#<delivery_id>`,
//! an event of a global webhook no chunk knows ([`Orphan`]), kept [`ORPHAN_RETENTION_DAYS`] days.
//! And one item per provider account: `pk = ACCOUNT#<provider>`, `sk = BALANCE`, its balance as
//! last read (`credits`, `read_at`) and when its last read was claimed (`claimed_at`)
//! ([`BalanceCache`]).
//!
//! No item is written by every result of a job. Counters live on the chunks and a running job's
//! figures are summed on read ([`Jobs::job_view`]); the job settles when every chunk is
//! final, and its head then keeps the sums. Counters stay exact under replays and crashes:
//! - a single result's row is a conditional put, the exactly-once gate (no dedupe claim); its
//!   chunk's counters then move in one conditional update that also adds the contact to the
//!   chunk's `seen` set, so a redelivery that finds its row stored counts it only if that update
//!   never happened; a result that replaces a provisional row moves them by the difference in
//!   one transaction with the row;
//! - a bulk set holds its chunk (a lease), writes the missing rows with BatchWriteItem, then sets
//!   the chunk's counters to what it holds and releases it, in one conditional update;
//! - a chunk that became final is added to its group's `f` set (idempotent); whoever completes a
//!   group checks the job ([`Results::settle_job`]): every group full, every chunk final, every
//!   contact counted.
//!
//! Files: `mod.rs` the role traits; `credits.rs` the two of what may be spent ([`CreditBudget`],
//! [`BalanceCache`]); `types.rs` their types; `counts.rs` result counters and which rows
//! of a result set are written (the one rule of both stores); `dynamo/` the DynamoDB stores, one
//! file per concern; `memory/` (feature `memory`) the in-memory twins, split the same way;
//! `contract/` (feature `memory`) the cases both must pass.

use std::collections::HashSet;
use std::future::Future;

use crate::Provider;
use crate::ids::ContactIndex;
use crate::ids::{ChunkIndex, JobId, ProviderId};
use crate::jobs::{Chunk, Contact, ContactResult, JobError, JobMeta, JobStatus};

#[cfg(feature = "memory")]
pub mod contract;
mod counts;
mod credits;
mod dynamo;
#[cfg(feature = "memory")]
pub mod memory;
mod steps;
mod types;

pub use credits::{BalanceCache, CreditBudget};
pub use dynamo::{
    DynamoDedupe, DynamoJobStore, POLL_SHARDS, chunk_sk, contact_sk, item_size, poll_shard,
    result_sk,
};
pub use steps::{Figures as WaterfallFigures, PassOn, Passed, Waterfalls};
pub use types::{
    CREATION_GRACE, CachedBalance, CallbackAttempt, CallbackTake, ChunkRef, ChunkUpdate, Claim,
    DEFAULT_POLL_AFTER_MS, DEFAULT_RETENTION_DAYS, DEFAULT_START_OVERDUE_MS, DRAFT_TTL, Due,
    DueAction, ERASE_GRACE, FINAL_GROUP, FinalGroup, Idempotency, JobsCursor, Link,
    MAX_POLL_EVERY_MS, ORPHAN_RETENTION_DAYS, Orphan, OrphansCursor, Page, PageWrite, ReadCost,
    Reserve, Slot, StoreError, Stored,
};

/// A job as stored: its head, chunks and contacts, and why it failed.
pub trait Jobs: Send + Sync + 'static {
    /// The job's head. Its figures (`done`, `found`, `not_found`, `failed`, `duplicates`) are
    /// kept only once the job ended; read them with [`Self::job_view`].
    fn get_job(
        &self,
        job_id: &JobId,
    ) -> impl Future<Output = Result<Option<JobMeta>, StoreError>> + Send;
    /// The job with its figures: summed over its chunks while it runs, as settled once it
    /// ended; duplicates summed over their shards.
    fn job_view(
        &self,
        job_id: &JobId,
    ) -> impl Future<Output = Result<Option<JobMeta>, StoreError>> + Send;
    /// The head as a delivery reads it: possibly a second stale (an eventually consistent read,
    /// half the read units), which a delivery can afford: what it needs of the head (provider,
    /// operation, size, chunking) is fixed before any chunk starts. The default reads
    /// [`Self::get_job`].
    fn job_head(
        &self,
        job_id: &JobId,
    ) -> impl Future<Output = Result<Option<JobMeta>, StoreError>> + Send {
        self.get_job(job_id)
    }
    fn contacts(
        &self,
        job_id: &JobId,
        offset: u64,
        count: u64,
    ) -> impl Future<Output = Result<Vec<Contact>, StoreError>> + Send;
    /// One chunk as stored.
    fn chunk(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
    ) -> impl Future<Output = Result<Option<Chunk>, StoreError>> + Send;
    /// Every chunk of the job, in index order.
    fn chunks(&self, job_id: &JobId)
    -> impl Future<Output = Result<Vec<Chunk>, StoreError>> + Send;
    /// [`Self::job_view`] and [`Self::chunks`] together (`GET /jobs/{id}`, which `relay wait`
    /// asks every 2 s): DynamoDB reads the chunk items once for both. The default reads each.
    fn job_with_chunks(
        &self,
        job_id: &JobId,
    ) -> impl Future<Output = Result<Option<(JobMeta, Vec<Chunk>)>, StoreError>> + Send {
        async move {
            let Some(meta) = self.job_view(job_id).await? else {
                return Ok(None);
            };
            Ok(Some((meta, self.chunks(job_id).await?)))
        }
    }
    /// Records why a job (partly) failed; its status settles when every contact is accounted for.
    /// An error that stops the job's starts ([`JobError::stops_submission`]) is never replaced
    /// by one that does not (a cancel stays a cancel), and it fences
    /// [`SubmitLedger::begin_submit`].
    fn set_job_error(
        &self,
        job_id: &JobId,
        error: &JobError,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Results and their counters: a single result, a chunk's set, duplicates, the job's settling.
/// A write whose update ends its chunk and reports what it cost also settles the chunk's
/// reservation ([`CreditBudget::release_reported`]), after the write: a retry of the write
/// settles it if the first try could not.
pub trait Results: Send + Sync + 'static {
    /// Stores one contact's result unless it has one already, and moves its chunk's counters by
    /// exactly it (with `update` applied to the chunk). A result found stored is counted if its
    /// count was lost, and a final chunk is made sure of its group: a redelivery repairs.
    fn store_result(
        &self,
        job_id: &JobId,
        chunk_index: ChunkIndex,
        result: ContactResult,
        update: Option<ChunkUpdate>,
    ) -> impl Future<Output = Result<Stored, StoreError>> + Send;
    /// Stores a chunk's result set: rows not stored yet with BatchWriteItem, then the chunk's
    /// counters set to what it holds, exact under replays, concurrent single results and
    /// attempts that died midway. A job that had ended already gets its figures summed again.
    fn store_chunk(
        &self,
        job_id: &JobId,
        chunk: ChunkRef,
        results: Vec<ContactResult>,
        update: ChunkUpdate,
    ) -> impl Future<Output = Result<Stored, StoreError>> + Send;
    /// The contact indices in `from ..= to` that have a result row (keys only: one small query).
    fn stored_indices(
        &self,
        job_id: &JobId,
        from: ContactIndex,
        to: ContactIndex,
    ) -> impl Future<Output = Result<HashSet<ContactIndex>, StoreError>> + Send;
    fn add_duplicate(&self, job_id: &JobId) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Sets the final status, and the job's figures, once every chunk is final and every contact
    /// counted (rows from per-contact webhooks stay provisional until their batch replaces
    /// them); returns it when it did. Called when a write completed a group of final chunks
    /// ([`Stored::may_settle`]), or to repair.
    fn settle_job(
        &self,
        job_id: &JobId,
    ) -> impl Future<Output = Result<Option<JobStatus>, StoreError>> + Send;
}

/// Provider ids linked to their chunks.
pub trait Links: Send + Sync + 'static {
    /// The chunk a provider id is linked to, with the contact of a one-contact chunk when the
    /// link carries it ([`Self::link_chunk`]): a single result then reads nothing else.
    fn find_link(
        &self,
        job_id: &JobId,
        provider_id: &ProviderId,
    ) -> impl Future<Output = Result<Option<Link>, StoreError>> + Send;
    /// The chunk a provider id is linked to ([`Self::find_link`] without the contact).
    fn find_chunk(
        &self,
        job_id: &JobId,
        provider_id: &ProviderId,
    ) -> impl Future<Output = Result<Option<ChunkRef>, StoreError>> + Send {
        async move { Ok(self.find_link(job_id, provider_id).await?.map(|l| l.chunk)) }
    }
    /// Records a chunk's provider id (and the credits the start reserved) if the chunk is still
    /// waiting for one (`pending`, `starting`, `start_unconfirmed`), then links the id to the
    /// chunk. The chunk write comes first: it is what ends the wait. `false`: the chunk has
    /// another id or moved on without one. `contact`: the chunk's first contact, carried on the
    /// link when it is its only one ([`Link::new`]), so that its result reads it with the link.
    fn link_chunk(
        &self,
        job_id: &JobId,
        chunk: ChunkRef,
        provider_id: &ProviderId,
        credits: Option<f64>,
        contact: Option<&Contact>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The provider's own answer to a start gave `provider_id`, but the chunk was linked to
    /// another id meanwhile (adopted on a wrong guess): the chunk takes the provider's id and
    /// the wrong link goes, so the chunk's real webhooks map. Nothing if the chunk has that id.
    fn correct_link(
        &self,
        job_id: &JobId,
        chunk: ChunkRef,
        provider_id: &ProviderId,
        contact: Option<&Contact>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Counts one fetch of an id no chunk is linked to, made on the word of an unsigned body,
    /// against chunk `index` (one waiting for its id): at most `max` per chunk. Whether this
    /// one was allowed.
    fn take_candidate(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        max: u32,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// A started chunk's polls.
pub trait Polls: Send + Sync + 'static {
    /// A poll found a chunk's results not ready: its next poll comes `every_ms` from now (the
    /// interval, doubled by the caller up to [`MAX_POLL_EVERY_MS`]). Nothing if it is final.
    fn poll_later(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        every_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Takes a poll the sweeper queued for chunk `index` with `poll_at = taken_at_ms`: once.
    /// A second delivery of the same message (SQS delivers at least once) finds it taken and
    /// makes no second GET. Whether this call took it.
    fn claim_poll(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        taken_at_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Rate schedules shared by every worker and function.
pub trait RateSchedule: Send + Sync + 'static {
    /// Takes the next slot of a rate schedule shared by every worker and function (`name`, one
    /// request per `interval_ms`), if it falls within `max_wait_ms` from now: a caller that
    /// could not wait that long takes nothing (the schedule never runs ahead of the requests
    /// that will really be made), and is told when a slot may be in reach again.
    fn take_slot(
        &self,
        name: &str,
        interval_ms: u64,
        max_wait_ms: u64,
    ) -> impl Future<Output = Result<Slot, StoreError>> + Send;
    /// Gives back a slot taken with [`Self::take_slot`] whose request will not be made, when it
    /// is still the last one taken (a later one behind it cannot move). Whether it was.
    fn return_slot(
        &self,
        name: &str,
        at_ms: u64,
        interval_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// What a delivery's worker needs of the jobs table: every role of [`Jobs`], [`Results`],
/// [`Links`], [`Polls`] and [`RateSchedule`] (implemented for any store that has them all).
pub trait JobStore: Jobs + Results + Links + Polls + RateSchedule {}

impl<T: Jobs + Results + Links + Polls + RateSchedule> JobStore for T {}

/// What the jobs API writes and lists, beyond [`JobStore`].
pub trait JobWriter: Jobs {
    /// Writes a new job: its head first, marked `creating` (so that `DELETE` finds it, and the
    /// sweeper erases it past [`CREATION_GRACE`] if this never finishes), then its contacts and
    /// chunks, then it clears the mark. A job `creating` is written again (a retry taking its
    /// `Idempotency-Key` over: nothing of it can have started); `Conflict` for a job id that is
    /// created already, or was deleted.
    fn create_job(
        &self,
        meta: &JobMeta,
        chunks: &[Chunk],
        contacts: &[Contact],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Job heads newest first, `limit` (at most 100) a page, after `cursor`; deleted and expired
    /// jobs are not listed.
    fn list_jobs(
        &self,
        limit: usize,
        cursor: Option<&JobsCursor>,
    ) -> impl Future<Output = Result<(Vec<JobMeta>, Option<JobsCursor>), StoreError>> + Send;
    /// Marks a job deleted (`DELETE /jobs/{id}`): from now on it reads as deleted, calls back no
    /// one (its callback URL and state are removed with the mark, and its callback leaves the
    /// `due` index), and its erasure is due: the sweeper finds it ([`ERASE_GRACE`] on) until
    /// [`SubmitLedger::finish_erasure`]. Marking it again makes its erasure due again. `false`: no
    /// such job, or erased already.
    fn mark_deleted(&self, job_id: &JobId)
    -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Results in contact order from index `from`, at most `limit`.
    fn results(
        &self,
        job_id: &JobId,
        from: ContactIndex,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ContactResult>, StoreError>> + Send;
}

/// Staged jobs (`POST /jobs` with `staged`): a draft head, its contacts added in pages, then its
/// start. A draft starts nothing; its start writes its chunks, then makes it `accepted` under a
/// seal that no page can pass, so the contacts a start planned cannot change under it.
pub trait JobDrafts: JobWriter {
    /// Writes a draft's head (status `draft`, its contact count as planned, no chunk yet), due
    /// for its erasure [`DRAFT_TTL`] on unless it is started first. `Conflict` if the job exists.
    fn create_draft(&self, meta: &JobMeta) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Adds a page of contacts to a draft: the page is claimed by its offset and body hash
    /// (fenced by the head: a draft, not sealed by a start), its contacts written, then the page
    /// marked complete. The same page again finishes what a first attempt left undone, or is
    /// [`PageWrite::Unchanged`]; another body for the same offset is a [`PageWrite::Conflict`].
    fn put_page(
        &self,
        job_id: &JobId,
        page: &Page,
        contacts: &[Contact],
    ) -> impl Future<Output = Result<PageWrite, StoreError>> + Send;
    /// A draft's pages in offset order.
    fn pages(&self, job_id: &JobId) -> impl Future<Output = Result<Vec<Page>, StoreError>> + Send;
    /// Seals a draft for its start, for `lease_ms` (a start that died leaves it to the next):
    /// from now no page is claimed. Returns the seal (its end, ms), or `None`: not a draft, or
    /// deleted, or another start holds it.
    fn seal_draft(
        &self,
        job_id: &JobId,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
    /// Lifts the seal `seal` (the start found pages missing): pages may come again.
    fn unseal_draft(
        &self,
        job_id: &JobId,
        seal: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Writes the draft's chunks (each due for its start, as [`JobWriter::create_job`]'s), then
    /// makes the head `accepted` if `seal` still holds and the job is not deleted; the head
    /// leaves the erasure partition. Whether it did (`false`: another start took over, or a
    /// DELETE came; its chunks were never queued).
    fn start_draft(
        &self,
        job_id: &JobId,
        chunks: &[Chunk],
        seal: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The chunk starter's bookkeeping, beyond [`JobStore`]: a chunk taken for its start under a
/// lease, released when the provider is known not to have it, marked `start_unconfirmed` when
/// its answer is lost, split in halves, counted; and a job's erasure.
pub trait SubmitLedger: Jobs {
    /// Takes a pending chunk for its start: `pending` → `starting`, held by `owner` until
    /// `lease_ms` from now, fenced by the job's head: a job stopped (canceled, out of credits,
    /// its key refused) or deleted before this take has none of its chunks taken, so a cancel
    /// answered before a start can never see that chunk start. `None`: the chunk is not
    /// pending, or the job is stopped.
    fn begin_submit(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        owner: &str,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Option<Chunk>, StoreError>> + Send;
    /// Takes a pending chunk to end it without a start (its job stopped, or its deadline
    /// passed before it could start): [`Self::begin_submit`] without the fence.
    fn begin_fail(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        owner: &str,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Option<Chunk>, StoreError>> + Send;
    /// Puts a chunk `owner` is starting back to `pending` (the provider does not have it).
    fn release_submit(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Marks a chunk being started `start_unconfirmed`: by its `owner`, or by anyone once the
    /// owner's lease ran out. Whether this call marked it.
    fn mark_unconfirmed(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        owner: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// `start_unconfirmed` → `failed`, unless a webhook adopted the chunk meanwhile. Whether
    /// this call ended it.
    fn expire_unconfirmed(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Replaces a chunk `owner` is starting by its two halves (new pending chunks). Returns them.
    fn split_chunk(
        &self,
        job_id: &JobId,
        chunk: &Chunk,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<Chunk>, StoreError>> + Send;
    /// Counts a chunk as submitted; the job moves to `submitting`, or `running` once every chunk
    /// is out. Returns the job's status.
    fn count_submitted(
        &self,
        job_id: &JobId,
    ) -> impl Future<Output = Result<JobStatus, StoreError>> + Send;
    /// Deletes up to `limit` items of a deleted job other than its head, its chunks first (a
    /// result write is conditional on its chunk: once the chunks are gone nothing more of the
    /// job is written); 0: none left.
    fn delete_items(
        &self,
        job_id: &JobId,
        limit: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// Marks deleted a job whose creation was abandoned (still `creating`, past
    /// [`CREATION_GRACE`]), so that its erasure can go on as a `DELETE`'s would. `false`: it is
    /// not `creating` (its creation finished: nothing to abandon).
    fn abandon_creation(
        &self,
        job_id: &JobId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Ends a deleted job's erasure once its items (and claim-checked bodies) are gone: the head
    /// becomes a tombstone (no name, options or callback; `erased`), out of the `due` index.
    fn finish_erasure(&self, job_id: &JobId)
    -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// `Idempotency-Key`s of `POST /jobs`.
pub trait IdempotencyKeys: Send + Sync + 'static {
    /// Claims `key` for the request (`owner`) about to create `job_id`: the first request owns
    /// it until it finishes or its lease (`lease_ms`) runs out; then a retry takes over and
    /// finishes the same job. A key used with another body (`body_sha256`) is a `Mismatch`.
    fn claim_idempotency_key(
        &self,
        key: &str,
        body_sha256: &str,
        job_id: &JobId,
        owner: &str,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Idempotency, StoreError>> + Send;
    /// Ends `owner`'s hold: `created` when the job is recorded and every chunk queued;
    /// otherwise the lease is given up so a retry can take over at once.
    fn finish_idempotency_key(
        &self,
        key: &str,
        owner: &str,
        created: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The sweeper's view of the jobs table (the sparse `due` index): what is due, and taking it.
pub trait DueIndex: Send + Sync + 'static {
    /// Chunks due for a poll at `now_ms`, and job heads whose callback is due, from the sparse
    /// `due` index: one query per shard. A chunk is in the index through its group (the item
    /// that also records the group's final chunks, [`FINAL_GROUP`] chunks a group), so a
    /// result that ends a chunk writes no index entry. A due group's chunks are read (one
    /// query) and its open chunks due now returned; the group is then due again when its next
    /// open chunk is (those returned count as taken for `hold_ms`), or leaves the index once
    /// every chunk it holds is final. Reads follow the due groups, never the rest of the table.
    /// Also what reading them cost ([`ReadCost`]).
    fn due_chunks(
        &self,
        now_ms: u64,
        limit: usize,
        hold_ms: u64,
    ) -> impl Future<Output = Result<(Vec<Due>, ReadCost), StoreError>> + Send;
    /// Deleted jobs whose erasure is due at `now_ms` (not erased yet: the message that asked
    /// for it was lost, or the worker died on it), at most `limit`: one query of the `due`
    /// index's erasure partition (heads enter it with their `DELETE`, and leave it erased).
    fn due_erasures(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Due>, StoreError>> + Send;
    /// Takes a due item for one poll or callback attempt: moves its `poll_at` `hold_ms` on, if
    /// it is still the one read (another sweep, a poll that found the results not ready, or a
    /// callback attempt moved it otherwise). Returns the new `poll_at`: a callback attempt is
    /// taken with it ([`CallbackStore::take_callback`]).
    fn take_due(
        &self,
        due: &Due,
        hold_ms: u64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
}

pub trait CallbackStore: Send + Sync + 'static {
    /// Takes a job's pending callback for one attempt and counts it: `due_at` `None` takes it if
    /// it is due now; `Some(t)` if its due date is still `t` (the one a sweep or a retry set:
    /// of two messages for one due date, one attempt is made). It stays held `lease_ms`, then a
    /// sweep may take it again. `None`: not pending, not due, or taken by another message.
    fn take_callback(
        &self,
        job_id: &JobId,
        due_at: Option<u64>,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Option<CallbackTake>, StoreError>> + Send;

    /// Records the attempt taken with `lease`. `false`: the lease was lost (the attempt took
    /// longer than it, and another was taken).
    fn record_callback(
        &self,
        job_id: &JobId,
        lease: u64,
        attempt: &CallbackAttempt,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

pub trait OrphanStore: Send + Sync + 'static {
    /// The job a chunk of which is linked to `provider_id` at `provider`, if any.
    fn job_of_provider_id(
        &self,
        provider: Provider,
        provider_id: &ProviderId,
    ) -> impl Future<Output = Result<Option<JobId>, StoreError>> + Send;
    /// The head of that job, as [`Jobs::job_head`] reads it: the one read of its job a global
    /// webhook's delivery makes. The default looks the job up, then reads its head.
    fn job_head_of_provider_id(
        &self,
        provider: Provider,
        provider_id: &ProviderId,
    ) -> impl Future<Output = Result<Option<JobMeta>, StoreError>> + Send
    where
        Self: Jobs,
    {
        async move {
            match self.job_of_provider_id(provider, provider_id).await? {
                Some(job_id) => self.job_head(&job_id).await,
                None => Ok(None),
            }
        }
    }
    /// Keeps an orphan [`ORPHAN_RETENTION_DAYS`] days (the caller claims its event once).
    fn put_orphan(&self, orphan: &Orphan) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Orphans newest first, `limit` (at most 100) a page, after `cursor`; expired ones are not
    /// listed.
    fn list_orphans(
        &self,
        limit: usize,
        cursor: Option<&OrphansCursor>,
    ) -> impl Future<Output = Result<(Vec<Orphan>, Option<OrphansCursor>), StoreError>> + Send;
}

pub trait DedupeStore: Send + Sync + 'static {
    fn claim(
        &self,
        key: &str,
        owner: &str,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;
    fn complete(
        &self,
        key: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn release(
        &self,
        key: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
