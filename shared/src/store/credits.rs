//! The store traits of what may be spent: a job's budget ([`CreditBudget`]) and the providers'
//! account balances ([`BalanceCache`]), beside the role traits of `mod.rs`.

use std::future::Future;

use super::{CachedBalance, ChunkUpdate, Reserve, StoreError};
use crate::Provider;
use crate::ids::{ChunkIndex, JobId};

/// A job's credit budget ([`crate::budget`]): a chunk's start reserves its worst case from it,
/// and its real cost gives the rest back.
pub trait CreditBudget: Send + Sync + 'static {
    /// Reserves `credits` from the job's budget for chunk `index`'s start, in one conditional
    /// write with the chunk's record of it: only a pending chunk that holds no reservation yet
    /// reserves, and only if `credits` fit in what is left. Workers racing never reserve more
    /// than the budget; a start retried reserves once ([`Reserve`]). `budget`: the job whose
    /// head holds the budget (the job itself, or a waterfall step's waterfall: its steps share
    /// one budget); the chunk remembers it, so its release goes back there.
    fn reserve_credits(
        &self,
        budget: &JobId,
        job_id: &JobId,
        index: ChunkIndex,
        credits: f64,
    ) -> impl Future<Output = Result<Reserve, StoreError>> + Send;
    /// Settles chunk `index`'s reservation at `spent` (what the provider reported it cost; 0 for
    /// a chunk that never started): the rest goes back to the job's budget, once. Whether this
    /// call settled it (`false`: the chunk holds no reservation, or it was settled already).
    fn release_credits(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        spent: f64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// [`Self::release_credits`] when `update` ends its chunk and reports what it cost; nothing
    /// otherwise (a cost reported before the end, e.g. Enrow's `credits_used` at a start, is
    /// only what the provider holds back).
    fn release_reported(
        &self,
        job_id: &JobId,
        update: &ChunkUpdate,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            if let Some(spent) = update.credits.filter(|_| update.status.is_final()) {
                self.release_credits(job_id, update.index, spent).await?;
            }
            Ok(())
        }
    }
}

/// The providers' account balances as `POST /jobs` last read them, shared by every API instance
/// (one item per provider account), so an account is asked at most once per `every_ms`.
pub trait BalanceCache: Send + Sync + 'static {
    /// The account's balance as last read, and when (none yet: both `None`).
    fn cached_balance(
        &self,
        provider: Provider,
    ) -> impl Future<Output = Result<CachedBalance, StoreError>> + Send;
    /// Claims the account's next read when no read was claimed in the last `every_ms` (one
    /// conditional write): whether this caller is to read it. Of callers racing, one wins.
    fn claim_balance_read(
        &self,
        provider: Provider,
        every_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records the balance just read (`read_at` now).
    fn record_balance(
        &self,
        provider: Provider,
        credits: f64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
