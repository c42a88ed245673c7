//! The dedupe table: one claim per delivery identity (AWS Powertools' idempotency semantics).

use super::attrs::unavailable;
use super::attrs::{get_s, n, put_refused, s, unless_condition_failed};
use crate::now_ms;
use crate::store::{Claim, DedupeStore, StoreError};
use aws_sdk_dynamodb::Client;

#[derive(Debug, Clone)]
pub struct DynamoDedupe {
    client: Client,
    table: String,
    /// How long a claim holds before another worker may take it over.
    pub lease_ms: u64,
    /// How long a completed key is kept (`DEDUPE_RETENTION_DAYS`).
    pub retention_s: u64,
}

impl DynamoDedupe {
    pub fn new(client: Client, table: impl Into<String>, lease_ms: u64, retention_s: u64) -> Self {
        DynamoDedupe {
            client,
            table: table.into(),
            lease_ms,
            retention_s,
        }
    }
}

pub(super) const IN_PROGRESS: &str = "IN_PROGRESS";

pub(super) const COMPLETED: &str = "COMPLETED";

impl DedupeStore for DynamoDedupe {
    async fn claim(&self, key: &str, owner: &str) -> Result<Claim, StoreError> {
        use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
        let now = now_ms();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(key))
            .item("status", s(IN_PROGRESS))
            .item("owner", s(owner))
            .item("lease_until", n(now + self.lease_ms))
            // An abandoned claim is cleaned up by TTL a day later at most.
            .item("expires_at", n(now / 1000 + 86_400))
            // Or held by this owner: the SDK resending a put whose answer was lost (it landed)
            // meets its own claim, and the claim is still this call's.
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now OR (#status = :in_progress AND (lease_until < :now_ms OR #owner = :owner))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":now", n(now / 1000))
            .expression_attribute_values(":now_ms", n(now))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            // The record that stopped us, in the same call: completed, or held by a live lease.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let Some(held) = put_refused(result)? else {
            return Ok(Claim::Claimed);
        };
        // An emulator that does not return the old item: read it.
        let held = match held {
            Some(item) => Some(item),
            None => {
                self.client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", s(key))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(unavailable)?
                    .item
            }
        };
        Ok(match held.as_ref().and_then(|i| get_s(i, "status")) {
            Some(IN_PROGRESS) => Claim::InProgress,
            _ => Claim::Duplicate,
        })
    }

    async fn complete(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .update_expression("SET #status = :done, expires_at = :exp, completed_at = :now_ms")
            .condition_expression("#owner = :me")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":done", s(COMPLETED))
            .expression_attribute_values(":exp", n(now / 1000 + self.retention_s))
            .expression_attribute_values(":now_ms", n(now))
            .expression_attribute_values(":me", s(owner))
            .send()
            .await;
        // None: another worker took the claim over after our lease ran out; it completes it.
        unless_condition_failed(result).map(|_| ())
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", s(owner))
            .send()
            .await;
        unless_condition_failed(result).map(|_| ())
    }
}
