//! The deployed wiring: bulk-fetch on DynamoDB, S3, SQS and the providers' APIs,
//! built once at cold start from their configuration.

use relay_shared::aws::{self, SdkConfig};
use relay_shared::bodies::S3Bodies;
use relay_shared::callback::CallbackSender;
use relay_shared::config::{ConfigError, FetchConfig};
use relay_shared::providers::client::ProviderHttp;
use relay_shared::queue::SqsQueue;
use relay_shared::store::{DynamoDedupe, DynamoJobStore};
use secrecy::ExposeSecret;

use crate::Worker;

/// bulk-fetch as deployed.
pub type DeployedWorker = Worker<DynamoJobStore, DynamoDedupe, ProviderHttp, S3Bodies, SqsQueue>;

impl DeployedWorker {
    pub fn deployed(sdk: &SdkConfig, config: FetchConfig) -> Result<Self, ConfigError> {
        let ddb = aws::dynamodb(sdk);
        Ok(Worker {
            jobs: DynamoJobStore::new(ddb.clone(), &config.jobs_table)
                .with_apply_lease(config.apply_lease)
                .with_poll_after(config.poll_after)
                .with_retention(config.retention),
            dedupe: DynamoDedupe::new(
                ddb,
                &config.dedupe_table,
                config.dedupe_lease.as_millis() as u64,
                config.dedupe_retention.as_secs(),
            ),
            providers: config.providers.client(),
            bodies: S3Bodies::new(aws::s3(sdk), &config.payload_bucket),
            callback_sender: CallbackSender::with_policy(
                config.callback_secret.expose_secret(),
                config.callback_retry_base,
                config.callback_allow_loopback,
            )?,
            dead_letters: SqsQueue::new(aws::sqs(sdk), &config.dead_letter_queue_url),
            requeue: SqsQueue::new(aws::sqs(sdk), &config.webhook_queue_url),
            submit: SqsQueue::new(aws::sqs(sdk), &config.submit_queue_url),
            fullenrich_interval: config.fullenrich_interval,
            not_ready_wait: config.not_ready_wait,
            deadline: config.deadline,
        })
    }
}
