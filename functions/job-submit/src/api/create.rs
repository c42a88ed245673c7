//! `POST /jobs`: a new job, or a staged job's draft, under its `Idempotency-Key`.

use lambda_http::{Body, Request, Response};
use relay_shared::jobs::{Chunk, JobMeta, JobStatus};
use relay_shared::providers::submit::chunk_size;
use relay_shared::queue::Queue;
use relay_shared::store::{Idempotency, IdempotencyKeys, JobDrafts, OrphanStore, StoreError};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Api, IDEMPOTENCY_LEASE, accepted, json_response};
use crate::{ApiError, validate};

impl<J: JobDrafts + IdempotencyKeys + OrphanStore, Q: Queue> Api<J, Q> {
    /// `POST /jobs`; `job`: the job the request names once it is known (also on some errors).
    pub(crate) async fn create(
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
}
