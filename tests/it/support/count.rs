//! DynamoDB requests counted by operation (`Query`, `GetItem`, …), as a store makes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use relay_shared::store::DynamoJobStore;

use super::Stack;

/// Counts each request to DynamoDB by its operation (the `x-amz-target` header's action).
#[derive(Debug, Clone, Default)]
pub struct Count(Arc<Mutex<HashMap<String, usize>>>);

impl Count {
    /// A jobs store on the stack's table whose requests this counts.
    pub fn store(&self, stack: &Stack) -> DynamoJobStore {
        stack.jobs_store_with(self.clone())
    }

    /// Forgets what was counted so far.
    pub fn reset(&self) {
        self.0.lock().unwrap().clear();
    }

    /// The requests of `operation` since the last [`Self::take`] or [`Self::reset`], and the
    /// counts reset.
    pub fn take(&self, operation: &str) -> usize {
        let mut counts = self.0.lock().unwrap();
        let n = counts.get(operation).copied().unwrap_or(0);
        counts.clear();
        n
    }
}

impl Intercept for Count {
    fn name(&self) -> &'static str {
        "count"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = ctx.request().headers().get("x-amz-target").unwrap_or("");
        let operation = target.rsplit('.').next().unwrap_or(target).to_string();
        *self.0.lock().unwrap().entry(operation).or_default() += 1;
        Ok(())
    }
}
