//! A start is made at most once (issue: submission that never pays twice), end to end on the dev
//! stack: the provider sandbox plays the start behaviours its documents allow, and each test
//! counts the start requests every chunk got.

use std::collections::BTreeMap;
use std::time::Duration;

use relay_local_stack::dev::DevStack;
use relay_local_stack::sandbox::{Sandbox, StartFault};
use serde_json::{Value, json};

use crate::e2e::{Client, fe_contacts, options};

/// A 2 s provider timeout (the sandbox's slow answer takes 4 s); FullEnrich requests at the
/// default 55 a minute, inside the sandbox's 60.
fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [("PROVIDER_TIMEOUT_SECONDS", "2")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// How many start requests reached the sandbox for the chunk holding contact `rid`, and how
/// many of them the sandbox stored (it will run them and bill them).
fn starts(sandbox: &Sandbox, job: &str, rid: u64) -> (usize, usize) {
    let s = sandbox.starts_of(job, rid);
    (s.len(), s.iter().filter(|s| s.stored).count())
}

#[tokio::test]
async fn lost_start_answers_are_never_sent_again_and_their_webhooks_are_adopted() {
    let mut opts = options();
    opts.extra_env = env(&[]);
    opts.sandbox.start_faults = vec![
        // The provider takes the start and answers after the client gave up (20 s on AWS).
        StartFault::AcceptThenHang(Duration::from_secs(4)),
        // The provider stored the job, then failed the request.
        StartFault::StoreThen5xx,
        // A 2xx without an id.
        StartFault::AcceptWithoutId,
        // Not started: rate limited, try again in 1 s.
        StartFault::RateLimited { retry_after: 1 },
    ];
    let stack = DevStack::start(opts).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().unwrap();
    let c = Client::of(&stack);
    // Four chunks: each of the four faults hits one of them (in start order).
    let job = c
        .post_job(
            json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe_contacts(400)}),
        )
        .await;
    let state = c.wait_done(&job, Duration::from_secs(180)).await;
    assert_eq!(state["status"], "completed", "{state}");
    assert_eq!(state["done"], 400);
    assert_eq!(
        state["found"].as_u64().unwrap() + state["not_found"].as_u64().unwrap(),
        400
    );
    let mut requests = 0;
    for chunk in 0..4u64 {
        let (sent, stored) = starts(&sandbox, &job, chunk * 100);
        assert_eq!(stored, 1, "chunk {chunk}: the provider ran it exactly once");
        requests += sent;
    }
    // Four starts stored, one 429 before one of them: five requests in all.
    assert_eq!(requests, 5, "{:?}", sandbox.starts());
    // Every chunk ends with the provider id its webhooks carried, adopted or answered.
    for chunk in state["chunks"].as_array().unwrap() {
        assert_eq!(chunk["status"], "completed", "{chunk}");
        assert!(chunk["provider_id"].as_str().is_some(), "{chunk}");
    }
    let results = c.results(&job).await;
    assert_eq!(results.len(), 400);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"].as_u64(), Some(i as u64));
        assert_eq!(r["custom"]["crm_id"], format!("c{i}"));
    }
    assert_eq!(stack.queue_depth("WebhookDeadLetterQueue").await, 0);
}

#[tokio::test]
async fn enrow_starts_without_an_answer_are_adopted_single_and_bulk() {
    let mut opts = options();
    opts.extra_env = env(&[]);
    opts.sandbox.start_faults = vec![StartFault::StoreThen5xx, StartFault::AcceptWithoutId];
    let stack = DevStack::start(opts).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().unwrap();
    let c = Client::of(&stack);
    let single = c
        .post_job(json!({"provider": "enrow", "operation": "email_verify", "contacts": [{"email": "ada@example.com", "custom": {"crm_id": "c0"}}]}))
        .await;
    // Submitted one after the other, so the faults go to the single start, then the bulk one.
    c.wait_started(&single).await;
    let finders: Vec<Value> = (0..5).map(|i| json!({"fullname": format!("Ada Example{i}"), "company_domain": "example.com", "custom": {"crm_id": format!("c{i}")}})).collect();
    let bulk = c
        .post_job(json!({"provider": "enrow", "operation": "email_find", "contacts": finders}))
        .await;
    for (job, n) in [(&single, 1), (&bulk, 5)] {
        let state = c.wait_done(job, Duration::from_secs(60)).await;
        assert_eq!(state["status"], "completed", "{state}");
        assert_eq!(state["done"], n);
        assert_eq!(starts(&sandbox, job, 0), (1, 1), "one start, stored once");
        let results = c.results(job).await;
        assert_eq!(results.len(), n as usize);
        assert!(
            results.iter().all(|r| r["outcome"] != "failed"),
            "{results:?}"
        );
    }
}

#[tokio::test]
async fn one_contact_the_provider_refuses_fails_alone() {
    let mut opts = options();
    let dir = opts.log_dir.clone();
    opts.extra_env = env(&[]);
    opts.sandbox.reject_marker = Some("refused-by-provider".into());
    let stack = DevStack::start(opts).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().unwrap();
    let c = Client::of(&stack);
    let mut contacts = fe_contacts(5);
    contacts[3] = json!({"linkedin_url": "https://www.linkedin.com/in/refused-by-provider", "custom": {"crm_id": "c3"}});
    let job = c
        .post_job(json!({"provider": "fullenrich", "operation": "enrich", "contacts": contacts}))
        .await;
    let state = c.wait_done(&job, Duration::from_secs(120)).await;
    assert_eq!(state["status"], "partially_failed", "{state}");
    assert_eq!(state["done"], 5);
    assert_eq!(state["failed"], 1);
    for rid in [0, 1, 2, 4] {
        let (_, stored) = starts(&sandbox, &job, rid);
        assert_eq!(stored, 1, "contact {rid} is enriched once");
    }
    let (refused, stored) = starts(&sandbox, &job, 3);
    assert_eq!(stored, 0);
    // Halved down to it: 5 → 2 (contacts 3, 4) → 1 (contact 3).
    assert_eq!(refused, 3, "{:?}", sandbox.starts());
    let results = c.results(&job).await;
    assert_eq!(results[3]["outcome"], "failed");
    assert_eq!(results[3]["reason"], "rejected_by_provider");
    assert_eq!(results[3]["custom"], json!({"crm_id": "c3"}));
    for i in [0, 1, 2, 4] {
        assert_ne!(results[i]["outcome"], "failed", "{}", results[i]);
    }
    // The split chunk is shown as such, with its halves.
    assert!(
        state["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"] == "split"),
        "{state}"
    );
    // `relay retry --wait`: a new job of exactly the refused contact, with its custom; the
    // provider refuses it again, alone, and the results file has its one row.
    let out = dir.join("retry.results.csv");
    let r = crate::cli::relay(
        &stack,
        &stack.api_token,
        &["retry", &job, "--wait", "--out", out.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, Some(1), "partially failed again: {}", r.stderr);
    assert!(r.stderr.contains("retries 1 contact(s)"), "{}", r.stderr);
    let retried = r.stdout.trim().to_string();
    assert_ne!(retried, job.as_str());
    let state = c
        .wait_done(
            &relay_shared::JobId::new(retried.as_str()),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        (state["contacts"].as_u64(), state["retry_of"].as_str()),
        (Some(1), Some(job.as_str()))
    );
    let csv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(csv.lines().count(), 2, "a header and the one row: {csv}");
    assert!(csv.contains("rejected_by_provider"), "{csv}");
}

#[tokio::test]
async fn out_of_credits_mid_job_stops_the_chunks_not_started() {
    let mut opts = options();
    // 10 starts a minute: each chunk's batch webhook is in before the next start is due.
    opts.extra_env = env(&[("FULLENRICH_REQUESTS_PER_MINUTE", "10")]);
    // At submit, enough for the whole job's worst case (500): the credit check of `POST /jobs`
    // lets it in. Then, before its first start, enough for the first chunk's hits, not for the
    // second's: the account runs out mid-job (spent elsewhere meanwhile).
    opts.sandbox.fullenrich_credits = Some(500.0);
    // Batch webhooks only: each batch ends in well under the 6 s between two starts here (with
    // 100 contact_finished deliveries ahead of it, a loaded machine can take longer).
    opts.sandbox.contact_webhooks = false;
    let stack = DevStack::start(opts).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().unwrap();
    let c = Client::of(&stack);
    let job = c
        .post_job(
            json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe_contacts(500)}),
        )
        .await;
    // The first start waits for its queue message and its slot (the API's balance read took
    // one, 6 s apart here), and a hit is paid only as a batch runs: the job pays from this.
    sandbox.set_fullenrich_credits(Some(100.0));
    let state = c.wait_done(&job, Duration::from_secs(180)).await;
    assert_eq!(state["status"], "partially_failed", "{state}");
    assert_eq!(state["error"]["code"], "credits_insufficient", "{state}");
    let started: Vec<_> = sandbox
        .starts()
        .into_iter()
        .filter(|s| s.job_id.as_deref() == Some(job.as_str()))
        .collect();
    assert_eq!(started.len(), 2, "chunks 3 to 5 never started: {started:?}");
    let (done, found, not_found, failed) = (
        state["done"].as_u64().unwrap(),
        state["found"].as_u64().unwrap(),
        state["not_found"].as_u64().unwrap(),
        state["failed"].as_u64().unwrap(),
    );
    assert_eq!(done, 500);
    assert_eq!(found + not_found + failed, 500, "{state}");
    assert_eq!(found, 100, "every credit bought one hit");
    assert!(
        failed > 300,
        "the three unstarted chunks and the unenriched contacts: {state}"
    );
    let results = c.results(&job).await;
    assert_eq!(results.len(), 500);
    let reasons = |r: &Value| r["reason"].as_str().map(str::to_string);
    let failed_reasons: std::collections::BTreeSet<_> = results
        .iter()
        .filter(|r| r["outcome"] == "failed")
        .filter_map(reasons)
        .collect();
    assert_eq!(
        failed_reasons,
        ["credits_insufficient".to_string()].into_iter().collect(),
        "every failure says why"
    );
    assert_eq!(
        results.iter().filter(|r| r["outcome"] == "failed").count() as u64,
        failed
    );
}
