//! Enrow's dashboard (global) webhook end to end on the dev stack (moto, the sandbox, the
//! functions, the router): the sandbox's dashboard webhook set to the stack's global URL, as a
//! user sets it on Enrow's dashboard. A job whose own webhooks are all lost gets its results
//! through the global one; the same events on both URLs apply once; an event of a search the
//! relay did not start becomes an orphan, listed by `GET /orphans` and `relay orphans`.

use std::time::{Duration, Instant};

use relay_local_stack::dev::DevStack;
use serde_json::{Value, json};

use crate::e2e::{Client, options};

fn finders(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"fullname": format!("Grace Hopper{tag}{i}"), "company_domain": "example.com",
                   "custom": {"crm_id": format!("{tag}{i}")}})
        })
        .collect()
}

#[tokio::test]
async fn the_global_webhook_is_a_safety_net_applied_once_and_unknown_searches_are_orphans() {
    let stack = DevStack::start(options()).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().unwrap();
    let c = Client::of(&stack);
    let started = Instant::now();

    // Every per-request webhook lost; each event also goes to the dashboard webhook (a sandbox
    // fault, `enrow_global_copy`: Enrow's documented rule is that `settings.webhook` overrides
    // the dashboard default, providers.md §3).
    sandbox.set_enrow_global_webhook(Some(stack.global_webhook_url.clone()), true);
    sandbox.set_drop_webhooks(1.0);
    let lost = c
        .post_job(
            json!({"provider": "enrow", "operation": "email_find", "contacts": finders(3, "l")}),
        )
        .await;
    let state = c.wait_done(&lost, Duration::from_secs(60)).await;
    assert_eq!(state["status"], "completed", "{state}");
    assert_eq!(state["done"], 3);
    let dropped = sandbox
        .counters()
        .webhooks_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped >= 1, "the job's own webhooks were lost ({dropped})");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "through the global webhook, not a poll (POLL_AFTER_SECONDS is 600)"
    );

    // Both URLs get every event: each applies once, its second copy counted a duplicate.
    sandbox.set_drop_webhooks(0.0);
    let both = c
        .post_job(
            json!({"provider": "enrow", "operation": "email_find", "contacts": finders(40, "b")}),
        )
        .await;
    let state = c.wait_done(&both, Duration::from_secs(60)).await;
    assert_eq!(state["status"], "completed", "{state}");
    let chunks = state["chunks"].as_array().unwrap().len() as u64;
    // The copy on the second URL may still be on its way when the job settles.
    let deadline = Instant::now() + Duration::from_secs(20);
    let state = loop {
        let v = c.get(&format!("/jobs/{both}")).await;
        if v["duplicates"].as_u64() >= Some(chunks) || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(state["done"], 40, "{state}");
    assert_eq!(
        state["duplicates"].as_u64(),
        Some(chunks),
        "one event per chunk on two URLs: one applied, one duplicate ({state})"
    );
    let results = c.results(&both).await;
    assert_eq!(results.len(), 40);

    // A search started at Enrow by another tool (no webhook of its own): the dashboard
    // webhook gets its event, and the relay keeps it as an orphan.
    let resp = reqwest::Client::new()
        .post(format!("{}/email/find/single", stack.enrow_url))
        .header("x-api-key", "sandbox-enrow-key")
        .json(&json!({"fullname": "Dwight Schrute", "company_domain": "dundermifflin.com"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let orphans = loop {
        let page = c.get("/orphans?limit=10").await;
        let orphans = page["orphans"].as_array().cloned().unwrap_or_default();
        if !orphans.is_empty() || Instant::now() > deadline {
            break orphans;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        orphans.len(),
        1,
        "only the search the relay did not start: {orphans:?}"
    );
    assert_eq!(orphans[0]["provider_id"], id.as_str());
    assert_eq!(orphans[0]["event"], "single_search_finished");
    let shown = orphans[0].to_string().to_ascii_lowercase();
    assert!(
        !shown.contains("dwight") && !shown.contains("dundermifflin"),
        "no contact data kept: {shown}"
    );
    assert_eq!(
        stack.queue_depth("WebhookDeadLetterQueue").await,
        0,
        "nothing parked"
    );

    let run = crate::cli::relay(&stack, &stack.api_token, &["orphans"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains(&id), "{}", run.stdout);
    assert!(
        run.stdout.contains("single_search_finished"),
        "{}",
        run.stdout
    );
}
