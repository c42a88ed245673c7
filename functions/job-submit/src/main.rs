//! job-submit (skeleton): the jobs API answers 501 until its issue lands.

use lambda_http::{Body, Error, Request, Response, run, service_fn};

async fn handler(_req: Request) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(501)
        .header("content-type", "application/json")
        .body(Body::Text(relay_shared::error_json(
            "not_implemented",
            "the jobs API is not built yet",
            None,
        )))?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    relay_shared::init_tracing();
    run(service_fn(handler)).await
}
