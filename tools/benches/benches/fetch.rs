//! bulk-fetch figures, against moto (real DynamoDB/SQS/S3 API through the SDK) and a loopback
//! provider stub. Prints:
//!
//! 1. a batch of 10 bulk events whose provider GET takes 200 ms each: wall time per batch;
//! 2. storing a 5,000-row bulk: DynamoDB write calls (counted by an SDK interceptor) and the
//!    peak RSS of this process while it does so;
//! 3. single-result webhooks (an Enrow single, whose one-contact chunk it ends, and a FullEnrich
//!    `contact_finished` of a 100-contact chunk), each first delivered and then duplicated: every
//!    DynamoDB request it costs, by operation, and the cost per million at on-demand prices.
//!
//! Run: `make bench` (or `cargo bench -p relay-benches --bench fetch`).

mod common;

use std::time::{Duration, Instant};

use common::*;

use bulk_fetch::Worker;
use relay_local_stack::Moto;
use relay_local_stack::provider_stub::ProviderStub;
use relay_local_stack::seed::{numbered_fullenrich_record, seed_job, seed_numbered_fullenrich_job};
use relay_shared::bodies::S3Bodies;
use relay_shared::jobs::Operation;
use relay_shared::providers::Hook;
use relay_shared::providers::client::ProviderHttp;
use relay_shared::queue::SqsQueue;
use relay_shared::store::Jobs;
use relay_shared::testing::envelope;
use relay_shared::{ChunkIndex, ContactIndex, JobId, Provider, ProviderId};
use serde_json::{Value, json};

/// Peak resident set size of this process since the last reset, in MiB.
fn peak_rss_mib() -> f64 {
    relay_local_stack::procstat::status_kb(std::process::id(), "VmHWM:") as f64 / 1024.0
}

fn reset_peak_rss() {
    // Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn finder(i: usize) -> (Value, Value) {
    (
        json!({ "fullname": format!("Person {i}"), "company_domain": "example.com" }),
        json!({ "crm_id": format!("lead_{i}") }),
    )
}

fn bulk_rows(n: usize) -> String {
    let rows: Vec<Value> = (0..n)
        .map(
            |i| json!({"index": i, "qualification": "valid", "email": format!("p{i}@example.com")}),
        )
        .collect();
    json!({"general": {"status": "completed"}, "results": rows}).to_string()
}

fn bulk_event(id: &str) -> Vec<u8> {
    json!({"event": "bulk_search_finished", "id": id})
        .to_string()
        .into_bytes()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let moto = Moto::start(0).expect("start moto (run scripts/bootstrap.sh first)");
    let sdk = relay_shared::aws::for_endpoint(&moto.endpoint).await;
    let counter = Counter::default();
    let stub = ProviderStub::start().await;

    // 1. Ten bulk events, 200 ms per provider GET, against the same batch with an instant
    //    provider: the difference is what the provider's latency costs a batch.
    let rounds = 5;
    let mut round = 0;
    let mut batch = async |delay_ms: u64| {
        stub.set_delay(Duration::from_millis(delay_ms));
        let mut times = Vec::new();
        for _ in 0..rounds {
            round += 1;
            let (worker, jobs) = fresh_worker(&sdk, &stub, &counter).await;
            let mut bodies = Vec::new();
            for k in 0..10 {
                let id = format!("bulk-{round}-{k}");
                let contacts = (0..10).map(finder).collect();
                let job = seed_job(&jobs, Operation::EmailFind, contacts, 5000, &[&id]).await;
                stub.script("/email/find/bulk", &id, vec![(200, bulk_rows(10))]);
                bodies.push(envelope(
                    Provider::Enrow,
                    Hook::Event,
                    &job,
                    &bulk_event(&id),
                ));
            }
            let started = Instant::now();
            let resp = worker.handle_batch(sqs_event(&bodies)).await;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            assert!(
                resp.batch_item_failures.is_empty(),
                "bench batch failed: {resp:?}"
            );
        }
        median(&mut times)
    };
    let instant = batch(0).await;
    let slow = batch(200).await;
    println!(
        "batch of 10 bulk events (median of {rounds}): provider GET 200 ms each {slow:.0} ms; instant provider {instant:.0} ms; the 10 GETs add {:.0} ms (sequential: 2000 ms)",
        slow - instant
    );

    // 1b. The same batch with the stores in memory: what the worker itself does with ten
    //     200 ms GETs when the store answers as fast as DynamoDB's single-digit milliseconds.
    let mut times = Vec::new();
    for round in 0..rounds {
        let jobs = relay_shared::store::memory::MemoryJobs::default();
        let mut bodies = Vec::new();
        for k in 0..10 {
            let id = format!("mem-{round}-{k}");
            let job = one_chunk_job(&jobs, &id, 10);
            stub.script("/email/find/bulk", &id, vec![(200, bulk_rows(10))]);
            bodies.push(envelope(
                Provider::Enrow,
                Hook::Event,
                &job,
                &bulk_event(&id),
            ));
        }
        let worker = Worker {
            jobs,
            dedupe: relay_shared::store::memory::MemoryDedupe::default(),
            providers: ProviderHttp::new(&stub.url, "bench-key", &stub.url, "bench-key"),
            bodies: S3Bodies::new(relay_shared::aws::s3(&sdk), "unused"),
            callback_sender: relay_shared::callback::CallbackSender::new(
                relay_local_stack::dev::DEV_CALLBACK_SECRET,
                relay_shared::callback::DEFAULT_RETRY_BASE,
            )
            .unwrap(),
            dead_letters: SqsQueue::new(relay_shared::aws::sqs(&sdk), "unused"),
            requeue: SqsQueue::new(relay_shared::aws::sqs(&sdk), "unused"),
            submit: SqsQueue::new(relay_shared::aws::sqs(&sdk), "unused"),
            fullenrich_interval: std::time::Duration::from_millis(1),
            not_ready_wait: bulk_fetch::NOT_READY_WAIT,
            deadline: bulk_fetch::DEFAULT_DEADLINE,
        };
        let started = Instant::now();
        let resp = worker.handle_batch(sqs_event(&bodies)).await;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(
            resp.batch_item_failures.is_empty(),
            "in-memory batch failed: {resp:?}"
        );
    }
    println!(
        "batch of 10 bulk events, provider GET 200 ms each, stores in memory: {:.0} ms (median of {rounds})",
        median(&mut times)
    );
    stub.set_delay(Duration::ZERO);

    // 2. A 5,000-row bulk.
    let (worker, jobs) = fresh_worker(&sdk, &stub, &counter).await;
    let job = seed_job(
        &jobs,
        Operation::EmailFind,
        (0..5000).map(finder).collect(),
        5000,
        &["bulk-5000"],
    )
    .await;
    stub.script(
        "/email/find/bulk",
        "bulk-5000",
        vec![(200, bulk_rows(5000))],
    );
    let body = envelope(Provider::Enrow, Hook::Event, &job, &bulk_event("bulk-5000"));
    counter.take();
    reset_peak_rss();
    let before = peak_rss_mib();
    let started = Instant::now();
    let resp = worker.handle_batch(sqs_event(&[body])).await;
    let elapsed = started.elapsed();
    let peak = peak_rss_mib();
    assert!(resp.batch_item_failures.is_empty());
    let calls = counter.take().calls;
    let done = jobs.job_view(&job).await.unwrap().expect("job").done;
    println!(
        "5,000-row bulk: {} DynamoDB write calls ({}), peak RSS {peak:.1} MiB (was {before:.1} MiB before the batch), {:.1} s against moto, {} results counted",
        writes(&calls),
        WRITES
            .iter()
            .filter_map(|w| calls.get(*w).map(|n| format!("{w} {n}")))
            .collect::<Vec<_>>()
            .join(", "),
        elapsed.as_secs_f64(),
        done
    );

    // 3. One single-result webhook.
    let job = seed_job(
        &jobs,
        Operation::EmailFind,
        // Two contacts: the measured webhook is not the job's last; the last one also
        // settles the job (one more UpdateItem, once per job).
        vec![finder(0), finder(1)],
        1,
        &["single-1", "single-2"],
    )
    .await;
    let event = std::fs::read(
        relay_local_stack::repo_root().join("fixtures/providers/enrow/single_search_finished.json"),
    )
    .unwrap();
    let mut event: Value = serde_json::from_slice(&event).unwrap();
    event["id"] = json!("single-1");
    let body = envelope(
        Provider::Enrow,
        Hook::Event,
        &job,
        event.to_string().as_bytes(),
    );
    single_webhook(&worker, &counter, "Enrow single, first delivery", &body).await;
    single_webhook(&worker, &counter, "Enrow single, a duplicate", &body).await;

    // 4. One FullEnrich `contact_finished` of a 100-contact chunk (the chunk stays open: its
    //    batch webhook ends it), then the same again.
    let (job, pids) = seed_numbered_fullenrich_job(&jobs, 200, 100).await;
    let record = numbered_fullenrich_record(7, true);
    let event = json!({"id": pids[0], "status": "IN_PROGRESS", "data": [record]}).to_string();
    let body = envelope(Provider::Fullenrich, Hook::Contact, &job, event.as_bytes());
    single_webhook(
        &worker,
        &counter,
        "FullEnrich contact_finished, first delivery",
        &body,
    )
    .await;
    single_webhook(
        &worker,
        &counter,
        "FullEnrich contact_finished, a duplicate",
        &body,
    )
    .await;
}

/// Hands the worker one delivery and prints every DynamoDB request it cost, by operation, with
/// the capacity units and the cost per million such deliveries.
async fn single_webhook(worker: &BenchWorker, counter: &Counter, what: &str, body: &str) {
    counter.take();
    let resp = worker.handle_batch(sqs_event(&[body.to_string()])).await;
    assert!(resp.batch_item_failures.is_empty(), "{what}: {resp:?}");
    let tally = counter.take();
    let list = tally
        .calls
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    // SQS $0.40 per million requests: SendMessage at ingest + the event source's receive and
    // delete, batched by 10 (0.2 per message).
    let sqs_requests = 1.2;
    let dollars = dynamo_dollars_per_million(tally.wru, tally.rru) + sqs_requests * 0.40;
    println!(
        "single-result webhook ({what}): DynamoDB {list} = {} write calls, {} WRU + {} RRU (index writes included); SQS {sqs_requests} requests; ≈ ${dollars:.2} per million (DynamoDB + SQS, before Lambda and API Gateway)",
        writes(&tally.calls),
        tally.wru,
        tally.rru
    );
}

/// A started one-chunk email_find job of `n` contacts under provider id `pid`, in memory.
fn one_chunk_job(jobs: &relay_shared::store::memory::MemoryJobs, pid: &str, n: u64) -> JobId {
    use relay_shared::jobs::{Chunk, Contact, JobMeta, JobStatus};
    let job_id = JobId::new(format!("job_{pid}"));
    let meta = JobMeta::new(
        job_id.clone(),
        Operation::EmailFind,
        None,
        JobStatus::Running,
        n,
        n,
        Value::Null,
    );
    let contacts = (0..n)
        .map(|i| Contact {
            origin: None,
            index: ContactIndex(i),
            fields: json!({"fullname": format!("Person {i}"), "company_domain": "example.com"})
                .as_object()
                .unwrap()
                .clone(),
            custom: None,
        })
        .collect();
    jobs.insert(meta, Chunk::plan(n, n), contacts);
    jobs.start(&job_id, ChunkIndex(0), &ProviderId::new(pid));
    job_id
}
