//! Which chunk a provider id or a contact belongs to: linked, or adopted by a chunk still waiting
//! for its id, or fetched as one of its few candidates; and the chunk's contacts without a result.

use std::collections::HashSet;

use relay_shared::jobs::{Chunk, ChunkStatus, Contact, ContactResult, JobMeta};
use relay_shared::store::{ChunkRef, Jobs, Link, Links};

use crate::providers::NOT_OURS;
use crate::{Deps, Failure, FetchWorker, MAX_CANDIDATES};
use relay_shared::ChunkIndex;
use relay_shared::{ContactIndex, ProviderId};

impl<S: Deps> FetchWorker<S> {
    /// The chunk a provider id belongs to. An id not linked yet belongs to a chunk whose start
    /// is unconfirmed (its answer was lost, or has not been recorded yet): the contacts the
    /// delivery names (`rids`: the record keys the relay sent) pick the chunk, which adopts the
    /// id. `single`: whether the event is a single-contact one, when the delivery names no
    /// contact. An id no chunk of this job can have is parked: the URL's job does not own it.
    pub(crate) async fn chunk_of(
        &self,
        meta: &JobMeta,
        provider_id: &ProviderId,
        rids: &[ContactIndex],
        single: Option<bool>,
    ) -> Result<Link, Failure> {
        if let Some(link) = self.jobs.find_link(&meta.job_id, provider_id).await? {
            return Ok(link);
        }
        let chunk = self.adopt(meta, provider_id, rids, single, None).await?;
        Ok(Link::new(chunk, None))
    }

    /// A provider id that is linked to no chunk: the chunk awaiting confirmation of its start
    /// that the delivery names adopts it ([`Self::chunk_of`]). `read`: the job's chunks as its
    /// [`Self::candidate`] read them, if it did: picked from (read again only if none fits).
    pub(crate) async fn adopt(
        &self,
        meta: &JobMeta,
        provider_id: &ProviderId,
        rids: &[ContactIndex],
        single: Option<bool>,
        read: Option<Vec<Chunk>>,
    ) -> Result<ChunkRef, Failure> {
        let job_id = &meta.job_id;
        let mut fit = match &read {
            Some(chunks) => awaiting_fit(chunks, rids, single)?,
            None => None,
        };
        if fit.is_none() {
            // Not read yet, or a chunk's start went unconfirmed since (during the GET).
            fit = awaiting_fit(&self.jobs.chunks(job_id).await?, rids, single)?;
        }
        let at = fit.ok_or_else(|| Failure::unprocessable(NOT_OURS))?;
        if self
            .jobs
            .link_chunk(job_id, at, provider_id, None, None)
            .await?
        {
            tracing::info!(
                %job_id,
                chunk = at.index.get(),
                "unconfirmed start adopted by its webhook"
            );
            return Ok(at);
        }
        // Linked meanwhile by the worker that started it, or by a concurrent delivery.
        self.jobs
            .find_chunk(job_id, provider_id)
            .await?
            .ok_or_else(|| Failure::unprocessable(NOT_OURS))
    }

    /// An id that no chunk of the job is linked to, from a body that cannot vouch for it: it
    /// may be fetched only as a candidate of a chunk still waiting for its id (its start's
    /// answer lost, or not recorded yet), [`MAX_CANDIDATES`] per chunk: then the job's chunks
    /// as read, for [`Self::adopt`]. `None`: it may not; it is dropped and counted, and costs
    /// the account no request.
    pub(crate) async fn candidate(&self, meta: &JobMeta) -> Result<Option<Vec<Chunk>>, Failure> {
        let job_id = &meta.job_id;
        let chunks = self.jobs.chunks(job_id).await?;
        for c in chunks.iter().filter(|c| awaits_id(c)) {
            if self
                .jobs
                .take_candidate(job_id, c.index, MAX_CANDIDATES)
                .await?
            {
                tracing::info!(
                    %job_id,
                    chunk = c.index.get(),
                    "an unknown id fetched as the candidate of a chunk awaiting its id"
                );
                return Ok(Some(chunks));
            }
        }
        Ok(None)
    }

    /// The chunk that holds contact `index` now: its planned chunk, or, in a job where chunks
    /// were split, the half that holds it (read only then).
    pub(crate) async fn chunk_index_of(
        &self,
        meta: &JobMeta,
        index: ContactIndex,
    ) -> Result<ChunkIndex, Failure> {
        if meta.step_of.as_ref().is_some_and(|s| s.position > 0) {
            // A later waterfall step's chunks come as the step before passes contacts on: they
            // follow no plan. The one holding the contact (a split one's half).
            let chunks = self.jobs.chunks(&meta.job_id).await?;
            let holding = chunks
                .iter()
                .filter(|c| c.status != ChunkStatus::Split && c.holds(index))
                .map(|c| c.index)
                .next();
            return Ok(holding.unwrap_or(ChunkIndex(0)));
        }
        let planned = ChunkIndex((index.get() / meta.chunk_size.max(1)) as u32);
        if meta.chunk_seq <= meta.chunks {
            return Ok(planned);
        }
        let mut at = planned;
        for _ in 0..64 {
            let Some(chunk) = self.jobs.chunk(&meta.job_id, at).await? else {
                break;
            };
            if chunk.status != ChunkStatus::Split {
                return Ok(chunk.index);
            }
            let mut next = None;
            for part in &chunk.parts {
                if let Some(c) = self.jobs.chunk(&meta.job_id, *part).await?
                    && c.holds(index)
                {
                    next = Some(c.index);
                }
            }
            match next {
                Some(n) => at = n,
                None => break,
            }
        }
        Ok(at)
    }
}

/// A chunk whose start is unconfirmed and that has no provider id yet.
fn awaits_id(chunk: &Chunk) -> bool {
    chunk.status.awaits_confirmation() && chunk.provider_id.is_none()
}

/// Of `chunks`, the one awaiting its id that the delivery names: the one holding every contact
/// it names (`rids`), or, when it names none, the only one of its kind (`single`: one contact).
fn awaiting_fit(
    chunks: &[Chunk],
    rids: &[ContactIndex],
    single: Option<bool>,
) -> Result<Option<ChunkRef>, Failure> {
    let mut awaiting = chunks.iter().filter(|c| awaits_id(c));
    if !rids.is_empty() {
        let names = |c: &&Chunk| rids.iter().all(|r| c.holds(*r));
        return Ok(awaiting.find(names).map(ChunkRef::from));
    }
    let fit: Vec<&Chunk> = awaiting
        .filter(|c| single.is_none_or(|s| (c.count == 1) == s))
        .collect();
    match fit.as_slice() {
        [one] => Ok(Some(ChunkRef::from(*one))),
        [] => Ok(None),
        _ => Err(Failure::Unlinked),
    }
}

/// Every contact of the chunk without a result gets a `failed` one with `reason`, so the job
/// accounts for every contact.
pub(crate) fn fill_missing(results: &mut Vec<ContactResult>, contacts: &[Contact], reason: &str) {
    let have: HashSet<ContactIndex> = results.iter().map(|r| r.index).collect();
    results.extend(
        contacts
            .iter()
            .filter(|c| !have.contains(&c.index))
            .map(|c| ContactResult::failed(c, reason)),
    );
    results.sort_by_key(|r| r.index);
}
