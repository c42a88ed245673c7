//! Test support: the shared moto server, per-test stacks, API Gateway v2 requests, queue reads.

use std::sync::OnceLock;

use aws_config::SdkConfig;
use relay_local_stack::{Moto, Resources, Template};

pub mod count;
pub mod fetch;
pub mod lost_answer;
pub mod refuse;
pub use relay_local_stack::provider_stub;

/// One moto server per test binary. It is never dropped; it stops when this process exits, as
/// its guard reads EOF on the pipe we hold.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start(0).expect("start moto (run scripts/bootstrap.sh first)"))
}

pub struct Stack {
    pub sdk: SdkConfig,
    pub res: Resources,
}

impl Stack {
    /// A jobs store on this stack's table whose DynamoDB client runs `interceptor` on each
    /// request (a fault, a count).
    pub fn jobs_store_with(
        &self,
        interceptor: impl aws_sdk_dynamodb::config::Intercept + 'static,
    ) -> relay_shared::store::DynamoJobStore {
        let config = aws_sdk_dynamodb::config::Builder::from(&self.sdk)
            .interceptor(interceptor)
            .build();
        relay_shared::store::DynamoJobStore::new(
            aws_sdk_dynamodb::Client::from_conf(config),
            self.res.table("JobsTable"),
        )
    }

    /// Runs a queue's messages through `handle` until it stays empty (failed records come back
    /// after a 1 s visibility timeout); fails the test if it has not drained in `within`.
    pub async fn run_queue<F, Fut>(&self, queue: &str, within: std::time::Duration, handle: F)
    where
        F: Fn(aws_lambda_events::event::sqs::SqsEvent) -> Fut,
        Fut: std::future::Future<Output = aws_lambda_events::event::sqs::SqsBatchResponse>,
    {
        let (url, arn) = self.res.queues[queue].clone();
        let mut poller = relay_local_stack::poller::Poller::new(self.sqs(), &url, &arn);
        poller.visibility_timeout = Some(1);
        let mut empty = 0;
        let deadline = std::time::Instant::now() + within;
        while empty < 3 || self.queue_in_flight(&url).await > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{queue} never drained"
            );
            let round = poller
                .round(|e| async { Ok(handle(e).await) })
                .await
                .unwrap();
            if round.received == 0 {
                empty += 1;
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            } else {
                empty = 0;
            }
        }
    }

    /// Fresh tables, queues and bucket from template.yaml, under a unique prefix.
    pub async fn new() -> Stack {
        // Logs go to the test's captured output: shown when a test fails.
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let sdk = relay_shared::aws::for_endpoint(&moto().endpoint).await;
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let res = Template::load_default()
            .expect("template.yaml")
            .create(&sdk, &prefix)
            .await
            .expect("create local resources");
        Stack { sdk, res }
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        relay_shared::aws::sqs(&self.sdk)
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        relay_shared::aws::s3(&self.sdk)
    }

    /// Messages in a queue, visible, in flight (received and not yet deleted) or delayed.
    pub async fn queue_in_flight(&self, queue_url: &str) -> usize {
        relay_local_stack::queue::messages_held(&self.sqs(), queue_url).await
    }

    pub fn webhook_queue(&self) -> &str {
        self.res.queue_url("WebhookQueue")
    }

    /// Receives (and deletes) every message now in `queue_url`, until two empty receives.
    pub async fn drain(&self, queue_url: &str) -> Vec<String> {
        relay_local_stack::queue::drain(&self.sqs(), queue_url).await
    }
}

/// An API Gateway HTTP API (payload v2) request, parsed by lambda_http exactly as on Lambda.
pub fn apigw_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> lambda_http::Request {
    let event = relay_shared::testing::apigw_v2_event(method, path, headers, body);
    lambda_http::request::from_str(&event.to_string()).expect("valid API Gateway v2 event")
}

/// A provider fixture from fixtures/providers.
pub fn fixture(path: &str) -> Vec<u8> {
    let p = relay_local_stack::repo_root()
        .join("fixtures/providers")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
