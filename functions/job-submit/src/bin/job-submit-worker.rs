//! The chunk submitter: the submit queue (SQS, partial batch responses) to the deployed
//! [`job_submit::ChunkSubmitter`], which starts each chunk at the providers' pace.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use job_submit::ChunkSubmitter;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_shared::config::WorkerConfig;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (aws, config) = relay_shared::cold_start::<WorkerConfig>().await?;
    let submitter = Arc::new(ChunkSubmitter::deployed(&aws, config));
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let submitter = Arc::clone(&submitter);
        async move {
            // Every wait inside is bounded by what the invocation has left.
            let deadline_ms = event.context.deadline;
            let batch = submitter.handle_batch(event.payload);
            Ok::<_, Error>(relay_shared::invocation::within_context(deadline_ms, batch).await)
        }
    }))
    .await
}
