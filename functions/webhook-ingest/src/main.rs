//! Wires webhook-ingest: tracing, config and clients once at cold start, then the runtime loop.

use std::sync::Arc;

use lambda_http::{Error, Request, run, service_fn};
use relay_shared::bodies::S3Bodies;
use relay_shared::config::IngestConfig;
use relay_shared::queue::SqsQueue;
use webhook_ingest::Ingest;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (aws, config) = relay_shared::cold_start::<IngestConfig>().await?;
    let queue = SqsQueue::new(relay_shared::aws::sqs(&aws), config.queue_url.clone());
    let bodies = S3Bodies::new(relay_shared::aws::s3(&aws), config.payload_bucket.clone());
    let ingest = Arc::new(Ingest::new(queue, bodies, config));
    run(service_fn(move |req: Request| {
        let ingest = Arc::clone(&ingest);
        async move { Ok::<_, Error>(ingest.handle(req).await) }
    }))
    .await
}
