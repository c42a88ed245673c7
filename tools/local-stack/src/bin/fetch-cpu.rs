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
use relay_local_stack::procstat::{cpu_seconds, status_kb};
use relay_local_stack::provider_stub::ProviderStub;
use relay_local_stack::runtime_api::{RuntimeApi, spawn_function, tool_args};
use relay_local_stack::seed::{numbered_fullenrich_record, seed_numbered_fullenrich_job};
use relay_local_stack::{Moto, Template};
use relay_shared::Provider;
use relay_shared::providers::Hook;
use relay_shared::store::{DynamoJobStore, Jobs};
use relay_shared::testing::{envelope, sqs_message};
use serde_json::json;

const CHUNK: u64 = 100;

#[tokio::main]
async fn main() {
    let (binary, n) = tool_args("bulk-fetch", 1000);

    let moto = Moto::start(0).expect("moto");
    let sdk = relay_shared::aws::for_endpoint(&moto.endpoint).await;
    let template = Template::load_default().expect("template");
    let res = template.create(&sdk, "cpu").await.expect("resources");
    let stub = ProviderStub::start().await;
    let jobs = DynamoJobStore::new(relay_shared::aws::dynamodb(&sdk), res.table("JobsTable"));

    let (job, pids) = seed_numbered_fullenrich_job(&jobs, n, CHUNK).await;
    let bodies: Vec<String> = (0..n)
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

    let params = BTreeMap::from([
        ("EnrowApiUrl".to_string(), stub.url.clone()),
        ("FullEnrichApiUrl".to_string(), stub.url.clone()),
    ]);
    let mut env = template.function_env("BulkFetchFunction", &res, &params);
    // On AWS these come from SSM; here they are plain variables.
    for name in template.function_secrets("BulkFetchFunction") {
        let value = match name.as_str() {
            "CALLBACK_SECRET" => relay_local_stack::dev::DEV_CALLBACK_SECRET,
            _ => "cpu-bench-key",
        };
        env.insert(name, value.into());
    }
    let api = RuntimeApi::start().await.expect("runtime api");
    let mut child = spawn_function(&binary, "bulk-fetch", &env, &api, &moto.endpoint);
    let pid = child.id();

    let invoke = |batch: &[String]| {
        let mut event = SqsEvent::default();
        event.records = batch.iter().map(|b| sqs_message(b)).collect();
        let event = serde_json::to_value(event).expect("event");
        let api = api.clone();
        async move {
            let resp = tokio::time::timeout(std::time::Duration::from_secs(60), api.invoke(event))
                .await
                .expect("bulk-fetch did not answer in 60 s (its stderr is above)")
                .expect("invocation");
            let failures = resp["batchItemFailures"].as_array().map_or(0, Vec::len);
            assert_eq!(failures, 0, "records sent back: {resp}");
        }
    };

    // The cold start and a first batch, outside the measurement.
    invoke(&bodies[..10]).await;
    let mut passes = Vec::new();
    for (name, from) in [("first delivery", 10), ("duplicate", 0)] {
        let (cpu, wall) = (cpu_seconds(pid), Instant::now());
        for batch in bodies[from..].chunks(10) {
            invoke(batch).await;
        }
        let records = bodies.len() - from;
        passes.push((
            name,
            records,
            (cpu_seconds(pid) - cpu) * 1e3 / records as f64,
            wall.elapsed().as_secs_f64() * 1e3 / records as f64,
        ));
    }
    let hwm = status_kb(pid, "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();

    let view = jobs.job_view(&job).await.expect("read").expect("job");
    assert_eq!(
        (view.done, view.found, view.duplicates),
        (n, n, n),
        "every contact applied once, every copy dropped as a duplicate"
    );
    println!(
        "bulk-fetch {binary}: {n} contact_finished records in SQS batches of 10, then each again"
    );
    for (name, records, cpu_ms, wall_ms) in passes {
        println!(
            "CPU per record, {name} ({records}): {cpu_ms:.3} ms ({wall_ms:.2} ms wall incl. moto)"
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
