//! `make demo`: starts the dev stack, runs a FullEnrich enrichment of fixtures/demo/contacts.csv,
//! a two-step waterfall of it (Enrow, then FullEnrich, FullEnrich's finds verified) under a budget,
//! and each Enrow operation (single and bulk) through the jobs API, shows progress, prints the
//! results and a summary, stops everything, and exits non-zero with the reason when something
//! did not arrive.

use std::time::{Duration, Instant};

use relay_local_stack::api::{JobsApi, finished};
use relay_local_stack::dev::{DevOptions, DevStack};
use relay_local_stack::repo_root;
use serde_json::{Value, json};

fn contacts_csv() -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string(repo_root().join("fixtures/demo/contacts.csv"))
        .expect("fixtures/demo/contacts.csv");
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.len() == 4).then(|| (f[0].into(), f[1].into(), f[2].into(), f[3].into()))
        })
        .collect()
}

#[tokio::main]
async fn main() {
    match run().await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("\ndemo failed: {e}");
            std::process::exit(1);
        }
    }
}

/// What the demo ends with: the CLI's first hour on a CRM export (docs/cli.md).
const TRY_NEXT: &str = "
next, from the command line (docs/cli.md): start the stack with `make dev` in one terminal, set
the RELAY_URL and RELAY_API_TOKEN it prints, then
  relay submit --provider fullenrich --operation enrich fixtures/crm/contacts.csv --dry-run
  relay submit --provider fullenrich --operation enrich fixtures/crm/contacts.csv \\
    --skip-invalid --wait --out contacts.results.csv
  relay jobs
  relay status job_…";

async fn run() -> Result<(), String> {
    let opts = options();
    println!(
        "starting the local stack (moto, provider sandbox, 5 functions under cargo lambda watch, SQS pollers, sweeper); {:.0} % of webhooks dropped, polled back after {} s…",
        opts.sandbox.drop_webhooks * 100.0,
        opts.poll_after_seconds
    );
    let stack = DevStack::start(opts).await?;
    let demo = Demo::submit(JobsApi::of(&stack), jobs(&contacts_csv())).await?;
    let states = demo.wait().await?;
    let mut problems = demo.results(&states).await?;
    demo.summary(&states);
    demo.waterfall_report(&states);
    problems.extend(sandbox_report(&stack).await);
    drop(stack);
    if problems.is_empty() {
        println!(
            "\ndemo ok: every contact accounted for, lost webhooks polled back, duplicates dropped, nothing in the DLQ ({:.1} s)",
            demo.started.elapsed().as_secs_f64()
        );
        println!("{TRY_NEXT}");
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The dev stack with a sandbox that answers slowly, sends a quarter of its webhooks twice and
/// drops a tenth.
fn options() -> DevOptions {
    let mut opts = DevOptions::from_env();
    opts.log_dir = relay_local_stack::repo_root().join(".local/demo");
    // The demo reads no edit: watch runs the functions without reloading them.
    opts.hot_reload = false;
    opts.sandbox.delay = Duration::from_millis(800);
    opts.sandbox.duplicate_rate = 0.25;
    opts.sandbox.retry_interval = Duration::from_secs(1);
    // A tenth of the webhooks never come (unless SANDBOX_DROP_WEBHOOKS says otherwise): the
    // sweeper polls those chunks back, 5 s after their start here (RELAY_POLL_AFTER_SECONDS).
    if std::env::var("SANDBOX_DROP_WEBHOOKS").is_err() {
        opts.sandbox.drop_webhooks = 0.1;
    }
    if std::env::var("RELAY_POLL_AFTER_SECONDS").is_err() {
        opts.poll_after_seconds = 5;
    }
    opts
}

/// The label of the demo's waterfall: Enrow's email finder, then FullEnrich for whoever it did
/// not find, FullEnrich's finds verified by Enrow, under a budget of 600 credits.
const WATERFALL: &str = "Waterfall enrow→fullenrich";

/// The demo's jobs, by label: a FullEnrich enrichment of every contact, and each Enrow
/// operation on one contact and on 25.
fn jobs(people: &[(String, String, String, String)]) -> Vec<(&'static str, Value)> {
    let take = |n: usize| people.iter().take(n);
    let fe: Vec<Value> = people.iter().map(|(f, l, d, id)| json!({"first_name": f, "last_name": l, "domain": d, "custom": {"crm_id": id}})).collect();
    let finders = |n| {
        take(n).map(|(f, l, d, id)| json!({"fullname": format!("{f} {l}"), "company_domain": d, "custom": {"crm_id": id}})).collect::<Vec<_>>()
    };
    let emails = |n| {
        take(n).map(|(f, l, d, id)| json!({"email": format!("{}.{}@{d}", f.to_lowercase(), l.to_lowercase()), "custom": {"crm_id": id}})).collect::<Vec<_>>()
    };
    let phones = |n| {
        take(n).map(|(f, l, _, id)| json!({"linkedin_url": format!("https://www.linkedin.com/in/{}-{}", f.to_lowercase(), l.to_lowercase()), "custom": {"crm_id": id}})).collect::<Vec<_>>()
    };
    vec![
        (
            "FullEnrich enrich (CSV)",
            json!({"provider": "fullenrich", "operation": "enrich", "name": "demo leads", "contacts": fe}),
        ),
        (
            WATERFALL,
            json!({"name": "demo waterfall", "max_credits": 600, "contacts": fe,
                "steps": [
                    {"provider": "enrow", "operation": "email_find"},
                    {"provider": "fullenrich", "operation": "enrich",
                     "options": {"enrich_fields": ["contact.work_emails"]}}],
                "verify": {"provider": "enrow", "operation": "email_verify",
                           "when": "found_by_fullenrich"}}),
        ),
        (
            "Enrow email_find single",
            json!({"provider": "enrow", "operation": "email_find", "contacts": finders(1)}),
        ),
        (
            "Enrow email_find bulk",
            json!({"provider": "enrow", "operation": "email_find", "contacts": finders(25)}),
        ),
        (
            "Enrow email_verify single",
            json!({"provider": "enrow", "operation": "email_verify", "contacts": emails(1)}),
        ),
        (
            "Enrow email_verify bulk",
            json!({"provider": "enrow", "operation": "email_verify", "contacts": emails(25)}),
        ),
        (
            "Enrow phone_find single",
            json!({"provider": "enrow", "operation": "phone_find", "contacts": phones(1)}),
        ),
        (
            "Enrow phone_find bulk",
            json!({"provider": "enrow", "operation": "phone_find", "contacts": phones(25)}),
        ),
    ]
}

/// The demo's jobs as submitted: (label, body), their ids in the same order, and when the first
/// was submitted.
struct Demo {
    api: JobsApi,
    jobs: Vec<(&'static str, Value)>,
    ids: Vec<String>,
    started: Instant,
}

impl Demo {
    /// Submits every job, each under its own idempotency key.
    async fn submit(api: JobsApi, jobs: Vec<(&'static str, Value)>) -> Result<Demo, String> {
        let started = Instant::now();
        let mut ids = Vec::new();
        for (i, (label, body)) in jobs.iter().enumerate() {
            let v = api
                .call(
                    reqwest::Method::POST,
                    "/jobs",
                    Some(body),
                    Some(&format!("demo-{}-{i}", std::process::id())),
                )
                .await?;
            println!(
                "  submitted {label:<27} {} contacts in {} chunk(s) → {}",
                v["contacts"],
                v["chunks"],
                v["job_id"].as_str().unwrap_or("?")
            );
            ids.push(v["job_id"].as_str().unwrap_or_default().to_string());
        }
        Ok(Demo {
            api,
            jobs,
            ids,
            started,
        })
    }

    /// Every job's state, on one progress line redrawn every 0.7 s, until all have finished;
    /// `Err` naming the jobs still short after 240 s.
    async fn wait(&self) -> Result<Vec<Value>, String> {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let mut states = Vec::new();
            for id in &self.ids {
                states.push(self.api.job(id).await?);
            }
            let done = states.iter().filter(|s| finished(s)).count();
            self.progress(&states, done);
            if done == self.ids.len() {
                println!();
                return Ok(states);
            }
            if Instant::now() > deadline {
                println!();
                let missing: Vec<String> = states
                    .iter()
                    .filter(|s| s["done"] != s["contacts"])
                    .map(|s| format!("{} ({}/{})", s["job_id"], s["done"], s["contacts"]))
                    .collect();
                return Err(format!(
                    "results did not all arrive within 240 s: {}",
                    missing.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    }

    fn progress(&self, states: &[Value], finished: usize) {
        let done: u64 = states.iter().filter_map(|s| s["done"].as_u64()).sum();
        let total: u64 = states.iter().filter_map(|s| s["contacts"].as_u64()).sum();
        let dups: u64 = states.iter().filter_map(|s| s["duplicates"].as_u64()).sum();
        print!(
            "\r  {:>5.1}s  jobs finished {finished}/{}  contacts done {done}/{total}  duplicate deliveries dropped {dups}   ",
            self.started.elapsed().as_secs_f64(),
            self.ids.len()
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }

    /// Prints the first 3 results of each job; the jobs short of a result per contact, or not
    /// completed.
    async fn results(&self, states: &[Value]) -> Result<Vec<String>, String> {
        println!("\nresults (first 3 of each job):");
        println!(
            "  {:<27} {:>5}  {:<10} {:<10} email / phone",
            "job", "index", "crm_id", "outcome"
        );
        let mut problems = Vec::new();
        for ((label, _), (id, state)) in self.jobs.iter().zip(self.ids.iter().zip(states)) {
            let all = self.api.results(id, 100).await?;
            for r in all.iter().take(3) {
                let value = r["email"].as_str().or(r["phone"].as_str()).unwrap_or("—");
                println!(
                    "  {:<27} {:>5}  {:<10} {:<10} {}",
                    label,
                    r["index"].as_u64().unwrap_or(0),
                    r["custom"]["crm_id"].as_str().unwrap_or("?"),
                    r["outcome"].as_str().unwrap_or("?"),
                    value
                );
            }
            if all.len() as u64 != state["contacts"].as_u64().unwrap_or(0) {
                problems.push(format!(
                    "{label}: {} results for {} contacts",
                    all.len(),
                    state["contacts"]
                ));
            }
            if state["status"] != "completed" {
                problems.push(format!("{label}: ended {}", state["status"]));
            }
        }
        Ok(problems)
    }

    /// The waterfall's steps: how many each found of the contacts it was given, what it cost,
    /// and the whole waterfall's found rate and credits against its budget.
    fn waterfall_report(&self, states: &[Value]) {
        let Some(w) = self
            .jobs
            .iter()
            .zip(states)
            .find(|((label, _), _)| *label == WATERFALL)
            .map(|(_, s)| s)
        else {
            return;
        };
        println!("\nwaterfall (each step takes whoever the steps before did not find):");
        println!(
            "  {:<28} {:>8} {:>6} {:>9} {:>10} {:>8}",
            "step", "contacts", "found", "found %", "passed on", "credits"
        );
        for step in w["steps"].as_array().into_iter().flatten() {
            let n = |k: &str| step[k].as_u64().unwrap_or(0);
            let label = format!(
                "{} {} {}",
                step["kind"].as_str().unwrap_or("?"),
                step["provider"].as_str().unwrap_or("?"),
                step["operation"].as_str().unwrap_or("?")
            );
            // The verify step's "found" are the emails it found valid.
            let found = if step["kind"] == "verify" {
                format!("{} valid", n("found"))
            } else {
                n("found").to_string()
            };
            println!(
                "  {:<28} {:>8} {:>6} {:>8.1}% {:>10} {:>8}",
                label,
                n("contacts"),
                found,
                step["found_rate"].as_f64().unwrap_or(0.0) * 100.0,
                n("passed_on"),
                step["credits"]["spent"].as_f64().unwrap_or(0.0)
            );
        }
        let c = &w["credits"];
        println!(
            "  overall: {} of {} found ({:.1} %), {} credits spent of a {} budget ({} left)",
            w["found"],
            w["contacts"],
            w["found_rate"].as_f64().unwrap_or(0.0) * 100.0,
            c["spent"],
            c["budget"],
            c["left"]
        );
    }

    /// Each job's figures and how long it took.
    fn summary(&self, states: &[Value]) {
        println!("\nsummary:");
        println!(
            "  {:<27} {:>8} {:>6} {:>9} {:>6} {:>10} {:>9}",
            "job", "contacts", "found", "not found", "failed", "duplicates", "time (s)"
        );
        for ((label, _), s) in self.jobs.iter().zip(states) {
            let secs = (s["updated_at"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(s["created_at"].as_u64().unwrap_or(0)))
                as f64
                / 1000.0;
            let n = |k: &str| s[k].as_u64().unwrap_or(0);
            println!(
                "  {:<27} {:>8} {:>6} {:>9} {:>6} {:>10} {:>9.1}",
                label,
                n("contacts"),
                n("found"),
                n("not_found"),
                n("failed"),
                n("duplicates"),
                secs
            );
        }
    }
}

/// Prints what the sandbox did and the webhook DLQ's depth; a problem if the DLQ holds anything.
async fn sandbox_report(stack: &DevStack) -> Option<String> {
    let dlq = stack.queue_depth("WebhookDeadLetterQueue").await;
    if let Some(c) = stack.sandbox.as_ref().map(|s| s.counters()) {
        use std::sync::atomic::Ordering::Relaxed;
        println!(
            "\n  sandbox: {} starts, {} webhooks sent, {} dropped on purpose (polled back: {} result GETs) ({} duplicates on purpose, {} retries); webhook DLQ: {dlq} messages",
            c.starts.load(Relaxed),
            c.webhooks_sent.load(Relaxed),
            c.webhooks_dropped.load(Relaxed),
            c.gets.load(Relaxed),
            c.duplicates_sent.load(Relaxed),
            c.webhooks_retried.load(Relaxed)
        );
    }
    (dlq > 0).then(|| format!("{dlq} deliveries in the webhook DLQ"))
}
