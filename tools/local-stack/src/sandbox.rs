//! The provider sandbox: FullEnrich v2 and Enrow as providers.md documents them, on loopback.
//!
//! - Start endpoints of every operation, with their auth (`Authorization: Bearer` /
//!   `x-api-key`; 401 otherwise) and their limits (100 / 5,000 / 3,000 per request: 400 above).
//! - Deterministic fake results: about three contacts in four are found (a stable hash of the
//!   input decides), so a demo and a test see the same outcome every run.
//! - After `delay`, webhooks to the URLs the request carried: FullEnrich `contact_finished` per
//!   record then the batch webhook, both signed with `X-Signature-SHA1` (HMAC-SHA1 of the raw body
//!   under the API key) and retried on non-2xx every `retry_interval`, 5 times at most; Enrow
//!   single events with their result and bulk events with only the id, each sent twice at the
//!   `duplicate_rate`.
//! - Result GETs (FullEnrich job object, Enrow bulk results).
//! - Failure injection: `start_failures` answers the next start requests with those statuses
//!   (429, 402, 500, …), in order.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub enrow_key: String,
    pub fullenrich_key: String,
    /// Time from a start to its webhooks.
    pub delay: Duration,
    /// Share of Enrow webhooks (and FullEnrich batch webhooks) delivered twice, 0.0 to 1.0.
    pub duplicate_rate: f64,
    /// FullEnrich's retry interval after a non-2xx (a minute in production).
    pub retry_interval: Duration,
    /// Statuses for the next start requests, in order (failure injection).
    pub start_failures: Vec<u16>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enrow_key: "sandbox-enrow-key".into(),
            fullenrich_key: "sandbox-fullenrich-key".into(),
            delay: Duration::from_millis(500),
            duplicate_rate: 0.0,
            retry_interval: Duration::from_secs(1),
            start_failures: Vec::new(),
        }
    }
}

/// Counters a test or the demo can read.
#[derive(Debug, Default)]
pub struct Counters {
    pub starts: AtomicU64,
    pub webhooks_sent: AtomicU64,
    pub webhooks_retried: AtomicU64,
    pub duplicates_sent: AtomicU64,
}

struct Job {
    records: Vec<Value>,
    name: String,
    credits: f64,
}

struct Inner {
    config: Mutex<SandboxConfig>,
    failures: Mutex<VecDeque<u16>>,
    jobs: Mutex<HashMap<String, Job>>,
    http: reqwest::Client,
    counters: Counters,
    deliveries: AtomicU64,
}

#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
    pub url: String,
}

impl Sandbox {
    /// Serves on 127.0.0.1:`port` (0: a free port) until the process ends.
    pub async fn start(config: SandboxConfig, port: u16) -> std::io::Result<Sandbox> {
        let inner = Arc::new(Inner {
            failures: Mutex::new(config.start_failures.iter().copied().collect()),
            config: Mutex::new(config),
            jobs: Mutex::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            counters: Counters::default(),
            deliveries: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/contact/enrich/bulk", post(start))
            .route("/contact/reverse/email/bulk", post(start))
            .route("/contact/enrich/bulk/{id}", get(fullenrich_get))
            .route("/contact/reverse/email/bulk/{id}", get(fullenrich_get))
            .route("/email/find/single", post(start))
            .route("/email/verify/single", post(start))
            .route("/phone/single", post(start))
            .route("/email/find/bulk", post(start).get(enrow_get))
            .route("/email/verify/bulk", post(start).get(enrow_get))
            .route("/phone/bulk", post(start).get(enrow_get))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Sandbox { inner, url })
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Answers the next start requests with these statuses.
    pub fn inject_start_failures(&self, statuses: &[u16]) {
        self.inner.failures.lock().unwrap().extend(statuses);
    }

    pub fn set_duplicate_rate(&self, rate: f64) {
        self.inner.config.lock().unwrap().duplicate_rate = rate;
    }
}

/// A stable 0..100 score of an input: decides found / not found.
fn score(v: &Value) -> u8 {
    Sha256::digest(v.to_string().as_bytes())[0] % 100
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn email_for(first: &str, last: &str, domain: &str) -> String {
    let clean = |x: &str| {
        x.to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
    };
    let domain = if domain.is_empty() {
        "example.com"
    } else {
        domain
    };
    format!(
        "{}.{}@{}",
        clean(first),
        clean(last),
        domain.to_ascii_lowercase()
    )
}

fn split_name(full: &str) -> (&str, &str) {
    full.trim().split_once(' ').unwrap_or((full, "x"))
}

fn error(status: StatusCode, message: &str) -> (StatusCode, String) {
    (
        status,
        json!({ "message": message, "code": message }).to_string(),
    )
}

async fn start(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_string();
    let fullenrich = path.starts_with("/contact/");
    let config = inner.config.lock().unwrap().clone();
    let authorized = if fullenrich {
        headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {}", config.fullenrich_key))
    } else {
        headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(config.enrow_key.as_str())
    };
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, "This apikey is not valid");
    }
    if let Some(status) = inner.failures.lock().unwrap().pop_front() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, "injected failure");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Invalid JSON input");
    };
    inner.counters.starts.fetch_add(1, Ordering::Relaxed);
    let id = uuid::Uuid::new_v4().to_string();
    let plan = match plan(&path, &req, &id) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    inner.jobs.lock().unwrap().insert(
        id.clone(),
        Job {
            records: plan.records.clone(),
            name: s(&req, "name").to_string(),
            credits: plan.credits,
        },
    );
    let answer = if fullenrich {
        json!({ "enrichment_id": id })
    } else {
        json!({ "id": id, "message": "operating", "credits_used": plan.credits })
    };
    let inner2 = Arc::clone(&inner);
    tokio::spawn(async move {
        tokio::time::sleep(config.delay).await;
        for (url, body, signed) in plan.webhooks {
            deliver(&inner2, &url, body, signed).await;
        }
    });
    (StatusCode::OK, answer.to_string())
}

/// What a start produces: the stored records and the webhooks to send.
struct Plan {
    records: Vec<Value>,
    credits: f64,
    webhooks: Vec<(String, Vec<u8>, bool)>,
}

fn plan(path: &str, req: &Value, id: &str) -> Result<Plan, String> {
    let webhook = req
        .pointer("/settings/webhook")
        .and_then(Value::as_str)
        .map(str::to_string);
    match path {
        "/contact/enrich/bulk" | "/contact/reverse/email/bulk" => {
            let data = req
                .get("data")
                .and_then(Value::as_array)
                .ok_or("Data is empty")?;
            if data.is_empty() || data.len() > 100 {
                return Err("data must hold 1 to 100 contacts".into());
            }
            let reverse = path.contains("reverse");
            let records: Vec<Value> = data
                .iter()
                .map(|d| {
                    let found = score(d) < 75;
                    let custom = d.get("custom").cloned().unwrap_or(json!({}));
                    if reverse {
                        let mut r = json!({ "input": { "email": d.get("email") }, "custom": custom });
                        if found {
                            r["profile"] = json!({ "full_name": "Sandbox Person", "headline": "Sandbox" });
                        }
                        r
                    } else {
                        let email = email_for(s(d, "first_name"), s(d, "last_name"), s(d, "domain"));
                        let contact_info = if found {
                            json!({ "most_probable_work_email": { "email": email, "status": "DELIVERABLE" },
                                    "work_emails": [{ "email": email, "status": "DELIVERABLE" }] })
                        } else {
                            json!({ "most_probable_work_email": null, "work_emails": [] })
                        };
                        json!({ "input": { "first_name": d.get("first_name"), "last_name": d.get("last_name"),
                                           "company_domain": d.get("domain"), "professional_network_url": d.get("linkedin_url") },
                                "custom": custom, "contact_info": contact_info })
                    }
                })
                .collect();
            let credits = records
                .iter()
                .filter(|r| {
                    r.get("profile").is_some() || r.pointer("/contact_info/work_emails/0").is_some()
                })
                .count() as f64;
            let mut webhooks = Vec::new();
            if let Some(url) = req
                .pointer("/webhook_events/contact_finished")
                .and_then(Value::as_str)
            {
                for r in &records {
                    let body = json!({ "id": id, "status": "IN_PROGRESS", "data": [r] });
                    webhooks.push((url.to_string(), body.to_string().into_bytes(), true));
                }
            }
            if let Some(url) = req.get("webhook_url").and_then(Value::as_str) {
                let body = json!({ "id": id, "name": req.get("name"), "status": "FINISHED", "cost": { "credits": credits }, "data": records });
                webhooks.push((url.to_string(), body.to_string().into_bytes(), true));
            }
            Ok(Plan {
                records,
                credits,
                webhooks,
            })
        }
        "/email/find/single" | "/email/verify/single" | "/phone/single" => {
            // The contact's own fields decide (not the per-job webhook URL or record key).
            let mut input = req.clone();
            if let Some(o) = input.as_object_mut() {
                o.remove("settings");
                o.remove("custom");
            }
            let found = score(&input) < 75;
            let (event, result, credits) = match path {
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
                        json!({ "number": format!("+1555{:07}", score(&input) as u32 * 9973 % 10_000_000), "country": "US", "qualification": "found", "custom": req.get("custom") })
                    } else {
                        json!({ "qualification": "not_found", "custom": req.get("custom") })
                    };
                    (
                        "single_phone_search_finished",
                        result,
                        if found { 40.0 } else { 0.0 },
                    )
                }
            };
            let body = if event == "verification_finished" {
                // The verifier's event is flat (providers.md §3.3).
                let mut b = result.clone();
                b["event"] = json!(event);
                b["id"] = json!(id);
                b
            } else {
                json!({ "event": event, "id": id, "credits": { "cost": credits }, "result": result })
            };
            let webhooks = webhook
                .map(|u| vec![(u, body.to_string().into_bytes(), false)])
                .unwrap_or_default();
            Ok(Plan {
                records: vec![result],
                credits,
                webhooks,
            })
        }
        _ => {
            let (items, limit, event): (Vec<Value>, usize, &str) = match path {
                "/email/verify/bulk" => (
                    req.get("verifications")
                        .or(req.get("emails"))
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    5000,
                    "bulk_verification_finished",
                ),
                "/phone/bulk" => (
                    req.get("searches")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    3000,
                    "bulk_phone_search_finished",
                ),
                _ => (
                    req.get("searches")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    5000,
                    "bulk_search_finished",
                ),
            };
            if items.is_empty() {
                return Err("Missing searches payload".into());
            }
            if items.len() > limit {
                return Err(format!(
                    "Too many searches. Limit is currently at {limit} per batch."
                ));
            }
            let rows: Vec<Value> = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let found = score(item) < 75;
                    match path {
                        "/email/verify/bulk" => json!({ "email": item, "index": uuid::Uuid::new_v4().to_string(),
                                                       "qualification": if found { "valid" } else { "invalid" } }),
                        "/phone/bulk" => if found {
                            json!({ "index": i, "number": format!("+1555{:07}", score(item) as u32 * 9973 % 10_000_000), "country": "US", "qualification": "found", "custom": item.get("custom") })
                        } else {
                            json!({ "index": i, "qualification": "not_found", "custom": item.get("custom") })
                        },
                        _ => {
                            let (first, last) = split_name(s(item, "fullname"));
                            let email = email_for(first, last, s(item, "company_domain"));
                            json!({ "index": i.to_string(), "qualification": if found { "valid" } else { "invalid" },
                                    "email": if found { Value::from(email) } else { Value::Null }, "custom": item.get("custom") })
                        }
                    }
                })
                .collect();
            let credits = rows
                .iter()
                .filter(|r| matches!(s(r, "qualification"), "valid" | "found"))
                .count() as f64;
            let body = json!({ "event": event, "id": id, "credits": { "cost": credits } });
            let webhooks = webhook
                .map(|u| vec![(u, body.to_string().into_bytes(), false)])
                .unwrap_or_default();
            Ok(Plan {
                records: rows,
                credits,
                webhooks,
            })
        }
    }
}

/// Sends one webhook (signed for FullEnrich), retrying non-2xx FullEnrich deliveries 5 times,
/// and a second copy at the duplicate rate.
async fn deliver(inner: &Inner, url: &str, body: Vec<u8>, signed: bool) {
    let config = inner.config.lock().unwrap().clone();
    let n = inner.deliveries.fetch_add(1, Ordering::Relaxed);
    // Deterministic: delivery n is doubled when the running share crosses a whole number.
    let copies = if ((n + 1) as f64 * config.duplicate_rate).floor()
        > (n as f64 * config.duplicate_rate).floor()
    {
        2
    } else {
        1
    };
    for copy in 0..copies {
        if copy == 1 {
            inner
                .counters
                .duplicates_sent
                .fetch_add(1, Ordering::Relaxed);
        }
        let attempts = if signed { 6 } else { 1 };
        for attempt in 0..attempts {
            let mut req = inner
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.clone());
            if signed {
                let sig = relay_shared::auth::fullenrich_signature(
                    config.fullenrich_key.as_bytes(),
                    &body,
                );
                req = req.header("X-Signature-SHA1", sig);
            }
            inner.counters.webhooks_sent.fetch_add(1, Ordering::Relaxed);
            match req.send().await {
                Ok(r) if r.status().is_success() => break,
                _ if attempt + 1 < attempts => {
                    inner
                        .counters
                        .webhooks_retried
                        .fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(config.retry_interval).await;
                }
                _ => {}
            }
        }
    }
}

async fn fullenrich_get(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
) -> (StatusCode, String) {
    match inner.jobs.lock().unwrap().get(&id) {
        Some(job) => (
            StatusCode::OK,
            json!({ "id": id, "name": job.name, "status": "FINISHED", "cost": { "credits": job.credits }, "data": job.records }).to_string(),
        ),
        None => error(StatusCode::NOT_FOUND, "error.enrichment.not_found"),
    }
}

async fn enrow_get(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, String) {
    let id = q.get("id").cloned().unwrap_or_default();
    match inner.jobs.lock().unwrap().get(&id) {
        Some(job) => (
            StatusCode::OK,
            json!({ "general": { "id": id, "status": "completed" },
                    "stats": { "requested": job.records.len(), "finished": job.records.len(), "credits_cost": job.credits },
                    "results": job.records })
            .to_string(),
        ),
        None => error(StatusCode::NOT_FOUND, "Bulk search not found"),
    }
}
