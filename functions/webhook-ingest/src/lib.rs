//! webhook-ingest: authenticate a provider's webhook, make it durable in SQS, then answer.
//!
//! Routes (API Gateway HTTP API, payload v2), one per provider hook, each carrying the job's token:
//!
//! ```text
//! POST /webhooks/fullenrich/{job_id}/batch/{token}     FullEnrich webhook_url
//! POST /webhooks/fullenrich/{job_id}/contact/{token}   FullEnrich webhook_events.contact_finished
//! POST /webhooks/enrow/{job_id}/event/{token}          Enrow settings.webhook
//! POST /webhooks/enrow/global/{token}                  Enrow's dashboard (global) webhook
//! ```
//!
//! The global route carries no job: its token is the deployment's global token
//! ([`relay_shared::auth::WebhookSecret::global_token`]), and bulk-fetch finds the job by the
//! event's provider id (or keeps the event as an orphan).
//!
//! The answer is 200 only after SQS accepted the envelope; 503 when it did not (the provider
//! retries); 401, with nothing enqueued, for a missing or wrong token or a bad FullEnrich signature.

use std::collections::BTreeMap;
use std::time::Instant;

use lambda_http::{Body, Request, Response};
use relay_shared::ExposeSecret;
use relay_shared::JobId;
use relay_shared::auth::{SignatureCheck, check_fullenrich_signature};
use relay_shared::bodies::BodyStore;
use relay_shared::config::IngestConfig;
use relay_shared::envelope::{self, Envelope, Signature};
use relay_shared::metrics::{self, Metrics};
use relay_shared::providers::Hook;
use relay_shared::queue::Queue;
use relay_shared::{Provider, error_json, now_ms};
use sha2::{Digest, Sha256};

/// The routes are parsed in `relay_shared`, next to the builder of the URLs they read.
pub use relay_shared::routes::{Route, parse_route};

/// What ingest made of a delivery: taken in, or why it was refused or failed; logged, never sent
/// to the caller. (Not a contact's outcome: that is [`relay_shared::jobs::Outcome`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accepted { claim_checked: bool },
    BadRoute,
    BadToken,
    BadSignature,
    SignatureRequired,
    MethodNotAllowed,
    Unavailable,
}

impl Admission {
    pub fn as_str(self) -> &'static str {
        match self {
            Admission::Accepted {
                claim_checked: false,
            } => "accepted",
            Admission::Accepted {
                claim_checked: true,
            } => "accepted_claim_check",
            Admission::BadRoute => "unauthorized_route",
            Admission::BadToken => "unauthorized_token",
            Admission::BadSignature => "unauthorized_signature",
            Admission::SignatureRequired => "unauthorized_signature_required",
            Admission::MethodNotAllowed => "method_not_allowed",
            Admission::Unavailable => "unavailable",
        }
    }

    /// This delivery's EMF line: accepted, unavailable, or refused with its reason.
    pub fn metrics(self) -> Metrics {
        let mut m = Metrics::new("webhook-ingest");
        match self {
            Admission::Accepted { .. } => {
                m.add(metrics::DELIVERIES_ACCEPTED, 1);
            }
            Admission::Unavailable => {
                m.add(metrics::DELIVERIES_UNAVAILABLE, 1);
            }
            refused => {
                m = m.with_reason(refused.as_str());
                m.add(metrics::DELIVERIES_REFUSED, 1);
            }
        }
        m
    }

    pub fn status(self) -> u16 {
        match self {
            Admission::Accepted { .. } => 200,
            Admission::BadRoute
            | Admission::BadToken
            | Admission::BadSignature
            | Admission::SignatureRequired => 401,
            Admission::MethodNotAllowed => 405,
            Admission::Unavailable => 503,
        }
    }
}

/// The ingest service: built once at cold start, shared by every invocation.
pub struct Ingest<Q, S> {
    queue: Q,
    bodies: S,
    config: IngestConfig,
    max_message_bytes: usize,
}

impl<Q: Queue, S: BodyStore> Ingest<Q, S> {
    pub fn new(queue: Q, bodies: S, config: IngestConfig) -> Self {
        Ingest {
            queue,
            bodies,
            config,
            max_message_bytes: envelope::SQS_MAX_MESSAGE_BYTES,
        }
    }

    /// Lowers the size over which bodies go to the claim-check store (tests).
    pub fn with_max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = n;
        self
    }

    /// Handles one HTTP request and logs one line about it.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let started = Instant::now();
        let route = parse_route(req.uri().path());
        let (outcome, delivery_id) = self.process(&req, route.as_ref()).await;
        let bytes = req.body().len();
        tracing::info!(
            provider = route.as_ref().map(|r| r.provider.as_str()),
            job_id = route.as_ref().map(|r| r.job_id),
            hook = route.as_ref().map(|r| r.hook.as_str()),
            outcome = outcome.as_str(),
            status = outcome.status(),
            bytes,
            delivery_id = delivery_id.as_deref(),
            latency_us = started.elapsed().as_micros() as u64,
            "webhook delivery"
        );
        outcome.metrics().emit();
        respond(outcome, delivery_id.as_deref())
    }

    /// The URL's token (the job's, or the global route's), then FullEnrich's signature when the
    /// body has one (or must): what ingest found, or the refusal.
    fn authenticate(
        &self,
        req: &Request,
        route: &Route<'_>,
        body: &[u8],
    ) -> Result<Signature, Admission> {
        let secret = &self.config.webhook_secret;
        let token_ok = route.token.is_some_and(|t| match route.hook {
            Hook::Global => secret.verify_global(route.provider, t),
            _ => secret.verify(route.provider, route.job_id, t),
        });
        if !token_ok {
            return Err(Admission::BadToken);
        }
        Ok(match route.provider {
            Provider::Enrow => Signature::NotApplicable,
            Provider::Fullenrich => {
                let header = req
                    .headers()
                    .get("x-signature-sha1")
                    .and_then(|v| v.to_str().ok());
                let keys: Vec<&[u8]> = self
                    .config
                    .fullenrich_keys
                    .iter()
                    .map(|k| k.expose_secret().as_bytes())
                    .collect();
                match check_fullenrich_signature(&keys, body, header) {
                    SignatureCheck::Invalid => return Err(Admission::BadSignature),
                    SignatureCheck::Absent if self.config.require_signature => {
                        return Err(Admission::SignatureRequired);
                    }
                    check => Signature::from(check),
                }
            }
        })
    }

    async fn process(
        &self,
        req: &Request,
        route: Option<&Route<'_>>,
    ) -> (Admission, Option<String>) {
        if req.method() != http::Method::POST {
            return (Admission::MethodNotAllowed, None);
        }
        let Some(route) = route else {
            return (Admission::BadRoute, None);
        };
        let body: &[u8] = req.body().as_ref();
        let signature = match self.authenticate(req, route, body) {
            Ok(signature) => signature,
            Err(refused) => return (refused, None),
        };

        let delivery_id = uuid::Uuid::new_v4().to_string();
        // A body larger than a whole message cannot go inline: skip serializing it to find out.
        let inline = body.len() < self.max_message_bytes;
        let mut env = Envelope {
            v: 1,
            delivery_id: delivery_id.clone(),
            provider: route.provider,
            hook: route.hook,
            job_id: JobId::new(route.job_id),
            received_at_ms: now_ms(),
            headers: kept_headers(req),
            signature,
            body: if inline {
                envelope::Body::inline(body)
            } else {
                envelope::Body::Text {
                    text: String::new(),
                }
            },
            requeues: 0,
            paced: 0,
        };
        let mut message = if inline { env.to_json() } else { String::new() };
        let mut claim_checked = false;
        if !inline || message.len() > self.max_message_bytes {
            let key =
                relay_shared::bodies::delivery_key(route.provider, route.job_id, &delivery_id);
            env.body = envelope::Body::Stored {
                bucket: self.bodies.bucket().to_string(),
                key: key.clone(),
                size: body.len() as u64,
                sha256: hex::encode(Sha256::digest(body)),
            };
            if let Err(e) = self.bodies.put(&key, body.to_vec()).await {
                tracing::error!(error = %e, delivery_id, "claim-check put failed");
                return (Admission::Unavailable, Some(delivery_id));
            }
            message = env.to_json();
            claim_checked = true;
        }
        match self.queue.send(message).await {
            Ok(_) => (Admission::Accepted { claim_checked }, Some(delivery_id)),
            Err(e) => {
                tracing::error!(error = %e, delivery_id, "enqueue failed");
                (Admission::Unavailable, Some(delivery_id))
            }
        }
    }
}

fn kept_headers(req: &Request) -> BTreeMap<String, String> {
    envelope::KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let v = req.headers().get(*name)?.to_str().ok()?;
            Some((name.to_string(), v.to_string()))
        })
        .collect()
}

fn respond(outcome: Admission, delivery_id: Option<&str>) -> Response<Body> {
    let body = match outcome {
        Admission::Accepted { .. } => {
            serde_json::json!({ "status": "accepted", "delivery_id": delivery_id }).to_string()
        }
        Admission::MethodNotAllowed => {
            error_json("method_not_allowed", "webhooks accept POST only", None)
        }
        Admission::Unavailable => error_json(
            "unavailable",
            "the delivery could not be stored; retry later",
            None,
        ),
        // One answer for every authentication failure: nothing that helps a forger.
        _ => error_json("unauthorized", "invalid webhook credentials", None),
    };
    Response::builder()
        .status(outcome.status())
        .header("content-type", "application/json")
        .body(Body::Text(body))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_is_one_metric_and_refusals_carry_their_reason() {
        let line = |o: Admission| -> serde_json::Value {
            serde_json::from_str(&o.metrics().line(1)).unwrap()
        };
        let v = line(Admission::Accepted {
            claim_checked: true,
        });
        assert_eq!(v["DeliveriesAccepted"], 1.0);
        assert!(v.get("Reason").is_none());
        assert_eq!(line(Admission::Unavailable)["DeliveriesUnavailable"], 1.0);
        let v = line(Admission::BadSignature);
        assert_eq!(v["DeliveriesRefused"], 1.0);
        assert_eq!(v["Reason"], "unauthorized_signature");
        assert!(v.get("DeliveriesAccepted").is_none());
    }
}
