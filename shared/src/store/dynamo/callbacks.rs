//! Completion callbacks' delivery state, on the job's head: taken for one attempt at a time
//! (a lease, like a chunk's), recorded after it. The head stays in the sparse `due` index while
//! its callback is pending, so a lost queue message or a dead attempt is picked up by the sweeper.

use super::attrs::{Item, get_n, get_s, n, s, unless_condition_failed};
use super::items::parse_meta;
use crate::ids::JobId;
use crate::jobs::{CallbackState, CallbackStatus};
use crate::now_ms;
use crate::store::{CallbackAttempt, CallbackStore, CallbackTake, StoreError};
use aws_sdk_dynamodb::types::ReturnValue;

/// A head's callback state, once its job ended with a callback URL.
pub(super) fn parse_state(item: &Item) -> Option<CallbackState> {
    let status = get_s(item, "cb_status").and_then(|v| v.parse::<CallbackStatus>().ok())?;
    Some(CallbackState {
        status,
        attempts: get_n(item, "cb_attempts").unwrap_or(0),
        last_status_code: get_n(item, "cb_code"),
        last_error: get_s(item, "cb_error").map(str::to_string),
        next_attempt_at: match status {
            CallbackStatus::Pending => get_n(item, "poll_at"),
            _ => None,
        },
        since_ms: get_n(item, "cb_since").unwrap_or(0),
    })
}

impl CallbackStore for super::DynamoJobStore {
    async fn take_callback(
        &self,
        job_id: &JobId,
        due_at: Option<u64>,
        lease_ms: u64,
    ) -> Result<Option<CallbackTake>, StoreError> {
        let now = now_ms();
        let lease = now + lease_ms;
        let req = self
            .meta_item_update(job_id)
            .update_expression("SET poll_at = :lease ADD cb_attempts :one")
            .expression_attribute_values(":lease", n(lease))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":pending", s(CallbackStatus::Pending.as_str()))
            .return_values(ReturnValue::AllNew);
        let req = match due_at {
            None => req
                .condition_expression(
                    "cb_status = :pending AND poll_at <= :now AND attribute_not_exists(deleted_at)",
                )
                .expression_attribute_values(":now", n(now)),
            Some(t) => req
                .condition_expression(
                    "cb_status = :pending AND poll_at = :due AND attribute_not_exists(deleted_at)",
                )
                .expression_attribute_values(":due", n(t)),
        };
        let Some(out) = unless_condition_failed(req.send().await)? else {
            return Ok(None);
        };
        let item = out.attributes.unwrap_or_default();
        Ok(Some(CallbackTake {
            meta: self.with_figures(parse_meta(&item)?).await?,
            lease,
        }))
    }

    async fn record_callback(
        &self,
        job_id: &JobId,
        lease: u64,
        attempt: &CallbackAttempt,
    ) -> Result<bool, StoreError> {
        let mut set = vec!["cb_status = :st"];
        let mut remove = vec![];
        let mut req = self
            .meta_item_update(job_id)
            .condition_expression("cb_status = :pending AND poll_at = :lease")
            .expression_attribute_values(":pending", s(CallbackStatus::Pending.as_str()))
            .expression_attribute_values(":lease", n(lease))
            .expression_attribute_values(":st", s(attempt.status.as_str()));
        match attempt.status_code {
            Some(code) => {
                set.push("cb_code = :code");
                req = req.expression_attribute_values(":code", n(code));
            }
            None => remove.push("cb_code"),
        }
        match &attempt.error {
            Some(e) => {
                set.push("cb_error = :err");
                req = req.expression_attribute_values(":err", s(e));
            }
            None => remove.push("cb_error"),
        }
        match (attempt.status, attempt.next_at) {
            (CallbackStatus::Pending, Some(next)) => {
                set.push("poll_at = :next");
                req = req.expression_attribute_values(":next", n(next));
            }
            // Delivered or given up: out of the `due` index.
            _ => remove.extend(["poll_shard", "poll_at"]),
        }
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let out = req.update_expression(expr).send().await;
        Ok(unless_condition_failed(out)?.is_some())
    }
}
