//! The soak: many deliveries of many jobs, every event sent 1–5 times, shuffled, concurrently,
//! with the faults the providers' documents allow, on the whole local stack; then every job is
//! checked against what the sandbox decided for each contact.
//!
//! The sandbox keeps its webhooks ([`SandboxConfig::capture_webhooks`]) and the soak sends them
//! itself, as a provider that retries and duplicates would: each copy is retried on a 5xx or a
//! refused connection (FullEnrich retries a minute apart; Enrow documents no retries, so an Enrow
//! event lost to a long outage is for the sweeper's poll, not this sender). Faults:
//! - result GETs answer "not ready" first, then 429 (10 %), 500 (10 %), 503 (5 %) at random;
//! - the providers' own rate limits (FullEnrich 60 a minute, GETs included);
//! - webhook-ingest loses its way to SQS for `sqs_outage` once a fifth of the deliveries went;
//! - bulk-fetch is killed (SIGKILL) while it holds a batch, half-way, and started again.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::JobsApi;
use crate::dev::{DevOptions, DevStack};
use crate::sandbox::{Captured, Sandbox, SandboxConfig};

#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Deliveries to send in all (every event 1–5 times).
    pub deliveries: usize,
    pub jobs: usize,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// How long ingest cannot reach SQS.
    pub sqs_outage: Duration,
    /// Kill bulk-fetch mid-batch half-way.
    pub kill_bulk_fetch: bool,
    /// How long to wait for every job to end once everything was sent.
    pub settle_timeout: Duration,
    pub seed: u64,
}

impl SoakConfig {
    /// `make soak`: 10,000 deliveries across 50 jobs.
    pub fn full() -> SoakConfig {
        SoakConfig {
            deliveries: 10_000,
            jobs: 50,
            concurrency: 16,
            sqs_outage: Duration::from_secs(10),
            kill_bulk_fetch: true,
            settle_timeout: Duration::from_secs(1200),
            seed: 11,
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub jobs: usize,
    pub contacts: usize,
    pub events: usize,
    pub deliveries: usize,
    /// Deliveries answered 2xx.
    pub accepted: usize,
    /// Answers 5xx or connections refused (each retried until accepted).
    pub unavailable: usize,
    /// Deliveries answered 4xx (none expected: every delivery is genuine).
    pub refused: usize,
    /// Contacts without their result, or with an outcome other than the provider's.
    pub lost: usize,
    /// Counts above what the stored rows show (a result counted twice).
    pub applied_twice: usize,
    /// Jobs whose counters equal the recount of their rows and whose contacts are all done.
    pub exact_jobs: usize,
    /// Messages in the dead-letter queues, by reason.
    pub dlq: BTreeMap<String, usize>,
    pub bulk_fetch_restarts: usize,
    /// Requests the sandbox answered 429 by its own limits, and GETs it served.
    pub provider_429s: u64,
    pub provider_gets: u64,
    pub wall: Duration,
    /// Wall time of each phase: jobs started and webhooks captured, deliveries sent, jobs ended.
    pub phases: Vec<(&'static str, Duration)>,
    pub peak_rss_kib: BTreeMap<String, u64>,
    /// What went wrong, for a report that fails (no contact data: job ids and indices).
    pub problems: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.applied_twice == 0
            && self.exact_jobs == self.jobs
            && self.refused == 0
            && self.accepted == self.deliveries
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "soak report")?;
        writeln!(
            f,
            "  jobs {} ({} contacts), events {}, deliveries {}",
            self.jobs, self.contacts, self.events, self.deliveries
        )?;
        writeln!(
            f,
            "  accepted {}, answered unavailable and resent {}, refused {}",
            self.accepted, self.unavailable, self.refused
        )?;
        writeln!(f, "  lost {} (must be 0)", self.lost)?;
        writeln!(f, "  applied twice {} (must be 0)", self.applied_twice)?;
        writeln!(f, "  counters exact {}/{} jobs", self.exact_jobs, self.jobs)?;
        let dlq: Vec<String> = self.dlq.iter().map(|(r, n)| format!("{r}: {n}")).collect();
        writeln!(
            f,
            "  DLQ {}",
            if dlq.is_empty() {
                "empty".to_string()
            } else {
                dlq.join(", ")
            }
        )?;
        writeln!(
            f,
            "  faults: bulk-fetch killed {}×, provider 429s {}, provider GETs {}",
            self.bulk_fetch_restarts, self.provider_429s, self.provider_gets
        )?;
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|(p, d)| format!("{p} {:.1} s", d.as_secs_f64()))
            .collect();
        writeln!(
            f,
            "  wall time {:.1} s ({})",
            self.wall.as_secs_f64(),
            phases.join(", ")
        )?;
        let rss: Vec<String> = self
            .peak_rss_kib
            .iter()
            .map(|(n, k)| format!("{n} {:.1} MiB", *k as f64 / 1024.0))
            .collect();
        writeln!(f, "  peak RSS {}", rss.join(", "))?;
        for p in self.problems.iter().take(20) {
            writeln!(f, "  problem: {p}")?;
        }
        Ok(())
    }
}

/// A stable draw in [0, 1), seeded.
fn draw(seed: u64, what: &str, n: usize) -> f64 {
    crate::sandbox::draw(&format!("{seed}-{what}-{n}"))
}

/// One job of the soak: its request and, per contact index, how its result is keyed.
struct Planned {
    body: Value,
    contacts: usize,
}

fn plan_jobs(cfg: &SoakConfig) -> Vec<Planned> {
    let fe_jobs = cfg.jobs.div_ceil(2);
    let enrow_jobs = cfg.jobs - fe_jobs;
    // Events ≈ deliveries / 3; Enrow jobs are one event each, FullEnrich ones one per contact
    // plus one per chunk of 100.
    let events = cfg.deliveries / 3;
    let per_fe = (events.saturating_sub(enrow_jobs) / fe_jobs.max(1)).max(2);
    let fe_contacts = per_fe - per_fe.div_ceil(101);
    let mut jobs = Vec::new();
    for j in 0..fe_jobs {
        let contacts: Vec<Value> = (0..fe_contacts)
            .map(|i| json!({"first_name": format!("Soak{j}x{i}"), "last_name": "Tester", "domain": "example.com", "custom": {"crm_id": format!("{j}-{i}")}}))
            .collect();
        jobs.push(Planned {
            body: json!({"provider": "fullenrich", "operation": "enrich", "name": format!("soak {j}"), "contacts": contacts}),
            contacts: fe_contacts,
        });
    }
    for j in 0..enrow_jobs {
        let (op, contacts): (&str, Vec<Value>) = match j % 4 {
            0 | 1 => (
                "email_find",
                (0..20).map(|i| json!({"fullname": format!("Soak Finder{j}x{i}"), "company_domain": "example.com"})).collect(),
            ),
            2 => ("email_verify", vec![json!({"email": format!("soak{j}@example.com")})]),
            _ => (
                "phone_find",
                vec![json!({"linkedin_url": format!("https://www.linkedin.com/in/soak-{j}")})],
            ),
        };
        jobs.push(Planned {
            contacts: contacts.len(),
            body: json!({"provider": "enrow", "operation": op, "contacts": contacts}),
        });
    }
    jobs
}

/// Copies per event, 1–5 each, summing to `target` when it can.
fn copies(events: usize, target: usize, seed: u64) -> Vec<usize> {
    let mut c: Vec<usize> = (0..events)
        .map(|i| 1 + (draw(seed, "copies", i) * 5.0) as usize)
        .collect();
    let target = target.clamp(events, events * 5);
    let mut i = 0;
    while c.iter().sum::<usize>() != target {
        let sum: usize = c.iter().sum();
        let k = i % events;
        if sum < target && c[k] < 5 {
            c[k] += 1;
        } else if sum > target && c[k] > 1 {
            c[k] -= 1;
        }
        i += 1;
    }
    c
}

/// Sends one delivery until the relay takes it: `(accepted, unavailable answers, refused)`.
async fn send(http: &reqwest::Client, d: &Captured) -> (bool, usize, bool) {
    let mut unavailable = 0;
    for _ in 0..300 {
        let mut req = http
            .post(&d.url)
            .header("content-type", "application/json")
            .body(d.body.clone());
        if let Some(sig) = &d.signature {
            req = req.header("X-Signature-SHA1", sig);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return (true, unavailable, false),
            Ok(r) if r.status().is_client_error() => return (false, unavailable, true),
            _ => {
                unavailable += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    (false, unavailable, false)
}

/// Runs the soak on a fresh dev stack (built binaries in `target/debug`).
pub async fn run(cfg: SoakConfig, mut opts: DevOptions) -> Result<Report, String> {
    let started = Instant::now();
    opts.sandbox = SandboxConfig {
        capture_webhooks: true,
        delay: Duration::from_millis(200),
        get_not_ready_first: 1,
        get_faults: vec![(429, 0.10), (500, 0.10), (503, 0.05)],
        ..opts.sandbox
    };
    opts.ingest_aws_switch = true;
    // Cutting one function off AWS and killing another mid-batch needs processes the stack
    // started itself (watch's Runtime API all the same).
    opts.host = crate::dev::Host::Binaries;
    // A killed bulk-fetch's claims and chunk leases run out in seconds here (on AWS: longer than
    // the function's timeout).
    opts.extra_env
        .entry("DEDUPE_LEASE_SECONDS".into())
        .or_insert_with(|| "20".into());
    opts.extra_env
        .entry("APPLY_LEASE_SECONDS".into())
        .or_insert_with(|| "20".into());
    // Waits for results not ready start at 2 s (30 s on AWS, FullEnrich's own hint).
    opts.extra_env
        .entry("NOT_READY_WAIT_SECONDS".into())
        .or_insert_with(|| "2".into());
    let stack = Arc::new(DevStack::start(opts).await?);
    let sandbox = stack.sandbox.clone().ok_or("the soak needs the sandbox")?;
    let api = JobsApi::of(&stack);
    let mut report = Report::default();

    let mut jobs = start_jobs(&cfg, &api, &sandbox, &mut report).await?;
    report
        .phases
        .push(("started and captured", started.elapsed()));
    let sending = Instant::now();
    let deliveries = shuffled_copies(&cfg, std::mem::take(&mut jobs.1));
    report.deliveries = deliveries.len();
    send_all(&cfg, &stack, &api, deliveries, &mut report).await?;
    report.phases.push(("sent", sending.elapsed()));
    let settling = Instant::now();
    let jobs = jobs.0;
    settle(&cfg, &stack, &api, &jobs).await?;
    report.phases.push(("settled", settling.elapsed()));
    for (id, contacts, _) in &jobs {
        check_job(&api, &sandbox, id, *contacts, &mut report).await?;
    }
    report.dlq = dead_letters(&stack).await;
    let counters = sandbox.counters();
    report.provider_429s = counters.rate_limited.load(Ordering::Relaxed);
    report.provider_gets = counters.gets.load(Ordering::Relaxed);
    report.peak_rss_kib = stack.peak_rss_kib().await;
    report.wall = started.elapsed();
    Ok(report)
}

/// A soak job: its id, its contacts, whether it is FullEnrich's.
type SoakJob = (String, usize, bool);

/// 1. The jobs, and every webhook their providers would send (captured by the sandbox).
async fn start_jobs(
    cfg: &SoakConfig,
    api: &JobsApi,
    sandbox: &Sandbox,
    report: &mut Report,
) -> Result<(Vec<SoakJob>, Vec<Captured>), String> {
    let planned = plan_jobs(cfg);
    let mut jobs = Vec::new();
    for p in &planned {
        let v = api
            .call(reqwest::Method::POST, "/jobs", Some(&p.body), None)
            .await?;
        let id = v["job_id"].as_str().ok_or("no job_id")?.to_string();
        jobs.push((id, p.contacts, p.body["provider"] == "fullenrich"));
    }
    report.jobs = jobs.len();
    report.contacts = jobs.iter().map(|j| j.1).sum();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut expected_events = 0;
    for (id, contacts, fullenrich) in &jobs {
        loop {
            let v = api.get(&format!("/jobs/{id}")).await?;
            let chunks = v["chunks"].as_array().cloned().unwrap_or_default();
            if !chunks.is_empty() && chunks.iter().all(|c| c["status"] == "submitted") {
                expected_events += chunks.len() + if *fullenrich { *contacts } else { 0 };
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("job {id} did not start: {v}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let mut events = Vec::new();
    while events.len() < expected_events {
        events.extend(sandbox.take_captured());
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {expected_events} webhooks captured",
                events.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.events = events.len();
    Ok((jobs, events))
}

/// 2. Each event 1–5 times, shuffled.
fn shuffled_copies(cfg: &SoakConfig, events: Vec<Captured>) -> Vec<Captured> {
    let counts = copies(events.len(), cfg.deliveries, cfg.seed);
    let mut deliveries: Vec<Captured> = events
        .iter()
        .zip(&counts)
        .flat_map(|(e, n)| std::iter::repeat_n(e.clone(), *n))
        .collect();
    for i in (1..deliveries.len()).rev() {
        let j = (draw(cfg.seed, "shuffle", i) * (i + 1) as f64) as usize;
        deliveries.swap(i, j.min(i));
    }
    deliveries
}

/// 3. Sent concurrently, with an SQS outage at ingest and bulk-fetch killed mid-batch.
async fn send_all(
    cfg: &SoakConfig,
    stack: &Arc<DevStack>,
    api: &JobsApi,
    deliveries: Vec<Captured>,
    report: &mut Report,
) -> Result<(), String> {
    let deliveries = Arc::new(deliveries);
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..cfg.concurrency {
        let (deliveries, next, accepted, unavailable, refused) = (
            Arc::clone(&deliveries),
            Arc::clone(&next),
            Arc::clone(&accepted),
            Arc::clone(&unavailable),
            Arc::clone(&refused),
        );
        let http = api.http.clone();
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(d) = deliveries.get(i) else { break };
                let (ok, retries, no) = send(&http, d).await;
                unavailable.fetch_add(retries, Ordering::Relaxed);
                if ok {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                if no {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let total = deliveries.len();
    let faults = {
        let stack = Arc::clone(stack);
        let next = Arc::clone(&next);
        let (outage, kill) = (cfg.sqs_outage, cfg.kill_bulk_fetch);
        tokio::spawn(async move {
            let mut restarts = 0;
            while next.load(Ordering::Relaxed) < total / 5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if let Some(switch) = &stack.ingest_aws {
                switch.set(false);
                tokio::time::sleep(outage).await;
                switch.set(true);
            }
            while kill && next.load(Ordering::Relaxed) < total / 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if kill {
                // Mid-apply: wait until it holds a batch.
                let until = Instant::now() + Duration::from_secs(60);
                while stack.in_flight("bulk-fetch").await == 0 && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if stack.restart("bulk-fetch").await.is_ok() {
                    restarts += 1;
                }
            }
            restarts
        })
    };
    for s in senders {
        s.await.map_err(|e| e.to_string())?;
    }
    report.bulk_fetch_restarts = faults.await.map_err(|e| e.to_string())?;
    report.accepted = accepted.load(Ordering::Relaxed);
    report.unavailable = unavailable.load(Ordering::Relaxed);
    report.refused = refused.load(Ordering::Relaxed);
    Ok(())
}

/// 4. Every job ends (or the settle timeout passes), and the queue drains.
async fn settle(
    cfg: &SoakConfig,
    stack: &DevStack,
    api: &JobsApi,
    jobs: &[SoakJob],
) -> Result<(), String> {
    let deadline = Instant::now() + cfg.settle_timeout;
    let mut states = BTreeMap::new();
    for (id, _, _) in jobs {
        loop {
            let v = api.get(&format!("/jobs/{id}")).await?;
            let open = matches!(v["status"].as_str(), Some("pending" | "running"));
            if !open || Instant::now() > deadline {
                states.insert(id.clone(), v);
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    // Deliveries still queued (duplicates, polls) would still move counters: let them drain.
    let drain = Instant::now() + Duration::from_secs(120);
    while stack.queue_depth("WebhookQueue").await > 0 && Instant::now() < drain {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// Checks one job against the sandbox's decisions: every contact's outcome, each once, and the
/// job's figures exact.
async fn check_job(
    api: &JobsApi,
    sandbox: &Sandbox,
    id: &str,
    contacts: usize,
    report: &mut Report,
) -> Result<(), String> {
    let v = api.get(&format!("/jobs/{id}")).await?;
    let rows = api.results(id, 1000).await?;
    let expected: BTreeMap<u64, bool> = sandbox.outcomes_of(id).into_iter().collect();
    let mut seen = BTreeMap::new();
    let (mut found, mut not_found, mut failed) = (0i64, 0i64, 0i64);
    for r in &rows {
        let index = r["index"].as_u64().unwrap_or(u64::MAX);
        *seen.entry(index).or_insert(0) += 1;
        match r["outcome"].as_str() {
            Some("found" | "valid") => found += 1,
            Some("not_found" | "invalid") => not_found += 1,
            _ => failed += 1,
        }
        let hit = matches!(r["outcome"].as_str(), Some("found" | "valid"));
        let miss = matches!(r["outcome"].as_str(), Some("not_found" | "invalid"));
        let right = match expected.get(&index) {
            Some(true) => hit,
            Some(false) => miss,
            None => false,
        };
        if !right {
            report.lost += 1;
            report.problems.push(format!(
                "{id} #{index}: outcome {} (provider: {:?})",
                r["outcome"],
                expected.get(&index)
            ));
        }
    }
    let missing = (0..contacts as u64)
        .filter(|i| !seen.contains_key(i))
        .count();
    report.lost += missing;
    if missing > 0 {
        report
            .problems
            .push(format!("{id}: {missing} contacts without a result"));
    }
    let twice_rows: usize = seen.values().map(|n| n - 1).sum();
    let n = |k: &str| v[k].as_i64().unwrap_or(-1);
    let over = (n("found") - found).max(0)
        + (n("not_found") - not_found).max(0)
        + (n("failed") - failed).max(0);
    report.applied_twice += twice_rows + over as usize;
    let exact = n("found") == found
        && n("not_found") == not_found
        && n("failed") == failed
        && n("done") == contacts as i64
        && v["status"] == "completed";
    if exact {
        report.exact_jobs += 1;
    } else {
        report.problems.push(format!(
            "{id}: status {} done {} found {}/{found} not_found {}/{not_found} failed {}/{failed}",
            v["status"],
            n("done"),
            n("found"),
            n("not_found"),
            n("failed")
        ));
    }
    Ok(())
}

/// The messages in both dead-letter queues, by reason (`reason` attribute of a parked delivery;
/// "max receives" for one SQS moved there).
async fn dead_letters(stack: &DevStack) -> BTreeMap<String, usize> {
    let sqs = relay_shared::aws::sqs(&stack.sdk);
    let mut out = BTreeMap::new();
    for queue in ["WebhookDeadLetterQueue", "SubmitDeadLetterQueue"] {
        let url = stack.res.queue_url(queue);
        loop {
            let got = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(600)
                .message_attribute_names("All")
                .send()
                .await;
            let messages = got.ok().and_then(|g| g.messages).unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let reason = m
                    .message_attributes
                    .as_ref()
                    .and_then(|a| a.get("reason"))
                    .and_then(|r| r.string_value.clone())
                    .unwrap_or_else(|| "max receives".into());
                *out.entry(format!("{queue}: {reason}")).or_insert(0) += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_one_to_five_and_sum_to_the_target() {
        let c = copies(3333, 10_000, 7);
        assert_eq!(c.iter().sum::<usize>(), 10_000);
        assert!(c.iter().all(|n| (1..=5).contains(n)));
        assert!(c.contains(&1) && c.contains(&5));
    }

    #[test]
    fn the_full_plan_is_fifty_jobs_of_both_providers_near_ten_thousand_deliveries() {
        let jobs = plan_jobs(&SoakConfig::full());
        assert_eq!(jobs.len(), 50);
        let fe: usize = jobs
            .iter()
            .filter(|j| j.body["provider"] == "fullenrich")
            .map(|j| j.contacts + j.contacts.div_ceil(100))
            .sum();
        let enrow = jobs
            .iter()
            .filter(|j| j.body["provider"] == "enrow")
            .count();
        let events = fe + enrow;
        assert!((2000..=3400).contains(&events), "{events} events");
        assert!(events * 5 >= 10_000);
    }
}
