//! Enrow's searches: single (`/email/find/single`, `/email/verify/single`, `/phone/single`: the
//! event carries the result) and bulk (`…/bulk`: the event carries only the id), their webhook
//! (the request's own, else the dashboard's), what they reserve and cost, and the result GETs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use relay_shared::Provider;

use super::delivery::Webhook;
use super::start::Plan;
use super::{
    Inner, Job, SandboxConfig, admit_get, email_for, finds, get_fault, rules, s, serve_results,
    split_name,
};

/// What a hit costs (providers.md §3.5): an email found 1, a verification 0.25 (every check,
/// whatever it says), a phone found 40 (the current doc; the spec and legacy plans say 50).
fn price(path: &str) -> f64 {
    if path.starts_with("/email/verify") {
        0.25
    } else if path.starts_with("/phone") {
        40.0
    } else {
        1.0
    }
}

/// Where a search's event goes: the request's `settings.webhook`, else the dashboard's.
fn webhook(req: &Value, config: &SandboxConfig) -> Option<String> {
    req.pointer("/settings/webhook")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| config.enrow_global_webhook.clone())
}

/// A finished job with one event to send, if it has a webhook. `reserved`: what its start takes
/// from the balance (`credits_used`); `credits`: what it costs once the misses are refunded.
fn finished(
    records: Vec<Value>,
    (reserved, credits): (f64, f64),
    url: Option<String>,
    event: &Value,
) -> Plan {
    Plan {
        records,
        credits,
        reserved,
        status: "FINISHED",
        webhooks: url
            .map(|u| vec![Webhook::new(&u, event, false)])
            .unwrap_or_default(),
    }
}

/// A single search: its result, and an event that carries it. The start reserves the price of a
/// hit; a miss is refunded.
pub(super) fn plan_single(path: &str, req: &Value, id: &str, config: &SandboxConfig) -> Plan {
    let (event, result, credits) = single_result(path, req);
    let body = if event == "verification_finished" {
        // The verifier's event is flat, without credits (providers.md §3.3).
        let mut b = result.clone();
        b["event"] = json!(event);
        b["id"] = json!(id);
        b
    } else {
        json!({ "event": event, "id": id, "credits": { "cost": credits }, "result": result })
    };
    let costs = (price(path), credits);
    finished(vec![result], costs, webhook(req, config), &body)
}

/// A single search's event name, result and cost; the contact's own fields decide (not the
/// per-job webhook URL or record key).
fn single_result(path: &str, req: &Value) -> (&'static str, Value, f64) {
    let found = finds::finds(Provider::Enrow, req);
    let cost = if found || path == "/email/verify/single" {
        price(path)
    } else {
        0.0
    };
    let custom = req.get("custom");
    match path {
        "/email/find/single" => {
            let (first, last) = split_name(s(req, "fullname"));
            let email = email_for(first, last, s(req, "company_domain"));
            let result = if found {
                json!({ "email": email, "qualification": "valid", "custom": custom })
            } else {
                json!({ "email": null, "qualification": "invalid", "custom": custom })
            };
            ("single_search_finished", result, cost)
        }
        "/email/verify/single" => {
            let q = if found { "valid" } else { "invalid" };
            (
                "verification_finished",
                json!({ "email": req.get("email"), "qualification": q, "custom": custom }),
                cost,
            )
        }
        _ => {
            let result = if found {
                json!({ "number": phone(req), "country": "US", "qualification": "found", "custom": custom })
            } else {
                json!({ "qualification": "not_found", "custom": custom })
            };
            ("single_phone_search_finished", result, cost)
        }
    }
}

fn phone(contact: &Value) -> String {
    format!("+1555{:07}", finds::digits(contact))
}

/// A bulk: a row per item, and an event with only the id and the cost (the phone event: the id
/// alone, §3.3). The start reserves a hit's price per item; the misses are refunded.
pub(super) fn plan_bulk(path: &str, req: &Value, id: &str, config: &SandboxConfig) -> Plan {
    let (items, event) = bulk_items(path, req);
    let rows: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| bulk_row(path, i, item))
        .collect();
    let reserved = price(path) * rows.len() as f64;
    let credits = if path == "/email/verify/bulk" {
        reserved
    } else {
        price(path) * hits(&rows) as f64
    };
    let body = if path == "/phone/bulk" {
        json!({ "event": event, "id": id })
    } else {
        json!({ "event": event, "id": id, "credits": { "cost": credits } })
    };
    finished(rows, (reserved, credits), webhook(req, config), &body)
}

fn hits(rows: &[Value]) -> usize {
    rows.iter()
        .filter(|r| matches!(s(r, "qualification"), "valid" | "found"))
        .count()
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
    let found = finds::finds(Provider::Enrow, item);
    match path {
        "/email/verify/bulk" => json!({ "email": item, "index": uuid::Uuid::new_v4().to_string(),
                                       "qualification": if found { "valid" } else { "invalid" } }),
        "/phone/bulk" => {
            if found {
                json!({ "index": i, "number": phone(item), "country": "US", "qualification": "found", "custom": item.get("custom") })
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

/// A finished bulk's `stats` as each operation's page shows them (§3.2): the finder's cost as
/// `{initial, refunded, final}`, the verifier's as a number, the phone search's as a number
/// beside `credits_to_refund` (0: the misses are refunded by then).
fn stats(path: &str, job: &Job) -> Value {
    let n = job.records.len();
    let hits = hits(&job.records);
    if path.starts_with("/email/verify") {
        json!({ "requested": n, "finished": n, "valid": hits, "credits_cost": job.credits })
    } else if path.starts_with("/phone") {
        json!({ "requested": n, "finished": n, "found": hits, "credits_cost": job.credits, "credits_to_refund": 0 })
    } else {
        json!({ "requested": n, "finished": n, "valid": hits,
                "credits_cost": { "initial": job.reserved, "refunded": job.reserved - job.credits, "final": job.credits } })
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
    if let Err(refused) = admit_get(&inner, &config, false, uri.path(), &headers) {
        return refused;
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
        Some(job) => bulk_answer(uri.path(), id, job, ready),
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

fn bulk_answer(path: &str, id: &str, job: &Job, ready: bool) -> Response {
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
                "stats": stats(path, job),
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
