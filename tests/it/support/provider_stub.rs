//! A loopback HTTP stub of the providers' result GETs: scripted answers per (path, id), a count
//! of the GETs it served, an optional delay, and the auth header it saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;

#[derive(Default)]
struct Inner {
    /// (route, id) → answers in order; the last one repeats.
    scripts: Mutex<HashMap<(String, String), Vec<(u16, String)>>>,
    hits: Mutex<HashMap<(String, String), usize>>,
    auth: Mutex<Vec<String>>,
    delay: Mutex<Duration>,
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
            .route("/email/find/bulk", get(enrow))
            .route("/email/verify/bulk", get(enrow))
            .route("/phone/bulk", get(enrow))
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
