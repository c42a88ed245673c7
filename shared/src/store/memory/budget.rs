//! [`CreditBudget`] in memory: the head's `left` and the chunk's reservation in one critical
//! section, as DynamoDB's one transaction of both.

use super::MemoryJobs;
use crate::budget::Reservation;
use crate::ids::{ChunkIndex, JobId};
use crate::jobs::ChunkStatus;
use crate::store::{CreditBudget, Reserve, StoreError};

impl CreditBudget for MemoryJobs {
    async fn reserve_credits(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        credits: f64,
    ) -> Result<Reserve, StoreError> {
        self.with(job_id, |job| {
            let Some(chunk) = job.chunks.get_mut(&index) else {
                return Ok(Reserve::NotPending);
            };
            if chunk.reservation.is_some() {
                return Ok(Reserve::Held);
            }
            if chunk.status != ChunkStatus::Pending {
                return Ok(Reserve::NotPending);
            }
            let meta = job.meta.as_mut().expect("checked");
            let Some(budget) = meta.budget.as_mut() else {
                return Ok(Reserve::Unlimited);
            };
            if budget.left < credits {
                return Ok(Reserve::Exhausted { left: budget.left });
            }
            budget.left -= credits;
            chunk.reservation = Some(Reservation {
                credits,
                settled: None,
            });
            Ok(Reserve::Reserved)
        })
    }

    async fn release_credits(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        spent: f64,
    ) -> Result<bool, StoreError> {
        self.with(job_id, |job| {
            let Some(r) = job
                .chunks
                .get_mut(&index)
                .and_then(|c| c.reservation.as_mut())
                .filter(|r| r.settled.is_none())
            else {
                return Ok(false);
            };
            let Some(budget) = job.meta.as_mut().and_then(|m| m.budget.as_mut()) else {
                return Ok(false);
            };
            r.settled = Some(spent);
            budget.left += r.credits - spent;
            Ok(true)
        })
    }
}
