//! Enrow's searches: single (`/email/find/single`, `/email/verify/single`, `/phone/single`: the
//! event carries the result) and bulk (`…/bulk`: the event carries only the id), their webhook
//! (the request's own, else the dashboard's), and the result GETs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::delivery::Webhook;
use super::start::Plan;
use super::{
    Inner, Job, SandboxConfig, authorized, email_for, get_fault, rules, s, score, serve_results,
    split_name,
};

/// Where a search's event goes: the request's `settings.webhook`, else the dashboard's.
fn webhook(req: &Value, config: &SandboxConfig) -> Option<String> {
    req.pointer("/settings/webhook")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| config.enrow_global_webhook.clone())
}

/// A finished job with one event to send, if it has a webhook.
fn finished(records: Vec<Value>, credits: f64, url: Option<String>, event: &Value) -> Plan {
    Plan {
        records,
        credits,
        status: "FINISHED",
        webhooks: url
            .map(|u| vec![Webhook::new(&u, event, false)])
            .unwrap_or_default(),
    }
}

/// A single search: its result, and an event that carries it.
pub(super) fn plan_single(path: &str, req: &Value, id: &str, config: &SandboxConfig) -> Plan {
    // The contact's own fields decide (not the per-job webhook URL or record key).
    let mut input = req.clone();
    if let Some(o) = input.as_object_mut() {
        o.remove("settings");
        o.remove("custom");
    }
    let (event, result, credits) = single_result(path, req, &input);
    let body = if event == "verification_finished" {
        // The verifier's event is flat (providers.md §3.3).
        let mut b = result.clone();
        b["event"] = json!(event);
        b["id"] = json!(id);
        b
    } else {
        json!({ "event": event, "id": id, "credits": { "cost": credits }, "result": result })
    };
    finished(vec![result], credits, webhook(req, config), &body)
}

/// A single search's event name, result and cost; `input` (the contact alone) decides.
fn single_result(path: &str, req: &Value, input: &Value) -> (&'static str, Value, f64) {
    let found = score(input) < 75;
    match path {
        "/email/find/single" => {
            let (first, last) = split_name(s(req, "fullname"));
            let email = email_for(first, last, s(req, "company_domain"));
            let result = if found {
                json!({ "email": email, "qualification": "valid", "custom": req.get("custom") })
            } else {
                json!({ "email": null, "qualification": "invalid", "custom": req.get("custom") })
            };
            (
                "single_search_finished",
                result,
                if found { 1.0 } else { 0.0 },
            )
        }
        "/email/verify/single" => {
            let q = if found { "valid" } else { "invalid" };
            (
                "verification_finished",
                json!({ "email": req.get("email"), "qualification": q, "custom": req.get("custom") }),
                0.25,
            )
        }
        _ => {
            let result = if found {
                json!({ "number": format!("+1555{:07}", score(input) as u32 * 9973 % 10_000_000), "country": "US", "qualification": "found", "custom": req.get("custom") })
            } else {
                json!({ "qualification": "not_found", "custom": req.get("custom") })
            };
            (
                "single_phone_search_finished",
                result,
                if found { 40.0 } else { 0.0 },
            )
        }
    }
}

/// A bulk: a row per item, a credit per hit, and an event with only the id.
pub(super) fn plan_bulk(path: &str, req: &Value, id: &str, config: &SandboxConfig) -> Plan {
    let (items, event) = bulk_items(path, req);
    let rows: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| bulk_row(path, i, item))
        .collect();
    let credits = rows
        .iter()
        .filter(|r| matches!(s(r, "qualification"), "valid" | "found"))
        .count() as f64;
    let body = json!({ "event": event, "id": id, "credits": { "cost": credits } });
    finished(rows, credits, webhook(req, config), &body)
}

/// A bulk's items and the event its end sends.
fn bulk_items(path: &str, req: &Value) -> (Vec<Value>, &'static str) {
    let list = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    match path {
        "/email/verify/bulk" => (
            list(req.get("verifications").or(req.get("emails"))),
            "bulk_verification_finished",
        ),
        "/phone/bulk" => (list(req.get("searches")), "bulk_phone_search_finished"),
        _ => (list(req.get("searches")), "bulk_search_finished"),
    }
}

/// Item `i` of a bulk, found or not.
fn bulk_row(path: &str, i: usize, item: &Value) -> Value {
    let found = score(item) < 75;
    match path {
        "/email/verify/bulk" => json!({ "email": item, "index": uuid::Uuid::new_v4().to_string(),
                                       "qualification": if found { "valid" } else { "invalid" } }),
        "/phone/bulk" => {
            if found {
                json!({ "index": i, "number": format!("+1555{:07}", score(item) as u32 * 9973 % 10_000_000), "country": "US", "qualification": "found", "custom": item.get("custom") })
            } else {
                json!({ "index": i, "qualification": "not_found", "custom": item.get("custom") })
            }
        }
        _ => {
            let (first, last) = split_name(s(item, "fullname"));
            let email = email_for(first, last, s(item, "company_domain"));
            json!({ "index": i.to_string(), "qualification": if found { "valid" } else { "invalid" },
                    "email": if found { Value::from(email) } else { Value::Null }, "custom": item.get("custom") })
        }
    }
}

/// Enrow's result GETs (`?id=`): a single answers `qualification: "ongoing"` while it runs, a
/// bulk 202 `ongoing`; unknown ids answer a single 500, a bulk 400 "Could not retrieve bulk …
/// results" (the newer docs: 404 is never returned).
pub(super) async fn get(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let config = inner.config.lock().unwrap().clone();
    if !authorized(&config, false, &headers) {
        return rules::for_status(false, false, StatusCode::UNAUTHORIZED).into_response();
    }
    if let Some(resp) = get_fault(&inner, &config, false) {
        return resp;
    }
    inner.counters.gets.fetch_add(1, Ordering::Relaxed);
    let Some(id) = q.get("id").filter(|i| !i.is_empty()) else {
        return rules::enrow(StatusCode::BAD_REQUEST, "Missing id in the query params")
            .into_response();
    };
    let single = uri.path().ends_with("/single");
    let ready = serve_results(&inner, &config, id);
    match inner.jobs.lock().unwrap().get(id) {
        Some(job) if single => single_answer(id, job, ready),
        Some(job) => bulk_answer(id, job, ready),
        None => unknown(uri.path(), single),
    }
}

fn single_answer(id: &str, job: &Job, ready: bool) -> Response {
    let mut result = job.records.first().cloned().unwrap_or(json!({}));
    if !ready {
        result = json!({ "id": id, "qualification": "ongoing" });
    } else {
        result["id"] = json!(id);
    }
    (StatusCode::OK, result.to_string()).into_response()
}

fn bulk_answer(id: &str, job: &Job, ready: bool) -> Response {
    if !ready {
        return (
            StatusCode::ACCEPTED,
            json!({ "general": { "id": id, "status": "ongoing" },
                    "stats": { "requested": job.records.len(), "finished": 0 } })
            .to_string(),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        json!({ "general": { "id": id, "status": "completed" },
                "stats": { "requested": job.records.len(), "finished": job.records.len(), "credits_cost": job.credits },
                "results": job.records })
        .to_string(),
    )
        .into_response()
}

/// An id Enrow does not know: a single 500, a bulk 400.
fn unknown(path: &str, single: bool) -> Response {
    let what = if path.contains("verify") {
        "verification"
    } else {
        "search"
    };
    if single {
        let message = format!("Could not retrieve single {what} results");
        rules::enrow(StatusCode::INTERNAL_SERVER_ERROR, &message).into_response()
    } else {
        let message = format!("Could not retrieve bulk {what} results");
        rules::enrow(StatusCode::BAD_REQUEST, &message).into_response()
    }
}
