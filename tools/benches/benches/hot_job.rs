//! One big FullEnrich job under per-contact webhooks, against moto through the real SDK: every
//! contact's `contact_finished` delivered twice, shuffled, applied by 50 concurrent bulk-fetch
//! invocations (SQS batches of 10), then every batch's webhook. Prints the wall time, the
//! TransactionConflicts (must be 0: no item is written by every result), the records sent back
//! for a retry, the capacity units per contact and what they cost, and checks that the job
//! settles with exact figures.
//!
//! Run: `make bench` (or `HOT_CONTACTS=50000 cargo bench -p relay-benches --bench hot_job`; the
//! default is 50,000 contacts, 500 chunks of 100).

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use relay_local_stack::provider_stub::ProviderStub;
use relay_local_stack::seed::{numbered_fullenrich_record, seed_numbered_fullenrich_job};
use relay_local_stack::{Moto, queue};
use relay_shared::Provider;
use relay_shared::jobs::JobStatus;
use relay_shared::providers::Hook;
use relay_shared::store::Jobs;
use relay_shared::testing::envelope;
use serde_json::{Value, json};

const CHUNK: u64 = 100;
const CONCURRENCY: usize = 50;

fn record(i: u64) -> Value {
    numbered_fullenrich_record(i, found(i))
}

fn found(i: u64) -> bool {
    !i.is_multiple_of(3)
}

/// A deterministic shuffle (xorshift): the same order every run.
fn shuffle<T>(v: &mut [T]) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

/// How long a bulk apply holds its chunk in this bench. An attempt that fails midway (a call to
/// the loaded emulator timing out) keeps its chunk until the lease ends; on AWS the redelivery
/// comes after the queue's visibility timeout (360 s), well after the 120 s lease. The bench
/// shortens the lease and waits it out before a redelivery, as SQS would.
const APPLY_LEASE: Duration = Duration::from_secs(15);

/// What a delivery phase sent back and requeued before every record was applied.
#[derive(Debug, Default)]
struct Redelivered {
    /// Records the worker answered as failed, delivered again (SQS's redelivery).
    sent_back: usize,
    /// Deliveries the worker put back on the queue to wait (a bulk event's claim held by another
    /// delivery, results not ready), received again once their delay ran out.
    requeued: usize,
}

/// Applies every body, 10 to an invocation, `CONCURRENCY` invocations at once, as SQS and the
/// event source mapping would: records sent back are delivered again after the apply lease (SQS:
/// after its visibility timeout), and deliveries the worker requeued come back from the queue
/// after their delay, until every one is applied.
async fn deliver(
    worker: &BenchWorker,
    sqs: &aws_sdk_sqs::Client,
    bodies: Vec<String>,
) -> Redelivered {
    let mut pending = bodies;
    let mut again = Redelivered::default();
    for _ in 0..10 {
        again.sent_back += deliver_until_taken(worker, pending).await;
        pending = requeued(sqs, worker.requeue.url()).await;
        if pending.is_empty() {
            return again;
        }
        eprintln!(
            "{} requeued deliveries came back from the queue",
            pending.len()
        );
        again.requeued += pending.len();
    }
    panic!(
        "{} deliveries still requeued after 10 rounds",
        pending.len()
    );
}

/// Delivers the bodies until no record is sent back. Returns how many were.
async fn deliver_until_taken(worker: &BenchWorker, bodies: Vec<String>) -> usize {
    let mut pending = bodies;
    let mut sent_back = 0;
    for round in 0..20 {
        if pending.is_empty() {
            return sent_back;
        }
        if round > 0 {
            eprintln!(
                "{} records sent back; delivering them again after {} s (the apply lease)",
                pending.len(),
                APPLY_LEASE.as_secs()
            );
            tokio::time::sleep(APPLY_LEASE + Duration::from_secs(1)).await;
        }
        let batches: Vec<Vec<String>> = pending.chunks(10).map(<[String]>::to_vec).collect();
        let again: Vec<Vec<String>> = futures::stream::iter(batches)
            .map(|batch| async move {
                let event = sqs_event(&batch);
                let ids: Vec<String> = event
                    .records
                    .iter()
                    .map(|r| r.message_id.clone().unwrap_or_default())
                    .collect();
                let resp = worker.handle_batch(event).await;
                resp.batch_item_failures
                    .iter()
                    .filter_map(|f| ids.iter().position(|id| *id == f.item_identifier))
                    .map(|k| batch[k].clone())
                    .collect::<Vec<_>>()
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        pending = again.into_iter().flatten().collect();
        sent_back += pending.len();
    }
    panic!(
        "{} records still failing after 20 deliveries",
        pending.len()
    );
}

/// Every message on the worker's queue (deliveries it requeued to wait), received once its delay
/// ran out and deleted; waits until the queue holds none, delayed ones included.
async fn requeued(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    while queue::messages_held(sqs, url).await > 0 {
        bodies.extend(queue::drain(sqs, url).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bodies
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("HOT_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    // Failures the worker logs and goes on from (e.g. a duplicate not counted) show on stderr;
    // `RUST_LOG=info` adds one line per delivery (why a record was sent back: `outcome="retry"`).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let moto = Moto::start(0).expect("start moto (run scripts/bootstrap.sh first)");
    let sdk = relay_shared::aws::for_endpoint(&moto.endpoint).await;
    let counter = Counter::default();
    let stub = ProviderStub::start().await;
    let (worker, jobs) = fresh_worker(&sdk, &stub, &counter).await;
    let worker = BenchWorker {
        jobs: worker.jobs.with_apply_lease(APPLY_LEASE),
        ..worker
    };
    let seeded = Instant::now();
    let (job, pids) = seed_numbered_fullenrich_job(&jobs, n, CHUNK).await;
    println!(
        "hot job: {n} contacts in {} chunks seeded in {:.1} s",
        pids.len(),
        seeded.elapsed().as_secs_f64()
    );

    // 1. Every contact's webhook, twice, shuffled.
    let mut bodies = Vec::with_capacity(2 * n as usize);
    for i in 0..n {
        let pid = &pids[(i / CHUNK) as usize];
        let body = json!({"id": pid, "status": "IN_PROGRESS", "data": [record(i)]}).to_string();
        let env = envelope(Provider::Fullenrich, Hook::Contact, &job, body.as_bytes());
        bodies.push(env.clone());
        bodies.push(env);
    }
    shuffle(&mut bodies);
    counter.take();
    let started = Instant::now();
    let sqs = relay_shared::aws::sqs(&sdk);
    let again = deliver(&worker, &sqs, bodies).await;
    let contact_wall = started.elapsed().as_secs_f64();
    let per_contact = counter.take();
    let view = jobs.job_view(&job).await.unwrap().expect("job");
    let expect_found = (0..n).filter(|i| found(*i)).count() as u64;
    let deliveries = 2.0 * n as f64;
    println!(
        "contact_finished ×2: {} deliveries in {contact_wall:.1} s ({:.0}/s) by {CONCURRENCY} concurrent invocations; TransactionConflict {}, TransactWriteItems {}, records sent back {}, deliveries requeued {}",
        deliveries,
        deliveries / contact_wall,
        per_contact.transaction_conflicts,
        per_contact
            .calls
            .get("TransactWriteItems")
            .copied()
            .unwrap_or(0),
        again.sent_back,
        again.requeued,
    );
    println!(
        "  after them: done {}, found {}, duplicates counted {} of {n} (a count whose write fails is logged as `duplicate not counted` and not retried: a retried ADD that had landed would count twice)",
        view.done, view.found, view.duplicates
    );
    println!(
        "  per contact (both copies): {:.2} WRU + {:.2} RRU; per delivery {:.2} WRU + {:.2} RRU ≈ ${:.2} per million deliveries (DynamoDB + SQS 1.2 requests)",
        per_contact.wru / n as f64,
        per_contact.rru / n as f64,
        per_contact.wru / deliveries,
        per_contact.rru / deliveries,
        dynamo_dollars_per_million(per_contact.wru / deliveries, per_contact.rru / deliveries)
            + 1.2 * 0.40
    );
    assert_eq!(
        (view.done, view.found),
        (n, expect_found),
        "per-contact counts"
    );
    assert!(view.duplicates <= n, "a duplicate counted twice");

    // 2. Every batch's webhook (signed, with its records): the rows become final, the job ends.
    let mut batches = Vec::new();
    for (k, pid) in pids.iter().enumerate() {
        let lo = k as u64 * CHUNK;
        let records: Vec<Value> = (lo..(lo + CHUNK).min(n)).map(record).collect();
        let body = json!({"id": pid, "status": "FINISHED", "cost": {"credits": records.len()}, "data": records}).to_string();
        batches.push(envelope(
            Provider::Fullenrich,
            Hook::Batch,
            &job,
            body.as_bytes(),
        ));
    }
    let started = Instant::now();
    let batch_again = deliver(&worker, &sqs, batches).await;
    let batch_wall = started.elapsed().as_secs_f64();
    let per_batch = counter.take();
    let view = jobs.job_view(&job).await.unwrap().expect("job");
    println!(
        "batch webhooks: {} in {batch_wall:.1} s; TransactionConflict {}, records sent back {}, deliveries requeued {}, {:.2} WRU + {:.2} RRU per contact; the job: {}, done {}, found {}, not found {}, failed {}",
        pids.len(),
        per_batch.transaction_conflicts,
        batch_again.sent_back,
        batch_again.requeued,
        per_batch.wru / n as f64,
        per_batch.rru / n as f64,
        view.status.as_str(),
        view.done,
        view.found,
        view.not_found,
        view.failed,
    );
    assert_eq!(view.status, JobStatus::Completed, "{view:?}");
    assert_eq!(
        (view.done, view.found, view.not_found, view.failed),
        (n, expect_found, n - expect_found, 0),
        "settled figures"
    );
}
