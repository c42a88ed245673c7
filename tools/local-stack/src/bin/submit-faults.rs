//! `make bench`: provider start requests per chunk under a fault mix.
//!
//! The dev stack (moto, the four function binaries, the provider sandbox) takes 200 one-contact
//! Enrow verification jobs and one 500-contact FullEnrich job: 205 chunks, each one start request
//! when all goes well. The sandbox answers starts with the faults its documents allow, drawn from
//! a seeded mix: 10 % accepted but answered after the relay's timeout, 10 % 429 with
//! `Retry-After`, 5 % a 5xx after the job was stored. Printed: start requests per chunk, starts the
//! provider ran per chunk (target exactly 1.00: nothing billed twice, nothing left unstarted), the
//! time the jobs took, and whether every contact came back.
//!
//! Many small chunks rather than one 10,000-contact job: the figure is about starts, and moto
//! (one Python process serving every table) slows to several seconds a call once it holds a
//! 10,000-contact job with its results, which only measures the emulator.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use relay_local_stack::dev::{DevOptions, DevStack};
use relay_local_stack::sandbox::StartFault;
use serde_json::{Value, json};

/// Starts under the faults providers' documents allow; prints how many starts each chunk got.
#[derive(clap::Parser)]
struct Args {
    /// Enrow single jobs to start
    #[arg(default_value_t = 200)]
    singles: usize,
}

#[tokio::main]
async fn main() {
    let singles = <Args as clap::Parser>::parse().singles;
    let mut opts = DevOptions::from_env();
    // The built binaries under watch's Runtime API (each with its own environment; the soak
    // kills one mid-batch), on free ports beside a running `make dev`.
    opts.host = relay_local_stack::dev::Host::Binaries;
    opts.hot_reload = false;
    opts.watch_port = 0;
    opts.port = 0;
    opts.enrow_url = None;
    opts.fullenrich_url = None;
    opts.enrow_key = None;
    opts.fullenrich_key = None;
    opts.retry_visibility_seconds = 2;
    opts.log_dir = relay_local_stack::repo_root().join(".local/bench-submit-faults");
    opts.sandbox.delay = Duration::from_millis(200);
    // The batch webhook only: the figure is about starts.
    opts.sandbox.contact_webhooks = false;
    opts.sandbox.fault_mix = vec![
        (StartFault::AcceptThenHang(Duration::from_secs(3)), 0.10),
        (StartFault::RateLimited { retry_after: 1 }, 0.10),
        (StartFault::StoreThen5xx, 0.05),
    ];
    opts.extra_env = BTreeMap::from([("PROVIDER_TIMEOUT_SECONDS".into(), "1".into())]);
    let stack = DevStack::start(opts).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().expect("sandbox");
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let http = http.clone();
        let url = format!("{}/jobs", stack.api_url);
        let token = stack.api_token.clone();
        async move {
            let v: Value = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("POST /jobs")
                .json()
                .await
                .expect("JSON");
            (
                v["job_id"].as_str().expect("job id").to_string(),
                v["chunks"].as_u64().unwrap_or(0),
                v["contacts"].as_u64().unwrap_or(0),
            )
        }
    };
    let started = Instant::now();
    let fe: Vec<Value> = (0..500)
        .map(|i| json!({"first_name": format!("Ada{i}"), "last_name": "Example", "domain": "example.com", "custom": {"crm_id": format!("c{i}")}}))
        .collect();
    let mut jobs =
        vec![post(json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe})).await];
    for i in 0..singles {
        jobs.push(
            post(json!({"provider": "enrow", "operation": "email_verify", "contacts": [{"email": format!("person{i}@example.com")}]}))
                .await,
        );
    }
    let accepted = started.elapsed();
    let chunks: u64 = jobs.iter().map(|j| j.1).sum();
    let contacts: u64 = jobs.iter().map(|j| j.2).sum();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut states = Vec::new();
    for (job, _, _) in &jobs {
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
                Some("completed" | "partially_failed" | "failed" | "canceled")
            ) || Instant::now() > deadline
            {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        states.push(state);
    }
    let took = started.elapsed();
    let starts = sandbox.starts();
    let mut per_chunk: BTreeMap<(String, u64), (usize, usize)> = BTreeMap::new();
    for s in &starts {
        let chunk = s.rids.first().copied().unwrap_or(u64::MAX) / 100;
        let e = per_chunk
            .entry((s.job_id.clone().unwrap_or_default(), chunk))
            .or_default();
        e.0 += 1;
        e.1 += s.stored as usize;
    }
    let requests: usize = per_chunk.values().map(|c| c.0).sum();
    let stored: Vec<usize> = per_chunk.values().map(|c| c.1).collect();
    let by_status = |code: u16| starts.iter().filter(|s| s.status == code).count();
    let count = |k: &str| states.iter().filter_map(|s| s[k].as_u64()).sum::<u64>();
    let completed = states.iter().filter(|s| s["status"] == "completed").count();
    println!(
        "submit under a start fault mix (10 % answer after the timeout, 10 % 429, 5 % 5xx after storing)"
    );
    println!(
        "  {} jobs ({singles} Enrow single verifications, one 500-contact FullEnrich enrichment), {chunks} chunks, {contacts} contacts; accepted in {:.1} s; {completed} jobs completed in {:.1} s",
        jobs.len(),
        accepted.as_secs_f64(),
        took.as_secs_f64()
    );
    println!(
        "  start requests: {requests} ({:.2} per chunk; 429 {}, 5xx after storing {}, answered after the timeout {})",
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
        "  contacts done {} of {contacts} (found/valid {}, not found/invalid {}, failed {}); chunks started {} of {chunks}",
        count("done"),
        count("found"),
        count("not_found"),
        count("failed"),
        per_chunk.len()
    );
    let exact = per_chunk.len() as u64 == chunks
        && stored.iter().all(|s| *s == 1)
        && count("done") == contacts
        && count("failed") == 0;
    drop(stack);
    if !exact {
        eprintln!(
            "submit-faults: a chunk was started other than exactly once, or contacts are missing"
        );
        std::process::exit(1);
    }
}
