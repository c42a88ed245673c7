//! [`BalanceCache`] over the jobs table: one `ACCOUNT#<provider>` / `BALANCE` item per provider
//! account, with `credits` and `read_at` (the balance as last read) and `claimed_at` (its last
//! read's claim, a conditional update: of callers racing for a stale balance, one reads).

use super::DynamoJobStore;
use super::attrs::{get_n, n, s, unavailable, unless_condition_failed};
use crate::Provider;
use crate::now_ms;
use crate::store::{BalanceCache, CachedBalance, StoreError};

impl BalanceCache for DynamoJobStore {
    async fn cached_balance(&self, provider: Provider) -> Result<CachedBalance, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(balance_pk(provider)))
            .key("sk", s("BALANCE"))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out
            .item
            .map(|i| CachedBalance {
                credits: get_n(&i, "credits"),
                read_at_ms: get_n(&i, "read_at"),
            })
            .unwrap_or_default())
    }

    async fn claim_balance_read(
        &self,
        provider: Provider,
        every_ms: u64,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let out = balance_update(self, provider)
            .update_expression("SET claimed_at = :now")
            .condition_expression("attribute_not_exists(claimed_at) OR claimed_at <= :stale")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":stale", n(now.saturating_sub(every_ms)))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.is_some())
    }

    async fn record_balance(&self, provider: Provider, credits: f64) -> Result<(), StoreError> {
        balance_update(self, provider)
            .update_expression("SET credits = :credits, read_at = :now")
            .expression_attribute_values(":credits", n(credits))
            .expression_attribute_values(":now", n(now_ms()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

fn balance_pk(provider: Provider) -> String {
    format!("ACCOUNT#{}", provider.as_str())
}

/// An update of `provider`'s balance item.
fn balance_update(
    store: &DynamoJobStore,
    provider: Provider,
) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    store
        .client
        .update_item()
        .table_name(&store.table)
        .key("pk", s(balance_pk(provider)))
        .key("sk", s("BALANCE"))
}
