//! Completion callbacks end to end on the dev stack: a local receiver that answers the first two
//! attempts 500 verifies every attempt's Standard Webhooks signature and gets exactly one
//! `job.completed` taken (2xx), and the attempts show on the job.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use hmac::{Hmac, Mac};
use relay_local_stack::dev::DevStack;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::e2e::{Client, options};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    answered: u16,
}

/// A callback receiver on 127.0.0.1: answers 500 to the first `fail_first` requests, then 204.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let state = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/hooks/done",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: String| async move {
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let mut got = state.lock().unwrap();
                let answered = if got.len() < fail_first { 500 } else { 204 };
                got.push(Received {
                    id: h("webhook-id"),
                    timestamp: h("webhook-timestamp"),
                    signature: h("webhook-signature"),
                    body,
                    answered,
                });
                axum::http::StatusCode::from_u16(answered).unwrap()
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/done", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// The Standard Webhooks check, written from the specification: the secret is base64 after
/// `whsec_`; the signature is `v1,` and base64 of HMAC-SHA256 over `id.timestamp.body`; the
/// timestamp is within five minutes.
fn verify(secret: &str, r: &Received) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let now = relay_shared::now_ms() / 1000;
    let ts: u64 = r.timestamp.parse().unwrap_or(0);
    now.abs_diff(ts) <= 300
        && r.signature
            .split(' ')
            .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

#[tokio::test]
async fn a_job_calls_back_once_signed_after_two_failed_attempts() {
    let opts = options();
    let secret = opts.callback_secret.clone();
    let stack = DevStack::start(opts).await.expect("dev stack");
    let c = Client::of(&stack);
    let (url, got) = receiver(2).await;

    // Refused before anything is created: plain http to a public host, a private address.
    for (bad, rule) in [
        ("http://hooks.example.com/done", "https"),
        ("https://10.0.0.7/done", "public host"),
        ("https://user:pw@hooks.example.com/done", "credentials"),
    ] {
        let resp = c
            .http
            .post(format!("{}/jobs", c.base))
            .bearer_auth(&stack.api_token)
            .json(
                &json!({"provider": "enrow", "operation": "email_verify", "callback_url": bad,
                "contacts": [{"email": "ada@example.com"}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        let e: Value = resp.json().await.unwrap();
        assert_eq!(e["error"]["field"], "callback_url", "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(rule),
            "{e}"
        );
    }

    let contacts: Vec<Value> = (0..3)
        .map(|i| json!({"email": format!("ada{i}@example.com")}))
        .collect();
    let job = c
        .post_job(json!({"provider": "enrow", "operation": "email_verify",
            "callback_url": url, "contacts": contacts}))
        .await;
    let plain = c
        .post_job(json!({"provider": "enrow", "operation": "email_verify",
            "contacts": [{"email": "grace@example.com"}]}))
        .await;
    let before = c.get(&format!("/jobs/{job}")).await;
    let done = c.wait_done(&job, Duration::from_secs(90)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        before["callback"]["status"] == "waiting" || before["status"] != "running",
        "{before}"
    );

    // Three attempts: 500, 500, then taken. Retries back off 1 s, 2 s here.
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.lock().unwrap().iter().all(|r| r.answered != 204) {
        assert!(Instant::now() < deadline, "no callback taken: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A stray request for the same callback (a duplicate SQS message, a sweep) changes nothing.
    aws_sdk_sqs::Client::new(&stack.sdk)
        .send_message()
        .queue_url(stack.res.queue_url("WebhookQueue"))
        .message_body(json!({"callback": {"job_id": job}}).to_string())
        .send()
        .await
        .unwrap();
    // Longer than the next backoff and a sweep or two: nothing more comes.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let got = got.lock().unwrap().clone();
    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![500, 500, 204],
        "exactly one job.completed taken, after two failures"
    );
    for r in &got {
        assert!(verify(&secret, r), "signature verifies: {r:?}");
        assert_eq!(r.id, got[0].id, "one webhook-id for every attempt");
        let event: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(event["type"], "job.completed");
        assert_eq!(event["data"]["job_id"], job.as_str());
        assert_eq!(event["data"]["status"], "completed");
        assert_eq!(event["data"]["contacts"], 3);
        assert_eq!(event["data"]["done"], 3);
        assert!(
            !r.body.contains("@example.com"),
            "no contact data: {}",
            r.body
        );
    }
    // A tampered body does not verify (the check can fail).
    let mut forged = got[2].clone();
    forged.body = forged.body.replace("completed\"", "failed\"");
    assert!(!verify(&secret, &forged));

    let job_view = c.get(&format!("/jobs/{job}")).await;
    let cb = &job_view["callback"];
    assert_eq!(cb["status"], "delivered", "{job_view}");
    assert_eq!(cb["attempts"], 3, "{job_view}");
    assert_eq!(cb["last_status_code"], 204, "{job_view}");
    assert_eq!(cb["url"], url.as_str());
    assert_eq!(
        c.get(&format!("/jobs/{plain}")).await["callback"],
        Value::Null
    );
    assert_eq!(stack.queue_depth("WebhookDeadLetterQueue").await, 0);
}

#[tokio::test]
async fn a_lost_callback_request_is_swept_and_two_requests_make_one_attempt() {
    use crate::support::fetch::Fetch;
    use relay_shared::callback::CallbackRequest;
    use relay_shared::jobs::{CallbackStatus, JobStatus, Operation};
    use sweeper::Sweeper;

    let f = Fetch::new().await;
    let (url, got) = receiver(0).await;
    let id = "910f3e13-b2bf-442d-ab0b-4cf44dfrij84fjrt";
    let job = f
        .seed(
            Operation::EmailFind,
            vec![crate::fetch::finder(0)],
            1,
            &[id],
        )
        .await;
    // The job asked for a callback when it was created.
    relay_shared::aws::dynamodb(&f.stack.sdk)
        .update_item()
        .table_name(f.stack.res.table("JobsTable"))
        .key("pk", AttributeValue::S(format!("JOB#{job}")))
        .key("sk", AttributeValue::S("META".into()))
        .update_expression("SET callback_url = :u")
        .expression_attribute_values(":u", AttributeValue::S(url))
        .send()
        .await
        .unwrap();

    // Its result comes: the job ends, and asks for its callback on the webhook queue.
    let body = relay_shared::testing::envelope(
        relay_shared::Provider::Enrow,
        relay_shared::providers::Hook::Event,
        &job,
        &crate::support::fixture("enrow/single_search_finished.json"),
    );
    f.run(&[body]).await;
    assert_eq!(f.job(&job).await.status, JobStatus::Completed);
    let asked = f.stack.drain(f.stack.webhook_queue()).await;
    assert_eq!(
        asked
            .iter()
            .map(|m| CallbackRequest::from_json(m))
            .collect::<Vec<_>>(),
        vec![Some(CallbackRequest::new(&job, None))]
    );

    // That request is lost for now: the sweep finds the job's head due and asks again.
    let sweeper = Sweeper {
        jobs: f.jobs.clone(),
        queue: relay_shared::queue::SqsQueue::new(f.stack.sqs(), f.stack.webhook_queue()),
        submit_queue: relay_shared::queue::SqsQueue::new(
            f.stack.sqs(),
            f.stack.res.queue_url("SubmitQueue"),
        ),
        hold: Duration::from_secs(60),
        limit: 100,
    };
    let sweep = sweeper.sweep().await.unwrap();
    assert_eq!((sweep.due, sweep.enqueued), (1, 1), "{sweep:?}");
    let swept = f.stack.drain(f.stack.webhook_queue()).await;
    assert_eq!(swept.len(), 1);
    assert!(
        CallbackRequest::from_json(&swept[0])
            .unwrap()
            .callback
            .due_at
            .is_some()
    );
    assert_eq!(got.lock().unwrap().len(), 0, "a sweep only asks");

    // Both requests arrive together (the first was only late): one attempt.
    f.run(&[asked[0].clone(), swept[0].clone()]).await;
    assert_eq!(got.lock().unwrap().len(), 1);
    let cb = f.job(&job).await.callback.unwrap();
    assert_eq!(cb.status, CallbackStatus::Delivered);
    assert_eq!((cb.attempts, cb.last_status_code), (1, Some(204)));
    // Delivered: out of the due index.
    assert_eq!(sweeper.sweep().await.unwrap().due, 0);
    f.run(&[asked[0].clone()]).await;
    assert_eq!(got.lock().unwrap().len(), 1, "a late copy sends nothing");
}
