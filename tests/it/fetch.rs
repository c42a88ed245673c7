//! bulk-fetch against moto and the loopback provider stub: every delivery applied exactly once.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::AttributeValue;
use relay_local_stack::poller::Poller;
use relay_shared::Provider;
use relay_shared::jobs::{ChunkStatus, JobStatus, Operation, Outcome};
use relay_shared::providers::Hook;
use relay_shared::store::{Claim, DedupeStore, JobWriter, Jobs, Results};
use serde_json::{Value, json};

use crate::support::fetch::{ENROW_KEY, FULLENRICH_KEY, Fetch, enrow_event, fixture_json};
use crate::support::fixture;
use crate::support::lost_answer::LostAnswer;
use relay_shared::{ChunkIndex, ContactIndex, JobId, ProviderId};

pub(crate) fn finder(i: usize) -> (Value, Value) {
    (
        json!({ "fullname": format!("Person {i}"), "company_domain": "dundermifflin.com" }),
        json!({ "crm_id": format!("lead_{i}") }),
    )
}

fn enrow_env(job: &JobId, body: &[u8]) -> String {
    Fetch::envelope(Provider::Enrow, Hook::Event, job, body)
}

#[tokio::test]
async fn enrow_single_events_store_one_result_each() {
    let f = Fetch::new().await;
    let id = "910f3e13-b2bf-442d-ab0b-4cf44dfrij84fjrt";

    let find = f
        .seed(Operation::EmailFind, vec![finder(0)], 1, &[id])
        .await;
    let verify = f
        .seed(
            Operation::EmailVerify,
            vec![(
                json!({"email": "pam.beesly@dundermifflin.com"}),
                json!({"crm_id": "v"}),
            )],
            1,
            &[id],
        )
        .await;
    let phone = f
        .seed(
            Operation::PhoneFind,
            vec![(
                json!({"linkedin_url": "https://www.linkedin.com/in/antoine-dupont-xyz"}),
                Value::Null,
            )],
            1,
            &[id],
        )
        .await;
    let bodies = vec![
        enrow_env(&find, &fixture("enrow/single_search_finished.json")),
        enrow_env(&verify, &fixture("enrow/verification_finished.json")),
        enrow_env(
            &phone,
            &fixture("enrow/single_phone_search_finished_legacy.json"),
        ),
    ];
    let (resp, _) = f.run(&bodies).await;
    assert!(resp.batch_item_failures.is_empty());

    let r = f.results(&find).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].outcome, Outcome::Found);
    assert_eq!(
        r[0].email.as_deref(),
        Some("dwight.schrute@dundermifflin.com")
    );
    assert_eq!(r[0].email_status.as_deref(), Some("valid"));
    assert_eq!(
        r[0].custom,
        Some(json!({"crm_id": "lead_0"})),
        "the caller's custom, not the echo"
    );
    assert_eq!(
        r[0].raw["result"]["info"]["fullname"], "Dwight Schrute",
        "raw record kept"
    );
    let job = f.job(&find).await;
    assert_eq!(
        (job.done, job.found, job.not_found, job.status),
        (1, 1, 0, JobStatus::Completed)
    );
    let chunks = f.jobs.chunks(&find).await.unwrap();
    assert_eq!(chunks[0].status, ChunkStatus::Completed);
    assert_eq!(chunks[0].credits, Some(1.0));

    let r = f.results(&verify).await;
    assert_eq!(
        (r[0].outcome, r[0].email.as_deref()),
        (Outcome::Valid, Some("pam.beesly@dundermifflin.com"))
    );
    assert_eq!(f.job(&verify).await.status, JobStatus::Completed);

    let r = f.results(&phone).await;
    assert_eq!(
        (r[0].outcome, r[0].phone.as_deref()),
        (Outcome::Found, Some("+3399999999")),
        "legacy double nesting"
    );
    assert_eq!(r[0].custom, None);
}

#[tokio::test]
async fn an_enrow_single_result_is_mapped_to_the_contact_its_link_carries() {
    let f = Fetch::new().await;
    let job = f
        .seed(Operation::EmailFind, vec![finder(0)], 1, &["carried"])
        .await;
    // The contact's own item gone: only the link's copy can map the result.
    relay_shared::aws::dynamodb(&f.stack.sdk)
        .delete_item()
        .table_name(f.stack.res.table("JobsTable"))
        .key("pk", AttributeValue::S(format!("JOB#{job}")))
        .key(
            "sk",
            AttributeValue::S(relay_shared::store::contact_sk(ContactIndex(0))),
        )
        .send()
        .await
        .unwrap();
    let (resp, _) = f
        .run(&[Fetch::enrow_fixture(
            &job,
            "enrow/single_search_finished.json",
            "carried",
        )])
        .await;
    assert!(resp.batch_item_failures.is_empty());
    let r = f.results(&job).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].custom, Some(json!({"crm_id": "lead_0"})));
    assert_eq!(f.job(&job).await.status, JobStatus::Completed);
}

#[tokio::test]
async fn enrow_bulk_events_fetch_and_map_every_row() {
    let f = Fetch::new().await;
    // Finder: rows come back out of order, index as "0", 2 and "1".
    let find = f.seed_finders(3, 5000, &["bulk-find"]).await;
    f.stub.script(
        "/email/find/bulk",
        "bulk-find",
        vec![(
            200,
            String::from_utf8(fixture("enrow/bulk_email_find_results.json")).unwrap(),
        )],
    );
    // Verifier: rows indexed by UUID, joined on email.
    let emails = [
        "toby.flenderson@dundermifflin.com",
        "pam.beesly@dundermifflin.com",
    ];
    let verify = f
        .seed(
            Operation::EmailVerify,
            emails
                .iter()
                .map(|e| (json!({"email": e}), json!({"e": e})))
                .collect(),
            5000,
            &["bulk-verify"],
        )
        .await;
    f.stub.script(
        "/email/verify/bulk",
        "bulk-verify",
        vec![(
            200,
            String::from_utf8(fixture("enrow/bulk_verify_results.json")).unwrap(),
        )],
    );
    let phone = f
        .seed(
            Operation::PhoneFind,
            (0..2)
                .map(|i| {
                    (
                        json!({"linkedin_url": format!("https://www.linkedin.com/in/p{i}")}),
                        json!({"n": i}),
                    )
                })
                .collect(),
            3000,
            &["bulk-phone"],
        )
        .await;
    f.stub.script(
        "/phone/bulk",
        "bulk-phone",
        vec![(
            200,
            String::from_utf8(fixture("enrow/bulk_phone_results.json")).unwrap(),
        )],
    );

    let bodies = vec![
        enrow_env(
            &find,
            &enrow_event("bulk_search_finished", "bulk-find", Some(2284.0)),
        ),
        enrow_env(
            &verify,
            &enrow_event("bulk_verification_finished", "bulk-verify", Some(0.5)),
        ),
        enrow_env(
            &phone,
            &enrow_event("bulk_phone_search_finished", "bulk-phone", None),
        ),
    ];
    let (resp, _) = f.run(&bodies).await;
    assert!(resp.batch_item_failures.is_empty());

    let r = f.results(&find).await;
    let got: Vec<_> = r
        .iter()
        .map(|r| (r.index.get(), r.outcome, r.email.clone(), r.custom.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                0,
                Outcome::Found,
                Some("dwight.schrute@dundermifflin.com".into()),
                Some(json!({"crm_id": "lead_0"}))
            ),
            (
                1,
                Outcome::Found,
                Some("pam.beesly@dundermifflin.com".into()),
                Some(json!({"crm_id": "lead_1"}))
            ),
            (
                2,
                Outcome::NotFound,
                None,
                Some(json!({"crm_id": "lead_2"}))
            ),
        ]
    );
    let job = f.job(&find).await;
    assert_eq!(
        (job.done, job.found, job.not_found, job.status),
        (3, 2, 1, JobStatus::Completed)
    );
    assert_eq!(
        f.jobs.chunks(&find).await.unwrap()[0].credits,
        Some(2284.0),
        "webhook credits.cost"
    );
    assert_eq!(f.stub.hits("/email/find/bulk", "bulk-find"), 1);
    assert!(
        f.stub
            .auth_headers()
            .contains(&format!("x-api-key: {ENROW_KEY}"))
    );

    let r = f.results(&verify).await;
    assert_eq!(
        (r[0].outcome, r[1].outcome),
        (Outcome::Invalid, Outcome::Valid),
        "joined on email, not position"
    );
    assert_eq!(
        r[1].custom,
        Some(json!({"e": "pam.beesly@dundermifflin.com"}))
    );

    let r = f.results(&phone).await;
    assert_eq!(
        (r[0].outcome, r[0].phone.as_deref()),
        (Outcome::Found, Some("+15705551234"))
    );
    assert_eq!(r[1].outcome, Outcome::NotFound);
    assert_eq!(
        f.jobs.chunks(&phone).await.unwrap()[0].credits,
        Some(80.0),
        "stats.credits_cost when the event has none"
    );
}

pub fn fe_contacts(n: usize) -> Vec<(Value, Value)> {
    (0..n)
        .map(|i| {
            (
                json!({"first_name": format!("F{i}"), "last_name": "L", "domain": "example.com"}),
                json!({"user_id": format!("u{i}")}),
            )
        })
        .collect()
}

/// A FullEnrich fixture with the relay's record keys set to contact indexes.
fn fe_body(path: &str, id: &str) -> Vec<u8> {
    let mut v = fixture_json(path);
    v["id"] = json!(id);
    let key = if v.get("datas").is_some() {
        "datas"
    } else {
        "data"
    };
    if let Some(records) = v[key].as_array_mut() {
        for (i, r) in records.iter_mut().enumerate() {
            r["custom"]["rid"] = json!(i.to_string());
        }
    }
    v.to_string().into_bytes()
}

pub fn fe_env(job: &JobId, hook: Hook, body: &[u8]) -> String {
    Fetch::envelope(Provider::Fullenrich, hook, job, body)
}

#[tokio::test]
async fn fullenrich_batches_settle_the_job() {
    let f = Fetch::new().await;
    let finished = f
        .seed(Operation::Enrich, fe_contacts(2), 100, &["fe-1"])
        .await;
    let short = f
        .seed(Operation::Enrich, fe_contacts(2), 100, &["fe-2"])
        .await;
    let canceled = f
        .seed(Operation::Enrich, fe_contacts(1), 100, &["fe-3"])
        .await;
    let reverse = f
        .seed(
            Operation::ReverseEmail,
            vec![
                (json!({"email": "john.snow@example.com"}), Value::Null),
                (json!({"email": "nobody@example.com"}), Value::Null),
            ],
            100,
            &["fe-4"],
        )
        .await;
    let bodies = vec![
        fe_env(
            &finished,
            Hook::Batch,
            &fe_body("fullenrich/batch_finished.json", "fe-1"),
        ),
        fe_env(
            &short,
            Hook::Batch,
            &fe_body("fullenrich/batch_credits_insufficient.json", "fe-2"),
        ),
        fe_env(
            &canceled,
            Hook::Batch,
            &fe_body("fullenrich/batch_canceled.json", "fe-3"),
        ),
        fe_env(
            &reverse,
            Hook::Batch,
            &fe_body("fullenrich/reverse_email_finished.json", "fe-4"),
        ),
    ];
    let (resp, _) = f.run(&bodies).await;
    assert!(resp.batch_item_failures.is_empty());

    let r = f.results(&finished).await;
    assert_eq!(r[0].outcome, Outcome::Found);
    assert_eq!(r[0].email.as_deref(), Some("john.snow@example.com"));
    assert_eq!(r[0].email_status.as_deref(), Some("DELIVERABLE"));
    assert_eq!(r[0].phone.as_deref(), Some("+1 555-123-4567"));
    assert_eq!(
        r[0].custom,
        Some(json!({"user_id": "u0"})),
        "without the relay's rid"
    );
    assert_eq!(r[1].outcome, Outcome::NotFound);
    let job = f.job(&finished).await;
    assert_eq!(
        (job.done, job.found, job.not_found, job.status),
        (2, 1, 1, JobStatus::Completed)
    );
    assert_eq!(
        f.jobs.chunks(&finished).await.unwrap()[0].credits,
        Some(14.0)
    );

    // CREDITS_INSUFFICIENT: the enriched record counts, the empty one failed with the reason.
    let r = f.results(&short).await;
    assert_eq!(r[0].outcome, Outcome::Found);
    assert_eq!(
        (r[1].outcome, r[1].reason.as_deref()),
        (Outcome::Failed, Some("credits_insufficient"))
    );
    let job = f.job(&short).await;
    assert_eq!(
        (job.done, job.failed, job.status),
        (2, 1, JobStatus::PartiallyFailed)
    );
    let chunk = &f.jobs.chunks(&short).await.unwrap()[0];
    assert_eq!(chunk.status, ChunkStatus::Failed);
    assert_eq!(chunk.error.as_ref().unwrap().code, "credits_insufficient");

    // CANCELED with no records: every contact failed, the job failed.
    let r = f.results(&canceled).await;
    assert_eq!(
        (r[0].outcome, r[0].reason.as_deref()),
        (Outcome::Failed, Some("canceled"))
    );
    assert_eq!(f.job(&canceled).await.status, JobStatus::Failed);

    let r = f.results(&reverse).await;
    assert_eq!(
        (r[0].outcome, r[1].outcome),
        (Outcome::Found, Outcome::NotFound)
    );
}

#[tokio::test]
async fn fullenrich_contact_finished_then_batch_counts_each_contact_once() {
    let f = Fetch::new().await;
    let job = f
        .seed(Operation::Enrich, fe_contacts(2), 100, &["fe-c"])
        .await;
    let contact = fe_body("fullenrich/contact_finished.json", "fe-c");
    let (resp, _) = f.run(&[fe_env(&job, Hook::Contact, &contact)]).await;
    assert!(resp.batch_item_failures.is_empty());
    let r = f.results(&job).await;
    assert_eq!(r.len(), 1, "stored as soon as it arrives");
    assert_eq!(
        (
            r[0].index,
            r[0].outcome,
            r[0].email_status.as_deref(),
            r[0].provisional
        ),
        (ContactIndex(0), Outcome::Found, Some("CATCH_ALL"), true)
    );
    assert_eq!(f.job(&job).await.status, JobStatus::Running);

    let (resp, _) = f
        .run(&[fe_env(
            &job,
            Hook::Batch,
            &fe_body("fullenrich/batch_finished.json", "fe-c"),
        )])
        .await;
    assert!(resp.batch_item_failures.is_empty());
    let meta = f.job(&job).await;
    assert_eq!(
        (meta.done, meta.found, meta.not_found, meta.status),
        (2, 1, 1, JobStatus::Completed),
        "not counted twice"
    );
    let r = f.results(&job).await;
    assert_eq!(
        (r[0].email_status.as_deref(), r[0].provisional),
        (Some("DELIVERABLE"), false),
        "the batch's record replaces the per-contact one, which was provisional"
    );
}

#[tokio::test]
async fn fullenrich_batch_without_records_is_fetched() {
    let f = Fetch::new().await;
    let job = f
        .seed(Operation::Enrich, fe_contacts(2), 100, &["fe-get"])
        .await;
    f.stub.script(
        "/contact/enrich/bulk",
        "fe-get",
        vec![(
            200,
            String::from_utf8(fe_body("fullenrich/batch_finished.json", "fe-get")).unwrap(),
        )],
    );
    let bare = json!({"id": "fe-get", "status": "FINISHED", "cost": {"credits": 14}}).to_string();
    let (resp, _) = f.run(&[fe_env(&job, Hook::Batch, bare.as_bytes())]).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(f.results(&job).await.len(), 2);
    assert_eq!(f.stub.hits("/contact/enrich/bulk", "fe-get"), 1);
    assert!(
        f.stub
            .auth_headers()
            .contains(&format!("authorization: Bearer {FULLENRICH_KEY}"))
    );
}

#[tokio::test]
async fn the_same_delivery_five_times_is_applied_once() {
    let f = Fetch::new().await;
    let job = f.seed_finders(3, 5000, &["bulk-dup"]).await;
    f.stub.script(
        "/email/find/bulk",
        "bulk-dup",
        vec![(
            200,
            String::from_utf8(fixture("enrow/bulk_email_find_results.json")).unwrap(),
        )],
    );
    let body = enrow_env(
        &job,
        &enrow_event("bulk_search_finished", "bulk-dup", Some(3.0)),
    );
    // Five copies in one batch, processed concurrently, then five more across five concurrent
    // batches. A copy that meets a claim in progress goes back to the queue as a delayed message
    // (it would come back as a duplicate).
    let mut pending = f.run_until_settled(vec![body.clone(); 5]).await;
    let runs = (0..5).map(|_| f.run_until_settled(vec![body.clone()]));
    pending += futures::future::join_all(runs).await.iter().sum::<usize>();
    assert_eq!(
        f.stub.hits("/email/find/bulk", "bulk-dup"),
        1,
        "one bulk GET per finished bulk"
    );
    assert_eq!(
        f.results(&job).await.len(),
        3,
        "one stored result per contact"
    );
    let meta = f.job(&job).await;
    assert_eq!(
        (meta.done, meta.found, meta.not_found),
        (3, 2, 1),
        "exact counters"
    );
    assert_eq!(
        meta.duplicates + f.queued().await,
        9,
        "every other copy dropped as a duplicate, or waiting on the queue ({pending} retried)"
    );

    // Single-result events too, and a FullEnrich contact replayed concurrently with its batch.
    let fe = f
        .seed(Operation::Enrich, fe_contacts(2), 100, &["fe-dup"])
        .await;
    let contact = fe_env(
        &fe,
        Hook::Contact,
        &fe_body("fullenrich/contact_finished.json", "fe-dup"),
    );
    let batch = fe_env(
        &fe,
        Hook::Batch,
        &fe_body("fullenrich/batch_finished.json", "fe-dup"),
    );
    let mut storm = vec![contact.clone(); 5];
    storm.extend(vec![batch.clone(); 5]);
    let waiting = f.queued().await;
    f.run_until_settled(storm).await;
    let meta = f.job(&fe).await;
    assert_eq!(
        (meta.done, meta.found, meta.not_found, meta.status),
        (2, 1, 1, JobStatus::Completed)
    );
    assert_eq!(meta.duplicates + f.queued().await - waiting, 8);
}

#[tokio::test]
async fn provider_500s_go_back_to_sqs_then_store_once() {
    let f = Fetch::new().await;
    let job = f.seed_finders(3, 5000, &["bulk-500"]).await;
    let ok = String::from_utf8(fixture("enrow/bulk_email_find_results.json")).unwrap();
    let err = r#"{"message":"Internal error"}"#.to_string();
    f.stub.script(
        "/email/find/bulk",
        "bulk-500",
        vec![(500, err.clone()), (500, err), (200, ok)],
    );
    let body = enrow_env(&job, &enrow_event("bulk_search_finished", "bulk-500", None));

    // The worker tries twice in-process (both 500), then hands the record back.
    let (resp, records) = f.run(std::slice::from_ref(&body)).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    assert_eq!(
        Some(&resp.batch_item_failures[0].item_identifier),
        records[0].message_id.as_ref()
    );
    assert!(f.results(&job).await.is_empty());

    // The redelivery claims again (the claim was released) and succeeds.
    let (resp, _) = f.run(std::slice::from_ref(&body)).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(f.stub.hits("/email/find/bulk", "bulk-500"), 3);
    assert_eq!(f.results(&job).await.len(), 3);
    assert_eq!(f.job(&job).await.done, 3);
}

#[tokio::test]
async fn a_provider_that_always_fails_lands_in_the_dlq_after_max_receives() {
    let f = Fetch::new().await;
    let job = f
        .seed(
            Operation::EmailFind,
            vec![finder(0), finder(1)],
            5000,
            &["bulk-down"],
        )
        .await;
    f.stub.script(
        "/email/find/bulk",
        "bulk-down",
        vec![(503, r#"{"message":"maintenance"}"#.into())],
    );
    let body = enrow_env(
        &job,
        &enrow_event("bulk_search_finished", "bulk-down", None),
    );
    let sqs = f.stack.sqs();
    sqs.send_message()
        .queue_url(f.stack.webhook_queue())
        .message_body(&body)
        .send()
        .await
        .unwrap();

    let (url, arn) = f.stack.res.queues["WebhookQueue"].clone();
    let mut poller = Poller::new(sqs, &url, &arn);
    poller.visibility_timeout = Some(1);
    let mut rounds_with_records = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let parked = loop {
        let round = poller
            .round(|event| async { Ok(f.worker.handle_batch(event).await) })
            .await
            .unwrap();
        if round.received > 0 {
            assert_eq!(
                round.failed, round.received,
                "reported as failed every time"
            );
            rounds_with_records += 1;
        }
        let dlq = f.dead_letters().await;
        if !dlq.is_empty() {
            break dlq;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached the DLQ"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert_eq!(rounds_with_records, 5, "maxReceiveCount from template.yaml");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].0, body, "body intact");
    assert!(f.results(&job).await.is_empty());
}

#[tokio::test]
async fn abandoned_and_expired_claims_do_not_block_and_live_ones_wait_without_being_dropped() {
    let f = Fetch::new().await;
    let ddb = relay_shared::aws::dynamodb(&f.stack.sdk);
    let table = f.stack.res.table("DedupeTable");
    let now = relay_shared::now_ms();
    // Claims are scoped to the job of the URL: `{job}#enrow:{event}:{id}`. (Bulk events: a
    // single result needs no claim, its row's conditional put is its gate.)
    let claim = |job: &str, id: &str, status: &str, lease_until: u64, expires_at: u64| {
        ddb.put_item()
            .table_name(table)
            .item(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!(
                    "{job}#enrow:bulk_search_finished:{id}"
                )),
            )
            .item(
                "status",
                aws_sdk_dynamodb::types::AttributeValue::S(status.into()),
            )
            .item(
                "owner",
                aws_sdk_dynamodb::types::AttributeValue::S("someone-else".into()),
            )
            .item(
                "lease_until",
                aws_sdk_dynamodb::types::AttributeValue::N(lease_until.to_string()),
            )
            .item(
                "expires_at",
                aws_sdk_dynamodb::types::AttributeValue::N(expires_at.to_string()),
            )
            .send()
    };
    let mut jobs = Vec::new();
    let mut bodies = Vec::new();
    for id in ["dead", "expired", "live"] {
        let job = f
            .seed(
                Operation::EmailFind,
                (0..3).map(finder).collect(),
                5000,
                &[id],
            )
            .await;
        f.stub.script(
            "/email/find/bulk",
            id,
            vec![(
                200,
                String::from_utf8(fixture("enrow/bulk_email_find_results.json")).unwrap(),
            )],
        );
        bodies.push(enrow_env(
            &job,
            &enrow_event("bulk_search_finished", id, Some(3.0)),
        ));
        jobs.push(job);
    }
    // A worker died mid-event: its lease ran out a second ago.
    claim(
        &jobs[0],
        "dead",
        "IN_PROGRESS",
        now - 1000,
        now / 1000 + 86_400,
    )
    .await
    .unwrap();
    // Completed long ago: TTL has not deleted it yet, but it has expired.
    claim(&jobs[1], "expired", "COMPLETED", 0, now / 1000 - 10)
        .await
        .unwrap();
    // Another worker is on it right now.
    claim(
        &jobs[2],
        "live",
        "IN_PROGRESS",
        now + 60_000,
        now / 1000 + 86_400,
    )
    .await
    .unwrap();

    for body in &bodies[..2] {
        let (resp, _) = f.run(std::slice::from_ref(body)).await;
        assert!(resp.batch_item_failures.is_empty());
    }
    assert_eq!(
        f.results(&jobs[0]).await.len(),
        3,
        "processed after the lease ran out"
    );
    assert_eq!(
        f.results(&jobs[1]).await.len(),
        3,
        "an expired item is treated as new"
    );
    // The copy that meets a live claim is not deleted as a duplicate: it waits on the queue as
    // a new, delayed message, so if the holder fails the event is still there to apply, and the
    // wait uses up none of its receives (a holder killed mid-apply keeps its claim for a whole
    // lease, longer than several visibility timeouts).
    let (resp, _) = f.run(&bodies[2..]).await;
    assert!(
        resp.batch_item_failures.is_empty(),
        "deferred, not retried on the receive count"
    );
    assert_eq!(f.queued().await, 1, "the copy waits on the queue");
    assert!(
        f.results(&jobs[2]).await.is_empty(),
        "the live claim is respected"
    );
    assert_eq!(
        f.job(&jobs[2]).await.duplicates,
        0,
        "not counted as a duplicate"
    );
    // The holder fails and releases its claim: the retried copy applies the event.
    let key = format!("{}#enrow:bulk_search_finished:live", jobs[2]);
    f.worker.dedupe.release(&key, "someone-else").await.unwrap();
    let (resp, _) = f.run(&bodies[2..]).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(
        f.results(&jobs[2]).await.len(),
        3,
        "applied by the copy that waited"
    );

    // A completed claim is kept for the retention period.
    let d = &f.worker.dedupe;
    assert_eq!(
        d.claim(
            &format!("{}#enrow:bulk_search_finished:dead", jobs[0]),
            "me"
        )
        .await
        .unwrap(),
        Claim::Duplicate
    );
}

/// A claim's PutItem lands but its answer is lost (the attempt timed out on a loaded table) and
/// the SDK sends it again: the retry meets the claim it made itself. It is still this worker's
/// claim, not another's live one: deferring there would hold the event back for a whole lease.
#[tokio::test]
async fn a_claim_retried_after_its_answer_was_lost_is_still_the_claimers() {
    let f = Fetch::new().await;
    let d = &f.worker.dedupe;
    let key = "job_lost_answer#enrow:bulk_search_finished:x";
    assert_eq!(d.claim(key, "me").await.unwrap(), Claim::Claimed);
    assert_eq!(
        d.claim(key, "me").await.unwrap(),
        Claim::Claimed,
        "the retry finds its own claim"
    );
    assert_eq!(
        d.claim(key, "someone-else").await.unwrap(),
        Claim::InProgress,
        "another worker still waits"
    );
    d.complete(key, "me").await.unwrap();
    assert_eq!(
        d.claim(key, "me").await.unwrap(),
        Claim::Duplicate,
        "once completed, even its owner meets a duplicate"
    );
}

#[tokio::test]
async fn a_chunk_lease_retried_after_its_answer_was_lost_is_still_the_appliers() {
    use relay_shared::store::{ChunkRef, ChunkUpdate};
    let f = Fetch::new().await;
    let job = f.seed_finders(3, 5000, &["lost-lease"]).await;
    let (jobs, lost) = LostAnswer::store(&f.stack, "SET applier = :me");
    let contacts = jobs.contacts(&job, 0, 3).await.unwrap();
    let results = contacts
        .iter()
        .map(|c| relay_shared::jobs::ContactResult::failed(c, "provider_failed"))
        .collect();
    let update = ChunkUpdate {
        index: ChunkIndex(0),
        status: ChunkStatus::Failed,
        credits: None,
        error: None,
    };
    let chunk = ChunkRef {
        index: ChunkIndex(0),
        offset: 0,
        count: 3,
    };
    let stored = jobs.store_chunk(&job, chunk, results, update).await;
    assert!(lost.happened(), "the lease's answer was lost once");
    let stored = stored.expect("the resent take finds its own lease, not another worker's");
    assert_eq!(stored.new, 3);
    let view = f.job(&job).await;
    assert_eq!((view.done, view.failed), (3, 3));
    assert_eq!(
        f.jobs
            .chunk(&job, ChunkIndex(0))
            .await
            .unwrap()
            .unwrap()
            .status,
        ChunkStatus::Failed
    );
}

#[tokio::test]
async fn a_result_whose_count_answer_was_lost_still_ends_its_chunk_in_its_group() {
    use relay_shared::store::ChunkUpdate;
    let f = Fetch::new().await;
    // One Enrow single: its result ends its chunk and, with it, the job.
    let job = f
        .seed(Operation::EmailFind, vec![finder(0)], 1, &["lost-count"])
        .await;
    // The count (and the chunk's end) lands, its answer is lost, the SDK sends it again: the
    // resend finds the contact counted and the chunk final, its own doing.
    let (jobs, lost) = LostAnswer::store(&f.stack, "seen :seen");
    let contact = jobs.contacts(&job, 0, 1).await.unwrap().remove(0);
    let result = relay_shared::jobs::ContactResult::failed(&contact, "provider_failed");
    let update = ChunkUpdate {
        index: ChunkIndex(0),
        status: ChunkStatus::Completed,
        credits: None,
        error: None,
    };
    let stored = jobs
        .store_result(&job, ChunkIndex(0), result, Some(update))
        .await
        .unwrap();
    assert!(lost.happened(), "the count's answer was lost once");
    // (Which copy counted is not known to the resend: it reads as a duplicate of itself.)
    // The chunk is recorded in its group all the same, so the job can end.
    assert!(stored.final_group.is_some(), "{stored:?}");
    assert_eq!(
        f.jobs.settle_job(&job).await.unwrap(),
        Some(JobStatus::Failed)
    );
}

#[tokio::test]
async fn a_result_whose_row_answer_was_lost_is_counted_as_new_not_as_a_duplicate() {
    let f = Fetch::new().await;
    let job = f.seed_finders(2, 2, &["lost-row"]).await;
    // The row's put lands, its answer is lost, the SDK sends it again: the resend meets the row
    // it wrote. Nothing had counted it, so this call does, and it is no duplicate.
    let (jobs, lost) = LostAnswer::store(&f.stack, "attribute_not_exists(sk)");
    let contact = jobs.contacts(&job, 0, 1).await.unwrap().remove(0);
    let result = relay_shared::jobs::ContactResult::failed(&contact, "provider_failed");
    let stored = jobs
        .store_result(&job, ChunkIndex(0), result, None)
        .await
        .unwrap();
    assert!(lost.happened(), "the row's answer was lost once");
    assert_eq!((stored.new, stored.existing), (1, 0), "{stored:?}");
    let view = f.job(&job).await;
    assert_eq!((view.done, view.failed), (1, 1), "counted once");
}

#[tokio::test]
async fn an_event_posted_to_another_jobs_url_burns_nothing_of_that_job() {
    let f = Fetch::new().await;
    let victim = f
        .seed(Operation::EmailFind, vec![finder(0)], 1, &["victim-id"])
        .await;
    let attacker = f
        .seed(Operation::EmailFind, vec![finder(0)], 1, &["attacker-id"])
        .await;
    // Someone holding the attacker job's URL posts the victim's provider id to it, with a
    // made-up result.
    let mut forged = fixture_json("enrow/single_search_finished.json");
    forged["id"] = json!("victim-id");
    forged["result"]["email"] = json!("forged@example.com");
    let (resp, _) = f
        .run(&[enrow_env(&attacker, forged.to_string().as_bytes())])
        .await;
    assert!(resp.batch_item_failures.is_empty());
    // Dropped and counted: the id is no chunk of the URL's job, and an unsigned body is kept
    // nowhere (it could carry anything).
    let parked = f.dead_letters().await;
    assert!(parked.is_empty(), "dropped, not parked: {parked:?}");
    assert!(f.results(&attacker).await.is_empty(), "nothing planted");
    // The victim's real delivery still applies: its key was never claimed.
    let (resp, _) = f
        .run(&[Fetch::enrow_fixture(
            &victim,
            "enrow/single_search_finished.json",
            "victim-id",
        )])
        .await;
    assert!(resp.batch_item_failures.is_empty());
    let results = f.results(&victim).await;
    assert_eq!(results.len(), 1);
    assert_ne!(results[0].email.as_deref(), Some("forged@example.com"));
    assert!(f.results(&attacker).await.is_empty());
}

#[tokio::test]
async fn unprocessable_deliveries_are_parked_at_once_and_the_batch_goes_on() {
    let f = Fetch::new().await;
    let job = f
        .seed(Operation::EmailFind, vec![finder(0)], 1, &["good"])
        .await;
    let mut good = fixture_json("enrow/single_search_finished.json");
    good["id"] = json!("good");
    let bad = vec![
        ("unreadable envelope", "this is not an envelope".to_string()),
        ("body is not JSON", enrow_env(&job, b"<html>oops</html>")),
        (
            "unknown Enrow event",
            enrow_env(
                &job,
                br#"{"event":"bulk_company_search_finished","id":"x"}"#,
            ),
        ),
        (
            "unknown job",
            enrow_env(
                &JobId::new("job_nobody"),
                &fixture("enrow/single_search_finished.json"),
            ),
        ),
        ("empty body", enrow_env(&job, b"")),
    ];
    let mut bodies: Vec<String> = bad.iter().map(|(_, b)| b.clone()).collect();
    bodies.push(enrow_env(&job, good.to_string().as_bytes()));
    let (resp, _) = f.run(&bodies).await;
    assert!(resp.batch_item_failures.is_empty(), "parked, not retried");
    assert_eq!(
        f.results(&job).await.len(),
        1,
        "the rest of the batch succeeded"
    );

    let parked = f.dead_letters().await;
    assert_eq!(parked.len(), bad.len());
    for (reason, body) in &bad {
        let (_, attrs) = parked
            .iter()
            .find(|(b, _)| b == body)
            .expect("parked with its body intact");
        assert!(
            attrs["reason"].starts_with(reason),
            "{} vs {reason}",
            attrs["reason"]
        );
        assert!(!attrs["source_message_id"].is_empty());
    }
}

#[tokio::test]
async fn a_5000_row_enrow_bulk_maps_every_row_to_its_contact() {
    let f = Fetch::new().await;
    let n = 5000;
    let job = f
        .seed(
            Operation::EmailFind,
            (0..n).map(finder).collect(),
            5000,
            &["bulk-5000"],
        )
        .await;
    // Rows in a scrambled order; every third one not found.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|i| (i * 7919) % n);
    let rows: Vec<Value> = order
        .iter()
        .map(|&i| {
            if i % 3 == 0 {
                json!({"index": i, "qualification": "invalid", "email": null})
            } else {
                json!({"index": i.to_string(), "qualification": "valid", "email": format!("person{i}@dundermifflin.com")})
            }
        })
        .collect();
    let body = json!({"general": {"id": "bulk-5000", "status": "completed"}, "stats": {"requested": n}, "results": rows});
    f.stub.script(
        "/email/find/bulk",
        "bulk-5000",
        vec![(200, body.to_string())],
    );
    let (resp, _) = f
        .run(&[enrow_env(
            &job,
            &enrow_event("bulk_search_finished", "bulk-5000", None),
        )])
        .await;
    assert!(resp.batch_item_failures.is_empty());

    let results = f.results(&job).await;
    assert_eq!(results.len(), n);
    let mut seen = HashSet::new();
    for r in &results {
        let i = r.index.get() as usize;
        assert!(seen.insert(i));
        assert_eq!(r.custom, Some(json!({"crm_id": format!("lead_{i}")})));
        if i.is_multiple_of(3) {
            assert_eq!(r.outcome, Outcome::NotFound);
        } else {
            assert_eq!(r.email, Some(format!("person{i}@dundermifflin.com")));
        }
    }
    let meta = f.job(&job).await;
    assert_eq!(
        (meta.done, meta.not_found, meta.status),
        (5000, 1667, JobStatus::Completed)
    );
}

#[tokio::test]
async fn a_bulk_apply_that_died_midway_is_finished_with_exact_counters() {
    let f = Fetch::new().await;
    let job = f.seed_finders(60, 60, &["bulk-crash"]).await;
    let ddb = relay_shared::aws::dynamodb(&f.stack.sdk);
    let table = f.stack.res.table("JobsTable");
    let pk = AttributeValue::S(format!("JOB#{job}"));
    // A worker wrote 25 rows (one BatchWriteItem) and died holding the chunk: rows in, nothing counted.
    for i in 0..25u64 {
        ddb.put_item()
            .table_name(table)
            .item("pk", pk.clone())
            .item("sk", AttributeValue::S(format!("RESULT#{i:07}")))
            .item("outcome", AttributeValue::S("found".into()))
            .item("raw", AttributeValue::S("{}".into()))
            .send()
            .await
            .unwrap();
    }
    let hold = |until: u64| {
        ddb.update_item()
            .table_name(table)
            .key("pk", pk.clone())
            .key("sk", AttributeValue::S("CHUNK#00000".into()))
            .update_expression("SET applier = :a, applier_until = :u")
            .expression_attribute_values(":a", AttributeValue::S("dead-worker".into()))
            .expression_attribute_values(":u", AttributeValue::N(until.to_string()))
            .send()
    };
    let rows: Vec<Value> = (0..60)
        .map(|i| json!({"index": i, "qualification": "valid", "email": format!("p{i}@dundermifflin.com")}))
        .collect();
    let body = json!({"general": {"id": "bulk-crash", "status": "completed"}, "results": rows});
    f.stub.script(
        "/email/find/bulk",
        "bulk-crash",
        vec![(200, body.to_string()), (200, body.to_string())],
    );
    let delivery = enrow_env(
        &job,
        &enrow_event("bulk_search_finished", "bulk-crash", None),
    );

    // While its lease runs, the chunk is not applied twice: the record goes back to SQS.
    hold(relay_shared::now_ms() + 60_000).await.unwrap();
    let (resp, _) = f.run(std::slice::from_ref(&delivery)).await;
    assert_eq!(
        resp.batch_item_failures.len(),
        1,
        "retried while another worker holds the chunk"
    );
    assert_eq!(f.job(&job).await.done, 0);

    // Once the lease ran out, the retry stores the 35 missing rows and counts all 60.
    hold(relay_shared::now_ms() - 1).await.unwrap();
    let (resp, _) = f.run(std::slice::from_ref(&delivery)).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(f.results(&job).await.len(), 60);
    let meta = f.job(&job).await;
    assert_eq!(
        (meta.done, meta.found, meta.status),
        (60, 60, JobStatus::Completed)
    );
    let chunk = &f.jobs.chunks(&job).await.unwrap()[0];
    assert_eq!(chunk.status, ChunkStatus::Completed);
}

/// The jobs store with a settle that fails the first time (a throttled UpdateItem, say).
struct FlakySettle {
    inner: relay_shared::store::DynamoJobStore,
    failed: std::sync::atomic::AtomicBool,
}

impl relay_shared::store::Waterfalls for FlakySettle {
    async fn pass_on(
        &self,
        p: &relay_shared::store::PassOn,
    ) -> Result<relay_shared::store::Passed, relay_shared::store::StoreError> {
        self.inner.pass_on(p).await
    }
    async fn write_contacts(
        &self,
        job_id: &JobId,
        contacts: &[relay_shared::jobs::Contact],
    ) -> Result<(), relay_shared::store::StoreError> {
        self.inner.write_contacts(job_id, contacts).await
    }
    async fn mark_passed(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
    ) -> Result<(), relay_shared::store::StoreError> {
        self.inner.mark_passed(job_id, index).await
    }
    async fn put_routes(
        &self,
        waterfall: &JobId,
        routes: &[relay_shared::waterfall::Route],
    ) -> Result<(), relay_shared::store::StoreError> {
        self.inner.put_routes(waterfall, routes).await
    }
    async fn routes(
        &self,
        waterfall: &JobId,
        from: ContactIndex,
        to: ContactIndex,
    ) -> Result<Vec<relay_shared::waterfall::Route>, relay_shared::store::StoreError> {
        self.inner.routes(waterfall, from, to).await
    }
    async fn results_at(
        &self,
        job_id: &JobId,
        indices: &[ContactIndex],
    ) -> Result<Vec<relay_shared::jobs::ContactResult>, relay_shared::store::StoreError> {
        self.inner.results_at(job_id, indices).await
    }
    async fn close_step(&self, job_id: &JobId) -> Result<(), relay_shared::store::StoreError> {
        self.inner.close_step(job_id).await
    }
    async fn settle_waterfall(
        &self,
        job_id: &JobId,
        f: relay_shared::store::WaterfallFigures,
    ) -> Result<Option<JobStatus>, relay_shared::store::StoreError> {
        self.inner.settle_waterfall(job_id, f).await
    }
}

impl relay_shared::store::CallbackStore for FlakySettle {
    async fn take_callback(
        &self,
        job_id: &JobId,
        due_at: Option<u64>,
        lease_ms: u64,
    ) -> Result<Option<relay_shared::store::CallbackTake>, relay_shared::store::StoreError> {
        self.inner.take_callback(job_id, due_at, lease_ms).await
    }
    async fn record_callback(
        &self,
        job_id: &JobId,
        lease: u64,
        attempt: &relay_shared::store::CallbackAttempt,
    ) -> Result<bool, relay_shared::store::StoreError> {
        self.inner.record_callback(job_id, lease, attempt).await
    }
}

impl relay_shared::store::OrphanStore for FlakySettle {
    async fn job_of_provider_id(
        &self,
        provider: relay_shared::Provider,
        provider_id: &ProviderId,
    ) -> Result<Option<JobId>, relay_shared::store::StoreError> {
        self.inner.job_of_provider_id(provider, provider_id).await
    }
    async fn put_orphan(
        &self,
        orphan: &relay_shared::store::Orphan,
    ) -> Result<(), relay_shared::store::StoreError> {
        self.inner.put_orphan(orphan).await
    }
    async fn list_orphans(
        &self,
        limit: usize,
        cursor: Option<&relay_shared::store::OrphansCursor>,
    ) -> Result<
        (
            Vec<relay_shared::store::Orphan>,
            Option<relay_shared::store::OrphansCursor>,
        ),
        relay_shared::store::StoreError,
    > {
        self.inner.list_orphans(limit, cursor).await
    }
}

impl relay_shared::store::Jobs for FlakySettle {
    async fn get_job(
        &self,
        job_id: &JobId,
    ) -> Result<Option<relay_shared::jobs::JobMeta>, relay_shared::store::StoreError> {
        self.inner.get_job(job_id).await
    }
    async fn job_view(
        &self,
        job_id: &JobId,
    ) -> Result<Option<relay_shared::jobs::JobMeta>, relay_shared::store::StoreError> {
        self.inner.job_view(job_id).await
    }
    async fn job_head(
        &self,
        job_id: &JobId,
    ) -> Result<Option<relay_shared::jobs::JobMeta>, relay_shared::store::StoreError> {
        self.inner.job_head(job_id).await
    }
    async fn contacts(
        &self,
        job_id: &JobId,
        offset: u64,
        count: u64,
    ) -> Result<Vec<relay_shared::jobs::Contact>, relay_shared::store::StoreError> {
        self.inner.contacts(job_id, offset, count).await
    }
    async fn chunk(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
    ) -> Result<Option<relay_shared::jobs::Chunk>, relay_shared::store::StoreError> {
        self.inner.chunk(job_id, index).await
    }
    async fn chunks(
        &self,
        job_id: &JobId,
    ) -> Result<Vec<relay_shared::jobs::Chunk>, relay_shared::store::StoreError> {
        self.inner.chunks(job_id).await
    }
    async fn set_job_error(
        &self,
        job_id: &JobId,
        e: &relay_shared::jobs::JobError,
    ) -> Result<(), relay_shared::store::StoreError> {
        self.inner.set_job_error(job_id, e).await
    }
}

impl relay_shared::store::Results for FlakySettle {
    async fn store_result(
        &self,
        job_id: &JobId,
        chunk: ChunkIndex,
        r: relay_shared::jobs::ContactResult,
        u: Option<relay_shared::store::ChunkUpdate>,
    ) -> Result<relay_shared::store::Stored, relay_shared::store::StoreError> {
        self.inner.store_result(job_id, chunk, r, u).await
    }
    async fn store_chunk(
        &self,
        job_id: &JobId,
        chunk: relay_shared::store::ChunkRef,
        rs: Vec<relay_shared::jobs::ContactResult>,
        u: relay_shared::store::ChunkUpdate,
    ) -> Result<relay_shared::store::Stored, relay_shared::store::StoreError> {
        self.inner.store_chunk(job_id, chunk, rs, u).await
    }
    async fn stored_indices(
        &self,
        job_id: &JobId,
        from: ContactIndex,
        to: ContactIndex,
    ) -> Result<HashSet<ContactIndex>, relay_shared::store::StoreError> {
        self.inner.stored_indices(job_id, from, to).await
    }
    async fn add_duplicate(&self, job_id: &JobId) -> Result<(), relay_shared::store::StoreError> {
        self.inner.add_duplicate(job_id).await
    }
    async fn settle_job(
        &self,
        job_id: &JobId,
    ) -> Result<Option<JobStatus>, relay_shared::store::StoreError> {
        if !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(relay_shared::store::StoreError::unavailable(
                "injected: settle throttled",
            ));
        }
        self.inner.settle_job(job_id).await
    }
}

impl relay_shared::store::Links for FlakySettle {
    async fn find_link(
        &self,
        job_id: &JobId,
        pid: &ProviderId,
    ) -> Result<Option<relay_shared::store::Link>, relay_shared::store::StoreError> {
        self.inner.find_link(job_id, pid).await
    }
    async fn link_chunk(
        &self,
        job_id: &JobId,
        chunk: relay_shared::store::ChunkRef,
        pid: &ProviderId,
        credits: Option<f64>,
        contact: Option<&relay_shared::jobs::Contact>,
    ) -> Result<bool, relay_shared::store::StoreError> {
        self.inner
            .link_chunk(job_id, chunk, pid, credits, contact)
            .await
    }
    async fn correct_link(
        &self,
        job_id: &JobId,
        chunk: relay_shared::store::ChunkRef,
        pid: &ProviderId,
        contact: Option<&relay_shared::jobs::Contact>,
    ) -> Result<(), relay_shared::store::StoreError> {
        self.inner.correct_link(job_id, chunk, pid, contact).await
    }
    async fn take_candidate(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        max: u32,
    ) -> Result<bool, relay_shared::store::StoreError> {
        self.inner.take_candidate(job_id, index, max).await
    }
}

impl relay_shared::store::Polls for FlakySettle {
    async fn poll_later(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        every_ms: u64,
    ) -> Result<(), relay_shared::store::StoreError> {
        self.inner.poll_later(job_id, index, every_ms).await
    }
    async fn claim_poll(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        taken_at_ms: u64,
    ) -> Result<bool, relay_shared::store::StoreError> {
        self.inner.claim_poll(job_id, index, taken_at_ms).await
    }
}

impl relay_shared::store::RateSchedule for FlakySettle {
    async fn take_slot(
        &self,
        name: &str,
        interval_ms: u64,
        max_wait_ms: u64,
    ) -> Result<relay_shared::store::Slot, relay_shared::store::StoreError> {
        self.inner.take_slot(name, interval_ms, max_wait_ms).await
    }
    async fn return_slot(
        &self,
        name: &str,
        at_ms: u64,
        interval_ms: u64,
    ) -> Result<bool, relay_shared::store::StoreError> {
        self.inner.return_slot(name, at_ms, interval_ms).await
    }
}

#[tokio::test]
async fn a_settle_that_fails_once_still_ends_the_job() {
    let f = Fetch::new().await;
    let id = "910f3e13-b2bf-442d-ab0b-4cf44dfrij84fjrt";
    let job = f
        .seed(Operation::EmailFind, vec![finder(0)], 1, &[id])
        .await;
    let ddb = relay_shared::aws::dynamodb(&f.stack.sdk);
    let worker = bulk_fetch::Worker {
        jobs: FlakySettle {
            inner: f.jobs.clone(),
            failed: Default::default(),
        },
        dedupe: relay_shared::store::DynamoDedupe::new(
            ddb,
            f.stack.res.table("DedupeTable"),
            120_000,
            86_400,
        ),
        providers: relay_shared::providers::client::ProviderHttp::new(
            &f.stub.url,
            ENROW_KEY,
            &f.stub.url,
            FULLENRICH_KEY,
        ),
        bodies: relay_shared::bodies::S3Bodies::new(
            f.stack.s3(),
            f.stack.res.bucket("PayloadBucket"),
        ),
        callback_sender: relay_shared::callback::CallbackSender::new(
            relay_local_stack::dev::DEV_CALLBACK_SECRET,
            relay_shared::callback::DEFAULT_RETRY_BASE,
        )
        .unwrap(),
        dead_letters: relay_shared::queue::SqsQueue::new(
            f.stack.sqs(),
            f.stack.res.queue_url("WebhookDeadLetterQueue"),
        ),
        requeue: relay_shared::queue::SqsQueue::new(f.stack.sqs(), f.stack.webhook_queue()),
        submit: relay_shared::queue::SqsQueue::new(
            f.stack.sqs(),
            f.stack.res.queue_url("SubmitQueue"),
        ),
        fullenrich_interval: std::time::Duration::from_millis(1),
        not_ready_wait: bulk_fetch::NOT_READY_WAIT,
        deadline: bulk_fetch::DEFAULT_DEADLINE,
    };
    let body = enrow_env(&job, &fixture("enrow/single_search_finished.json"));
    let record = Fetch::message(&body);
    // The result is stored, the settle fails: the record goes back to the queue…
    assert!(matches!(
        worker.handle_record(&record).await,
        bulk_fetch::Disposition::Retry(_)
    ));
    assert_eq!(f.job(&job).await.done, 1);
    assert_eq!(f.job(&job).await.status, JobStatus::Running);
    // …and its redelivery, a duplicate now, settles the job: nothing is counted twice.
    assert_eq!(
        worker.handle_record(&record).await,
        bulk_fetch::Disposition::Duplicate
    );
    let meta = f.job(&job).await;
    assert_eq!(meta.status, JobStatus::Completed);
    assert_eq!((meta.done, meta.found + meta.not_found), (1, 1));
}

/// A FullEnrich record for contact `rid`: finished with a work email, finished with nothing, or
/// still running (no `contact_info`).
pub fn fe_record(rid: u64, state: &str) -> Value {
    let input =
        json!({"first_name": format!("F{rid}"), "last_name": "L", "company_domain": "example.com"});
    let custom = json!({"user_id": format!("u{rid}"), "rid": rid.to_string()});
    match state {
        "found" => json!({"input": input, "custom": custom, "contact_info": {
            "most_probable_work_email": {"email": format!("f{rid}@example.com"), "status": "DELIVERABLE"},
            "work_emails": [{"email": format!("f{rid}@example.com"), "status": "DELIVERABLE"}]}}),
        "not_found" => {
            json!({"input": input, "custom": custom, "contact_info": {"most_probable_work_email": null, "work_emails": []}})
        }
        _ => json!({"input": input, "custom": custom}),
    }
}

#[tokio::test]
async fn per_contact_snapshots_store_only_finished_records_and_the_batch_replaces_them_exactly() {
    let f = Fetch::new().await;
    let job = f
        .seed(Operation::Enrich, fe_contacts(5), 100, &["fe-snap"])
        .await;
    let contact = |records: Vec<Value>| {
        let body = json!({"id": "fe-snap", "status": "IN_PROGRESS", "data": records});
        fe_env(&job, Hook::Contact, body.to_string().as_bytes())
    };
    // A contact_finished that carries the whole enrichment: contact 0 finished (found), the
    // four others still running. Only contact 0 is stored; the others are not "not found".
    f.run_until_settled(vec![contact(vec![
        fe_record(0, "found"),
        fe_record(1, "running"),
        fe_record(2, "running"),
        fe_record(3, "running"),
        fe_record(4, "running"),
    ])])
    .await;
    let results = f.results(&job).await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(results[0].provisional);
    let meta = f.job(&job).await;
    assert_eq!((meta.done, meta.found, meta.not_found), (1, 1, 0));
    // Contact 1 finishes with nothing.
    f.run_until_settled(vec![contact(vec![fe_record(1, "not_found")])])
        .await;
    let meta = f.job(&job).await;
    assert_eq!((meta.done, meta.found, meta.not_found), (2, 1, 1));

    // The batch says otherwise for both (the per-contact bodies were snapshots): its records
    // replace the provisional rows, and the counters move exactly, down as well as up.
    let batch = json!({"id": "fe-snap", "status": "FINISHED", "cost": {"credits": 3}, "data": [
        fe_record(0, "not_found"), fe_record(1, "found"), fe_record(2, "found"),
        fe_record(3, "not_found"), fe_record(4, "found")]});
    let body = fe_env(&job, Hook::Batch, batch.to_string().as_bytes());
    f.run_until_settled(vec![body.clone()]).await;
    let meta = f.job(&job).await;
    assert_eq!(
        (meta.done, meta.found, meta.not_found, meta.failed),
        (5, 3, 2, 0),
        "exact after found → not found and not found → found"
    );
    assert_eq!(meta.status, JobStatus::Completed);
    let results = f.results(&job).await;
    let outcomes: Vec<Outcome> = results.iter().map(|r| r.outcome).collect();
    use Outcome::{Found, NotFound};
    assert_eq!(outcomes, vec![NotFound, Found, Found, NotFound, Found]);
    assert!(
        results.iter().all(|r| !r.provisional),
        "every row is final now"
    );
    // A late per-contact delivery changes nothing any more; nor does the batch again.
    f.run_until_settled(vec![contact(vec![fe_record(0, "found")]), body])
        .await;
    let meta = f.job(&job).await;
    assert_eq!((meta.done, meta.found, meta.not_found), (5, 3, 2));
    assert_eq!(f.results(&job).await[0].outcome, NotFound);
}

/// A job whose every contact has a provisional row (per-contact webhooks) is not done: the batch
/// may still change those rows. It ends when its chunks are final, not when its counters say so.
#[tokio::test]
async fn a_job_is_not_completed_on_provisional_rows_while_its_batch_is_open() {
    let f = Fetch::new().await;
    let job = f
        .seed(Operation::Enrich, fe_contacts(2), 100, &["fe-prov"])
        .await;
    let contact = |records: Vec<Value>| {
        let body = json!({"id": "fe-prov", "status": "IN_PROGRESS", "data": records});
        fe_env(&job, Hook::Contact, body.to_string().as_bytes())
    };
    f.run_until_settled(vec![
        contact(vec![fe_record(0, "found")]),
        contact(vec![fe_record(1, "found")]),
    ])
    .await;
    let meta = f.job(&job).await;
    assert_eq!(
        (meta.done, meta.found),
        (2, 2),
        "both rows stored, provisional"
    );
    assert_eq!(
        meta.status,
        JobStatus::Running,
        "the batch is still open: its records may replace these rows"
    );
    let batch = json!({"id": "fe-prov", "status": "FINISHED", "cost": {"credits": 1}, "data": [
        fe_record(0, "found"), fe_record(1, "not_found")]});
    f.run_until_settled(vec![fe_env(
        &job,
        Hook::Batch,
        batch.to_string().as_bytes(),
    )])
    .await;
    let meta = f.job(&job).await;
    assert_eq!(
        (meta.done, meta.found, meta.not_found, meta.status),
        (2, 1, 1, JobStatus::Completed)
    );
}

#[tokio::test]
async fn unsigned_fullenrich_bodies_are_triggers_not_results() {
    let f = Fetch::new().await;
    let job = f
        .seed(Operation::Enrich, fe_contacts(2), 100, &["fe-unsigned"])
        .await;
    let unsigned = |hook: Hook, body: Value| {
        relay_shared::testing::envelope_with(
            Provider::Fullenrich,
            hook,
            &job,
            body.to_string().as_bytes(),
            relay_shared::envelope::Signature::Absent,
        )
    };
    // Made-up results, accepted on the URL token alone (no X-Signature-SHA1).
    let mut forged0 = fe_record(0, "found");
    forged0["contact_info"]["most_probable_work_email"]["email"] = json!("made-up@example.com");
    let forged = json!({"id": "fe-unsigned", "status": "FINISHED", "data": [forged0.clone(), fe_record(1, "found")]});
    // What FullEnrich's API says about the enrichment.
    let truth = json!({"id": "fe-unsigned", "status": "FINISHED", "cost": {"credits": 1},
                       "data": [fe_record(0, "not_found"), fe_record(1, "found")]});
    f.stub.script(
        "/contact/enrich/bulk",
        "fe-unsigned",
        vec![(200, truth.to_string())],
    );
    // An unsigned contact_finished stores nothing.
    f.run_until_settled(vec![unsigned(
        Hook::Contact,
        json!({"id": "fe-unsigned", "status": "IN_PROGRESS", "data": [forged0]}),
    )])
    .await;
    assert!(f.results(&job).await.is_empty());
    // An unsigned batch triggers one GET, and what the API returned is stored.
    f.run_until_settled(vec![unsigned(Hook::Batch, forged)])
        .await;
    assert_eq!(f.stub.hits("/contact/enrich/bulk", "fe-unsigned"), 1);
    let results = f.results(&job).await;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].outcome, Outcome::NotFound);
    assert!(
        results
            .iter()
            .all(|r| r.email.as_deref() != Some("made-up@example.com"))
    );
    assert_eq!(f.job(&job).await.status, JobStatus::Completed);
}

/// A delivery for a job its owner deleted is dropped: not applied, and not parked either (the DLQ
/// would keep the contact data the owner asked to erase).
#[tokio::test]
async fn deliveries_for_a_deleted_job_are_dropped_not_parked() {
    let f = Fetch::new().await;
    let job = f
        .seed(Operation::Enrich, fe_contacts(2), 100, &["fe-gone"])
        .await;
    assert!(f.jobs.mark_deleted(&job).await.unwrap());
    let body = fe_body("fullenrich/batch_finished.json", "fe-gone");
    let (resp, _) = f.run(&[fe_env(&job, Hook::Batch, &body)]).await;
    assert!(resp.batch_item_failures.is_empty());
    assert!(f.results(&job).await.is_empty(), "nothing applied");
    assert!(f.dead_letters().await.is_empty(), "nothing parked");
}

/// The first copy of a single result stored its row and died before counting it (the chunk
/// item as it was before, no group entry): the row is the exactly-once gate, so the redelivery
/// finds it stored, counts it once (the chunk's `seen` set: it is the copy that applied it, not a
/// duplicate), records the chunk final in its group and settles the job; a third copy is a
/// duplicate and changes nothing.
#[tokio::test]
async fn a_single_result_whose_count_was_lost_is_counted_once_by_its_redelivery() {
    let f = Fetch::new().await;
    let job = f
        .seed(Operation::EmailFind, vec![finder(0)], 1, &["single-lost"])
        .await;
    let body = Fetch::enrow_fixture(&job, "enrow/single_search_finished.json", "single-lost");
    f.run_until_settled(vec![body.clone()]).await;
    assert_eq!(f.job(&job).await.status, JobStatus::Completed);

    // Back to the moment after the row's put: the chunk uncounted and open, the job running,
    // the group without it.
    let ddb = relay_shared::aws::dynamodb(&f.stack.sdk);
    let table = f.stack.res.table("JobsTable");
    let key = |sk: &str| {
        [
            ("pk".to_string(), AttributeValue::S(format!("JOB#{job}"))),
            ("sk".to_string(), AttributeValue::S(sk.to_string())),
        ]
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>()
    };
    ddb.update_item()
        .table_name(table)
        .set_key(Some(key(&relay_shared::store::chunk_sk(ChunkIndex(0)))))
        .update_expression(
            "SET #s = :sub, c_done = :z, c_found = :z, c_not_found = :z, c_failed = :z REMOVE seen",
        )
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":sub", AttributeValue::S("submitted".into()))
        .expression_attribute_values(":z", AttributeValue::N("0".into()))
        .send()
        .await
        .unwrap();
    ddb.delete_item()
        .table_name(table)
        .set_key(Some(key("CHUNK#~F00000")))
        .send()
        .await
        .unwrap();
    ddb.update_item()
        .table_name(table)
        .set_key(Some(key("META")))
        .update_expression("SET #s = :run")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":run", AttributeValue::S("running".into()))
        .send()
        .await
        .unwrap();
    let meta = f.job(&job).await;
    assert_eq!((meta.status, meta.done), (JobStatus::Running, 0));

    // The redelivery that counts it applied it (no duplicate); the next is a duplicate.
    let expected = [
        bulk_fetch::Disposition::Applied {
            new: 1,
            existing: 0,
        },
        bulk_fetch::Disposition::Duplicate,
    ];
    for want in expected {
        assert_eq!(f.worker.handle_record(&Fetch::message(&body)).await, want);
        let meta = f.job(&job).await;
        assert_eq!(meta.status, JobStatus::Completed);
        assert_eq!((meta.done, meta.found + meta.not_found), (1, 1));
    }
    assert_eq!(f.results(&job).await.len(), 1);
}

/// Issue 14's hot item: a job's head was written by every result (a transaction on it per
/// result, and by every duplicate), which DynamoDB answers with TransactionConflict under
/// concurrency. Per-contact results and their duplicates now leave the head untouched, and the
/// job's figures still read exact (summed over its chunks).
#[tokio::test]
async fn single_results_and_their_duplicates_never_write_the_job_head() {
    let f = Fetch::new().await;
    let job = f
        .seed(Operation::Enrich, fe_contacts(3), 100, &["fe-head"])
        .await;
    let ddb = relay_shared::aws::dynamodb(&f.stack.sdk);
    let head = || {
        ddb.get_item()
            .table_name(f.stack.res.table("JobsTable"))
            .key("pk", AttributeValue::S(format!("JOB#{job}")))
            .key("sk", AttributeValue::S("META".into()))
            .consistent_read(true)
            .send()
    };
    let before = head().await.unwrap().item.expect("head");
    let contact = |rid: u64| {
        let body =
            json!({"id": "fe-head", "status": "IN_PROGRESS", "data": [fe_record(rid, "found")]});
        fe_env(&job, Hook::Contact, body.to_string().as_bytes())
    };
    let bodies: Vec<String> = (0..3).flat_map(|i| [contact(i), contact(i)]).collect();
    f.run_until_settled(bodies).await;
    let after = head().await.unwrap().item.expect("head");
    assert_eq!(before, after, "the head is not written by results");
    let meta = f.job(&job).await;
    assert_eq!(
        (meta.done, meta.found, meta.duplicates),
        (3, 3, 3),
        "figures summed on read"
    );
}
