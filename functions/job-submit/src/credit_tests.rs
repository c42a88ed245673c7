//! The credit check of `POST /jobs` on the in-memory stores, with a fake balance reader: a
//! balance below the estimate is a 402 with both figures and nothing written or started;
//! `dry_run` prices and writes nothing; a balance is read once a minute for every job (one
//! read for two jobs, and for two racing); an unreadable balance lets the job in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use relay_shared::Provider;
use relay_shared::queue::MemoryQueue;
use relay_shared::store::memory::MemoryJobs;
use relay_shared::store::{RateSchedule, Slot};
use relay_shared::validate::CallbackPolicy;
use serde_json::{Value, json};

use crate::api_tests::{api, call, starts};
use crate::{Api, Balances, CreditCheck};

/// Balances as a provider would answer them, each read counted; a read takes `delay`.
#[derive(Default)]
struct FakeBalances {
    figures: Mutex<HashMap<Provider, Result<Option<f64>, String>>>,
    reads: AtomicUsize,
    delay: Mutex<Duration>,
}

impl FakeBalances {
    fn set(&self, provider: Provider, figure: Result<Option<f64>, String>) {
        self.figures.lock().unwrap().insert(provider, figure);
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

impl Balances for FakeBalances {
    fn balance(&self, provider: Provider) -> BoxFuture<'_, Result<Option<f64>, String>> {
        Box::pin(async move {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let delay = *self.delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            let figures = self.figures.lock().unwrap();
            figures.get(&provider).cloned().unwrap_or(Ok(None))
        })
    }
}

/// The API with the credit check, FullEnrich paced at one request a second.
fn checked(fake: &Arc<FakeBalances>) -> Api<MemoryJobs, MemoryQueue> {
    let mut a = api(CallbackPolicy::default());
    let balances: Arc<dyn Balances> = fake.clone();
    a.credit_check = Some(CreditCheck::new(balances, Duration::from_secs(1)));
    a
}

/// A FullEnrich enrichment of `n` contacts asking for work emails (1) and phones (10): 11 a
/// contact at worst.
fn enrich(n: usize) -> Value {
    let contacts: Vec<Value> = (0..n)
        .map(
            |i| json!({"first_name": "Ada", "last_name": format!("L{i}"), "domain": "example.com"}),
        )
        .collect();
    json!({"provider": "fullenrich", "operation": "enrich", "contacts": contacts,
        "options": {"enrich_fields": ["contact.work_emails", "contact.phones"]}})
}

/// An Enrow verification of two emails, not a dry run.
fn verify_job() -> Value {
    json!({"provider": "enrow", "operation": "email_verify",
        "contacts": [{"email": "a@example.com"}, {"email": "b@example.com"}]})
}

async fn listed(a: &Api<MemoryJobs, MemoryQueue>) -> Value {
    call(a, "GET", "/jobs", &[], &Value::Null).await.1["jobs"].clone()
}

#[tokio::test(start_paused = true)]
async fn a_balance_below_the_estimate_is_a_402_with_both_figures_and_nothing_written_or_started() {
    let fake = Arc::new(FakeBalances::default());
    fake.set(Provider::Fullenrich, Ok(Some(30.5)));
    let a = checked(&fake);
    let key = [("idempotency-key", "k-402")];
    let (status, body) = call(&a, "POST", "/jobs", &key, &enrich(3)).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["code"], "credits_insufficient");
    assert_eq!(body["error"]["field"], "contacts");
    assert_eq!(
        (&body["estimate"], &body["balance"]),
        (
            &json!({"provider": "fullenrich", "credits": 33.0}),
            &json!({"provider": "fullenrich", "credits": 30.5})
        )
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("33") && message.contains("30.5"),
        "{message}"
    );
    assert_eq!(listed(&a).await, json!([]), "no job written");
    assert!(starts(&a).is_empty(), "no start queued");
    // Within the balance: accepted (the balance read once, a minute's figure).
    let (status, body) = call(&a, "POST", "/jobs", &[], &enrich(2)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(starts(&a).len(), 1);
    // The refusal gave its key up: the same request, once the account is topped up (a minute
    // later, when the balance is read again), creates its job.
    fake.set(Provider::Fullenrich, Ok(Some(100.0)));
    tokio::time::advance(Duration::from_secs(61)).await;
    let (status, body) = call(&a, "POST", "/jobs", &key, &enrich(3)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(fake.reads(), 2);
}

#[tokio::test(start_paused = true)]
async fn dry_run_answers_the_estimate_and_the_balance_and_writes_nothing() {
    let fake = Arc::new(FakeBalances::default());
    fake.set(Provider::Fullenrich, Ok(Some(5.0)));
    let a = checked(&fake);
    let mut body = enrich(4);
    body["dry_run"] = json!(true);
    let (status, answer) = call(&a, "POST", "/jobs", &[("idempotency-key", "k")], &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"dry_run": true, "contacts": 4,
            "estimate": {"provider": "fullenrich", "credits": 44.0},
            "balance": {"provider": "fullenrich", "credits": 5.0}})
    );
    // Enrow's account: no key here, so no balance.
    let mut verify = verify_job();
    verify["dry_run"] = json!(true);
    let (status, answer) = call(&a, "POST", "/jobs", &[], &verify).await;
    assert_eq!(
        (status, &answer["balance"]),
        (200, &Value::Null),
        "{answer}"
    );
    assert_eq!(answer["estimate"]["credits"], 0.5);
    assert_eq!(listed(&a).await, json!([]));
    assert!(starts(&a).is_empty());
    // Validated first: a bad contact is the 400 it always is; dry_run must be a boolean.
    body["contacts"][2] = json!({"first_name": "Ada"});
    let (status, e) = call(&a, "POST", "/jobs", &[], &body).await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["field"]
            .as_str()
            .unwrap()
            .starts_with("contacts[2]"),
        "{e}"
    );
    body["dry_run"] = json!("yes");
    let (status, e) = call(&a, "POST", "/jobs", &[], &body).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (400, Some("dry_run")),
        "{e}"
    );
    // The dry run held no key: the key is free for another body.
    let (status, e) = call(
        &a,
        "POST",
        "/jobs",
        &[("idempotency-key", "k")],
        &verify_job(),
    )
    .await;
    assert_eq!(status, 202, "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_balance_is_read_once_a_minute_for_every_job_and_once_for_two_racing() {
    let fake = Arc::new(FakeBalances::default());
    fake.set(Provider::Fullenrich, Ok(Some(1000.0)));
    *fake.delay.lock().unwrap() = Duration::from_millis(500);
    let a = checked(&fake);
    // Two requests at once: one reads, the other waits for its figure.
    let body = enrich(1);
    let (one, two) = tokio::join!(
        call(&a, "POST", "/jobs", &[], &body),
        call(&a, "POST", "/jobs", &[], &body)
    );
    assert_eq!((one.0, two.0), (202, 202));
    assert_eq!(fake.reads(), 1, "one read for two racing jobs");
    let (status, _) = call(&a, "POST", "/jobs", &[], &enrich(90)).await;
    assert_eq!(status, 202);
    assert_eq!(fake.reads(), 1, "the minute's figure");
    // The read took a slot of FullEnrich's shared schedule: the next one is a second later.
    match a.jobs.take_slot("fullenrich", 1000, 0).await.unwrap() {
        Slot::Busy { .. } => {}
        Slot::At(_) => panic!("the balance read took no slot"),
    }
    tokio::time::advance(Duration::from_secs(61)).await;
    fake.set(Provider::Fullenrich, Ok(Some(10.0)));
    let (status, refused) = call(&a, "POST", "/jobs", &[], &enrich(1)).await;
    assert_eq!(status, 402, "the new figure: {refused}");
    assert_eq!(fake.reads(), 2);
    // Two racing a stale figure whose reader is slower than the wait: the loser goes unchecked.
    tokio::time::advance(Duration::from_secs(61)).await;
    *fake.delay.lock().unwrap() = Duration::from_secs(3);
    let (one, two) = tokio::join!(
        call(&a, "POST", "/jobs", &[], &body),
        call(&a, "POST", "/jobs", &[], &body)
    );
    let mut got = [one.0, two.0];
    got.sort();
    assert_eq!(got, [202, 402], "{one:?} {two:?}");
    assert_eq!(fake.reads(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_balance_lets_the_job_in() {
    let fake = Arc::new(FakeBalances::default());
    fake.set(Provider::Fullenrich, Err("HTTP 500 unexpected body".into()));
    let a = checked(&fake);
    let (status, body) = call(&a, "POST", "/jobs", &[], &enrich(5)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(starts(&a).len(), 1);
    // A read slower than its timeout: the same.
    tokio::time::advance(Duration::from_secs(61)).await;
    fake.set(Provider::Fullenrich, Ok(Some(1.0)));
    *fake.delay.lock().unwrap() = Duration::from_secs(30);
    let (status, body) = call(&a, "POST", "/jobs", &[], &enrich(5)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(fake.reads(), 2);
    // No credit check configured: nothing is read.
    let plain = api(CallbackPolicy::default());
    let (status, _) = call(&plain, "POST", "/jobs", &[], &enrich(5)).await;
    assert_eq!(status, 202);
    assert_eq!(fake.reads(), 2);
}
