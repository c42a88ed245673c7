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
//! - Deterministic fake results, per provider ([`finds`]): each provider finds about three
//!   contacts in four, decided by a stable hash of the provider's name and the contact's own
//!   fields (name, domain, company, LinkedIn URL, email, under any provider's spelling; never
//!   the record key, `custom` or the webhook URLs), so the two providers find different
//!   contacts, and a demo and a test see the same outcome every run. A test that wants exact
//!   shares tags a contact instead: a field holding `found-by-` and the names of the providers
//!   that find it, joined by `-` (`found-by-enrow`, `found-by-enrow-fullenrich`,
//!   `found-by-none`), e.g. in its domain (`found-by-fullenrich.example`) or its name; the tag
//!   decides for every operation of every provider. [`finds`] is public: a test knows each
//!   answer before it starts.
//! - Costs as the documents give them (§2.10, §3.1, §3.2, §3.5). FullEnrich: a hit costs 1 per
//!   work email, 3 per personal email, 10 per phone it asked for in `enrich_fields` (the hit
//!   carries them all), a reverse-email hit 1, a miss 0; the job's total is `cost.credits` on
//!   the GET and the batch webhook. Enrow: a start answers `credits_used` with its reservation
//!   (1 an email search, 0.25 a verification, 40 a phone search, per item); the cost once the
//!   misses are refunded is `credits.cost` on the events (none on `verification_finished`,
//!   flat; none on `bulk_phone_search_finished`, the id alone) and `stats.credits_cost` on the
//!   bulk GETs: `{initial, refunded, final}` for the finder, a number for the verifier, a
//!   number beside `credits_to_refund: 0` for phones. A verification is paid whatever it says.
//! - Balances ([`SandboxConfig::fullenrich_credits`], [`SandboxConfig::enrow_credits`], or
//!   [`Sandbox::set_fullenrich_credits`] / [`Sandbox::set_enrow_credits`] as a test runs):
//!   FullEnrich `GET /account/credits` → `{"balance": N}`, Enrow `GET /account/info` →
//!   `{"credits": N, "webhooks": [the dashboard webhook, if set]}`, each with its auth (401
//!   otherwise); FullEnrich's counts in its 60 a minute, Enrow's is free like its other GETs.
//!   FullEnrich pays each hit as the batch runs; Enrow takes a start's reservation up front
//!   (402 when the balance does not cover it: `{"message"}`, or `{"reason","success"}` on a
//!   single endpoint) and refunds the misses when the search ends, before its event goes.
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
//! - Results come from a hash of the contact's fields per provider (about three in four
//!   found), or its `found-by-` tag, not a lookup. A hit finds every field it asked for.
//! - A balance left unset (`None`) never runs out, and reports [`UNLIMITED`] less what it has
//!   spent. Enrow's phone search costs 40 (the current doc; the spec and legacy plans say 50).
//!   The sandbox's refunds are done by the time a bulk's event goes, so `credits_to_refund`
//!   is 0 (undocumented; inferred). An Enrow start its balance does not cover is a 402
//!   (§3.4 names 402 and 422 for "out of credits"; the sandbox uses the current doc's 402).
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
//! - `enrow_global_copy` (a fault, off by default) also sends every Enrow event to the dashboard
//!   webhook, never dropped. It is not Enrow's documented behaviour: `settings.webhook` overrides
//!   the dashboard default (providers.md §3), so a search the relay started reports on its own
//!   URL only. It stands for what the relay must survive all the same: the same event on both
//!   URLs (an operator's replay, an undocumented resend), and a job's events reaching it only
//!   through the dashboard.
//! - Every start request is logged ([`StartLog`]) with the job of its webhook URL and the record
//!   keys it carries, so a test can count the starts each chunk got.
//!
//! The rooms: [`config`] (what a test sets), [`start`] (a start request: auth, faults,
//! validation, the job stored), [`fullenrich`] and [`enrow`] (each provider's plan of a start,
//! its costs, its webhook bodies and its result GETs), [`finds`] (who finds which contact),
//! [`account`] (the balances and their GETs), [`delivery`] (sending the webhooks), [`rules`]
//! (what the providers refuse, and their rate limits); this file holds the server, its routes
//! and its state.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use relay_shared::Provider;
use serde_json::Value;
use sha2::{Digest, Sha256};

mod account;
mod config;
mod delivery;
mod enrow;
mod finds;
mod fullenrich;
pub mod rules;
mod start;
#[cfg(test)]
mod tests;

pub use account::UNLIMITED;
pub use config::{SandboxConfig, StartFault};
pub use delivery::Captured;
pub use finds::{FOUND_BY, FOUND_PERCENT, finds};
pub use start::StartLog;

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
    /// Balance GETs served (`/account/credits`, `/account/info`).
    pub balance_gets: AtomicU64,
}

struct Job {
    provider: Provider,
    records: Vec<Value>,
    name: String,
    /// What the job cost in the end (FullEnrich `cost.credits`, Enrow's final cost).
    credits: f64,
    /// What its start took from the balance (Enrow's reservation, `credits_used`); the rest
    /// above `credits` is refunded when the job ends.
    reserved: f64,
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
    credits: Mutex<account::Balances>,
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
            credits: Mutex::new(account::Balances {
                fullenrich: account::Balance::new(config.fullenrich_credits),
                enrow: account::Balance::new(config.enrow_credits),
            }),
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
            .route("/contact/enrich/bulk", post(start::start))
            .route("/contact/reverse/email/bulk", post(start::start))
            .route("/contact/enrich/bulk/{id}", get(fullenrich::get))
            .route("/contact/reverse/email/bulk/{id}", get(fullenrich::get))
            .route("/email/find/single", post(start::start).get(enrow::get))
            .route("/email/verify/single", post(start::start).get(enrow::get))
            .route("/phone/single", post(start::start).get(enrow::get))
            .route("/email/find/bulk", post(start::start).get(enrow::get))
            .route("/email/verify/bulk", post(start::start).get(enrow::get))
            .route("/phone/bulk", post(start::start).get(enrow::get))
            .route("/account/credits", get(account::fullenrich_credits))
            .route("/account/info", get(account::enrow_info))
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

    /// Sets FullEnrich's balance (`None`: it never runs out).
    pub fn set_fullenrich_credits(&self, credits: Option<f64>) {
        self.inner.credits.lock().unwrap().fullenrich.set(credits);
    }

    /// Sets Enrow's balance (`None`: it never runs out).
    pub fn set_enrow_credits(&self, credits: Option<f64>) {
        self.inner.credits.lock().unwrap().enrow.set(credits);
    }

    /// The balance a provider's account GET answers with now.
    pub fn balance(&self, provider: Provider) -> f64 {
        self.inner.credits.lock().unwrap().of(provider).reported()
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
                let key = record_key(r.get("custom"));
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

/// A record key as a request or record carries it in `custom`: a string, or `{rid}`.
fn record_key(custom: Option<&Value>) -> Option<u64> {
    match custom? {
        Value::String(k) => k.parse().ok(),
        Value::Object(o) => o.get("rid").and_then(Value::as_str)?.parse().ok(),
        _ => None,
    }
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

/// A GET's auth and rate limit (FullEnrich's minute covers every endpoint; Enrow's GETs are
/// free): `Err` with the provider's 401 or 429.
fn admit_get(
    inner: &Inner,
    config: &SandboxConfig,
    fullenrich: bool,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), Response> {
    if !authorized(config, fullenrich, headers) {
        let refused = rules::for_status(fullenrich, false, StatusCode::UNAUTHORIZED);
        return Err(refused.into_response());
    }
    if let Err(refused) = inner.limits.lock().unwrap().admit(fullenrich, path, false) {
        inner.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        return Err(refused.into_response());
    }
    Ok(())
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
