//! CPU time per record of the release `bulk-fetch` binary (whole process: handler, SDK, runtime
//! client, logging), printed by `make bench`.
//!
//! Runs the real binary under a loopback Lambda Runtime API, with DynamoDB, SQS and S3 in moto
//! (the real SDK), seeds one FullEnrich job of N contacts (chunks of 100), then hands the
//! function every contact's `contact_finished` webhook in SQS batches of 10, as the event source
//! mapping does, and then every one of them again (duplicates). Prints the CPU time (utime +
//! stime from `/proc`, all threads) per record of each pass, after the cold start and a first
//! batch, checks every record was applied (no batch item failures) and the job's figures.
//!
//! Usage: fetch-cpu [PATH_TO_BINARY] [CONTACTS]   (default target/release/bulk-fetch, 1000)

use std::collections::BTreeMap;
use std::time::Instant;

use aws_lambda_events::event::sqs::SqsEvent;
use relay_local_stack::LocalAws;
use relay_local_stack::procstat::cpu_seconds;
use relay_local_stack::provider_stub::ProviderStub;
use relay_local_stack::runtime_api::{FunctionProcess, tool_args};
use relay_local_stack::seed::{numbered_fullenrich_record, seed_numbered_fullenrich_job};
use relay_shared::JobId;
use relay_shared::Provider;
use relay_shared::jobs::JobMeta;
use relay_shared::providers::Hook;
use relay_shared::store::{DynamoJobStore, Jobs};
use relay_shared::testing::{envelope, sqs_message};
use serde_json::json;

const CHUNK: u64 = 100;

#[tokio::main]
async fn main() {
    let (binary, n) = tool_args("bulk-fetch", 1000);
    let aws = LocalAws::start("cpu")
        .await
        .expect("moto with the template's resources");
    let stub = ProviderStub::start().await;
    let jobs = DynamoJobStore::new(
        relay_shared::aws::dynamodb(&aws.sdk),
        aws.res.table("JobsTable"),
    );
    let (job, bodies) = seed(&jobs, n).await;
    let env = fetch_env(&aws, &stub.url);
    let function = FunctionProcess::start(&binary, "bulk-fetch", &env, &aws.moto.endpoint).await;
    let passes = measure(&function, &bodies).await;
    let hwm = function.stop();

    let view = jobs.job_view(&job).await.expect("read").expect("job");
    assert_eq!(
        (view.done, view.found, view.duplicates),
        (n, n, n),
        "every contact applied once, every copy dropped as a duplicate"
    );
    report(&binary, n, &passes, &view, hwm);
}

/// One FullEnrich job of `n` contacts in chunks of [`CHUNK`], and each contact's
/// `contact_finished` webhook as webhook-ingest queues it.
async fn seed(jobs: &DynamoJobStore, n: u64) -> (JobId, Vec<String>) {
    let (job, pids) = seed_numbered_fullenrich_job(jobs, n, CHUNK).await;
    let bodies = (0..n)
        .map(|i| {
            let pid = &pids[(i / CHUNK) as usize];
            let body = json!({"id": pid, "status": "IN_PROGRESS", "data": [numbered_fullenrich_record(i, true)]});
            envelope(
                Provider::Fullenrich,
                Hook::Contact,
                &job,
                body.to_string().as_bytes(),
            )
        })
        .collect();
    (job, bodies)
}

/// bulk-fetch's environment: the template's, both providers at the stub, and the secrets SSM
/// holds on AWS as plain variables.
fn fetch_env(aws: &LocalAws, stub_url: &str) -> BTreeMap<String, String> {
    let params = BTreeMap::from([
        ("EnrowApiUrl".to_string(), stub_url.to_string()),
        ("FullEnrichApiUrl".to_string(), stub_url.to_string()),
    ]);
    let mut env = aws
        .template
        .function_env("BulkFetchFunction", &aws.res, &params);
    for name in aws.template.function_secrets("BulkFetchFunction") {
        let value = match name.as_str() {
            "CALLBACK_SECRET" => relay_local_stack::dev::DEV_CALLBACK_SECRET,
            _ => "cpu-bench-key",
        };
        env.insert(name, value.into());
    }
    env
}

/// One SQS event of `batch` to the function; every record must be applied.
async fn invoke(function: &FunctionProcess, batch: &[String]) {
    let mut event = SqsEvent::default();
    event.records = batch.iter().map(|b| sqs_message(b)).collect();
    let event = serde_json::to_value(event).expect("event");
    let resp = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        function.api.invoke(event),
    )
    .await
    .expect("bulk-fetch did not answer in 60 s (its stderr is above)")
    .expect("invocation");
    let failures = resp["batchItemFailures"].as_array().map_or(0, Vec::len);
    assert_eq!(failures, 0, "records sent back: {resp}");
}

/// One measured pass: its records, and CPU and wall time per record (ms).
struct Pass {
    name: &'static str,
    records: usize,
    cpu_ms: f64,
    wall_ms: f64,
}

/// The first delivery of every record (after the cold start and a first batch, outside the
/// measurement), then every record again, in batches of 10.
async fn measure(function: &FunctionProcess, bodies: &[String]) -> Vec<Pass> {
    invoke(function, &bodies[..10]).await;
    let mut passes = Vec::new();
    for (name, from) in [("first delivery", 10), ("duplicate", 0)] {
        let (cpu, wall) = (cpu_seconds(function.pid), Instant::now());
        for batch in bodies[from..].chunks(10) {
            invoke(function, batch).await;
        }
        let records = bodies.len() - from;
        passes.push(Pass {
            name,
            records,
            cpu_ms: (cpu_seconds(function.pid) - cpu) * 1e3 / records as f64,
            wall_ms: wall.elapsed().as_secs_f64() * 1e3 / records as f64,
        });
    }
    passes
}

fn report(binary: &str, n: u64, passes: &[Pass], view: &JobMeta, hwm: u64) {
    println!(
        "bulk-fetch {binary}: {n} contact_finished records in SQS batches of 10, then each again"
    );
    for p in passes {
        println!(
            "CPU per record, {} ({}): {:.3} ms ({:.2} ms wall incl. moto)",
            p.name, p.records, p.cpu_ms, p.wall_ms
        );
    }
    println!(
        "figures exact: done {} found {} duplicates {}; peak RSS {:.1} MB",
        view.done,
        view.found,
        view.duplicates,
        hwm as f64 / 1024.0
    );
}
