//! [`Jobs`] over the jobs table: heads, chunks, contacts, a job's error.

use super::DynamoJobStore;
use super::attrs::{get_s, n, s, unavailable, unless_condition_failed};
use super::items::expired;
use super::items::{parse_chunk, parse_contact, parse_meta};
use super::keys::{chunk_sk, contact_sk, job_pk};
use crate::ids::ContactIndex;
use crate::ids::{ChunkIndex, JobId};
use crate::jobs::{Chunk, Contact, JobError, JobMeta};
use crate::now_ms;
use crate::store::{Jobs, StoreError};

impl Jobs for DynamoJobStore {
    async fn get_job(&self, job_id: &JobId) -> Result<Option<JobMeta>, StoreError> {
        // Past its retention a job is gone, whenever TTL gets round to deleting it.
        self.item(job_id, "META")
            .await?
            .as_ref()
            .filter(|i| !expired(i))
            .map(parse_meta)
            .transpose()
    }

    async fn job_view(&self, job_id: &JobId) -> Result<Option<JobMeta>, StoreError> {
        match self.get_job(job_id).await? {
            Some(meta) => Ok(Some(self.with_figures(meta).await?)),
            None => Ok(None),
        }
    }

    async fn job_head(&self, job_id: &JobId) -> Result<Option<JobMeta>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s("META"))
            .send()
            .await
            .map_err(unavailable)?;
        out.item
            .as_ref()
            .filter(|i| !expired(i))
            .map(parse_meta)
            .transpose()
    }

    async fn contacts(
        &self,
        job_id: &JobId,
        offset: u64,
        count: u64,
    ) -> Result<Vec<Contact>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        if count == 1 {
            // One contact (a per-contact event with the relay's `rid`) is read by its key.
            let item = self.item(job_id, &contact_sk(ContactIndex(offset))).await?;
            return item.as_ref().map(parse_contact).into_iter().collect();
        }
        let items = self
            .query_range(
                job_id,
                &contact_sk(ContactIndex(offset)),
                &contact_sk(ContactIndex(offset + count - 1)),
                None,
            )
            .await?;
        items.iter().map(parse_contact).collect()
    }

    async fn chunk(&self, job_id: &JobId, index: ChunkIndex) -> Result<Option<Chunk>, StoreError> {
        self.item(job_id, &chunk_sk(index))
            .await?
            .as_ref()
            .map(parse_chunk)
            .transpose()
    }

    async fn chunks(&self, job_id: &JobId) -> Result<Vec<Chunk>, StoreError> {
        // Up to `CHUNK#~`: the groups of final chunks and duplicate shards sort after it.
        let items = self.query_range(job_id, "CHUNK#", "CHUNK#~", None).await?;
        items.iter().map(parse_chunk).collect()
    }

    /// One query for the chunks, their counters and the duplicate shards.
    async fn job_with_chunks(
        &self,
        job_id: &JobId,
    ) -> Result<Option<(JobMeta, Vec<Chunk>)>, StoreError> {
        let Some(meta) = self.get_job(job_id).await? else {
            return Ok(None);
        };
        let items = self.query_range(job_id, "CHUNK#", "CHUNK#~~", None).await?;
        let chunks = items
            .iter()
            .filter(|i| get_s(i, "sk").is_some_and(|sk| !sk.starts_with("CHUNK#~")))
            .map(parse_chunk)
            .collect::<Result<_, _>>()?;
        Ok(Some((
            DynamoJobStore::with_figures_of(meta, &items),
            chunks,
        )))
    }

    /// Records why a job (partly) failed; its status settles when every contact is accounted for.
    async fn set_job_error(&self, job_id: &JobId, error: &JobError) -> Result<(), StoreError> {
        let update = self
            .meta_item_update(job_id)
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(
                ":err",
                s(serde_json::to_string(error).unwrap_or_default()),
            )
            .expression_attribute_values(":now", n(now_ms()));
        // A stopping error is written with `stopped` (the fence of every later start); an
        // error that does not stop the job never replaces one that did.
        let update = if error.stops_submission() {
            update
                .update_expression(
                    "SET #error = :err, updated_at = :now, stopped = if_not_exists(stopped, :code)",
                )
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":code", s(&error.code))
        } else {
            update
                .update_expression("SET #error = :err, updated_at = :now")
                .condition_expression("attribute_exists(pk) AND attribute_not_exists(stopped)")
        };
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e) if error.stops_submission() => Err(unavailable(e)),
            // Stopped already (or no head: a job erased meanwhile): nothing to record.
            Err(e) => unless_condition_failed::<(), _, _>(Err(e)).map(|_| ()),
        }
    }
}
