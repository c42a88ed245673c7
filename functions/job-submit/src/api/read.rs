//! The reads: `GET /jobs`, `GET /jobs/{id}`, `GET /jobs/{id}/results`, `GET /orphans`.

use lambda_http::{Body, Request, RequestExt, Response};
use relay_shared::is_valid_job_id;
use relay_shared::jobs::{ContactResult, JobMeta};
use relay_shared::queue::Queue;
use relay_shared::store::{IdempotencyKeys, JobDrafts, JobsCursor, OrphanStore, OrphansCursor};

use serde_json::{Value, json};

use super::{Api, json_response};
use crate::ApiError;

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

impl<J: JobDrafts + IdempotencyKeys + OrphanStore, Q: Queue> Api<J, Q> {
    pub(crate) async fn job(&self, id: &str) -> Result<Response<Body>, ApiError> {
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
    pub(crate) async fn list(&self, req: &Request) -> Result<Response<Body>, ApiError> {
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
    pub(crate) async fn orphans(&self, req: &Request) -> Result<Response<Body>, ApiError> {
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

    pub(crate) async fn results(
        &self,
        id: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
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
