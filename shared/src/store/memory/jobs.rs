//! [`Jobs`] in memory.

use super::MemoryJobs;
use crate::ids::ContactIndex;
use crate::ids::{ChunkIndex, JobId};
use crate::jobs::{Chunk, Contact, JobError, JobMeta};
use crate::now_ms;
use crate::store::{Jobs, StoreError};

impl Jobs for MemoryJobs {
    async fn get_job(&self, job_id: &JobId) -> Result<Option<JobMeta>, StoreError> {
        // As the DynamoDB head: figures kept only once the job ended, duplicates never.
        self.count(|r| r.heads += 1);
        let mut meta = self.job_view(job_id).await?;
        if let Some(m) = meta.as_mut() {
            if !m.status.is_terminal() {
                (m.done, m.found, m.not_found, m.failed) = (0, 0, 0, 0);
            }
            m.duplicates = 0;
        }
        Ok(meta)
    }

    async fn job_head(&self, job_id: &JobId) -> Result<Option<JobMeta>, StoreError> {
        let mut meta = self.get_job(job_id).await?;
        if self.stale_heads.load(std::sync::atomic::Ordering::SeqCst)
            && let Some(m) = meta.as_mut()
        {
            m.deleted = false;
        }
        Ok(meta)
    }

    async fn job_view(&self, job_id: &JobId) -> Result<Option<JobMeta>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs.get(job_id).and_then(|j| j.meta.clone()))
    }

    async fn contacts(
        &self,
        job_id: &JobId,
        offset: u64,
        count: u64,
    ) -> Result<Vec<Contact>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs
            .get(job_id)
            .map(|j| {
                j.contacts
                    .range(ContactIndex(offset)..ContactIndex(offset + count))
                    .map(|(_, c)| c.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn chunk(&self, job_id: &JobId, index: ChunkIndex) -> Result<Option<Chunk>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs.get(job_id).and_then(|j| j.chunks.get(&index).cloned()))
    }

    async fn chunks(&self, job_id: &JobId) -> Result<Vec<Chunk>, StoreError> {
        self.count(|r| r.chunk_queries += 1);
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs
            .get(job_id)
            .map(|j| j.chunks.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn set_job_error(&self, job_id: &JobId, error: &JobError) -> Result<(), StoreError> {
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
}
