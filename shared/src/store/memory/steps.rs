//! [`Waterfalls`] in memory: a pass-on is one critical section over both jobs, as DynamoDB's
//! one transaction of the target's head, its new chunks, the record and the source's head.

use super::MemoryJobs;
use crate::ids::{ChunkIndex, ContactIndex, JobId};
use crate::jobs::{Chunk, Contact, ContactResult, JobStatus};
use crate::store::{PassOn, Passed, StoreError, WaterfallFigures, Waterfalls};
use crate::waterfall::Route;

impl Waterfalls for MemoryJobs {
    async fn pass_on(&self, p: &PassOn) -> Result<Passed, StoreError> {
        self.write_fails()?;
        let mut jobs = self.jobs.lock().unwrap();
        let key = (p.from.clone(), p.chunk);
        let target = jobs
            .get_mut(&p.to)
            .filter(|j| j.meta.is_some())
            .ok_or_else(|| StoreError::Data(format!("no job {}", p.to)))?;
        if let Some(done) = target.passes.get(&key) {
            return Ok(done.clone());
        }
        let meta = target.meta.as_mut().expect("checked");
        if !meta.open || meta.deleted {
            return Err(StoreError::Conflict(format!("step {} is closed", p.to)));
        }
        let base = meta.contacts;
        let first = u32::try_from(meta.chunk_seq)
            .map_err(|_| StoreError::Data("chunk index out of range".into()))?;
        let chunks = Chunk::plan_range(base, p.count, p.chunk_size, first);
        meta.contacts += p.count;
        meta.chunks += chunks.len() as u64;
        meta.chunk_seq += chunks.len() as u64;
        meta.updated_at_ms = crate::now_ms();
        for c in &chunks {
            target.chunks.insert(c.index, c.clone());
        }
        let passed = Passed { base, chunks };
        target.passes.insert(key, passed.clone());
        if let Some(source) = jobs.get_mut(&p.from).and_then(|j| j.meta.as_mut()) {
            source.passed_on.not_found += p.not_found;
            source.passed_on.failed += p.failed;
        }
        Ok(passed)
    }

    async fn write_contacts(&self, job_id: &JobId, contacts: &[Contact]) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            for c in contacts {
                job.contacts.insert(c.index, c.clone());
            }
            Ok(())
        })
    }

    async fn mark_passed(&self, job_id: &JobId, index: ChunkIndex) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            if let Some(c) = job.chunks.get_mut(&index) {
                c.passed = true;
            }
            Ok(())
        })
    }

    async fn put_routes(&self, waterfall: &JobId, routes: &[Route]) -> Result<(), StoreError> {
        self.with(waterfall, |job| {
            for r in routes {
                job.routes.insert((r.index, r.position), r.clone());
            }
            Ok(())
        })
    }

    async fn routes(
        &self,
        waterfall: &JobId,
        from: ContactIndex,
        to: ContactIndex,
    ) -> Result<Vec<Route>, StoreError> {
        self.with(waterfall, |job| {
            Ok(job
                .routes
                .range((from, 0)..=(to, usize::MAX))
                .map(|(_, r)| r.clone())
                .collect())
        })
    }

    async fn results_at(
        &self,
        job_id: &JobId,
        indices: &[ContactIndex],
    ) -> Result<Vec<ContactResult>, StoreError> {
        self.with(job_id, |job| {
            let mut rows: Vec<ContactResult> = indices
                .iter()
                .filter_map(|i| job.results.get(i).cloned())
                .collect();
            rows.sort_by_key(|r| r.index);
            Ok(rows)
        })
    }

    async fn close_step(&self, job_id: &JobId) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            job.meta.as_mut().expect("checked").open = false;
            Ok(())
        })
    }

    async fn settle_waterfall(
        &self,
        job_id: &JobId,
        f: WaterfallFigures,
    ) -> Result<Option<JobStatus>, StoreError> {
        self.with(job_id, |job| {
            let meta = job.meta.as_mut().expect("checked");
            if meta.status.is_terminal() || meta.deleted {
                return Ok(None);
            }
            meta.done = f.done;
            meta.found = f.found;
            meta.not_found = f.not_found;
            meta.failed = f.failed;
            let status = JobStatus::settled(meta.contacts, f.failed);
            super::results::end_job(job, status);
            Ok(Some(status))
        })
    }
}
