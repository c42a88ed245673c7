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

use relay_local_stack::api::JobsApi;
use relay_local_stack::dev::{DevOptions, DevStack};
use relay_local_stack::sandbox::{StartFault, StartLog};
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
    let stack = DevStack::start(options()).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().expect("sandbox");
    let run = Run::of(&JobsApi::of(&stack), singles).await;
    let starts = Starts::of(sandbox.starts());
    run.report(&starts);
    let exact = run.exact(&starts);
    drop(stack);
    if !exact {
        eprintln!(
            "submit-faults: a chunk was started other than exactly once, or contacts are missing"
        );
        std::process::exit(1);
    }
}

/// The dev stack for the figure: the built binaries, the sandbox's start fault mix, a 1 s
/// provider timeout.
fn options() -> DevOptions {
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
    opts
}

/// A job as `POST /jobs` accepted it.
struct Submitted {
    id: String,
    chunks: u64,
    contacts: u64,
}

/// The jobs submitted, how long accepting them and finishing them took, and how they ended.
struct Run {
    singles: usize,
    jobs: Vec<Submitted>,
    accepted: Duration,
    took: Duration,
    states: Vec<Value>,
}

impl Run {
    /// One 500-contact FullEnrich job and `singles` one-contact Enrow ones, then each job
    /// followed until it ends (10 minutes at the most in all).
    async fn of(api: &JobsApi, singles: usize) -> Run {
        let started = Instant::now();
        let fe: Vec<Value> = (0..500)
            .map(|i| json!({"first_name": format!("Ada{i}"), "last_name": "Example", "domain": "example.com", "custom": {"crm_id": format!("c{i}")}}))
            .collect();
        let mut jobs = vec![
            submit(
                api,
                json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe}),
            )
            .await,
        ];
        for i in 0..singles {
            jobs.push(
                submit(api, json!({"provider": "enrow", "operation": "email_verify", "contacts": [{"email": format!("person{i}@example.com")}]}))
                    .await,
            );
        }
        let accepted = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut states = Vec::new();
        for job in &jobs {
            let state = api
                .wait_finished(&job.id, deadline, Duration::from_millis(300))
                .await
                .expect("GET /jobs/{id}");
            states.push(state);
        }
        Run {
            singles,
            jobs,
            accepted,
            took: started.elapsed(),
            states,
        }
    }

    fn chunks(&self) -> u64 {
        self.jobs.iter().map(|j| j.chunks).sum()
    }

    fn contacts(&self) -> u64 {
        self.jobs.iter().map(|j| j.contacts).sum()
    }

    /// A figure of the jobs' states, summed.
    fn count(&self, k: &str) -> u64 {
        self.states.iter().filter_map(|s| s[k].as_u64()).sum()
    }

    /// Every chunk started exactly once, every contact done, none failed.
    fn exact(&self, starts: &Starts) -> bool {
        starts.per_chunk.len() as u64 == self.chunks()
            && starts.stored.iter().all(|s| *s == 1)
            && self.count("done") == self.contacts()
            && self.count("failed") == 0
    }

    fn report(&self, starts: &Starts) {
        let (chunks, contacts, singles) = (self.chunks(), self.contacts(), self.singles);
        let completed = self
            .states
            .iter()
            .filter(|s| s["status"] == "completed")
            .count();
        println!(
            "submit under a start fault mix (10 % answer after the timeout, 10 % 429, 5 % 5xx after storing)"
        );
        println!(
            "  {} jobs ({singles} Enrow single verifications, one 500-contact FullEnrich enrichment), {chunks} chunks, {contacts} contacts; accepted in {:.1} s; {completed} jobs completed in {:.1} s",
            self.jobs.len(),
            self.accepted.as_secs_f64(),
            self.took.as_secs_f64()
        );
        println!(
            "  start requests: {} ({:.2} per chunk; 429 {}, 5xx after storing {}, answered after the timeout {})",
            starts.requests,
            starts.requests as f64 / chunks.max(1) as f64,
            starts.by_status(429),
            starts.by_status(500),
            starts.late,
        );
        println!(
            "  starts the provider ran per chunk: {:.2} (min {}, max {}; target exactly 1.00)",
            starts.stored.iter().sum::<usize>() as f64 / chunks.max(1) as f64,
            starts.stored.iter().min().unwrap_or(&0),
            starts.stored.iter().max().unwrap_or(&0),
        );
        println!(
            "  contacts done {} of {contacts} (found/valid {}, not found/invalid {}, failed {}); chunks started {} of {chunks}",
            self.count("done"),
            self.count("found"),
            self.count("not_found"),
            self.count("failed"),
            starts.per_chunk.len()
        );
    }
}

async fn submit(api: &JobsApi, body: Value) -> Submitted {
    let v = api
        .call(reqwest::Method::POST, "/jobs", Some(&body), None)
        .await
        .expect("POST /jobs");
    Submitted {
        id: v["job_id"].as_str().expect("job id").to_string(),
        chunks: v["chunks"].as_u64().unwrap_or(0),
        contacts: v["contacts"].as_u64().unwrap_or(0),
    }
}

/// The start requests the sandbox saw, by chunk (job, first contact / 100).
struct Starts {
    log: Vec<StartLog>,
    /// (requests, starts the sandbox stored) of each chunk.
    per_chunk: BTreeMap<(String, u64), (usize, usize)>,
    requests: usize,
    /// Starts stored, chunk by chunk.
    stored: Vec<usize>,
    /// Accepted and stored, but answered after the relay's timeout.
    late: usize,
}

impl Starts {
    fn of(log: Vec<StartLog>) -> Starts {
        let mut per_chunk: BTreeMap<(String, u64), (usize, usize)> = BTreeMap::new();
        for s in &log {
            let chunk = s.rids.first().copied().unwrap_or(u64::MAX) / 100;
            let e = per_chunk
                .entry((s.job_id.clone().unwrap_or_default(), chunk))
                .or_default();
            e.0 += 1;
            e.1 += s.stored as usize;
        }
        Starts {
            requests: per_chunk.values().map(|c| c.0).sum(),
            stored: per_chunk.values().map(|c| c.1).collect(),
            late: log.iter().filter(|s| s.stored && s.status == 0).count(),
            per_chunk,
            log,
        }
    }

    fn by_status(&self, code: u16) -> usize {
        self.log.iter().filter(|s| s.status == code).count()
    }
}
