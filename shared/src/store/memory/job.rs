//! One job's state in memory, and the rules the DynamoDB store keeps in its items.

use crate::ids::{ChunkIndex, ContactIndex, JobId, ProviderId};
use crate::jobs::{Chunk, ChunkStatus, Contact, ContactResult, JobMeta, JobStatus};
use crate::now_ms;
use crate::store::counts::Counts;
use crate::store::{
    CREATION_GRACE, ChunkUpdate, DEFAULT_POLL_AFTER_MS, DEFAULT_START_OVERDUE_MS, DRAFT_TTL,
    FINAL_GROUP, FinalGroup, Link, Page,
};
use std::collections::{BTreeMap, HashMap};

#[derive(Default)]
pub(super) struct JobState {
    pub(super) meta: Option<JobMeta>,
    pub(super) chunks: BTreeMap<ChunkIndex, Chunk>,
    pub(super) contacts: BTreeMap<ContactIndex, Contact>,
    pub(super) results: BTreeMap<ContactIndex, ContactResult>,
    /// Provider id → chunk.
    pub(super) links: HashMap<ProviderId, Link>,
    /// Per chunk: what its results count (the DynamoDB chunk item's `c_*` counters).
    pub(super) counted: HashMap<ChunkIndex, Counts>,
    /// The callback's due date (`poll_at` on the head), while pending.
    pub(super) callback_due: Option<u64>,
    /// Chunks being started: owner and lease end.
    pub(super) starting: HashMap<ChunkIndex, (String, u64)>,
    /// Chunks counted as submitted.
    pub(super) submitted: u64,
    /// Per chunk: ids fetched on the word of an unsigned body while it waited for its own.
    pub(super) candidates: HashMap<ChunkIndex, u32>,
    /// A staged job's pages, by offset.
    pub(super) pages: BTreeMap<u64, Page>,
    /// The seal a start of the draft holds, until then (ms).
    pub(super) sealed_until: Option<u64>,
    /// Chunks the sweeper took: the state it took each in, and when it is due again (a chunk
    /// that moves on is due as its new state says, as a DynamoDB write sets its `poll_at`).
    pub(super) taken: HashMap<ChunkIndex, (ChunkStatus, u64)>,
    /// A deleted job's (or an abandoned creation's) erasure: when it is due.
    pub(super) erase_due: Option<u64>,
    /// A waterfall's routes, by contact and step position.
    pub(super) routes: BTreeMap<(ContactIndex, usize), crate::waterfall::Route>,
    /// A later step's record of what each source chunk passed on to it.
    pub(super) passes: HashMap<(JobId, ChunkIndex), crate::store::Passed>,
    /// Per chunk: the job whose budget its reservation came from (when not its own).
    pub(super) reserved_from: HashMap<ChunkIndex, JobId>,
}

impl JobState {
    /// When chunk `c` is due for the sweeper, if it is open: its start (or the check of a start
    /// whose worker died) `DEFAULT_START_OVERDUE_MS` after the job's creation, its poll
    /// `DEFAULT_POLL_AFTER_MS` after its start, or what the sweeper's last take set.
    pub(super) fn chunk_due(&self, c: &Chunk) -> Option<u64> {
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
    pub(super) fn erasure_due(&self) -> Option<u64> {
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

pub(super) fn add(meta: &mut JobMeta, c: Counts) {
    let apply = |v: &mut u64, d: i64| *v = (*v as i64 + d).max(0) as u64;
    apply(&mut meta.done, c.done);
    apply(&mut meta.found, c.found);
    apply(&mut meta.not_found, c.not_found);
    apply(&mut meta.failed, c.failed);
    meta.updated_at_ms = now_ms();
}

/// The group of final chunks holding `index`, if that chunk is final (the DynamoDB store's
/// `CHUNK#~F<group>` set).
pub(super) fn final_group(job: &JobState, index: ChunkIndex) -> Option<FinalGroup> {
    let group = index.0 / FINAL_GROUP;
    job.chunks
        .get(&index)?
        .status
        .is_final()
        .then(|| FinalGroup {
            group,
            size: job
                .chunks
                .values()
                .filter(|c| c.index.0 / FINAL_GROUP == group && c.status.is_final())
                .count() as u64,
        })
}

pub(super) fn update_chunk(chunk: &mut Chunk, u: &ChunkUpdate) {
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

/// The head is a draft taking pages (the DynamoDB store's `OPEN_DRAFT` condition).
pub(super) fn open_draft(job: &JobState) -> bool {
    job.meta
        .as_ref()
        .is_some_and(|m| m.status == JobStatus::Draft && !m.deleted)
        && job.sealed_until.is_none_or(|until| until < now_ms())
}
