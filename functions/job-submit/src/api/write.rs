//! The writes to a job that exists: a staged job's pages and start, cancel, delete.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use relay_shared::jobs::{Chunk, JobError, JobMeta, JobStatus, reasons};
use relay_shared::queue::Queue;
use relay_shared::store::{DRAFT_TTL, Page, PageWrite};
use relay_shared::{JobId, now_ms};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::bodies::{Accepted, Deleting, PageAccepted};
use super::schema::errors::{BadRequest, Conflict, NotFound, Unauthorized, Unavailable};
use super::schema::{ContactsPage, JobSummary};
use super::{Api, ApiStore, IDEMPOTENCY_LEASE, JobPath, Shared, accepted, json_response};
use crate::{ApiError, SubmitChunk, validate};

/// Add a page of a staged job's contacts.
///
/// Validated as on POST /jobs (errors name contacts[i] by the contact's index in the whole job).
/// The same page again is a no-op; another body at the same offset is a 409; a job not taking
/// pages (not staged, started, being started) 409.
#[utoipa::path(
    post,
    path = "/jobs/{id}/contacts",
    tag = "jobs",
    operation_id = "addContacts",
    params(JobPath),
    request_body = ContactsPage,
    responses(
        (status = 200, description = "The page is in (written now, or already).", body = PageAccepted),
        BadRequest, Unauthorized, NotFound, Conflict, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(super) async fn add_page<J: ApiStore, Q: Queue>(
    State(api): Shared<J, Q>,
    JobPath(id): JobPath,
    body: Bytes,
) -> Result<Response, ApiError> {
    api.add_page(&id, &body).await
}

/// Start a staged job once its pages hold every contact it announced, each once.
///
/// 409 pages_missing otherwise, naming the contacts that have not arrived; the draft keeps taking
/// pages. Its chunks are recorded and queued as a POST /jobs job's; a job started already
/// answers the same.
#[utoipa::path(
    post,
    path = "/jobs/{id}/start",
    tag = "jobs",
    operation_id = "startJob",
    params(JobPath),
    responses(
        (status = 202, description = "Started.", body = Accepted),
        Unauthorized, NotFound, Conflict, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(super) async fn start<J: ApiStore, Q: Queue>(
    State(api): Shared<J, Q>,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    api.start(&id).await
}

/// Cancel: chunks not started are not started (their contacts end failed, reason canceled); started chunks finish.
///
/// Their results are kept. 409 once the job has ended.
#[utoipa::path(
    post,
    path = "/jobs/{id}/cancel",
    tag = "jobs",
    operation_id = "cancelJob",
    params(JobPath),
    responses(
        (status = 202, description = "Canceled.", body = JobSummary),
        Unauthorized, NotFound, Conflict, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(super) async fn cancel<J: ApiStore, Q: Queue>(
    State(api): Shared<J, Q>,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    api.cancel(&id).await
}

/// Erase a job's contacts and results (at once for readers, in the background in the table).
///
/// The job reads as gone at once (404, not listed, nothing more started, its deliveries
/// dropped); its contacts and results are deleted in the background. A DELETE sent again before
/// the erasure is done is a 202 again; once erased, 404.
#[utoipa::path(
    delete,
    path = "/jobs/{id}",
    tag = "jobs",
    operation_id = "deleteJob",
    params(JobPath),
    responses(
        (status = 202, description = "Being erased.", body = inline(Deleting)),
        Unauthorized, NotFound, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(super) async fn delete<J: ApiStore, Q: Queue>(
    State(api): Shared<J, Q>,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    api.delete(&id).await
}

impl<J: ApiStore, Q: Queue> Api<J, Q> {
    /// `POST /jobs/{id}/contacts` `{"offset": o, "contacts": [...]}`: a page of a staged job's
    /// contacts, the first being the job's contact `o`. Each contact is validated as on
    /// `POST /jobs`, named by its index in the whole job. The same page again is a no-op; another
    /// page at the same offset is a 409; a job not taking pages (started, or not staged) 409.
    async fn add_page(&self, id: &JobId, body: &[u8]) -> Result<Response, ApiError> {
        let meta = self.live(id, false).await?;
        let body: Value = serde_json::from_slice(body).map_err(|_| {
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
        let answer = PageAccepted {
            job_id: id,
            offset,
            contacts: page.count,
            written,
        };
        Ok(json_response(200, json!(answer).to_string()))
    }

    /// A start that lost to another request for the same draft: the job as that one left it
    /// (202 once it started), or 409 while it is still starting.
    async fn started_or_busy(&self, id: &JobId) -> Result<Response, ApiError> {
        let m = self.live(id, false).await?;
        if m.status != JobStatus::Draft {
            return Ok(json_response(202, accepted(&m).to_string()));
        }
        Err(ApiError::new(
            409,
            "start_in_progress",
            "another request is starting this job; retry after the time in Retry-After",
        )
        .retry_after(2))
    }

    /// `POST /jobs/{id}/start`: a staged job whose pages hold every contact it announced starts
    /// as a `POST /jobs` job does (its chunks recorded and queued, 202). A job started already
    /// answers the same (its chunks still pending queued again); pages missing, overlapping or
    /// still being written: 409, and the draft keeps taking pages.
    async fn start(&self, id: &JobId) -> Result<Response, ApiError> {
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
        let Some(seal) = self
            .jobs
            .seal_draft(id, IDEMPOTENCY_LEASE.as_millis() as u64)
            .await?
        else {
            return self.started_or_busy(id).await;
        };
        let pages = self.jobs.pages(id).await?;
        if let Err(rule) = pages_cover(&pages, meta.contacts) {
            self.jobs.unseal_draft(id, seal).await?;
            return Err(ApiError::new(409, "pages_missing", rule).field("contacts"));
        }
        let chunks = Chunk::plan(meta.contacts, meta.chunk_size);
        if !self.jobs.start_draft(id, &chunks, seal).await? {
            return self.started_or_busy(id).await;
        }
        self.queue(id, chunks.iter().map(|c| c.index)).await?;
        let started = JobMeta {
            status: JobStatus::Accepted,
            ..meta
        };
        Ok(json_response(202, accepted(&started).to_string()))
    }

    /// `POST /jobs/{id}/cancel`: chunks not started yet are never started (their contacts end
    /// `failed` with reason `canceled`); started chunks finish and their results are kept. 409
    /// once the job has ended.
    async fn cancel(&self, id: &JobId) -> Result<Response, ApiError> {
        let meta = self.live(id, true).await?;
        refuse_a_step(&meta)?;
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
        // A waterfall's steps are canceled with it.
        for s in meta.waterfall.iter().flat_map(|wf| wf.chain()) {
            self.jobs.set_job_error(&s.job_id, &canceled).await?;
        }
        let mut body = meta.summary_json();
        body["error"] = json!(canceled);
        Ok(json_response(202, body.to_string()))
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
    async fn delete(&self, id: &JobId) -> Result<Response, ApiError> {
        // Not erased: live, or deleted with its erasure still to finish.
        let head = self.jobs.get_job(id).await?.filter(|m| !m.erased);
        if let Some(m) = head.as_ref().filter(|m| !m.deleted) {
            refuse_a_step(m)?;
        }
        if head.is_none() || !self.jobs.mark_deleted(id).await? {
            return Err(ApiError::not_found("job"));
        }
        // A waterfall's steps are erased with it: each is a job of its own.
        let steps = head
            .and_then(|m| m.waterfall)
            .map(|wf| {
                wf.chain()
                    .into_iter()
                    .map(|s| s.job_id.clone())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for step in &steps {
            self.jobs.mark_deleted(step).await?;
        }
        for job in std::iter::once(id).chain(steps.iter()) {
            if let Err(e) = self.submit_queue.send(SubmitChunk::delete(job)).await {
                tracing::warn!(job_id = %job, error = %e, "erasure not queued: the sweeper will ask for it");
            }
        }
        Ok(json_response(202, json!(Deleting::new(id)).to_string()))
    }
}

/// A waterfall's step is canceled, deleted or retried with its waterfall, never alone (the
/// waterfall would wait for it): 409 naming the waterfall.
pub(crate) fn refuse_a_step(meta: &JobMeta) -> Result<(), ApiError> {
    match &meta.step_of {
        Some(of) => Err(ApiError::new(
            409,
            "waterfall_step",
            format!(
                "this job is step {} of waterfall {}: cancel, delete or retry the waterfall",
                of.position + 1,
                of.job
            ),
        )),
        None => Ok(()),
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
