//! [`Polls`] over the jobs table: a chunk's next poll, and a queued poll taken once.

use super::DynamoJobStore;
use super::attrs::{n, unless_condition_failed};
use crate::ids::{ChunkIndex, JobId};
use crate::now_ms;
use crate::store::{Polls, StoreError};

impl Polls for DynamoJobStore {
    async fn poll_later(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        every_ms: u64,
    ) -> Result<(), StoreError> {
        let at = now_ms() + every_ms;
        let out = self
            .chunk_item_update(job_id, index)
            .update_expression("SET poll_every = :e, poll_at = :at")
            .condition_expression("attribute_exists(poll_at)")
            .expression_attribute_values(":e", n(every_ms))
            .expression_attribute_values(":at", n(at))
            .send()
            .await;
        if unless_condition_failed(out)?.is_some() {
            // Sooner than the sweep that took it expects it back, perhaps.
            self.group_due_by(job_id, index, at).await?;
        }
        Ok(())
    }

    async fn claim_poll(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        taken_at_ms: u64,
    ) -> Result<bool, StoreError> {
        let out = self
            .chunk_item_update(job_id, index)
            .update_expression("SET poll_at = :next")
            .condition_expression("poll_at = :taken")
            .expression_attribute_values(":taken", n(taken_at_ms))
            .expression_attribute_values(":next", n(taken_at_ms + 1))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.is_some())
    }
}
