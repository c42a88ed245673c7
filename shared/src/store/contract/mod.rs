//! The stores' contract (feature `memory`): one set of cases over the store traits, each a
//! scenario with its assertions, run on the in-memory twins in shared's unit tests (milliseconds)
//! and on the DynamoDB stores against moto in `tests/it/contract.rs`. A twin that drifts from
//! DynamoDB fails a case; DynamoDB's behaviour is the truth.
//!
//! [`store_contract!`](crate::store_contract) writes one `#[tokio::test]` per case, so a failure
//! is named. Cases: `jobs.rs` (creation, erasure, drafts, idempotency keys), `results.rs`
//! (results and their counters), `starts.rs` (a chunk's start, links, polls, rate schedules,
//! the due index), `budget.rs` (a job's credit budget), `others.rs` (callbacks, orphans, dedupe).

use serde_json::{Map, Value};

use crate::ids::ContactIndex;
use crate::ids::{ChunkIndex, JobId, ProviderId};
use crate::jobs::{
    Chunk, ChunkStatus, Contact, ContactResult, JobMeta, JobStatus, Operation, Outcome,
};
use crate::store::{ChunkRef, ChunkUpdate, JobWriter, Jobs, Results};

mod budget;
mod jobs;
mod others;
mod results;
mod starts;
mod steps;

pub use budget::{
    a_budget_is_reserved_once_and_only_if_it_fits, a_reservation_is_released_once_at_the_real_cost,
    racing_reservations_never_exceed_the_budget,
};
pub use jobs::{
    a_deleted_job_is_erased, a_draft_takes_pages_until_its_start, a_job_is_listed_once_created,
    idempotency_keys_hold_one_job,
};
pub use others::{
    a_balance_read_is_claimed_once_a_period, a_callback_is_taken_once_per_due_date,
    dedupe_claims_hold_with_a_lease, orphans_are_listed_newest_first,
};
pub use results::{
    a_chunk_set_is_written_under_its_chunk, a_failure_never_replaces_a_result,
    a_job_reads_with_its_chunks_as_apart, a_provisional_row_is_replaced_once,
    the_first_final_result_wins,
};
pub use starts::{
    a_chunk_is_taken_for_its_start_once, a_linked_id_finds_its_job, a_poll_is_claimed_once,
    a_start_is_fenced_by_its_job, a_taken_chunk_splits_in_halves, links_follow_their_chunk,
    rate_slots_pace_requests, the_due_index_finds_what_is_due,
    unsigned_fetches_are_counted_per_chunk,
};
pub use steps::{
    a_chunk_passes_its_contacts_on_once, a_step_reserves_from_its_waterfalls_budget,
    a_step_settles_only_closed_and_passed_on, routes_and_rows_read_back,
};

/// What a case may break on purpose: the DynamoDB store through an interceptor, the twin by its
/// switch.
pub trait Faults {
    /// While on, a job's creation fails before its `creating` mark is cleared.
    fn fail_creations(&self, on: bool);
}

impl Faults for crate::store::memory::MemoryJobs {
    fn fail_creations(&self, on: bool) {
        crate::store::memory::MemoryJobs::fail_creations(self, usize::from(on) * 100);
    }
}

/// One `#[tokio::test]` per case of the contract. `jobs`: an expression (it may `.await`) giving
/// a fresh jobs store and its [`Faults`]; `dedupe`: a fresh dedupe store with a 1 s lease.
#[macro_export]
macro_rules! store_contract {
    (jobs: $jobs:expr, dedupe: $dedupe:expr $(,)?) => {
        $crate::store_contract!(@jobs $jobs;
            a_job_is_listed_once_created, a_deleted_job_is_erased,
            a_draft_takes_pages_until_its_start, idempotency_keys_hold_one_job,
            the_first_final_result_wins, a_provisional_row_is_replaced_once,
            a_job_reads_with_its_chunks_as_apart,
            a_chunk_set_is_written_under_its_chunk, a_failure_never_replaces_a_result,
            a_chunk_is_taken_for_its_start_once, a_taken_chunk_splits_in_halves,
            a_start_is_fenced_by_its_job,
            links_follow_their_chunk, a_linked_id_finds_its_job,
            unsigned_fetches_are_counted_per_chunk, a_poll_is_claimed_once, rate_slots_pace_requests,
            the_due_index_finds_what_is_due, a_callback_is_taken_once_per_due_date,
            orphans_are_listed_newest_first, a_budget_is_reserved_once_and_only_if_it_fits,
            a_reservation_is_released_once_at_the_real_cost,
            racing_reservations_never_exceed_the_budget, a_balance_read_is_claimed_once_a_period,
            a_chunk_passes_its_contacts_on_once, routes_and_rows_read_back,
            a_step_settles_only_closed_and_passed_on, a_step_reserves_from_its_waterfalls_budget);
        #[tokio::test]
        async fn dedupe_claims_hold_with_a_lease() {
            let dedupe = $dedupe;
            $crate::store::contract::dedupe_claims_hold_with_a_lease(&dedupe).await;
        }
    };
    (@jobs $jobs:expr; $($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let (store, faults) = $jobs;
            $crate::store::contract::$case(&store, &faults).await;
        }
    )*};
}

/// A provider id.
pub fn pid(id: &str) -> ProviderId {
    ProviderId::new(id)
}

/// A fresh job id.
pub fn job_id() -> JobId {
    JobId::new(format!(
        "job_c{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
}

/// Contact `index` of a test job.
pub fn contact(index: u64) -> Contact {
    let mut fields = Map::new();
    fields.insert("fullname".into(), Value::String(format!("Contact {index}")));
    Contact {
        origin: None,
        index: ContactIndex(index),
        fields,
        custom: Some(serde_json::json!({ "row": index })),
    }
}

/// A new job of `contacts` contacts in chunks of `chunk_size`: its head, chunks and contacts.
pub fn new_job(contacts: u64, chunk_size: u64) -> (JobMeta, Vec<Chunk>, Vec<Contact>) {
    let meta = JobMeta::new(
        job_id(),
        Operation::EmailFind,
        Some("contract".into()),
        JobStatus::Accepted,
        contacts,
        chunk_size,
        Value::Null,
    );
    let chunks = Chunk::plan(contacts, chunk_size);
    let all = (0..contacts).map(contact).collect();
    (meta, chunks, all)
}

/// Creates a new job ([`new_job`]) and returns its head.
pub async fn created<S: JobWriter>(s: &S, contacts: u64, chunk_size: u64) -> JobMeta {
    let (meta, chunks, all) = new_job(contacts, chunk_size);
    s.create_job(&meta, &chunks, &all).await.expect("create");
    meta
}

/// Contact `index`'s result with `outcome`; `provisional` as a per-contact webhook's.
pub fn result(index: u64, outcome: Outcome, provisional: bool) -> ContactResult {
    ContactResult {
        waterfall: None,
        index: ContactIndex(index),
        custom: contact(index).custom,
        outcome,
        email: (outcome == Outcome::Found).then(|| format!("c{index}@example.com")),
        email_status: None,
        phone: None,
        reason: None,
        provisional,
        raw: Value::Null,
    }
}

/// Where chunk `index`'s contacts sit.
pub fn chunk_ref(index: ChunkIndex, offset: u64, count: u64) -> ChunkRef {
    ChunkRef {
        index,
        offset,
        count,
    }
}

/// What a chunk's final result set sets on it.
pub fn completed(index: ChunkIndex) -> ChunkUpdate {
    ChunkUpdate {
        index,
        status: ChunkStatus::Completed,
        credits: Some(1.0),
        error: None,
    }
}

/// Chunk `index` ends as bulk-fetch ends it: its final set (every contact found) with the cost
/// the provider reported; then the job settles if that was its last open chunk.
pub async fn finish_chunk<S: Jobs + Results>(s: &S, job_id: &JobId, index: ChunkIndex, cost: f64) {
    let c = s.chunk(job_id, index).await.unwrap().expect("chunk");
    let set = (c.offset..c.offset + c.count)
        .map(|k| result(k, Outcome::Found, false))
        .collect();
    let update = ChunkUpdate {
        credits: Some(cost),
        ..completed(index)
    };
    s.store_chunk(job_id, ChunkRef::from(&c), set, update)
        .await
        .unwrap();
    s.settle_job(job_id).await.unwrap();
}

/// The job's figures as read: done, found, not found, failed.
pub async fn figures<S: Jobs>(s: &S, job_id: &JobId) -> [u64; 4] {
    let m = s.job_view(job_id).await.expect("view").expect("job");
    [m.done, m.found, m.not_found, m.failed]
}

#[cfg(test)]
mod memory_twins {
    use crate::store::memory::{MemoryDedupe, MemoryJobs};

    crate::store_contract!(
        jobs: {
            let jobs = MemoryJobs::default();
            (jobs.clone(), jobs)
        },
        dedupe: MemoryDedupe::new(1_000),
    );
}
