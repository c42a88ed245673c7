//! End to end, the way a user drives it: the dev stack (moto, provider sandbox, the five functions
//! under `cargo lambda watch`, the API router, the SQS pollers and the sweeper's schedule invoking
//! through watch), `POST /jobs`, the sandbox's webhooks, `GET /jobs/{id}/results`. Needs the
//! debug binaries (`make functions`, which `make test` runs first) and cargo-lambda in `.venv`.
//!
//! [`options`] starts the built binaries against watch's Runtime API (`Host::Binaries`: each
//! function with only its own environment, and the soak can kill one mid-batch); the tests marked
//! "on watch" let watch start the functions itself (`cargo run`), as `make dev` does.

use std::time::{Duration, Instant};

use relay_local_stack::dev::{DevOptions, DevStack, Host};
use relay_local_stack::provider_stub::ProviderStub;
use relay_shared::JobId;
use serde_json::{Value, json};

pub(crate) fn options() -> DevOptions {
    let mut o = DevOptions::from_env();
    o.port = 0;
    o.watch_port = 0;
    o.host = Host::Binaries;
    o.hot_reload = false;
    o.api_token = "e2e-token-0123456789abcdef".into();
    o.enrow_url = None;
    o.fullenrich_url = None;
    o.enrow_key = None;
    o.fullenrich_key = None;
    o.log_dir = relay_local_stack::repo_root()
        .join(format!(".local/e2e-{}", uuid::Uuid::new_v4().simple()));
    o.sandbox.delay = Duration::from_millis(300);
    o.sandbox.retry_interval = Duration::from_millis(500);
    o.retry_visibility_seconds = 2;
    o
}

pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    token: String,
}

impl Client {
    pub(crate) fn of(stack: &DevStack) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: stack.api_url.clone(),
            token: stack.api_token.clone(),
        }
    }

    pub(crate) async fn post_job(&self, body: Value) -> JobId {
        let resp = self
            .http
            .post(format!("{}/jobs", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let v: Value = resp.json().await.unwrap();
        JobId::new(v["job_id"].as_str().unwrap())
    }

    /// A GET of `path` that must succeed.
    async fn get_ok(&self, path: &str) -> reqwest::Response {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp
    }

    pub(crate) async fn get(&self, path: &str) -> Value {
        self.get_ok(path).await.json().await.unwrap()
    }

    pub(crate) async fn get_text(&self, path: &str) -> String {
        self.get_ok(path).await.text().await.unwrap()
    }

    pub(crate) async fn wait_done(&self, job: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.get(&format!("/jobs/{job}")).await;
            if matches!(
                v["status"].as_str(),
                Some("completed" | "partially_failed" | "failed" | "canceled")
            ) {
                return v;
            }
            assert!(Instant::now() < deadline, "job not done in time: {v}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Waits until every chunk of the job has left `pending`/`starting`.
    pub(crate) async fn wait_started(&self, job: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.get(&format!("/jobs/{job}")).await;
            let chunks = v["chunks"].as_array().cloned().unwrap_or_default();
            if !chunks.is_empty()
                && chunks
                    .iter()
                    .all(|c| !matches!(c["status"].as_str(), Some("pending" | "starting")))
            {
                return;
            }
            assert!(Instant::now() < deadline, "job not started in time: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) async fn results(&self, job: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self
                .get(&format!("/jobs/{job}/results?limit=7{cursor}"))
                .await;
            out.extend(page["results"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return out,
            }
        }
    }
}

pub(crate) fn fe_contacts(n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"first_name": format!("Ada{i}"), "last_name": "Example", "domain": "example.com", "custom": {"crm_id": format!("c{i}")}})).collect()
}

/// Every contact has exactly one result, in order, with its own custom.
fn assert_exact(results: &[Value], n: usize) {
    assert_eq!(results.len(), n);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"].as_u64(), Some(i as u64));
        assert_eq!(r["custom"]["crm_id"], format!("c{i}"));
        assert!(
            matches!(
                r["outcome"].as_str(),
                Some("found" | "not_found" | "valid" | "invalid")
            ),
            "{r}"
        );
    }
}

/// A FullEnrich and two Enrow jobs on watch, as under `make dev`.
#[tokio::test]
async fn duplicates_dropped_forgeries_refused_results_exact() {
    let mut opts = options();
    opts.host = Host::Watch;
    opts.sandbox.duplicate_rate = 0.5;
    let stack = DevStack::start(opts).await.expect("dev stack");
    let c = Client::of(&stack);
    let fe = c
        .post_job(
            json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe_contacts(120)}),
        )
        .await;
    let finders: Vec<Value> = (0..30).map(|i| json!({"fullname": format!("Ada Example{i}"), "company_domain": "example.com", "custom": {"crm_id": format!("c{i}")}})).collect();
    let enrow = c
        .post_job(json!({"provider": "enrow", "operation": "email_find", "contacts": finders}))
        .await;
    let single = c.post_job(json!({"provider": "enrow", "operation": "email_verify", "contacts": [{"email": "ada@example.com", "custom": {"crm_id": "c0"}}]})).await;

    // A forged delivery for the FullEnrich job: 401, and it changes nothing.
    let forged = json!({"id": "x", "status": "FINISHED", "data": [{"custom": {"rid": "0"}, "contact_info": {"most_probable_work_email": {"email": "evil@example.com", "status": "DELIVERABLE"}}}]});
    let resp = c
        .http
        .post(format!(
            "{}/webhooks/fullenrich/{fe}/batch/not-the-token",
            c.base
        ))
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let fe_state = c.wait_done(&fe, Duration::from_secs(180)).await;
    let enrow_state = c.wait_done(&enrow, Duration::from_secs(60)).await;
    let single_state = c.wait_done(&single, Duration::from_secs(60)).await;
    for s in [&fe_state, &enrow_state, &single_state] {
        assert_eq!(s["status"], "completed", "{s}");
        assert_eq!(s["done"], s["contacts"]);
        assert_eq!(
            s["found"].as_u64().unwrap() + s["not_found"].as_u64().unwrap(),
            s["contacts"].as_u64().unwrap()
        );
    }
    let fe_results = c.results(&fe).await;
    assert_exact(&fe_results, 120);
    assert!(
        fe_results.iter().all(|r| r["email"] != "evil@example.com"),
        "the forgery changed nothing"
    );
    assert_exact(&c.results(&enrow).await, 30);
    assert_exact(&c.results(&single).await, 1);
    let duplicates: u64 = [&fe_state, &enrow_state, &single_state]
        .iter()
        .map(|s| s["duplicates"].as_u64().unwrap())
        .sum();
    let sent = stack
        .sandbox
        .as_ref()
        .unwrap()
        .counters()
        .duplicates_sent
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sent > 0 && duplicates >= 1,
        "duplicates sent {sent}, dropped {duplicates}"
    );
    assert_eq!(stack.queue_depth("WebhookDeadLetterQueue").await, 0);
}

#[tokio::test]
async fn a_fullenrich_delivery_answered_5xx_is_retried_and_lands_once() {
    let mut opts = options();
    opts.sandbox.delay = Duration::from_millis(1500);
    let stack = DevStack::start(opts).await.expect("dev stack");
    let c = Client::of(&stack);
    let job = c
        .post_job(
            json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe_contacts(3)}),
        )
        .await;
    // The webhook queue goes away: ingest cannot make deliveries durable and answers 503.
    let sqs = relay_shared::aws::sqs(&stack.sdk);
    sqs.delete_queue()
        .queue_url(stack.res.queue_url("WebhookQueue"))
        .send()
        .await
        .unwrap();
    let counters = stack.sandbox.as_ref().unwrap().counters();
    let deadline = Instant::now() + Duration::from_secs(30);
    while counters
        .webhooks_retried
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(Instant::now() < deadline, "the sandbox never had to retry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The queue is back (same name, same URL): FullEnrich's retries get through.
    relay_local_stack::Template::load_default()
        .unwrap()
        .create(&stack.sdk, "dev")
        .await
        .unwrap();
    let state = c.wait_done(&job, Duration::from_secs(60)).await;
    assert_eq!(
        (state["status"].as_str(), state["done"].as_u64()),
        (Some("completed"), Some(3)),
        "{state}"
    );
    let results = c.results(&job).await;
    assert_exact(&results, 3);
}

#[tokio::test]
async fn provider_urls_from_the_environment_are_used_and_a_restart_finds_no_leftovers() {
    let stub = ProviderStub::start().await;
    let mut opts = options();
    opts.enrow_url = Some(stub.url.clone());
    opts.fullenrich_url = Some(stub.url.clone());
    opts.enrow_key = Some("my-enrow-key".into());
    let stack = DevStack::start(opts.clone()).await.expect("dev stack");
    assert!(
        stack.sandbox.is_none(),
        "no sandbox when both providers are elsewhere"
    );
    let c = Client::of(&stack);
    c.post_job(json!({"provider": "enrow", "operation": "email_verify", "contacts": [{"email": "ada@example.com"}]})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stub.starts().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the other provider got no request"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stub.starts()[0].path, "/email/verify/single");
    assert_eq!(stub.starts()[0].auth, "x-api-key: my-enrow-key");

    // Stopped and started again on the same port: nothing left in the way.
    let port: u16 = stack.api_url.rsplit(':').next().unwrap().parse().unwrap();
    drop(stack);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = opts;
    again.port = port;
    let stack = DevStack::start(again).await.expect("second start");
    assert_eq!(stack.api_url, format!("http://127.0.0.1:{port}"));
    let resp = reqwest::get(format!("{}/jobs/job_x", stack.api_url))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the API serves again");
}

/// `make demo` as it runs: on watch.
#[tokio::test]
async fn the_demo_completes_every_job_with_nothing_in_the_dlq() {
    let demo = relay_local_stack::repo_root().join("target/debug/relay-demo");
    let out = tokio::process::Command::new(&demo)
        .env("RELAY_DEV_PORT", "0")
        .env("RELAY_WATCH_PORT", "0")
        .env(
            "PATH",
            format!(
                "{}:{}",
                relay_local_stack::repo_root().join(".venv/bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e} (make functions builds it)", demo.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("demo ok: every contact accounted for"),
        "{stdout}"
    );
    assert!(stdout.contains("webhook DLQ: 0 messages"), "{stdout}");
}
