//! [`CallbackStore`] in memory.

use super::MemoryJobs;
use crate::ids::JobId;
use crate::jobs::CallbackStatus;
use crate::now_ms;
use crate::store::{CallbackAttempt, CallbackStore, CallbackTake, StoreError};

impl CallbackStore for MemoryJobs {
    async fn take_callback(
        &self,
        job_id: &JobId,
        due_at: Option<u64>,
        lease_ms: u64,
    ) -> Result<Option<CallbackTake>, StoreError> {
        self.with(job_id, |job| {
            let now = now_ms();
            let due = match (job.callback_due, due_at) {
                (Some(at), None) => at <= now,
                (Some(at), Some(t)) => at == t,
                (None, _) => false,
            };
            let meta = job.meta.as_mut().expect("checked");
            let Some(cb) = meta.callback.as_mut().filter(|_| !meta.deleted) else {
                return Ok(None);
            };
            if cb.status != CallbackStatus::Pending || !due {
                return Ok(None);
            }
            cb.attempts += 1;
            let lease = now + lease_ms;
            cb.next_attempt_at = Some(lease);
            job.callback_due = Some(lease);
            Ok(Some(CallbackTake {
                meta: meta.clone(),
                lease,
            }))
        })
    }

    async fn record_callback(
        &self,
        job_id: &JobId,
        lease: u64,
        attempt: &CallbackAttempt,
    ) -> Result<bool, StoreError> {
        self.with(job_id, |job| {
            let meta = job.meta.as_mut().expect("checked");
            let Some(cb) = meta.callback.as_mut() else {
                return Ok(false);
            };
            if cb.status != CallbackStatus::Pending || job.callback_due != Some(lease) {
                return Ok(false);
            }
            cb.status = attempt.status;
            cb.last_status_code = attempt.status_code;
            cb.last_error = attempt.error.clone();
            job.callback_due = match attempt.status {
                CallbackStatus::Pending => attempt.next_at,
                _ => None,
            };
            cb.next_attempt_at = job.callback_due;
            Ok(true)
        })
    }
}
