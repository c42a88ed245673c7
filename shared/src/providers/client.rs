//! HTTP clients for the providers' result GETs (bulk-fetch) — reqwest with rustls.
//!
//! Branches on the body, not the status code (rule 1). Enrow's 5xx are retried a bounded number
//! of times in-process with backoff (a FullEnrich GET is one request in its paced slot), then handed back as [`FetchError::Retryable`] so SQS retries
//! later; "still running" is [`FetchError::NotReady`]; an unknown id is [`FetchError::Permanent`].

use std::future::Future;
use std::time::Duration;

use crate::retry::Retryable;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::jobs::Operation;
use crate::providers::{enrow, fullenrich};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FetchError {
    #[error("provider unavailable: {0}")]
    Retryable(String),
    #[error("results not ready yet")]
    NotReady,
    /// 429: wait this long (`Retry-After`), or the provider's documented pace when absent.
    #[error("provider rate limit")]
    RateLimited(Option<Duration>),
    #[error("provider refused: {0}")]
    Permanent(String),
}

pub trait ProviderClient: Send + Sync + 'static {
    /// `GET /contact/enrich/bulk/{id}` or `/contact/reverse/email/bulk/{id}`.
    fn fullenrich_job(
        &self,
        operation: Operation,
        id: &str,
    ) -> impl Future<Output = Result<fullenrich::Job, FetchError>> + Send;
    /// `GET /email/find/bulk?id=`, `/email/verify/bulk?id=` or `/phone/bulk?id=`.
    fn enrow_bulk(
        &self,
        operation: Operation,
        id: &str,
    ) -> impl Future<Output = Result<enrow::BulkResults, FetchError>> + Send;
    /// `GET /email/find/single?id=`, `/email/verify/single?id=` or `/phone/single?id=`: the
    /// finished result and its body as sent; `NotReady` while `qualification` is `ongoing`.
    fn enrow_single(
        &self,
        operation: Operation,
        id: &str,
    ) -> impl Future<Output = Result<(enrow::SingleResult, Value), FetchError>> + Send;
    /// How long one GET may take before the relay stops waiting for it.
    fn timeout(&self) -> Duration {
        DEFAULT_TIMEOUT
    }
}

/// Both providers' HTTP APIs. `Debug` shows the URLs, never the keys.
#[derive(Debug, Clone)]
pub struct ProviderHttp {
    pub(crate) http: reqwest::Client,
    pub enrow_url: String,
    pub(crate) enrow_key: SecretString,
    pub fullenrich_url: String,
    pub(crate) fullenrich_key: SecretString,
    /// How long one call may take (the client's whole-request timeout).
    pub(crate) timeout: Duration,
    /// Attempts per GET before handing back to SQS (Enrow's: a FullEnrich GET is one request
    /// in its paced slot, never retried in-process).
    pub attempts: u32,
    pub backoff: Duration,
}

/// How long a provider call may take, start or GET, before the relay stops waiting.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

pub const ENROW_DEFAULT_URL: &str = "https://api.enrow.io";
pub const FULLENRICH_DEFAULT_URL: &str = "https://app.fullenrich.com/api/v2";

impl ProviderHttp {
    pub fn new(
        enrow_url: impl Into<String>,
        enrow_key: impl Into<String>,
        fullenrich_url: impl Into<String>,
        fullenrich_key: impl Into<String>,
    ) -> Self {
        ProviderHttp {
            http: Self::http(DEFAULT_TIMEOUT),
            timeout: DEFAULT_TIMEOUT,
            enrow_url: enrow_url.into(),
            enrow_key: SecretString::from(enrow_key.into()),
            fullenrich_url: fullenrich_url.into(),
            fullenrich_key: SecretString::from(fullenrich_key.into()),
            attempts: 2,
            backoff: Duration::from_millis(250),
        }
    }

    fn http(timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .timeout(timeout)
            .user_agent(concat!("enrich-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("reqwest client")
    }

    /// The same client with another whole-request timeout (`PROVIDER_TIMEOUT_SECONDS`).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.http = Self::http(timeout);
        self.timeout = timeout;
        self
    }

    /// GETs `url` with up to `attempts` tries on 5xx and transport errors (exponential backoff
    /// from `backoff`); returns status and body. A 429 is never retried here: its wait goes back
    /// to the queue as a delayed message.
    async fn get(&self, req: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), FetchError> {
        let retries = (self.attempts.max(1) - 1) as usize;
        (|| Self::get_once(&req))
            .retry(crate::retry::exponential(self.backoff, retries))
            .when(|e| matches!(e, FetchError::Retryable(_)))
            .await
    }

    async fn get_once(req: &reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), FetchError> {
        let r = req
            .try_clone()
            .ok_or_else(|| FetchError::Permanent("request cannot be sent again".into()))?;
        let resp = r
            .send()
            .await
            .map_err(|e| FetchError::Retryable(format!("transport: {}", e.without_url())))?;
        let status = resp.status().as_u16();
        if status == 429 {
            let after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(FetchError::RateLimited(after));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| FetchError::Retryable(format!("reading body: {e}")))?;
        if status >= 500 {
            return Err(FetchError::Retryable(format!("HTTP {status}")));
        }
        Ok((status, body.to_vec()))
    }
}

impl ProviderClient for ProviderHttp {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn fullenrich_job(
        &self,
        operation: Operation,
        id: &str,
    ) -> Result<fullenrich::Job, FetchError> {
        let path = match operation {
            Operation::ReverseEmail => "contact/reverse/email/bulk",
            _ => "contact/enrich/bulk",
        };
        let url = url_with_id(&self.fullenrich_url, path, id)?;
        let req = self
            .http
            .get(url)
            .bearer_auth(self.fullenrich_key.expose_secret());
        // One request for the one slot the caller took in the account's schedule: a 5xx goes
        // back to the queue, and its retry takes a slot of its own.
        let (status, body) = Self::get_once(&req).await?;
        // 200, and 402 with CREDITS_INSUFFICIENT, carry the job object.
        if let Ok(job) = fullenrich::parse_batch(&body)
            && job.status.is_some()
        {
            return Ok(job);
        }
        let err: fullenrich::FullenrichErrorBody =
            serde_json::from_slice(&body).unwrap_or_default();
        match (status, err.code.as_deref()) {
            (_, Some("error.enrichment.in_progress")) => Err(FetchError::NotReady),
            (404, _)
            | (_, Some("error.enrichment.not_found" | "error.reverse.email.not_found")) => Err(
                FetchError::Permanent(format!("HTTP {status} enrichment not found")),
            ),
            _ => Err(FetchError::Retryable(format!(
                "HTTP {status} {}",
                err.code.as_deref().unwrap_or("unexpected body")
            ))),
        }
    }

    async fn enrow_bulk(
        &self,
        operation: Operation,
        id: &str,
    ) -> Result<enrow::BulkResults, FetchError> {
        let path = match operation {
            Operation::EmailVerify => "email/verify/bulk",
            Operation::PhoneFind => "phone/bulk",
            _ => "email/find/bulk",
        };
        let url = format!("{}/{path}", self.enrow_url);
        let req = self
            .http
            .get(url)
            .query(&[("id", id)])
            .header("x-api-key", self.enrow_key.expose_secret());
        let (status, body) = self.get(req).await?;
        if (200..300).contains(&status)
            && let Ok(results) = enrow::BulkResults::parse(&body)
            && let Some(st) = results.status()
        {
            return if st.is_terminal() {
                Ok(results)
            } else {
                Err(FetchError::NotReady)
            };
        }
        Err(enrow_error(status, &body))
    }

    async fn enrow_single(
        &self,
        operation: Operation,
        id: &str,
    ) -> Result<(enrow::SingleResult, Value), FetchError> {
        let path = match operation {
            Operation::EmailVerify => "email/verify/single",
            Operation::PhoneFind => "phone/single",
            _ => "email/find/single",
        };
        let req = self
            .http
            .get(format!("{}/{path}", self.enrow_url))
            .query(&[("id", id)])
            .header("x-api-key", self.enrow_key.expose_secret());
        let (status, body) = self.get(req).await?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        // The legacy phone shape nests the result once more (§3.3).
        let inner = match v.get("result") {
            Some(r) if r.get("qualification").is_some() => r.clone(),
            _ => v,
        };
        if (200..300).contains(&status) && inner.get("qualification").is_some() {
            let result = enrow::SingleResult::from_value(&inner)
                .map_err(|e| FetchError::Retryable(format!("single result: {e}")))?;
            return match &result.qualification {
                Some(q) if !q.is_running() => Ok((result, inner)),
                _ => Err(FetchError::NotReady),
            };
        }
        Err(enrow_error(status, &body))
    }
}

impl ProviderHttp {
    /// The account's credit balance: FullEnrich `GET /account/credits` (`balance`; one request,
    /// counted in the account's 60 a minute like every other) or Enrow `GET /account/info`
    /// (`credits`; GETs are free, 5xx retried as the result GETs are). A 4xx is permanent (a
    /// wrong key stays wrong), a 429 [`FetchError::RateLimited`], a 2xx without a figure
    /// retryable.
    pub async fn account_balance(&self, provider: crate::Provider) -> Result<f64, FetchError> {
        let (status, body, balance) = match provider {
            crate::Provider::Fullenrich => {
                let req = self
                    .http
                    .get(format!("{}/account/credits", self.fullenrich_url))
                    .bearer_auth(self.fullenrich_key.expose_secret());
                let (status, body) = Self::get_once(&req).await?;
                let balance = fullenrich::Balance::parse(&body)
                    .ok()
                    .and_then(|b| b.balance);
                (status, body, balance)
            }
            crate::Provider::Enrow => {
                let req = self
                    .http
                    .get(format!("{}/account/info", self.enrow_url))
                    .header("x-api-key", self.enrow_key.expose_secret());
                let (status, body) = self.get(req).await?;
                let credits = enrow::AccountInfo::parse(&body)
                    .ok()
                    .and_then(|a| a.credits);
                (status, body, credits)
            }
        };
        match (status, balance) {
            (200..=299, Some(balance)) => Ok(balance),
            (200..=299, None) => Err(FetchError::Retryable(format!(
                "HTTP {status} without a balance"
            ))),
            _ => Err(FetchError::Permanent(format!(
                "HTTP {status} {}",
                error_text(provider, &body)
            ))),
        }
    }
}

/// The error text of a provider's answer: FullEnrich's `code` (rule 14), Enrow's message.
fn error_text(provider: crate::Provider, body: &[u8]) -> String {
    let text = match provider {
        crate::Provider::Fullenrich => {
            serde_json::from_slice::<fullenrich::FullenrichErrorBody>(body)
                .ok()
                .and_then(|e| e.code.or(e.message))
        }
        crate::Provider::Enrow => serde_json::from_slice::<enrow::EnrowErrorBody>(body)
            .ok()
            .and_then(|e| e.text().map(str::to_string)),
    };
    text.unwrap_or_else(|| "unexpected body".into())
        .chars()
        .take(200)
        .collect()
}

/// An Enrow error answer (§3.4): an unknown id (404, or a message starting "Could not
/// retrieve") is permanent; anything else may pass on a retry.
fn enrow_error(status: u16, body: &[u8]) -> FetchError {
    let err: enrow::EnrowErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let text = err.text().unwrap_or("unexpected body");
    if status == 404 || text.to_ascii_lowercase().starts_with("could not retrieve") {
        FetchError::Permanent(format!("HTTP {status} id not found"))
    } else {
        FetchError::Retryable(format!("HTTP {status} {text}"))
    }
}

/// `base/segments.../id`, the id percent-encoded as one path segment (ids are opaque, rule 8).
fn url_with_id(base: &str, segments: &str, id: &str) -> Result<reqwest::Url, FetchError> {
    let mut url = reqwest::Url::parse(base)
        .map_err(|e| FetchError::Permanent(format!("bad provider URL: {e}")))?;
    url.path_segments_mut()
        .map_err(|_| FetchError::Permanent("bad provider URL".into()))?
        .pop_if_empty()
        .extend(segments.split('/'))
        .push(id);
    Ok(url)
}
