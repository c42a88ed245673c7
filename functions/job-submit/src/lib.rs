//! job-submit: the jobs API ([`Api`]) and the chunk submitter ([`ChunkSubmitter`]).
//!
//! `POST /jobs` validates, records the job (contacts, chunks, head) and queues one message per
//! chunk, then answers 202: no request waits on a provider. `job-submit-worker` consumes that
//! queue and starts each chunk at the provider's pace (a rate limit shared by every worker,
//! kept in DynamoDB), recording the provider id the moment the provider accepts it.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::StreamExt;
use lambda_http::{Body, Request, RequestExt, Response};
use relay_shared::auth::{BearerToken, WebhookSecret};
use relay_shared::jobs::{Chunk, ChunkStatus, ContactResult, JobError, JobMeta, JobStatus};
use relay_shared::providers::submit::{
    StartError, Submitter, WebhookUrls, chunk_size, start_request,
};
use relay_shared::queue::Queue;
use relay_shared::store::{
    ChunkRef, ChunkUpdate, DynamoJobStore, Idempotency, JobStore, StoreError,
};
use relay_shared::{Provider, error_json, is_valid_job_id, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub mod validate;

/// A chunk to start: the submit queue's message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitChunk {
    pub job_id: String,
    pub chunk: u32,
}

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

fn json_response(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(body))
        .expect("valid response")
}

fn error(status: u16, code: &str, message: &str, field: Option<&str>) -> Response<Body> {
    json_response(status, error_json(code, message, field))
}

fn store_unavailable(e: StoreError) -> Response<Body> {
    tracing::error!(error = %e, "job store unavailable");
    error(
        503,
        "unavailable",
        "the job store is unavailable; retry",
        None,
    )
}

pub struct Api<Q> {
    pub jobs: DynamoJobStore,
    pub submit_queue: Q,
    pub token: BearerToken,
}

impl<Q: Queue> Api<Q> {
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
        resp
    }

    async fn route(&self, req: &Request) -> (&'static str, Option<String>, Response<Body>) {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if !self.token.verify_header(auth) {
            let resp = error(401, "unauthorized", "missing or wrong bearer token", None);
            return ("unauthorized", None, resp);
        }
        let path = req.uri().path();
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let found = segments.by_ref().find(|s| *s == "jobs").is_some();
        let rest: Vec<&str> = segments.collect();
        let get = req.method() == "GET";
        let post = req.method() == "POST";
        match (found, rest.as_slice()) {
            (true, []) if post => {
                let (job, resp) = self.create(req).await;
                ("POST /jobs", job, resp)
            }
            (true, [id]) if get => ("GET /jobs/{id}", Some(id.to_string()), self.job(id).await),
            (true, [id, "results"]) if get => {
                let resp = self.results(id, req).await;
                ("GET /jobs/{id}/results", Some(id.to_string()), resp)
            }
            (true, [] | [_] | [_, "results"]) => (
                "method",
                None,
                error(
                    405,
                    "method_not_allowed",
                    "method not allowed on this route",
                    None,
                ),
            ),
            _ => (
                "unknown",
                None,
                error(404, "not_found", "no such route", None),
            ),
        }
    }

    async fn create(&self, req: &Request) -> (Option<String>, Response<Body>) {
        let body: Value = match serde_json::from_slice(req.body().as_ref()) {
            Ok(v) => v,
            Err(_) => {
                return (
                    None,
                    error(400, "invalid_json", "the body is not valid JSON", Some("")),
                );
            }
        };
        let new = match validate::validate(&body) {
            Ok(n) => n,
            Err(e) => {
                return (
                    None,
                    error(400, "invalid_request", &e.message, Some(&e.field)),
                );
            }
        };
        let mut job_id = format!("job_{}", uuid::Uuid::new_v4().simple());
        if let Some(key) = req.headers().get("idempotency-key") {
            let key = match key
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 255)
            {
                Some(k) => k,
                None => {
                    let resp = error(
                        400,
                        "invalid_request",
                        "must be 1 to 255 visible ASCII characters",
                        Some("Idempotency-Key"),
                    );
                    return (None, resp);
                }
            };
            // serde_json sorts object keys: the same JSON sent twice hashes the same.
            let hash = hex::encode(Sha256::digest(body.to_string().as_bytes()));
            match self
                .jobs
                .remember_idempotency_key(key, &hash, &job_id)
                .await
            {
                Ok(Idempotency::Fresh) => {}
                Ok(Idempotency::Seen {
                    job_id: first,
                    body_sha256,
                }) => {
                    if body_sha256 != hash {
                        let resp = error(
                            422,
                            "idempotency_key_reused",
                            "this Idempotency-Key was used with a different body",
                            Some("Idempotency-Key"),
                        );
                        return (Some(first), resp);
                    }
                    match self.jobs.get_job(&first).await {
                        Ok(Some(meta)) => {
                            let resp = json_response(202, accepted(&meta).to_string());
                            return (Some(first), resp);
                        }
                        // The first request died before the job was written: finish it.
                        Ok(None) => job_id = first,
                        Err(e) => return (Some(first), store_unavailable(e)),
                    }
                }
                Err(e) => return (None, store_unavailable(e)),
            }
        }

        let size = chunk_size(new.operation);
        let n = new.contacts.len() as u64;
        let chunks = Chunk::plan(n, size);
        let meta = JobMeta::new(
            job_id.clone(),
            new.operation,
            Some(new.name),
            JobStatus::Accepted,
            n,
            size,
            new.options,
        );
        match self.jobs.create_job(&meta, &chunks, &new.contacts).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return (Some(job_id), store_unavailable(e)),
        }
        // One message per chunk; a chunk queued twice is started once (the submit lease).
        let messages: Vec<String> = chunks
            .iter()
            .map(|c| {
                let m = SubmitChunk {
                    job_id: job_id.clone(),
                    chunk: c.index,
                };
                serde_json::to_string(&m).expect("serializable")
            })
            .collect();
        let sends = futures::stream::iter(messages.into_iter().map(|m| self.submit_queue.send(m)))
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        if let Some(Err(e)) = sends.into_iter().find(Result::is_err) {
            tracing::error!(error = %e, job_id, "submit queue unavailable");
            let resp = error(
                503,
                "unavailable",
                "the job is recorded but not all of it could be queued; retry with the same Idempotency-Key",
                None,
            );
            return (Some(job_id), resp);
        }
        (
            Some(job_id),
            json_response(202, accepted(&meta).to_string()),
        )
    }

    async fn job(&self, id: &str) -> Response<Body> {
        if !is_valid_job_id(id) {
            return error(404, "not_found", "no such job", None);
        }
        let meta = match self.jobs.get_job(id).await {
            Ok(Some(m)) => m,
            Ok(None) => return error(404, "not_found", "no such job", None),
            Err(e) => return store_unavailable(e),
        };
        let chunks = match self.jobs.chunks(id).await {
            Ok(c) => c,
            Err(e) => return store_unavailable(e),
        };
        let credits: f64 = chunks.iter().filter_map(|c| c.credits).sum();
        let body = json!({
            "job_id": meta.job_id,
            "provider": meta.provider.as_str(),
            "operation": meta.operation.as_str(),
            "name": meta.name,
            "status": meta.status.as_str(),
            "contacts": meta.contacts,
            "done": meta.done,
            "found": meta.found,
            "not_found": meta.not_found,
            "failed": meta.failed,
            "duplicates": meta.duplicates,
            "credits_used": credits,
            "created_at": meta.created_at_ms,
            "updated_at": meta.updated_at_ms,
            "error": meta.error,
            "chunks": chunks.iter().map(|c| json!({
                "index": c.index,
                "provider_id": c.provider_id,
                "status": c.status.as_str(),
                "contacts": c.count,
                "credits": c.credits,
                "error": c.error,
            })).collect::<Vec<_>>(),
        });
        json_response(200, body.to_string())
    }

    async fn results(&self, id: &str, req: &Request) -> Response<Body> {
        let params = req.query_string_parameters();
        let limit = match params.first("limit").map(|l| l.parse::<usize>()) {
            None => 100,
            Some(Ok(l)) if (1..=1000).contains(&l) => l,
            Some(_) => {
                return error(
                    400,
                    "invalid_request",
                    "must be a whole number from 1 to 1000",
                    Some("limit"),
                );
            }
        };
        let from = match params.first("cursor").map(|c| c.parse::<u64>()) {
            None => 0,
            Some(Ok(c)) => c,
            Some(Err(_)) => {
                return error(
                    400,
                    "invalid_request",
                    "is not a cursor this API returned",
                    Some("cursor"),
                );
            }
        };
        if !is_valid_job_id(id) {
            return error(404, "not_found", "no such job", None);
        }
        match self.jobs.get_job(id).await {
            Ok(Some(_)) => {}
            Ok(None) => return error(404, "not_found", "no such job", None),
            Err(e) => return store_unavailable(e),
        }
        let mut results = match self.jobs.results(id, from, limit + 1).await {
            Ok(r) => r,
            Err(e) => return store_unavailable(e),
        };
        let next = (results.len() > limit).then(|| results[limit].index.to_string());
        results.truncate(limit);
        json_response(
            200,
            json!({ "results": results, "next_cursor": next }).to_string(),
        )
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

/// Starts chunks at the providers' pace.
pub struct ChunkSubmitter<S> {
    pub jobs: DynamoJobStore,
    pub starter: S,
    pub secret: WebhookSecret,
    pub public_base_url: String,
    /// Minimum time between two FullEnrich starts, over every worker.
    pub fullenrich_interval: Duration,
    /// Minimum time between two starts on one Enrow endpoint, over every worker.
    pub enrow_interval: Duration,
    /// How long a worker holds a chunk it is starting.
    pub lease: Duration,
}

/// What became of one submit message.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// Started now, with this provider id.
    Started(String),
    /// Already started or being started: nothing to do.
    Skipped,
    /// The provider refused for good: the chunk's contacts are failed with this reason.
    Failed(String),
    /// Back to the queue (rate limited, provider or store unavailable).
    Retry(String),
}

impl<S: Submitter> ChunkSubmitter<S> {
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let outcomes = futures::future::join_all(event.records.iter().map(|r| async move {
            match serde_json::from_str::<SubmitChunk>(r.body.as_deref().unwrap_or_default()) {
                Ok(m) => self.submit(&m.job_id, m.chunk).await,
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
        let mut resp = SqsBatchResponse::default();
        for (r, o) in event.records.iter().zip(outcomes) {
            if let Submitted::Retry(_) = o {
                let mut f = BatchItemFailure::default();
                f.item_identifier = r.message_id.clone().unwrap_or_default();
                resp.batch_item_failures.push(f);
            }
        }
        resp
    }

    /// Starts one chunk, once, and logs one line.
    pub async fn submit(&self, job_id: &str, index: u32) -> Submitted {
        let started = Instant::now();
        let outcome = self
            .try_submit(job_id, index)
            .await
            .unwrap_or_else(|e| Submitted::Retry(e.to_string()));
        let (what, detail) = match &outcome {
            Submitted::Started(_) => ("started", None),
            Submitted::Skipped => ("skipped", None),
            Submitted::Failed(r) => ("failed", Some(r.as_str())),
            Submitted::Retry(r) => ("retry", Some(r.as_str())),
        };
        tracing::info!(
            job_id,
            chunk = index,
            outcome = what,
            detail,
            latency_ms = started.elapsed().as_millis() as u64,
            "chunk submit"
        );
        outcome
    }

    async fn try_submit(&self, job_id: &str, index: u32) -> Result<Submitted, StoreError> {
        let Some(meta) = self.jobs.get_job(job_id).await? else {
            return Ok(Submitted::Skipped);
        };
        let Some(chunk) = self
            .jobs
            .begin_submit(job_id, index, self.lease.as_millis() as u64)
            .await?
        else {
            return Ok(Submitted::Skipped);
        };
        let contacts = self
            .jobs
            .contacts(job_id, chunk.offset, chunk.count)
            .await?;
        // A job that already failed for good (e.g. out of credits) starts nothing more.
        if let Some(e) = meta
            .error
            .as_ref()
            .filter(|e| e.code == "credits_insufficient" || e.code == "provider_unauthorized")
        {
            return self.fail(&meta, &chunk, &contacts, e.clone()).await;
        }
        let hooks = webhook_urls(&self.public_base_url, &self.secret, meta.provider, job_id);
        let name = meta.name.clone().unwrap_or_else(|| job_id.to_string());
        let request = start_request(meta.operation, &name, &contacts, &meta.options, &hooks);
        let (limit, interval) = match meta.provider {
            Provider::Fullenrich => ("fullenrich".to_string(), self.fullenrich_interval),
            Provider::Enrow => (format!("enrow{}", request.path), self.enrow_interval),
        };
        let slot = self
            .jobs
            .reserve_slot(&limit, interval.as_millis() as u64)
            .await?;
        let wait = slot.saturating_sub(now_ms());
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        match self.starter.start(meta.operation, &request).await {
            Ok(started) => {
                // The provider has the chunk: record its id before anything else, insisting,
                // since a chunk without its id would be started again after the lease.
                let mut attempt = 0;
                loop {
                    match self
                        .jobs
                        .link_chunk(job_id, &chunk, &started.id, started.credits)
                        .await
                    {
                        Ok(()) => break,
                        Err(e) if attempt < 6 => {
                            attempt += 1;
                            tracing::warn!(error = %e, job_id, chunk = index, "recording the provider id failed; retrying");
                            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
                self.jobs.count_submitted(job_id).await?;
                Ok(Submitted::Started(started.id))
            }
            Err(StartError::RateLimited(after)) => {
                self.jobs.release_submit(job_id, index).await?;
                Ok(Submitted::Retry(format!(
                    "rate limited; retry after {}s",
                    after.as_secs()
                )))
            }
            Err(StartError::Retryable(m)) => {
                self.jobs.release_submit(job_id, index).await?;
                Ok(Submitted::Retry(m))
            }
            Err(StartError::OutOfCredits) => {
                let e = JobError {
                    code: "credits_insufficient".into(),
                    message: format!("{} reports insufficient credits", meta.provider.as_str()),
                };
                self.fail(&meta, &chunk, &contacts, e).await
            }
            Err(StartError::Unauthorized) => {
                let e = JobError {
                    code: "provider_unauthorized".into(),
                    message: format!("{} refused the API key", meta.provider.as_str()),
                };
                self.fail(&meta, &chunk, &contacts, e).await
            }
            Err(StartError::Rejected(m)) => {
                let e = JobError {
                    code: "provider_rejected".into(),
                    message: m,
                };
                self.fail(&meta, &chunk, &contacts, e).await
            }
        }
    }

    /// A chunk the provider will never take: its contacts end `failed` with the reason (so the
    /// job still accounts for every contact), and the job carries the error.
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
        let at = ChunkRef {
            index: chunk.index,
            offset: chunk.offset,
            count: chunk.count,
        };
        let update = ChunkUpdate {
            index: chunk.index,
            status: ChunkStatus::Failed,
            credits: None,
            error: Some(e.clone()),
        };
        self.jobs
            .store_chunk(&meta.job_id, at, results, update)
            .await?;
        self.jobs.set_job_error(&meta.job_id, &e).await?;
        self.jobs.settle_job(&meta.job_id).await?;
        Ok(Submitted::Failed(e.code))
    }
}
