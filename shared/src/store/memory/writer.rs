//! [`JobWriter`] in memory.

use super::job::JobState;
use super::{MemoryJobs, take_one};
use crate::ids::ContactIndex;
use crate::ids::JobId;
use crate::jobs::{Chunk, Contact, ContactResult, JobMeta};
use crate::now_ms;
use crate::store::{ERASE_GRACE, JobWriter, JobsCursor, StoreError};

impl JobWriter for MemoryJobs {
    async fn create_job(
        &self,
        meta: &JobMeta,
        chunks: &[Chunk],
        contacts: &[Contact],
    ) -> Result<(), StoreError> {
        // A new job, or one still being created (as the head's conditional put).
        let rewritable = |j: &JobState| j.meta.as_ref().is_none_or(|m| m.creating && !m.deleted);
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
            .filter(|m| !m.creating && m.step_of.is_none())
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

    async fn mark_deleted(&self, job_id: &JobId) -> Result<bool, StoreError> {
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
        job_id: &JobId,
        from: ContactIndex,
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
