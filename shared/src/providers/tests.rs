//! Parser tests over every documented payload shape (fixtures/providers), odd ones included.

use super::enrow::{self, BulkResults, BulkStatus, EventKind, Qualification};
use super::fullenrich::{self, EmailStatus, JobStatus};

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/providers/",
            $path
        ))
    };
}

#[test]
fn fullenrich_batch_finished() {
    let job = fullenrich::parse_batch(fixture!("fullenrich/batch_finished.json")).unwrap();
    assert_eq!(
        job.id.as_deref(),
        Some("2db5ea61-1752-42cf-8ea1-ab1da060cd0a")
    );
    assert_eq!(job.status, Some(JobStatus::Finished));
    assert!(job.status.unwrap().is_terminal());
    assert_eq!(job.cost.credits, Some(14.0));
    assert_eq!(job.data.len(), 2);

    let john = &job.data[0];
    assert_eq!(john.custom_str("rid").as_deref(), Some("r-0"));
    assert_eq!(john.input.company_domain.as_deref(), Some("example.com"));
    assert!(john.input.professional_network_url.is_some());
    let email = john.contact_info.work_email().unwrap();
    assert_eq!(email.email.as_deref(), Some("john.snow@example.com"));
    assert_eq!(email.status, Some(EmailStatus::Deliverable));
    assert_eq!(
        john.contact_info.phone().unwrap().number.as_deref(),
        Some("+1 555-123-4567")
    );
    assert!(john.profile.is_some());
    assert_eq!(
        john.raw["profile"]["employment"]["current"]["start_at"],
        "2024-1-0T00:00:00.000Z"
    );

    // NOT_FOUND without email, a phone with only a region, `""`, `null` arrays: all not found.
    let arya = &job.data[1];
    assert_eq!(
        arya.input.company_domain.as_deref(),
        Some("example.org"),
        "alias domain"
    );
    assert!(arya.contact_info.work_email().is_none());
    assert!(arya.contact_info.phone().is_none());
    assert!(arya.contact_info.work_emails.is_empty());
    assert!(arya.profile.is_none());
}

#[test]
fn fullenrich_credits_insufficient_uses_v1_datas_and_null_contact_info() {
    let job =
        fullenrich::parse_batch(fixture!("fullenrich/batch_credits_insufficient.json")).unwrap();
    assert_eq!(job.status, Some(JobStatus::CreditsInsufficient));
    assert!(job.status.as_ref().unwrap().is_terminal());
    assert_eq!(job.data.len(), 2);
    assert_eq!(
        job.data[0].contact_info.work_email().unwrap().status,
        Some(EmailStatus::HighProbability)
    );
    assert!(job.data[1].contact_info.work_email().is_none());
}

#[test]
fn fullenrich_canceled_with_null_data() {
    let job = fullenrich::parse_batch(fixture!("fullenrich/batch_canceled.json")).unwrap();
    assert_eq!(job.status, Some(JobStatus::Canceled));
    assert!(job.data.is_empty());
    assert_eq!(job.cost.credits, Some(0.0));
}

#[test]
fn fullenrich_contact_finished_as_job_or_bare_record() {
    let job =
        fullenrich::parse_contact_finished(fixture!("fullenrich/contact_finished.json")).unwrap();
    assert_eq!(job.status, Some(JobStatus::InProgress));
    assert!(!job.status.as_ref().unwrap().is_terminal());
    assert_eq!(job.data.len(), 1);
    assert_eq!(
        job.data[0].contact_info.work_email().unwrap().status,
        Some(EmailStatus::CatchAll)
    );

    let bare =
        fullenrich::parse_contact_finished(fixture!("fullenrich/contact_finished_bare.json"))
            .unwrap();
    assert!(bare.id.is_none());
    assert_eq!(bare.data.len(), 1);
    assert_eq!(bare.data[0].custom_str("rid").as_deref(), Some("r-0"));
    assert!(bare.data[0].contact_info.phone().is_some());
    assert!(bare.data[0].raw.get("input").is_some(), "raw record kept");
}

#[test]
fn fullenrich_reverse_email_records_have_no_contact_info() {
    let job = fullenrich::parse_batch(fixture!("fullenrich/reverse_email_finished.json")).unwrap();
    assert_eq!(job.data.len(), 2);
    assert_eq!(
        job.data[0].input.email.as_deref(),
        Some("john.snow@example.com")
    );
    assert!(job.data[0].profile.is_some());
    assert!(job.data[1].profile.is_none());
}

#[test]
fn fullenrich_tolerates_new_values_and_odd_types() {
    let body = br#"{"id": 42, "status": "PAUSED", "cost": {"credits": "3"}, "unknown": [1],
        "data": [{"custom": {"rid": 7}, "contact_info": {"work_emails": [{"email": "a@b.c", "status": "VERY_NEW"}]}}]}"#;
    let job = fullenrich::parse_batch(body).unwrap();
    assert_eq!(job.id.as_deref(), Some("42"));
    assert_eq!(job.status, Some(JobStatus::Other("PAUSED".into())));
    assert!(
        !job.status.unwrap().is_terminal(),
        "unknown status is not terminal"
    );
    assert_eq!(job.cost.credits, Some(3.0));
    assert_eq!(job.data[0].custom_str("rid").as_deref(), Some("7"));
    let e = job.data[0].contact_info.work_email().unwrap();
    assert_eq!(e.status.as_ref().unwrap().as_str(), "VERY_NEW");

    let start: fullenrich::StartResponse = serde_json::from_str(r#"{"id": "abc"}"#).unwrap();
    assert_eq!(start.enrichment_id(), Some("abc"));
    let start: fullenrich::StartResponse =
        serde_json::from_str(r#"{"enrichment_id": "2db5ea61"}"#).unwrap();
    assert_eq!(start.enrichment_id(), Some("2db5ea61"));
}

fn event(bytes: &[u8]) -> enrow::Event {
    enrow::Event::parse(bytes).unwrap()
}

#[test]
fn enrow_single_search_finished() {
    let e = event(fixture!("enrow/single_search_finished.json"));
    assert_eq!(e.event, Some(EventKind::SingleSearchFinished));
    assert_eq!(
        e.id.as_deref(),
        Some("910f3e13-b2bf-442d-ab0b-4cf44dfrij84fjrt")
    );
    assert_eq!(e.credits.cost, Some(1.0));
    let r = e.single_result().unwrap();
    assert_eq!(r.email.as_deref(), Some("dwight.schrute@dundermifflin.com"));
    assert_eq!(r.qualification, Some(Qualification::Valid));
    assert_eq!(
        r.custom,
        Some(serde_json::json!("your_custom_data")),
        "custom as string"
    );

    let e = event(fixture!("enrow/single_search_finished_object_custom.json"));
    let r = e.single_result().unwrap();
    assert_eq!(r.email, None, "email null = not found");
    assert_eq!(r.qualification, Some(Qualification::Invalid));
    assert_eq!(r.custom.unwrap()["crm_id"], "lead_001", "custom as object");
}

#[test]
fn enrow_verification_finished_is_flat() {
    let e = event(fixture!("enrow/verification_finished.json"));
    assert_eq!(e.event, Some(EventKind::VerificationFinished));
    let r = e.single_result().unwrap();
    assert_eq!(r.email.as_deref(), Some("pam.beesly@dundermifflin.com"));
    assert_eq!(r.qualification, Some(Qualification::Valid));
    assert_eq!(r.custom, Some(serde_json::json!("your_custom_data")));
}

#[test]
fn enrow_single_phone_current_legacy_and_not_found() {
    let e = event(fixture!("enrow/single_phone_search_finished.json"));
    let r = e.single_result().unwrap();
    assert_eq!(r.number.as_deref(), Some("+15705551234"));
    assert_eq!(r.qualification, Some(Qualification::Found));
    assert_eq!(e.credits.cost, Some(50.0));

    let legacy = event(fixture!("enrow/single_phone_search_finished_legacy.json"));
    assert_eq!(
        legacy.id.as_deref(),
        Some("910f3e13-b2bf-442d-ab0b-4cf44dfrij84fjrt"),
        "the job id is the top-level id, not the nested one"
    );
    let r = legacy.single_result().unwrap();
    assert_eq!(r.number.as_deref(), Some("+3399999999"));
    assert_eq!(r.qualification, Some(Qualification::Found));

    let r = event(fixture!("enrow/single_phone_not_found.json"))
        .single_result()
        .unwrap();
    assert_eq!(r.number, None, "missing number = not found");
    assert_eq!(r.qualification, Some(Qualification::NotFound));
}

#[test]
fn enrow_bulk_events_carry_only_an_id() {
    for (bytes, kind, cost) in [
        (
            &fixture!("enrow/bulk_search_finished.json")[..],
            EventKind::BulkSearchFinished,
            Some(2284.0),
        ),
        (
            &fixture!("enrow/bulk_search_finished_legacy.json")[..],
            EventKind::BulkSearchFinished,
            Some(2284.0),
        ),
        (
            &fixture!("enrow/bulk_verification_finished.json")[..],
            EventKind::BulkVerificationFinished,
            Some(386.25),
        ),
        (
            &fixture!("enrow/bulk_phone_search_finished.json")[..],
            EventKind::BulkPhoneSearchFinished,
            None,
        ),
    ] {
        let e = event(bytes);
        assert_eq!(e.event.as_ref(), Some(&kind));
        assert!(kind.is_bulk());
        assert_eq!(e.credits.cost, cost);
        assert!(e.id.is_some());
        assert!(e.single_result().is_none(), "bulk events carry no result");
    }
    let legacy = event(fixture!("enrow/bulk_search_finished_legacy.json"));
    assert_eq!(legacy.credits.balance, Some(82772.0));
}

#[test]
fn enrow_unknown_event_is_kept() {
    let e = event(br#"{"event": "bulk_company_search_finished", "id": 12}"#);
    assert_eq!(
        e.event,
        Some(EventKind::Other("bulk_company_search_finished".into()))
    );
    assert_eq!(e.id.as_deref(), Some("12"));
}

#[test]
fn enrow_bulk_results_index_string_number_uuid() {
    let find = BulkResults::parse(fixture!("enrow/bulk_email_find_results.json")).unwrap();
    assert_eq!(find.status(), Some(&BulkStatus::Completed));
    assert_eq!(
        find.credits_cost(),
        Some(2.0),
        "credits_cost as {{initial, refunded, final}}"
    );
    assert_eq!(find.general.custom, Some(serde_json::json!("campaign_q2")));
    let rows: Vec<_> = find.rows().collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].0.index.as_deref(), Some("0"));
    assert_eq!(rows[1].0.index.as_deref(), Some("2"), "numeric index");
    assert_eq!(rows[1].0.email, None);
    assert_eq!(rows[1].0.qualification, Some(Qualification::Invalid));
    assert_eq!(
        rows[2].1["info"]["company_domain"], "dundermifflin.com",
        "raw row kept"
    );

    let verify = BulkResults::parse(fixture!("enrow/bulk_verify_results.json")).unwrap();
    assert_eq!(verify.credits_cost(), Some(0.5), "credits_cost as a number");
    let (row, _) = verify.rows().next().unwrap();
    assert_eq!(
        row.index.as_deref(),
        Some("195f87c6-376e-4eca-9861-f92935413b0c")
    );
    assert_eq!(row.email.as_deref(), Some("pam.beesly@dundermifflin.com"));

    let phone = BulkResults::parse(fixture!("enrow/bulk_phone_results.json")).unwrap();
    let rows: Vec<_> = phone.rows().collect();
    assert_eq!(rows[0].0.index.as_deref(), Some("0"));
    assert_eq!(rows[0].0.number.as_deref(), Some("+15705551234"));
    assert_eq!(rows[1].0.number, None);
    assert_eq!(phone.credits_cost(), Some(80.0));

    let running = BulkResults::parse(fixture!("enrow/bulk_running.json")).unwrap();
    assert_eq!(running.status(), Some(&BulkStatus::Ongoing));
    assert!(!running.status().unwrap().is_terminal());
    assert!(running.results.is_empty());
}

#[test]
fn enrow_error_bodies() {
    for (body, text) in [
        (r#"{"message": "Too Many Requests"}"#, "Too Many Requests"),
        (
            r#"{"reason": "Insufficient credits", "success": false}"#,
            "Insufficient credits",
        ),
        (
            r#"{"error": "ValidationError", "status": 400}"#,
            "ValidationError",
        ),
    ] {
        let e: enrow::EnrowErrorBody = serde_json::from_str(body).unwrap();
        assert_eq!(e.text(), Some(text));
    }
}

#[test]
fn fullenrich_records_present_but_empty_are_not_finished() {
    use serde_json::json;
    assert!(fullenrich::finished(
        &json!({"contact_info": {"most_probable_work_email": null, "work_emails": []}})
    ));
    assert!(fullenrich::finished(
        &json!({"profile": {"full_name": "A"}})
    ));
    for empty in [
        json!({}),
        json!({"contact_info": null}),
        json!({"contact_info": {}}),
        json!({"input": {"first_name": "A"}, "custom": {"rid": "1"}}),
    ] {
        assert!(!fullenrich::finished(&empty), "{empty}");
    }
}

#[test]
fn balance_bodies_parse_tolerantly() {
    let fe = |body: &str| fullenrich::Balance::parse(body.as_bytes()).unwrap().balance;
    assert_eq!(
        fe(r#"{"balance": 5000}"#),
        Some(5000.0),
        "the spec's sample"
    );
    assert_eq!(fe(r#"{"balance": 12.5, "workspace": "w"}"#), Some(12.5));
    assert_eq!(fe(r#"{"balance": "42"}"#), Some(42.0), "a numeric string");
    assert_eq!(fe(r#"{"balance": null}"#), None);
    assert_eq!(fe(r#"{"code": "error.api.key"}"#), None);

    let info = enrow::AccountInfo::parse(
        br#"{"credits": 36000, "webhooks": ["https://relay.example/w", 3, null]}"#,
    )
    .unwrap();
    assert_eq!(info.credits, Some(36000.0), "the spec's sample");
    assert_eq!(
        info.webhooks().collect::<Vec<_>>(),
        ["https://relay.example/w"]
    );
    let bare = enrow::AccountInfo::parse(br#"{"credits": 386.25, "webhooks": null}"#).unwrap();
    assert_eq!((bare.credits, bare.webhooks().count()), (Some(386.25), 0));
    let none = enrow::AccountInfo::parse(br#"{"message": "This apikey is not valid"}"#).unwrap();
    assert_eq!(none.credits, None);
    assert!(enrow::AccountInfo::parse(b"not json").is_err());
}
