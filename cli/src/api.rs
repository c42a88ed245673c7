//! A client of the jobs API: bearer token, JSON in and out, errors sorted by what the user can do
//! about them (the CLI's exit codes).

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// What went wrong talking to the jobs API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request was refused as written (4xx other than 401): the API's code, field and rule.
    #[error("{message}")]
    Invalid {
        status: u16,
        code: String,
        field: Option<String>,
        message: String,
    },
    /// The token was refused (401).
    #[error("the API refused the token (401): check RELAY_API_TOKEN or --token")]
    Unauthorized,
    /// The API could not be reached, or failed (5xx).
    #[error("{0}")]
    Unreachable(String),
}

impl ApiError {
    /// The CLI's exit code: 2 bad input, 3 unreachable or refused token.
    pub fn exit_code(&self) -> u8 {
        match self {
            ApiError::Invalid { .. } => 2,
            ApiError::Unauthorized | ApiError::Unreachable(_) => 3,
        }
    }
}

/// Whether `url` may carry the token: HTTPS, or plain HTTP to a loopback address (the local
/// stack).
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let u =
        reqwest::Url::parse(url).map_err(|e| format!("the API URL {url:?} is not a URL: {e}"))?;
    let loopback = match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match u.scheme() {
        "https" => Ok(u),
        "http" if loopback => Ok(u),
        _ => Err(format!(
            "the API URL must be https:// (plain http only to a loopback address): {url}"
        )),
    }
}

/// The API's base URL from `RELAY_URL`: [`check_url`], without a trailing `/` or `/jobs` (the
/// jobs route is what `make dev` and a deployment's outputs show, so it is what gets pasted).
pub fn base_url(url: &str) -> Result<String, String> {
    let u = check_url(url.trim())?;
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!(
            "the API URL must be the API's base, without ?query or #fragment: {url}"
        ));
    }
    let mut base = u.as_str().trim_end_matches('/').to_string();
    if let Some(b) = base.strip_suffix("/jobs") {
        base = b.to_string();
    }
    Ok(base)
}

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client of the API at `url` (checked with [`check_url`]) with this bearer token.
    pub fn new(url: &str, token: &str) -> Result<Client, String> {
        let base = base_url(url)?;
        Ok(Client {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .map_err(|e| e.to_string())?,
            base,
            token: token.to_string(),
        })
    }

    /// One call. `Err` carries the API's error (code, field, rule), never a body field beyond it.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.map_err(|e| {
            ApiError::Unreachable(format!(
                "cannot reach the jobs API at {}: {}",
                self.base,
                without_url(&e)
            ))
        })?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(v);
        }
        let e = &v["error"];
        let text = |k: &str| e[k].as_str().map(str::to_string);
        Err(match status {
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
            s if s.is_client_error() => ApiError::Invalid {
                status: s.as_u16(),
                code: text("code").unwrap_or_default(),
                field: text("field"),
                message: match (text("field"), text("message")) {
                    (Some(f), Some(m)) => format!("{f}: {m} (HTTP {})", s.as_u16()),
                    (None, Some(m)) => format!("{m} (HTTP {})", s.as_u16()),
                    _ => format!("{path}: HTTP {}", s.as_u16()),
                },
            },
            s => ApiError::Unreachable(format!(
                "the jobs API failed: HTTP {} {}; try again",
                s.as_u16(),
                text("message").unwrap_or_default()
            )),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.call(Method::GET, path, None, None).await
    }

    /// Every result row of a job, page by page (`limit` rows a page).
    pub async fn results(&self, job: &str, limit: usize) -> Result<Vec<Value>, ApiError> {
        self.results_pages(job, limit, false).await
    }

    /// [`Client::results`] with the provider's record on each row (`raw`: every email and phone
    /// it gave), as results files want it.
    pub async fn results_with_raw(&self, job: &str, limit: usize) -> Result<Vec<Value>, ApiError> {
        self.results_pages(job, limit, true).await
    }

    async fn results_pages(
        &self,
        job: &str,
        limit: usize,
        raw: bool,
    ) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        let include = if raw { "&include=raw" } else { "" };
        loop {
            let page = self
                .get(&format!(
                    "/jobs/{job}/results?limit={limit}{include}{cursor}"
                ))
                .await?;
            out.extend(page["results"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return Ok(out),
            }
        }
    }
}

/// A transport error's text without the request URL (which holds nothing secret, but is noise).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(u) = e.url() {
        text = text.replace(&format!(" ({u})"), "").replace(u.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_over_https_or_to_loopback_only() {
        assert!(check_url("https://api.example.com/prod").is_ok());
        assert!(check_url("http://127.0.0.1:9000").is_ok());
        assert!(check_url("http://localhost:9000").is_ok());
        assert!(check_url("http://[::1]:9000").is_ok());
        assert!(check_url("http://api.example.com").is_err());
        assert!(check_url("http://10.0.0.1").is_err());
        assert!(check_url("ftp://127.0.0.1").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn the_url_make_dev_prints_with_jobs_on_it_is_taken_as_the_base() {
        for url in [
            "http://127.0.0.1:9000",
            "http://127.0.0.1:9000/",
            "http://127.0.0.1:9000/jobs",
            "http://127.0.0.1:9000/jobs/",
            " http://127.0.0.1:9000/jobs ",
        ] {
            assert_eq!(
                base_url(url).as_deref(),
                Ok("http://127.0.0.1:9000"),
                "{url}"
            );
        }
        assert_eq!(
            base_url("https://abc.execute-api.eu-west-1.amazonaws.com/prod/jobs").as_deref(),
            Ok("https://abc.execute-api.eu-west-1.amazonaws.com/prod")
        );
        assert!(base_url("http://127.0.0.1:9000/jobs?limit=1").is_err());
    }
}
