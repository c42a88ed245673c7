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
        budget: &JobId,
        job_id: &JobId,
        index: ChunkIndex,
        credits: f64,
    ) -> Result<Reserve, StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        let Some(chunk) = jobs.get(job_id).and_then(|j| j.chunks.get(&index)) else {
            return Ok(Reserve::NotPending);
        };
        if chunk.reservation.is_some() {
            return Ok(Reserve::Held);
        }
        if chunk.status != ChunkStatus::Pending {
            return Ok(Reserve::NotPending);
        }
        let Some(b) = jobs
            .get_mut(budget)
            .and_then(|j| j.meta.as_mut())
            .and_then(|m| m.budget.as_mut())
        else {
            return Ok(Reserve::Unlimited);
        };
        if b.left < credits {
            return Ok(Reserve::Exhausted { left: b.left });
        }
        b.left -= credits;
        let job = jobs.get_mut(job_id).expect("read above");
        job.chunks.get_mut(&index).expect("read above").reservation = Some(Reservation {
            credits,
            settled: None,
        });
        job.reserved_from.insert(index, budget.clone());
        Ok(Reserve::Reserved)
    }

    async fn release_credits(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        spent: f64,
    ) -> Result<bool, StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        let Some(job) = jobs.get_mut(job_id) else {
            return Ok(false);
        };
        let from = job.reserved_from.get(&index).cloned();
        let Some(r) = job
            .chunks
            .get_mut(&index)
            .and_then(|c| c.reservation.as_mut())
            .filter(|r| r.settled.is_none())
        else {
            return Ok(false);
        };
        r.settled = Some(spent);
        let back = r.credits - spent;
        let from = from.unwrap_or_else(|| job_id.clone());
        if let Some(b) = jobs
            .get_mut(&from)
            .and_then(|j| j.meta.as_mut())
            .and_then(|m| m.budget.as_mut())
        {
            b.left += back;
        }
        Ok(true)
    }
}
