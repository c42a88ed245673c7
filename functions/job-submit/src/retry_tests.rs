//! `POST /jobs/{id}/retry` on the in-memory stores: which contacts a retry takes, and what it
//! never takes without being asked.

use relay_shared::jobs::{ContactResult, JobStatus, Outcome, reasons};
use relay_shared::queue::MemoryQueue;
use relay_shared::store::contract::{chunk_ref, completed};
use relay_shared::store::memory::MemoryJobs;
use relay_shared::store::{Jobs, Results};
use relay_shared::validate::CallbackPolicy;
use relay_shared::{ChunkIndex, JobId};
use serde_json::{Value, json};

use crate::api_tests::{api, call, starts};

type TestApi = crate::Api<MemoryJobs, MemoryQueue>;

/// A finished `email_verify` job of six contacts: 0 valid, 1 timed out, 2 start unconfirmed,
/// 3 canceled, 4 refused alone by the provider, 5 invalid. Its id.
async fn finished_job(a: &TestApi) -> JobId {
    let contacts: Vec<Value> = (0..6)
        .map(|i| json!({"email": format!("p{i}@example.com"), "custom": {"crm_id": format!("c{i}")}}))
        .collect();
    let body = json!({"provider": "enrow", "operation": "email_verify", "name": "leads",
        "callback_url": "https://hooks.example.com/done", "max_credits": 5, "contacts": contacts});
    let (status, created) = call(a, "POST", "/jobs", &[], &body).await;
    assert_eq!(status, 202, "{created}");
    let id = JobId::new(created["job_id"].as_str().unwrap());
    starts(a);
    let stored = a.jobs.contacts(&id, 0, 6).await.unwrap();
    let ended = |i: usize, outcome: Outcome, reason: Option<&str>| ContactResult {
        outcome,
        reason: reason.map(str::to_string),
        ..ContactResult::failed(&stored[i], "x")
    };
    let results = vec![
        ended(0, Outcome::Valid, None),
        ended(1, Outcome::Failed, Some(reasons::TIMED_OUT)),
        ended(2, Outcome::Failed, Some(reasons::START_UNCONFIRMED)),
        ended(3, Outcome::Failed, Some(reasons::CANCELED)),
        ended(4, Outcome::Failed, Some(reasons::REJECTED_BY_PROVIDER)),
        ended(5, Outcome::Invalid, None),
    ];
    assert_eq!(end(a, &id, results).await, Some(JobStatus::PartiallyFailed));
    id
}

/// `POST /jobs/{job}/retry` with no body: its status and body.
async fn retry(a: &TestApi, job: impl std::fmt::Display) -> (u16, Value) {
    call(a, "POST", &format!("/jobs/{job}/retry"), &[], &Value::Null).await
}

/// Ends the job's one chunk with `results` (as its provider's result set) and settles the job.
async fn end(a: &TestApi, id: &JobId, results: Vec<ContactResult>) -> Option<JobStatus> {
    let chunk = chunk_ref(ChunkIndex(0), 0, results.len() as u64);
    let done = completed(ChunkIndex(0));
    a.jobs.store_chunk(id, chunk, results, done).await.unwrap();
    a.jobs.settle_job(id).await.unwrap()
}

#[tokio::test]
async fn a_retry_is_a_new_job_of_exactly_the_retryable_failures_and_never_the_unconfirmed_unasked()
{
    let a = api(CallbackPolicy::default());
    let first = finished_job(&a).await;

    let (status, got) = retry(&a, &first).await;
    assert_eq!(status, 202, "{got}");
    assert_eq!(got["retry_of"], first.as_str());
    assert_eq!(
        (got["retried"].as_u64(), got["unconfirmed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(got["unconfirmed_included"], false);
    let second = JobId::new(got["job_id"].as_str().unwrap());
    assert_ne!(second, first);
    // Contacts 1 and 4, as they were submitted, with their custom; the same name and callback.
    let contacts = a.jobs.contacts(&second, 0, 10).await.unwrap();
    let sent: Vec<_> = contacts
        .iter()
        .map(|c| (c.field("email").unwrap().to_string(), c.custom.clone()))
        .collect();
    assert_eq!(
        sent,
        [
            ("p1@example.com".to_string(), Some(json!({"crm_id": "c1"}))),
            ("p4@example.com".to_string(), Some(json!({"crm_id": "c4"}))),
        ]
    );
    let head = a.jobs.get_job(&second).await.unwrap().unwrap();
    assert_eq!(head.retry_of.as_ref(), Some(&first));
    // Nothing of the first job's budget was reserved (its results were written here directly).
    assert_eq!(
        head.budget.map(|b| b.max),
        Some(5.0),
        "what the first job left of its budget"
    );
    assert_eq!(
        head.callback_url.as_deref(),
        Some("https://hooks.example.com/done")
    );
    assert_eq!(
        (head.name.as_deref(), head.operation),
        (Some("leads"), relay_shared::jobs::Operation::EmailVerify)
    );
    assert_eq!(starts(&a).len(), 1, "its chunk is queued for its start");
    let (_, shown) = call(&a, "GET", &format!("/jobs/{second}"), &[], &Value::Null).await;
    assert_eq!(shown["retry_of"], first.as_str());

    // Asked, the unconfirmed contact goes too (it may have been billed once: the answer says so).
    let asked = json!({"include_unconfirmed": true});
    let (status, got) = call(&a, "POST", &format!("/jobs/{first}/retry"), &[], &asked).await;
    assert_eq!(status, 202, "{got}");
    assert_eq!(
        (got["retried"].as_u64(), got["unconfirmed"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(got["unconfirmed_included"], true);
    let third = JobId::new(got["job_id"].as_str().unwrap());
    let emails: Vec<_> = a
        .jobs
        .contacts(&third, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|c| c.field("email").unwrap().to_string())
        .collect();
    assert_eq!(
        emails,
        ["p1@example.com", "p2@example.com", "p4@example.com"]
    );
}

#[tokio::test]
async fn a_retry_under_one_idempotency_key_makes_one_job() {
    let a = api(CallbackPolicy::default());
    let first = finished_job(&a).await;
    let key = [("idempotency-key", "retry-once")];
    let path = format!("/jobs/{first}/retry");
    let (s1, one) = call(&a, "POST", &path, &key, &Value::Null).await;
    let (s2, two) = call(&a, "POST", &path, &key, &Value::Null).await;
    assert_eq!((s1, s2), (202, 202), "{one} {two}");
    assert_eq!(one["job_id"], two["job_id"]);
    assert_eq!(two["retried"], 2);
}

#[tokio::test]
async fn a_running_job_an_unknown_one_and_one_with_nothing_to_retry_are_refused() {
    let a = api(CallbackPolicy::default());
    let body = json!({"provider": "enrow", "operation": "email_verify", "contacts": [{"email": "a@example.com"}]});
    let (_, created) = call(&a, "POST", "/jobs", &[], &body).await;
    let running = created["job_id"].as_str().unwrap();
    let (status, got) = retry(&a, running).await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (409, Some("job_running"))
    );

    let (status, _) = call(&a, "POST", "/jobs/job_nope/retry", &[], &Value::Null).await;
    assert_eq!(status, 404);

    let first = finished_job(&a).await;
    let bad = json!({"include_unconfirmed": "yes"});
    let (status, got) = call(&a, "POST", &format!("/jobs/{first}/retry"), &[], &bad).await;
    assert_eq!(status, 400);
    assert_eq!(got["error"]["field"], "include_unconfirmed");

    // Retry the retry: its contacts have no result yet, so it is still running; once its
    // contacts end valid there is nothing left to retry.
    let (_, got) = retry(&a, &first).await;
    let second = JobId::new(got["job_id"].as_str().unwrap());
    let stored = a.jobs.contacts(&second, 0, 10).await.unwrap();
    let valid: Vec<_> = stored
        .iter()
        .map(|c| ContactResult {
            outcome: Outcome::Valid,
            reason: None,
            ..ContactResult::failed(c, "x")
        })
        .collect();
    end(&a, &second, valid).await;
    let (status, got) = retry(&a, &second).await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (409, Some("nothing_to_retry"))
    );
}
