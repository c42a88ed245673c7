//! A waterfall end to end on the dev stack (moto, the provider sandbox, the functions): Enrow's
//! email finder, then FullEnrich for whoever it did not find, FullEnrich's finds verified by
//! Enrow, under a budget, with duplicate webhooks. The sandbox finds exactly the contacts a
//! `found-by-` tag names (tools/local-stack/src/sandbox/finds.rs), so the test knows which
//! provider settles each row.

use std::time::Duration;

use relay_local_stack::dev::DevStack;
use serde_json::{Value, json};

use crate::e2e::{Client, options};

/// Contact `i` of 20: 12 found by Enrow (60 %), 4 by FullEnrich only (half the rest), 4 by no
/// one.
fn tag(i: usize) -> &'static str {
    match i {
        0..12 => "found-by-enrow",
        12..16 => "found-by-fullenrich",
        _ => "found-by-none",
    }
}

#[tokio::test]
async fn a_waterfall_settles_each_contact_at_the_provider_that_found_it_within_its_budget() {
    let mut opts = options();
    opts.sandbox.duplicate_rate = 0.5;
    let stack = DevStack::start(opts).await.expect("dev stack");
    let c = Client::of(&stack);
    let contacts: Vec<Value> = (0..20)
        .map(|i| {
            json!({"first_name": format!("Ada{i}"), "last_name": tag(i),
            "domain": "example.com", "custom": {"crm_id": format!("c{i}")}})
        })
        .collect();
    let job = c
        .post_job(json!({
            "name": "waterfall", "max_credits": 100, "contacts": contacts,
            "steps": [
                {"provider": "enrow", "operation": "email_find"},
                {"provider": "fullenrich", "operation": "enrich",
                 "options": {"enrich_fields": ["contact.work_emails"]}}],
            "verify": {"provider": "enrow", "operation": "email_verify", "when": "found_by_fullenrich"}
        }))
        .await;
    let state = c.wait_done(&job, Duration::from_secs(180)).await;
    assert_eq!(state["status"], "completed", "{state}");
    assert_eq!(
        (
            &state["done"],
            &state["found"],
            &state["not_found"],
            &state["failed"]
        ),
        (&json!(20), &json!(16), &json!(4), &json!(0)),
        "{state}"
    );
    assert_eq!(state["found_rate"], 0.8);
    let steps = state["steps"].as_array().expect("steps");
    let figures: Vec<(u64, u64, u64)> = steps
        .iter()
        .map(|s| {
            let n = |k: &str| s[k].as_u64().unwrap();
            (n("contacts"), n("found"), n("passed_on"))
        })
        .collect();
    assert_eq!(
        figures,
        [(20, 12, 8), (8, 4, 0), (4, figures[2].1, 0)],
        "Enrow had every contact, FullEnrich the 8 it did not find, verify FullEnrich's 4"
    );
    // Credits: within the budget, and what the steps spent is what the head shows.
    let credits = &state["credits"];
    let spent = credits["spent"].as_f64().unwrap();
    assert!(spent > 0.0 && spent <= 100.0, "{credits}");
    assert_eq!(credits["budget"], 100.0);
    let by_steps: f64 = steps
        .iter()
        .map(|s| s["credits"]["spent"].as_f64().unwrap())
        .sum();
    assert!((by_steps - spent).abs() < 1e-9, "{credits}");

    let rows = c.results(&job).await;
    assert_eq!(rows.len(), 20);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["index"], i, "in contact order");
        assert_eq!(
            r["custom"],
            json!({"crm_id": format!("c{i}")}),
            "its own custom"
        );
        let (provider, outcome, attempts) = match tag(i) {
            "found-by-enrow" => ("enrow", "found", 1),
            "found-by-fullenrich" => ("fullenrich", "found", 2),
            _ => ("fullenrich", "not_found", 2),
        };
        assert_eq!(
            (r["provider"].as_str(), r["outcome"].as_str()),
            (Some(provider), Some(outcome)),
            "{r}"
        );
        assert_eq!(r["attempts"].as_array().unwrap().len(), attempts, "{r}");
        let verified = r["verification"]["outcome"].as_str();
        if tag(i) == "found-by-fullenrich" {
            assert!(matches!(verified, Some("valid" | "invalid")), "{r}");
        } else {
            assert_eq!(verified, None, "only FullEnrich's finds are verified: {r}");
        }
    }
    // The CSV names the settling provider and the verification in columns.
    let csv = c.get_text(&format!("/jobs/{job}/results?format=csv")).await;
    let header = csv.lines().next().unwrap();
    for col in ["relay_provider", "relay_verification", "relay_attempts"] {
        assert!(header.contains(col), "{header}");
    }
    assert_eq!(stack.queue_depth("WebhookDeadLetterQueue").await, 0);
}
