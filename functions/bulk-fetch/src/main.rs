//! bulk-fetch: the SQS batch loop (partial batch responses: only failed records go back to the
//! queue) over the deployed [`Worker`](bulk_fetch::Worker), built once at cold start.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use bulk_fetch::DeployedWorker;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_shared::config::FetchConfig;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (aws, config) = relay_shared::cold_start::<FetchConfig>().await?;
    let worker = Arc::new(DeployedWorker::deployed(&aws, config)?);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = Arc::clone(&worker);
        async move {
            // Every wait inside is bounded by what the invocation has left.
            let deadline_ms = event.context.deadline;
            let batch = worker.handle_batch(event.payload);
            Ok::<_, Error>(relay_shared::invocation::within_context(deadline_ms, batch).await)
        }
    }))
    .await
}
