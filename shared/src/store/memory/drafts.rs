//! [`JobDrafts`] in memory.

use super::MemoryJobs;
use super::job::open_draft;
use crate::ids::JobId;
use crate::jobs::{Chunk, Contact, JobMeta, JobStatus};
use crate::now_ms;
use crate::store::JobWriter;
use crate::store::{JobDrafts, Page, PageWrite, StoreError};

impl JobDrafts for MemoryJobs {
    async fn create_draft(&self, meta: &JobMeta) -> Result<(), StoreError> {
        self.create_job(meta, &[], &[]).await
    }

    async fn put_page(
        &self,
        job_id: &JobId,
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

    async fn pages(&self, job_id: &JobId) -> Result<Vec<Page>, StoreError> {
        self.with(job_id, |job| Ok(job.pages.values().cloned().collect()))
    }

    async fn seal_draft(&self, job_id: &JobId, lease_ms: u64) -> Result<Option<u64>, StoreError> {
        self.with(job_id, |job| {
            if !open_draft(job) {
                return Ok(None);
            }
            let until = now_ms() + lease_ms;
            job.sealed_until = Some(until);
            Ok(Some(until))
        })
    }

    async fn unseal_draft(&self, job_id: &JobId, seal: u64) -> Result<(), StoreError> {
        self.with(job_id, |job| {
            if job.sealed_until == Some(seal) {
                job.sealed_until = None;
            }
            Ok(())
        })
    }

    async fn start_draft(
        &self,
        job_id: &JobId,
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
