//! A loopback HTTP stub of the providers' result GETs: scripted answers per (path, id), a count
//! of the GETs it served, an optional delay, and the auth header it saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

/// A scripted answer: status and body.
type Answer = (u16, String);

#[derive(Default)]
struct Inner {
    /// (route, id) → answers in order; the last one repeats.
    scripts: Mutex<HashMap<(String, String), Vec<Answer>>>,
    hits: Mutex<HashMap<(String, String), usize>>,
    auth: Mutex<Vec<String>>,
    delay: Mutex<Duration>,
    /// Start POSTs received, in order.
    starts: Mutex<Vec<Start>>,
    /// path → answers to start POSTs in order; the last one repeats. Unscripted: 200 with an id.
    start_scripts: Mutex<HashMap<String, Vec<(u16, String)>>>,
}

/// A start POST as the stub received it.
#[derive(Debug, Clone)]
pub struct Start {
    pub path: String,
    /// `x-api-key: …` or `authorization: …`.
    pub auth: String,
    pub body: serde_json::Value,
    pub at: std::time::Instant,
    /// The id the stub answered with (None when it answered an error).
    pub id: Option<String>,
}

#[derive(Clone)]
pub struct ProviderStub {
    inner: Arc<Inner>,
    pub url: String,
}

impl ProviderStub {
    pub async fn start() -> ProviderStub {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/email/find/bulk", get(enrow).post(start))
            .route("/email/verify/bulk", get(enrow).post(start))
            .route("/phone/bulk", get(enrow).post(start))
            .route("/email/find/single", get(enrow).post(start))
            .route("/email/verify/single", get(enrow).post(start))
            .route("/phone/single", get(enrow).post(start))
            .route("/contact/enrich/bulk", post(start))
            .route("/contact/reverse/email/bulk", post(start))
            .route("/contact/enrich/bulk/{id}", get(fullenrich))
            .route("/contact/reverse/email/bulk/{id}", get(fullenrich))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        ProviderStub { inner, url }
    }

    /// Scripts the answers to `GET route` for `id` (route as in "/email/find/bulk").
    pub fn script(&self, route: &str, id: &str, answers: Vec<(u16, String)>) {
        self.inner
            .scripts
            .lock()
            .unwrap()
            .insert((route.to_string(), id.to_string()), answers);
    }

    pub fn hits(&self, route: &str, id: &str) -> usize {
        *self
            .inner
            .hits
            .lock()
            .unwrap()
            .get(&(route.to_string(), id.to_string()))
            .unwrap_or(&0)
    }

    pub fn auth_headers(&self) -> Vec<String> {
        self.inner.auth.lock().unwrap().clone()
    }

    /// Scripts the answers to start POSTs on `path` (e.g. "/contact/enrich/bulk").
    pub fn script_start(&self, path: &str, answers: Vec<(u16, String)>) {
        self.inner
            .start_scripts
            .lock()
            .unwrap()
            .insert(path.to_string(), answers);
    }

    /// Every start POST received so far, in order.
    pub fn starts(&self) -> Vec<Start> {
        self.inner.starts.lock().unwrap().clone()
    }

    pub fn set_delay(&self, d: Duration) {
        *self.inner.delay.lock().unwrap() = d;
    }
}

async fn answer(
    inner: &Inner,
    route: String,
    id: String,
    headers: &HeaderMap,
) -> (StatusCode, String) {
    let delay = *inner.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    for h in ["x-api-key", "authorization"] {
        if let Some(v) = headers.get(h).and_then(|v| v.to_str().ok()) {
            inner.auth.lock().unwrap().push(format!("{h}: {v}"));
        }
    }
    let key = (route, id);
    let n = {
        let mut hits = inner.hits.lock().unwrap();
        let n = hits.entry(key.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let scripts = inner.scripts.lock().unwrap();
    match scripts.get(&key) {
        Some(answers) if !answers.is_empty() => {
            let (status, body) = answers[(n - 1).min(answers.len() - 1)].clone();
            (StatusCode::from_u16(status).unwrap(), body)
        }
        _ => (
            StatusCode::NOT_FOUND,
            r#"{"message":"Bulk search not found"}"#.into(),
        ),
    }
}

async fn enrow(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let id = q.get("id").cloned().unwrap_or_default();
    answer(&inner, uri.path().to_string(), id, &headers).await
}

async fn fullenrich(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let route = uri
        .path()
        .rsplit_once('/')
        .map(|(r, _)| r.to_string())
        .unwrap_or_default();
    answer(&inner, route, id, &headers).await
}

async fn start(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path().to_string();
    let auth = ["x-api-key", "authorization"]
        .iter()
        .find_map(|h| {
            headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .map(|v| format!("{h}: {v}"))
        })
        .unwrap_or_default();
    let n = inner
        .starts
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == path)
        .count();
    let scripted = inner
        .start_scripts
        .lock()
        .unwrap()
        .get(&path)
        .and_then(|a| a.get(n.min(a.len().saturating_sub(1))).cloned());
    let id = uuid::Uuid::new_v4().to_string();
    let (status, answer) = scripted.unwrap_or_else(|| {
        let key = if path.starts_with("/contact/") {
            "enrichment_id"
        } else {
            "id"
        };
        (
            200,
            serde_json::json!({ key: id, "message": "operating" }).to_string(),
        )
    });
    let answered_id = serde_json::from_str::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| {
            ["enrichment_id", "id"]
                .iter()
                .find_map(|k| v.get(*k)?.as_str().map(str::to_string))
        })
        .filter(|_| (200..300).contains(&status));
    inner.starts.lock().unwrap().push(Start {
        path,
        auth,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        at: std::time::Instant::now(),
        id: answered_id,
    });
    let mut resp = (StatusCode::from_u16(status).unwrap(), answer).into_response();
    if status == 429 {
        // A test's minute is a second.
        resp.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    resp
}
