//! The jobs API: API Gateway requests (`/jobs…`) to the deployed [`job_submit::Api`]'s axum
//! router, built once at cold start and served by `lambda_http`.

use job_submit::Api;
use lambda_http::{Error, run};
use relay_shared::config::ApiConfig;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (aws, config) = relay_shared::cold_start::<ApiConfig>().await?;
    run(Api::deployed(&aws, config).router()).await
}
