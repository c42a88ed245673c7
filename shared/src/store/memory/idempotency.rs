//! [`IdempotencyKeys`] in memory.

use super::{IdemKey, MemoryJobs};
use crate::ids::JobId;
use crate::now_ms;
use crate::store::{Idempotency, IdempotencyKeys, StoreError};

impl IdempotencyKeys for MemoryJobs {
    async fn claim_idempotency_key(
        &self,
        key: &str,
        body_sha256: &str,
        job_id: &JobId,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Idempotency, StoreError> {
        let now = now_ms();
        let mut keys = self.keys.lock().unwrap();
        let Some(k) = keys.get_mut(key) else {
            keys.insert(
                key.to_string(),
                IdemKey {
                    body_sha256: body_sha256.to_string(),
                    job_id: job_id.clone(),
                    created: false,
                    owner: owner.to_string(),
                    lease_until: now + lease_ms,
                },
            );
            return Ok(Idempotency::Owned {
                job_id: job_id.clone(),
            });
        };
        let first = k.job_id.clone();
        Ok(if k.body_sha256 != body_sha256 {
            Idempotency::Mismatch { job_id: first }
        } else if k.created {
            Idempotency::Created { job_id: first }
        } else if k.lease_until > now {
            Idempotency::InUse {
                retry_after_ms: k.lease_until - now,
            }
        } else {
            k.owner = owner.to_string();
            k.lease_until = now + lease_ms;
            Idempotency::Owned { job_id: first }
        })
    }

    async fn finish_idempotency_key(
        &self,
        key: &str,
        owner: &str,
        created: bool,
    ) -> Result<(), StoreError> {
        let mut keys = self.keys.lock().unwrap();
        if let Some(k) = keys.get_mut(key).filter(|k| k.owner == owner) {
            if created {
                k.created = true;
            } else {
                k.lease_until = 0;
            }
        }
        Ok(())
    }
}
