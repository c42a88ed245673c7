//! [`OrphanStore`] in memory.

use super::MemoryJobs;
use crate::ids::JobId;
use crate::ids::ProviderId;
use crate::now_ms;
use crate::store::{ORPHAN_RETENTION_DAYS, Orphan, OrphanStore, OrphansCursor, StoreError};

impl OrphanStore for MemoryJobs {
    async fn job_of_provider_id(
        &self,
        provider: crate::Provider,
        provider_id: &ProviderId,
    ) -> Result<Option<JobId>, StoreError> {
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
