//! Provider behaviours the documents allow, end to end on the dev stack with the sandbox playing
//! them: a batch canceled part-way, `enrich_fields` shaping the records, Enrow refusing a plain
//! `http://` webhook, and the providers' own rate limits answering 429.

use std::sync::atomic::Ordering;
use std::time::Duration;

use relay_local_stack::dev::DevStack;
use serde_json::{Value, json};

use crate::e2e::{Client, fe_contacts, options};

#[tokio::test]
async fn a_canceled_batch_keeps_what_finished_and_phones_come_when_asked() {
    let mut opts = options();
    opts.sandbox.cancel_rate = 1.0;
    let stack = DevStack::start(opts).await.expect("dev stack");
    let c = Client::of(&stack);
    let job = c
        .post_job(json!({"provider": "fullenrich", "operation": "enrich",
                         "options": {"enrich_fields": ["contact.work_emails", "contact.phones"]},
                         "contacts": fe_contacts(10)}))
        .await;
    let state = c.wait_done(&job, Duration::from_secs(120)).await;
    // Canceled at the provider: the job shows `canceled`, as one the client canceled does.
    assert_eq!(state["status"], "canceled", "{state}");
    assert_eq!(state["error"]["code"], "canceled", "{state}");
    assert_eq!(state["done"], 10);
    assert_eq!(state["failed"], 5, "{state}");
    let results = c.results(&job).await;
    // The sandbox cancels the second half of the batch: those never finished.
    for r in &results[5..] {
        assert_eq!(r["outcome"], "failed", "{r}");
        assert_eq!(r["reason"], "canceled", "{r}");
    }
    let finished = &results[..5];
    assert!(
        finished.iter().all(|r| r["outcome"] != "failed"),
        "{results:?}"
    );
    let found: Vec<&Value> = finished
        .iter()
        .filter(|r| r["outcome"] == "found")
        .collect();
    assert!(!found.is_empty(), "{results:?}");
    for r in found {
        assert!(
            r["phone"].as_str().is_some_and(|p| p.starts_with("+1 555")),
            "{r}"
        );
        assert!(r["email"].as_str().is_some(), "{r}");
    }
}

#[tokio::test]
async fn enrow_refuses_a_plain_http_webhook_and_the_job_says_why() {
    let mut opts = options();
    opts.sandbox.http_loopback_webhooks = false;
    let stack = DevStack::start(opts).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().unwrap();
    let c = Client::of(&stack);
    let finders: Vec<Value> = (0..3).map(|i| json!({"fullname": format!("Ada Example{i}"), "company_domain": "example.com", "custom": {"crm_id": format!("c{i}")}})).collect();
    let job = c
        .post_job(json!({"provider": "enrow", "operation": "email_find", "contacts": finders}))
        .await;
    let state = c.wait_done(&job, Duration::from_secs(60)).await;
    assert_eq!(state["status"], "failed", "{state}");
    assert_eq!(state["error"]["code"], "provider_rejected", "{state}");
    assert!(
        state["error"]["message"]
            .as_str()
            .unwrap()
            .contains("https"),
        "the provider's reason is shown: {state}"
    );
    assert_eq!(state["failed"], 3);
    assert!(
        sandbox
            .starts()
            .iter()
            .all(|s| !s.stored && s.status == 400)
    );
    assert_eq!(sandbox.counters().refused.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn enrow_rate_limit_429s_are_waited_out_and_nothing_starts_twice() {
    let mut opts = options();
    // One start a second per endpoint at the provider, eight a second from the relay.
    opts.sandbox.enrow_per_second = Some(1);
    let stack = DevStack::start(opts).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().unwrap();
    let c = Client::of(&stack);
    let mut jobs = Vec::new();
    for i in 0..6 {
        let contact =
            json!({"fullname": format!("Grace Hopper{i}"), "company_domain": "example.com"});
        jobs.push(
            c.post_job(
                json!({"provider": "enrow", "operation": "email_find", "contacts": [contact]}),
            )
            .await,
        );
    }
    for job in &jobs {
        let state = c.wait_done(job, Duration::from_secs(90)).await;
        assert_eq!(state["status"], "completed", "{state}");
        let stored = sandbox
            .starts()
            .iter()
            .filter(|s| s.job_id.as_deref() == Some(job.as_str()) && s.stored)
            .count();
        assert_eq!(stored, 1, "one start stored for {job}");
    }
    assert!(
        sandbox.counters().rate_limited.load(Ordering::Relaxed) > 0,
        "the sandbox's limit was reached"
    );
}
