//! A bulk-fetch worker wired to moto (real DynamoDB, SQS, S3 through the SDK) and the loopback
//! provider stub, with helpers to seed jobs and read what the worker stored.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use bulk_fetch::Worker;
use relay_shared::Provider;
use relay_shared::bodies::S3Bodies;
use relay_shared::jobs::{ContactResult, JobMeta, Operation};
use relay_shared::providers::Hook;
use relay_shared::providers::client::ProviderHttp;
use relay_shared::queue::SqsQueue;
use relay_shared::store::{DynamoDedupe, DynamoJobStore, JobWriter, Jobs};
use serde_json::{Value, json};

use super::Stack;
use super::provider_stub::ProviderStub;
use relay_shared::{ContactIndex, JobId};

pub type TestWorker = Worker<DynamoJobStore, DynamoDedupe, ProviderHttp, S3Bodies, SqsQueue>;

pub const ENROW_KEY: &str = "enrow-test-key";
pub const FULLENRICH_KEY: &str = "fullenrich-test-key";

pub struct Fetch {
    pub stack: Stack,
    pub stub: ProviderStub,
    pub worker: Arc<TestWorker>,
    pub jobs: DynamoJobStore,
}

impl Fetch {
    pub async fn new() -> Fetch {
        let stack = Stack::new().await;
        let stub = ProviderStub::start().await;
        let ddb = relay_shared::aws::dynamodb(&stack.sdk);
        let jobs = DynamoJobStore::new(ddb.clone(), stack.res.table("JobsTable"));
        let mut providers = ProviderHttp::new(&stub.url, ENROW_KEY, &stub.url, FULLENRICH_KEY);
        providers.backoff = std::time::Duration::from_millis(10);
        let worker = Arc::new(Worker {
            jobs: jobs.clone(),
            dedupe: DynamoDedupe::new(ddb, stack.res.table("DedupeTable"), 120_000, 30 * 86_400),
            providers,
            bodies: S3Bodies::new(stack.s3(), stack.res.bucket("PayloadBucket")),
            callback_sender: relay_shared::callback::CallbackSender::new(
                relay_local_stack::dev::DEV_CALLBACK_SECRET,
                relay_shared::callback::DEFAULT_RETRY_BASE,
            )
            .unwrap(),
            dead_letters: SqsQueue::new(stack.sqs(), stack.res.queue_url("WebhookDeadLetterQueue")),
            requeue: SqsQueue::new(stack.sqs(), stack.res.queue_url("WebhookQueue")),
            submit: SqsQueue::new(stack.sqs(), stack.res.queue_url("SubmitQueue")),
            fullenrich_interval: std::time::Duration::from_millis(1),
            not_ready_wait: bulk_fetch::NOT_READY_WAIT,
            deadline: bulk_fetch::DEFAULT_DEADLINE,
        });
        Fetch {
            stack,
            stub,
            worker,
            jobs,
        }
    }

    /// Seeds a job as job-submit would record it. Returns the job id.
    pub async fn seed(
        &self,
        operation: Operation,
        contacts: Vec<(Value, Value)>,
        chunk_size: u64,
        provider_ids: &[&str],
    ) -> JobId {
        relay_local_stack::seed::seed_job(&self.jobs, operation, contacts, chunk_size, provider_ids)
            .await
    }

    /// An `email_find` job of `n` contacts ([`crate::fetch::finder`]) in chunks of
    /// `chunk_size`, the first chunks started under `provider_ids`.
    pub async fn seed_finders(&self, n: usize, chunk_size: u64, provider_ids: &[&str]) -> JobId {
        self.seed(
            Operation::EmailFind,
            (0..n).map(crate::fetch::finder).collect(),
            chunk_size,
            provider_ids,
        )
        .await
    }

    /// The SQS message body ingest would have sent for this delivery.
    pub fn envelope(provider: Provider, hook: Hook, job_id: &JobId, body: &[u8]) -> String {
        relay_shared::testing::envelope(provider, hook, job_id, body)
    }

    /// The envelope of an Enrow event from a fixture (`enrow/…json`), its `id` set to `id`.
    pub fn enrow_fixture(job_id: &JobId, fixture: &str, id: &str) -> String {
        let mut event = fixture_json(fixture);
        event["id"] = serde_json::json!(id);
        Self::envelope(
            Provider::Enrow,
            Hook::Event,
            job_id,
            event.to_string().as_bytes(),
        )
    }

    pub fn message(body: &str) -> SqsMessage {
        relay_shared::testing::sqs_message(body)
    }

    /// Runs one batch of these message bodies through the worker.
    pub async fn run(&self, bodies: &[String]) -> (SqsBatchResponse, Vec<SqsMessage>) {
        let mut event = SqsEvent::default();
        event.records = bodies.iter().map(|b| Self::message(b)).collect();
        let records = event.records.clone();
        (self.worker.handle_batch(event).await, records)
    }

    /// Runs these bodies as one batch, then redelivers the records the worker handed back, as
    /// SQS would, until none is left. Returns how many redeliveries it took.
    pub async fn run_until_settled(&self, mut bodies: Vec<String>) -> usize {
        let mut redelivered = 0;
        for _ in 0..50 {
            let (resp, records) = self.run(&bodies).await;
            let failed: Vec<String> = resp
                .batch_item_failures
                .iter()
                .filter_map(|f| {
                    records
                        .iter()
                        .find(|r| r.message_id.as_deref() == Some(f.item_identifier.as_str()))
                        .and_then(|r| r.body.clone())
                })
                .collect();
            if failed.is_empty() {
                return redelivered;
            }
            redelivered += failed.len();
            bodies = failed;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("records still handed back after 50 redeliveries");
    }

    pub async fn results(&self, job_id: &JobId) -> Vec<ContactResult> {
        self.jobs
            .results(job_id, ContactIndex(0), 100_000)
            .await
            .unwrap()
    }

    pub async fn job(&self, job_id: &JobId) -> JobMeta {
        self.jobs
            .job_view(job_id)
            .await
            .unwrap()
            .expect("job exists")
    }

    /// Messages on the webhook queue, visible or delayed (deliveries put back to wait).
    pub async fn queued(&self) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attrs = self
            .stack
            .sqs()
            .get_queue_attributes()
            .queue_url(self.stack.res.queue_url("WebhookQueue"))
            .attribute_names(A::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        let n = |k: A| -> u64 { attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0) };
        n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesDelayed)
    }

    /// Every message in the DLQ: (body, message attributes).
    pub async fn dead_letters(&self) -> Vec<(String, HashMap<String, String>)> {
        let sqs = self.stack.sqs();
        let url = self.stack.res.queue_url("WebhookDeadLetterQueue");
        let mut out = Vec::new();
        loop {
            let got = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .unwrap();
            let messages = got.messages.unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            for m in messages {
                let attrs = m
                    .message_attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.string_value.unwrap_or_default()))
                    .collect();
                out.push((m.body.unwrap_or_default(), attrs));
            }
        }
    }
}

/// A JSON fixture with some fields changed.
pub fn fixture_json(path: &str) -> Value {
    serde_json::from_slice(&super::fixture(path)).unwrap()
}

pub fn enrow_event(event: &str, id: &str, cost: Option<f64>) -> Vec<u8> {
    let mut v = json!({ "event": event, "id": id });
    if let Some(c) = cost {
        v["credits"] = json!({ "cost": c });
    }
    v.to_string().into_bytes()
}
