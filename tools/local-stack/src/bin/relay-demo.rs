//! `make demo`: starts the dev stack, runs a FullEnrich enrichment of fixtures/demo/contacts.csv
//! and each Enrow operation (single and bulk) through the jobs API, shows progress, prints the
//! results and a summary, stops everything, and exits non-zero with the reason when something
//! did not arrive.

use std::time::{Duration, Instant};

use relay_local_stack::api::JobsApi;
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
    println!(
        "starting the local stack (moto, provider sandbox, 5 functions under cargo lambda watch, SQS pollers, sweeper); {:.0} % of webhooks dropped, polled back after {} s…",
        opts.sandbox.drop_webhooks * 100.0,
        opts.poll_after_seconds
    );
    let stack = DevStack::start(opts).await?;
    let demo = JobsApi::of(&stack);
    let people = contacts_csv();
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
    let jobs = [
        (
            "FullEnrich enrich (CSV)",
            json!({"provider": "fullenrich", "operation": "enrich", "name": "demo leads", "contacts": fe}),
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
    ];
    let started = Instant::now();
    let mut ids = Vec::new();
    for (i, (label, body)) in jobs.iter().enumerate() {
        let v = demo
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

    let deadline = Instant::now() + Duration::from_secs(240);
    let states = loop {
        let mut states = Vec::new();
        for id in &ids {
            states.push(
                demo.call(reqwest::Method::GET, &format!("/jobs/{id}"), None, None)
                    .await?,
            );
        }
        let finished = states
            .iter()
            .filter(|s| {
                matches!(
                    s["status"].as_str(),
                    Some("completed" | "partially_failed" | "failed" | "canceled")
                )
            })
            .count();
        let done: u64 = states.iter().filter_map(|s| s["done"].as_u64()).sum();
        let total: u64 = states.iter().filter_map(|s| s["contacts"].as_u64()).sum();
        let dups: u64 = states.iter().filter_map(|s| s["duplicates"].as_u64()).sum();
        print!(
            "\r  {:>5.1}s  jobs finished {finished}/{}  contacts done {done}/{total}  duplicate deliveries dropped {dups}   ",
            started.elapsed().as_secs_f64(),
            ids.len()
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        if finished == ids.len() {
            println!();
            break states;
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
    };

    println!("\nresults (first 3 of each job):");
    println!(
        "  {:<27} {:>5}  {:<10} {:<10} email / phone",
        "job", "index", "crm_id", "outcome"
    );
    let mut problems = Vec::new();
    for ((label, _), (id, state)) in jobs.iter().zip(ids.iter().zip(&states)) {
        let all = demo.results(id, 100).await?;
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

    println!("\nsummary:");
    println!(
        "  {:<27} {:>8} {:>6} {:>9} {:>6} {:>10} {:>9}",
        "job", "contacts", "found", "not found", "failed", "duplicates", "time (s)"
    );
    for ((label, _), s) in jobs.iter().zip(&states) {
        let secs = (s["updated_at"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(s["created_at"].as_u64().unwrap_or(0))) as f64
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
    let dlq = stack.queue_depth("WebhookDeadLetterQueue").await;
    let sandbox = stack.sandbox.as_ref().map(|s| s.counters());
    if let Some(c) = sandbox {
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
    if dlq > 0 {
        problems.push(format!("{dlq} deliveries in the webhook DLQ"));
    }
    drop(stack);
    if problems.is_empty() {
        println!(
            "\ndemo ok: every contact accounted for, lost webhooks polled back, duplicates dropped, nothing in the DLQ ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        println!("{TRY_NEXT}");
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
