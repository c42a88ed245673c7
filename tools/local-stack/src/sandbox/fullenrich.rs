//! FullEnrich v2's bulk enrichments (`/contact/enrich/bulk`, `/contact/reverse/email/bulk`): the
//! records a batch produces, what they cost, how it ends, its `contact_finished` and batch
//! webhooks, and the result GET.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use relay_shared::Provider;

use super::account::Balance;
use super::delivery::Webhook;
use super::start::Plan;
use super::{
    Inner, SandboxConfig, admit_get, draw, email_for, finds, get_fault, rules, s, serve_results,
};

/// A batch's start: its records, their credits, its terminal status.
pub(super) fn plan(
    path: &str,
    req: &Value,
    id: &str,
    balance: &mut Balance,
    config: &SandboxConfig,
) -> Plan {
    let data = req
        .get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let batch = run(
        &data,
        path.contains("reverse"),
        id,
        balance,
        config.cancel_rate,
    );
    let mut webhooks = Vec::new();
    if let Some(url) = req
        .pointer("/webhook_events/contact_finished")
        .and_then(Value::as_str)
        .filter(|_| config.contact_webhooks)
    {
        webhooks.extend(contact_finished(url, id, &batch, config.snapshot_rate));
    }
    if let Some(url) = req.get("webhook_url").and_then(Value::as_str) {
        let body = json!({ "id": id, "name": req.get("name"), "status": batch.status, "cost": { "credits": batch.credits }, "data": batch.records });
        webhooks.push(Webhook::new(url, &body, true));
    }
    Plan {
        records: batch.records,
        credits: batch.credits,
        // Each hit is paid as the batch runs: nothing is reserved, nothing refunded.
        reserved: batch.credits,
        status: batch.status,
        webhooks,
    }
}

/// What a batch comes to.
struct Batch {
    records: Vec<Value>,
    credits: f64,
    status: &'static str,
    /// The `custom` of each record that never finishes (canceled, or out of credits).
    unfinished: Vec<Option<Value>>,
}

/// Runs a batch: each record found or not, paid from the balance; a batch canceled (from the
/// dashboard) part-way finishes its first half, and the rest stays empty and never finishes.
fn run(data: &[Value], reverse: bool, id: &str, balance: &mut Balance, cancel_rate: f64) -> Batch {
    let canceled_from = (draw(&format!("cancel-{id}")) < cancel_rate).then_some(data.len() / 2);
    let mut batch = Batch {
        records: Vec::new(),
        credits: 0.0,
        status: if canceled_from.is_some() {
            "CANCELED"
        } else {
            "FINISHED"
        },
        unfinished: Vec::new(),
    };
    for (i, d) in data.iter().enumerate() {
        let custom = d.get("custom").cloned().unwrap_or(json!({}));
        let empty = || json!({ "input": d, "custom": custom });
        if canceled_from.is_some_and(|from| i >= from) {
            batch.unfinished.push(d.get("custom").cloned());
            batch.records.push(empty());
            continue;
        }
        let fields = fields(d);
        let cost = if reverse { 1.0 } else { cost(&fields) };
        let found = finds::finds(Provider::Fullenrich, d);
        // With the balance spent, the rest stay empty and never finish (no contact_finished for
        // them).
        if found && !balance.take(cost) {
            batch.status = "CREDITS_INSUFFICIENT";
            batch.unfinished.push(d.get("custom").cloned());
            batch.records.push(empty());
            continue;
        }
        if found {
            batch.credits += cost;
        }
        batch.records.push(if reverse {
            reverse_record(d, custom, found)
        } else {
            enrich_record(d, custom, &fields, found)
        });
    }
    batch
}

/// The fields a contact asks for, each once (work email when it names none).
fn fields(d: &Value) -> Vec<&str> {
    let mut fields: Vec<&str> = d
        .get("enrich_fields")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_else(|| vec!["contact.work_emails"]);
    fields.sort_unstable();
    fields.dedup();
    fields
}

/// What a hit costs (providers.md §2.10), by the fields asked for: a work email 1, a personal
/// email 3, a phone 10 (a hit finds every field it asked for).
fn cost(fields: &[&str]) -> f64 {
    fields
        .iter()
        .map(|f| match *f {
            "contact.personal_emails" => 3.0,
            "contact.phones" => 10.0,
            _ => 1.0,
        })
        .sum()
}

/// A reverse-email record: a profile when found.
fn reverse_record(d: &Value, custom: Value, found: bool) -> Value {
    let mut r = json!({ "input": { "email": d.get("email") }, "custom": custom });
    if found {
        r["profile"] = json!({ "full_name": "Sandbox Person", "headline": "Sandbox" });
    }
    r
}

/// An enrichment record: the fields asked for, filled when found.
fn enrich_record(d: &Value, custom: Value, fields: &[&str], found: bool) -> Value {
    let (first, last) = (s(d, "first_name"), s(d, "last_name"));
    let mut info = json!({ "most_probable_work_email": null, "work_emails": [],
                           "most_probable_personal_email": null, "personal_emails": [],
                           "most_probable_phone": null, "phones": [] });
    if found {
        if fields.contains(&"contact.work_emails") {
            let e =
                json!({ "email": email_for(first, last, s(d, "domain")), "status": "DELIVERABLE" });
            info["most_probable_work_email"] = e.clone();
            info["work_emails"] = json!([e]);
        }
        if fields.contains(&"contact.personal_emails") {
            let e = json!({ "email": email_for(first, last, "sandboxmail.com"), "status": "DELIVERABLE" });
            info["most_probable_personal_email"] = e.clone();
            info["personal_emails"] = json!([e]);
        }
        if fields.contains(&"contact.phones") {
            let p = json!({ "number": format!("+1 555-{:07}", finds::digits(d)), "region": "US" });
            info["most_probable_phone"] = p.clone();
            info["phones"] = json!([p]);
        }
    }
    json!({ "input": { "first_name": d.get("first_name"), "last_name": d.get("last_name"),
                       "company_domain": d.get("domain"), "professional_network_url": d.get("linkedin_url") },
            "custom": custom, "contact_info": info })
}

/// A `contact_finished` webhook per finished record: sometimes the whole enrichment so far (the
/// records finished up to this one, and the others still running, without `contact_info`).
fn contact_finished(url: &str, id: &str, batch: &Batch, snapshot_rate: f64) -> Vec<Webhook> {
    let records = &batch.records;
    let sent: Vec<&Value> = records
        .iter()
        .filter(|r| !batch.unfinished.contains(&r.get("custom").cloned()))
        .collect();
    let mut webhooks = Vec::new();
    for (k, r) in sent.iter().enumerate() {
        let data: Vec<Value> = if draw(&format!("snapshot-{id}-{k}")) < snapshot_rate {
            records
                .iter()
                .map(|rec| {
                    if sent[..=k].contains(&rec) {
                        rec.clone()
                    } else {
                        json!({ "input": rec.get("input"), "custom": rec.get("custom") })
                    }
                })
                .collect()
        } else {
            vec![(*r).clone()]
        };
        let body = json!({ "id": id, "status": "IN_PROGRESS", "data": data });
        webhooks.push(Webhook::new(url, &body, true));
    }
    webhooks
}

/// The result GET: 400 `error.enrichment.in_progress` while it runs, then the job object (402
/// when it ended `CREDITS_INSUFFICIENT`); unknown ids 404.
pub(super) async fn get(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let config = inner.config.lock().unwrap().clone();
    if let Err(refused) = admit_get(&inner, &config, true, uri.path(), &headers) {
        return refused;
    }
    if let Some(resp) = get_fault(&inner, &config, true) {
        return resp;
    }
    inner.counters.gets.fetch_add(1, Ordering::Relaxed);
    let reverse = uri.path().contains("/reverse/");
    let ready = serve_results(&inner, &config, &id);
    match inner.jobs.lock().unwrap().get(&id) {
        Some(_) if !ready => rules::fullenrich(
            StatusCode::BAD_REQUEST,
            "error.enrichment.in_progress",
            "Enrichment not ready, try again in 30 seconds",
        )
        .into_response(),
        Some(job) => {
            // Out of credits: the spec's 402 carries the job object.
            let status = if job.status == "CREDITS_INSUFFICIENT" {
                StatusCode::PAYMENT_REQUIRED
            } else {
                StatusCode::OK
            };
            (
                status,
                json!({ "id": id, "name": job.name, "status": job.status, "cost": { "credits": job.credits }, "data": job.records }).to_string(),
            )
                .into_response()
        }
        None if reverse => rules::fullenrich(
            StatusCode::NOT_FOUND,
            "error.reverse.email.not_found",
            "Reverse email ID not found",
        )
        .into_response(),
        None => rules::fullenrich(
            StatusCode::NOT_FOUND,
            "error.enrichment.not_found",
            "Enrichment ID not found",
        )
        .into_response(),
    }
}
