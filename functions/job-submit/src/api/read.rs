//! The reads: `GET /jobs`, `GET /jobs/{id}`, `GET /jobs/{id}/results`, `GET /orphans`, and the
//! one parser of their query parameters ([`Params`]: serde, each parameter a type that holds
//! its rule, a value that breaks it a 400 naming the parameter and the rule).

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use relay_shared::JobId;
use relay_shared::jobs::{ContactResult, JobMeta};
use relay_shared::queue::Queue;
use relay_shared::store::{JobsCursor, OrphansCursor};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde_json::{Value, json};

use super::bodies::{ChunkRow, OrphanRow};
use super::schema::errors::{BadRequest, NotFound, Unauthorized, Unavailable};
use super::schema::{self, Include, JobDoc, JobsPage, OrphansPage, ResultsCsv, ResultsNdjson};
use super::{ApiStore, JobPath, Shared, json_response};
use crate::ApiError;
use relay_shared::ContactIndex;

/// A request's query parameters as `T`: unknown parameters are ignored; a value a parameter's
/// type refuses is a 400 `invalid_request` naming the parameter, with its rule as the message.
pub(crate) struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let fields = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(fields)
            .map(Params)
            .map_err(|e| ApiError::invalid(&e.path().to_string(), e.inner().to_string()))
    }
}

/// A parameter's value read as text, then parsed by `parse`; `rule` is the message when it fails.
fn parsed<'de, D: Deserializer<'de>, T>(
    d: D,
    rule: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).ok_or_else(|| D::Error::custom(rule))
}

/// The bounds of a page's `limit`.
pub(crate) trait Bounds {
    const MAX: usize;
    const DEFAULT: usize;
}

/// A list's page: 20 unless asked, 1 to 100.
pub(crate) struct ListPage;
impl Bounds for ListPage {
    const MAX: usize = 100;
    const DEFAULT: usize = 20;
}

/// A results page: 100 unless asked, 1 to 1,000.
pub(crate) struct ResultsPage;
impl Bounds for ResultsPage {
    const MAX: usize = 1000;
    const DEFAULT: usize = 100;
}

/// `limit`: a whole number from 1 to `B::MAX`, `B::DEFAULT` when not given.
pub(crate) struct Limit<B>(pub usize, PhantomData<B>);

impl<B: Bounds> Default for Limit<B> {
    fn default() -> Self {
        Limit(B::DEFAULT, PhantomData)
    }
}

impl<'de, B: Bounds> Deserialize<'de> for Limit<B> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let rule = format!("must be a whole number from 1 to {}", B::MAX);
        parsed(d, &rule, |t| {
            t.parse().ok().filter(|l| (1..=B::MAX).contains(l))
        })
        .map(|l| Limit(l, PhantomData))
    }
}

const NOT_A_CURSOR: &str = "is not a cursor this API returned";

/// `GET /jobs`' parameters: `limit`, and `cursor` (`{created_at_ms}.{job_id}`).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct JobsQuery {
    #[serde(default)]
    #[param(value_type = u32, minimum = 1, maximum = 100, default = 20)]
    limit: Limit<ListPage>,
    /// next_cursor of the previous page.
    #[serde(default, deserialize_with = "jobs_cursor")]
    #[param(value_type = String)]
    cursor: Option<JobsCursor>,
}

fn jobs_cursor<'de, D: Deserializer<'de>>(d: D) -> Result<Option<JobsCursor>, D::Error> {
    parsed(d, NOT_A_CURSOR, |c| {
        let (t, id) = c.split_once('.')?;
        Some(JobsCursor {
            created_at_ms: t.parse().ok()?,
            job_id: JobId::parse(id)?,
        })
    })
    .map(Some)
}

/// `GET /orphans`' parameters: `limit`, and `cursor` (`{13-digit ms}#{id}`).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OrphansQuery {
    #[serde(default)]
    #[param(value_type = u32, minimum = 1, maximum = 100, default = 20)]
    limit: Limit<ListPage>,
    /// next_cursor of the previous page.
    #[serde(default, deserialize_with = "orphans_cursor")]
    #[param(value_type = String)]
    cursor: Option<OrphansCursor>,
}

fn orphans_cursor<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OrphansCursor>, D::Error> {
    parsed(d, NOT_A_CURSOR, |c| {
        let (t, id) = c.split_once('#')?;
        let valid = t.len() == 13 && t.bytes().all(|b| b.is_ascii_digit()) && JobId::is_valid(id);
        valid.then(|| OrphansCursor(c.to_string()))
    })
    .map(Some)
}

/// A results page's format.
#[derive(Clone, Copy, Default, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase", default = "json")]
pub(crate) enum Format {
    #[default]
    Json,
    Ndjson,
    Csv,
}

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(d, "must be json, ndjson or csv", |f| match f {
            "json" => Some(Format::Json),
            "ndjson" => Some(Format::Ndjson),
            "csv" => Some(Format::Csv),
            _ => None,
        })
    }
}

/// `GET /jobs/{id}/results`' parameters: `limit`, `cursor` (the index of the page's first
/// result), `include=raw`, `format`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ResultsQuery {
    #[serde(default)]
    #[param(value_type = u32, minimum = 1, maximum = 1000, default = 100)]
    limit: Limit<ResultsPage>,
    /// next_cursor (or X-Next-Cursor) of the previous page.
    #[serde(default, deserialize_with = "results_cursor")]
    #[param(value_type = String)]
    cursor: ContactIndex,
    /// Add the provider's record to each result.
    #[serde(default, deserialize_with = "include_raw")]
    #[param(inline, value_type = Include)]
    include: bool,
    #[serde(default)]
    #[param(inline)]
    format: Format,
}

fn results_cursor<'de, D: Deserializer<'de>>(d: D) -> Result<ContactIndex, D::Error> {
    parsed(d, NOT_A_CURSOR, |c| c.parse().ok())
}

fn include_raw<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let rule = "the only value is \"raw\" (the provider's record with each result)";
    parsed(d, rule, |i| match i {
        "" => Some(false),
        "raw" => Some(true),
        _ => None,
    })
}

/// A job: status, counts, credits, chunks.
///
/// Its figures are summed over its chunks while it runs.
#[utoipa::path(
    get,
    path = "/jobs/{id}",
    tag = "jobs",
    operation_id = "getJob",
    params(JobPath),
    responses(
        (status = 200, description = "The job.", body = JobDoc),
        Unauthorized, NotFound, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(super) async fn job<J: ApiStore, Q: Queue>(
    State(api): Shared<J, Q>,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    let id = &id;
    let api = &*api;
    // With its figures (summed over its chunks while it runs) and its chunks, in one read of
    // them.
    let (meta, chunks) = api
        .jobs
        .job_with_chunks(id)
        .await?
        .filter(|(m, _)| !m.deleted)
        .ok_or_else(|| ApiError::not_found("job"))?;
    if let Some(wf) = meta.waterfall.as_ref() {
        // A waterfall: its steps' jobs, each with its figures and chunks (one read each).
        let mut steps = Vec::new();
        for s in wf.chain() {
            if let Some(step) = api.jobs.job_with_chunks(&s.job_id).await? {
                steps.push(step);
            }
        }
        let mut body = relay_shared::waterfall::read::view(&meta, &steps);
        for (row, (_, chunks)) in body["steps"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .zip(&steps)
        {
            row["chunks"] = json!(chunks.iter().map(ChunkRow::from).collect::<Vec<_>>());
        }
        body["callback"] = relay_shared::callback::callback_json(&meta);
        return Ok(json_response(200, body.to_string()));
    }
    let credits: f64 = chunks.iter().filter_map(|c| c.credits).sum();
    let mut body = meta.summary_json();
    body["credits_used"] = json!(credits);
    body["credits"] = relay_shared::budget::credits_json(&meta, &chunks);
    body["callback"] = relay_shared::callback::callback_json(&meta);
    body["chunks"] = json!(chunks.iter().map(ChunkRow::from).collect::<Vec<_>>());
    Ok(json_response(200, body.to_string()))
}

/// Jobs, newest first.
///
/// `GET /jobs?limit=&cursor=`: job heads from the `recent` index (no scan).
#[utoipa::path(
    get,
    path = "/jobs",
    tag = "jobs",
    operation_id = "listJobs",
    params(JobsQuery),
    responses(
        (status = 200, description = "A page of jobs.", body = inline(JobsPage)),
        BadRequest, Unauthorized, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(super) async fn list<J: ApiStore, Q: Queue>(
    State(api): Shared<J, Q>,
    Params(q): Params<JobsQuery>,
) -> Result<Response, ApiError> {
    let (jobs, next) = api.jobs.list_jobs(q.limit.0, q.cursor.as_ref()).await?;
    let body = json!({
        "jobs": jobs.iter().map(JobMeta::summary_json).collect::<Vec<_>>(),
        "next_cursor": next.map(|c| format!("{}.{}", c.created_at_ms, c.job_id)),
    });
    Ok(json_response(200, body.to_string()))
}

/// Events of Enrow's dashboard (global) webhook for searches the relay did not start, newest first.
///
/// An event that arrives on the global webhook (/webhooks/enrow/global/{token}) whose search id
/// no chunk of any job knows is answered 200 and kept 30 days as an orphan: never parked in the
/// DLQ, never fetched. An orphan keeps the search's id, the event, its cost and when it came,
/// not the event's body (no contact data); the result stays at Enrow, by its id. One query of
/// their partition.
#[utoipa::path(
    get,
    path = "/orphans",
    tag = "orphans",
    operation_id = "listOrphans",
    params(OrphansQuery),
    responses(
        (status = 200, description = "A page of orphans.", body = inline(OrphansPage)),
        BadRequest, Unauthorized, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(super) async fn orphans<J: ApiStore, Q: Queue>(
    State(api): Shared<J, Q>,
    Params(q): Params<OrphansQuery>,
) -> Result<Response, ApiError> {
    let (orphans, next) = api.jobs.list_orphans(q.limit.0, q.cursor.as_ref()).await?;
    let body = json!({
        "orphans": orphans.iter().map(OrphanRow::from).collect::<Vec<_>>(),
        "next_cursor": next.map(|c| c.0),
    });
    Ok(json_response(200, body.to_string()))
}

/// Results in contact order, a page at a time (at most limit and 2.5 MB).
///
/// `GET /jobs/{id}/results?limit=&cursor=&include=raw&format=`: a page of results, as JSON,
/// NDJSON or CSV (the last two: where the next page starts in `X-Next-Cursor`).
#[utoipa::path(
    get,
    path = "/jobs/{id}/results",
    tag = "jobs",
    operation_id = "getResults",
    params(JobPath, ResultsQuery),
    responses(
        (status = 200,
            description = "A page. For ndjson and csv the next page's cursor is in X-Next-Cursor.",
            headers(("X-Next-Cursor" = String, description = "ndjson and csv only, when more results follow.")),
            content(
                (inline(schema::ResultsPageDoc) = "application/json"),
                (inline(ResultsNdjson) = "application/x-ndjson"),
                (inline(ResultsCsv) = "text/csv"),
            ),
        ),
        BadRequest, Unauthorized, NotFound, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(super) async fn results<J: ApiStore, Q: Queue>(
    State(api): Shared<J, Q>,
    JobPath(id): JobPath,
    Params(q): Params<ResultsQuery>,
) -> Result<Response, ApiError> {
    let meta = api.live(&id, false).await?;
    let limit = q.limit.0;
    let results =
        relay_shared::waterfall::read::results(&api.jobs, &meta, q.cursor, limit + 1).await?;
    // CSV reads the provider's records for its `relay_emails` / `relay_phones` lists.
    let with_raw = q.include || q.format == Format::Csv;
    let (page, next) = results_page(results, limit, with_raw, MAX_RESULTS_PAGE_BYTES);
    let (content_type, body) = match q.format {
        Format::Json => {
            return Ok(json_response(
                200,
                format!(
                    r#"{{"results":[{}],"next_cursor":{}}}"#,
                    page.join(","),
                    serde_json::to_string(&next).expect("serializable")
                ),
            ));
        }
        Format::Ndjson => {
            let mut body = page.join("\n");
            if !body.is_empty() {
                body.push('\n');
            }
            ("application/x-ndjson", body)
        }
        Format::Csv => ("text/csv; charset=utf-8", csv(&page, &meta)?),
    };
    let mut resp = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(n) = next.as_deref().and_then(|n| n.parse().ok()) {
        resp.headers_mut().insert("x-next-cursor", n);
    }
    Ok(resp)
}

/// A page of results as CSV rows. No byte-order mark: pages are concatenated by their readers
/// (the CLI's files have one).
fn csv(page: &[String], meta: &JobMeta) -> Result<String, ApiError> {
    let rows: Vec<Value> = page
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect();
    let mut out = Vec::new();
    relay_shared::results_csv::write_results(&mut out, &rows, meta.provider.as_str(), false)
        .map_err(|e| ApiError {
            source: Some(e.into()),
            ..ApiError::new(500, "internal", "the results could not be written as CSV")
        })?;
    Ok(String::from_utf8_lossy(&out).into_owned())
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
            waterfall: None,
            index: ContactIndex(index),
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
