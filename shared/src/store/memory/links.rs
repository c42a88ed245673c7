//! [`Links`] in memory.

use super::MemoryJobs;
use crate::ids::{ChunkIndex, JobId, ProviderId};
use crate::jobs::{ChunkStatus, Contact};
use crate::now_ms;
use crate::store::{ChunkRef, DEFAULT_POLL_AFTER_MS, Link, Links, StoreError};

impl Links for MemoryJobs {
    async fn find_link(
        &self,
        job_id: &JobId,
        provider_id: &ProviderId,
    ) -> Result<Option<Link>, StoreError> {
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

    async fn link_chunk(
        &self,
        job_id: &JobId,
        chunk: ChunkRef,
        provider_id: &ProviderId,
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
                    c.provider_id = Some(provider_id.clone());
                    c.status = ChunkStatus::Submitted;
                    c.started_at_ms = Some(now_ms());
                    // Polled every `DEFAULT_POLL_AFTER_MS` until a poll says otherwise, as
                    // DynamoDB's chunk (`poll_every`).
                    c.poll_every_ms = Some(DEFAULT_POLL_AFTER_MS);
                    c.unconfirmed_at_ms = None;
                    if credits.is_some() {
                        c.credits = credits;
                    }
                }
                _ if c.provider_id.as_deref() == Some(provider_id) => {}
                _ => return Ok(false),
            }
            job.links.insert(provider_id.clone(), link);
            Ok(true)
        })
    }

    async fn correct_link(
        &self,
        job_id: &JobId,
        chunk: ChunkRef,
        provider_id: &ProviderId,
        contact: Option<&Contact>,
    ) -> Result<(), StoreError> {
        let link = Link::new(chunk, contact);
        self.with(job_id, |job| {
            let c = job
                .chunks
                .get_mut(&chunk.index)
                .ok_or_else(|| StoreError::Data(format!("no chunk {}", chunk.index)))?;
            let wrong = c.provider_id.replace(provider_id.clone());
            if let Some(wrong) = wrong.filter(|w| w != provider_id) {
                job.links.remove(&wrong);
            }
            job.links.insert(provider_id.clone(), link);
            Ok(())
        })
    }

    async fn take_candidate(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        max: u32,
    ) -> Result<bool, StoreError> {
        self.with(job_id, |job| {
            // No such chunk: nothing counted, as DynamoDB's update conditional on its item.
            if !job.chunks.contains_key(&index) {
                return Ok(false);
            }
            let n = job.candidates.entry(index).or_insert(0);
            if *n >= max {
                return Ok(false);
            }
            *n += 1;
            Ok(true)
        })
    }
}
