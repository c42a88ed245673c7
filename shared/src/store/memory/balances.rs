//! [`BalanceCache`] in memory.

use super::MemoryJobs;
use crate::Provider;
use crate::now_ms;
use crate::store::{BalanceCache, CachedBalance, StoreError};

impl BalanceCache for MemoryJobs {
    async fn cached_balance(&self, provider: Provider) -> Result<CachedBalance, StoreError> {
        let balances = self.balances.lock().unwrap();
        Ok(balances.get(&provider).map(|(b, _)| *b).unwrap_or_default())
    }

    async fn claim_balance_read(
        &self,
        provider: Provider,
        every_ms: u64,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut balances = self.balances.lock().unwrap();
        let (_, claimed_at) = balances
            .entry(provider)
            .or_insert((CachedBalance::default(), 0));
        if *claimed_at != 0 && now.saturating_sub(*claimed_at) < every_ms {
            return Ok(false);
        }
        *claimed_at = now;
        Ok(true)
    }

    async fn record_balance(&self, provider: Provider, credits: f64) -> Result<(), StoreError> {
        let mut balances = self.balances.lock().unwrap();
        let (cached, _) = balances
            .entry(provider)
            .or_insert((CachedBalance::default(), 0));
        *cached = CachedBalance {
            credits: Some(credits),
            read_at_ms: Some(now_ms()),
        };
        Ok(())
    }
}
