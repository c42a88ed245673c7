//! [`OrphanStore`] in memory.

use super::MemoryJobs;
use crate::ids::JobId;
use crate::ids::ProviderId;
use crate::jobs::JobMeta;
use crate::now_ms;
use crate::store::Jobs;
use crate::store::{ORPHAN_RETENTION_DAYS, Orphan, OrphanStore, OrphansCursor, StoreError};

impl MemoryJobs {
    /// The job a chunk of which is linked to `provider_id` at `provider` (no read counted).
    fn linked_job(&self, provider: crate::Provider, provider_id: &ProviderId) -> Option<JobId> {
        self.jobs.lock().unwrap().iter().find_map(|(id, j)| {
            j.meta
                .as_ref()
                .filter(|m| m.provider == provider && j.links.contains_key(provider_id))
                .map(|_| id.clone())
        })
    }
}

impl OrphanStore for MemoryJobs {
    async fn job_of_provider_id(
        &self,
        provider: crate::Provider,
        provider_id: &ProviderId,
    ) -> Result<Option<JobId>, StoreError> {
        let found = self.linked_job(provider, provider_id);
        // As DynamoDB's lookup: it reads the head of the job it finds.
        if found.is_some() {
            self.count(|r| r.heads += 1);
        }
        Ok(found)
    }

    async fn job_head_of_provider_id(
        &self,
        provider: crate::Provider,
        provider_id: &ProviderId,
    ) -> Result<Option<JobMeta>, StoreError> {
        match self.linked_job(provider, provider_id) {
            Some(job_id) => self.job_head(&job_id).await,
            None => Ok(None),
        }
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
