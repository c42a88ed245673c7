//! The jobs API's paths on the in-memory stores (no moto, milliseconds): validation, auth,
//! `Idempotency-Key`, callback URLs, cancel, delete, listing. DynamoDB's own semantics are
//! `tests/it/submit.rs`'s.

use relay_shared::auth::BearerToken;
use relay_shared::queue::MemoryQueue;
use relay_shared::store::memory::MemoryJobs;
use relay_shared::validate::CallbackPolicy;
use serde_json::{Value, json};

use crate::{Api, SubmitChunk};
use relay_shared::JobId;
use relay_shared::ProviderId;

const TOKEN: &str = "api-tests-token-0123456789";

pub(crate) fn api(policy: CallbackPolicy) -> Api<MemoryJobs, MemoryQueue> {
    Api {
        jobs: MemoryJobs::default(),
        submit_queue: MemoryQueue::default(),
        token: BearerToken::new(TOKEN),
        callback_policy: policy,
        credit_check: None,
    }
}

pub(crate) async fn call(
    api: &Api<MemoryJobs, MemoryQueue>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let event = relay_shared::testing::apigw_v2_event(method, path, &all, &body);
    let req = lambda_http::request::from_str(&event.to_string()).unwrap();
    let resp = api.handle(req).await;
    let status = resp.status().as_u16();
    let v = serde_json::from_slice(resp.body().as_ref()).unwrap_or(Value::Null);
    (status, v)
}

fn job(n: usize) -> Value {
    let contacts: Vec<Value> = (0..n)
        .map(|i| json!({"email": format!("p{i}@example.com"), "custom": {"crm_id": format!("c{i}")}}))
        .collect();
    json!({"provider": "enrow", "operation": "email_verify", "contacts": contacts})
}

/// The chunk-start messages queued so far.
pub(crate) fn starts(api: &Api<MemoryJobs, MemoryQueue>) -> Vec<SubmitChunk> {
    api.submit_queue
        .take()
        .iter()
        .filter_map(|m| serde_json::from_str(&m.body).ok())
        .collect()
}

#[tokio::test]
async fn a_bad_request_names_the_field_and_creates_nothing() {
    let a = api(CallbackPolicy::default());
    let mut body = job(2);
    body["contacts"][1] = json!({"email": "not-an-email"});
    let (status, e) = call(&a, "POST", "/jobs", &[], &body).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "contacts[1].email");
    assert!(!e.to_string().contains("not-an-email"), "no value echoed");
    let (_, list) = call(&a, "GET", "/jobs", &[], &Value::Null).await;
    assert_eq!(list["jobs"], json!([]));
    assert!(starts(&a).is_empty());
}

#[tokio::test]
async fn a_wrong_token_is_refused() {
    let a = api(CallbackPolicy::default());
    let event = relay_shared::testing::apigw_v2_event(
        "GET",
        "/jobs",
        &[("authorization", "Bearer nope")],
        b"",
    );
    let resp = a
        .handle(lambda_http::request::from_str(&event.to_string()).unwrap())
        .await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn an_idempotency_key_returns_the_same_job_and_refuses_another_body() {
    let a = api(CallbackPolicy::default());
    let key = [("idempotency-key", "crm-sync-1")];
    let (status, first) = call(&a, "POST", "/jobs", &key, &job(3)).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(
        first["chunks"], 1,
        "three verifications are one bulk request"
    );
    let queued = starts(&a);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].job_id, first["job_id"].as_str().unwrap());
    let (status, again) = call(&a, "POST", "/jobs", &key, &job(3)).await;
    assert_eq!(status, 202);
    assert_eq!(again["job_id"], first["job_id"]);
    // The chunk is still pending here (no worker runs): the retry queues it again in case its
    // message was lost, which the worker's lease makes harmless.
    assert_eq!(starts(&a), queued);
    let (status, other) = call(&a, "POST", "/jobs", &key, &job(4)).await;
    assert_eq!(status, 422, "{other}");
    assert_eq!(other["error"]["code"], "idempotency_key_reused");
    let (_, list) = call(&a, "GET", "/jobs", &[], &Value::Null).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn callback_urls_follow_the_deployments_rule_and_show_on_the_job() {
    let strict = api(CallbackPolicy::default());
    let mut body = job(1);
    body["callback_url"] = json!("http://127.0.0.1:9999/done");
    let (status, e) = call(&strict, "POST", "/jobs", &[], &body).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (400, Some("callback_url"))
    );

    let local = api(CallbackPolicy {
        allow_loopback: true,
    });
    let (status, created) = call(&local, "POST", "/jobs", &[], &body).await;
    assert_eq!(status, 202, "{created}");
    let id = &JobId::new(created["job_id"].as_str().unwrap());
    let (_, view) = call(&local, "GET", &format!("/jobs/{id}"), &[], &Value::Null).await;
    assert_eq!(
        view["callback"],
        json!({"url": "http://127.0.0.1:9999/done", "status": "waiting", "attempts": 0, "last_status_code": null})
    );
}

#[tokio::test]
async fn a_deleted_job_reads_as_gone_and_its_erasure_is_queued() {
    let a = api(CallbackPolicy::default());
    let (_, created) = call(&a, "POST", "/jobs", &[], &job(1)).await;
    let id = &JobId::new(created["job_id"].as_str().unwrap());
    starts(&a);
    let (status, _) = call(&a, "DELETE", &format!("/jobs/{id}"), &[], &Value::Null).await;
    assert_eq!(status, 202);
    let erase = starts(&a);
    assert_eq!(
        erase,
        vec![serde_json::from_str::<SubmitChunk>(&SubmitChunk::delete(id)).unwrap()]
    );
    let (status, _) = call(&a, "GET", &format!("/jobs/{id}"), &[], &Value::Null).await;
    assert_eq!(status, 404);
    let (_, list) = call(&a, "GET", "/jobs", &[], &Value::Null).await;
    assert_eq!(list["jobs"], json!([]));
}

#[tokio::test]
async fn a_job_whose_start_messages_could_not_be_queued_is_accepted_and_never_retried_into_a_second_job()
 {
    let a = api(CallbackPolicy::default());
    // SQS refuses the chunk's start message; no Idempotency-Key was sent.
    a.submit_queue.fail_sends(1);
    let (status, body) = call(&a, "POST", "/jobs", &[], &job(2)).await;
    assert_eq!(
        status, 202,
        "the job is recorded, and its start is the sweeper's: {body}"
    );
    // (`retry_of`, null here, names the job a retry job retries: no advice.)
    let mut told = body.clone();
    assert_eq!(
        told.as_object_mut().unwrap().remove("retry_of"),
        Some(Value::Null)
    );
    assert!(
        !told.to_string().contains("retry"),
        "a client is never told to retry into a second job: {body}"
    );
    let job_id = &JobId::new(body["job_id"].as_str().unwrap());
    let (_, got) = call(&a, "GET", &format!("/jobs/{job_id}"), &[], &Value::Null).await;
    assert_eq!(got["chunks"][0]["status"], "pending", "{got}");
    assert!(starts(&a).is_empty(), "its message was lost");
}

/// Issue 24 item 10: the erasure is recorded with the DELETE (the sweeper finds a deleted job
/// not erased yet), so a DELETE whose erasure message could not be queued is still accepted; a
/// retry of it, before the job is erased, queues the erasure again (never a 404 that leaves the
/// data in place). Once erased, the job is gone: 404.
#[tokio::test]
async fn a_delete_whose_erasure_was_not_queued_is_accepted_and_its_retry_queues_it_again() {
    use relay_shared::store::SubmitLedger;
    let a = api(CallbackPolicy::default());
    let (_, created) = call(&a, "POST", "/jobs", &[], &job(2)).await;
    let id = JobId::new(created["job_id"].as_str().unwrap());
    starts(&a);
    let path = format!("/jobs/{id}");
    let erase = vec![serde_json::from_str::<SubmitChunk>(&SubmitChunk::delete(&id)).unwrap()];
    a.submit_queue.fail_sends(1);
    let (status, body) = call(&a, "DELETE", &path, &[], &Value::Null).await;
    assert_eq!(
        (status, &body["status"]),
        (202, &json!("deleting")),
        "{body}"
    );
    assert!(starts(&a).is_empty(), "the message was lost");
    let (status, _) = call(&a, "GET", &path, &[], &Value::Null).await;
    assert_eq!(status, 404, "the job reads as gone at once");
    let (status, body) = call(&a, "DELETE", &path, &[], &Value::Null).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(starts(&a), erase, "the retry queues the erasure again");
    // The worker erases it; a DELETE after that finds nothing to erase.
    while a.jobs.delete_items(&id, 100).await.unwrap() > 0 {}
    a.jobs.finish_erasure(&id).await.unwrap();
    let (status, _) = call(&a, "DELETE", &path, &[], &Value::Null).await;
    assert_eq!(status, 404, "erased already");
    assert!(starts(&a).is_empty());
}

/// Issue 24 item 14: a creation that failed part-way (its head written, still `creating`, with
/// some contacts and no chunk) starts nothing and is not listed; the retry with the same
/// `Idempotency-Key` writes the same job again, whole, and queues each chunk once.
#[tokio::test]
async fn a_retry_with_its_idempotency_key_writes_again_a_job_whose_creation_failed_part_way() {
    let a = api(CallbackPolicy::default());
    let key = [("idempotency-key", "crm-sync-7")];
    // 150 FullEnrich contacts: two chunks.
    let contacts: Vec<Value> = (0..150)
        .map(|i| json!({"linkedin_url": format!("https://www.linkedin.com/in/p-{i}")}))
        .collect();
    let body = json!({"provider": "fullenrich", "operation": "enrich", "contacts": contacts});
    a.jobs.fail_creations(1);
    let (status, e) = call(&a, "POST", "/jobs", &key, &body).await;
    assert_eq!(status, 503, "{e}");
    assert!(starts(&a).is_empty());
    let (_, list) = call(&a, "GET", "/jobs", &[], &Value::Null).await;
    assert_eq!(list["jobs"], json!([]), "a job never created is not listed");

    let (status, created) = call(&a, "POST", "/jobs", &key, &body).await;
    assert_eq!(status, 202, "{created}");
    let id = &JobId::new(created["job_id"].as_str().unwrap());
    let (_, view) = call(&a, "GET", &format!("/jobs/{id}"), &[], &Value::Null).await;
    assert_eq!(view["contacts"], 150);
    let mut queued: Vec<u32> = starts(&a).iter().map(|s| s.chunk.get()).collect();
    queued.sort();
    let chunks = view["chunks"].as_array().unwrap().len() as u32;
    assert_eq!(chunks, 2);
    assert_eq!(
        queued,
        (0..chunks).collect::<Vec<_>>(),
        "each chunk queued once"
    );
    let (_, list) = call(&a, "GET", "/jobs", &[], &Value::Null).await;
    assert_eq!(list["jobs"][0]["job_id"], id.as_str());
}

#[tokio::test]
async fn orphans_are_listed_newest_first_in_pages_behind_the_token() {
    use relay_shared::store::{Orphan, OrphanStore};
    let a = api(CallbackPolicy::default());
    for (i, id) in ["s-old", "s-mid", "s-new"].iter().enumerate() {
        a.jobs
            .put_orphan(&Orphan {
                provider: relay_shared::Provider::Enrow,
                provider_id: ProviderId::new(*id),
                event: "single_search_finished".into(),
                received_at_ms: 1_700_000_000_000 + i as u64,
                delivery_id: uuid::Uuid::new_v4().to_string(),
                credits: Some(1.0),
            })
            .await
            .unwrap();
    }
    let (status, page) = call(&a, "GET", "/orphans?limit=2", &[], &Value::Null).await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["provider_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s-new", "s-mid"]);
    assert_eq!(page["orphans"][0]["event"], "single_search_finished");
    assert_eq!(page["orphans"][0]["received_at"], 1_700_000_000_002u64);
    let cursor = page["next_cursor"].as_str().unwrap().replace('#', "%23");
    let (_, rest) = call(
        &a,
        "GET",
        &format!("/orphans?limit=2&cursor={cursor}"),
        &[],
        &Value::Null,
    )
    .await;
    assert_eq!(rest["orphans"][0]["provider_id"], "s-old");
    assert_eq!(rest["next_cursor"], Value::Null);

    let (status, e) = call(&a, "GET", "/orphans?limit=0", &[], &Value::Null).await;
    assert_eq!((status, e["error"]["field"].as_str()), (400, Some("limit")));
    let (status, e) = call(&a, "GET", "/orphans?cursor=nope", &[], &Value::Null).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (400, Some("cursor"))
    );
    let (status, _) = call(&a, "POST", "/orphans", &[], &Value::Null).await;
    assert_eq!(status, 405);
    let event = relay_shared::testing::apigw_v2_event("GET", "/orphans", &[], &[]);
    let req = lambda_http::request::from_str(&event.to_string()).unwrap();
    assert_eq!(
        a.handle(req).await.status().as_u16(),
        401,
        "the API token is needed"
    );
}
