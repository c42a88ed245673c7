//! job-submit: the jobs API ([`Api`]) and the chunk submitter ([`ChunkSubmitter`]).
//!
//! `POST /jobs` validates, records the job (contacts, chunks, head) and queues one message per
//! chunk, then answers 202: no request waits on a provider. `job-submit-worker` consumes that
//! queue and starts each chunk at the provider's pace (a rate limit shared by every worker,
//! kept in DynamoDB), recording the provider id the moment the provider accepts it.
//!
//! **A start is made at most once.** Providers take no idempotency key, so a start is sent again
//! only when the provider is known not to have taken it (the connection failed before the request
//! was sent, a 429, a documented refusal). Any other failure (a timeout after sending, a 5xx, a
//! 2xx without an id, a worker that died mid-start) leaves the chunk `start_unconfirmed`: its
//! webhook adopts it, and if none comes within `START_CONFIRM_TIMEOUT` its contacts fail with
//! `start_unconfirmed` for the client to decide.

use std::time::{Duration, Instant};

use relay_shared::retry::{Retryable, exponential};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures::StreamExt;
use lambda_http::{Body, Request, RequestExt, Response};
use relay_shared::auth::{BearerToken, WebhookSecret};
use relay_shared::bodies::BodyStore;
use relay_shared::jobs::{
    Chunk, ChunkStatus, ContactResult, JobError, JobMeta, JobStatus, reasons,
};
use relay_shared::metrics::{self, Metrics};
use relay_shared::providers::submit::{
    StartError, Submitter, WebhookUrls, chunk_size, start_request,
};
use relay_shared::queue::{MAX_DELAY, Queue};
use relay_shared::store::{
    ChunkRef, ChunkUpdate, DRAFT_TTL, Idempotency, IdempotencyKeys, JobDrafts, JobWriter,
    JobsCursor, Links, OrphanStore, OrphansCursor, Page, PageWrite, RateSchedule, Results, Slot,
    StoreError, SubmitLedger,
};
use relay_shared::{Provider, is_valid_job_id, now_ms};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod deployed;

pub use relay_shared::validate;

mod api_error;
pub use api_error::ApiError;

/// The submit queue's message (in `relay_shared`: the sweeper queues them too).
pub use relay_shared::envelope::{SubmitAction, SubmitChunk};

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod staged_tests;
#[cfg(test)]
mod worker_tests;

/// How long a request holds an `Idempotency-Key` while it creates its job: longer than the API
/// function's own timeout (29 s), so a holder past its lease is certainly gone.
pub const IDEMPOTENCY_LEASE: Duration = Duration::from_secs(60);

/// The webhook URLs of one job (the token opens only this job's routes).
pub fn webhook_urls(
    base: &str,
    secret: &WebhookSecret,
    provider: Provider,
    job_id: &str,
) -> WebhookUrls {
    let token = secret.token(provider, job_id);
    let url = |hook: &str| {
        format!(
            "{base}/webhooks/{}/{job_id}/{hook}/{token}",
            provider.as_str()
        )
    };
    match provider {
        Provider::Fullenrich => WebhookUrls {
            main: url("batch"),
            contact: Some(url("contact")),
        },
        Provider::Enrow => WebhookUrls {
            main: url("event"),
            contact: None,
        },
    }
}

/// A page's `limit` (20 unless asked; 1 to 100).
fn page_limit(
    params: &lambda_http::aws_lambda_events::query_map::QueryMap,
) -> Result<usize, ApiError> {
    match params.first("limit").map(|l| l.parse::<usize>()) {
        None => Ok(20),
        Some(Ok(l)) if (1..=100).contains(&l) => Ok(l),
        Some(_) => Err(ApiError::invalid(
            "limit",
            "must be a whole number from 1 to 100",
        )),
    }
}

fn json_response(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(body))
        .expect("valid response")
}

/// The API's OpenAPI 3.1 document (`docs/openapi.json`), served at `GET /openapi.json`. A test
/// checks it against [`ROUTES`], the router and the bodies the API returns.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

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

    /// `POST /jobs`; `job`: the job the request names once it is known (also on some errors).
    async fn create(
        &self,
        req: &Request,
        job: &mut Option<String>,
    ) -> Result<Response<Body>, ApiError> {
        let body: Value = serde_json::from_slice(req.body().as_ref()).map_err(|_| {
            ApiError::new(400, "invalid_json", "the body is not valid JSON").field("")
        })?;
        // A staged job: its head now, its contacts in pages, its start when they are all in.
        let (new, staged) = if body.get("staged").is_some_and(|s| !s.is_null()) {
            let (new, n) = validate::validate_staged(&body, self.callbacks)?;
            (new, Some(n))
        } else {
            (validate::validate_with(&body, self.callbacks)?, None)
        };
        let mut job_id = format!("job_{}", uuid::Uuid::new_v4().simple());
        let owner = uuid::Uuid::new_v4().to_string();
        let mut held_key: Option<&str> = None;
        if let Some(key) = req.headers().get("idempotency-key") {
            let key = key
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "Idempotency-Key",
                        "must be 1 to 255 visible ASCII characters",
                    )
                })?;
            // serde_json sorts object keys: the same JSON sent twice hashes the same.
            let hash = hex::encode(Sha256::digest(body.to_string().as_bytes()));
            let lease = IDEMPOTENCY_LEASE.as_millis() as u64;
            match self
                .jobs
                .claim_idempotency_key(key, &hash, &job_id, &owner, lease)
                .await?
            {
                Idempotency::Owned { job_id: id } => {
                    job_id = id;
                    held_key = Some(key);
                }
                Idempotency::Mismatch { job_id: first } => {
                    *job = Some(first);
                    return Err(ApiError::new(
                        422,
                        "idempotency_key_reused",
                        "this Idempotency-Key was used with a different body",
                    )
                    .field("Idempotency-Key"));
                }
                Idempotency::InUse { retry_after_ms } => {
                    return Err(ApiError::new(
                        409,
                        "idempotency_key_in_use",
                        "another request with this Idempotency-Key is still creating its job; retry after the time in Retry-After",
                    )
                    .field("Idempotency-Key")
                    .retry_after(retry_after_ms.div_ceil(1000).max(1)));
                }
                Idempotency::Created { job_id: first } => {
                    // Created before: finish what it may have left undone (chunks still pending
                    // whose messages were lost), then answer as the first time.
                    *job = Some(first.clone());
                    let meta = self.jobs.get_job(&first).await?.ok_or_else(|| {
                        ApiError::new(
                            409,
                            "idempotency_key_in_use",
                            "the job of this Idempotency-Key is not recorded; retry",
                        )
                        .field("Idempotency-Key")
                    })?;
                    self.queue_pending(&first).await?;
                    return Ok(json_response(202, accepted(&meta).to_string()));
                }
            }
        }

        *job = Some(job_id.clone());
        let size = chunk_size(new.operation);
        let n = staged.unwrap_or(new.contacts.len() as u64);
        let chunks = Chunk::plan(n, size);
        let mut meta = JobMeta::new(
            job_id.clone(),
            new.operation,
            Some(new.name),
            if staged.is_some() {
                JobStatus::Draft
            } else {
                JobStatus::Accepted
            },
            n,
            size,
            new.options,
        );
        meta.callback_url = new.callback_url;
        let outcome = match staged {
            Some(_) => self.record_draft(&meta).await,
            None => self.record_and_queue(&meta, &chunks, &new.contacts).await,
        };
        if let Some(key) = held_key
            && let Err(e) = self
                .jobs
                .finish_idempotency_key(key, &owner, outcome.is_ok())
                .await
        {
            // The key's lease runs out on its own; a retry then takes over.
            tracing::warn!(error = %e, job_id, "idempotency key not finished");
        }
        Ok(json_response(202, accepted(&outcome?).to_string()))
    }

    /// Records a new job and queues its chunks. A job created already (a retry taking over an
    /// `Idempotency-Key` whose first request died after creating it) is never written again, so
    /// no chunk that may have started is reset: only its chunks still `pending` are queued again.
    /// A job still `creating` (its first request died writing it) started nothing: it is
    /// written again, whole.
    async fn record_and_queue(
        &self,
        meta: &JobMeta,
        chunks: &[Chunk],
        contacts: &[relay_shared::jobs::Contact],
    ) -> Result<JobMeta, ApiError> {
        let job_id = meta.job_id.as_str();
        let created = match self.jobs.get_job(job_id).await? {
            Some(existing) if !existing.creating || existing.deleted => Some(existing),
            _ => match self.jobs.create_job(meta, chunks, contacts).await {
                Ok(()) => None,
                // Created or deleted meanwhile (a request racing this one for the same key).
                Err(StoreError::Conflict(_)) => self.jobs.get_job(job_id).await?,
                Err(e) => return Err(e.into()),
            },
        };
        let Some(existing) = created else {
            self.queue(job_id, chunks.iter().map(|c| c.index)).await?;
            return Ok(meta.clone());
        };
        if existing.deleted || existing.creating {
            return Err(ApiError::new(
                409,
                "job_deleted",
                "the job of this Idempotency-Key was deleted; send the request with a new Idempotency-Key",
            )
            .field("Idempotency-Key"));
        }
        self.queue_pending(job_id).await?;
        Ok(existing)
    }

    /// Records a staged job's draft head (once: a retry taking over its `Idempotency-Key` finds
    /// it recorded).
    async fn record_draft(&self, meta: &JobMeta) -> Result<JobMeta, ApiError> {
        if let Some(existing) = self.jobs.get_job(&meta.job_id).await? {
            return Ok(existing);
        }
        match self.jobs.create_draft(meta).await {
            Ok(()) | Err(StoreError::Conflict(_)) => Ok(meta.clone()),
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /jobs/{id}/contacts` `{"offset": o, "contacts": [...]}`: a page of a staged job's
    /// contacts, the first being the job's contact `o`. Each contact is validated as on
    /// `POST /jobs`, named by its index in the whole job. The same page again is a no-op; another
    /// page at the same offset is a 409; a job not taking pages (started, or not staged) 409.
    async fn add_page(&self, id: &str, req: &Request) -> Result<Response<Body>, ApiError> {
        let meta = self.live(id, false).await?;
        let body: Value = serde_json::from_slice(req.body().as_ref()).map_err(|_| {
            ApiError::new(400, "invalid_json", "the body is not valid JSON").field("")
        })?;
        let offset = body["offset"].as_u64().ok_or_else(|| {
            ApiError::invalid(
                "offset",
                "is required: the index in the job of the page's first contact (0 for the first page)",
            )
        })?;
        let contacts = body["contacts"]
            .as_array()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                ApiError::invalid("contacts", "is required: an array of at least one contact")
            })?;
        let end = offset.saturating_add(contacts.len() as u64);
        if end > meta.contacts {
            return Err(ApiError::invalid(
                "contacts",
                format!(
                    "the page runs past the job's {} contacts (staged.contacts when it was created)",
                    meta.contacts
                ),
            ));
        }
        let valid = validate::validate_contacts(meta.operation, offset as usize, contacts)?;
        let page = Page {
            offset,
            count: valid.len() as u64,
            sha256: hex::encode(Sha256::digest(body.to_string().as_bytes())),
            complete: false,
        };
        let written = match self.jobs.put_page(id, &page, &valid).await? {
            PageWrite::Written => true,
            PageWrite::Unchanged => false,
            PageWrite::Conflict => {
                return Err(ApiError::new(
                    409,
                    "page_conflict",
                    "another page was sent at this offset (a page is sent again only as it was)",
                )
                .field("offset"));
            }
            PageWrite::Closed => return Err(not_draft(&meta)),
        };
        let answer =
            json!({"job_id": id, "offset": offset, "contacts": page.count, "written": written});
        Ok(json_response(200, answer.to_string()))
    }

    /// `POST /jobs/{id}/start`: a staged job whose pages hold every contact it announced starts
    /// as a `POST /jobs` job does (its chunks recorded and queued, 202). A job started already
    /// answers the same (its chunks still pending queued again); pages missing, overlapping or
    /// still being written: 409, and the draft keeps taking pages.
    async fn start(&self, id: &str) -> Result<Response<Body>, ApiError> {
        let meta = self.live(id, false).await?;
        if meta.status != JobStatus::Draft {
            self.queue_pending(id).await?;
            return Ok(json_response(202, accepted(&meta).to_string()));
        }
        if meta.created_at_ms + DRAFT_TTL.as_millis() as u64 <= now_ms() {
            return Err(ApiError::new(
                409,
                "draft_expired",
                format!(
                    "the draft was not started within {} minutes of its creation: it is being erased; submit the job again",
                    DRAFT_TTL.as_secs() / 60
                ),
            ));
        }
        let in_progress = || {
            ApiError::new(
                409,
                "start_in_progress",
                "another request is starting this job; retry after the time in Retry-After",
            )
            .retry_after(2)
        };
        let Some(seal) = self
            .jobs
            .seal_draft(id, IDEMPOTENCY_LEASE.as_millis() as u64)
            .await?
        else {
            return match self.live(id, false).await? {
                m if m.status != JobStatus::Draft => {
                    Ok(json_response(202, accepted(&m).to_string()))
                }
                _ => Err(in_progress()),
            };
        };
        let pages = self.jobs.pages(id).await?;
        if let Err(rule) = pages_cover(&pages, meta.contacts) {
            self.jobs.unseal_draft(id, seal).await?;
            return Err(ApiError::new(409, "pages_missing", rule).field("contacts"));
        }
        let chunks = Chunk::plan(meta.contacts, meta.chunk_size);
        if !self.jobs.start_draft(id, &chunks, seal).await? {
            return match self.live(id, false).await? {
                m if m.status != JobStatus::Draft => {
                    Ok(json_response(202, accepted(&m).to_string()))
                }
                _ => Err(in_progress()),
            };
        }
        self.queue(id, chunks.iter().map(|c| c.index)).await?;
        let started = JobMeta {
            status: JobStatus::Accepted,
            ..meta
        };
        Ok(json_response(202, accepted(&started).to_string()))
    }

    /// Queues every chunk of the job that is still `pending`. A chunk queued twice is harmless:
    /// only one worker can take it from `pending`.
    async fn queue_pending(&self, job_id: &str) -> Result<(), ApiError> {
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
    async fn queue(&self, job_id: &str, chunks: impl Iterator<Item = u32>) -> Result<(), ApiError> {
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
    async fn live(&self, id: &str, with_figures: bool) -> Result<JobMeta, ApiError> {
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

    async fn job(&self, id: &str) -> Result<Response<Body>, ApiError> {
        // With its figures: summed over its chunks while it runs.
        let meta = self.live(id, true).await?;
        let chunks = self.jobs.chunks(id).await?;
        let credits: f64 = chunks.iter().filter_map(|c| c.credits).sum();
        let mut body = meta.summary_json();
        body["credits_used"] = json!(credits);
        body["callback"] = relay_shared::callback::callback_json(&meta);
        body["chunks"] = chunks
            .iter()
            .map(|c| {
                json!({
                    "index": c.index,
                    "provider_id": c.provider_id,
                    "status": c.status.as_str(),
                    "contacts": c.count,
                    "credits": c.credits,
                    "error": c.error,
                })
            })
            .collect();
        Ok(json_response(200, body.to_string()))
    }

    /// `GET /jobs?limit=&cursor=`: job heads newest first (the `recent` index; no scan).
    async fn list(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let params = req.query_string_parameters();
        let limit = page_limit(&params)?;
        let cursor = match params.first("cursor") {
            None => None,
            Some(c) => Some(
                c.split_once('.')
                    .and_then(|(t, id)| {
                        Some(JobsCursor {
                            created_at_ms: t.parse().ok()?,
                            job_id: Some(id).filter(|id| is_valid_job_id(id))?.to_string(),
                        })
                    })
                    .ok_or_else(|| {
                        ApiError::invalid("cursor", "is not a cursor this API returned")
                    })?,
            ),
        };
        let (jobs, next) = self.jobs.list_jobs(limit, cursor.as_ref()).await?;
        let body = json!({
            "jobs": jobs.iter().map(JobMeta::summary_json).collect::<Vec<_>>(),
            "next_cursor": next.map(|c| format!("{}.{}", c.created_at_ms, c.job_id)),
        });
        Ok(json_response(200, body.to_string()))
    }

    /// `GET /orphans?limit=&cursor=`: events of Enrow's global webhook for searches no chunk
    /// knows, newest first (one query of their partition): id, event, cost, when; no contact data.
    async fn orphans(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let params = req.query_string_parameters();
        let limit = page_limit(&params)?;
        let cursor = match params.first("cursor") {
            None => None,
            Some(c) => Some(
                c.split_once('#')
                    .filter(|(t, d)| {
                        t.len() == 13 && t.bytes().all(|b| b.is_ascii_digit()) && is_valid_job_id(d)
                    })
                    .map(|_| OrphansCursor(c.to_string()))
                    .ok_or_else(|| {
                        ApiError::invalid("cursor", "is not a cursor this API returned")
                    })?,
            ),
        };
        let (orphans, next) = self.jobs.list_orphans(limit, cursor.as_ref()).await?;
        let body = json!({
            "orphans": orphans.iter().map(|o| json!({
                "provider": o.provider.as_str(),
                "provider_id": o.provider_id,
                "event": o.event,
                "received_at": o.received_at_ms,
                "credits": o.credits,
            })).collect::<Vec<_>>(),
            "next_cursor": next.map(|c| c.0),
        });
        Ok(json_response(200, body.to_string()))
    }

    /// `DELETE /jobs/{id}`: a user's erasure request. The job reads as gone at once (404, not
    /// listed, nothing more started, its deliveries dropped) and its contacts and results are
    /// deleted in the background (the worker, from the submit queue); 202.
    ///
    /// The mark is the erasure's record: the sweeper asks for the erasure of a job marked and
    /// not erased, so a DELETE whose message could not be queued is still accepted (the
    /// message only makes it start at once). A DELETE of a job deleted but not erased yet
    /// (a retry, or one whose erasure seems stuck) marks it again and queues its erasure again:
    /// 202, never a 404 that leaves its data in place. Once erased: 404.
    async fn delete(&self, id: &str) -> Result<Response<Body>, ApiError> {
        if !is_valid_job_id(id) {
            return Err(ApiError::not_found("job"));
        }
        // Not erased: live, or deleted with its erasure still to finish.
        let erasable = self.jobs.get_job(id).await?.is_some_and(|m| !m.erased);
        if !erasable || !self.jobs.mark_deleted(id).await? {
            return Err(ApiError::not_found("job"));
        }
        if let Err(e) = self.submit_queue.send(SubmitChunk::delete(id)).await {
            tracing::warn!(job_id = id, error = %e, "erasure not queued: the sweeper will ask for it");
        }
        Ok(json_response(
            202,
            json!({"job_id": id, "status": "deleting"}).to_string(),
        ))
    }

    /// `POST /jobs/{id}/cancel`: chunks not started yet are never started (their contacts end
    /// `failed` with reason `canceled`); started chunks finish and their results are kept. 409
    /// once the job has ended.
    async fn cancel(&self, id: &str) -> Result<Response<Body>, ApiError> {
        let meta = self.live(id, true).await?;
        if meta.status.is_terminal() {
            return Err(ApiError::new(
                409,
                "job_ended",
                format!(
                    "the job has ended ({}); there is nothing to cancel",
                    meta.shown_status()
                ),
            ));
        }
        let canceled = JobError::new(
            reasons::CANCELED,
            "canceled by the client: chunks not started were not started",
        );
        self.jobs.set_job_error(id, &canceled).await?;
        let mut body = meta.summary_json();
        body["error"] = json!(canceled);
        Ok(json_response(202, body.to_string()))
    }

    async fn results(&self, id: &str, req: &Request) -> Result<Response<Body>, ApiError> {
        let params = req.query_string_parameters();
        let limit = match params.first("limit").map(|l| l.parse::<usize>()) {
            None => 100,
            Some(Ok(l)) if (1..=1000).contains(&l) => l,
            Some(_) => {
                return Err(ApiError::invalid(
                    "limit",
                    "must be a whole number from 1 to 1000",
                ));
            }
        };
        let from = match params.first("cursor").map(|c| c.parse::<u64>()) {
            None => 0,
            Some(Ok(c)) => c,
            Some(Err(_)) => {
                return Err(ApiError::invalid(
                    "cursor",
                    "is not a cursor this API returned",
                ));
            }
        };
        let include_raw = match params.first("include") {
            None | Some("") => false,
            Some("raw") => true,
            Some(_) => {
                return Err(ApiError::invalid(
                    "include",
                    "the only value is \"raw\" (the provider's record with each result)",
                ));
            }
        };
        let format = match params.first("format") {
            None | Some("json") => "json",
            Some("ndjson") => "ndjson",
            Some("csv") => "csv",
            Some(_) => return Err(ApiError::invalid("format", "must be json, ndjson or csv")),
        };
        let meta = self.live(id, false).await?;
        let results = self.jobs.results(id, from, limit + 1).await?;
        // CSV reads the provider's records for its `relay_emails` / `relay_phones` lists.
        let with_raw = include_raw || format == "csv";
        let (page, next) = results_page(results, limit, with_raw, MAX_RESULTS_PAGE_BYTES);
        // NDJSON and CSV: the page as lines, and where the next one starts in `X-Next-Cursor`.
        let (content_type, body) = match format {
            "ndjson" => {
                let mut body = page.join("\n");
                if !body.is_empty() {
                    body.push('\n');
                }
                ("application/x-ndjson", body)
            }
            "csv" => {
                let rows: Vec<Value> = page
                    .iter()
                    .filter_map(|r| serde_json::from_str(r).ok())
                    .collect();
                let mut out = Vec::new();
                // No byte-order mark: pages are concatenated by their readers (the CLI's
                // files have one).
                relay_shared::results_csv::write_results(
                    &mut out,
                    &rows,
                    meta.provider.as_str(),
                    false,
                )
                .map_err(|e| ApiError {
                    source: Some(e.into()),
                    ..ApiError::new(500, "internal", "the results could not be written as CSV")
                })?;
                (
                    "text/csv; charset=utf-8",
                    String::from_utf8_lossy(&out).into_owned(),
                )
            }
            _ => {
                return Ok(json_response(
                    200,
                    format!(
                        r#"{{"results":[{}],"next_cursor":{}}}"#,
                        page.join(","),
                        serde_json::to_string(&next).expect("serializable")
                    ),
                ));
            }
        };
        let mut resp = Response::builder()
            .status(200)
            .header("content-type", content_type);
        if let Some(n) = &next {
            resp = resp.header("x-next-cursor", n.as_str());
        }
        Ok(resp.body(Body::Text(body)).expect("valid response"))
    }
}

/// Whether a staged job's pages hold its `contacts` contacts, each once: complete, one after
/// the other from offset 0. The rule broken, naming offsets only (never contact data).
pub fn pages_cover(pages: &[Page], contacts: u64) -> Result<(), String> {
    let mut next = 0;
    for p in pages {
        if !p.complete {
            return Err(format!(
                "the page at offset {} is still being written (or its request failed midway: send it again); then start",
                p.offset
            ));
        }
        if p.offset < next {
            return Err(format!(
                "the page at offset {} overlaps the page before it (which ends at {next}): a job's pages must not overlap; delete the job and submit it again",
                p.offset
            ));
        }
        if p.offset > next {
            return Err(format!(
                "contacts {next} to {} have not arrived: send their page, then start",
                p.offset - 1
            ));
        }
        next = p.offset + p.count;
    }
    if next < contacts {
        return Err(format!(
            "contacts {next} to {} have not arrived (the job takes {contacts}): send their pages, then start",
            contacts - 1
        ));
    }
    Ok(())
}

/// The answer to a page sent to a job that takes none.
fn not_draft(meta: &JobMeta) -> ApiError {
    ApiError::new(
        409,
        "job_not_draft",
        format!(
            "the job takes no more contacts: it is {} (only a job created with \"staged\" takes pages, until its start)",
            meta.shown_status()
        ),
    )
}

/// A results page's serialized results stay under this (Lambda answers at most 6 MB, and API
/// Gateway's JSON envelope escapes the body once more).
pub const MAX_RESULTS_PAGE_BYTES: usize = 2_500_000;

/// One page of results: at most `limit`, at most `max_bytes` serialized (never fewer than one),
/// `raw` only when asked for. Returns the serialized results and the next cursor.
pub fn results_page(
    results: Vec<ContactResult>,
    limit: usize,
    include_raw: bool,
    max_bytes: usize,
) -> (Vec<String>, Option<String>) {
    let mut page = Vec::new();
    let mut bytes = 0;
    for r in results {
        let mut v = serde_json::to_value(&r).expect("serializable");
        if !include_raw && let Some(o) = v.as_object_mut() {
            o.remove("raw");
        }
        let text = v.to_string();
        if page.len() == limit || (!page.is_empty() && bytes + text.len() + 1 > max_bytes) {
            return (page, Some(r.index.to_string()));
        }
        bytes += text.len() + 1;
        page.push(text);
    }
    (page, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_shared::jobs::Outcome;

    fn result(index: u64, raw_bytes: usize) -> ContactResult {
        ContactResult {
            index,
            custom: Some(json!({"crm_id": format!("c{index}")})),
            outcome: Outcome::Found,
            email: Some("a@example.com".into()),
            email_status: Some("DELIVERABLE".into()),
            phone: None,
            reason: None,
            provisional: false,
            raw: json!({ "profile": "x".repeat(raw_bytes) }),
        }
    }

    #[test]
    fn a_results_page_is_capped_by_bytes_as_well_as_count_and_raw_is_opt_in() {
        // 1,000 results of 20 KB raw profiles: 20 MB with raw, far over Lambda's 6 MB.
        let many: Vec<ContactResult> = (0..1001).map(|i| result(i, 20_000)).collect();
        let (page, next) = results_page(many.clone(), 1000, true, MAX_RESULTS_PAGE_BYTES);
        let size: usize = page.iter().map(String::len).sum();
        assert!(size <= MAX_RESULTS_PAGE_BYTES, "{size}");
        assert!(page.len() < 1000 && !page.is_empty());
        assert_eq!(
            next,
            Some(page.len().to_string()),
            "the next page starts where this one stopped"
        );
        // Without `include=raw` the same 1,000 fit, and the cursor points at the 1,001st.
        let (page, next) = results_page(many, 1000, false, MAX_RESULTS_PAGE_BYTES);
        assert_eq!(page.len(), 1000);
        assert_eq!(next.as_deref(), Some("1000"));
        assert!(!page[0].contains("raw"));
        // One result larger than the cap still comes alone (never an empty page).
        let (page, next) = results_page(vec![result(0, 50), result(1, 50)], 10, true, 10);
        assert_eq!((page.len(), next.as_deref()), (1, Some("1")));
        assert!(page[0].contains("\"raw\""));
    }
}

fn accepted(meta: &JobMeta) -> Value {
    json!({
        "job_id": meta.job_id,
        "status": meta.status.as_str(),
        "contacts": meta.contacts,
        "chunks": meta.chunks,
    })
}

/// Starts chunks at the providers' pace, each at most once; erases deleted jobs.
pub struct ChunkSubmitter<J, S, Q, B> {
    pub jobs: J,
    /// The claim-check bucket: a job's erasure deletes its delivery bodies there.
    pub bodies: B,
    pub starter: S,
    /// The submit queue itself: rate-limited starts and confirmation checks wait there, delayed.
    pub queue: Q,
    /// The webhook queue: a job this worker ends asks there for its completion callback
    /// (bulk-fetch makes the attempts; the sweeper would find it due otherwise).
    pub callbacks: Q,
    pub secret: WebhookSecret,
    pub public_base_url: String,
    /// Minimum time between two FullEnrich requests, over every worker and bulk-fetch.
    pub fullenrich_interval: Duration,
    /// Minimum time between two starts on one Enrow endpoint, over every worker.
    pub enrow_interval: Duration,
    /// How long a worker holds a chunk it is starting; past it, a chunk still `starting` belongs
    /// to a worker that died, and is marked `start_unconfirmed`.
    pub lease: Duration,
    /// How long an unconfirmed start may wait for its webhook.
    pub confirm_timeout: Duration,
    /// How long a job may take: a chunk still pending this long after the job was created
    /// never starts, its contacts end `timed_out` (`JOB_DEADLINE_HOURS`, or the job's own
    /// `options.deadline_hours`).
    pub deadline: Duration,
}

/// What a start must still have of its invocation after waiting for its slot: the provider
/// call's own timeout plus this, for recording what came back.
pub const START_RESERVE: Duration = Duration::from_secs(10);
/// The longest a worker waits in-process for a start's slot; a later one is waited for in
/// the queue.
pub const MAX_START_WAIT: Duration = Duration::from_secs(30);

/// What became of one submit message.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// Started now, with this provider id.
    Started(String),
    /// Already started, being started, or final: nothing to do.
    Skipped,
    /// The start's answer was lost: the chunk waits for its webhook (never re-sent).
    Unconfirmed(String),
    /// The provider refused the chunk as a whole because of a contact: split in halves, queued.
    Split(Vec<u32>),
    /// Put back on the queue with a delay (a 429, or a confirmation to check later); the
    /// message in hand is done.
    Deferred(Duration),
    /// The chunk's contacts are failed with this reason.
    Failed(String),
    /// Back to the queue after its visibility timeout (provider unreachable, store unavailable).
    Retry(String),
}

/// Items one erasure message deletes (then the next message goes on): well inside the worker's
/// timeout at 25 items per BatchWriteItem, 8 in flight.
pub const ERASE_PER_MESSAGE: usize = 5_000;

/// A batch of submit messages as one EMF line: starts by outcome.
pub fn starts_metrics(outcomes: &[Submitted]) -> Metrics {
    let mut m = Metrics::new("job-submit-worker");
    for o in outcomes {
        let metric = match o {
            Submitted::Started(_) => metrics::STARTS_ACCEPTED,
            Submitted::Deferred(_) => metrics::STARTS_DEFERRED,
            Submitted::Split(_) | Submitted::Failed(_) => metrics::STARTS_REFUSED,
            Submitted::Unconfirmed(_) => metrics::STARTS_UNCONFIRMED,
            Submitted::Retry(_) => metrics::STARTS_RETRIED,
            Submitted::Skipped => continue,
        };
        m.add(metric, 1);
    }
    m
}

impl<J, S: Submitter, Q: Queue, B: BodyStore> ChunkSubmitter<J, S, Q, B>
where
    J: SubmitLedger + JobWriter + Results + Links + RateSchedule,
{
    /// Settles the job when every contact is accounted for; a job that ended here with a
    /// callback URL asks for its callback at once.
    async fn settle(&self, job_id: &str) -> Result<(), StoreError> {
        if self.jobs.settle_job(job_id).await?.is_some()
            && self
                .jobs
                .get_job(job_id)
                .await?
                .is_some_and(|m| m.callback_url.is_some())
        {
            let ask = relay_shared::callback::CallbackRequest::new(job_id, None).to_json();
            if let Err(e) = self.callbacks.send(ask).await {
                tracing::warn!(job_id, error = %e, "callback not queued: the sweeper will");
            }
        }
        Ok(())
    }

    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let outcomes = futures::future::join_all(event.records.iter().map(|r| async move {
            match serde_json::from_str::<SubmitChunk>(r.body.as_deref().unwrap_or_default()) {
                Ok(m) => self.handle(&m).await,
                Err(_) => {
                    // Not ours to drop: back to the queue, and to its DLQ after maxReceiveCount.
                    tracing::error!(
                        message_id = r.message_id.as_deref(),
                        "unreadable submit message"
                    );
                    Submitted::Retry("unreadable submit message".into())
                }
            }
        }))
        .await;
        let resp = relay_shared::queue::batch_response(&event.records, &outcomes, |o| {
            matches!(o, Submitted::Retry(_))
        });
        starts_metrics(&outcomes).emit();
        resp
    }

    /// Handles one submit message and logs one line.
    pub async fn handle(&self, m: &SubmitChunk) -> Submitted {
        let started = Instant::now();
        let outcome = match m.action {
            SubmitAction::Start => self.try_submit(&m.job_id, m.chunk).await,
            SubmitAction::ConfirmCheck => self.check_unconfirmed(&m.job_id, m.chunk).await,
            SubmitAction::Delete => self.erase(&m.job_id).await,
        }
        .unwrap_or_else(|e| Submitted::Retry(e.to_string()));
        let (what, detail) = match &outcome {
            Submitted::Started(_) => ("started", None),
            Submitted::Skipped => ("skipped", None),
            Submitted::Unconfirmed(r) => ("unconfirmed", Some(r.clone())),
            Submitted::Split(parts) => ("split", Some(format!("{parts:?}"))),
            Submitted::Deferred(d) => ("deferred", Some(format!("{} s", d.as_secs()))),
            Submitted::Failed(r) => ("failed", Some(r.clone())),
            Submitted::Retry(r) => ("retry", Some(r.clone())),
        };
        tracing::info!(
            job_id = m.job_id,
            chunk = m.chunk,
            action = ?m.action,
            outcome = what,
            detail,
            latency_ms = started.elapsed().as_millis() as u64,
            "chunk submit"
        );
        outcome
    }

    /// Deletes up to [`ERASE_PER_MESSAGE`] items of a deleted job; if more are left, the rest
    /// goes on in a new message. Once none is left: its claim-checked bodies, then the head
    /// made a tombstone (the erasure is done: the sweeper stops asking for it). A job whose
    /// creation was abandoned (the sweeper asks for it [`CREATION_GRACE`] after its head was
    /// written) is marked deleted first, and erased the same way.
    ///
    /// [`CREATION_GRACE`]: relay_shared::store::CREATION_GRACE
    async fn erase(&self, job_id: &str) -> Result<Submitted, StoreError> {
        let Some(mut meta) = self.jobs.get_job(job_id).await? else {
            return Ok(Submitted::Skipped);
        };
        if meta.creating && !meta.deleted {
            meta.deleted = self.jobs.abandon_creation(job_id).await?;
            if meta.deleted {
                tracing::info!(job_id, "job creation abandoned: erasing it");
            }
        }
        // A draft never started is erased once it is due (the sweeper asks for it then), as if
        // it had been deleted.
        if !meta.deleted
            && meta.status == JobStatus::Draft
            && meta.created_at_ms + DRAFT_TTL.as_millis() as u64 <= now_ms()
            && self.jobs.mark_deleted(job_id).await?
        {
            tracing::info!(job_id, "draft expired unstarted: erasing it");
            meta.deleted = true;
        }
        if !meta.deleted {
            // Only a deleted job is erased (a message naming another is not ours to act on).
            return Ok(Submitted::Skipped);
        }
        if meta.erased {
            return Ok(Submitted::Skipped);
        }
        let deleted = self.jobs.delete_items(job_id, ERASE_PER_MESSAGE).await?;
        if deleted == 0 {
            let prefix = relay_shared::bodies::job_prefix(meta.provider, job_id);
            let bodies = self
                .bodies
                .delete_prefix(&prefix)
                .await
                .map_err(|e| StoreError::unavailable(e.to_string()))?;
            self.jobs.finish_erasure(job_id).await?;
            tracing::info!(job_id, bodies, "job erased");
            return Ok(Submitted::Skipped);
        }
        match self.queue.send(SubmitChunk::delete(job_id)).await {
            Ok(_) => Ok(Submitted::Skipped),
            Err(e) => Ok(Submitted::Retry(format!("erasure not continued: {e}"))),
        }
    }

    /// Starts one chunk, once.
    pub async fn submit(&self, job_id: &str, index: u32) -> Submitted {
        self.handle(&SubmitChunk {
            job_id: job_id.to_string(),
            chunk: index,
            action: SubmitAction::Start,
        })
        .await
    }

    async fn try_submit(&self, job_id: &str, index: u32) -> Result<Submitted, StoreError> {
        // A job still being created starts nothing: its start messages are sent once it is (the
        // sweeper's, for a creation abandoned, come before its erasure). A draft's chunks exist
        // only once its start wrote them, and start once it is accepted.
        let live = |m: &JobMeta| !m.deleted && !m.creating && m.status != JobStatus::Draft;
        let Some(meta) = self.jobs.get_job(job_id).await?.filter(live) else {
            return Ok(Submitted::Skipped);
        };
        let Some(chunk) = self.jobs.chunk(job_id, index).await? else {
            return Ok(Submitted::Skipped);
        };
        match chunk.status {
            ChunkStatus::Pending => {}
            ChunkStatus::Starting => return self.not_pending_starting(job_id, &chunk).await,
            ChunkStatus::StartUnconfirmed => {
                // The message of a start whose check may have been lost: make sure one runs.
                self.schedule_check(job_id, index, self.check_delay(&chunk))
                    .await?;
                return Ok(Submitted::Skipped);
            }
            _ => {
                // Final or running: a settle that failed earlier gets another try here.
                self.settle(job_id).await?;
                return Ok(Submitted::Skipped);
            }
        }
        // A job that already failed for good (out of credits, canceled, key refused) starts
        // nothing more.
        if let Some(e) = meta.error.as_ref().filter(|e| e.stops_submission()) {
            return self.fail_pending(&meta, index, e.clone()).await;
        }
        // A chunk that could not start by its job's deadline never starts: the job ends.
        if self.start_deadline_passed(&meta) {
            let e = JobError::new(
                reasons::TIMED_OUT,
                "the chunk could not be started before the job's deadline",
            );
            return self.fail_pending(&meta, index, e).await;
        }
        let hooks = webhook_urls(&self.public_base_url, &self.secret, meta.provider, job_id);
        let name = meta.name.clone().unwrap_or_else(|| job_id.to_string());
        let contacts = self
            .jobs
            .contacts(job_id, chunk.offset, chunk.count)
            .await?;
        let request = start_request(meta.operation, &name, &contacts, &meta.options, &hooks);
        let (limit, interval) = match meta.provider {
            Provider::Fullenrich => ("fullenrich".to_string(), self.fullenrich_interval),
            Provider::Enrow => (format!("enrow{}", request.path), self.enrow_interval),
        };

        // The slot first, if it is near enough for the start to fit in this invocation after
        // the wait. Otherwise nothing is taken: the message waits in the queue until a slot is
        // in reach. A slot taken is a start sent, or given back.
        let reserve = self.starter.timeout() + START_RESERVE;
        let slot = match relay_shared::invocation::bounded_wait(MAX_START_WAIT, reserve) {
            Some(max_wait) => {
                self.jobs
                    .take_slot(
                        &limit,
                        interval.as_millis() as u64,
                        max_wait.as_millis() as u64,
                    )
                    .await?
            }
            None => Slot::Busy {
                retry_in_ms: interval.as_millis() as u64,
            },
        };
        let at_ms = match slot {
            Slot::At(at) => at,
            Slot::Busy { retry_in_ms } => {
                let wait =
                    Duration::from_millis(retry_in_ms).clamp(Duration::from_secs(1), MAX_DELAY);
                return match self
                    .queue
                    .send_delayed(SubmitChunk::start(job_id, index), wait)
                    .await
                {
                    Ok(_) => Ok(Submitted::Deferred(wait)),
                    Err(e) => Ok(Submitted::Retry(format!("waiting for a request slot; {e}"))),
                };
            }
        };
        tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms()))).await;
        let give_back = || async {
            if let Err(e) = self
                .jobs
                .return_slot(&limit, at_ms, interval.as_millis() as u64)
                .await
            {
                tracing::warn!(error = %e, job_id, "request slot not given back");
            }
        };

        // Then the chunk, right before its start and fenced by the job's head: a cancel, an
        // out-of-credits answer or an erasure recorded before this take stops it, so a cancel
        // answered "not started" never sees that chunk start.
        let owner = uuid::Uuid::new_v4().to_string();
        let taken = self
            .jobs
            .begin_submit(job_id, index, &owner, self.lease.as_millis() as u64)
            .await;
        let chunk = match taken {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                give_back().await;
                // Another worker took it meanwhile, or the job stopped: then its pending
                // chunks end with the job's error.
                if let Some(e) = self
                    .jobs
                    .get_job(job_id)
                    .await?
                    .and_then(|m| m.error)
                    .filter(JobError::stops_submission)
                {
                    return self.fail_pending(&meta, index, e).await;
                }
                return Ok(Submitted::Skipped);
            }
            Err(e) => {
                give_back().await;
                // The write may have applied with its answer lost: nothing was sent, so give
                // the chunk back (a no-op unless this worker holds it), or it would look like a
                // worker that died mid-start once the lease ran out.
                if let Err(release) = self.jobs.release_submit(job_id, index, &owner).await {
                    tracing::warn!(error = %release, job_id, chunk = index, "chunk not given back; it becomes unconfirmed after its lease");
                }
                return Err(e);
            }
        };
        let at = ChunkRef::from(&chunk);
        match self.starter.start(meta.operation, &request).await {
            Ok(started) => {
                // The provider has the chunk: record its id before anything else, insisting.
                // If it cannot be recorded, the chunk stays `starting`, becomes unconfirmed when
                // the lease runs out, and the chunk's webhook adopts it: never a second start.
                // A one-contact chunk's contact rides on its link: its result reads it there.
                let contact = contacts.first();
                let linked = (|| {
                    self.jobs
                        .link_chunk(job_id, at, &started.id, started.credits, contact)
                })
                    .retry(exponential(Duration::from_millis(200), 6))
                    .notify(|e, _| tracing::warn!(error = %e, job_id, chunk = index, "recording the provider id failed; retrying"))
                    .await?;
                if !linked {
                    // A webhook adopted the chunk under another id meanwhile: the provider's own
                    // answer is the truth, so the chunk takes this id and its webhooks map.
                    tracing::error!(
                        job_id,
                        chunk = index,
                        "the chunk was linked to another id; corrected to the start's"
                    );
                    self.jobs
                        .correct_link(job_id, at, &started.id, contact)
                        .await?;
                }
                self.jobs.count_submitted(job_id).await?;
                Ok(Submitted::Started(started.id))
            }
            Err(StartError::RateLimited(after)) => {
                // Not started: back to pending, and the message waits the provider's hint in
                // the queue (a new message: a long rate-limit episode never reaches the DLQ).
                self.jobs.release_submit(job_id, index, &owner).await?;
                let after = after.max(interval);
                match self
                    .queue
                    .send_delayed(SubmitChunk::start(job_id, index), after)
                    .await
                {
                    Ok(_) => Ok(Submitted::Deferred(after)),
                    Err(e) => Ok(Submitted::Retry(format!("rate limited; {e}"))),
                }
            }
            Err(StartError::NotSent(m)) => {
                self.jobs.release_submit(job_id, index, &owner).await?;
                Ok(Submitted::Retry(m))
            }
            Err(StartError::Unconfirmed(m)) => {
                // Unless a webhook adopted the chunk meanwhile, it waits for one: checked again
                // after the confirmation timeout.
                if self
                    .jobs
                    .mark_unconfirmed(job_id, index, Some(&owner))
                    .await?
                {
                    self.schedule_check(job_id, index, self.confirm_timeout)
                        .await?;
                }
                Ok(Submitted::Unconfirmed(m))
            }
            Err(StartError::OutOfCredits) => {
                let e = JobError::new(
                    reasons::CREDITS_INSUFFICIENT,
                    format!("{} reports insufficient credits", meta.provider.as_str()),
                );
                self.jobs.set_job_error(job_id, &e).await?;
                self.fail(&meta, &chunk, &contacts, e).await
            }
            Err(StartError::Unauthorized) => {
                let e = JobError::new(
                    reasons::PROVIDER_UNAUTHORIZED,
                    format!("{} refused the API key", meta.provider.as_str()),
                );
                self.jobs.set_job_error(job_id, &e).await?;
                self.fail(&meta, &chunk, &contacts, e).await
            }
            Err(StartError::Rejected {
                message,
                per_contact,
            }) => {
                if per_contact && chunk.count > 1 {
                    // One contact (or a few) spoils the request: halves, recursively, so only
                    // the contacts the provider refuses end failed.
                    let halves = match self.jobs.split_chunk(job_id, &chunk, &owner).await {
                        Ok(h) => h,
                        Err(StoreError::Conflict(_)) => return Ok(Submitted::Skipped),
                        Err(e) => return Err(e),
                    };
                    let parts: Vec<u32> = halves.iter().map(|c| c.index).collect();
                    for part in &parts {
                        if let Err(e) = self.queue.send(SubmitChunk::start(job_id, *part)).await {
                            // The halves are recorded `pending`; a retry of this message finds
                            // the parent split and the job's Idempotency-Key retry re-queues
                            // pending chunks.
                            return Ok(Submitted::Retry(format!("queueing a half: {e}")));
                        }
                    }
                    return Ok(Submitted::Split(parts));
                }
                let code = if per_contact {
                    reasons::REJECTED_BY_PROVIDER
                } else {
                    reasons::PROVIDER_REJECTED
                };
                let e = JobError::new(code, message);
                if !per_contact {
                    self.jobs.set_job_error(job_id, &e).await?;
                }
                self.fail(&meta, &chunk, &contacts, e).await
            }
        }
    }

    /// Whether a chunk still pending can no longer start in time: the job's deadline (its own
    /// `options.deadline_hours`, else the configured one) counted from its creation passed.
    fn start_deadline_passed(&self, meta: &JobMeta) -> bool {
        meta.created_at_ms + meta.deadline(self.deadline).as_millis() as u64 <= now_ms()
    }

    /// A start message for a chunk some worker holds: wait while its lease runs; after it,
    /// the worker died mid-start and the chunk is unconfirmed (never started again on a guess).
    async fn not_pending_starting(
        &self,
        job_id: &str,
        chunk: &Chunk,
    ) -> Result<Submitted, StoreError> {
        if self
            .jobs
            .mark_unconfirmed(job_id, chunk.index, None)
            .await?
        {
            self.schedule_check(job_id, chunk.index, self.confirm_timeout)
                .await?;
            return Ok(Submitted::Unconfirmed(
                "the worker starting it stopped before the provider's answer was recorded".into(),
            ));
        }
        Ok(Submitted::Retry("being started by another worker".into()))
    }

    /// When the next look at an unconfirmed chunk is due.
    fn check_delay(&self, chunk: &Chunk) -> Duration {
        let since = Duration::from_millis(
            now_ms().saturating_sub(chunk.unconfirmed_at_ms.unwrap_or_else(now_ms)),
        );
        self.confirm_timeout.saturating_sub(since)
    }

    /// Queues a look at an unconfirmed chunk `after` from now (in steps of at most 15 minutes,
    /// SQS's longest delay).
    async fn schedule_check(
        &self,
        job_id: &str,
        index: u32,
        after: Duration,
    ) -> Result<(), StoreError> {
        self.queue
            .send_delayed(
                SubmitChunk::message(job_id, index, SubmitAction::ConfirmCheck),
                after.min(MAX_DELAY),
            )
            .await
            .map(|_| ())
            .map_err(|e| StoreError::unavailable(e.to_string()))
    }

    /// An unconfirmed chunk's check: adopted meanwhile → done; still waiting within the timeout →
    /// look again later; past it → its contacts fail with `start_unconfirmed`.
    async fn check_unconfirmed(&self, job_id: &str, index: u32) -> Result<Submitted, StoreError> {
        let (Some(meta), Some(chunk)) = (
            self.jobs.get_job(job_id).await?,
            self.jobs.chunk(job_id, index).await?,
        ) else {
            return Ok(Submitted::Skipped);
        };
        // `failed` without its error: expired by an earlier check that stopped before the
        // contacts were failed; finish that.
        let resumed = chunk.status == ChunkStatus::Failed && chunk.error.is_none();
        if chunk.status != ChunkStatus::StartUnconfirmed && !resumed {
            return Ok(Submitted::Skipped);
        }
        let remaining = self.check_delay(&chunk);
        if !resumed && !remaining.is_zero() {
            self.schedule_check(job_id, index, remaining).await?;
            return Ok(Submitted::Deferred(remaining.min(MAX_DELAY)));
        }
        let e = JobError::new(
            reasons::START_UNCONFIRMED,
            format!(
                "the provider's answer to a start was lost and no webhook came within {} s; the relay does not start contacts again on a guess (that could bill them twice): resubmit them if they are missing",
                self.confirm_timeout.as_secs()
            ),
        );
        // Ended first, conditionally: a webhook that adopted the chunk a moment ago wins.
        if !resumed && !self.jobs.expire_unconfirmed(job_id, index).await? {
            return Ok(Submitted::Skipped);
        }
        let contacts = self
            .jobs
            .contacts(job_id, chunk.offset, chunk.count)
            .await?;
        self.jobs.set_job_error(job_id, &e).await?;
        self.fail(&meta, &chunk, &contacts, e).await
    }

    /// Takes a pending chunk and fails its contacts with the job's error (no start is made).
    async fn fail_pending(
        &self,
        meta: &JobMeta,
        index: u32,
        e: JobError,
    ) -> Result<Submitted, StoreError> {
        let owner = uuid::Uuid::new_v4().to_string();
        let Some(chunk) = self
            .jobs
            .begin_fail(&meta.job_id, index, &owner, self.lease.as_millis() as u64)
            .await?
        else {
            return Ok(Submitted::Skipped);
        };
        let contacts = self
            .jobs
            .contacts(&meta.job_id, chunk.offset, chunk.count)
            .await?;
        self.fail(meta, &chunk, &contacts, e).await
    }

    /// A chunk the provider will never take: its contacts end `failed` with the reason (so the
    /// job still accounts for every contact), and the job settles.
    async fn fail(
        &self,
        meta: &JobMeta,
        chunk: &Chunk,
        contacts: &[relay_shared::jobs::Contact],
        e: JobError,
    ) -> Result<Submitted, StoreError> {
        let results = contacts
            .iter()
            .map(|c| ContactResult::failed(c, &e.code))
            .collect();
        let update = ChunkUpdate {
            index: chunk.index,
            status: ChunkStatus::Failed,
            credits: None,
            error: Some(e.clone()),
        };
        self.jobs
            .store_chunk(&meta.job_id, ChunkRef::from(chunk), results, update)
            .await?;
        // A settle that fails sends the message back; the retry finds the chunk failed and
        // settles again (see `try_submit`).
        self.settle(&meta.job_id).await?;
        Ok(Submitted::Failed(e.code))
    }
}
