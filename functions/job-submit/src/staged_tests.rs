//! Staged jobs on the in-memory stores: a job too large for one request body (Lambda takes at
//! most 6 MB) made in pages (`POST /jobs` with `staged`, `POST /jobs/{id}/contacts`,
//! `POST /jobs/{id}/start`). Validation, the `Idempotency-Key` and the start rule hold as on
//! `POST /jobs`. DynamoDB's side (the page claim, the seal, the erasure partition) is
//! `tests/it/staged.rs`'s.

use relay_shared::jobs::ChunkStatus;
use relay_shared::store::{JobDrafts, Jobs};
use serde_json::{Value, json};

use crate::api_tests::{api, call, starts};
use relay_shared::JobId;
use relay_shared::validate::CallbackPolicy;

/// A FullEnrich enrich contact (chunks of 100), its `custom` naming it.
fn contact(i: usize) -> Value {
    json!({"linkedin_url": format!("https://www.linkedin.com/in/p{i}"),
        "custom": {"crm_id": format!("c{i}"), "owner": "ops", "stage": "lead"}})
}

fn contacts(from: usize, to: usize) -> Vec<Value> {
    (from..to).map(contact).collect()
}

fn staged(n: u64) -> Value {
    json!({"provider": "fullenrich", "operation": "enrich", "name": "big",
        "staged": {"contacts": n, "digest": "d1"}})
}

fn page(offset: usize, to: usize) -> Value {
    json!({"offset": offset, "contacts": contacts(offset, to)})
}

#[tokio::test]
async fn a_staged_job_takes_its_contacts_in_pages_and_starts_once_they_are_all_in() {
    let a = api(CallbackPolicy::default());
    let (status, job) = call(&a, "POST", "/jobs", &[], &staged(250)).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["status"], "draft");
    assert_eq!(
        (job["contacts"].as_u64(), job["chunks"].as_u64()),
        (Some(250), Some(3))
    );
    let id = JobId::new(job["job_id"].as_str().unwrap());
    assert!(starts(&a).is_empty(), "a draft queues nothing");
    let contacts_path = format!("/jobs/{id}/contacts");
    // Pages in any order.
    for (from, to) in [(100, 250), (0, 100)] {
        let (status, body) = call(&a, "POST", &contacts_path, &[], &page(from, to)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["written"], true);
        assert_eq!(body["contacts"].as_u64(), Some((to - from) as u64));
    }
    assert!(starts(&a).is_empty(), "pages queue nothing");
    let (_, head) = call(&a, "GET", &format!("/jobs/{id}"), &[], &Value::Null).await;
    assert_eq!(head["status"], "draft");
    assert_eq!(head["chunks"], json!([]));

    let (status, body) = call(&a, "POST", &format!("/jobs/{id}/start"), &[], &json!({})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["chunks"].as_u64(), Some(3));
    let queued: Vec<u32> = starts(&a).iter().map(|m| m.chunk.get()).collect();
    assert_eq!(queued, vec![0, 1, 2], "every chunk queued once");
    // The contacts stored are the ones a single POST /jobs would store, in the job's order.
    let stored = a.jobs.contacts(&id, 0, 250).await.unwrap();
    let single = relay_shared::validate::validate(&json!({"provider": "fullenrich",
        "operation": "enrich", "contacts": contacts(0, 250)}))
    .unwrap();
    assert_eq!(stored, single.contacts);
    let chunks = a.jobs.chunks(&id).await.unwrap();
    assert!(chunks.iter().all(|c| c.status == ChunkStatus::Pending));
    assert_eq!(chunks.iter().map(|c| c.count).sum::<u64>(), 250);

    // Started: a start again answers the same and plans nothing new; a page again is a no-op,
    // a new page is refused.
    let (status, again) = call(&a, "POST", &format!("/jobs/{id}/start"), &[], &json!({})).await;
    assert_eq!((status, &again["job_id"]), (202, &body["job_id"]));
    assert_eq!(a.jobs.chunks(&id).await.unwrap(), chunks);
    let (status, body) = call(&a, "POST", &contacts_path, &[], &page(0, 100)).await;
    assert_eq!((status, &body["written"]), (200, &json!(false)), "{body}");
    let (status, body) = call(&a, "POST", &contacts_path, &[], &page(0, 99)).await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test]
async fn a_page_sent_again_is_a_no_op_and_another_body_at_its_offset_is_a_conflict() {
    let a = api(CallbackPolicy::default());
    let (_, job) = call(&a, "POST", "/jobs", &[], &staged(200)).await;
    let id = &JobId::new(job["job_id"].as_str().unwrap());
    let path = format!("/jobs/{id}/contacts");
    let (status, first) = call(&a, "POST", &path, &[], &page(0, 100)).await;
    assert_eq!((status, &first["written"]), (200, &json!(true)));
    let (status, again) = call(&a, "POST", &path, &[], &page(0, 100)).await;
    assert_eq!((status, &again["written"]), (200, &json!(false)), "{again}");
    let mut other = page(0, 100);
    other["contacts"][5] = contact(999);
    let (status, e) = call(&a, "POST", &path, &[], &other).await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["code"], "page_conflict");
    assert_eq!(e["error"]["field"], "offset");
    // The first page's contacts are kept.
    let kept = a.jobs.contacts(id, 5, 1).await.unwrap();
    assert_eq!(kept[0].custom.as_ref().unwrap()["crm_id"], "c5");
}

#[tokio::test]
async fn a_bad_contact_in_a_page_is_named_by_its_index_in_the_whole_job_and_nothing_is_stored() {
    let a = api(CallbackPolicy::default());
    let (_, job) = call(&a, "POST", "/jobs", &[], &staged(300)).await;
    let id = &JobId::new(job["job_id"].as_str().unwrap());
    let path = format!("/jobs/{id}/contacts");
    let mut bad = page(100, 200);
    bad["contacts"][3]["linkedin_url"] = json!("https://evil.example/in/x");
    let (status, e) = call(&a, "POST", &path, &[], &bad).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "contacts[103].linkedin_url");
    assert!(!e.to_string().contains("evil.example"), "no value echoed");
    let mut big = page(200, 201);
    big["contacts"][0]["custom"]["note"] = json!("x".repeat(2100));
    let (status, e) = call(&a, "POST", &path, &[], &big).await;
    assert_eq!(
        (status, &e["error"]["field"]),
        (400, &json!("contacts[200].custom"))
    );
    assert!(a.jobs.pages(id).await.unwrap().is_empty());
    assert!(a.jobs.contacts(id, 0, 300).await.unwrap().is_empty());
    // A page past the job's announced count, and a page without its offset.
    let (status, e) = call(&a, "POST", &path, &[], &page(250, 301)).await;
    assert_eq!(
        (status, &e["error"]["field"]),
        (400, &json!("contacts")),
        "{e}"
    );
    let (status, e) = call(&a, "POST", &path, &[], &json!({"contacts": contacts(0, 1)})).await;
    assert_eq!(
        (status, &e["error"]["field"]),
        (400, &json!("offset")),
        "{e}"
    );
    // The staged head's own rules.
    for (body, field) in [
        (
            json!({"provider": "fullenrich", "operation": "enrich", "staged": {}}),
            "staged.contacts",
        ),
        (
            json!({"provider": "fullenrich", "operation": "enrich", "staged": {"contacts": 50_001}}),
            "staged.contacts",
        ),
        (
            json!({"provider": "fullenrich", "operation": "enrich", "staged": {"contacts": 2},
            "contacts": contacts(0, 2)}),
            "contacts",
        ),
        (
            json!({"provider": "fullenrich", "operation": "enrich", "staged": {"contacts": 2},
            "options": {"deadline_hours": 0}}),
            "options.deadline_hours",
        ),
    ] {
        let (status, e) = call(&a, "POST", "/jobs", &[], &body).await;
        assert_eq!(
            (status, e["error"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {e}"
        );
    }
}

#[tokio::test]
async fn a_start_with_pages_missing_is_refused_and_the_draft_keeps_taking_them() {
    let a = api(CallbackPolicy::default());
    let (_, job) = call(&a, "POST", "/jobs", &[], &staged(300)).await;
    let id = &JobId::new(job["job_id"].as_str().unwrap());
    let path = format!("/jobs/{id}/contacts");
    let start = format!("/jobs/{id}/start");
    call(&a, "POST", &path, &[], &page(0, 100)).await;
    call(&a, "POST", &path, &[], &page(200, 300)).await;
    let (status, e) = call(&a, "POST", &start, &[], &json!({})).await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["code"], "pages_missing");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("contacts 100 to 199"),
        "{e}"
    );
    assert!(a.jobs.chunks(id).await.unwrap().is_empty() && starts(&a).is_empty());
    // An overlapping page is taken, but the job cannot start with it.
    call(&a, "POST", &path, &[], &page(50, 150)).await;
    let (status, e) = call(&a, "POST", &start, &[], &json!({})).await;
    assert_eq!(status, 409);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("overlaps"),
        "{e}"
    );

    let a = api(CallbackPolicy::default());
    let (_, job) = call(&a, "POST", "/jobs", &[], &staged(300)).await;
    let id = &JobId::new(job["job_id"].as_str().unwrap());
    let path = format!("/jobs/{id}/contacts");
    call(&a, "POST", &path, &[], &page(0, 100)).await;
    call(&a, "POST", &path, &[], &page(200, 300)).await;
    let (status, _) = call(&a, "POST", &format!("/jobs/{id}/start"), &[], &json!({})).await;
    assert_eq!(status, 409);
    // The refused start lifted its seal: the missing page comes, and the job starts.
    let (status, body) = call(&a, "POST", &path, &[], &page(100, 200)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&a, "POST", &format!("/jobs/{id}/start"), &[], &json!({})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(starts(&a).len(), 3);
}

#[tokio::test]
async fn a_start_holding_the_seal_keeps_pages_out_and_a_second_start_waits() {
    let a = api(CallbackPolicy::default());
    let (_, job) = call(&a, "POST", "/jobs", &[], &staged(100)).await;
    let id = &JobId::new(job["job_id"].as_str().unwrap());
    let path = format!("/jobs/{id}/contacts");
    // A start holds the seal (it is checking the pages, or writing the chunks).
    let seal = a
        .jobs
        .seal_draft(id, 60_000)
        .await
        .unwrap()
        .expect("sealed");
    let (status, e) = call(&a, "POST", &path, &[], &page(0, 100)).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("job_not_draft")),
        "{e}"
    );
    let (status, e) = call(&a, "POST", &format!("/jobs/{id}/start"), &[], &json!({})).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("start_in_progress"))
    );
    a.jobs.unseal_draft(id, seal).await.unwrap();
    let (status, _) = call(&a, "POST", &path, &[], &page(0, 100)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_idempotency_key_resumes_the_same_draft_and_refuses_other_contacts() {
    let a = api(CallbackPolicy::default());
    let key = [("idempotency-key", "big-1")];
    let (s1, first) = call(&a, "POST", "/jobs", &key, &staged(100)).await;
    let (s2, again) = call(&a, "POST", "/jobs", &key, &staged(100)).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["job_id"], again["job_id"]);
    assert_eq!(again["status"], "draft");
    let mut other = staged(100);
    other["staged"]["digest"] = json!("d2");
    let (status, e) = call(&a, "POST", "/jobs", &key, &other).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    // Started, the key answers with the started job.
    let id = &JobId::new(first["job_id"].as_str().unwrap());
    call(
        &a,
        "POST",
        &format!("/jobs/{id}/contacts"),
        &[],
        &page(0, 100),
    )
    .await;
    call(&a, "POST", &format!("/jobs/{id}/start"), &[], &json!({})).await;
    let (_, after) = call(&a, "POST", "/jobs", &key, &staged(100)).await;
    assert_eq!(
        (&after["job_id"], &after["status"]),
        (&first["job_id"], &json!("accepted"))
    );
}

#[tokio::test]
async fn a_draft_is_deleted_like_any_job() {
    let a = api(CallbackPolicy::default());
    let (_, job) = call(&a, "POST", "/jobs", &[], &staged(100)).await;
    let id = &JobId::new(job["job_id"].as_str().unwrap());
    call(
        &a,
        "POST",
        &format!("/jobs/{id}/contacts"),
        &[],
        &page(0, 100),
    )
    .await;
    let (status, _) = call(&a, "DELETE", &format!("/jobs/{id}"), &[], &Value::Null).await;
    assert_eq!(status, 202);
    let (status, _) = call(&a, "POST", &format!("/jobs/{id}/start"), &[], &json!({})).await;
    assert_eq!(status, 404, "a deleted draft never starts");
    let (status, _) = call(
        &a,
        "POST",
        &format!("/jobs/{id}/contacts"),
        &[],
        &page(0, 1),
    )
    .await;
    assert_eq!(status, 404);
}

#[test]
fn pages_cover_the_job_once_from_offset_zero() {
    use crate::pages_cover;
    use relay_shared::store::Page;
    let p = |offset, count, complete| Page {
        offset,
        count,
        sha256: String::new(),
        complete,
    };
    assert!(pages_cover(&[p(0, 10, true), p(10, 5, true)], 15).is_ok());
    assert!(
        pages_cover(&[p(0, 10, true)], 15)
            .unwrap_err()
            .contains("10 to 14")
    );
    assert!(
        pages_cover(&[p(5, 10, true)], 15)
            .unwrap_err()
            .contains("0 to 4")
    );
    assert!(
        pages_cover(&[p(0, 10, true), p(8, 7, true)], 15)
            .unwrap_err()
            .contains("overlaps")
    );
    assert!(
        pages_cover(&[p(0, 15, false)], 15)
            .unwrap_err()
            .contains("still being written")
    );
    assert!(pages_cover(&[], 1).is_err());
}
