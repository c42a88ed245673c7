//! `make bench`: provider start requests per chunk under a fault mix.
//!
//! The dev stack (moto, the four function binaries, the provider sandbox) takes a 10,000-contact
//! FullEnrich job (100 chunks) while the sandbox answers starts with the faults its documents
//! allow: 10 % accepted but answered after the relay's timeout, 10 % 429 with `Retry-After`, 5 %
//! a 5xx after the job was stored. Printed: start requests per chunk, starts the provider ran per
//! chunk (target exactly 1.00: nothing billed twice, nothing left unstarted), the time the job
//! took to be accepted and to complete, and whether every contact came back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use relay_local_stack::dev::{DevOptions, DevStack};
use relay_local_stack::sandbox::StartFault;
use serde_json::{Value, json};

#[tokio::main]
async fn main() {
    let contacts: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let mut opts = DevOptions::from_env();
    opts.port = 0;
    opts.enrow_url = None;
    opts.fullenrich_url = None;
    opts.enrow_key = None;
    opts.fullenrich_key = None;
    opts.retry_visibility_seconds = 2;
    opts.log_dir = relay_local_stack::repo_root().join(".local/bench-submit-faults");
    opts.sandbox.delay = Duration::from_millis(200);
    // The batch webhook only: the figure is about starts, and 10,000 per-contact deliveries
    // through one local bulk-fetch would only make the run longer.
    opts.sandbox.contact_webhooks = false;
    opts.sandbox.fault_mix = vec![
        (StartFault::AcceptThenHang(Duration::from_secs(3)), 0.10),
        (StartFault::RateLimited { retry_after: 1 }, 0.10),
        (StartFault::StoreThen5xx, 0.05),
    ];
    opts.extra_env = BTreeMap::from([
        ("FULLENRICH_REQUESTS_PER_MINUTE".into(), "60".into()),
        ("PROVIDER_TIMEOUT_SECONDS".into(), "1".into()),
    ]);
    let stack = DevStack::start(opts).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().expect("sandbox");
    let http = reqwest::Client::new();
    let body: Vec<Value> = (0..contacts)
        .map(|i| json!({"first_name": format!("Ada{i}"), "last_name": "Example", "domain": "example.com", "custom": {"crm_id": format!("c{i}")}}))
        .collect();
    let started = Instant::now();
    let resp: Value = http
        .post(format!("{}/jobs", stack.api_url))
        .bearer_auth(&stack.api_token)
        .json(&json!({"provider": "fullenrich", "operation": "enrich", "contacts": body}))
        .send()
        .await
        .expect("POST /jobs")
        .json()
        .await
        .expect("JSON");
    let accepted = started.elapsed();
    let job = resp["job_id"].as_str().expect("job id").to_string();
    let chunks = resp["chunks"].as_u64().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(900);
    let state = loop {
        let v: Value = http
            .get(format!("{}/jobs/{job}", stack.api_url))
            .bearer_auth(&stack.api_token)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        if matches!(
            v["status"].as_str(),
            Some("completed" | "partially_failed" | "failed")
        ) || Instant::now() > deadline
        {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let took = started.elapsed();
    let starts = sandbox.starts();
    let mut per_chunk: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    for s in starts
        .iter()
        .filter(|s| s.job_id.as_deref() == Some(job.as_str()))
    {
        let chunk = s.rids.first().copied().unwrap_or(u64::MAX) / 100;
        let e = per_chunk.entry(chunk).or_default();
        e.0 += 1;
        e.1 += s.stored as usize;
    }
    let requests: usize = per_chunk.values().map(|c| c.0).sum();
    let stored: Vec<usize> = per_chunk.values().map(|c| c.1).collect();
    let by_status = |code: u16| starts.iter().filter(|s| s.status == code).count();
    println!(
        "submit under a start fault mix (10 % answer after the timeout, 10 % 429, 5 % 5xx after storing)"
    );
    println!(
        "  contacts {contacts}, chunks {chunks}; accepted in {:.2} s; job {} in {:.1} s",
        accepted.as_secs_f64(),
        state["status"],
        took.as_secs_f64()
    );
    println!(
        "  start requests: {requests} ({:.2} per chunk; 429 {}, 5xx {}, answered too late {})",
        requests as f64 / chunks.max(1) as f64,
        by_status(429),
        by_status(500),
        starts.iter().filter(|s| s.stored && s.status == 0).count(),
    );
    println!(
        "  starts the provider ran per chunk: {:.2} (min {}, max {}; target exactly 1.00)",
        stored.iter().sum::<usize>() as f64 / chunks.max(1) as f64,
        stored.iter().min().unwrap_or(&0),
        stored.iter().max().unwrap_or(&0),
    );
    println!(
        "  contacts done {} of {contacts} (found {}, not found {}, failed {}); chunks started {} of {chunks}",
        state["done"],
        state["found"],
        state["not_found"],
        state["failed"],
        per_chunk.len()
    );
    let exact = per_chunk.len() as u64 == chunks
        && stored.iter().all(|s| *s == 1)
        && state["done"].as_u64() == Some(contacts as u64);
    drop(stack);
    if !exact {
        eprintln!(
            "submit-faults: a chunk was started other than exactly once, or contacts are missing"
        );
        std::process::exit(1);
    }
}
