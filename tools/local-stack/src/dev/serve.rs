//! API Gateway's, SQS's and EventBridge's part: the router, the queue pollers, the schedule,
//! and invocations through watch (warmed up, counted while they run).

use crate::Resources;
use crate::poller::Poller;
use crate::watch::Invoker;
use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::DevOptions;

/// Every function's template name, its binary, and the event that wakes it up once at start
/// (so the first real request does not wait for `cargo run`).
pub(crate) const WARM_UP: [(&str, Probe); 5] = [
    ("webhook-ingest", Probe::Url("/webhooks/warm-up")),
    ("bulk-fetch", Probe::EmptySqs),
    ("job-submit", Probe::Url("/openapi.json")),
    ("job-submit-worker", Probe::EmptySqs),
    ("sweeper", Probe::Schedule),
];

#[derive(Clone, Copy)]
pub(crate) enum Probe {
    /// A GET through the function URL (any HTTP answer will do).
    Url(&'static str),
    /// An SQS event with no records.
    EmptySqs,
    /// The sweeper's EventBridge schedule event.
    Schedule,
}

/// EventBridge's scheduled event, as the sweeper's rule sends it.
pub fn schedule_event() -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-01T12:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/enrich-relay-sweep"],
        "detail": {}
    })
}

/// Invocations through watch, counted per function while they run; a [`DevStack::restart`]
/// fails the ones the killed process held at once, as Lambda reports a crashed runtime.
#[derive(Clone)]
pub(crate) struct Calls {
    pub(crate) invoker: Invoker,
    pub(crate) in_flight: Arc<BTreeMap<&'static str, AtomicUsize>>,
    pub(crate) restarts: Arc<BTreeMap<&'static str, tokio::sync::watch::Sender<u64>>>,
}

impl Calls {
    pub(crate) fn new(invoker: Invoker) -> Calls {
        Calls {
            invoker,
            in_flight: Arc::new(
                WARM_UP
                    .iter()
                    .map(|(f, _)| (*f, AtomicUsize::new(0)))
                    .collect(),
            ),
            restarts: Arc::new(
                WARM_UP
                    .iter()
                    .map(|(f, _)| (*f, tokio::sync::watch::channel(0).0))
                    .collect(),
            ),
        }
    }

    pub(crate) async fn invoke(
        &self,
        function: &'static str,
        event: &Value,
    ) -> Result<Value, String> {
        let mut restarted = self.restarts[function].subscribe();
        restarted.mark_unchanged();
        let n = &self.in_flight[function];
        n.fetch_add(1, Ordering::SeqCst);
        let out = tokio::select! {
            r = self.invoker.invoke(function, event) => r,
            _ = restarted.changed() => Err(format!("{function} went away")),
        };
        n.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

/// The router's listener on `opts.port` (a free port if that one is taken); none under
/// `make watch`.
pub(crate) async fn bind_router(
    opts: &DevOptions,
) -> Result<Option<tokio::net::TcpListener>, String> {
    if opts.watch_only {
        return Ok(None);
    }
    match tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await {
        Ok(l) => Ok(Some(l)),
        Err(e) => {
            eprintln!("port {} is taken ({e}); using a free port", opts.port);
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map(Some)
                .map_err(|e| e.to_string())
        }
    }
}

/// API Gateway's, SQS's and EventBridge's part: the router on `listener` (forwarding to watch's
/// function URLs), a poller per queue invoking its function, and the sweeper's schedule.
pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    invoker: &Invoker,
    res: &Resources,
    sdk: &SdkConfig,
    opts: &DevOptions,
    calls: &Calls,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let router = invoker.clone();
    let app = axum::Router::new()
        .fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let router = router.clone();
                async move { route(&router, method, uri, headers, body).await }
            },
        )
        // A request body over Lambda's cap is refused (413) as it is deployed.
        .layer(axum::extract::DefaultBodyLimit::max(LAMBDA_REQUEST_BYTES));
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }));
    for (queue, binary) in [
        ("WebhookQueue", "bulk-fetch"),
        ("SubmitQueue", "job-submit-worker"),
    ] {
        let (url, arn) = res.queues[queue].clone();
        let mut poller = Poller::new(relay_shared::aws::sqs(sdk), &url, &arn);
        poller.wait_seconds = 1;
        poller.visibility_timeout = Some(opts.retry_visibility_seconds);
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let round = poller
                    .round(|event| async {
                        let event = serde_json::to_value(event).map_err(|e| e.to_string())?;
                        let out = calls.invoke(binary, &event).await?;
                        serde_json::from_value::<SqsBatchResponse>(out).map_err(|e| e.to_string())
                    })
                    .await;
                if round.is_err() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }));
    }
    // EventBridge's job: the sweeper on its schedule.
    let every = opts.sweep_every;
    let calls = calls.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let _ = calls.invoke("sweeper", &schedule_event()).await;
        }
    }));
    tasks
}

/// One harmless invocation of every function, all at once: under watch that is its
/// `cargo run` (a relink, or a compile after an edit), so the stack is ready when `start`
/// returns. A function that cannot start shows here, with the log to read.
pub(crate) async fn warm_up(calls: &Calls, log: &std::path::Path) -> Result<(), String> {
    let probes = WARM_UP.iter().map(|(function, probe)| async move {
        let out = match probe {
            Probe::Url(path) => calls
                .invoker
                .http()
                .get(calls.invoker.function_url(function, path))
                .send()
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    if r.status().is_server_error() {
                        Err(format!("HTTP {}", r.status()))
                    } else {
                        Ok(())
                    }
                }),
            Probe::EmptySqs => calls
                .invoke(function, &json!({"Records": []}))
                .await
                .map(drop),
            Probe::Schedule => calls.invoke(function, &schedule_event()).await.map(drop),
        };
        out.map_err(|e| format!("{function} did not answer its first invocation: {e}"))
    });
    for r in futures::future::join_all(probes).await {
        r.map_err(|e| format!("{e}; see {}", log.display()))?;
    }
    Ok(())
}

/// The largest request body a Lambda function is invoked with (6 MB, its synchronous payload
/// cap): the local router refuses a larger one, as the deployed API does.
pub const LAMBDA_REQUEST_BYTES: usize = 6 * 1024 * 1024;

/// API Gateway's job: the request to the function URL of the function its path belongs to
/// (watch makes it the payload v2 event), the function's answer back as HTTP.
pub(crate) async fn route(
    invoker: &Invoker,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let function = if path == "/jobs"
        || path.starts_with("/jobs/")
        || path == "/openapi.json"
        || path == "/orphans"
    {
        "job-submit"
    } else if path.starts_with("/webhooks/") {
        "webhook-ingest"
    } else {
        return (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#).into_response();
    };
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or(path);
    let mut req = invoker
        .http()
        .request(method, invoker.function_url(function, target))
        .body(body);
    for (k, v) in &headers {
        if !matches!(
            k.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            req = req.header(k, v);
        }
    }
    let bad_gateway = || {
        (
            StatusCode::BAD_GATEWAY,
            r#"{"message":"Internal Server Error"}"#,
        )
            .into_response()
    };
    let Ok(resp) = req.send().await else {
        return bad_gateway();
    };
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if !matches!(
            k.as_str(),
            "content-length" | "connection" | "transfer-encoding" | "date"
        ) {
            out = out.header(k, v);
        }
    }
    match resp.bytes().await {
        Ok(bytes) => out
            .body(axum::body::Body::from(bytes))
            .unwrap_or_else(|_| bad_gateway()),
        Err(_) => bad_gateway(),
    }
}
