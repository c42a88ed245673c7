//! The deployed wiring: the jobs API and the chunk submitter on DynamoDB, SQS and the providers'
//! APIs, built once at cold start from their configuration.

use std::time::Duration;

use relay_shared::ExposeSecret;
use relay_shared::auth::BearerToken;
use relay_shared::aws::{self, SdkConfig};
use relay_shared::bodies::S3Bodies;
use relay_shared::config::{ApiConfig, WorkerConfig};
use relay_shared::providers::client::ProviderHttp;
use relay_shared::queue::SqsQueue;
use relay_shared::store::DynamoJobStore;
use relay_shared::validate::CallbackPolicy;

use crate::{Api, ChunkSubmitter};

/// How long a worker holds a chunk it is starting (a start takes seconds; the function's
/// timeout, 90 s in template.yaml, is under it).
const START_LEASE: Duration = Duration::from_secs(120);

impl Api<DynamoJobStore, SqsQueue> {
    pub fn deployed(sdk: &SdkConfig, config: ApiConfig) -> Self {
        Api {
            jobs: DynamoJobStore::new(aws::dynamodb(sdk), &config.jobs_table)
                .with_retention(config.retention),
            submit_queue: SqsQueue::new(aws::sqs(sdk), &config.submit_queue_url),
            token: BearerToken::new(config.api_token.expose_secret()),
            callback_policy: CallbackPolicy {
                allow_loopback: config.callback_allow_loopback,
            },
            credit_check: None,
        }
    }
}

impl ChunkSubmitter<DynamoJobStore, ProviderHttp, SqsQueue, S3Bodies> {
    pub fn deployed(sdk: &SdkConfig, config: WorkerConfig) -> Self {
        ChunkSubmitter {
            bodies: S3Bodies::new(aws::s3(sdk), &config.payload_bucket),
            jobs: DynamoJobStore::new(aws::dynamodb(sdk), &config.jobs_table)
                .with_poll_after(config.poll_after)
                .with_retention(config.retention),
            starter: config.providers.client(),
            queue: SqsQueue::new(aws::sqs(sdk), &config.submit_queue_url),
            callback_queue: SqsQueue::new(aws::sqs(sdk), &config.webhook_queue_url),
            secret: config.webhook_secret,
            public_base_url: config.public_base_url,
            fullenrich_interval: config.fullenrich_interval,
            enrow_interval: config.enrow_interval,
            lease: START_LEASE,
            confirm_timeout: config.start_confirm_timeout,
            deadline: config.deadline,
        }
    }
}
