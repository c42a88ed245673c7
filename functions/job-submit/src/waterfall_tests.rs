//! `POST /jobs` with `steps` on the in-memory store: validation naming the step and the field,
//! the records a waterfall is (its steps' jobs, its head), what is listed and shown, and an
//! erasure of every step.

use relay_shared::ChunkIndex;
use relay_shared::jobs::{ContactResult, JobStatus, Outcome, reasons};
use relay_shared::queue::MemoryQueue;
use relay_shared::store::contract::{chunk_ref, completed};
use relay_shared::store::memory::MemoryJobs;
use relay_shared::store::{JobWriter, Jobs, Results};
use relay_shared::validate::CallbackPolicy;
use relay_shared::waterfall::advance;
use serde_json::{Value, json};

use crate::SubmitAction;
use crate::api_tests::{api, call, starts};
use relay_shared::JobId;

fn waterfall(contacts: Vec<Value>) -> Value {
    json!({
        "name": "wf", "max_credits": 50, "max_credits_per_contact": 2.5, "contacts": contacts,
        "steps": [
            {"provider": "enrow", "operation": "email_find"},
            {"provider": "fullenrich", "operation": "enrich",
             "options": {"enrich_fields": ["contact.work_emails"]}}],
        "verify": {"provider": "enrow", "operation": "email_verify", "when": "found_by_fullenrich"}
    })
}

/// `POST /jobs` with `body`.
async fn post(a: &crate::Api<MemoryJobs, MemoryQueue>, body: &Value) -> (u16, Value) {
    call(a, "POST", "/jobs", &[], body).await
}

fn person(i: usize) -> Value {
    json!({"first_name": "Ada", "last_name": format!("L{i}"), "domain": "example.com",
        "custom": {"crm_id": format!("c{i}")}})
}

#[tokio::test]
async fn a_waterfall_refusal_names_the_step_and_the_field() {
    let a = api(CallbackPolicy::default());
    // The first step's need: every contact must meet it.
    let mut no_company = person(1);
    no_company.as_object_mut().unwrap().remove("domain");
    let (status, e) = post(&a, &waterfall(vec![person(0), no_company])).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "contacts[1].company_domain");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("steps[0] (enrow email_find): "),
        "{message}"
    );
    // A later step's format: a field it would send, malformed.
    let mut bad_linkedin = person(1);
    bad_linkedin["linkedin_url"] = json!("https://example.com/not-a-profile");
    let (status, e) = post(&a, &waterfall(vec![bad_linkedin])).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "contacts[0].linkedin_url");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("steps[1] (fullenrich enrich): ")
    );
    assert!(!e.to_string().contains("not-a-profile"), "no value echoed");
    // The plan itself.
    let cases = [
        (json!({"provider": "enrow"}), "provider"),
        (json!({"steps": []}), "steps"),
        (
            json!({"steps": [{"provider": "enrow", "operation": "enrich"}]}),
            "steps[0].operation",
        ),
        (
            json!({"steps": [{"provider": "fullenrich", "operation": "enrich", "options": {"enrich_fields": ["x"]}}]}),
            "steps[0].options.enrich_fields[0]",
        ),
        (
            json!({"verify": {"provider": "enrow", "operation": "email_find"}}),
            "verify.operation",
        ),
        (
            json!({"verify": {"provider": "enrow", "operation": "email_verify", "when": "later"}}),
            "verify.when",
        ),
        (
            json!({"max_credits_per_contact": 0.5}),
            "max_credits_per_contact",
        ),
    ];
    for (change, field) in cases {
        let mut body = waterfall(vec![person(0)]);
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, e) = post(&a, &body).await;
        assert_eq!(
            (status, e["error"]["field"].as_str()),
            (400, Some(field)),
            "{e}"
        );
    }
    assert!(starts(&a).is_empty(), "nothing started");
    assert!(a.jobs.list_jobs(10, None).await.unwrap().0.is_empty());
}

#[tokio::test]
async fn a_waterfall_is_its_steps_jobs_under_one_head_and_is_erased_whole() {
    let a = api(CallbackPolicy::default());
    let mut no_name = person(1);
    no_name.as_object_mut().unwrap().remove("last_name");
    let (status, e) = post(&a, &waterfall(vec![person(0), no_name])).await;
    assert_eq!(status, 400, "half a name is refused by the first step: {e}");
    let (status, v) = post(&a, &waterfall(vec![person(0), person(1), person(2)])).await;
    assert_eq!(status, 202, "{v}");
    let id = JobId::new(v["job_id"].as_str().unwrap());
    assert_eq!(
        (v["contacts"].as_u64(), v["status"].as_str()),
        (Some(3), Some("accepted"))
    );
    // The first step's chunks, and only them, are asked to start.
    let first = JobId::new(format!("{id}_s0"));
    let queued = starts(&a);
    assert!(!queued.is_empty());
    assert!(
        queued
            .iter()
            .all(|m| m.job_id == first && m.action == SubmitAction::Start)
    );
    // Listed once: the waterfall, not its steps.
    let (_, list) = call(&a, "GET", "/jobs", &[], &Value::Null).await;
    let listed: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [id.as_str()]);
    // Shown with its steps, its budget and its per-contact ceiling.
    let (status, job) = call(&a, "GET", &format!("/jobs/{id}"), &[], &Value::Null).await;
    assert_eq!(status, 200);
    let steps = job["steps"].as_array().unwrap();
    let kinds: Vec<(&str, &str, u64)> = steps
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap(),
                s["provider"].as_str().unwrap(),
                s["contacts"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("find", "enrow", 3),
            ("find", "fullenrich", 0),
            ("verify", "enrow", 0)
        ]
    );
    assert_eq!(job["credits"]["budget"], 50.0);
    assert_eq!(job["credits"]["max_credits_per_contact"], 2.5);
    assert_eq!(job["found_rate"], 0.0);
    // The first step holds every contact with every step's fields.
    let contacts = a.jobs.contacts(&first, 0, 3).await.unwrap();
    assert_eq!(contacts.len(), 3);
    for k in [
        "fullname",
        "company_domain",
        "first_name",
        "last_name",
        "domain",
    ] {
        assert!(contacts[0].field(k).is_some(), "{k}");
    }
    // A step alone is not canceled or deleted: the waterfall would wait for it.
    for (method, path) in [
        ("POST", format!("/jobs/{first}/cancel")),
        ("DELETE", format!("/jobs/{first}")),
    ] {
        let (status, e) = call(&a, method, &path, &[], &Value::Null).await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (409, Some("waterfall_step")),
            "{e}"
        );
    }
    // Erased whole: the head and every step.
    let (status, _) = call(&a, "DELETE", &format!("/jobs/{id}"), &[], &Value::Null).await;
    assert_eq!(status, 202);
    let erasures: Vec<JobId> = starts(&a)
        .into_iter()
        .filter(|m| m.action == SubmitAction::Delete)
        .map(|m| m.job_id)
        .collect();
    assert_eq!(erasures.len(), 4, "the head and its three steps");
    for step in ["_s0", "_s1", "_v"] {
        let s = JobId::new(format!("{id}{step}"));
        assert!(a.jobs.get_job(&s).await.unwrap().unwrap().deleted, "{step}");
    }
}

/// A row of contact `index` with `outcome` and `reason`.
fn row(index: u64, outcome: Outcome, reason: Option<&str>) -> ContactResult {
    ContactResult {
        reason: reason.map(str::to_string),
        ..relay_shared::store::contract::result(index, outcome, false)
    }
}

#[tokio::test]
async fn a_waterfall_retry_takes_its_retryable_failures_with_the_same_steps() {
    let a = api(CallbackPolicy::default());
    let (_, v) = post(&a, &waterfall(vec![person(0), person(1), person(2)])).await;
    let id = JobId::new(v["job_id"].as_str().unwrap());
    let q = MemoryQueue::default();
    // Step 1: 0 found, 1 not found (on to FullEnrich), 2 a start that may have been billed.
    let first = JobId::new(format!("{id}_s0"));
    let rows = vec![
        row(0, Outcome::Found, None),
        row(1, Outcome::NotFound, None),
        row(2, Outcome::Failed, Some(reasons::START_UNCONFIRMED)),
    ];
    a.jobs
        .store_chunk(
            &first,
            chunk_ref(ChunkIndex(0), 0, 3),
            rows,
            completed(ChunkIndex(0)),
        )
        .await
        .unwrap();
    let step = |j: &JobId| {
        let j = j.clone();
        let jobs = a.jobs.clone();
        async move { jobs.get_job(&j).await.unwrap().unwrap() }
    };
    advance(&a.jobs, &q, &q, &step(&first).await).await.unwrap();
    // Step 2 got contact 1 alone; FullEnrich loses it.
    let second = JobId::new(format!("{id}_s1"));
    let chunks = a.jobs.chunks(&second).await.unwrap();
    assert_eq!((chunks.len(), chunks[0].count), (1, 1));
    let lost = vec![row(0, Outcome::Failed, Some(reasons::PROVIDER_LOST))];
    a.jobs
        .store_chunk(
            &second,
            chunk_ref(chunks[0].index, 0, 1),
            lost,
            completed(chunks[0].index),
        )
        .await
        .unwrap();
    let ended = advance(&a.jobs, &q, &q, &step(&second).await)
        .await
        .unwrap();
    assert_eq!(
        ended,
        Some(JobStatus::PartiallyFailed),
        "the waterfall ended"
    );
    let (_, job) = call(&a, "GET", &format!("/jobs/{id}"), &[], &Value::Null).await;
    assert_eq!(
        (job["found"].as_u64(), job["failed"].as_u64()),
        (Some(1), Some(2)),
        "{job}"
    );
    let (_, page) = call(&a, "GET", &format!("/jobs/{id}/results"), &[], &Value::Null).await;
    let rows = page["results"].as_array().unwrap();
    assert_eq!(rows[1]["provider"], "fullenrich");
    assert_eq!(rows[1]["reason"], "provider_lost");
    assert_eq!(rows[1]["attempts"].as_array().unwrap().len(), 2);

    let (status, r) = call(&a, "POST", &format!("/jobs/{id}/retry"), &[], &Value::Null).await;
    assert_eq!(status, 202, "{r}");
    assert_eq!(
        (r["retried"].as_u64(), r["unconfirmed"].as_u64()),
        (Some(1), Some(1))
    );
    let new = JobId::new(r["job_id"].as_str().unwrap());
    let head = a.jobs.get_job(&new).await.unwrap().unwrap();
    assert_eq!(head.retry_of.as_ref(), Some(&id));
    let wf = head.waterfall.expect("the same steps");
    assert_eq!(wf.steps.len(), 2);
    assert!(wf.verify.is_some());
    assert_eq!(wf.max_credits_per_contact, Some(2.5));
    let contacts = a.jobs.contacts(&wf.steps[0].job_id, 0, 10).await.unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].custom,
        Some(json!({"crm_id": "c1"})),
        "contact 1 alone"
    );
    let with = json!({"include_unconfirmed": true});
    let (status, r) = call(&a, "POST", &format!("/jobs/{id}/retry"), &[], &with).await;
    assert_eq!((status, r["retried"].as_u64()), (202, Some(2)), "{r}");
}
