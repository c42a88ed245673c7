//! [`DedupeStore`] in memory.

use crate::now_ms;
use crate::store::{Claim, DedupeStore, StoreError};
use std::collections::HashMap;
use std::sync::Mutex;

/// Dedupe claims in memory, with their leases.
pub struct MemoryDedupe {
    lease_ms: u64,
    /// key → (owner, lease end; `None`: completed).
    claims: Mutex<HashMap<String, (String, Option<u64>)>>,
}

impl MemoryDedupe {
    pub fn new(lease_ms: u64) -> MemoryDedupe {
        MemoryDedupe {
            lease_ms,
            claims: Mutex::default(),
        }
    }
}

impl Default for MemoryDedupe {
    fn default() -> Self {
        MemoryDedupe::new(120_000)
    }
}

impl DedupeStore for MemoryDedupe {
    async fn claim(&self, key: &str, owner: &str) -> Result<Claim, StoreError> {
        let now = now_ms();
        let mut claims = self.claims.lock().unwrap();
        match claims.get(key) {
            Some((_, None)) => Ok(Claim::Duplicate),
            Some((held_by, Some(until))) if *until >= now && held_by != owner => {
                Ok(Claim::InProgress)
            }
            _ => {
                claims.insert(
                    key.to_string(),
                    (owner.to_string(), Some(now + self.lease_ms)),
                );
                Ok(Claim::Claimed)
            }
        }
    }

    async fn complete(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let mut claims = self.claims.lock().unwrap();
        if let Some(c) = claims.get_mut(key)
            && c.0 == owner
        {
            c.1 = None;
        }
        Ok(())
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let mut claims = self.claims.lock().unwrap();
        if claims.get(key).is_some_and(|c| c.0 == owner) {
            claims.remove(key);
        }
        Ok(())
    }
}
