//! Wires the jobs API: tracing, config and clients once at cold start, then API Gateway
//! requests (`/jobs…`) to [`job_submit::Api`].

use std::sync::Arc;

use job_submit::Api;
use lambda_http::{Error, Request, run, service_fn};
use relay_shared::ExposeSecret;
use relay_shared::auth::BearerToken;
use relay_shared::config::ApiConfig;
use relay_shared::queue::SqsQueue;
use relay_shared::store::DynamoJobStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (aws, config) = relay_shared::cold_start::<ApiConfig>().await?;
    let api = Arc::new(Api {
        jobs: DynamoJobStore::new(relay_shared::aws::dynamodb(&aws), &config.jobs_table)
            .with_retention(config.retention),
        submit_queue: SqsQueue::new(relay_shared::aws::sqs(&aws), &config.submit_queue_url),
        token: BearerToken::new(config.api_token.expose_secret()),
        callbacks: relay_shared::validate::CallbackPolicy {
            allow_loopback: config.callback_allow_loopback,
        },
    });
    run(service_fn(move |req: Request| {
        let api = Arc::clone(&api);
        async move { Ok::<_, Error>(api.handle(req).await) }
    }))
    .await
}
