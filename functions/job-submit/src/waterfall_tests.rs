//! `POST /jobs` with `steps` on the in-memory store: validation naming the step and the field,
//! the records a waterfall is (its steps' jobs, its head), what is listed and shown, and an
//! erasure of every step.

use relay_shared::store::{JobWriter, Jobs};
use relay_shared::validate::CallbackPolicy;
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
    let (status, e) = call(&a, "POST", "/jobs", &[], &waterfall(vec![person(0), no_company])).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "contacts[1].company_domain");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("steps[0] (enrow email_find): "), "{message}");
    // A later step's format: a field it would send, malformed.
    let mut bad_linkedin = person(1);
    bad_linkedin["linkedin_url"] = json!("https://example.com/not-a-profile");
    let (status, e) = call(&a, "POST", "/jobs", &[], &waterfall(vec![bad_linkedin])).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "contacts[0].linkedin_url");
    assert!(e["error"]["message"].as_str().unwrap().starts_with("steps[1] (fullenrich enrich): "));
    assert!(!e.to_string().contains("not-a-profile"), "no value echoed");
    // The plan itself.
    let cases = [
        (json!({"provider": "enrow"}), "provider"),
        (json!({"steps": []}), "steps"),
        (json!({"steps": [{"provider": "enrow", "operation": "enrich"}]}), "steps[0].operation"),
        (
            json!({"steps": [{"provider": "fullenrich", "operation": "enrich", "options": {"enrich_fields": ["x"]}}]}),
            "steps[0].options.enrich_fields[0]",
        ),
        (json!({"verify": {"provider": "enrow", "operation": "email_find"}}), "verify.operation"),
        (json!({"verify": {"provider": "enrow", "operation": "email_verify", "when": "later"}}), "verify.when"),
        (json!({"max_credits_per_contact": 0.5}), "max_credits_per_contact"),
    ];
    for (change, field) in cases {
        let mut body = waterfall(vec![person(0)]);
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, e) = call(&a, "POST", "/jobs", &[], &body).await;
        assert_eq!((status, e["error"]["field"].as_str()), (400, Some(field)), "{e}");
    }
    assert!(starts(&a).is_empty(), "nothing started");
    assert!(a.jobs.list_jobs(10, None).await.unwrap().0.is_empty());
}

#[tokio::test]
async fn a_waterfall_is_its_steps_jobs_under_one_head_and_is_erased_whole() {
    let a = api(CallbackPolicy::default());
    let mut no_name = person(1);
    no_name.as_object_mut().unwrap().remove("last_name");
    let (status, e) = call(&a, "POST", "/jobs", &[], &waterfall(vec![person(0), no_name])).await;
    assert_eq!(status, 400, "half a name is refused by the first step: {e}");
    let (status, v) = call(&a, "POST", "/jobs", &[], &waterfall(vec![person(0), person(1), person(2)])).await;
    assert_eq!(status, 202, "{v}");
    let id = JobId::new(v["job_id"].as_str().unwrap());
    assert_eq!((v["contacts"].as_u64(), v["status"].as_str()), (Some(3), Some("accepted")));
    // The first step's chunks, and only them, are asked to start.
    let first = JobId::new(format!("{id}_s0"));
    let queued = starts(&a);
    assert!(!queued.is_empty());
    assert!(queued.iter().all(|m| m.job_id == first && m.action == SubmitAction::Start));
    // Listed once: the waterfall, not its steps.
    let (_, list) = call(&a, "GET", "/jobs", &[], &Value::Null).await;
    let listed: Vec<&str> = list["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap()).collect();
    assert_eq!(listed, [id.as_str()]);
    // Shown with its steps, its budget and its per-contact ceiling.
    let (status, job) = call(&a, "GET", &format!("/jobs/{id}"), &[], &Value::Null).await;
    assert_eq!(status, 200);
    let steps = job["steps"].as_array().unwrap();
    let kinds: Vec<(&str, &str, u64)> = steps
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["provider"].as_str().unwrap(), s["contacts"].as_u64().unwrap()))
        .collect();
    assert_eq!(kinds, [("find", "enrow", 3), ("find", "fullenrich", 0), ("verify", "enrow", 0)]);
    assert_eq!(job["credits"]["budget"], 50.0);
    assert_eq!(job["credits"]["max_credits_per_contact"], 2.5);
    assert_eq!(job["found_rate"], 0.0);
    // The first step holds every contact with every step's fields.
    let contacts = a.jobs.contacts(&first, 0, 3).await.unwrap();
    assert_eq!(contacts.len(), 3);
    for k in ["fullname", "company_domain", "first_name", "last_name", "domain"] {
        assert!(contacts[0].field(k).is_some(), "{k}");
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
