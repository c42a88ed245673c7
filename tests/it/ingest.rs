//! webhook-ingest against moto: what is accepted lands in SQS byte for byte, what is forged lands
//! nowhere, and nothing is answered 200 before SQS has it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use relay_shared::Provider;
use relay_shared::auth::{WebhookSecret, fullenrich_signature};
use relay_shared::bodies::{BodyStore, S3Bodies};
use relay_shared::config::IngestConfig;
use relay_shared::envelope::{Body, Envelope, Signature};
use relay_shared::providers::Hook;
use relay_shared::queue::SqsQueue;
use sha2::Digest;
use webhook_ingest::Ingest;

use crate::support::{Stack, apigw_request, fixture};

const SECRET: &str = "test-webhook-secret-0123456789";
const FE_KEY: &str = "fe-test-api-key";

fn config(stack: &Stack, require_signature: bool) -> IngestConfig {
    IngestConfig {
        queue_url: stack.webhook_queue().to_string(),
        payload_bucket: stack.res.bucket("PayloadBucket").to_string(),
        webhook_secret: WebhookSecret::new(SECRET),
        fullenrich_keys: vec![FE_KEY.to_string().into()],
        require_signature,
    }
}

fn ingest_with(stack: &Stack, config: IngestConfig) -> Ingest<SqsQueue, S3Bodies> {
    let queue = SqsQueue::new(stack.sqs(), config.queue_url.clone());
    let bodies = S3Bodies::new(stack.s3(), config.payload_bucket.clone());
    Ingest::new(queue, bodies, config)
}

fn ingest(stack: &Stack) -> Ingest<SqsQueue, S3Bodies> {
    ingest_with(stack, config(stack, false))
}

fn url(provider: Provider, job: &str, hook: Hook) -> String {
    let token = WebhookSecret::new(SECRET).token(provider, job);
    format!("/webhooks/{provider}/{job}/{}/{token}", hook.as_str())
}

/// POSTs `body` as the provider would: FullEnrich deliveries signed with the API key.
async fn deliver(
    ingest: &Ingest<SqsQueue, S3Bodies>,
    path: &str,
    provider: Provider,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let sig = fullenrich_signature(FE_KEY.as_bytes(), body);
    let mut headers = vec![("content-type", "application/json")];
    if provider == Provider::Fullenrich {
        headers.push(("X-Signature-SHA1", sig.as_str()));
    }
    send(ingest, path, &headers, body).await
}

async fn send(
    ingest: &Ingest<SqsQueue, S3Bodies>,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let resp = ingest
        .handle(apigw_request("POST", path, headers, body))
        .await;
    let status = resp.status().as_u16();
    let json = serde_json::from_slice(resp.body().as_ref()).expect("JSON response body");
    (status, json)
}

#[tokio::test]
async fn every_event_kind_is_enqueued_once_with_its_raw_body() {
    let stack = Stack::new().await;
    let ingest = ingest(&stack);
    let cases = [
        (
            Provider::Fullenrich,
            Hook::Batch,
            "fullenrich/batch_finished.json",
        ),
        (
            Provider::Fullenrich,
            Hook::Batch,
            "fullenrich/batch_credits_insufficient.json",
        ),
        (
            Provider::Fullenrich,
            Hook::Batch,
            "fullenrich/batch_canceled.json",
        ),
        (
            Provider::Fullenrich,
            Hook::Batch,
            "fullenrich/reverse_email_finished.json",
        ),
        (
            Provider::Fullenrich,
            Hook::Contact,
            "fullenrich/contact_finished.json",
        ),
        (
            Provider::Fullenrich,
            Hook::Contact,
            "fullenrich/contact_finished_bare.json",
        ),
        (
            Provider::Enrow,
            Hook::Event,
            "enrow/single_search_finished.json",
        ),
        (
            Provider::Enrow,
            Hook::Event,
            "enrow/single_search_finished_object_custom.json",
        ),
        (
            Provider::Enrow,
            Hook::Event,
            "enrow/bulk_search_finished.json",
        ),
        (
            Provider::Enrow,
            Hook::Event,
            "enrow/bulk_search_finished_legacy.json",
        ),
        (
            Provider::Enrow,
            Hook::Event,
            "enrow/verification_finished.json",
        ),
        (
            Provider::Enrow,
            Hook::Event,
            "enrow/bulk_verification_finished.json",
        ),
        (
            Provider::Enrow,
            Hook::Event,
            "enrow/single_phone_search_finished.json",
        ),
        (
            Provider::Enrow,
            Hook::Event,
            "enrow/single_phone_search_finished_legacy.json",
        ),
        (
            Provider::Enrow,
            Hook::Event,
            "enrow/bulk_phone_search_finished.json",
        ),
    ];
    for (provider, hook, file) in cases {
        let body = fixture(file);
        let job = "job_42";
        let (status, resp) = deliver(&ingest, &url(provider, job, hook), provider, &body).await;
        assert_eq!(status, 200, "{file}: {resp}");
        assert_eq!(resp["status"], "accepted");

        let messages = stack.drain(stack.webhook_queue()).await;
        assert_eq!(messages.len(), 1, "{file}: exactly one message");
        let env = Envelope::from_json(&messages[0]).unwrap();
        assert_eq!(env.provider, provider);
        assert_eq!(env.hook, hook);
        assert_eq!(env.job_id, job);
        assert_eq!(env.delivery_id, resp["delivery_id"].as_str().unwrap());
        assert_eq!(
            env.body.inline_bytes().expect("inline").unwrap(),
            body,
            "{file}: raw body byte for byte"
        );
        assert_eq!(env.headers["content-type"], "application/json");
        let expected_sig = match provider {
            Provider::Fullenrich => Signature::Verified,
            Provider::Enrow => Signature::NotApplicable,
        };
        assert_eq!(env.signature, expected_sig);
    }
}

#[tokio::test]
async fn forged_deliveries_get_401_and_enqueue_nothing() {
    let stack = Stack::new().await;
    let strict = ingest_with(&stack, config(&stack, true));
    let lenient = ingest(&stack);
    let body = fixture("fullenrich/batch_finished.json");
    let good_sig = fullenrich_signature(FE_KEY.as_bytes(), &body);
    let wrong_sig = fullenrich_signature(b"not-the-key", &body);
    let secret = WebhookSecret::new(SECRET);
    let other_job_token = secret.token(Provider::Fullenrich, "job_other");
    let other_provider_token = secret.token(Provider::Enrow, "job_1");
    let forged_token =
        WebhookSecret::new("attacker-secret-0123456789").token(Provider::Fullenrich, "job_1");

    // (what is wrong, path, headers)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (
            "bad token",
            "/webhooks/fullenrich/job_1/batch/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            vec![("x-signature-sha1", &good_sig)],
        ),
        (
            "token of another secret",
            format!("/webhooks/fullenrich/job_1/batch/{forged_token}"),
            vec![("x-signature-sha1", &good_sig)],
        ),
        (
            "another job's token",
            format!("/webhooks/fullenrich/job_1/batch/{other_job_token}"),
            vec![("x-signature-sha1", &good_sig)],
        ),
        (
            "another provider's token",
            format!("/webhooks/fullenrich/job_1/batch/{other_provider_token}"),
            vec![("x-signature-sha1", &good_sig)],
        ),
        (
            "no token",
            "/webhooks/fullenrich/job_1/batch".into(),
            vec![("x-signature-sha1", &good_sig)],
        ),
        (
            "wrong signature",
            url(Provider::Fullenrich, "job_1", Hook::Batch),
            vec![("x-signature-sha1", &wrong_sig)],
        ),
        (
            "garbage signature",
            url(Provider::Fullenrich, "job_1", Hook::Contact),
            vec![("x-signature-sha1", "nothex")],
        ),
        (
            "enrow, no token",
            "/webhooks/enrow/job_1/event".into(),
            vec![],
        ),
    ];
    for (what, path, headers) in &cases {
        let (status, resp) = send(&lenient, path, headers, &body).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(resp["error"]["code"], "unauthorized", "{what}");
        let (status, _) = send(&strict, path, headers, &body).await;
        assert_eq!(status, 401, "{what} (strict)");
    }
    // Missing signature: refused with the flag on, accepted on the token alone with it off.
    let path = url(Provider::Fullenrich, "job_1", Hook::Batch);
    let (status, _) = send(&strict, &path, &[], &body).await;
    assert_eq!(
        status, 401,
        "missing signature with FULLENRICH_REQUIRE_SIGNATURE=true"
    );
    assert!(
        stack.drain(stack.webhook_queue()).await.is_empty(),
        "queue still empty"
    );

    let (status, _) = send(&lenient, &path, &[], &body).await;
    assert_eq!(status, 200, "token alone, flag off");
    let messages = stack.drain(stack.webhook_queue()).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        Envelope::from_json(&messages[0]).unwrap().signature,
        Signature::Absent
    );
}

#[tokio::test]
async fn sqs_unavailable_answers_503() {
    let stack = Stack::new().await;
    // A port nobody listens on: SQS unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = relay_shared::aws::for_endpoint(&format!("http://127.0.0.1:{port}")).await;
    let mut cfg = config(&stack, false);
    cfg.queue_url = format!("http://127.0.0.1:{port}/123456789012/gone");
    let ingest = Ingest::new(
        SqsQueue::new(relay_shared::aws::sqs(&dead), cfg.queue_url.clone()),
        S3Bodies::new(stack.s3(), cfg.payload_bucket.clone()),
        cfg,
    );
    let body = fixture("enrow/bulk_search_finished.json");
    let (status, resp) = deliver(
        &ingest,
        &url(Provider::Enrow, "job_1", Hook::Event),
        Provider::Enrow,
        &body,
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(resp["error"]["code"], "unavailable");

    // A queue that does not exist (deleted, wrong URL) is unavailable too, not a success.
    let mut cfg = config(&stack, false);
    cfg.queue_url = format!("{}-missing", stack.webhook_queue());
    let ingest = ingest_with(&stack, cfg);
    let (status, _) = deliver(
        &ingest,
        &url(Provider::Enrow, "job_1", Hook::Event),
        Provider::Enrow,
        &body,
    )
    .await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn empty_and_non_json_bodies_are_kept() {
    let stack = Stack::new().await;
    let ingest = ingest(&stack);
    for body in [&b""[..], b"not json at all", &[0xff, 0x00, 0xfe][..]] {
        let (status, _) = deliver(
            &ingest,
            &url(Provider::Enrow, "job_1", Hook::Event),
            Provider::Enrow,
            body,
        )
        .await;
        assert_eq!(status, 200);
        let messages = stack.drain(stack.webhook_queue()).await;
        assert_eq!(messages.len(), 1);
        let env = Envelope::from_json(&messages[0]).unwrap();
        assert_eq!(env.body.inline_bytes().unwrap().unwrap(), body);
    }
}

#[tokio::test]
async fn a_3_mb_body_is_claim_checked_and_comes_back_whole() {
    let stack = Stack::new().await;
    let ingest = ingest(&stack);
    // A FullEnrich batch of ~3 MB: the fixture's records, repeated.
    let one: serde_json::Value =
        serde_json::from_slice(&fixture("fullenrich/batch_finished.json")).unwrap();
    let record = one["data"][0].clone();
    let mut job = one.clone();
    let mut data = Vec::new();
    while serde_json::to_vec(&job).unwrap().len() < 3_000_000 {
        data.extend(std::iter::repeat_n(record.clone(), 200));
        job["data"] = serde_json::Value::from(data.clone());
    }
    let body = serde_json::to_vec(&job).unwrap();
    assert!(body.len() >= 3_000_000);

    let (status, resp) = deliver(
        &ingest,
        &url(Provider::Fullenrich, "job_big", Hook::Batch),
        Provider::Fullenrich,
        &body,
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    let messages = stack.drain(stack.webhook_queue()).await;
    assert_eq!(messages.len(), 1);
    assert!(messages[0].len() < 4096, "the message is small");
    let env = Envelope::from_json(&messages[0]).unwrap();
    let Body::Stored {
        bucket,
        key,
        size,
        sha256,
    } = &env.body
    else {
        panic!("expected a claim-checked body, got {:?}", env.body);
    };
    assert_eq!(*size as usize, body.len());
    let store = S3Bodies::new(stack.s3(), bucket.clone());
    let back = store.get(key).await.unwrap();
    assert_eq!(back, body, "the whole body back, byte for byte");
    assert_eq!(*sha256, hex::encode(sha2::Sha256::digest(&back)));
    assert_eq!(env.signature, Signature::Verified);
}

#[tokio::test]
async fn a_failed_claim_check_answers_503() {
    let stack = Stack::new().await;
    let mut cfg = config(&stack, false);
    cfg.payload_bucket = "no-such-bucket".into();
    let ingest = ingest_with(&stack, cfg).with_max_message_bytes(100);
    let body = fixture("enrow/single_search_finished.json");
    let (status, _) = deliver(
        &ingest,
        &url(Provider::Enrow, "job_1", Hook::Event),
        Provider::Enrow,
        &body,
    )
    .await;
    assert_eq!(status, 503);
    assert!(stack.drain(stack.webhook_queue()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_deliveries_none_lost_none_doubled() {
    let stack = Stack::new().await;
    let ingest = Arc::new(ingest(&stack));
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let ingest = Arc::clone(&ingest);
            tokio::spawn(async move {
                let body = format!(r#"{{"event":"single_search_finished","id":"bulk-{i}","result":{{"qualification":"valid"}}}}"#);
                let path = url(Provider::Enrow, &format!("job_{}", i % 7), Hook::Event);
                deliver(&ingest, &path, Provider::Enrow, body.as_bytes()).await.0
            })
        })
        .collect();
    for t in futures::future::join_all(tasks).await {
        assert_eq!(t.unwrap(), 200);
    }
    let messages = stack.drain(stack.webhook_queue()).await;
    assert_eq!(messages.len(), 500, "none lost, none doubled");
    let ids: HashSet<String> = messages
        .iter()
        .map(|m| {
            let env = Envelope::from_json(m).unwrap();
            let body: serde_json::Value =
                serde_json::from_slice(&env.body.inline_bytes().unwrap().unwrap()).unwrap();
            body["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 500);
}

/// A writer that keeps what the log subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn one_json_log_line_per_delivery_without_contact_data_or_tokens() {
    let stack = Stack::new().await;
    let ingest = ingest(&stack);
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let body = fixture("fullenrich/batch_finished.json");
    let path = url(Provider::Fullenrich, "job_7", Hook::Batch);
    let token = path.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        deliver(&ingest, &path, Provider::Fullenrich, &body).await.0,
        200
    );
    assert_eq!(
        send(
            &ingest,
            "/webhooks/fullenrich/job_7/batch/forged",
            &[],
            &body
        )
        .await
        .0,
        401
    );

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l["message"] == "webhook delivery")
        .collect();
    assert_eq!(lines.len(), 2, "one line per delivery: {text}");
    assert_eq!(lines[0]["provider"], "fullenrich");
    assert_eq!(lines[0]["job_id"], "job_7");
    assert_eq!(lines[0]["outcome"], "accepted");
    assert!(lines[0]["latency_us"].is_u64());
    assert_eq!(lines[1]["outcome"], "unauthorized_token");
    for secret_or_contact in [
        token.as_str(),
        "john.snow@example.com",
        "Snow",
        "+1 555-123-4567",
        FE_KEY,
        SECRET,
    ] {
        assert!(
            !text.contains(secret_or_contact),
            "log leaks {secret_or_contact:?}"
        );
    }
}

/// Enrow's dashboard (global) webhook: the deployment's global token lets an event in with no
/// job in its URL (bulk-fetch finds the job); any other token on the route, or the global token
/// on a job's route, gets 401 with nothing queued.
#[tokio::test]
async fn the_global_route_takes_the_global_token_only_and_queues_the_event_with_no_job() {
    let stack = Stack::new().await;
    let ingest = ingest(&stack);
    let secret = WebhookSecret::new(SECRET);
    let body = fixture("enrow/single_search_finished.json");
    let global = relay_shared::auth::global_webhook_path(&secret, Provider::Enrow);
    let (status, resp) = deliver(&ingest, &global, Provider::Enrow, &body).await;
    assert_eq!(status, 200, "{resp}");
    let messages = stack.drain(stack.webhook_queue()).await;
    assert_eq!(messages.len(), 1);
    let env = Envelope::from_json(&messages[0]).unwrap();
    assert_eq!((env.provider, env.hook), (Provider::Enrow, Hook::Global));
    assert_eq!(env.job_id, "", "no job in the URL");
    assert_eq!(env.body.inline_bytes().unwrap().unwrap(), body);

    let g = secret.global_token(Provider::Enrow);
    let job_token = secret.token(Provider::Enrow, "job_1");
    let other = WebhookSecret::new("attacker-secret-0123456789").global_token(Provider::Enrow);
    let refused = [
        format!("/webhooks/enrow/global/{other}"),
        format!("/webhooks/enrow/global/{job_token}"),
        format!("/webhooks/enrow/job_1/event/{g}"),
        format!("/webhooks/fullenrich/global/{g}"),
        "/webhooks/enrow/global/".to_string(),
    ];
    for path in &refused {
        let (status, _) = send(&ingest, path, &[], &body).await;
        assert_eq!(status, 401, "{path}");
    }
    assert!(stack.drain(stack.webhook_queue()).await.is_empty());
}
