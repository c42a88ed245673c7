//! The jobs API ([`Api`]): one router over the routes of [`ROUTES`]; `create.rs` takes new jobs,
//! `read.rs` answers reads (a job, lists, results), `write.rs` the writes to a job that exists.

use std::time::{Duration, Instant};

use futures::StreamExt;
use lambda_http::{Body, Request, Response};
use relay_shared::auth::BearerToken;
use relay_shared::is_valid_job_id;
use relay_shared::jobs::{ChunkStatus, JobMeta};
use relay_shared::metrics::{self, Metrics};
use relay_shared::queue::Queue;
use relay_shared::store::{IdempotencyKeys, JobDrafts, OrphanStore};

use serde_json::{Value, json};

use crate::{ApiError, SubmitChunk, validate};

mod create;
mod read;
mod write;

pub use read::{MAX_RESULTS_PAGE_BYTES, results_page};
pub use write::pages_cover;

/// How long a request holds an `Idempotency-Key` while it creates its job: longer than the API
/// function's own timeout (29 s), so a holder past its lease is certainly gone.
pub const IDEMPOTENCY_LEASE: Duration = Duration::from_secs(60);

pub(crate) fn json_response(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(body))
        .expect("valid response")
}

/// The API's OpenAPI 3.1 document (`docs/openapi.json`), served at `GET /openapi.json`. A test
/// checks it against [`ROUTES`], the router and the bodies the API returns.
pub const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

/// Every route the API serves, as (method, path): the router names each request by one of them.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("GET", "/jobs/{id}"),
    ("DELETE", "/jobs/{id}"),
    ("POST", "/jobs/{id}/cancel"),
    ("POST", "/jobs/{id}/contacts"),
    ("POST", "/jobs/{id}/start"),
    ("GET", "/jobs/{id}/results"),
    ("GET", "/openapi.json"),
    ("GET", "/orphans"),
];

pub struct Api<J, Q> {
    pub jobs: J,
    pub submit_queue: Q,
    pub token: BearerToken,
    /// Which `callback_url`s this deployment takes.
    pub callbacks: validate::CallbackPolicy,
}

impl<J: JobDrafts + IdempotencyKeys + OrphanStore, Q: Queue> Api<J, Q> {
    /// Answers one API request and logs one line (route, status, job id, latency).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().as_str().to_string();
        let (route, job_id, resp) = self.route(&req).await;
        tracing::info!(
            method,
            route,
            job_id,
            status = resp.status().as_u16(),
            latency_ms = started.elapsed().as_millis() as u64,
            "api request"
        );
        if route == "POST /jobs" && resp.status() == 202 {
            let mut m = Metrics::new("job-submit");
            m.add(metrics::JOBS_CREATED, 1);
            m.emit();
        }
        resp
    }

    /// Routes one request; returns the route's name (one of [`ROUTES`], or `unauthorized`,
    /// `method`, `unknown`), the job id when the route names one, and the response.
    pub async fn route(&self, req: &Request) -> (&'static str, Option<String>, Response<Body>) {
        let mut job = None;
        let (route, answer) = self.answer(req, &mut job).await;
        (route, job, answer.unwrap_or_else(ApiError::into_response))
    }

    async fn answer(
        &self,
        req: &Request,
        job: &mut Option<String>,
    ) -> (&'static str, Result<Response<Body>, ApiError>) {
        if req.method() == "GET" && req.uri().path().ends_with("/openapi.json") {
            // The API's description is public: no token needed to read it.
            return (
                "GET /openapi.json",
                Ok(json_response(200, OPENAPI.to_string())),
            );
        }
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if !self.token.verify_header(auth) {
            let e = ApiError::new(401, "unauthorized", "missing or wrong bearer token");
            return ("unauthorized", Err(e));
        }
        let path = req.uri().path();
        if path.split('/').rfind(|s| !s.is_empty()) == Some("orphans") && !path.contains("/jobs") {
            return match req.method().as_str() {
                "GET" => ("GET /orphans", self.orphans(req).await),
                _ => {
                    let e = ApiError::new(
                        405,
                        "method_not_allowed",
                        "method not allowed on this route",
                    );
                    ("method", Err(e))
                }
            };
        }
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let found = segments.by_ref().find(|s| *s == "jobs").is_some();
        let rest: Vec<&str> = segments.collect();
        let get = req.method() == "GET";
        let post = req.method() == "POST";
        let answer = match (found, rest.as_slice()) {
            (true, []) if post => ("POST /jobs", self.create(req, job).await),
            (true, []) if get => ("GET /jobs", self.list(req).await),
            (true, [id]) if get => ("GET /jobs/{id}", self.job(id).await),
            (true, [id]) if req.method() == "DELETE" => {
                ("DELETE /jobs/{id}", self.delete(id).await)
            }
            (true, [id, "cancel"]) if post => ("POST /jobs/{id}/cancel", self.cancel(id).await),
            (true, [id, "contacts"]) if post => {
                ("POST /jobs/{id}/contacts", self.add_page(id, req).await)
            }
            (true, [id, "start"]) if post => ("POST /jobs/{id}/start", self.start(id).await),
            (true, [id, "results"]) if get => {
                ("GET /jobs/{id}/results", self.results(id, req).await)
            }
            (true, [] | [_] | [_, "results" | "cancel" | "contacts" | "start"]) => {
                let e = ApiError::new(
                    405,
                    "method_not_allowed",
                    "method not allowed on this route",
                );
                ("method", Err(e))
            }
            _ => (
                "unknown",
                Err(ApiError::new(404, "not_found", "no such route")),
            ),
        };
        if answer.0.contains("{id}") {
            *job = rest.first().map(|id| id.to_string());
        }
        answer
    }

    /// Queues every chunk of the job that is still `pending`. A chunk queued twice is harmless:
    /// only one worker can take it from `pending`.
    pub(crate) async fn queue_pending(&self, job_id: &str) -> Result<(), ApiError> {
        let chunks = self.jobs.chunks(job_id).await?;
        let pending = chunks
            .iter()
            .filter(|c| c.status == ChunkStatus::Pending)
            .map(|c| c.index);
        self.queue(job_id, pending).await
    }

    /// Queues the chunks' start messages. The job is recorded already, every chunk due for its
    /// start: a message that cannot be sent now is sent by the sweeper once that is overdue
    /// (`DEFAULT_START_OVERDUE_MS`), so the job is accepted either way, and a client is never
    /// told to retry into a second job that would bill the same contacts again.
    pub(crate) async fn queue(
        &self,
        job_id: &str,
        chunks: impl Iterator<Item = u32>,
    ) -> Result<(), ApiError> {
        let messages: Vec<String> = chunks.map(|c| SubmitChunk::start(job_id, c)).collect();
        let sends = futures::stream::iter(messages.into_iter().map(|m| self.submit_queue.send(m)))
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        let failed = sends.iter().filter(|r| r.is_err()).count();
        if let Some(e) = sends.into_iter().find_map(Result::err) {
            tracing::warn!(job_id, failed, error = %e, "start messages not queued: the sweeper sends them when overdue");
        }
        Ok(())
    }

    /// The job `id` names, unless it is unknown or deleted (404) or the store fails (503);
    /// `with_figures`: with its figures summed (one read of the head either way).
    pub(crate) async fn live(&self, id: &str, with_figures: bool) -> Result<JobMeta, ApiError> {
        if !is_valid_job_id(id) {
            return Err(ApiError::not_found("job"));
        }
        let read = if with_figures {
            self.jobs.job_view(id).await?
        } else {
            self.jobs.get_job(id).await?
        };
        read.filter(|m| !m.deleted)
            .ok_or_else(|| ApiError::not_found("job"))
    }
}

pub(crate) fn accepted(meta: &JobMeta) -> Value {
    json!({
        "job_id": meta.job_id,
        "status": meta.status.as_str(),
        "contacts": meta.contacts,
        "chunks": meta.chunks,
    })
}
