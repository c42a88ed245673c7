//! What one sweep costs, against moto (the real DynamoDB and SQS APIs through the SDK): 10,000
//! open chunks across 100 jobs (one group each in the `due` index), 1% of them due, spread so
//! that every group is due; then 2,000 open chunks across 20 jobs with the same 100 due. A due
//! group's chunks are read whole, so reads follow the open chunks of the due groups (here all
//! of them: the worst case), not the table. Prints the queries, the read units they are charged
//! by DynamoDB's size rule (moto reports no real capacity), the conditional updates and SQS
//! messages, and the sweep's wall time (median of 3; the emulator is far slower than DynamoDB,
//! so the wall time is an upper bound).
//!
//! Run: `make bench` (or `cargo bench -p relay-benches --bench sweep`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use relay_local_stack::{Moto, Template};
use relay_shared::queue::SqsQueue;
use relay_shared::store::{DynamoJobStore, chunk_sk, poll_shard};
use relay_shared::{ChunkIndex, JobId};
use sweeper::Sweeper;

const CHUNKS_PER_JOB: usize = 100;
const DUE: usize = 100;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

#[tokio::main]
async fn main() {
    let moto = Moto::start(0).expect("start moto (run scripts/bootstrap.sh first)");
    let sdk = relay_shared::aws::for_endpoint(&moto.endpoint).await;
    for open in [10_000, 2_000] {
        bench(&sdk, open).await;
    }
}

/// Sweeps `open` open chunks of which [`DUE`] are due, three times on fresh tables.
async fn bench(sdk: &aws_config::SdkConfig, open: usize) {
    let ddb = relay_shared::aws::dynamodb(sdk);
    let sqs = relay_shared::aws::sqs(sdk);
    let jobs = open / CHUNKS_PER_JOB;
    let due_every = open / DUE;
    let mut walls = Vec::new();
    let mut last = None;
    for round in 0..3 {
        // Fresh tables each round: every round sweeps the same due chunks.
        let prefix = format!(
            "sw{round}{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let res = Template::load_default()
            .expect("template.yaml")
            .create(sdk, &prefix)
            .await
            .expect("create local resources");
        let table = res.table("JobsTable").to_string();
        let now = relay_shared::now_ms();
        let mut requests = Vec::new();
        let put = |item: HashMap<String, AttributeValue>| {
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build()
        };
        for j in 0..jobs {
            let job = format!("job_bench{j:04}");
            let mut group_at = u64::MAX;
            for c in 0..CHUNKS_PER_JOB {
                let due = (j * CHUNKS_PER_JOB + c).is_multiple_of(due_every);
                let poll_at = if due { now - 60_000 } else { now + 3_600_000 };
                group_at = group_at.min(poll_at);
                requests.push(put(HashMap::from([
                    ("pk".into(), s(format!("JOB#{job}"))),
                    ("sk".into(), s(chunk_sk(ChunkIndex(c as u32)))),
                    ("chunk".into(), n(c as u64)),
                    ("offset".into(), n((c * 100) as u64)),
                    ("count".into(), n(100)),
                    ("status".into(), s("submitted")),
                    ("provider_id".into(), s(uuid::Uuid::new_v4().to_string())),
                    ("poll_every".into(), n(600_000)),
                    ("poll_at".into(), n(poll_at)),
                ])));
            }
            // The job's chunks are in the index through their group, due with its first chunk.
            requests.push(put(HashMap::from([
                ("pk".into(), s(format!("JOB#{job}"))),
                ("sk".into(), s("CHUNK#~F00000")),
                (
                    "poll_shard".into(),
                    s(poll_shard(&JobId::new(job.as_str()))),
                ),
                ("poll_at".into(), n(group_at)),
            ])));
        }
        for batch in requests.chunks(25) {
            ddb.batch_write_item()
                .request_items(&table, batch.to_vec())
                .send()
                .await
                .expect("seed chunks");
        }
        let sweeper = Sweeper {
            jobs: DynamoJobStore::new(ddb.clone(), &table),
            queue: SqsQueue::new(sqs.clone(), res.queue_url("WebhookQueue")),
            submit_queue: SqsQueue::new(sqs.clone(), res.queue_url("SubmitQueue")),
            hold: Duration::from_secs(600),
            limit: 5000,
        };
        let started = Instant::now();
        let sweep = sweeper.sweep().await.expect("sweep");
        walls.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(sweep.enqueued, DUE);
        last = Some(sweep);
    }
    let sweep = last.unwrap();
    walls.sort_by(f64::total_cmp);
    println!("sweep of {open} open chunks, {} due:", sweep.due);
    println!(
        "  queries {} (index, eventually consistent; due groups' chunks, strongly), items read {} ({} bytes), read units {:.1}",
        sweep.read.queries, sweep.read.items, sweep.read.bytes, sweep.read.read_units
    );
    println!(
        "  conditional updates {} (1 write unit each; and one per due group), SQS messages {}",
        sweep.enqueued + sweep.skipped,
        sweep.enqueued
    );
    println!(
        "  wall time on moto: median {:.0} ms (min {:.0}, max {:.0})",
        walls[walls.len() / 2],
        walls[0],
        walls[walls.len() - 1]
    );
}
