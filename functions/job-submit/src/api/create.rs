//! `POST /jobs`: a new job, or a staged job's draft, under its `Idempotency-Key`.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use relay_shared::jobs::{Chunk, JobMeta, JobStatus};
use relay_shared::providers::submit::chunk_size;
use relay_shared::queue::Queue;
use relay_shared::store::{Idempotency, StoreError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::bodies::Accepted;
use super::schema::errors::{BadRequest, Conflict, Unauthorized, Unavailable, Unprocessable};
use super::schema::{DryRun, NewJobDoc, Unaffordable};
use super::{Api, ApiStore, IDEMPOTENCY_LEASE, Shared, accepted, json_response, with_job};
use crate::{ApiError, validate};
use relay_shared::JobId;
use relay_shared::validate::NewJob as Validated;

/// Submit a job: validated, recorded, its chunks queued; 202 before any provider is called.
///
/// `POST /jobs` validates the job, records it (contacts, chunks, head) and queues one message
/// per chunk, then answers 202 (a staged job: its draft head only, its contacts in pages).
#[utoipa::path(
    post,
    path = "/jobs",
    tag = "jobs",
    operation_id = "createJob",
    params(
        ("Idempotency-Key" = Option<String>, Header, max_length = 255,
            description = "The same key and body return the same job (24 h)."),
    ),
    request_body = NewJobDoc,
    responses(
        (status = 202, description = "Accepted.", body = Accepted),
        (status = 200, description = "dry_run: priced, nothing written.", body = DryRun),
        (status = 402, description = "The job's worst case exceeds its provider account's balance.", body = Unaffordable),
        BadRequest, Unauthorized, Conflict, Unprocessable, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(super) async fn create<J: ApiStore, Q: Queue>(
    axum::extract::State(api): Shared<J, Q>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    api.create(&headers, &body).await
}

/// What a request's `Idempotency-Key` (if any) makes of it.
enum Claim<'h> {
    /// A job to create now, under this id, the key held (when one was sent).
    New { job_id: JobId, key: Option<&'h str> },
    /// Created before: its job, to answer as the first time.
    Answered(JobMeta),
}

impl<J: ApiStore, Q: Queue> Api<J, Q> {
    /// `POST /jobs`; the response and the error name the job once it is known. A body with
    /// `"dry_run": true` is validated and priced, and nothing more.
    async fn create(&self, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
        let body: Value = serde_json::from_slice(body).map_err(|_| {
            ApiError::new(400, "invalid_json", "the body is not valid JSON").field("")
        })?;
        match body.get("dry_run") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => return self.dry_run(&body).await,
            Some(_) => return Err(ApiError::invalid("dry_run", "must be true or false")),
        }
        let meta = self.create_job(headers, body, None).await?;
        Ok(with_job(
            json_response(202, accepted(&meta).to_string()),
            &meta.job_id,
        ))
    }

    /// `POST /jobs` with `"dry_run": true`: 200 `{dry_run, contacts, estimate, balance}`;
    /// nothing is written, nothing starts.
    async fn dry_run(&self, body: &Value) -> Result<Response, ApiError> {
        let (new, staged) = self.validate_new(body)?;
        let n = staged.unwrap_or(new.contacts.len() as u64);
        let a = self
            .first_step_credits(new.provider, new.operation, &new.options, n)
            .await;
        let mut answer = json!({
            "dry_run": true,
            "contacts": n,
            "estimate": a.estimate.json(),
            "balance": a.balance_json(),
        });
        if let Some(plan) = &new.waterfall {
            // Every step's worst case, as if every contact reached it.
            let steps: Vec<Value> = plan
                .chain()
                .iter()
                .map(|s| {
                    let credits = relay_shared::credits::estimate(s.operation, &s.options, n);
                    json!({"provider": s.provider.as_str(), "credits": credits})
                })
                .collect();
            answer["steps"] = Value::Array(steps);
        }
        Ok(json_response(200, answer.to_string()))
    }

    /// A `POST /jobs` body validated: the job, and for a staged job how many contacts it takes.
    fn validate_new(&self, body: &Value) -> Result<(Validated, Option<u64>), ApiError> {
        // A staged job: its head now, its contacts in pages, its start when they are all in.
        Ok(if body.get("staged").is_some_and(|s| !s.is_null()) {
            let (new, n) = validate::validate_staged(body, self.callback_policy)?;
            (new, Some(n))
        } else {
            (validate::validate_with(body, self.callback_policy)?, None)
        })
    }

    /// Validates a `POST /jobs` body and records its job (or finds the one its
    /// `Idempotency-Key` created), linked to the job it retries (`retry_of`) if any. In the
    /// order that loses nothing: validation, the key, the credit check (a refusal gives the key
    /// up, as any failure to create does), then the job's records.
    pub(super) async fn create_job(
        &self,
        headers: &HeaderMap,
        body: Value,
        retry_of: Option<&JobId>,
    ) -> Result<JobMeta, ApiError> {
        let (new, staged) = self.validate_new(&body)?;
        let n = staged.unwrap_or(new.contacts.len() as u64);
        let owner = uuid::Uuid::new_v4().to_string();
        let (job_id, held_key) = match self.claim(headers, &body, &owner).await? {
            Claim::New { job_id, key } => (job_id, key),
            Claim::Answered(meta) => return Ok(meta),
        };
        let afforded = self
            .afford(new.provider, new.operation, &new.options, n)
            .await;
        let outcome = match afforded {
            Ok(()) => self
                .record_new(&job_id, new, staged, retry_of)
                .await
                .map_err(|e| e.job(&job_id)),
            // No job: none is named.
            Err(refused) => Err(refused),
        };
        if let Some(key) = held_key
            && let Err(e) = self
                .jobs
                .finish_idempotency_key(key, &owner, outcome.is_ok())
                .await
        {
            // The key's lease runs out on its own; a retry then takes over.
            tracing::warn!(error = %e, %job_id, "idempotency key not finished");
        }
        outcome
    }

    /// Records a validated job under `job_id`: its draft head (staged), or its contacts,
    /// chunks and head, its chunks queued.
    async fn record_new(
        &self,
        job_id: &JobId,
        new: Validated,
        staged: Option<u64>,
        retry_of: Option<&JobId>,
    ) -> Result<JobMeta, ApiError> {
        let size = chunk_size(new.operation);
        let n = staged.unwrap_or(new.contacts.len() as u64);
        let chunks = Chunk::plan(n, size);
        let status = match staged {
            Some(_) => JobStatus::Draft,
            None => JobStatus::Accepted,
        };
        let mut meta = JobMeta::new(
            job_id.clone(),
            new.operation,
            Some(new.name),
            status,
            n,
            size,
            new.options,
        );
        meta.callback_url = new.callback_url;
        meta.retry_of = retry_of.cloned();
        meta.budget = new.max_credits.map(relay_shared::budget::Budget::new);
        if let Some(plan) = &new.waterfall {
            return self.record_waterfall(meta, plan, &new.contacts).await;
        }
        match staged {
            Some(_) => self.record_draft(&meta).await,
            None => self.record_and_queue(&meta, &chunks, &new.contacts).await,
        }
    }

    /// The job this request creates: a new id, or under its `Idempotency-Key` the id that key
    /// holds, or the first request's answer once that created its job.
    async fn claim<'h>(
        &self,
        headers: &'h HeaderMap,
        body: &Value,
        owner: &str,
    ) -> Result<Claim<'h>, ApiError> {
        let job_id = JobId::new(format!("job_{}", uuid::Uuid::new_v4().simple()));
        let Some(key) = headers.get("idempotency-key") else {
            return Ok(Claim::New { job_id, key: None });
        };
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
            .claim_idempotency_key(key, &hash, &job_id, owner, lease)
            .await?
        {
            Idempotency::Owned { job_id } => Ok(Claim::New {
                job_id,
                key: Some(key),
            }),
            Idempotency::Mismatch { job_id: first } => Err(ApiError::new(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different body",
            )
            .field("Idempotency-Key")
            .job(&first)),
            Idempotency::InUse { retry_after_ms } => Err(ApiError::new(
                409,
                "idempotency_key_in_use",
                "another request with this Idempotency-Key is still creating its job; retry after the time in Retry-After",
            )
            .field("Idempotency-Key")
            .retry_after(retry_after_ms.div_ceil(1000).max(1))),
            Idempotency::Created { job_id: first } => {
                // Created before: finish what it may have left undone (chunks still pending
                // whose messages were lost), then answer as the first time.
                let again = self.answer_again(&first).await.map_err(|e| e.job(&first))?;
                Ok(Claim::Answered(again))
            }
        }
    }

    /// The job of a request whose `Idempotency-Key` created it before, its chunks still
    /// `pending` queued again.
    async fn answer_again(&self, job_id: &JobId) -> Result<JobMeta, ApiError> {
        let meta = self.jobs.get_job(job_id).await?.ok_or_else(|| {
            ApiError::new(
                409,
                "idempotency_key_in_use",
                "the job of this Idempotency-Key is not recorded; retry",
            )
            .field("Idempotency-Key")
        })?;
        self.queue_pending(job_id).await?;
        Ok(meta)
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
        let job_id = &meta.job_id;
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

    /// Records a waterfall: each step's job first (the first with every contact and its chunks,
    /// the later ones empty and `open`), then its head, then the first step's chunks queued. A
    /// retry under the same `Idempotency-Key` makes the same ids, finds what was written, and
    /// writes the rest.
    async fn record_waterfall(
        &self,
        head: JobMeta,
        plan: &relay_shared::validate::WaterfallPlan,
        contacts: &[relay_shared::jobs::Contact],
    ) -> Result<JobMeta, ApiError> {
        use relay_shared::waterfall::plan;
        let job_id = head.job_id.clone();
        let wf = plan::waterfall_of(&job_id, plan);
        let steps = plan::step_jobs(&head, &wf, chunk_size);
        // The head first: no step starts without the waterfall that ends it (a first step
        // written alone would be started by the sweeper, spending credits for a job the caller
        // was told failed).
        let head = plan::head_of(head, wf.clone());
        match self.jobs.create_job(&head, &[], &[]).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                let existing = self.jobs.get_job(&job_id).await?;
                if existing.as_ref().is_none_or(|m| m.deleted) {
                    return Err(ApiError::new(
                        409,
                        "job_deleted",
                        "the job of this Idempotency-Key was deleted; send the request with a new Idempotency-Key",
                    )
                    .field("Idempotency-Key"));
                }
            }
            Err(e) => return Err(e.into()),
        }
        for (t, (meta, chunks)) in steps.iter().enumerate() {
            let step_contacts = if t == 0 { contacts } else { &[][..] };
            match self.jobs.create_job(meta, chunks, step_contacts).await {
                // Written by an earlier try of this request.
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let first = &wf.steps[0].job_id;
        self.queue(first, steps[0].1.iter().map(|c| c.index))
            .await?;
        Ok(head)
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
}
