//! [`ApiError`]: every error the jobs API answers, and the JSON body it becomes.

use lambda_http::{Body, Response};
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

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// The response; a 5xx's cause is logged here, with its chain.
    pub fn into_response(self) -> Response<Body> {
        if self.status >= 500 {
            let cause = self.source.as_deref().map(error_chain);
            tracing::error!(code = self.code, cause, "{}", self.message);
        }
        let mut resp = Response::builder()
            .status(self.status)
            .header("content-type", "application/json");
        if let Some(secs) = self.retry_after {
            resp = resp.header("retry-after", secs.to_string());
        }
        resp.body(Body::Text(error_json(
            self.code,
            &self.message,
            self.field.as_deref(),
        )))
        .expect("valid response")
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

    #[test]
    fn an_error_becomes_its_json_body_and_headers() {
        let resp = ApiError::new(409, "idempotency_key_in_use", "retry later")
            .field("Idempotency-Key")
            .retry_after(2)
            .into_response();
        assert_eq!(resp.status(), 409);
        assert_eq!(resp.headers()["retry-after"], "2");
        let Body::Text(text) = resp.body() else {
            panic!("text body")
        };
        let body: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "idempotency_key_in_use", "message": "retry later", "field": "Idempotency-Key"}})
        );
    }

    #[test]
    fn a_store_failure_is_a_503_that_keeps_its_cause_out_of_the_body() {
        let e = ApiError::from(StoreError::unavailable(
            "ProvisionedThroughputExceeded: slow down",
        ));
        assert_eq!(e.status, 503);
        let cause = std::error::Error::source(&e).expect("cause kept");
        assert!(cause.to_string().contains("ProvisionedThroughputExceeded"));
        let Body::Text(text) = e.into_response().into_body() else {
            panic!("text body")
        };
        assert!(!text.contains("Provisioned"), "{text}");
    }
}
