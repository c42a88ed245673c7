//! The stores over DynamoDB: [`DynamoJobStore`] (the jobs table) and [`DynamoDedupe`] (the
//! dedupe table). One file per concern, each holding one `impl` of a store trait: `jobs.rs`
//! ([`Jobs`]), `writer.rs` ([`JobWriter`]), `results.rs` ([`Results`]; a single result's row in
//! `result_row.rs`, a chunk's set in `result_set.rs`, the figures summed in `figures.rs`),
//! `links.rs` ([`Links`]), `polls.rs` ([`Polls`]), `rate.rs` ([`RateSchedule`]), `due.rs`
//! ([`DueIndex`]), `drafts.rs` ([`JobDrafts`]), `submit.rs` ([`SubmitLedger`]), `idempotency.rs`
//! ([`IdempotencyKeys`]), `budget.rs` ([`CreditBudget`]), `callbacks.rs` ([`CallbackStore`]), `orphans.rs` ([`OrphanStore`]), `balances.rs` ([`BalanceCache`]),
//! `dedupe.rs` ([`DedupeStore`]). Beneath them: `attrs.rs` attribute values and SDK error
//! mapping, `keys.rs` item keys, `items.rs` items and types, `counts.rs` counters bound into
//! update expressions, `requests.rs` the requests every concern builds on.

use crate::now_ms;
use crate::store::{
    CREATION_GRACE, DEFAULT_POLL_AFTER_MS, DEFAULT_RETENTION_DAYS, DEFAULT_START_OVERDUE_MS,
    ERASE_GRACE,
};
use attrs::{Item, n};
use aws_sdk_dynamodb::Client;

mod attrs;
mod balances;
mod budget;
mod callbacks;
mod counts;
mod dedupe;
mod drafts;
mod due;
mod figures;
mod idempotency;
mod items;
mod jobs;
mod keys;
mod links;
mod orphans;
mod polls;
mod rate;
mod requests;
mod result_row;
mod result_set;
mod results;
mod steps;
mod submit;
mod writer;

pub use dedupe::DynamoDedupe;
pub use items::item_size;
pub use keys::{POLL_SHARDS, chunk_sk, contact_sk, poll_shard, result_sk};

#[derive(Debug, Clone)]
pub struct DynamoJobStore {
    pub(super) client: Client,
    pub(super) table: String,
    /// How long a bulk apply holds its chunk before another worker may take it over.
    pub apply_lease_ms: u64,
    /// How long a started chunk may go without its results before its first poll.
    pub poll_after_ms: u64,
    /// How long every item of a job is kept after it is written (`RESULT_RETENTION_DAYS`):
    /// DynamoDB's TTL deletes it then (`expires_at`).
    pub retention_s: u64,
    /// How long a chunk may stay not started before the sweeper sends its start again.
    pub start_overdue_ms: u64,
    /// How long after a `DELETE` its erasure is due for the sweeper ([`ERASE_GRACE`]).
    pub erase_grace_ms: u64,
    /// How long a job may stay `creating` before the sweeper erases it ([`CREATION_GRACE`]).
    pub creation_grace_ms: u64,
}

impl DynamoJobStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoJobStore {
            client,
            table: table.into(),
            apply_lease_ms: 120_000,
            poll_after_ms: DEFAULT_POLL_AFTER_MS,
            retention_s: DEFAULT_RETENTION_DAYS * 86_400,
            start_overdue_ms: DEFAULT_START_OVERDUE_MS,
            erase_grace_ms: ERASE_GRACE.as_millis() as u64,
            creation_grace_ms: CREATION_GRACE.as_millis() as u64,
        }
    }

    /// How long a job may stay `creating` before the sweeper erases it (tests: at once).
    pub fn with_creation_grace(mut self, grace: std::time::Duration) -> Self {
        self.creation_grace_ms = grace.as_millis() as u64;
        self
    }

    /// How long a chunk may stay not started before the sweeper sends its start again.
    pub fn with_start_overdue(mut self, after: std::time::Duration) -> Self {
        self.start_overdue_ms = after.as_millis() as u64;
        self
    }

    /// How long after a `DELETE` the sweeper looks for its erasure (tests: at once).
    pub fn with_erase_grace(mut self, grace: std::time::Duration) -> Self {
        self.erase_grace_ms = grace.as_millis() as u64;
        self
    }

    /// How long a started chunk may go without its results before it is polled
    /// (`POLL_AFTER_SECONDS`).
    pub fn with_poll_after(mut self, after: std::time::Duration) -> Self {
        self.poll_after_ms = after.as_millis() as u64;
        self
    }

    /// How long a job's items are kept (`RESULT_RETENTION_DAYS`).
    pub fn with_retention(mut self, retention: std::time::Duration) -> Self {
        self.retention_s = retention.as_secs();
        self
    }

    /// How long a bulk apply holds its chunk (`APPLY_LEASE_SECONDS`).
    pub fn with_apply_lease(mut self, lease: std::time::Duration) -> Self {
        self.apply_lease_ms = lease.as_millis() as u64;
        self
    }

    /// `item` with its expiry: kept `retention_s` from now, then deleted by TTL.
    pub(super) fn expiring(&self, mut item: Item) -> Item {
        item.insert("expires_at".into(), n(self.expires_at()));
        item
    }

    /// When an item written now expires (seconds, DynamoDB's TTL).
    pub(super) fn expires_at(&self) -> u64 {
        now_ms() / 1000 + self.retention_s
    }
}
