//! A DynamoDB write whose answer is lost: it lands, the SDK sees a 500 and sends it again, as
//! when the answer is lost on the way back (a timed-out attempt, a dropped connection).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering::SeqCst};

use super::Stack;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use relay_shared::store::DynamoJobStore;

/// Loses the answer to the first request whose body contains `marker`, once.
#[derive(Debug, Clone)]
pub struct LostAnswer {
    marker: &'static str,
    /// 0: waiting for it; 1: it is on its way; 2: its answer was lost.
    state: Arc<AtomicU8>,
}

impl LostAnswer {
    /// A jobs store on the stack's table whose client loses that answer.
    pub fn store(stack: &Stack, marker: &'static str) -> (DynamoJobStore, LostAnswer) {
        let lost = LostAnswer {
            marker,
            state: Arc::default(),
        };
        (stack.jobs_store_with(lost.clone()), lost)
    }

    /// Whether the answer was lost (the request was sent again).
    pub fn happened(&self) -> bool {
        self.state.load(SeqCst) == 2
    }
}

impl Intercept for LostAnswer {
    fn name(&self) -> &'static str {
        "lost-answer"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = ctx.request().body().bytes().unwrap_or_default();
        if String::from_utf8_lossy(body).contains(self.marker) {
            let _ = self.state.compare_exchange(0, 1, SeqCst, SeqCst);
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.state.compare_exchange(1, 2, SeqCst, SeqCst).is_ok() {
            // A 500 is retried by the SDK's standard retry strategy.
            *ctx.response_mut().status_mut() = 500u16.try_into().expect("a status");
        }
        Ok(())
    }
}
