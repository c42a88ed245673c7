//! In-memory twins of the stores (feature `memory`): the same conditions as DynamoDB's
//! (first final row wins, provisional rows replaced, a chunk applied in bulk under a lease, a
//! callback taken once per due date, a dedupe claim with its lease), so behaviour tests run in
//! milliseconds without moto. Each is one `Mutex`; every method is one critical section, as each
//! DynamoDB write is one conditional item write or transaction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{
    CREATION_GRACE, CallbackAttempt, CallbackStore, CallbackTake, ChunkRef, ChunkUpdate, Claim,
    Counts, DEFAULT_POLL_AFTER_MS, DEFAULT_START_OVERDUE_MS, DRAFT_TTL, DedupeStore, Due,
    DueAction, DueIndex, ERASE_GRACE, FINAL_GROUP, FinalGroup, Idempotency, IdempotencyKeys,
    JobDrafts, JobStore, JobWriter, JobsCursor, Link, ORPHAN_RETENTION_DAYS, Orphan, OrphanStore,
    OrphansCursor, Page, PageWrite, ReadCost, Slot, StoreError, Stored, SubmitLedger,
};
use crate::jobs::{
    CallbackState, CallbackStatus, Chunk, ChunkStatus, Contact, ContactResult, JobError, JobMeta,
    JobStatus,
};
use crate::now_ms;

#[derive(Default)]
struct Job {
    meta: Option<JobMeta>,
    chunks: BTreeMap<u32, Chunk>,
    contacts: BTreeMap<u64, Contact>,
    results: BTreeMap<u64, ContactResult>,
    /// Provider id → chunk.
    links: HashMap<String, Link>,
    /// Per chunk: what its results count (the DynamoDB chunk item's `c_*` counters).
    counted: HashMap<u32, Counts>,
    /// The callback's due date (`poll_at` on the head), while pending.
    callback_due: Option<u64>,
    /// Chunks being started: owner and lease end.
    starting: HashMap<u32, (String, u64)>,
    /// Chunks counted as submitted.
    submitted: u64,
    /// Per chunk: ids fetched on the word of an unsigned body while it waited for its own.
    candidates: HashMap<u32, u32>,
    /// Polls taken: (chunk, the `poll_at` the sweeper's take set).
    polls: HashSet<(u32, u64)>,
    /// A staged job's pages, by offset.
    pages: BTreeMap<u64, Page>,
    /// The seal a start of the draft holds, until then (ms).
    sealed_until: Option<u64>,
    /// Chunks the sweeper took: the state it took each in, and when it is due again (a chunk
    /// that moves on is due as its new state says, as a DynamoDB write sets its `poll_at`).
    taken: HashMap<u32, (ChunkStatus, u64)>,
    /// A deleted job's (or an abandoned creation's) erasure: when it is due.
    erase_due: Option<u64>,
}

impl Job {
    /// When chunk `c` is due for the sweeper, if it is open: its start (or the check of a start
    /// whose worker died) `DEFAULT_START_OVERDUE_MS` after the job's creation, its poll
    /// `DEFAULT_POLL_AFTER_MS` after its start, or what the sweeper's last take set.
    fn chunk_due(&self, c: &Chunk) -> Option<u64> {
        if c.status.is_final() {
            return None;
        }
        if let Some((status, at)) = self.taken.get(&c.index)
            && *status == c.status
        {
            return Some(*at);
        }
        let created = self.meta.as_ref().map_or(0, |m| m.created_at_ms);
        Some(match c.status {
            ChunkStatus::Starting => self
                .starting
                .get(&c.index)
                .map_or(0, |(_, until)| until + 60_000),
            ChunkStatus::Submitted => c.started_at_ms.unwrap_or(created) + DEFAULT_POLL_AFTER_MS,
            ChunkStatus::StartUnconfirmed => {
                c.unconfirmed_at_ms.unwrap_or(created) + DEFAULT_POLL_AFTER_MS
            }
            _ => created + DEFAULT_START_OVERDUE_MS,
        })
    }

    /// When the job's erasure is due: a deleted job's until it is erased, a creation's
    /// [`CREATION_GRACE`] after its head was written, a draft's [`DRAFT_TTL`] after.
    fn erasure_due(&self) -> Option<u64> {
        let m = self.meta.as_ref()?;
        if m.erased {
            return None;
        }
        if m.deleted {
            return self.erase_due;
        }
        let grace = if m.creating {
            CREATION_GRACE
        } else if m.status == JobStatus::Draft {
            DRAFT_TTL
        } else {
            return None;
        };
        Some(
            self.erase_due
                .unwrap_or(m.created_at_ms + grace.as_millis() as u64),
        )
    }
}

/// Jobs in memory: a [`JobStore`] and [`CallbackStore`]. A clone is the same store (as two
/// functions share one table), so a simulation can hand one to each function.
#[derive(Default, Clone)]
pub struct MemoryJobs {
    jobs: Arc<Mutex<HashMap<String, Job>>>,
    slots: Arc<Mutex<HashMap<String, u64>>>,
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
}

struct IdemKey {
    body_sha256: String,
    job_id: String,
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
    pub fn start(&self, job_id: &str, index: u32, provider_id: &str) {
        let mut jobs = self.jobs.lock().unwrap();
        let job = jobs.get_mut(job_id).expect("job exists");
        let chunk = job.chunks.get_mut(&index).expect("chunk exists");
        chunk.provider_id = Some(provider_id.to_string());
        chunk.status = ChunkStatus::Submitted;
        chunk.started_at_ms = Some(now_ms());
        let r = ChunkRef::from(&*chunk);
        // As the submitter links it: a one-contact chunk's contact rides on its link.
        let link = Link::new(r, job.contacts.get(&r.offset));
        job.links.insert(provider_id.to_string(), link);
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

    /// Every result stored for a job, in contact order.
    pub fn results(&self, job_id: &str) -> Vec<ContactResult> {
        self.jobs
            .lock()
            .unwrap()
            .get(job_id)
            .map(|j| j.results.values().cloned().collect())
            .unwrap_or_default()
    }

    fn with<T>(
        &self,
        job_id: &str,
        f: impl FnOnce(&mut Job) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        match jobs.get_mut(job_id) {
            Some(job) if job.meta.is_some() => f(job),
            _ => Err(StoreError::Data(format!("no job {job_id}"))),
        }
    }
}

fn add(meta: &mut JobMeta, c: Counts) {
    let apply = |v: &mut u64, d: i64| *v = (*v as i64 + d).max(0) as u64;
    apply(&mut meta.done, c.done);
    apply(&mut meta.found, c.found);
    apply(&mut meta.not_found, c.not_found);
    apply(&mut meta.failed, c.failed);
    meta.updated_at_ms = now_ms();
}

/// The group of final chunks holding `index`, if that chunk is final (the DynamoDB store's
/// `CHUNK#~F<group>` set).
fn final_group(job: &Job, index: u32) -> Option<FinalGroup> {
    let group = index / FINAL_GROUP;
    job.chunks
        .get(&index)?
        .status
        .is_final()
        .then(|| FinalGroup {
            group,
            size: job
                .chunks
                .values()
                .filter(|c| c.index / FINAL_GROUP == group && c.status.is_final())
                .count() as u64,
        })
}

fn update_chunk(chunk: &mut Chunk, u: &ChunkUpdate) {
    chunk.status = u.status;
    if u.credits.is_some() {
        chunk.credits = u.credits;
    }
    if u.error.is_some() {
        chunk.error = u.error.clone();
    }
    if u.status.is_final() {
        chunk.poll_every_ms = None;
    }
}

impl JobStore for MemoryJobs {
    async fn get_job(&self, job_id: &str) -> Result<Option<JobMeta>, StoreError> {
        // As the DynamoDB head: figures kept only once the job ended, duplicates never.
        let mut meta = self.job_view(job_id).await?;
        if let Some(m) = meta.as_mut() {
            if !m.status.is_terminal() {
                (m.done, m.found, m.not_found, m.failed) = (0, 0, 0, 0);
            }
            m.duplicates = 0;
        }
        Ok(meta)
    }

    async fn job_head(&self, job_id: &str) -> Result<Option<JobMeta>, StoreError> {
        let mut meta = self.get_job(job_id).await?;
        if self.stale_heads.load(std::sync::atomic::Ordering::SeqCst)
            && let Some(m) = meta.as_mut()
        {
            m.deleted = false;
        }
        Ok(meta)
    }

    async fn job_view(&self, job_id: &str) -> Result<Option<JobMeta>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs.get(job_id).and_then(|j| j.meta.clone()))
    }

    async fn find_link(&self, job_id: &str, provider_id: &str) -> Result<Option<Link>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs.get(job_id).and_then(|j| {
            j.links.get(provider_id).cloned().or_else(|| {
                j.chunks
                    .values()
                    .find(|c| c.provider_id.as_deref() == Some(provider_id))
                    .map(|c| Link {
                        chunk: ChunkRef::from(c),
                        contact: None,
                    })
            })
        }))
    }

    async fn contacts(
        &self,
        job_id: &str,
        offset: u64,
        count: u64,
    ) -> Result<Vec<Contact>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs
            .get(job_id)
            .map(|j| {
                j.contacts
                    .range(offset..offset + count)
                    .map(|(_, c)| c.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn store_result(
        &self,
        job_id: &str,
        chunk_index: u32,
        result: ContactResult,
        update: Option<ChunkUpdate>,
    ) -> Result<Stored, StoreError> {
        self.write_fails()?;
        self.with(job_id, |job| {
            // As DynamoDB's row put, conditional on its chunk: nothing of an erased job is
            // written again.
            if !job.chunks.contains_key(&chunk_index) {
                return Err(StoreError::Conflict(format!(
                    "chunk {chunk_index} is gone (its job was erased)"
                )));
            }
            let old = job.results.get(&result.index);
            let replaced = match old {
                None => false,
                Some(old) if result.replaces(old) => true,
                Some(_) => {
                    return Ok(Stored {
                        existing: 1,
                        write_calls: 1,
                        final_group: final_group(job, chunk_index),
                        ..Stored::default()
                    });
                }
            };
            let delta = Counts::of([result.outcome])
                .minus(old.map_or_else(Counts::default, |o| Counts::of([o.outcome])));
            let chunk = job
                .chunks
                .get_mut(&chunk_index)
                .ok_or_else(|| StoreError::Data(format!("no chunk {chunk_index}")))?;
            if let Some(u) = &update {
                update_chunk(chunk, u);
            }
            let awaiting_link = chunk.status.awaits_confirmation() && chunk.provider_id.is_none();
            let counted = job.counted.entry(chunk_index).or_default();
            *counted = *counted + delta;
            add(job.meta.as_mut().expect("checked"), delta);
            job.results.insert(result.index, result);
            let becomes_final = update.as_ref().is_some_and(|u| u.status.is_final());
            Ok(Stored {
                new: usize::from(!replaced),
                existing: 0,
                replaced: usize::from(replaced),
                write_calls: 1,
                final_group: final_group(job, chunk_index).filter(|_| becomes_final),
                awaiting_link,
            })
        })
    }

    async fn store_chunk(
        &self,
        job_id: &str,
        chunk: ChunkRef,
        results: Vec<ContactResult>,
        update: ChunkUpdate,
    ) -> Result<Stored, StoreError> {
        self.write_fails()?;
        self.with(job_id, |job| {
            // As DynamoDB's, under the chunk's lease: no chunk, no rows.
            if !job.chunks.contains_key(&chunk.index) {
                return Err(StoreError::Conflict(format!(
                    "chunk {} is gone (its job was erased)",
                    chunk.index
                )));
            }
            let mut stored = Stored {
                write_calls: 2,
                ..Stored::default()
            };
            let rows: Vec<ContactResult> = super::counts::rows_to_write(
                chunk,
                &results,
                |i| job.results.get(&i),
                &mut stored,
            )?
            .into_iter()
            .cloned()
            .collect();
            for r in rows {
                job.results.insert(r.index, r);
            }
            let total = Counts::of(
                job.results
                    .range(chunk.offset..chunk.offset + chunk.count)
                    .map(|(_, r)| r.outcome),
            );
            let counted = job.counted.entry(chunk.index).or_default();
            let delta = total.minus(*counted);
            *counted = total;
            stored.new = delta.done.max(0) as usize;
            if let Some(c) = job.chunks.get_mut(&chunk.index) {
                update_chunk(c, &update);
            }
            add(job.meta.as_mut().expect("checked"), delta);
            stored.final_group = final_group(job, chunk.index);
            Ok(stored)
        })
    }

    async fn add_duplicate(&self, job_id: &str) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            job.meta.as_mut().expect("checked").duplicates += 1;
            Ok(())
        })
    }

    async fn poll_later(&self, job_id: &str, index: u32, every_ms: u64) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            if let Some(c) = job.chunks.get_mut(&index)
                && !c.status.is_final()
            {
                c.poll_every_ms = Some(every_ms);
            }
            Ok(())
        })
    }

    async fn settle_job(&self, job_id: &str) -> Result<Option<JobStatus>, StoreError> {
        self.with(job_id, |job| {
            let chunks_final = job.chunks.values().all(|c| c.status.is_final());
            let meta = job.meta.as_mut().expect("checked");
            if meta.status.is_terminal()
                || meta.deleted
                || meta.done < meta.contacts
                || !chunks_final
            {
                return Ok(None);
            }
            let status = JobStatus::settled(meta.contacts, meta.failed);
            let now = now_ms();
            meta.status = status;
            meta.updated_at_ms = now;
            if meta.callback_url.is_some() {
                meta.callback = Some(CallbackState {
                    status: CallbackStatus::Pending,
                    attempts: 0,
                    last_status_code: None,
                    last_error: None,
                    next_attempt_at: Some(now),
                    since_ms: now,
                });
                job.callback_due = Some(now);
            }
            Ok(Some(status))
        })
    }

    async fn chunk(&self, job_id: &str, index: u32) -> Result<Option<Chunk>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs.get(job_id).and_then(|j| j.chunks.get(&index).cloned()))
    }

    async fn chunks(&self, job_id: &str) -> Result<Vec<Chunk>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs
            .get(job_id)
            .map(|j| j.chunks.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn link_chunk(
        &self,
        job_id: &str,
        chunk: ChunkRef,
        provider_id: &str,
        credits: Option<f64>,
        contact: Option<&Contact>,
    ) -> Result<bool, StoreError> {
        let link = Link::new(chunk, contact);
        self.with(job_id, |job| {
            // No chunk (its job erased): nothing linked, as DynamoDB's conditional update.
            let Some(c) = job.chunks.get_mut(&chunk.index) else {
                return Ok(false);
            };
            match c.status {
                ChunkStatus::Pending | ChunkStatus::Starting | ChunkStatus::StartUnconfirmed => {
                    c.provider_id = Some(provider_id.to_string());
                    c.status = ChunkStatus::Submitted;
                    c.started_at_ms = Some(now_ms());
                    c.unconfirmed_at_ms = None;
                    if credits.is_some() {
                        c.credits = credits;
                    }
                }
                _ if c.provider_id.as_deref() == Some(provider_id) => {}
                _ => return Ok(false),
            }
            job.links.insert(provider_id.to_string(), link);
            Ok(true)
        })
    }

    async fn claim_poll(
        &self,
        job_id: &str,
        index: u32,
        taken_at_ms: u64,
    ) -> Result<bool, StoreError> {
        self.with(job_id, |job| Ok(job.polls.insert((index, taken_at_ms))))
    }

    async fn take_candidate(&self, job_id: &str, index: u32, max: u32) -> Result<bool, StoreError> {
        self.with(job_id, |job| {
            let n = job.candidates.entry(index).or_insert(0);
            if *n >= max {
                return Ok(false);
            }
            *n += 1;
            Ok(true)
        })
    }

    async fn correct_link(
        &self,
        job_id: &str,
        chunk: ChunkRef,
        provider_id: &str,
        contact: Option<&Contact>,
    ) -> Result<(), StoreError> {
        let link = Link::new(chunk, contact);
        self.with(job_id, |job| {
            let c = job
                .chunks
                .get_mut(&chunk.index)
                .ok_or_else(|| StoreError::Data(format!("no chunk {}", chunk.index)))?;
            let wrong = c.provider_id.replace(provider_id.to_string());
            if let Some(wrong) = wrong.filter(|w| w != provider_id) {
                job.links.remove(&wrong);
            }
            job.links.insert(provider_id.to_string(), link);
            Ok(())
        })
    }

    async fn set_job_error(&self, job_id: &str, error: &JobError) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            let meta = job.meta.as_mut().expect("checked");
            if meta.error.as_ref().is_some_and(JobError::stops_submission)
                && !error.stops_submission()
            {
                return Ok(());
            }
            meta.error = Some(error.clone());
            meta.updated_at_ms = now_ms();
            Ok(())
        })
    }

    async fn stored_indices(
        &self,
        job_id: &str,
        from: u64,
        to: u64,
    ) -> Result<HashSet<u64>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs
            .get(job_id)
            .map(|j| j.results.range(from..=to).map(|(i, _)| *i).collect())
            .unwrap_or_default())
    }

    async fn take_slot(
        &self,
        name: &str,
        interval_ms: u64,
        max_wait_ms: u64,
    ) -> Result<Slot, StoreError> {
        let now = now_ms();
        let mut slots = self.slots.lock().unwrap();
        let next = slots.entry(name.to_string()).or_insert(0);
        if *next <= now {
            *next = now + interval_ms;
            return Ok(Slot::At(now));
        }
        let limit = now + max_wait_ms;
        if *next > limit {
            return Ok(Slot::Busy {
                retry_in_ms: (*next - limit).max(interval_ms),
            });
        }
        let at = *next;
        *next = at + interval_ms;
        Ok(Slot::At(at))
    }

    async fn return_slot(
        &self,
        name: &str,
        at_ms: u64,
        interval_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut slots = self.slots.lock().unwrap();
        match slots.get_mut(name) {
            Some(next) if *next == at_ms + interval_ms => {
                *next = at_ms;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl CallbackStore for MemoryJobs {
    async fn take_callback(
        &self,
        job_id: &str,
        due_at: Option<u64>,
        lease_ms: u64,
    ) -> Result<Option<CallbackTake>, StoreError> {
        self.with(job_id, |job| {
            let now = now_ms();
            let due = match (job.callback_due, due_at) {
                (Some(at), None) => at <= now,
                (Some(at), Some(t)) => at == t,
                (None, _) => false,
            };
            let meta = job.meta.as_mut().expect("checked");
            let Some(cb) = meta.callback.as_mut().filter(|_| !meta.deleted) else {
                return Ok(None);
            };
            if cb.status != CallbackStatus::Pending || !due {
                return Ok(None);
            }
            cb.attempts += 1;
            let lease = now + lease_ms;
            cb.next_attempt_at = Some(lease);
            job.callback_due = Some(lease);
            Ok(Some(CallbackTake {
                meta: meta.clone(),
                lease,
            }))
        })
    }

    async fn record_callback(
        &self,
        job_id: &str,
        lease: u64,
        attempt: &CallbackAttempt,
    ) -> Result<bool, StoreError> {
        self.with(job_id, |job| {
            let meta = job.meta.as_mut().expect("checked");
            let Some(cb) = meta.callback.as_mut() else {
                return Ok(false);
            };
            if cb.status != CallbackStatus::Pending || job.callback_due != Some(lease) {
                return Ok(false);
            }
            cb.status = attempt.status;
            cb.last_status_code = attempt.status_code;
            cb.last_error = attempt.error.clone();
            job.callback_due = match attempt.status {
                CallbackStatus::Pending => attempt.next_at,
                _ => None,
            };
            cb.next_attempt_at = job.callback_due;
            Ok(true)
        })
    }
}

impl OrphanStore for MemoryJobs {
    async fn job_of_provider_id(
        &self,
        provider: crate::Provider,
        provider_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs
            .iter()
            .find(|(_, j)| {
                j.meta.as_ref().is_some_and(|m| m.provider == provider)
                    && j.links.contains_key(provider_id)
            })
            .map(|(id, _)| id.clone()))
    }

    async fn put_orphan(&self, orphan: &Orphan) -> Result<(), StoreError> {
        let expires = now_ms() / 1000 + ORPHAN_RETENTION_DAYS * 86_400;
        self.orphans
            .lock()
            .unwrap()
            .insert(orphan.sort_key(), (orphan.clone(), expires));
        Ok(())
    }

    async fn list_orphans(
        &self,
        limit: usize,
        cursor: Option<&OrphansCursor>,
    ) -> Result<(Vec<Orphan>, Option<OrphansCursor>), StoreError> {
        let limit = limit.clamp(1, 100);
        let orphans = self.orphans.lock().unwrap();
        let keys: Vec<&String> = orphans
            .keys()
            .rev()
            .filter(|k| cursor.is_none_or(|c| **k < c.0))
            .take(limit)
            .collect();
        // As a DynamoDB query: a full page says where it stopped, expired items read and
        // filtered out.
        let next = (keys.len() == limit).then(|| OrphansCursor(keys[limit - 1].clone()));
        let now_s = now_ms() / 1000;
        let page = keys
            .into_iter()
            .filter_map(|k| orphans.get(k))
            .filter(|(_, expires)| *expires > now_s)
            .map(|(o, _)| o.clone())
            .collect();
        Ok((page, next))
    }
}

impl JobWriter for MemoryJobs {
    async fn create_job(
        &self,
        meta: &JobMeta,
        chunks: &[Chunk],
        contacts: &[Contact],
    ) -> Result<(), StoreError> {
        // A new job, or one still being created (as the head's conditional put).
        let rewritable = |j: &Job| j.meta.as_ref().is_none_or(|m| m.creating && !m.deleted);
        if !self
            .jobs
            .lock()
            .unwrap()
            .get(&meta.job_id)
            .is_none_or(rewritable)
        {
            return Err(StoreError::Conflict(format!("job {} exists", meta.job_id)));
        }
        let head = JobMeta {
            creating: true,
            ..meta.clone()
        };
        if let Err(e) = take_one(&self.failing_creations, "injected creation failure") {
            self.insert(head, Vec::new(), contacts.to_vec());
            return Err(e);
        }
        self.insert(head, chunks.to_vec(), contacts.to_vec());
        self.with(&meta.job_id, |job| {
            let head = job.meta.as_mut().expect("written");
            if head.deleted {
                return Err(StoreError::Conflict(format!("job {} deleted", meta.job_id)));
            }
            head.creating = false;
            Ok(())
        })
    }

    async fn list_jobs(
        &self,
        limit: usize,
        cursor: Option<&JobsCursor>,
    ) -> Result<(Vec<JobMeta>, Option<JobsCursor>), StoreError> {
        let jobs = self.jobs.lock().unwrap();
        // Listed once created.
        let mut heads: Vec<&JobMeta> = jobs
            .values()
            .filter_map(|j| j.meta.as_ref())
            .filter(|m| !m.creating)
            .collect();
        heads.sort_by(|a, b| (b.created_at_ms, &b.job_id).cmp(&(a.created_at_ms, &a.job_id)));
        let after = |m: &&JobMeta| match cursor {
            None => true,
            Some(c) => (m.created_at_ms, &m.job_id) < (c.created_at_ms, &c.job_id),
        };
        let page: Vec<&JobMeta> = heads
            .into_iter()
            .filter(after)
            .take(limit.clamp(1, 100))
            .collect();
        let next = (page.len() == limit.clamp(1, 100)).then(|| JobsCursor {
            created_at_ms: page.last().map_or(0, |m| m.created_at_ms),
            job_id: page.last().map(|m| m.job_id.clone()).unwrap_or_default(),
        });
        Ok((
            page.into_iter().filter(|m| !m.deleted).cloned().collect(),
            next,
        ))
    }

    async fn mark_deleted(&self, job_id: &str) -> Result<bool, StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        Ok(match jobs.get_mut(job_id) {
            Some(job) if job.meta.as_ref().is_some_and(|m| !m.erased) => {
                let meta = job.meta.as_mut().expect("checked");
                meta.deleted = true;
                job.erase_due = Some(now_ms() + ERASE_GRACE.as_millis() as u64);
                // Calls back no one: the callback's URL, state and due date go with the mark.
                meta.callback_url = None;
                meta.callback = None;
                job.callback_due = None;
                true
            }
            _ => false,
        })
    }

    async fn results(
        &self,
        job_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<ContactResult>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs
            .get(job_id)
            .map(|j| {
                j.results
                    .range(from..)
                    .take(limit)
                    .map(|(_, r)| r.clone())
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// The head is a draft taking pages (the DynamoDB store's `OPEN_DRAFT` condition).
fn open_draft(job: &Job) -> bool {
    job.meta
        .as_ref()
        .is_some_and(|m| m.status == JobStatus::Draft && !m.deleted)
        && job.sealed_until.is_none_or(|until| until < now_ms())
}

impl JobDrafts for MemoryJobs {
    async fn create_draft(&self, meta: &JobMeta) -> Result<(), StoreError> {
        self.create_job(meta, &[], &[]).await
    }

    async fn put_page(
        &self,
        job_id: &str,
        page: &Page,
        contacts: &[Contact],
    ) -> Result<PageWrite, StoreError> {
        self.with(job_id, |job| {
            match job.pages.get(&page.offset) {
                Some(p) if p.sha256 != page.sha256 => return Ok(PageWrite::Conflict),
                Some(p) if p.complete => return Ok(PageWrite::Unchanged),
                _ => {}
            }
            if !open_draft(job) {
                return Ok(PageWrite::Closed);
            }
            for c in contacts {
                job.contacts.insert(c.index, c.clone());
            }
            let page = Page {
                complete: true,
                ..page.clone()
            };
            job.pages.insert(page.offset, page);
            Ok(PageWrite::Written)
        })
    }

    async fn pages(&self, job_id: &str) -> Result<Vec<Page>, StoreError> {
        self.with(job_id, |job| Ok(job.pages.values().cloned().collect()))
    }

    async fn seal_draft(&self, job_id: &str, lease_ms: u64) -> Result<Option<u64>, StoreError> {
        self.with(job_id, |job| {
            if !open_draft(job) {
                return Ok(None);
            }
            let until = now_ms() + lease_ms;
            job.sealed_until = Some(until);
            Ok(Some(until))
        })
    }

    async fn unseal_draft(&self, job_id: &str, seal: u64) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            if job.sealed_until == Some(seal) {
                job.sealed_until = None;
            }
            Ok(())
        })
    }

    async fn start_draft(
        &self,
        job_id: &str,
        chunks: &[Chunk],
        seal: u64,
    ) -> Result<bool, StoreError> {
        self.with(job_id, |job| {
            for c in chunks {
                job.chunks.insert(c.index, c.clone());
            }
            let meta = job.meta.as_mut().expect("checked");
            if meta.status != JobStatus::Draft || meta.deleted || job.sealed_until != Some(seal) {
                return Ok(false);
            }
            meta.status = JobStatus::Accepted;
            meta.updated_at_ms = now_ms();
            job.sealed_until = None;
            Ok(true)
        })
    }
}

impl IdempotencyKeys for MemoryJobs {
    async fn claim_idempotency_key(
        &self,
        key: &str,
        body_sha256: &str,
        job_id: &str,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Idempotency, StoreError> {
        let now = now_ms();
        let mut keys = self.keys.lock().unwrap();
        let Some(k) = keys.get_mut(key) else {
            keys.insert(
                key.to_string(),
                IdemKey {
                    body_sha256: body_sha256.to_string(),
                    job_id: job_id.to_string(),
                    created: false,
                    owner: owner.to_string(),
                    lease_until: now + lease_ms,
                },
            );
            return Ok(Idempotency::Owned {
                job_id: job_id.to_string(),
            });
        };
        let first = k.job_id.clone();
        Ok(if k.body_sha256 != body_sha256 {
            Idempotency::Mismatch { job_id: first }
        } else if k.created {
            Idempotency::Created { job_id: first }
        } else if k.lease_until > now {
            Idempotency::InUse {
                retry_after_ms: k.lease_until - now,
            }
        } else {
            k.owner = owner.to_string();
            k.lease_until = now + lease_ms;
            Idempotency::Owned { job_id: first }
        })
    }

    async fn finish_idempotency_key(
        &self,
        key: &str,
        owner: &str,
        created: bool,
    ) -> Result<(), StoreError> {
        let mut keys = self.keys.lock().unwrap();
        if let Some(k) = keys.get_mut(key).filter(|k| k.owner == owner) {
            if created {
                k.created = true;
            } else {
                k.lease_until = 0;
            }
        }
        Ok(())
    }
}

impl SubmitLedger for MemoryJobs {
    async fn begin_submit(
        &self,
        job_id: &str,
        index: u32,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Option<Chunk>, StoreError> {
        self.take_pending(job_id, index, owner, lease_ms, true)
    }

    async fn begin_fail(
        &self,
        job_id: &str,
        index: u32,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Option<Chunk>, StoreError> {
        self.take_pending(job_id, index, owner, lease_ms, false)
    }

    async fn release_submit(
        &self,
        job_id: &str,
        index: u32,
        owner: &str,
    ) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            if job.starting.get(&index).is_some_and(|(o, _)| o == owner)
                && let Some(c) = job.chunks.get_mut(&index)
                && c.status == ChunkStatus::Starting
            {
                c.status = ChunkStatus::Pending;
                job.starting.remove(&index);
            }
            Ok(())
        })
    }

    async fn mark_unconfirmed(
        &self,
        job_id: &str,
        index: u32,
        owner: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.with(job_id, |job| {
            let now = now_ms();
            let held = job
                .starting
                .get(&index)
                .is_some_and(|(o, until)| Some(o.as_str()) == owner || *until < now);
            match job.chunks.get_mut(&index) {
                Some(c) if c.status == ChunkStatus::Starting && held => {
                    c.status = ChunkStatus::StartUnconfirmed;
                    c.unconfirmed_at_ms = Some(now);
                    job.starting.remove(&index);
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    async fn expire_unconfirmed(&self, job_id: &str, index: u32) -> Result<bool, StoreError> {
        self.with(job_id, |job| match job.chunks.get_mut(&index) {
            Some(c) if c.status == ChunkStatus::StartUnconfirmed => {
                c.status = ChunkStatus::Failed;
                Ok(true)
            }
            _ => Ok(false),
        })
    }

    async fn split_chunk(
        &self,
        job_id: &str,
        chunk: &Chunk,
        owner: &str,
    ) -> Result<Vec<Chunk>, StoreError> {
        self.with(job_id, |job| {
            let held = job
                .starting
                .get(&chunk.index)
                .is_some_and(|(o, _)| o == owner);
            if !held
                || job.chunks.get(&chunk.index).map(|c| c.status) != Some(ChunkStatus::Starting)
            {
                return Err(StoreError::Conflict(format!(
                    "chunk {} is no longer held by this worker",
                    chunk.index
                )));
            }
            let meta = job.meta.as_mut().expect("checked");
            let first = chunk.count.div_ceil(2);
            let seq = meta.chunk_seq as u32;
            let mut halves = Chunk::plan_range(chunk.offset, first, first, seq);
            halves.extend(Chunk::plan_range(
                chunk.offset + first,
                chunk.count - first,
                chunk.count - first,
                seq + 1,
            ));
            meta.chunk_seq += halves.len() as u64;
            meta.chunks += halves.len() as u64 - 1;
            let parent = job.chunks.get_mut(&chunk.index).expect("checked");
            parent.status = ChunkStatus::Split;
            parent.parts = halves.iter().map(|c| c.index).collect();
            job.starting.remove(&chunk.index);
            for h in &halves {
                job.chunks.insert(h.index, h.clone());
            }
            Ok(halves)
        })
    }

    async fn count_submitted(&self, job_id: &str) -> Result<JobStatus, StoreError> {
        self.with(job_id, |job| {
            job.submitted += 1;
            let meta = job.meta.as_mut().expect("checked");
            let next = if job.submitted >= meta.chunks {
                JobStatus::Running
            } else {
                JobStatus::Submitting
            };
            // Only forward: accepted → submitting → running; never over a settled status.
            if matches!(meta.status, JobStatus::Accepted | JobStatus::Submitting) {
                meta.status = next;
            }
            Ok(meta.status)
        })
    }

    async fn delete_items(&self, job_id: &str, limit: usize) -> Result<usize, StoreError> {
        self.with(job_id, |job| {
            let mut left = limit;
            let mut take = |n: usize| {
                let k = n.min(left);
                left -= k;
                k
            };
            let c = take(job.contacts.len());
            let contacts: Vec<u64> = job.contacts.keys().take(c).copied().collect();
            contacts.iter().for_each(|k| {
                job.contacts.remove(k);
            });
            let r = take(job.results.len());
            let results: Vec<u64> = job.results.keys().take(r).copied().collect();
            results.iter().for_each(|k| {
                job.results.remove(k);
            });
            let ch = take(job.chunks.len());
            let chunks: Vec<u32> = job.chunks.keys().take(ch).copied().collect();
            chunks.iter().for_each(|k| {
                job.chunks.remove(k);
            });
            let l = take(job.links.len());
            let links: Vec<String> = job.links.keys().take(l).cloned().collect();
            links.iter().for_each(|k| {
                job.links.remove(k);
            });
            let p = take(job.pages.len());
            let pages: Vec<u64> = job.pages.keys().take(p).copied().collect();
            pages.iter().for_each(|k| {
                job.pages.remove(k);
            });
            Ok(c + r + ch + l + p)
        })
    }

    async fn abandon_creation(&self, job_id: &str) -> Result<bool, StoreError> {
        self.with(job_id, |job| {
            let meta = job.meta.as_mut().expect("checked");
            if meta.creating && !meta.deleted {
                meta.deleted = true;
                job.erase_due = Some(now_ms());
            }
            Ok(meta.creating)
        })
    }

    async fn finish_erasure(&self, job_id: &str) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            let meta = job.meta.as_mut().expect("checked");
            if meta.deleted {
                meta.creating = false;
                meta.name = None;
                meta.options = serde_json::Value::Null;
                meta.callback_url = None;
                meta.callback = None;
                meta.erased = true;
                job.callback_due = None;
            }
            Ok(())
        })
    }
}

impl DueIndex for MemoryJobs {
    async fn due_chunks(
        &self,
        now_ms: u64,
        limit: usize,
        _hold_ms: u64,
    ) -> Result<(Vec<Due>, ReadCost), StoreError> {
        let jobs = self.jobs.lock().unwrap();
        let mut ids: Vec<&String> = jobs.keys().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            let job = &jobs[id];
            let chunks = job.chunks.values().filter_map(|c| {
                let at = job.chunk_due(c).filter(|at| *at <= now_ms)?;
                let action = match c.status {
                    ChunkStatus::Submitted => DueAction::Poll,
                    ChunkStatus::StartUnconfirmed => DueAction::ConfirmCheck,
                    _ => DueAction::Start,
                };
                Some((Some(c.index), at, action))
            });
            let callback = job
                .callback_due
                .filter(|at| *at <= now_ms)
                .map(|at| (None, at, DueAction::Callback));
            out.extend(
                callback
                    .into_iter()
                    .chain(chunks)
                    .map(|(chunk, at, action)| Due {
                        job_id: id.clone(),
                        chunk,
                        poll_at_ms: at,
                        action,
                    }),
            );
        }
        out.truncate(limit);
        Ok((out, ReadCost::default()))
    }

    async fn due_erasures(&self, now_ms: u64, limit: usize) -> Result<Vec<Due>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        let mut out: Vec<Due> = jobs
            .iter()
            .filter_map(|(id, job)| {
                let at = job.erasure_due().filter(|at| *at <= now_ms)?;
                Some(Due {
                    job_id: id.clone(),
                    chunk: None,
                    poll_at_ms: at,
                    action: DueAction::Erase,
                })
            })
            .collect();
        out.sort_by_key(|d| d.poll_at_ms);
        out.truncate(limit);
        Ok(out)
    }

    async fn take_due(&self, due: &Due, hold_ms: u64) -> Result<Option<u64>, StoreError> {
        let next = now_ms() + hold_ms;
        let mut jobs = self.jobs.lock().unwrap();
        let Some(job) = jobs.get_mut(&due.job_id) else {
            return Ok(None);
        };
        let seen = Some(due.poll_at_ms);
        Ok(match (due.action, due.chunk) {
            (DueAction::Erase, _) if job.erasure_due() == seen => {
                job.erase_due = Some(next);
                Some(next)
            }
            (DueAction::Callback, None) if job.callback_due == seen => {
                job.callback_due = Some(next);
                Some(next)
            }
            (_, Some(index)) => {
                let Some(c) = job.chunks.get(&index) else {
                    return Ok(None);
                };
                if job.chunk_due(c) != seen {
                    return Ok(None);
                }
                let status = c.status;
                job.taken.insert(index, (status, next));
                Some(next)
            }
            _ => None,
        })
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

/// Dedupe claims in memory, with their leases.
pub struct MemoryDedupe {
    lease_ms: u64,
    /// key → (owner, lease end; `None`: completed).
    claims: Mutex<HashMap<String, (String, Option<u64>)>>,
}

impl MemoryDedupe {
    pub fn new(lease_ms: u64) -> MemoryDedupe {
        MemoryDedupe {
            lease_ms,
            claims: Mutex::default(),
        }
    }
}

impl Default for MemoryDedupe {
    fn default() -> Self {
        MemoryDedupe::new(120_000)
    }
}

impl DedupeStore for MemoryDedupe {
    async fn claim(&self, key: &str, owner: &str) -> Result<Claim, StoreError> {
        let now = now_ms();
        let mut claims = self.claims.lock().unwrap();
        match claims.get(key) {
            Some((_, None)) => Ok(Claim::Duplicate),
            Some((held_by, Some(until))) if *until >= now && held_by != owner => {
                Ok(Claim::InProgress)
            }
            _ => {
                claims.insert(
                    key.to_string(),
                    (owner.to_string(), Some(now + self.lease_ms)),
                );
                Ok(Claim::Claimed)
            }
        }
    }

    async fn complete(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let mut claims = self.claims.lock().unwrap();
        if let Some(c) = claims.get_mut(key)
            && c.0 == owner
        {
            c.1 = None;
        }
        Ok(())
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let mut claims = self.claims.lock().unwrap();
        if claims.get(key).is_some_and(|c| c.0 == owner) {
            claims.remove(key);
        }
        Ok(())
    }
}

impl MemoryJobs {
    /// [`SubmitLedger::begin_submit`] (`fenced`) and [`SubmitLedger::begin_fail`].
    fn take_pending(
        &self,
        job_id: &str,
        index: u32,
        owner: &str,
        lease_ms: u64,
        fenced: bool,
    ) -> Result<Option<Chunk>, StoreError> {
        self.with(job_id, |job| {
            let meta = job.meta.as_ref().expect("checked");
            if fenced
                && (meta.deleted
                    || meta.creating
                    || meta.error.as_ref().is_some_and(JobError::stops_submission))
            {
                return Ok(None);
            }
            let Some(c) = job.chunks.get_mut(&index) else {
                return Ok(None);
            };
            // Pending, or held by this owner already (a resent take, as DynamoDB's twin allows).
            let own = c.status == ChunkStatus::Starting
                && job.starting.get(&index).is_some_and(|(o, _)| o == owner);
            if c.status != ChunkStatus::Pending && !own {
                return Ok(None);
            }
            c.status = ChunkStatus::Starting;
            job.starting
                .insert(index, (owner.to_string(), now_ms() + lease_ms));
            Ok(Some(c.clone()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The twin answers a claim as DynamoDedupe does (tests/it/fetch.rs holds the same scenario
    /// against moto): its own claim again is still its own, another's live one waits.
    #[tokio::test]
    async fn a_claim_met_again_by_its_owner_is_still_its_own() {
        let d = MemoryDedupe::default();
        assert_eq!(d.claim("k", "me").await.unwrap(), Claim::Claimed);
        assert_eq!(d.claim("k", "me").await.unwrap(), Claim::Claimed);
        assert_eq!(d.claim("k", "other").await.unwrap(), Claim::InProgress);
        d.complete("k", "me").await.unwrap();
        assert_eq!(d.claim("k", "me").await.unwrap(), Claim::Duplicate);
    }

    /// The twin takes a chunk for its start as DynamoJobStore does (tests/it/submit.rs holds the
    /// same scenario against moto): a take sent again by its owner finds its own hold.
    #[tokio::test]
    async fn a_chunk_taken_again_by_its_owner_is_still_its_own() {
        let jobs = MemoryJobs::default();
        let meta = JobMeta::new(
            "job_t".into(),
            crate::jobs::Operation::EmailFind,
            None,
            JobStatus::Accepted,
            2,
            2,
            serde_json::Value::Null,
        );
        jobs.insert(meta, Chunk::plan(2, 2), Vec::new());
        let first = jobs.begin_submit("job_t", 0, "me", 60_000).await.unwrap();
        assert_eq!(first.map(|c| c.status), Some(ChunkStatus::Starting));
        let again = jobs.begin_submit("job_t", 0, "me", 60_000).await.unwrap();
        assert_eq!(again.map(|c| c.status), Some(ChunkStatus::Starting));
        let other = jobs
            .begin_submit("job_t", 0, "other", 60_000)
            .await
            .unwrap();
        assert!(other.is_none(), "another worker still waits");
    }
}
