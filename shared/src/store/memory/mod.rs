//! In-memory twins of the stores (feature `memory`): the same conditions as DynamoDB's
//! (first final row wins, provisional rows replaced, a chunk applied in bulk under a lease, a
//! callback taken once per due date, a dedupe claim with its lease), so behaviour tests run in
//! milliseconds without moto. Each is one `Mutex`; every method is one critical section, as each
//! DynamoDB write is one conditional item write or transaction.
//!
//! One file per store trait, as the DynamoDB store's; `job.rs` holds a job's state.

use crate::ids::ContactIndex;
use crate::ids::{ChunkIndex, JobId, ProviderId};
use crate::jobs::{Chunk, ChunkStatus, Contact, ContactResult, JobMeta};
use crate::now_ms;
use crate::store::{ChunkRef, Link, Orphan, StoreError};
use job::JobState;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

mod balances;
mod budget;
mod callbacks;
mod dedupe;
mod drafts;
mod due;
mod idempotency;
mod job;
mod jobs;
mod links;
mod orphans;
mod polls;
mod rate;
mod results;
mod steps;
mod submit;
mod writer;

pub use dedupe::MemoryDedupe;

/// Jobs in memory: a [`JobStore`] and [`CallbackStore`]. A clone is the same store (as two
/// functions share one table), so a simulation can hand one to each function.
#[derive(Default, Clone)]
pub struct MemoryJobs {
    jobs: Arc<Mutex<HashMap<JobId, JobState>>>,
    slots: Arc<Mutex<HashMap<String, u64>>>,
    /// Per provider account: the balance as last read, and when its last read was claimed.
    balances: Arc<Mutex<HashMap<crate::Provider, (crate::store::CachedBalance, u64)>>>,
    /// Result writes still to fail (as DynamoDB being unavailable would).
    failing: Arc<std::sync::atomic::AtomicUsize>,
    /// Job creations still to fail after their head (and contacts) are written.
    failing_creations: Arc<std::sync::atomic::AtomicUsize>,
    keys: Arc<Mutex<HashMap<String, IdemKey>>>,
    /// `job_head` answers as an eventually consistent read may: the head as it was before its
    /// job was deleted.
    stale_heads: Arc<std::sync::atomic::AtomicBool>,
    /// Orphans by sort key, with when each expires (s).
    orphans: Arc<Mutex<BTreeMap<String, (Orphan, u64)>>>,
    reads: Arc<Mutex<Reads>>,
}

/// The reads a [`MemoryJobs`] was asked for, counted as the DynamoDB store makes them: a job's
/// head (`get_job`, `job_head`, and the head of each job a provider-id lookup finds), and a
/// query of a job's chunks (`chunks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    pub heads: usize,
    pub chunk_queries: usize,
}

struct IdemKey {
    body_sha256: String,
    job_id: JobId,
    created: bool,
    owner: String,
    lease_until: u64,
}

impl MemoryJobs {
    /// Records a job as `POST /jobs` does: its head, chunks and contacts.
    pub fn insert(&self, meta: JobMeta, chunks: Vec<Chunk>, contacts: Vec<Contact>) {
        let mut jobs = self.jobs.lock().unwrap();
        let job = jobs.entry(meta.job_id.clone()).or_default();
        job.chunks = chunks.into_iter().map(|c| (c.index, c)).collect();
        job.contacts = contacts.into_iter().map(|c| (c.index, c)).collect();
        job.meta = Some(meta);
    }

    /// Marks a chunk started at the provider under `provider_id` (what the worker does).
    pub fn start(&self, job_id: &JobId, index: ChunkIndex, provider_id: &ProviderId) {
        let mut jobs = self.jobs.lock().unwrap();
        let job = jobs.get_mut(job_id).expect("job exists");
        let chunk = job.chunks.get_mut(&index).expect("chunk exists");
        chunk.provider_id = Some(provider_id.clone());
        chunk.status = ChunkStatus::Submitted;
        chunk.started_at_ms = Some(now_ms());
        let r = ChunkRef::from(&*chunk);
        // As the submitter links it: a one-contact chunk's contact rides on its link.
        let link = Link::new(r, job.contacts.get(&ContactIndex(r.offset)));
        job.links.insert(provider_id.clone(), link);
    }

    /// The next `n` result writes (`store_result`, `store_chunk`) fail with `Unavailable`.
    pub fn fail_writes(&self, n: usize) {
        self.failing.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    fn write_fails(&self) -> Result<(), StoreError> {
        take_one(&self.failing, "injected write failure")
    }

    /// The next `n` job creations (`create_job`) fail part-way, as DynamoDB may leave them: the
    /// head written (still `creating`) with the contacts, no chunk.
    pub fn fail_creations(&self, n: usize) {
        self.failing_creations
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// From now on `job_head` reads a deleted job's head as it was before the DELETE (as
    /// DynamoDB's eventually consistent read may, for a moment).
    pub fn stale_heads(&self, on: bool) {
        self.stale_heads
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// The reads made so far ([`Reads`]).
    pub fn reads(&self) -> Reads {
        *self.reads.lock().unwrap()
    }

    fn count(&self, read: impl FnOnce(&mut Reads)) {
        read(&mut self.reads.lock().unwrap());
    }

    /// Every result stored for a job, in contact order.
    pub fn results(&self, job_id: &JobId) -> Vec<ContactResult> {
        self.jobs
            .lock()
            .unwrap()
            .get(job_id)
            .map(|j| j.results.values().cloned().collect())
            .unwrap_or_default()
    }

    fn with<T>(
        &self,
        job_id: &JobId,
        f: impl FnOnce(&mut JobState) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        match jobs.get_mut(job_id) {
            Some(job) if job.meta.is_some() => f(job),
            _ => Err(StoreError::Data(format!("no job {job_id}"))),
        }
    }
}

/// Takes one of the failures still to come off `count`: `Unavailable` then, `Ok` when none is left.
fn take_one(count: &std::sync::atomic::AtomicUsize, what: &str) -> Result<(), StoreError> {
    use std::sync::atomic::Ordering;
    match count.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
        Ok(_) => Err(StoreError::unavailable(what)),
        Err(_) => Ok(()),
    }
}
