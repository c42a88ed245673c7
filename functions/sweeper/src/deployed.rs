//! The deployed wiring: the sweeper on DynamoDB and SQS, built once at cold start.

use relay_shared::aws::{self, SdkConfig};
use relay_shared::config::SweepConfig;
use relay_shared::queue::SqsQueue;
use relay_shared::store::DynamoJobStore;

use crate::Sweeper;

impl Sweeper<DynamoJobStore, SqsQueue> {
    pub fn deployed(sdk: &SdkConfig, config: SweepConfig) -> Self {
        Sweeper {
            jobs: DynamoJobStore::new(aws::dynamodb(sdk), &config.jobs_table),
            queue: SqsQueue::new(aws::sqs(sdk), &config.webhook_queue_url),
            submit_queue: SqsQueue::new(aws::sqs(sdk), &config.submit_queue_url),
            hold: config.poll_after,
            limit: config.limit,
        }
    }
}
