//! The store trait of waterfall jobs ([`crate::waterfall`]): a step's chunk passing its contacts
//! on to a later step's job, the routes of those contacts under the waterfall's head, and the
//! waterfall's end.

use std::future::Future;

use super::StoreError;
use crate::ids::{ChunkIndex, ContactIndex, JobId};
use crate::jobs::{Chunk, Contact, ContactResult, JobStatus};
use crate::waterfall::Route;

/// What one step's chunk passes on to one later step's job.
#[derive(Debug, Clone, PartialEq)]
pub struct PassOn {
    /// The step's job and chunk the contacts come from.
    pub from: JobId,
    pub chunk: ChunkIndex,
    /// The later step's job (it must be `open`).
    pub to: JobId,
    /// How many contacts, and the target's contacts per chunk.
    pub count: u64,
    pub chunk_size: u64,
    /// Of them, how many the source step counted `not_found` (or `invalid`) and `failed`: its
    /// head keeps them (`passed_on`), so the waterfall counts each contact at the step that
    /// settled it. Zero for the verify step (a found contact stays settled where it was found).
    pub not_found: u64,
    pub failed: u64,
}

/// Where a [`PassOn`] put its contacts in the target job: indices `base ..` and its new chunks
/// (pending), the same on every call for one source chunk and target.
#[derive(Debug, Clone, PartialEq)]
pub struct Passed {
    pub base: u64,
    pub chunks: Vec<Chunk>,
}

/// The figures a waterfall ends with, summed from its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Figures {
    pub done: u64,
    pub found: u64,
    pub not_found: u64,
    pub failed: u64,
}

pub trait Waterfalls: Send + Sync + 'static {
    /// Takes the target's next `count` contact indices and chunk indices for the source chunk,
    /// in one transaction with the target's head (only while it is `open`) and the source
    /// head's `passed_on` counters, once per source chunk and target (a record of it is kept
    /// in the target): a call again returns what the first made. The contacts themselves are
    /// written after ([`Self::write_contacts`]), before any start is asked for.
    fn pass_on(&self, p: &PassOn) -> impl Future<Output = Result<Passed, StoreError>> + Send;
    /// Writes contacts of a job at their indices (the same contact again is the same item).
    fn write_contacts(
        &self,
        job_id: &JobId,
        contacts: &[Contact],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Marks a final chunk of a step passed on: all its contacts are where they go next. A step
    /// that passes contacts on settles only once every final chunk is marked.
    fn mark_passed(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records routes under the waterfall's head (one item per contact and step: the same
    /// route again is the same item).
    fn put_routes(
        &self,
        waterfall: &JobId,
        routes: &[Route],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The routes of waterfall contacts `from ..= to`, in contact order (several per contact:
    /// one per step it entered after the first).
    fn routes(
        &self,
        waterfall: &JobId,
        from: ContactIndex,
        to: ContactIndex,
    ) -> impl Future<Output = Result<Vec<Route>, StoreError>> + Send;
    /// The results of a job's contacts `indices`, those stored (one batch read).
    fn results_at(
        &self,
        job_id: &JobId,
        indices: &[ContactIndex],
    ) -> impl Future<Output = Result<Vec<ContactResult>, StoreError>> + Send;
    /// Closes a later step's job: the step before it has settled, nothing more comes; it may
    /// settle now. Idempotent.
    fn close_step(&self, job_id: &JobId) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Ends the waterfall with `figures` (its steps all settled), making its callback due as
    /// [`super::Results::settle_job`] does. The status, when this call ended it.
    fn settle_waterfall(
        &self,
        job_id: &JobId,
        figures: Figures,
    ) -> impl Future<Output = Result<Option<JobStatus>, StoreError>> + Send;
}
