//! The jobs API's cold start: the time from starting the `job-submit` binary to its answer to
//! the first request, under a loopback Lambda Runtime API with DynamoDB and SQS in moto (the real
//! SDK). Each of N runs starts a fresh process and sends it `GET /openapi.json` (no AWS call:
//! the runtime, the configuration and the router), then `GET /jobs` (the first DynamoDB query).
//!
//! Usage: api-cold-start [PATH_TO_BINARY] [RUNS]   (default target/release/job-submit, 20)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use relay_local_stack::LocalAws;
use relay_local_stack::runtime_api::{RuntimeApi, spawn_function, tool_args};
use relay_shared::testing::apigw_v2_event;

const TOKEN: &str = "cold-start-token-0123456789";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name}: median {:.1} ms, min {:.1} ms, max {:.1} ms ({} runs)",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1]),
        v.len()
    );
}

#[tokio::main]
async fn main() {
    let (binary, runs) = tool_args("job-submit", 20);
    let aws = LocalAws::start("cold")
        .await
        .expect("moto with the template's resources");
    let mut env = aws
        .template
        .function_env("JobSubmitFunction", &aws.res, &BTreeMap::new());
    // On AWS the token comes from SSM; here it is a plain variable.
    env.remove("RELAY_API_TOKEN_SSM");
    // No provider key: no credit check (the runs measure the start, not a balance read).
    env.remove("ENROW_API_KEY_SSM");
    env.remove("FULLENRICH_API_KEY_SSM");
    env.insert("RELAY_API_TOKEN".into(), TOKEN.into());
    let auth = format!("Bearer {TOKEN}");

    let (mut first, mut listed) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let api = RuntimeApi::start().await.expect("runtime api");
        let started = Instant::now();
        let mut child = spawn_function(&binary, "job-submit", &env, &api, &aws.moto.endpoint);
        let doc = api
            .invoke(apigw_v2_event("GET", "/openapi.json", &[], b""))
            .await
            .expect("invocation");
        assert_eq!(doc["statusCode"], 200, "{doc}");
        first.push(started.elapsed());
        let jobs = api
            .invoke(apigw_v2_event(
                "GET",
                "/jobs",
                &[("authorization", &auth)],
                b"",
            ))
            .await
            .expect("invocation");
        assert_eq!(jobs["statusCode"], 200, "{jobs}");
        listed.push(started.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    println!("binary: {binary} ({size} bytes)");
    summary("start to the first answer (GET /openapi.json)", first);
    summary(
        "start to the first DynamoDB answer (then GET /jobs)",
        listed,
    );
}
