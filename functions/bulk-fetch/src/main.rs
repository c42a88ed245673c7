//! Wires bulk-fetch: tracing, config and clients once at cold start, then the SQS batch loop
//! (partial batch responses: only failed records go back to the queue).

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use bulk_fetch::Worker;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_shared::bodies::S3Bodies;
use relay_shared::callback::Callbacks;
use relay_shared::config::FetchConfig;
use relay_shared::queue::SqsQueue;
use relay_shared::store::{DynamoDedupe, DynamoJobStore};
use secrecy::ExposeSecret;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (aws, config) = relay_shared::cold_start::<FetchConfig>().await?;
    let ddb = relay_shared::aws::dynamodb(&aws);
    let worker = Arc::new(Worker {
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
        bodies: S3Bodies::new(relay_shared::aws::s3(&aws), &config.payload_bucket),
        callbacks: Callbacks::new(
            config.callback_secret.expose_secret(),
            config.callback_retry_base,
        )?,
        dead_letters: SqsQueue::new(relay_shared::aws::sqs(&aws), &config.dead_letter_queue_url),
        requeue: SqsQueue::new(relay_shared::aws::sqs(&aws), &config.webhook_queue_url),
        fullenrich_interval: config.fullenrich_interval,
        not_ready_wait: config.not_ready_wait,
        deadline: config.deadline,
    });
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = Arc::clone(&worker);
        async move { Ok::<_, Error>(worker.handle_batch(event.payload).await) }
    }))
    .await
}
