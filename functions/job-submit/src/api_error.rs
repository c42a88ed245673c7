//! [`ApiError`]: every error the jobs API answers, and the JSON body it becomes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use relay_shared::JobId;
use relay_shared::error_json;
use relay_shared::store::StoreError;
use relay_shared::validate::Invalid;

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// An error answer: HTTP status, a stable `code`, a message for people and, when one input is at
/// fault, the `field` it names. Becomes `{"error": {"code", "message", "field"?}}` (never
/// contact data or secrets); its `source` (a store's or a queue's failure) is only logged.
#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
    /// The job the request named, for its log line (never in the body).
    pub job_id: Option<JobId>,
    /// Fields of the body beside `error` (a 402's `estimate` and `balance`).
    pub extra: serde_json::Map<String, serde_json::Value>,
    #[source]
    pub source: Option<Cause>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            job_id: None,
            extra: serde_json::Map::new(),
            source: None,
        }
    }

    /// 400 `invalid_request` about one input.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request", message).field(field)
    }

    /// 404 `not_found`.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(404, "not_found", format!("no such {what}"))
    }

    /// 503 `unavailable`: a dependency failed; the request may be sent again as it is.
    pub fn unavailable(message: impl Into<String>, cause: impl Into<Cause>) -> ApiError {
        ApiError {
            source: Some(cause.into()),
            ..ApiError::new(503, "unavailable", message)
        }
    }

    pub fn field(mut self, field: &str) -> ApiError {
        self.field = Some(field.to_string());
        self
    }

    /// A field of the body beside `error`.
    pub fn with_body(mut self, key: &str, value: serde_json::Value) -> ApiError {
        self.extra.insert(key.to_string(), value);
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// The error about job `job_id` (named in the request's log line).
    pub fn job(mut self, job_id: &JobId) -> ApiError {
        self.job_id = Some(job_id.clone());
        self
    }
}

impl IntoResponse for ApiError {
    /// The response; a 5xx's cause is logged here, with its chain.
    fn into_response(self) -> Response {
        if self.status >= 500 {
            let cause = self.source.as_deref().map(error_chain);
            tracing::error!(code = self.code, cause, "{}", self.message);
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = error_json(self.code, &self.message, self.field.as_deref());
        if !self.extra.is_empty()
            && let Ok(serde_json::Value::Object(mut all)) = serde_json::from_str(&body)
        {
            all.extend(self.extra);
            body = serde_json::Value::Object(all).to_string();
        }
        let mut resp = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(job_id) = self.job_id {
            resp = crate::api::with_job(resp, &job_id);
        }
        resp
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::unavailable("the job store is unavailable; retry", e)
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> ApiError {
        ApiError::invalid(&e.field, e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn text(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await;
        String::from_utf8(bytes.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn an_error_becomes_its_json_body_and_headers() {
        let resp = ApiError::new(409, "idempotency_key_in_use", "retry later")
            .field("Idempotency-Key")
            .retry_after(2)
            .into_response();
        assert_eq!(resp.status(), 409);
        assert_eq!(resp.headers()["retry-after"], "2");
        let body: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "idempotency_key_in_use", "message": "retry later", "field": "Idempotency-Key"}})
        );
    }

    #[tokio::test]
    async fn a_store_failure_is_a_503_that_keeps_its_cause_out_of_the_body() {
        let e = ApiError::from(StoreError::unavailable(
            "ProvisionedThroughputExceeded: slow down",
        ));
        assert_eq!(e.status, 503);
        let cause = std::error::Error::source(&e).expect("cause kept");
        assert!(cause.to_string().contains("ProvisionedThroughputExceeded"));
        let text = text(e.into_response()).await;
        assert!(!text.contains("Provisioned"), "{text}");
    }
}
