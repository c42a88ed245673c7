//! [`RateSchedule`] over the jobs table: one `RATE#<name>` item per schedule.

use super::DynamoJobStore;
use super::attrs::{get_n, n, s, unavailable, unless_condition_failed};
use crate::now_ms;
use crate::store::{RateSchedule, Slot, StoreError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValue;

impl RateSchedule for DynamoJobStore {
    /// Reserves the next start slot of a rate limit shared by every worker (`name`, one start
    /// per `interval_ms`). Returns the time (ms) at which this caller may start. Two writes at
    /// most and never a lost race: an idle limit is taken at `now`; a busy one is extended by one
    /// interval with an atomic `ADD`, and the slot is the one before the new end.
    /// One schedule item per name, `next_at`: when the next request may go. An idle schedule
    /// (`next_at` passed) gives its slot at once; a busy one gives the slot behind the last
    /// taken only while that is within `max_wait_ms` (one conditional update either way), so
    /// the schedule is never booked further ahead than its callers will really wait.
    async fn take_slot(
        &self,
        name: &str,
        interval_ms: u64,
        max_wait_ms: u64,
    ) -> Result<Slot, StoreError> {
        // Twice at most: a busy schedule can fall idle between the two writes.
        for _ in 0..2 {
            let now = now_ms();
            let idle = rate_update(self, name)
                .update_expression("SET next_at = :next, expires_at = :exp")
                .condition_expression("attribute_not_exists(next_at) OR next_at <= :now")
                .expression_attribute_values(":next", n(now + interval_ms))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":exp", n(now / 1000 + 86_400))
                .send()
                .await;
            if unless_condition_failed(idle)?.is_some() {
                return Ok(Slot::At(now));
            }
            let limit = now + max_wait_ms;
            let busy = rate_update(self, name)
                .update_expression("SET next_at = next_at + :interval")
                .condition_expression("next_at > :now AND next_at <= :limit")
                .expression_attribute_values(":interval", n(interval_ms))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":limit", n(limit))
                .return_values(ReturnValue::UpdatedNew)
                .return_values_on_condition_check_failure(
                    aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            match busy {
                Ok(out) => {
                    let end: u64 = out
                        .attributes
                        .as_ref()
                        .and_then(|a| get_n(a, "next_at"))
                        .ok_or_else(|| StoreError::Data("rate slot without next_at".into()))?;
                    return Ok(Slot::At(end - interval_ms));
                }
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                        let next_at: Option<u64> = c.item().and_then(|i| get_n(i, "next_at"));
                        match next_at {
                            // Idle again: take it on the next turn.
                            Some(at) if at <= now => continue,
                            Some(at) => {
                                return Ok(Slot::Busy {
                                    retry_in_ms: at.saturating_sub(limit).max(interval_ms),
                                });
                            }
                            // An emulator that does not return the item: read it.
                            None => {
                                let at: u64 = rate_next_at(self, name).await?.unwrap_or(0);
                                if at <= now {
                                    continue;
                                }
                                return Ok(Slot::Busy {
                                    retry_in_ms: at.saturating_sub(limit).max(interval_ms),
                                });
                            }
                        }
                    }
                    _ => return Err(unavailable(e)),
                },
            }
        }
        Ok(Slot::Busy {
            retry_in_ms: interval_ms,
        })
    }

    async fn return_slot(
        &self,
        name: &str,
        at_ms: u64,
        interval_ms: u64,
    ) -> Result<bool, StoreError> {
        let out = rate_update(self, name)
            .update_expression("SET next_at = :at")
            .condition_expression("next_at = :after")
            .expression_attribute_values(":at", n(at_ms))
            .expression_attribute_values(":after", n(at_ms + interval_ms))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.is_some())
    }
}

/// An update of rate schedule `name`'s item (`RATE#<name>`).
fn rate_update(
    store: &DynamoJobStore,
    name: &str,
) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    store
        .client
        .update_item()
        .table_name(&store.table)
        .key("pk", s(format!("RATE#{name}")))
        .key("sk", s("RATE"))
}

/// A rate schedule's `next_at`, read strongly.
async fn rate_next_at(store: &DynamoJobStore, name: &str) -> Result<Option<u64>, StoreError> {
    let out = store
        .client
        .get_item()
        .table_name(&store.table)
        .key("pk", s(format!("RATE#{name}")))
        .key("sk", s("RATE"))
        .consistent_read(true)
        .send()
        .await
        .map_err(unavailable)?;
    Ok(out.item.as_ref().and_then(|i| get_n(i, "next_at")))
}
