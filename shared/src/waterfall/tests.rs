use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::*;
use crate::jobs::{ContactResult, JobMeta, JobStatus, PassedOn};

fn step(provider: Provider, operation: Operation, options: Value, job: &str) -> Step {
    Step {
        provider,
        operation,
        options,
        job_id: JobId::new(job),
    }
}

fn two_steps() -> Waterfall {
    Waterfall {
        steps: vec![
            step(Provider::Enrow, Operation::EmailFind, json!({}), "job_s0"),
            step(
                Provider::Fullenrich,
                Operation::Enrich,
                json!({"enrich_fields": ["contact.work_emails"]}),
                "job_s1",
            ),
        ],
        verify: Some(Verify {
            step: step(Provider::Enrow, Operation::EmailVerify, json!({}), "job_v"),
            when: VerifyWhen::FoundByFullenrich,
        }),
        max_credits_per_contact: None,
    }
}

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn row(index: u64, outcome: Outcome, reason: Option<&str>) -> ContactResult {
    ContactResult {
        index: ContactIndex(index),
        custom: Some(json!({"crm_id": index})),
        outcome,
        email: (outcome == Outcome::Found).then(|| format!("c{index}@example.com")),
        email_status: None,
        phone: None,
        reason: reason.map(str::to_string),
        provisional: false,
        raw: Value::Null,
        waterfall: None,
    }
}

#[test]
fn only_what_another_provider_could_change_passes_on() {
    let cases = [
        (Outcome::NotFound, None, true),
        (Outcome::Invalid, None, true),
        (Outcome::Found, None, false),
        (Outcome::Valid, None, false),
        (Outcome::Failed, Some(reasons::TIMED_OUT), true),
        (Outcome::Failed, Some(reasons::PROVIDER_LOST), true),
        (Outcome::Failed, Some(reasons::REJECTED_BY_PROVIDER), true),
        (Outcome::Failed, Some(reasons::CANCELED), false),
        (Outcome::Failed, Some(reasons::CREDITS_INSUFFICIENT), false),
        (Outcome::Failed, Some(reasons::START_UNCONFIRMED), false),
        (Outcome::Failed, Some(CONTACT_BUDGET_EXHAUSTED), false),
    ];
    for (outcome, reason, passes) in cases {
        assert_eq!(
            passes_on(&row(0, outcome, reason)),
            passes,
            "{outcome} {reason:?}"
        );
    }
}

#[test]
fn a_contact_skips_a_step_it_lacks_a_field_for_or_cannot_afford() {
    let mut wf = two_steps();
    let named = fields(
        json!({"fullname": "Ada Lovelace", "company_domain": "example.com",
        "first_name": "Ada", "last_name": "Lovelace", "domain": "example.com"}),
    );
    assert_eq!(
        next_step(&wf, 0, &named, 0.0),
        Next::Go {
            position: 1,
            skipped: vec![]
        }
    );
    let no_last_name = fields(json!({"fullname": "Ada", "company_domain": "example.com"}));
    match next_step(&wf, 0, &no_last_name, 0.0) {
        Next::End { skipped } => {
            assert_eq!(skipped.len(), 1);
            assert_eq!(skipped[0].outcome, SKIPPED);
            assert_eq!(skipped[0].reason.as_deref(), Some(MISSING_FIELDS));
            assert_eq!(skipped[0].provider, Provider::Fullenrich);
        }
        other => panic!("{other:?}"),
    }
    wf.max_credits_per_contact = Some(1.5);
    match next_step(&wf, 0, &named, 1.0) {
        Next::End { skipped } => {
            assert_eq!(skipped[0].reason.as_deref(), Some(CONTACT_BUDGET_EXHAUSTED));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(next_step(&wf, 0, &named, 0.5), Next::Go { .. }));
}

#[test]
fn the_row_is_the_settling_steps_with_every_attempt_and_the_verification() {
    let wf = two_steps();
    let first = row(7, Outcome::NotFound, None);
    let route = Route {
        index: ContactIndex(7),
        position: 1,
        at: ContactIndex(2),
        attempts: vec![Attempt::of(&wf.steps[0], &first)],
        after: vec![],
    };
    let verify = Route {
        index: ContactIndex(7),
        position: 2,
        at: ContactIndex(0),
        attempts: vec![],
        after: vec![],
    };
    let mut later = HashMap::new();
    let waiting = merge(&wf, &first, &[&route], &later);
    assert!(waiting.provisional, "still at step 2");
    assert_eq!(waiting.waterfall.unwrap().provider, Provider::Fullenrich);
    later.insert((1, ContactIndex(2)), row(2, Outcome::Found, None));
    let merged = merge(&wf, &first, &[&route, &verify], &later);
    assert_eq!(merged.index, ContactIndex(7), "the waterfall's index");
    assert_eq!(merged.custom, first.custom);
    assert_eq!(merged.outcome, Outcome::Found);
    assert!(!merged.provisional);
    let s = merged.waterfall.unwrap();
    assert_eq!(s.provider, Provider::Fullenrich);
    let outcomes: Vec<_> = s.attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["not_found", "found"]);
    assert_eq!(s.attempts[1].credits, 1.0);
    assert_eq!(s.verification.unwrap().outcome, "pending");
    let alone = merge(&wf, &row(3, Outcome::Found, None), &[], &later);
    let s = alone.waterfall.unwrap();
    assert_eq!((s.provider, s.attempts.len()), (Provider::Enrow, 1));
    assert_eq!(s.verification, None);
}

#[test]
fn figures_count_each_contact_at_the_step_that_settled_it() {
    let head = |found, not_found, failed, passed_on| {
        let mut m = JobMeta::new(
            "job_x".into(),
            Operation::EmailFind,
            None,
            JobStatus::Completed,
            0,
            1,
            Value::Null,
        );
        (m.found, m.not_found, m.failed, m.passed_on) = (found, not_found, failed, passed_on);
        m.done = found + not_found + failed;
        m
    };
    // 10 contacts: 6 found at step 1, 3 not found and 1 failed passed on; step 2 finds 2.
    let steps = [
        head(
            6,
            3,
            1,
            PassedOn {
                not_found: 3,
                failed: 1,
            },
        ),
        head(2, 2, 0, PassedOn::default()),
    ];
    let f = settled_counts(&steps);
    assert_eq!((f.done, f.found, f.not_found, f.failed), (10, 8, 2, 0));
}
