//! A start request at either provider: auth, rate limit and injected faults, the provider's
//! validation, then a job stored with its [`Plan`] and its webhooks sent after the delay.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use relay_shared::Provider;

use super::account::Balances;
use super::delivery::{self, Webhook};
use super::{Inner, Job, SandboxConfig, StartFault, authorized, draw, enrow, fullenrich};
use super::{record_key, rules, s};

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

/// What a start produces: the stored records, what it costs and the webhooks to send.
pub(super) struct Plan {
    pub records: Vec<Value>,
    /// What the job costs in the end (FullEnrich `cost.credits`, Enrow's cost after refunds).
    pub credits: f64,
    /// What the start takes from the balance: Enrow's reservation (its `credits_used`), the
    /// hits FullEnrich paid as the batch ran.
    pub reserved: f64,
    /// FullEnrich's terminal status for the job (`FINISHED`, `CREDITS_INSUFFICIENT`).
    pub status: &'static str,
    pub webhooks: Vec<Webhook>,
}

/// The plan of a start, by its provider's operation, paid from its balance: FullEnrich pays
/// each hit as the batch runs; Enrow takes the whole reservation up front, or refuses the start
/// (`None`: 402) when the balance does not cover it.
fn plan(start: &Start, id: &str, balances: &mut Balances, config: &SandboxConfig) -> Option<Plan> {
    let (path, req) = (start.path.as_str(), &start.req);
    let plan = match path {
        "/contact/enrich/bulk" | "/contact/reverse/email/bulk" => {
            return Some(fullenrich::plan(
                path,
                req,
                id,
                &mut balances.fullenrich,
                config,
            ));
        }
        "/email/find/single" | "/email/verify/single" | "/phone/single" => {
            enrow::plan_single(path, req, id, config)
        }
        _ => enrow::plan_bulk(path, req, id, config),
    };
    balances.enrow.take(plan.reserved).then_some(plan)
}

/// The request as the start handler reads it.
struct Start {
    path: String,
    fullenrich: bool,
    single: bool,
    req: Value,
}

impl Start {
    fn provider(&self) -> Provider {
        if self.fullenrich {
            Provider::Fullenrich
        } else {
            Provider::Enrow
        }
    }

    /// The status and error body this provider answers a start with.
    fn refusal(&self, status: StatusCode) -> Response {
        rules::for_status(self.fullenrich, self.single, status).into_response()
    }

    /// A 400 with FullEnrich's code and message, or Enrow's message.
    fn bad_request(&self, code: &str, message: &str) -> Response {
        if self.fullenrich {
            rules::fullenrich(StatusCode::BAD_REQUEST, code, message).into_response()
        } else {
            rules::enrow(StatusCode::BAD_REQUEST, message).into_response()
        }
    }
}

pub(super) async fn start(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path().to_string();
    let start = Start {
        fullenrich: path.starts_with("/contact/"),
        single: path.ends_with("/single"),
        req: serde_json::from_slice(&body).unwrap_or(Value::Null),
        path,
    };
    let config = inner.config.lock().unwrap().clone();
    let mut log = log_of(&start);
    let fault = match admit(&inner, &config, &start, &headers).and_then(|fault| {
        inner.counters.starts.fetch_add(1, Ordering::Relaxed);
        check(&inner, &config, &start).map(|()| fault)
    }) {
        Ok(fault) => fault,
        Err(resp) => return answer(&inner, log, resp),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let plan = plan(&start, &id, &mut inner.credits.lock().unwrap(), &config);
    let Some(plan) = plan else {
        return answer(&inner, log, start.refusal(StatusCode::PAYMENT_REQUIRED));
    };
    inner.jobs.lock().unwrap().insert(
        id.clone(),
        Job {
            provider: start.provider(),
            records: plan.records.clone(),
            name: s(&start.req, "name").to_string(),
            credits: plan.credits,
            reserved: plan.reserved,
            status: plan.status,
            ready: false,
            gets: 0,
            relay_job: log.job_id.clone(),
        },
    );
    log.stored = true;
    log.provider_id = Some(id.clone());
    let ok = if start.fullenrich {
        json!({ "enrichment_id": id })
    } else {
        json!({ "id": id, "message": "operating", "credits_used": plan.reserved })
    };
    tokio::spawn(delivery::send_all(
        Arc::clone(&inner),
        id,
        plan.webhooks,
        config,
    ));
    respond(&inner, log, &start, fault, ok).await
}

/// The log entry of a start, before it is answered.
fn log_of(start: &Start) -> StartLog {
    let webhook = if start.fullenrich {
        start.req.get("webhook_url").and_then(Value::as_str)
    } else {
        start
            .req
            .pointer("/settings/webhook")
            .and_then(Value::as_str)
    };
    StartLog {
        path: start.path.clone(),
        job_id: job_of_url(webhook),
        rids: rids_of(&start.req),
        stored: false,
        provider_id: None,
        status: 0,
    }
}

/// Logs a start with the status it is answered with.
fn answer(inner: &Inner, mut log: StartLog, resp: Response) -> Response {
    log.status = resp.status().as_u16();
    inner.starts.lock().unwrap().push(log);
    resp
}

/// Auth, the rate limit, then the next injected fault: `Err` with the answer of a start refused
/// before it is counted; else the fault to play once the job is stored, if any.
fn admit(
    inner: &Inner,
    config: &SandboxConfig,
    start: &Start,
    headers: &HeaderMap,
) -> Result<Option<StartFault>, Response> {
    if !authorized(config, start.fullenrich, headers) {
        return Err(start.refusal(StatusCode::UNAUTHORIZED));
    }
    if let Err(refused) = inner
        .limits
        .lock()
        .unwrap()
        .admit(start.fullenrich, &start.path, true)
    {
        inner.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        return Err(refused.into_response());
    }
    match next_fault(inner, config) {
        Some(StartFault::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err(start.refusal(status))
        }
        Some(StartFault::RateLimited { retry_after }) => {
            let mut resp = start.refusal(StatusCode::TOO_MANY_REQUESTS);
            resp.headers_mut().insert(
                "retry-after",
                retry_after.to_string().parse().expect("digits"),
            );
            Err(resp)
        }
        fault => Ok(fault),
    }
}

/// The next queued fault, else one drawn from the fault mix.
fn next_fault(inner: &Inner, config: &SandboxConfig) -> Option<StartFault> {
    inner.failures.lock().unwrap().pop_front().or_else(|| {
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
    })
}

/// The body as the provider reads it: JSON, its validation, and the `reject_marker`.
fn check(inner: &Inner, config: &SandboxConfig, start: &Start) -> Result<(), Response> {
    let req = &start.req;
    if req.is_null() {
        return Err(start.bad_request("error.json", "Invalid JSON input"));
    }
    if let Err(refused) = rules::validate(&start.path, req, config.http_loopback_webhooks) {
        inner.counters.refused.fetch_add(1, Ordering::Relaxed);
        return Err(refused.into_response());
    }
    if let Some(marker) = &config.reject_marker
        && req
            .get("data")
            .or(req.get("searches"))
            .and_then(Value::as_array)
            .map(|items| items.iter().collect::<Vec<_>>())
            .unwrap_or_else(|| vec![req])
            .iter()
            .any(|c| s(c, "linkedin_url").contains(marker.as_str()))
    {
        return Err(start.bad_request("error.linkedin.malformated", "Invalid linkedin_url"));
    }
    Ok(())
}

/// The answer of a stored start: the id, or the injected fault's answer.
async fn respond(
    inner: &Inner,
    log: StartLog,
    start: &Start,
    fault: Option<StartFault>,
    ok: Value,
) -> Response {
    match fault {
        Some(StartFault::AcceptThenHang(wait)) => {
            // Logged now: the client will have given up before this answer is read.
            inner.starts.lock().unwrap().push(log);
            tokio::time::sleep(wait).await;
            (StatusCode::OK, ok.to_string()).into_response()
        }
        Some(StartFault::StoreThen5xx) => {
            answer(inner, log, start.refusal(StatusCode::INTERNAL_SERVER_ERROR))
        }
        Some(StartFault::AcceptWithoutId) => answer(
            inner,
            log,
            (
                StatusCode::OK,
                json!({ "message": "operating" }).to_string(),
            )
                .into_response(),
        ),
        _ => answer(inner, log, (StatusCode::OK, ok.to_string()).into_response()),
    }
}

/// The relay job a webhook URL names (`…/webhooks/{provider}/{job}/…`).
fn job_of_url(url: Option<&str>) -> Option<String> {
    let path = url?.split("/webhooks/").nth(1)?;
    path.split('/').nth(1).map(str::to_string)
}

/// The record keys a start request carries (FullEnrich `custom.rid`, Enrow `custom`).
fn rids_of(req: &Value) -> Vec<u64> {
    let list = req
        .get("data")
        .or(req.get("searches"))
        .and_then(Value::as_array);
    match list {
        Some(items) => items
            .iter()
            .filter_map(|i| record_key(i.get("custom")))
            .collect(),
        None => record_key(req.get("custom")).into_iter().collect(),
    }
}
