//! The provider sandbox: FullEnrich v2 and Enrow as providers.md documents them, on loopback.
//!
//! - Start endpoints of every operation, with their auth (`Authorization: Bearer` /
//!   `x-api-key`; 401 otherwise) and the providers' own validation ([`rules`]): FullEnrich's
//!   `name`, webhook URL scheme, 1–100 contacts, name + company or LinkedIn URL, `enrich_fields`
//!   values, `custom` (≤ 10 keys, string values ≤ 100 UTF-16 units); Enrow's `fullname` + company,
//!   email format, LinkedIn URLs, 5,000 / 5,000 / 3,000 per bulk, HTTPS webhooks. Refusals carry
//!   each provider's codes and messages (providers.md §2.5, §3.4).
//! - Rate limits, sliding windows: FullEnrich 60 requests a minute per key over every endpoint,
//!   result GETs included; Enrow 10 a second on each POST endpoint, GETs free. Over them: 429
//!   with the documented body and no `Retry-After` (neither provider documents one).
//! - Deterministic fake results: about three contacts in four are found (a stable hash of the
//!   input decides), so a demo and a test see the same outcome every run. FullEnrich's
//!   `enrich_fields` decide what a hit carries (work email, personal email, phone) and what it
//!   costs (1 / 3 / 10 credits, §2.10).
//! - After `delay`, webhooks to the URLs the request carried: FullEnrich `contact_finished` per
//!   record then the batch webhook, retried on non-2xx every `retry_interval`, 5 times at most;
//!   Enrow single events with their result and bulk events with only the id, each sent twice at
//!   the `duplicate_rate`. `drop_webhooks` never sends a share of them (a provider that does not
//!   call back: the relay's poll must find the results).
//! - Enrow's dashboard webhook (`enrow_global_webhook`): a search started without
//!   `settings.webhook` sends its event there.
//! - Result GETs that answer as the documents say while the job runs: FullEnrich 400
//!   `error.enrichment.in_progress`, Enrow bulk 202 `general.status: "ongoing"`, Enrow single
//!   `qualification: "ongoing"`, until the job's final webhook goes out; then the job object
//!   (FullEnrich: 402 with the object when it ended `CREDITS_INSUFFICIENT`). Unknown ids: 404
//!   `error.enrichment.not_found`; Enrow 400 "Could not retrieve bulk … results", 500 on singles.
//! - FullEnrich signs a share of its deliveries (`sign_rate`, 0.75 by default: only some copies
//!   of its page document `X-Signature-SHA1`), and a share of `contact_finished` bodies carry the
//!   whole enrichment so far, unfinished records without `contact_info` (`snapshot_rate`, 0.25:
//!   its page says webhook content equals GET content).
//! - FullEnrich batches end `FINISHED`, `CREDITS_INSUFFICIENT` (the balance ran out: the rest
//!   stay empty) or `CANCELED` (`cancel_rate`: the second half of the batch never finishes).
//!
//! Differences from the documents, and why:
//! - Results come from a hash of the input (about three in four found), not a lookup.
//! - Enrow takes `http://` webhook URLs to a loopback host (`http_loopback_webhooks`, on by
//!   default): the local stack has no TLS. Any other `http://` URL is refused, as Enrow does.
//! - `cancel_rate` and `drop_webhooks` default to 0: a cancel is a person's act in FullEnrich's
//!   dashboard, and a lost webhook is an outage; tests and the demo turn them on.
//! - Error codes the documents do not name are inferred: FullEnrich's >100 contacts
//!   (`error.enrichment.data.exceeded`), non-string `custom` values
//!   (`error.enrichment.custom.value.type`), a `custom` that is not an object
//!   (`error.enrichment.custom.type`), a 402 on a start; Enrow's refusal of a non-HTTPS
//!   webhook ("Webhook URL must be a valid https URL").
//! - An injected 429 (`StartFault::RateLimited`) carries `Retry-After` (neither provider documents
//!   the header; FullEnrich's body says "Try again in 1m", and the relay falls back to that minute
//!   without it) so a test waits seconds instead. The sandbox's own rate limits send none.
//! - Failure injection: `start_failures` answers the next start requests with those statuses
//!   (429, 402, 500, …), in order; `start_faults` plays the start behaviours the documents allow
//!   and a happy sandbox never shows ([`StartFault`]): a start accepted whose answer comes after
//!   the client gave up, a 5xx after the job was stored, a 2xx without an id, a 429 with
//!   `Retry-After`. A fault mix (`fault_mix`) draws them at random, seeded.
//! - A FullEnrich credit balance (`fullenrich_credits`): once it is spent, the batch ends
//!   `CREDITS_INSUFFICIENT` with the remaining records empty (providers.md §2.4), and a start
//!   with nothing left is accepted and ends so at once (§2.5: undocumented; inferred).
//! - `reject_marker`: a contact whose LinkedIn URL contains it makes the whole start a 400
//!   (`error.linkedin.malformated` / "Invalid linkedin_url"), as a provider refuses one bad
//!   contact in a batch that the relay's own validation let through.
//! - `enrow_global_copy` also sends every Enrow event to the dashboard webhook, never dropped:
//!   Enrow's page does not say whether a search that named its own webhook is seen there too.
//! - Every start request is logged ([`StartLog`]) with the job of its webhook URL and the record
//!   keys it carries, so a test can count the starts each chunk got.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub mod rules;

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
    /// Behaviours for the next start requests, in order, after `start_failures`.
    pub start_faults: Vec<StartFault>,
    /// Random start faults for every start with no queued fault: (fault, probability), drawn
    /// from a seeded generator.
    pub fault_mix: Vec<(StartFault, f64)>,
    /// FullEnrich credits left; `None`: unlimited.
    pub fullenrich_credits: Option<f64>,
    /// A contact whose LinkedIn URL contains this is refused with a 400 for its whole request.
    pub reject_marker: Option<String>,
    /// Whether FullEnrich sends `contact_finished` webhooks when the start asked for them (on),
    /// or only the batch webhook.
    pub contact_webhooks: bool,
    /// Share of FullEnrich deliveries that carry `X-Signature-SHA1` (0.75): only some copies of
    /// FullEnrich's page document the header, so the relay must cope with both.
    pub sign_rate: f64,
    /// Share of `contact_finished` bodies that carry the whole enrichment so far (every record,
    /// the unfinished ones without `contact_info`) instead of the one record (0.25): FullEnrich
    /// says webhook content equals GET content.
    pub snapshot_rate: f64,
    /// Whether Enrow takes `http://` webhook URLs to a loopback host (on: the local stack has no
    /// TLS). Enrow documents HTTPS only, and refuses any other `http://` URL.
    pub http_loopback_webhooks: bool,
    /// FullEnrich's limit: requests per minute per key over every endpoint (60); `None`: off.
    pub fullenrich_per_minute: Option<usize>,
    /// Enrow's limit: requests per second per key on each POST endpoint (10); `None`: off.
    pub enrow_per_second: Option<usize>,
    /// Share of FullEnrich batches canceled part-way (a user's act in the dashboard; 0).
    pub cancel_rate: f64,
    /// Share of webhooks never sent (a provider that does not call back; 0).
    pub drop_webhooks: f64,
    /// Enrow's dashboard ("global") webhook: an Enrow search started without
    /// `settings.webhook` sends its event there, as Enrow documents; `None`: none set.
    pub enrow_global_webhook: Option<String>,
    /// Also send every Enrow event to the dashboard webhook, never dropped (off): Enrow's page
    /// does not say whether the dashboard webhook sees events of searches that named their own;
    /// this lets a test lose the per-request one (`drop_webhooks`) and see the global one come.
    pub enrow_global_copy: bool,
    /// Keep the webhooks instead of sending them ([`Sandbox::take_captured`]): a soak sends
    /// them itself, each several times, shuffled.
    pub capture_webhooks: bool,
    /// Every result GET of a job answers "not ready" this many times before the results.
    pub get_not_ready_first: u32,
    /// Random result-GET failures, (status, probability), seeded: 429 (with `Retry-After: 1`),
    /// 500, 503.
    pub get_faults: Vec<(u16, f64)>,
}

/// A webhook the sandbox would have sent (`capture_webhooks`).
#[derive(Debug, Clone)]
pub struct Captured {
    pub url: String,
    pub body: Vec<u8>,
    /// `X-Signature-SHA1`, when this delivery is signed.
    pub signature: Option<String>,
}

/// A start behaviour a provider's documents allow.
#[derive(Debug, Clone, PartialEq)]
pub enum StartFault {
    /// Answer with this status and an error body; nothing is stored.
    Status(u16),
    /// 429 with `Retry-After: secs`; nothing is stored.
    RateLimited { retry_after: u64 },
    /// Store the job (its webhooks will come) and answer only after this long: a client with a
    /// shorter timeout never sees the id.
    AcceptThenHang(Duration),
    /// Store the job (its webhooks will come), then answer 500.
    StoreThen5xx,
    /// Store the job (its webhooks will come), then answer 200 with no id.
    AcceptWithoutId,
}

/// One start request as the sandbox received it.
#[derive(Debug, Clone, PartialEq)]
pub struct StartLog {
    pub path: String,
    /// The relay job named by the request's webhook URL.
    pub job_id: Option<String>,
    /// The record keys (contact indices) the request carries.
    pub rids: Vec<u64>,
    /// Whether the sandbox stored the job (it will run and call back).
    pub stored: bool,
    /// The provider id it gave the job, when stored.
    pub provider_id: Option<String>,
    /// The status it answered with (0: no answer was read in time, for `AcceptThenHang`).
    pub status: u16,
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
            start_faults: Vec::new(),
            fault_mix: Vec::new(),
            fullenrich_credits: None,
            reject_marker: None,
            contact_webhooks: true,
            sign_rate: 0.75,
            snapshot_rate: 0.25,
            http_loopback_webhooks: true,
            fullenrich_per_minute: Some(60),
            enrow_per_second: Some(10),
            cancel_rate: 0.0,
            drop_webhooks: 0.0,
            enrow_global_webhook: None,
            enrow_global_copy: false,
            capture_webhooks: false,
            get_not_ready_first: 0,
            get_faults: Vec::new(),
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
    /// Webhooks not sent at all (`drop_webhooks`).
    pub webhooks_dropped: AtomicU64,
    /// Requests answered 429 by the sandbox's own rate limits.
    pub rate_limited: AtomicU64,
    /// Start requests refused by validation.
    pub refused: AtomicU64,
    /// Result GETs served (authorized and within the rate limit).
    pub gets: AtomicU64,
}

struct Job {
    records: Vec<Value>,
    name: String,
    credits: f64,
    status: &'static str,
    /// Done: result GETs answer with the results (before: "in progress" / `ongoing`).
    ready: bool,
    /// Result GETs served so far (`get_not_ready_first`).
    gets: u32,
    /// The relay job of its webhook URL.
    relay_job: Option<String>,
}

struct Inner {
    config: Mutex<SandboxConfig>,
    failures: Mutex<VecDeque<StartFault>>,
    starts: Mutex<Vec<StartLog>>,
    credits: Mutex<Option<f64>>,
    draws: AtomicU64,
    jobs: Mutex<HashMap<String, Job>>,
    http: reqwest::Client,
    counters: Counters,
    deliveries: AtomicU64,
    limits: Mutex<rules::RateLimits>,
    captured: Mutex<Vec<Captured>>,
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
            failures: Mutex::new(
                config
                    .start_failures
                    .iter()
                    .map(|s| StartFault::Status(*s))
                    .chain(config.start_faults.iter().cloned())
                    .collect(),
            ),
            starts: Mutex::default(),
            credits: Mutex::new(config.fullenrich_credits),
            draws: AtomicU64::new(0),
            limits: Mutex::new(rules::RateLimits::new(
                config.fullenrich_per_minute,
                config.enrow_per_second,
            )),
            config: Mutex::new(config),
            captured: Mutex::default(),
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
            .route("/email/find/single", post(start).get(enrow_get))
            .route("/email/verify/single", post(start).get(enrow_get))
            .route("/phone/single", post(start).get(enrow_get))
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
        self.inner
            .failures
            .lock()
            .unwrap()
            .extend(statuses.iter().map(|s| StartFault::Status(*s)));
    }

    /// Plays these behaviours on the next start requests, in order.
    pub fn inject_start_faults(&self, faults: &[StartFault]) {
        self.inner
            .failures
            .lock()
            .unwrap()
            .extend(faults.iter().cloned());
    }

    /// Every start request received so far.
    pub fn starts(&self) -> Vec<StartLog> {
        self.inner.starts.lock().unwrap().clone()
    }

    /// The start requests that carried contact `rid` of `job_id`.
    pub fn starts_of(&self, job_id: &str, rid: u64) -> Vec<StartLog> {
        self.starts()
            .into_iter()
            .filter(|s| s.job_id.as_deref() == Some(job_id) && s.rids.contains(&rid))
            .collect()
    }

    pub fn set_fullenrich_credits(&self, credits: Option<f64>) {
        *self.inner.credits.lock().unwrap() = credits;
    }

    /// The webhooks kept so far (`capture_webhooks`), taken out.
    pub fn take_captured(&self) -> Vec<Captured> {
        std::mem::take(&mut *self.inner.captured.lock().unwrap())
    }

    /// What the sandbox decided for each contact of a relay job, from the jobs it stored: (record
    /// key, found). The record key is FullEnrich's `custom.rid` or Enrow's `custom` (string or
    /// `{rid}`); Enrow bulk verifications carry none and are left out.
    pub fn outcomes_of(&self, relay_job: &str) -> Vec<(u64, bool)> {
        let jobs = self.inner.jobs.lock().unwrap();
        let mut out = Vec::new();
        for job in jobs
            .values()
            .filter(|j| j.relay_job.as_deref() == Some(relay_job))
        {
            for r in &job.records {
                let key = match r.get("custom") {
                    Some(Value::String(k)) => k.parse().ok(),
                    Some(Value::Object(o)) => o
                        .get("rid")
                        .and_then(Value::as_str)
                        .and_then(|k| k.parse().ok()),
                    _ => None,
                };
                let found = rules::fullenrich_found(r)
                    || matches!(s(r, "qualification"), "valid" | "found");
                if let Some(key) = key {
                    out.push((key, found));
                }
            }
        }
        out
    }

    /// Sets Enrow's dashboard webhook, and whether every Enrow event is also sent there
    /// ([`SandboxConfig::enrow_global_copy`]).
    pub fn set_enrow_global_webhook(&self, url: Option<String>, copy: bool) {
        let mut config = self.inner.config.lock().unwrap();
        config.enrow_global_webhook = url;
        config.enrow_global_copy = copy;
    }

    /// Sets the share of webhooks never sent ([`SandboxConfig::drop_webhooks`]).
    pub fn set_drop_webhooks(&self, share: f64) {
        self.inner.config.lock().unwrap().drop_webhooks = share;
    }

    pub fn set_duplicate_rate(&self, rate: f64) {
        self.inner.config.lock().unwrap().duplicate_rate = rate;
    }
}

/// A stable draw in [0, 1) for a name: decides which deliveries are signed, doubled, snapshots.
pub fn draw(name: &str) -> f64 {
    let h = Sha256::digest(name.as_bytes());
    u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as f64 / (u32::MAX as f64 + 1.0)
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

/// The relay job a webhook URL names (`…/webhooks/{provider}/{job}/…`).
fn job_of_url(url: Option<&str>) -> Option<String> {
    let path = url?.split("/webhooks/").nth(1)?;
    path.split('/').nth(1).map(str::to_string)
}

/// The record keys a start request carries (FullEnrich `custom.rid`, Enrow `custom`).
fn rids_of(req: &Value) -> Vec<u64> {
    let key = |c: Option<&Value>| -> Option<u64> {
        match c? {
            Value::String(s) => s.parse().ok(),
            Value::Object(o) => o.get("rid").and_then(Value::as_str)?.parse().ok(),
            _ => None,
        }
    };
    let list = req
        .get("data")
        .or(req.get("searches"))
        .and_then(Value::as_array);
    match list {
        Some(items) => items.iter().filter_map(|i| key(i.get("custom"))).collect(),
        None => key(req.get("custom")).into_iter().collect(),
    }
}

async fn start(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path().to_string();
    let fullenrich = path.starts_with("/contact/");
    let config = inner.config.lock().unwrap().clone();
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let webhook = if fullenrich {
        req.get("webhook_url").and_then(Value::as_str)
    } else {
        req.pointer("/settings/webhook").and_then(Value::as_str)
    };
    let mut log = StartLog {
        path: path.clone(),
        job_id: job_of_url(webhook),
        rids: rids_of(&req),
        stored: false,
        provider_id: None,
        status: 0,
    };
    let answer = |inner: &Inner, mut log: StartLog, resp: Response| {
        log.status = resp.status().as_u16();
        inner.starts.lock().unwrap().push(log);
        resp
    };
    let authorized = authorized(&config, fullenrich, &headers);
    let single = path.ends_with("/single");
    if !authorized {
        let resp = rules::for_status(fullenrich, single, StatusCode::UNAUTHORIZED);
        return answer(&inner, log, resp.into_response());
    }
    if let Err(refused) = inner.limits.lock().unwrap().admit(fullenrich, &path, true) {
        inner.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        return answer(&inner, log, refused.into_response());
    }
    let fault = inner.failures.lock().unwrap().pop_front().or_else(|| {
        if config.fault_mix.is_empty() {
            return None;
        }
        let n = inner.draws.fetch_add(1, Ordering::Relaxed);
        let u = draw(&format!("fault-mix-{n}"));
        let mut acc = 0.0;
        config.fault_mix.iter().find_map(|(f, p)| {
            acc += p;
            (u < acc).then(|| f.clone())
        })
    });
    match &fault {
        Some(StartFault::Status(status)) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let resp = rules::for_status(fullenrich, single, status);
            return answer(&inner, log, resp.into_response());
        }
        Some(StartFault::RateLimited { retry_after }) => {
            let mut resp = rules::for_status(fullenrich, single, StatusCode::TOO_MANY_REQUESTS)
                .into_response();
            resp.headers_mut().insert(
                "retry-after",
                retry_after.to_string().parse().expect("digits"),
            );
            return answer(&inner, log, resp);
        }
        _ => {}
    }
    inner.counters.starts.fetch_add(1, Ordering::Relaxed);
    if req.is_null() {
        let resp = if fullenrich {
            rules::fullenrich(StatusCode::BAD_REQUEST, "error.json", "Invalid JSON input")
        } else {
            rules::enrow(StatusCode::BAD_REQUEST, "Invalid JSON input")
        };
        return answer(&inner, log, resp.into_response());
    }
    if let Err(refused) = rules::validate(&path, &req, config.http_loopback_webhooks) {
        inner.counters.refused.fetch_add(1, Ordering::Relaxed);
        return answer(&inner, log, refused.into_response());
    }
    if let Some(marker) = &config.reject_marker
        && req
            .get("data")
            .or(req.get("searches"))
            .and_then(Value::as_array)
            .map(|items| items.iter().collect::<Vec<_>>())
            .unwrap_or_else(|| vec![&req])
            .iter()
            .any(|c| s(c, "linkedin_url").contains(marker.as_str()))
    {
        let resp = if fullenrich {
            rules::fullenrich(
                StatusCode::BAD_REQUEST,
                "error.linkedin.malformated",
                "Invalid linkedin_url",
            )
        } else {
            rules::enrow(StatusCode::BAD_REQUEST, "Invalid linkedin_url")
        };
        return answer(&inner, log, resp.into_response());
    }
    let id = uuid::Uuid::new_v4().to_string();
    let plan = {
        let mut credits = inner.credits.lock().unwrap();
        plan(&path, &req, &id, &mut credits, &config)
    };
    inner.jobs.lock().unwrap().insert(
        id.clone(),
        Job {
            records: plan.records.clone(),
            name: s(&req, "name").to_string(),
            credits: plan.credits,
            status: plan.status,
            ready: false,
            gets: 0,
            relay_job: log.job_id.clone(),
        },
    );
    log.stored = true;
    log.provider_id = Some(id.clone());
    let ok = if fullenrich {
        json!({ "enrichment_id": id })
    } else {
        json!({ "id": id, "message": "operating", "credits_used": plan.credits })
    };
    let inner2 = Arc::clone(&inner);
    let job_id = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(config.delay).await;
        let last = plan.webhooks.len().saturating_sub(1);
        let mark_ready = |inner: &Inner| {
            if let Some(j) = inner.jobs.lock().unwrap().get_mut(&job_id) {
                j.ready = true;
            }
        };
        if plan.webhooks.is_empty() {
            mark_ready(&inner2);
        }
        for (i, (url, body, fullenrich)) in plan.webhooks.into_iter().enumerate() {
            // The job is done when its final webhook (FullEnrich's batch, Enrow's event) goes.
            if i == last {
                mark_ready(&inner2);
            }
            let global = (!fullenrich && config.enrow_global_copy)
                .then(|| config.enrow_global_webhook.clone())
                .flatten()
                .filter(|g| *g != url);
            if let Some(global) = global {
                deliver_once(&inner2, &global, body.clone()).await;
            }
            deliver(&inner2, &url, body, fullenrich).await;
        }
    });
    match fault {
        Some(StartFault::AcceptThenHang(wait)) => {
            // Logged now: the client will have given up before this answer is read.
            inner.starts.lock().unwrap().push(log);
            tokio::time::sleep(wait).await;
            (StatusCode::OK, ok.to_string()).into_response()
        }
        Some(StartFault::StoreThen5xx) => answer(
            &inner,
            log,
            rules::for_status(fullenrich, single, StatusCode::INTERNAL_SERVER_ERROR)
                .into_response(),
        ),
        Some(StartFault::AcceptWithoutId) => answer(
            &inner,
            log,
            (
                StatusCode::OK,
                json!({ "message": "operating" }).to_string(),
            )
                .into_response(),
        ),
        _ => answer(
            &inner,
            log,
            (StatusCode::OK, ok.to_string()).into_response(),
        ),
    }
}

/// What a start produces: the stored records and the webhooks to send.
struct Plan {
    records: Vec<Value>,
    credits: f64,
    /// FullEnrich's terminal status for the job (`FINISHED`, `CREDITS_INSUFFICIENT`).
    status: &'static str,
    webhooks: Vec<(String, Vec<u8>, bool)>,
}

fn plan(
    path: &str,
    req: &Value,
    id: &str,
    balance: &mut Option<f64>,
    config: &SandboxConfig,
) -> Plan {
    let (contact_webhooks, snapshot_rate) = (config.contact_webhooks, config.snapshot_rate);
    // Enrow's: the request's own, else the dashboard's (FullEnrich's are read below).
    let webhook = req
        .pointer("/settings/webhook")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| config.enrow_global_webhook.clone());
    match path {
        "/contact/enrich/bulk" | "/contact/reverse/email/bulk" => {
            let data = req
                .get("data")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let reverse = path.contains("reverse");
            let mut status = "FINISHED";
            // A batch canceled (from the dashboard) part-way: the first half finishes, the rest
            // stays empty and never finishes.
            let canceled_from =
                (draw(&format!("cancel-{id}")) < config.cancel_rate).then_some(data.len() / 2);
            if canceled_from.is_some() {
                status = "CANCELED";
            }
            let mut unfinished: Vec<Option<Value>> = Vec::new();
            let mut credits = 0.0;
            let records: Vec<Value> = data
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let custom = d.get("custom").cloned().unwrap_or(json!({}));
                    if canceled_from.is_some_and(|from| i >= from) {
                        unfinished.push(d.get("custom").cloned());
                        return json!({ "input": d, "custom": custom });
                    }
                    // What a hit costs (providers.md §2.10), by the fields asked for.
                    let fields: Vec<&str> = d
                        .get("enrich_fields")
                        .and_then(Value::as_array)
                        .map(|f| f.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_else(|| vec!["contact.work_emails"]);
                    let cost = if reverse {
                        1.0
                    } else {
                        fields
                            .iter()
                            .map(|f| match *f {
                                "contact.personal_emails" => 3.0,
                                "contact.phones" => 10.0,
                                _ => 1.0,
                            })
                            .sum()
                    };
                    let found = score(d) < 75;
                    // With the balance spent, the rest stay empty and never finish (no
                    // contact_finished for them).
                    if found && let Some(left) = balance.as_mut() {
                        if *left >= cost {
                            *left -= cost;
                        } else {
                            status = "CREDITS_INSUFFICIENT";
                            unfinished.push(d.get("custom").cloned());
                            return json!({ "input": d, "custom": custom });
                        }
                    }
                    if found {
                        credits += cost;
                    }
                    if reverse {
                        let mut r = json!({ "input": { "email": d.get("email") }, "custom": custom });
                        if found {
                            r["profile"] = json!({ "full_name": "Sandbox Person", "headline": "Sandbox" });
                        }
                        return r;
                    }
                    let (first, last) = (s(d, "first_name"), s(d, "last_name"));
                    let mut info = json!({ "most_probable_work_email": null, "work_emails": [],
                                           "most_probable_personal_email": null, "personal_emails": [],
                                           "most_probable_phone": null, "phones": [] });
                    if found {
                        if fields.contains(&"contact.work_emails") {
                            let e = json!({ "email": email_for(first, last, s(d, "domain")), "status": "DELIVERABLE" });
                            info["most_probable_work_email"] = e.clone();
                            info["work_emails"] = json!([e]);
                        }
                        if fields.contains(&"contact.personal_emails") {
                            let e = json!({ "email": email_for(first, last, "sandboxmail.com"), "status": "DELIVERABLE" });
                            info["most_probable_personal_email"] = e.clone();
                            info["personal_emails"] = json!([e]);
                        }
                        if fields.contains(&"contact.phones") {
                            let p = json!({ "number": format!("+1 555-{:07}", score(d) as u32 * 7919 % 10_000_000), "region": "US" });
                            info["most_probable_phone"] = p.clone();
                            info["phones"] = json!([p]);
                        }
                    }
                    json!({ "input": { "first_name": d.get("first_name"), "last_name": d.get("last_name"),
                                       "company_domain": d.get("domain"), "professional_network_url": d.get("linkedin_url") },
                            "custom": custom, "contact_info": info })
                })
                .collect();
            let mut webhooks = Vec::new();
            if let Some(url) = req
                .pointer("/webhook_events/contact_finished")
                .and_then(Value::as_str)
                .filter(|_| contact_webhooks)
            {
                let sent: Vec<&Value> = records
                    .iter()
                    .filter(|r| !unfinished.contains(&r.get("custom").cloned()))
                    .collect();
                for (k, r) in sent.iter().enumerate() {
                    // Sometimes the whole enrichment so far: the records finished up to this
                    // one, and the others still running (no contact_info).
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
                    webhooks.push((url.to_string(), body.to_string().into_bytes(), true));
                }
            }
            if let Some(url) = req.get("webhook_url").and_then(Value::as_str) {
                let body = json!({ "id": id, "name": req.get("name"), "status": status, "cost": { "credits": credits }, "data": records });
                webhooks.push((url.to_string(), body.to_string().into_bytes(), true));
            }
            Plan {
                records,
                credits,
                status,
                webhooks,
            }
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
            Plan {
                records: vec![result],
                credits,
                status: "FINISHED",
                webhooks,
            }
        }
        _ => {
            let (items, event): (Vec<Value>, &str) = match path {
                "/email/verify/bulk" => (
                    req.get("verifications")
                        .or(req.get("emails"))
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    "bulk_verification_finished",
                ),
                "/phone/bulk" => (
                    req.get("searches")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    "bulk_phone_search_finished",
                ),
                _ => (
                    req.get("searches")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    "bulk_search_finished",
                ),
            };
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
            Plan {
                records: rows,
                credits,
                status: "FINISHED",
                webhooks,
            }
        }
    }
}

/// Sends one webhook (signed for FullEnrich), retrying non-2xx FullEnrich deliveries 5 times,
/// and a second copy at the duplicate rate.
async fn deliver(inner: &Inner, url: &str, body: Vec<u8>, fullenrich: bool) {
    let config = inner.config.lock().unwrap().clone();
    let n = inner.deliveries.fetch_add(1, Ordering::Relaxed);
    let signed = fullenrich && draw(&format!("sign-{n}")) < config.sign_rate;
    if config.capture_webhooks {
        let signature = signed.then(|| {
            relay_shared::auth::fullenrich_signature(config.fullenrich_key.as_bytes(), &body)
        });
        inner.captured.lock().unwrap().push(Captured {
            url: url.to_string(),
            body,
            signature,
        });
        return;
    }
    if draw(&format!("drop-{n}")) < config.drop_webhooks {
        inner
            .counters
            .webhooks_dropped
            .fetch_add(1, Ordering::Relaxed);
        return;
    }
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
        let attempts = if fullenrich { 6 } else { 1 };
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

/// Sends one Enrow event to the dashboard webhook (`enrow_global_copy`): once, never dropped.
async fn deliver_once(inner: &Inner, url: &str, body: Vec<u8>) {
    inner.counters.webhooks_sent.fetch_add(1, Ordering::Relaxed);
    let _ = inner
        .http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
}

/// Whether a request carries the provider's key (`Authorization: Bearer` / `x-api-key`).
fn authorized(config: &SandboxConfig, fullenrich: bool, headers: &HeaderMap) -> bool {
    let (name, want) = if fullenrich {
        ("authorization", format!("Bearer {}", config.fullenrich_key))
    } else {
        ("x-api-key", config.enrow_key.clone())
    };
    headers.get(name).and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

/// A result GET's injected failure (`get_faults`), as the provider would answer it.
fn get_fault(inner: &Inner, config: &SandboxConfig, fullenrich: bool) -> Option<Response> {
    if config.get_faults.is_empty() {
        return None;
    }
    let n = inner.draws.fetch_add(1, Ordering::Relaxed);
    let u = draw(&format!("get-fault-{n}"));
    let mut acc = 0.0;
    let status = config.get_faults.iter().find_map(|(status, p)| {
        acc += p;
        (u < acc).then_some(*status)
    })?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = rules::for_status(fullenrich, false, status).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    Some(resp)
}

/// Counts a GET of job `id` and says whether its results may be served: the job is done and it
/// has answered "not ready" `get_not_ready_first` times already.
fn serve_results(inner: &Inner, config: &SandboxConfig, id: &str) -> bool {
    let mut jobs = inner.jobs.lock().unwrap();
    let Some(job) = jobs.get_mut(id) else {
        return false;
    };
    job.gets += 1;
    job.ready && job.gets > config.get_not_ready_first
}

async fn fullenrich_get(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let config = inner.config.lock().unwrap().clone();
    if !authorized(&config, true, &headers) {
        return rules::for_status(true, false, StatusCode::UNAUTHORIZED).into_response();
    }
    if let Err(refused) = inner.limits.lock().unwrap().admit(true, uri.path(), false) {
        inner.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        return refused.into_response();
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

/// Enrow's bulk result GET (`?id=`): 202 `ongoing` while it runs; unknown ids answer 400
/// "Could not retrieve bulk … results" (the newer docs: 404 is never returned).
async fn enrow_get(
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
        Some(job) if single => {
            let mut result = job.records.first().cloned().unwrap_or(json!({}));
            if !ready {
                result = json!({ "id": id, "qualification": "ongoing" });
            } else {
                result["id"] = json!(id);
            }
            (StatusCode::OK, result.to_string()).into_response()
        }
        Some(job) if !ready => (
            StatusCode::ACCEPTED,
            json!({ "general": { "id": id, "status": "ongoing" },
                    "stats": { "requested": job.records.len(), "finished": 0 } })
            .to_string(),
        )
            .into_response(),
        Some(job) => (
            StatusCode::OK,
            json!({ "general": { "id": id, "status": "completed" },
                    "stats": { "requested": job.records.len(), "finished": job.records.len(), "credits_cost": job.credits },
                    "results": job.records })
            .to_string(),
        )
            .into_response(),
        None if single => rules::enrow(
            StatusCode::INTERNAL_SERVER_ERROR,
            if uri.path().contains("verify") {
                "Could not retrieve single verification results"
            } else {
                "Could not retrieve single search results"
            },
        )
        .into_response(),
        None => rules::enrow(
            StatusCode::BAD_REQUEST,
            if uri.path().contains("verify") {
                "Could not retrieve bulk verification results"
            } else {
                "Could not retrieve bulk search results"
            },
        )
        .into_response(),
    }
}
