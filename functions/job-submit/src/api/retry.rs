//! `POST /jobs/{id}/retry`: a new job, linked to the first (`retry_of`), of the contacts that
//! ended `failed` for a reason a second try can change, with the same provider, operation,
//! options, `custom` and callback, and what the first job left of its budget (`max_credits`).
//! It never pays twice for a contact: a contact whose start may have been billed
//! (`start_unconfirmed`) goes only when asked (`include_unconfirmed`), and a job still running
//! cannot be retried (its failures may not be final).

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use relay_shared::jobs::{ContactResult, JobMeta, Outcome, reasons};
use relay_shared::queue::Queue;
use relay_shared::{ContactIndex, JobId};
use serde_json::{Map, Value, json};

use super::bodies::{Accepted, Retried};
use super::schema::RetryRequest;
use super::schema::errors::{
    BadRequest, Conflict, NotFound, Unauthorized, Unavailable, Unprocessable,
};
use super::{Api, ApiStore, JobPath, Shared, json_response, with_job};
use crate::ApiError;

/// The failures a retry takes: the provider timed out, lost the request, or refused it for a
/// reason that is not the contact's; the contact refused alone; the account or the job's budget
/// ran out (nothing was billed for them). Not `canceled` (a person's act), not
/// `provider_unauthorized` (every retry would fail the same way), not `start_unconfirmed` unless
/// asked (it may have been billed once already).
pub const RETRYABLE: &[&str] = &[
    reasons::TIMED_OUT,
    reasons::PROVIDER_REJECTED,
    reasons::REJECTED_BY_PROVIDER,
    reasons::PROVIDER_LOST,
    reasons::CREDITS_INSUFFICIENT,
    reasons::BUDGET_EXHAUSTED,
];

/// Results read per page while the retry looks for what failed.
const PAGE: usize = 1000;

/// Retried contacts this close together are read in one range (a chunk's worth).
const RUN_GAP: u64 = 100;

/// `indices` as ranges `(from, count)` to read: a gap wider than `gap` starts a new one.
fn runs(indices: &BTreeSet<ContactIndex>, gap: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for i in indices.iter().map(|i| i.get()) {
        match out.last_mut() {
            Some((from, count)) if i - (*from + *count - 1) <= gap => *count = i - *from + 1,
            _ => out.push((i, 1)),
        }
    }
    out
}

/// Retry a job's retryable failures as a new job.
///
/// A new job (retry_of names this one) of the contacts that ended failed for a reason a second
/// try can change (timed_out, provider_rejected, provider_lost, rejected_by_provider,
/// credits_insufficient, budget_exhausted), with this job's provider, operation, options, name,
/// custom and callback_url, and what it left of its max_credits. Never canceled or
/// provider_unauthorized contacts; start_unconfirmed ones only with include_unconfirmed (their
/// start may have been billed once already; the answer counts them either way). The job must
/// have ended. Under an Idempotency-Key, one new job.
#[utoipa::path(
    post,
    path = "/jobs/{id}/retry",
    tag = "jobs",
    operation_id = "retryJob",
    params(JobPath),
    request_body(content = RetryRequest, description = "May be empty."),
    responses(
        (status = 202, description = "The new job, accepted.", body = Retried),
        BadRequest, Unauthorized, NotFound, Conflict, Unprocessable, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(super) async fn retry<J: ApiStore, Q: Queue>(
    State(api): Shared<J, Q>,
    JobPath(id): JobPath,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    api.retry(&id, &headers, &body).await
}

/// Which of a job's contacts a retry takes.
#[derive(Debug, Default, PartialEq)]
pub struct Selection {
    /// The contacts the new job gets, in index order.
    pub retried: BTreeSet<ContactIndex>,
    /// Contacts that ended `start_unconfirmed`: taken only with `include_unconfirmed`.
    pub unconfirmed: u64,
}

impl Selection {
    /// Adds a page of results to the selection.
    pub fn add(&mut self, results: &[ContactResult], include_unconfirmed: bool) {
        for r in results.iter().filter(|r| r.outcome == Outcome::Failed) {
            let reason = r.reason.as_deref().unwrap_or("");
            if reason == reasons::START_UNCONFIRMED {
                self.unconfirmed += 1;
                if include_unconfirmed {
                    self.retried.insert(r.index);
                }
            } else if RETRYABLE.contains(&reason) {
                self.retried.insert(r.index);
            }
        }
    }
}

impl<J: ApiStore, Q: Queue> Api<J, Q> {
    async fn retry(
        &self,
        id: &JobId,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let include_unconfirmed = include_unconfirmed(body)?;
        let meta = self.live(id, false).await?;
        super::write::refuse_a_step(&meta)?;
        if !meta.status.is_terminal() {
            return Err(ApiError::new(
                409,
                "job_running",
                "the job has not ended: its failures may not be final; retry it once it has",
            )
            .job(id));
        }
        let selection = self.select(&meta, include_unconfirmed).await?;
        if selection.retried.is_empty() {
            return Err(ApiError::new(
                409,
                "nothing_to_retry",
                "no contact of the job ended failed for a reason a retry can change",
            )
            .job(id));
        }
        let create = self.retry_body(&meta, &selection.retried).await?;
        let new = self.create_job(headers, create, Some(id)).await?;
        let body = Retried {
            job: Accepted::from(&new),
            retried: selection.retried.len(),
            unconfirmed: selection.unconfirmed,
            unconfirmed_included: include_unconfirmed,
        };
        Ok(with_job(
            json_response(202, json!(body).to_string()),
            &new.job_id,
        ))
    }

    /// The job's failures a retry takes, read page by page.
    async fn select(
        &self,
        meta: &JobMeta,
        include_unconfirmed: bool,
    ) -> Result<Selection, ApiError> {
        let mut selection = Selection::default();
        let mut from = ContactIndex(0);
        loop {
            // A waterfall's rows are its steps' (each at the step that settled it).
            let page = relay_shared::waterfall::read::results(&self.jobs, meta, from, PAGE).await?;
            selection.add(&page, include_unconfirmed);
            match page.last() {
                Some(last) if page.len() == PAGE => from = last.index + 1,
                _ => return Ok(selection),
            }
        }
    }

    /// The `POST /jobs` body of the retry: the first job's provider, operation, name, options and
    /// callback, and the chosen contacts as they were submitted (their fields and `custom`).
    async fn retry_body(
        &self,
        meta: &JobMeta,
        retried: &BTreeSet<ContactIndex>,
    ) -> Result<Value, ApiError> {
        let mut contacts = Vec::with_capacity(retried.len());
        // A waterfall's contacts are its first step's, at the same indices.
        let held = match &meta.waterfall {
            Some(wf) => wf.steps[0].job_id.clone(),
            None => meta.job_id.clone(),
        };
        // Read in runs of nearby contacts, not the whole span from the first to the last.
        for (from, count) in runs(retried, RUN_GAP) {
            for c in self.jobs.contacts(&held, from, count).await? {
                if retried.contains(&c.index) {
                    let mut fields: Map<String, Value> = c.fields;
                    if let Some(custom) = c.custom {
                        fields.insert("custom".into(), custom);
                    }
                    contacts.push(Value::Object(fields));
                }
            }
        }
        let mut body = json!({
            "provider": meta.provider.as_str(),
            "operation": meta.operation.as_str(),
            "contacts": contacts,
        });
        if let Some(name) = &meta.name {
            body["name"] = json!(name);
        }
        if meta.options.is_object() {
            body["options"] = meta.options.clone();
        }
        if let Some(wf) = &meta.waterfall {
            // The same steps, verify and per-contact ceiling.
            let o = body.as_object_mut().expect("an object");
            for k in ["provider", "operation", "options"] {
                o.remove(k);
            }
            let step = |s: &relay_shared::waterfall::Step| json!({"provider": s.provider, "operation": s.operation, "options": s.options});
            o.insert("steps".into(), wf.steps.iter().map(step).collect());
            if let Some(v) = &wf.verify {
                let mut verify = step(&v.step);
                verify["when"] = json!(v.when);
                o.insert("verify".into(), verify);
            }
            if let Some(m) = wf.max_credits_per_contact {
                o.insert("max_credits_per_contact".into(), json!(m));
            }
        }
        if let Some(url) = &meta.callback_url {
            body["callback_url"] = json!(url);
        }
        // A budget goes on as what the first job left of it: the two never spend more together.
        if let Some(budget) = meta.budget {
            if budget.left <= 0.0 {
                return Err(ApiError::new(
                    409,
                    "budget_spent",
                    "the job's max_credits is spent: submit its contacts as a new job with a budget of its own",
                )
                .job(&meta.job_id));
            }
            body["max_credits"] = json!(budget.left);
        }
        Ok(body)
    }
}

/// `include_unconfirmed` from the body, which may be empty.
fn include_unconfirmed(body: &[u8]) -> Result<bool, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let body: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::new(400, "invalid_json", "the body is not valid JSON").field(""))?;
    match body.get("include_unconfirmed") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::invalid(
            "include_unconfirmed",
            "must be true or false",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retried_contacts_are_read_in_runs_of_nearby_ones() {
        let set = |v: &[u64]| v.iter().map(|&i| ContactIndex(i)).collect::<BTreeSet<_>>();
        assert_eq!(runs(&set(&[]), 100), []);
        assert_eq!(runs(&set(&[3]), 100), [(3, 1)]);
        assert_eq!(runs(&set(&[1, 4, 101]), 100), [(1, 101)]);
        assert_eq!(
            runs(&set(&[1, 4, 200, 49_999]), 100),
            [(1, 4), (200, 1), (49_999, 1)]
        );
    }
}
