//! Wires the chunk submitter: the submit queue (SQS, partial batch responses) to
//! [`job_submit::ChunkSubmitter`], which starts each chunk at the providers' pace.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use job_submit::ChunkSubmitter;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_shared::config::WorkerConfig;
use relay_shared::queue::SqsQueue;
use relay_shared::store::DynamoJobStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (aws, config) = relay_shared::cold_start::<WorkerConfig>().await?;
    let submitter = Arc::new(ChunkSubmitter {
        jobs: DynamoJobStore::new(relay_shared::aws::dynamodb(&aws), &config.jobs_table)
            .with_poll_after(config.poll_after)
            .with_retention(config.retention),
        starter: config.providers.client(),
        queue: SqsQueue::new(relay_shared::aws::sqs(&aws), &config.submit_queue_url),
        callbacks: SqsQueue::new(relay_shared::aws::sqs(&aws), &config.webhook_queue_url),
        secret: config.webhook_secret,
        public_base_url: config.public_base_url,
        fullenrich_interval: config.fullenrich_interval,
        enrow_interval: config.enrow_interval,
        lease: Duration::from_secs(120),
        confirm_timeout: config.start_confirm_timeout,
    });
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let submitter = Arc::clone(&submitter);
        async move { Ok::<_, Error>(submitter.handle_batch(event.payload).await) }
    }))
    .await
}
