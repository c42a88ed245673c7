//! The jobs API: API Gateway requests (`/jobs…`) to the deployed [`job_submit::Api`], built once
//! at cold start.

use std::sync::Arc;

use job_submit::Api;
use lambda_http::{Error, Request, run, service_fn};
use relay_shared::config::ApiConfig;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (aws, config) = relay_shared::cold_start::<ApiConfig>().await?;
    let api = Arc::new(Api::deployed(&aws, config));
    run(service_fn(move |req: Request| {
        let api = Arc::clone(&api);
        async move { Ok::<_, Error>(api.handle(req).await) }
    }))
    .await
}
