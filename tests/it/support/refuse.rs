//! A DynamoDB request refused: every request whose body contains a marker fails while the switch
//! is on (as a write DynamoDB keeps refusing, or a Lambda that dies before it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use relay_shared::store::DynamoJobStore;

use super::Stack;

/// Fails, every time, each request to DynamoDB whose body contains `marker`, while on.
#[derive(Debug, Clone)]
pub struct Refuse {
    marker: &'static str,
    on: Arc<AtomicBool>,
}

impl Refuse {
    /// Refusing from the start.
    pub fn new(marker: &'static str) -> Refuse {
        Refuse {
            marker,
            on: Arc::new(AtomicBool::new(true)),
        }
    }

    pub fn set(&self, on: bool) {
        self.on.store(on, SeqCst);
    }

    /// A jobs store on the stack's table whose client meets this refusal.
    pub fn store(&self, stack: &Stack) -> DynamoJobStore {
        stack.jobs_store_with(self.clone())
    }
}

impl Intercept for Refuse {
    fn name(&self) -> &'static str {
        "refuse"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = ctx.request().body().bytes().unwrap_or_default();
        if self.on.load(SeqCst) && String::from_utf8_lossy(body).contains(self.marker) {
            return Err("refused".into());
        }
        Ok(())
    }
}
