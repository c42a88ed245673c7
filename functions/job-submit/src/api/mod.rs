//! The jobs API ([`Api`]): an axum [`Router`] over [`ROUTES`], served by `lambda_http` (as the
//! runtime's `http-axum` example). `create.rs` takes new jobs, `read.rs` answers reads (a job,
//! lists, results; its one query-parameter parser), `write.rs` the writes to a job that exists.
//! `openapi.rs` generates the API's OpenAPI document from the handlers and their types
//! (`bodies.rs`, `schema.rs`).
//!
//! In front of the router, one layer: the path without what comes before its route (a stage
//! name, a local router's prefix), the bearer token (every route but `GET /openapi.json`), and
//! one log line per request (route, status, job id, latency).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{
    DefaultBodyLimit, FromRequestParts, MatchedPath, Path, RawPathParams, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use relay_shared::JobId;
use relay_shared::auth::BearerToken;
use relay_shared::jobs::{ChunkStatus, JobMeta};
use relay_shared::metrics::{self, Metrics};
use relay_shared::queue::Queue;
use relay_shared::store::{
    BalanceCache, IdempotencyKeys, JobDrafts, OrphanStore, RateSchedule, Waterfalls,
};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{ApiError, SubmitChunk, validate};
use relay_shared::ChunkIndex;

mod bodies;
mod create;
mod credit;
mod openapi;
mod read;
mod retry;
mod schema;
mod write;

pub use openapi::{ApiDoc, generated as generated_openapi};

pub use credit::{
    Affordability, BALANCE_MAX_AGE, BALANCE_READ_TIMEOUT, BALANCE_WAIT, Balances, CreditCheck,
    Credits,
};
pub use read::{MAX_RESULTS_PAGE_BYTES, results_page};
pub use write::pages_cover;

/// How long a request holds an `Idempotency-Key` while it creates its job: longer than the API
/// function's own timeout (29 s), so a holder past its lease is certainly gone.
pub const IDEMPOTENCY_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// The API's OpenAPI 3.1 document, generated from the handlers and their types ([`ApiDoc`]) and
/// kept in `docs/openapi.json` (a test fails while the file is another document), served at
/// `GET /openapi.json` as it is: nothing is generated at run time, where it would cost the first
/// `/openapi.json` of each process about 0.5 ms (docs/benchmarks.md). A test checks it against
/// [`ROUTES`], the router and the bodies the API returns.
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
    ("POST", "/jobs/{id}/retry"),
    ("GET", "/openapi.json"),
    ("GET", "/orphans"),
];

/// The first segment of every route: what comes before it in a path is a prefix.
const ROUTE_ROOTS: &[&str] = &["jobs", "orphans", "openapi.json"];

#[derive(Clone)]
pub struct Api<J, Q> {
    pub jobs: J,
    pub submit_queue: Q,
    pub token: BearerToken,
    /// Which `callback_url`s this deployment takes.
    pub callback_policy: validate::CallbackPolicy,
    /// The credit check of `POST /jobs` (`None`: no balance is read, no job refused for it).
    pub credit_check: Option<CreditCheck>,
}

/// The stores the API reads and writes.
pub trait ApiStore:
    JobDrafts + IdempotencyKeys + OrphanStore + BalanceCache + RateSchedule + Waterfalls
{
}
impl<T: JobDrafts + IdempotencyKeys + OrphanStore + BalanceCache + RateSchedule + Waterfalls>
    ApiStore for T
{
}

/// The API as the handlers share it.
pub(crate) type Shared<J, Q> = State<Arc<Api<J, Q>>>;

/// The job id a route's path names (`{id}`); a path that does not decode, or is not a job id
/// ([`JobId::parse`]), names no job (404).
#[derive(utoipa::IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub(crate) struct JobPath(
    /// The job id POST /jobs answered.
    #[param(value_type = String, pattern = "^job_[0-9a-f]{32}$")]
    pub JobId,
);

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("job"))?;
        JobId::parse(&id)
            .map(JobPath)
            .ok_or_else(|| ApiError::not_found("job"))
    }
}

/// What a request's log line names, carried on its response: the route (one of [`ROUTES`], or
/// `unauthorized`, `method`, `unknown`) and the job, once known (also on some errors).
#[derive(Clone, Debug, Default)]
pub(crate) struct Named {
    pub route: Option<String>,
    pub job_id: Option<String>,
}

impl<J: ApiStore, Q: Queue> Api<J, Q> {
    /// The API as one [`Router`], for `lambda_http::run`.
    pub fn router(self) -> Router {
        let api = Arc::new(self);
        let routes = Router::new()
            .route("/jobs", post(create::create).get(read::list))
            .route("/jobs/{id}", get(read::job).delete(write::delete))
            .route("/jobs/{id}/cancel", post(write::cancel))
            .route("/jobs/{id}/contacts", post(write::add_page))
            .route("/jobs/{id}/start", post(write::start))
            .route("/jobs/{id}/results", get(read::results))
            .route("/jobs/{id}/retry", post(retry::retry))
            .route("/orphans", get(read::orphans))
            .route("/openapi.json", get(openapi_json))
            .route_layer(middleware::from_fn(name_route))
            .method_not_allowed_fallback(method_not_allowed)
            .fallback(not_found)
            // Bodies are as large as API Gateway and Lambda let them be (6 MB).
            .layer(DefaultBodyLimit::disable())
            .with_state(Arc::clone(&api));
        // The front layer runs before the routes are matched (a layer on the fallback).
        Router::new()
            .fallback_service(routes)
            .layer(middleware::from_fn_with_state(api, front))
    }

    /// Queues every chunk of the job that is still `pending`. A chunk queued twice is harmless:
    /// only one worker can take it from `pending`.
    pub(crate) async fn queue_pending(&self, job_id: &JobId) -> Result<(), ApiError> {
        // A waterfall's chunks are its first step's.
        let job_id = &match self.jobs.get_job(job_id).await?.and_then(|m| m.waterfall) {
            Some(wf) => wf.steps[0].job_id.clone(),
            None => job_id.clone(),
        };
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
        job_id: &JobId,
        chunks: impl Iterator<Item = ChunkIndex>,
    ) -> Result<(), ApiError> {
        let messages: Vec<String> = chunks.map(|c| SubmitChunk::start(job_id, c)).collect();
        let sends = futures::stream::iter(messages.into_iter().map(|m| self.submit_queue.send(m)))
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        let failed = sends.iter().filter(|r| r.is_err()).count();
        if let Some(e) = sends.into_iter().find_map(Result::err) {
            tracing::warn!(%job_id, failed, error = %e, "start messages not queued: the sweeper sends them when overdue");
        }
        Ok(())
    }

    /// The job `id` names, unless it is unknown or deleted (404) or the store fails (503);
    /// `with_figures`: with its figures summed (one read of the head either way).
    pub(crate) async fn live(&self, id: &JobId, with_figures: bool) -> Result<JobMeta, ApiError> {
        let read = if with_figures {
            self.jobs.job_view(id).await?
        } else {
            self.jobs.get_job(id).await?
        };
        read.filter(|m| !m.deleted)
            .ok_or_else(|| ApiError::not_found("job"))
    }
}

/// A request's route name, job id and response (see [`Api::route`]).
pub type Routed = (
    String,
    Option<String>,
    lambda_http::Response<lambda_http::Body>,
);

/// The router as the tests and tools call it: one `lambda_http` request in, its response out.
impl<J: ApiStore + Clone, Q: Queue + Clone> Api<J, Q> {
    /// Answers one API request and logs one line (route, status, job id, latency): the
    /// router's answer as `lambda_http` hands it back.
    pub async fn handle(
        &self,
        req: lambda_http::Request,
    ) -> lambda_http::Response<lambda_http::Body> {
        self.serve(req).await.2
    }

    /// Routes one request; returns the route's name (one of [`ROUTES`], or `unauthorized`,
    /// `method`, `unknown`), the job id when the route names one, and the response.
    pub async fn route(&self, req: &lambda_http::Request) -> Routed {
        let body = match req.body() {
            lambda_http::Body::Text(t) => lambda_http::Body::Text(t.clone()),
            lambda_http::Body::Binary(b) => lambda_http::Body::Binary(b.clone()),
            _ => lambda_http::Body::Empty,
        };
        let mut copy = lambda_http::Request::new(body);
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        self.serve(copy).await
    }

    async fn serve(&self, req: lambda_http::Request) -> Routed {
        let Ok(resp) = self.clone().router().oneshot(req).await;
        let named = resp
            .extensions()
            .get::<Named>()
            .cloned()
            .unwrap_or_default();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let body = match String::from_utf8(bytes.to_vec()) {
            Ok(text) => lambda_http::Body::Text(text),
            Err(e) => lambda_http::Body::Binary(e.into_bytes()),
        };
        let route = named.route.unwrap_or_else(|| "unknown".into());
        (
            route,
            named.job_id,
            lambda_http::Response::from_parts(parts, body),
        )
    }
}

/// Before the routes: the path without its prefix, the token, then the request's log line (and
/// the jobs-created metric).
async fn front<J: ApiStore, Q: Queue>(
    State(api): Shared<J, Q>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    *req.uri_mut() = without_prefix(req.uri());
    // The API's description is public: no token needed to read it.
    let public = req.method() == Method::GET && req.uri().path() == "/openapi.json";
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let resp = if public || api.token.verify_header(auth) {
        next.run(req).await
    } else {
        let e = ApiError::new(401, "unauthorized", "missing or wrong bearer token");
        named(e.into_response(), "unauthorized")
    };
    let named = resp
        .extensions()
        .get::<Named>()
        .cloned()
        .unwrap_or_default();
    let route = named.route.as_deref().unwrap_or("unknown");
    tracing::info!(
        method,
        route,
        job_id = named.job_id,
        status = resp.status().as_u16(),
        latency_ms = started.elapsed().as_millis() as u64,
        "api request"
    );
    if route == "POST /jobs" && resp.status() == StatusCode::ACCEPTED {
        let mut m = Metrics::new("job-submit");
        m.add(metrics::JOBS_CREATED, 1);
        m.emit();
    }
    resp
}

/// The path from its route's first segment on (`/prod/jobs/x` → `/jobs/x`), with its query.
fn without_prefix(uri: &Uri) -> Uri {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let Some(root) = segments.iter().position(|s| ROUTE_ROOTS.contains(s)) else {
        return uri.clone();
    };
    let mut path = format!("/{}", segments[root..].join("/"));
    if let Some(q) = uri.query() {
        path = format!("{path}?{q}");
    }
    path.parse().unwrap_or_else(|_| uri.clone())
}

/// Names a matched request by its route, and by the job its path names.
async fn name_route(
    matched: MatchedPath,
    params: RawPathParams,
    req: Request,
    next: Next,
) -> Response {
    let route = format!("{} {}", req.method(), matched.as_str());
    let id = params
        .iter()
        .find(|(k, _)| *k == "id")
        .map(|(_, v)| v.to_string());
    let mut resp = next.run(req).await;
    let named = resp.extensions_mut().get_or_insert_default::<Named>();
    named.route.get_or_insert(route);
    if named.job_id.is_none() {
        named.job_id = id;
    }
    resp
}

/// A response named by `route` in its log line.
pub(crate) fn named(mut resp: Response, route: &str) -> Response {
    resp.extensions_mut()
        .get_or_insert_default::<Named>()
        .route
        .get_or_insert_with(|| route.to_string());
    resp
}

/// A response whose log line names the job `job_id`.
pub(crate) fn with_job(mut resp: Response, job_id: &JobId) -> Response {
    resp.extensions_mut()
        .get_or_insert_default::<Named>()
        .job_id = Some(job_id.to_string());
    resp
}

async fn method_not_allowed() -> Response {
    let e = ApiError::new(
        405,
        "method_not_allowed",
        "method not allowed on this route",
    );
    named(e.into_response(), "method")
}

async fn not_found() -> Response {
    named(
        ApiError::new(404, "not_found", "no such route").into_response(),
        "unknown",
    )
}

/// This document.
///
/// The API's OpenAPI 3.1 description (public: no token), generated from the code.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "openapi",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document.", body = Object)),
)]
async fn openapi_json() -> Response {
    json_response(200, OPENAPI.to_string())
}

pub(crate) fn json_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).expect("a valid status");
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub(crate) fn accepted(meta: &JobMeta) -> Value {
    json!(bodies::Accepted::from(meta))
}

#[cfg(test)]
mod tests {
    use relay_shared::validate::CallbackPolicy;
    use serde_json::{Value, json};

    use crate::api_tests::{api, call};

    #[tokio::test]
    async fn each_query_rule_is_a_400_naming_its_parameter_and_rule() {
        let a = api(CallbackPolicy::default());
        let (_, created) = call(&a, "POST", "/jobs", &[], &json!({"provider": "enrow", "operation": "email_verify", "contacts": [{"email": "a@example.com"}]})).await;
        let id = created["job_id"].as_str().unwrap();
        for (path, field, rule) in [
            (
                "/jobs?limit=0".to_string(),
                "limit",
                "must be a whole number from 1 to 100",
            ),
            (
                "/jobs?limit=x".into(),
                "limit",
                "must be a whole number from 1 to 100",
            ),
            (
                "/jobs?cursor=nope".into(),
                "cursor",
                "is not a cursor this API returned",
            ),
            (
                format!("/jobs/{id}/results?limit=1001"),
                "limit",
                "must be a whole number from 1 to 1000",
            ),
            (
                format!("/jobs/{id}/results?cursor=-1"),
                "cursor",
                "is not a cursor this API returned",
            ),
            (
                format!("/jobs/{id}/results?format=xml"),
                "format",
                "must be json, ndjson or csv",
            ),
            (
                format!("/jobs/{id}/results?include=all"),
                "include",
                "the only value is \"raw\" (the provider's record with each result)",
            ),
        ] {
            let (status, e) = call(&a, "GET", &path, &[], &Value::Null).await;
            assert_eq!(status, 400, "{path}: {e}");
            assert_eq!(
                e["error"],
                json!({"code": "invalid_request", "field": field, "message": rule}),
                "{path}"
            );
        }
        // Unknown parameters are ignored; the defaults hold.
        let (status, page) = call(
            &a,
            "GET",
            &format!("/jobs/{id}/results?x=1&include="),
            &[],
            &Value::Null,
        )
        .await;
        assert_eq!(
            (status, page["results"].as_array().map(Vec::len)),
            (200, Some(0)),
            "{page}"
        );
    }

    #[tokio::test]
    async fn routes_are_named_behind_any_prefix_and_every_refusal_is_json() {
        let a = api(CallbackPolicy::default());
        let (status, list) = call(&a, "GET", "/prod/jobs", &[], &Value::Null).await;
        assert_eq!((status, &list["jobs"]), (200, &json!([])));
        for (method, path, status, code) in [
            ("GET", "/lambda-url/job-submit/jobs/job_1", 404, "not_found"),
            ("GET", "/jobs/job_1/nothing", 404, "not_found"),
            ("GET", "/elsewhere", 404, "not_found"),
            ("PUT", "/jobs", 405, "method_not_allowed"),
            ("GET", "/jobs/job_1/start", 405, "method_not_allowed"),
            ("POST", "/jobs/job%ZZ/cancel", 404, "not_found"),
        ] {
            let (got, e) = call(&a, method, path, &[], &Value::Null).await;
            assert_eq!(
                (got, e["error"]["code"].as_str()),
                (status, Some(code)),
                "{method} {path}: {e}"
            );
        }
        let req = |path: &str| {
            let event = relay_shared::testing::apigw_v2_event("GET", path, &[], b"");
            lambda_http::request::from_str(&event.to_string()).unwrap()
        };
        let (route, job, resp) = a.route(&req("/jobs/job_7/results")).await;
        assert_eq!(
            (route.as_str(), job, resp.status().as_u16()),
            ("unauthorized", None, 401)
        );
        let (route, _, resp) = a.route(&req("/prod/openapi.json")).await;
        assert_eq!(
            (route.as_str(), resp.status().as_u16()),
            ("GET /openapi.json", 200)
        );
    }

    #[tokio::test]
    async fn a_body_over_axums_default_limit_still_reaches_the_validation() {
        let a = api(CallbackPolicy::default());
        // 3 MB: over axum's 2 MB default, under Lambda's 6 MB.
        let contacts: Vec<Value> = (0..30_000)
            .map(|i| json!({"email": format!("p{i}@example.com"), "custom": {"note": "x".repeat(60)}}))
            .collect();
        let body = json!({"provider": "enrow", "operation": "email_verify", "contacts": contacts});
        assert!(body.to_string().len() > 3_000_000);
        let (status, answer) = call(&a, "POST", "/jobs", &[], &body).await;
        assert_ne!(status, 413, "{answer}");
        assert!(
            status == 202 || answer["error"]["field"].is_string(),
            "{status} {answer}"
        );
    }
}
