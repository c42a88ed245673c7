//! [`RateSchedule`] in memory.

use super::MemoryJobs;
use crate::now_ms;
use crate::store::{RateSchedule, Slot, StoreError};

impl RateSchedule for MemoryJobs {
    async fn take_slot(
        &self,
        name: &str,
        interval_ms: u64,
        max_wait_ms: u64,
    ) -> Result<Slot, StoreError> {
        let now = now_ms();
        let mut slots = self.slots.lock().unwrap();
        let next = slots.entry(name.to_string()).or_insert(0);
        if *next <= now {
            *next = now + interval_ms;
            return Ok(Slot::At(now));
        }
        let limit = now + max_wait_ms;
        if *next > limit {
            return Ok(Slot::Busy {
                retry_in_ms: (*next - limit).max(interval_ms),
            });
        }
        let at = *next;
        *next = at + interval_ms;
        Ok(Slot::At(at))
    }

    async fn return_slot(
        &self,
        name: &str,
        at_ms: u64,
        interval_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut slots = self.slots.lock().unwrap();
        match slots.get_mut(name) {
            Some(next) if *next == at_ms + interval_ms => {
                *next = at_ms;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
