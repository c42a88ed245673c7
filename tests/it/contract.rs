//! The stores' contract on DynamoDB (moto): every case of `relay_shared::store::contract`, the
//! same cases the in-memory twins pass in shared's unit tests, one test per case.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use relay_shared::store::contract::Faults;
use relay_shared::store::{DynamoDedupe, DynamoJobStore};

use crate::support::Stack;

/// Fails the last write of a job's creation (the one that clears its `creating` mark) while on.
#[derive(Debug, Clone, Default)]
struct FailCreations(Arc<AtomicBool>);

impl Faults for FailCreations {
    fn fail_creations(&self, on: bool) {
        self.0.store(on, SeqCst);
    }
}

impl Intercept for FailCreations {
    fn name(&self) -> &'static str {
        "fail-creations"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = ctx.request().body().bytes().unwrap_or_default();
        if self.0.load(SeqCst) && String::from_utf8_lossy(body).contains("REMOVE creating") {
            return Err("injected: the creation's last write fails".into());
        }
        Ok(())
    }
}

/// A jobs store on a fresh stack's table, and its faults.
async fn jobs() -> (DynamoJobStore, FailCreations) {
    let stack = Stack::new().await;
    let faults = FailCreations::default();
    let config = aws_sdk_dynamodb::config::Builder::from(&stack.sdk)
        .interceptor(faults.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    (
        DynamoJobStore::new(client, stack.res.table("JobsTable")),
        faults,
    )
}

/// A dedupe store on a fresh stack's table: a 1 s lease.
async fn dedupe() -> DynamoDedupe {
    let stack = Stack::new().await;
    let ddb = relay_shared::aws::dynamodb(&stack.sdk);
    DynamoDedupe::new(ddb, stack.res.table("DedupeTable"), 1_000, 86_400)
}

relay_shared::store_contract!(jobs: jobs().await, dedupe: dedupe().await);
