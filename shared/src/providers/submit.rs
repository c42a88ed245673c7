//! Starting enrichments: the exact request each operation sends (providers.md §2.2, §3.2) and
//! what the provider's answer means for the chunk.
//!
//! Every contact carries the relay's record key: FullEnrich `custom.rid` and Enrow single
//! `custom.rid` (objects), Enrow bulk `custom` (a string: the contact index). Bulk verification
//! takes no per-email custom; its rows are joined on the email.

use std::future::Future;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::ids::ProviderId;
use crate::jobs::{Contact, Operation, RECORD_KEY};
use crate::providers::client::ProviderHttp;
use secrecy::ExposeSecret;

/// Contacts per provider request (providers.md: FullEnrich 100; Enrow 5,000, phone 3,000).
pub fn chunk_size(op: Operation) -> u64 {
    match op {
        Operation::Enrich | Operation::ReverseEmail => 100,
        Operation::EmailFind | Operation::EmailVerify => 5000,
        Operation::PhoneFind => 3000,
    }
}

/// Where a chunk's webhooks go: the relay's ingest URLs with the job's token.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookUrls {
    /// FullEnrich `webhook_url`; Enrow `settings.webhook`.
    pub main: String,
    /// FullEnrich `webhook_events.contact_finished`.
    pub contact: Option<String>,
}

/// One provider request, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRequest {
    /// Path below the provider's base URL.
    pub path: &'static str,
    pub body: Value,
}

/// The request that starts `contacts` (one chunk) for `op`.
pub fn start_request(
    op: Operation,
    name: &str,
    contacts: &[Contact],
    options: &Value,
    hooks: &WebhookUrls,
) -> StartRequest {
    match op {
        Operation::Enrich | Operation::ReverseEmail => {
            fullenrich_start(op, name, contacts, options, hooks)
        }
        Operation::EmailFind | Operation::PhoneFind => {
            enrow_search_start(op, contacts, enrow_settings(op, options, hooks))
        }
        Operation::EmailVerify => enrow_verify_start(contacts, enrow_settings(op, options, hooks)),
    }
}

/// The contact's fields among `keys`, as they are.
fn pick(c: &Contact, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|k| c.field(k).map(|v| (k.to_string(), Value::from(v))))
        .collect()
}

/// The relay's record key of a contact: its index in the job.
fn rid(c: &Contact) -> String {
    c.index.to_string()
}

/// FullEnrich's bulk enrich or reverse email: every record carries the caller's `custom` and
/// the record key.
fn fullenrich_start(
    op: Operation,
    name: &str,
    contacts: &[Contact],
    options: &Value,
    hooks: &WebhookUrls,
) -> StartRequest {
    let fields = options
        .get("enrich_fields")
        .cloned()
        .unwrap_or_else(|| json!(crate::providers::fullenrich::DEFAULT_ENRICH_FIELDS));
    let data: Vec<Value> = contacts
        .iter()
        .map(|c| {
            let mut record = if op == Operation::Enrich {
                let keys = [
                    "first_name",
                    "last_name",
                    "domain",
                    "company_name",
                    "linkedin_url",
                ];
                let mut r = pick(c, &keys);
                r.insert("enrich_fields".into(), fields.clone());
                r
            } else {
                pick(c, &["email"])
            };
            let mut custom = match &c.custom {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            custom.insert(RECORD_KEY.into(), Value::from(rid(c)));
            record.insert("custom".into(), Value::Object(custom));
            Value::Object(record)
        })
        .collect();
    let mut body = json!({ "name": name, "webhook_url": hooks.main, "data": data });
    if let Some(contact) = &hooks.contact {
        body["webhook_events"] = json!({ "contact_finished": contact });
    }
    StartRequest {
        path: if op == Operation::Enrich {
            "/contact/enrich/bulk"
        } else {
            "/contact/reverse/email/bulk"
        },
        body,
    }
}

/// Enrow's `settings`: the webhook, and the options an operation takes.
fn enrow_settings(op: Operation, options: &Value, hooks: &WebhookUrls) -> Map<String, Value> {
    let mut settings = Map::new();
    settings.insert("webhook".into(), Value::from(hooks.main.clone()));
    if op != Operation::EmailVerify {
        for k in ["country_code", "retrieve_gender"] {
            if let Some(v) = options.get(k).cloned() {
                settings.insert(k.into(), v);
            }
        }
    }
    settings
}

/// Enrow's email or phone search: single for one contact, bulk otherwise.
fn enrow_search_start(
    op: Operation,
    contacts: &[Contact],
    settings: Map<String, Value>,
) -> StartRequest {
    let keys: &[&str] = if op == Operation::EmailFind {
        &["fullname", "company_domain", "company_name"]
    } else {
        &[
            "linkedin_url",
            "first_name",
            "last_name",
            "company_domain",
            "company_name",
        ]
    };
    let search = |c: &Contact, custom: Value| {
        let mut s = pick(c, keys);
        s.insert("custom".into(), custom);
        s
    };
    if let [c] = contacts {
        let custom = if op == Operation::EmailFind {
            json!({ RECORD_KEY: rid(c) })
        } else {
            Value::from(rid(c)) // phone single: `custom` is a string
        };
        let mut body = search(c, custom);
        body.insert("settings".into(), Value::Object(settings));
        return StartRequest {
            path: if op == Operation::EmailFind {
                "/email/find/single"
            } else {
                "/phone/single"
            },
            body: Value::Object(body),
        };
    }
    let searches: Vec<Value> = contacts
        .iter()
        .map(|c| Value::Object(search(c, Value::from(rid(c)))))
        .collect();
    StartRequest {
        path: if op == Operation::EmailFind {
            "/email/find/bulk"
        } else {
            "/phone/bulk"
        },
        body: json!({ "searches": searches, "settings": settings }),
    }
}

/// Enrow's email verification: single for one contact (with the record key), bulk otherwise
/// (no per-email custom: rows are joined on the email).
fn enrow_verify_start(contacts: &[Contact], settings: Map<String, Value>) -> StartRequest {
    if let [c] = contacts {
        return StartRequest {
            path: "/email/verify/single",
            body: json!({
                "email": c.field("email"),
                "custom": { RECORD_KEY: rid(c) },
                "settings": settings,
            }),
        };
    }
    let emails: Vec<Value> = contacts
        .iter()
        .filter_map(|c| c.field("email"))
        .map(Value::from)
        .collect();
    StartRequest {
        path: "/email/verify/bulk",
        body: json!({ "verifications": emails, "settings": settings }),
    }
}

/// What starting a chunk came to, sorted by what the relay knows about the provider's side.
///
/// The start rule: a start is sent again only when the provider is known not to have taken it
/// ([`StartError::RateLimited`], [`StartError::NotSent`]). Every answer that leaves open whether
/// the provider stored the job ([`StartError::Unconfirmed`]) is never retried: the chunk waits for
/// its webhook, which adopts it. Providers take no idempotency key, so a second start would
/// start (and bill) the same contacts again.
#[derive(Debug, Clone, PartialEq)]
pub enum StartError {
    /// 429: not started; try again after this long (`Retry-After`, else the provider's hint).
    RateLimited(Duration),
    /// 402 / 422 (Enrow): not started; the account is out of credits.
    OutOfCredits,
    /// 401 / 403: not started; the API key is wrong, and retrying will not help.
    Unauthorized,
    /// 4xx: the provider refused the request, so it did not start it. `per_contact`: the refusal
    /// is about a contact's data (a bad domain, a malformed LinkedIn URL, …), so a smaller
    /// request without that contact would pass; otherwise it is about the request as a whole.
    Rejected { message: String, per_contact: bool },
    /// The request never left: the connection (DNS, TCP, TLS) failed before it was sent.
    NotSent(String),
    /// The provider may have stored the job: a timeout after the request was sent, a 5xx, a 2xx
    /// without an id, a body that could not be read.
    Unconfirmed(String),
}

/// A started chunk: the provider's id and the credits it reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    pub id: ProviderId,
    pub credits: Option<f64>,
}

pub trait Submitter: Send + Sync + 'static {
    fn start(
        &self,
        op: Operation,
        request: &StartRequest,
    ) -> impl Future<Output = Result<Started, StartError>> + Send;
    /// How long one start may take before the relay stops waiting for its answer.
    fn timeout(&self) -> Duration {
        crate::providers::client::DEFAULT_TIMEOUT
    }
}

/// FullEnrich 400 codes that are about one contact's data (providers.md §2.5).
const FULLENRICH_CONTACT_CODES: [&str; 11] = [
    "error.enrichment.first_name.empty",
    "error.enrichment.last_name.empty",
    "error.enrichment.domain.empty",
    "error.enrichment.domain.invalid",
    "error.linkedin.malformated",
    "error.enrichment.linkedin_url.invalid",
    "error.enrichment.custom.key.exceeded",
    "error.enrichment.custom.value.exceeded",
    "error.reverse.email.invalid",
    "error.reverse.email.empty",
    "error.enrichment.enrich_field.value",
];

/// Enrow 400 messages (lowercase prefixes) that are about one search's data (providers.md §3.4).
const ENROW_CONTACT_MESSAGES: [&str; 6] = [
    "missing mandatory property on search",
    "invalid linkedin_url",
    "invalid email format",
    "both company_domain and company_name are absent",
    "input payload is missing fullname",
    "at least one of",
];

/// Reads a start answer (any 2xx with a non-empty id is started). `retry_after` is the
/// `Retry-After` header in seconds, when the provider sent one.
pub fn read_start(
    status: u16,
    body: &[u8],
    op: Operation,
    retry_after: Option<u64>,
) -> Result<Started, StartError> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .unwrap_or("")
            .chars()
            .take(200)
            .collect::<String>()
    };
    let fullenrich = op.provider() == crate::Provider::Fullenrich;
    // FullEnrich: `code` first (rule 14); Enrow: message → reason → error.
    let message = if fullenrich {
        text(&["code", "message"])
    } else {
        text(&["message", "reason", "error"])
    };
    match status {
        200..=299 => {
            let id = ["enrichment_id", "id"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str))
                .filter(|s| !s.is_empty());
            match id {
                Some(id) => Ok(Started {
                    id: ProviderId::new(id),
                    credits: v.get("credits_used").and_then(Value::as_f64),
                }),
                None => Err(StartError::Unconfirmed(format!(
                    "HTTP {status} without an id"
                ))),
            }
        }
        401 | 403 => Err(StartError::Unauthorized),
        402 => Err(StartError::OutOfCredits),
        422 if !fullenrich => Err(StartError::OutOfCredits),
        429 => Err(StartError::RateLimited(Duration::from_secs(
            retry_after.unwrap_or(match op.provider() {
                // FullEnrich: "Too many requests. Try again in 1m".
                crate::Provider::Fullenrich => 60,
                crate::Provider::Enrow => 1,
            }),
        ))),
        // A request timeout may have been processed anyway.
        408 => Err(StartError::Unconfirmed(format!("HTTP {status}"))),
        400..=499 => {
            let lower = message.to_ascii_lowercase();
            let per_contact = status == 400
                && if fullenrich {
                    FULLENRICH_CONTACT_CODES.contains(&message.as_str())
                } else {
                    ENROW_CONTACT_MESSAGES.iter().any(|p| lower.starts_with(p))
                };
            Err(StartError::Rejected {
                message: format!("HTTP {status}: {message}"),
                per_contact,
            })
        }
        _ => Err(StartError::Unconfirmed(format!("HTTP {status}"))),
    }
}

impl Submitter for ProviderHttp {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn start(&self, op: Operation, request: &StartRequest) -> Result<Started, StartError> {
        let req = match op.provider() {
            crate::Provider::Fullenrich => self
                .http
                .post(format!("{}{}", self.fullenrich_url, request.path))
                .bearer_auth(self.fullenrich_key.expose_secret()),
            crate::Provider::Enrow => self
                .http
                .post(format!("{}{}", self.enrow_url, request.path))
                .header("x-api-key", self.enrow_key.expose_secret()),
        };
        let resp = req.json(&request.body).send().await.map_err(|e| {
            let what = e.without_url();
            // Only a failed connection proves the request never reached the provider.
            if what.is_connect() {
                StartError::NotSent(format!("connect: {what}"))
            } else {
                StartError::Unconfirmed(format!("transport: {what}"))
            }
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = resp
            .bytes()
            .await
            .map_err(|e| StartError::Unconfirmed(format!("reading body: {}", e.without_url())))?;
        read_start(status, &body, op, retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ContactIndex;

    fn contact(i: u64, fields: Value, custom: Option<Value>) -> Contact {
        Contact {
            origin: None,
            index: ContactIndex(i),
            fields: fields.as_object().unwrap().clone(),
            custom,
        }
    }

    fn hooks() -> WebhookUrls {
        WebhookUrls {
            main: "https://relay/webhooks/x/batch/t".into(),
            contact: Some("https://relay/webhooks/x/contact/t".into()),
        }
    }

    #[test]
    fn fullenrich_enrich_carries_custom_with_the_record_key_and_both_webhooks() {
        let c = contact(
            7,
            json!({"first_name": "A", "last_name": "B", "domain": "d.com"}),
            Some(json!({"crm": "x"})),
        );
        let r = start_request(
            Operation::Enrich,
            "n",
            &[c],
            &json!({"enrich_fields": ["contact.phones"]}),
            &hooks(),
        );
        assert_eq!(r.path, "/contact/enrich/bulk");
        assert_eq!(r.body["data"][0]["custom"], json!({"crm": "x", "rid": "7"}));
        assert_eq!(
            r.body["data"][0]["enrich_fields"],
            json!(["contact.phones"])
        );
        assert_eq!(
            r.body["webhook_events"]["contact_finished"],
            "https://relay/webhooks/x/contact/t"
        );
        assert_eq!(r.body["webhook_url"], "https://relay/webhooks/x/batch/t");
    }

    #[test]
    fn enrow_single_versus_bulk() {
        let a = contact(
            0,
            json!({"fullname": "A B", "company_domain": "d.com"}),
            None,
        );
        let b = contact(1, json!({"fullname": "C D", "company_name": "D"}), None);
        let one = start_request(
            Operation::EmailFind,
            "n",
            std::slice::from_ref(&a),
            &json!({"country_code": "FR"}),
            &hooks(),
        );
        assert_eq!(one.path, "/email/find/single");
        assert_eq!(one.body["custom"], json!({"rid": "0"}));
        assert_eq!(
            one.body["settings"],
            json!({"webhook": "https://relay/webhooks/x/batch/t", "country_code": "FR"})
        );
        let bulk = start_request(Operation::EmailFind, "n", &[a, b], &Value::Null, &hooks());
        assert_eq!(bulk.path, "/email/find/bulk");
        assert_eq!(bulk.body["searches"][1]["custom"], "1");
    }

    #[test]
    fn start_answers() {
        let fe = Operation::Enrich;
        let read_start = |status, body: &[u8], op| read_start(status, body, op, None);
        assert_eq!(
            read_start(200, br#"{"enrichment_id":"e1"}"#, fe),
            Ok(Started {
                id: "e1".into(),
                credits: None
            })
        );
        assert_eq!(
            read_start(201, br#"{"id":"x","credits_used":3}"#, Operation::EmailFind)
                .unwrap()
                .credits,
            Some(3.0)
        );
        assert_eq!(
            read_start(
                422,
                br#"{"message":"Insufficient balance"}"#,
                Operation::EmailFind
            ),
            Err(StartError::OutOfCredits)
        );
        assert_eq!(read_start(402, b"{}", fe), Err(StartError::OutOfCredits));
        assert_eq!(read_start(401, b"{}", fe), Err(StartError::Unauthorized));
        assert!(matches!(
            read_start(429, b"{}", fe),
            Err(StartError::RateLimited(_))
        ));
        // Answers that leave open whether the provider stored the job: never retried.
        assert!(matches!(
            read_start(503, b"", fe),
            Err(StartError::Unconfirmed(_))
        ));
        assert!(matches!(
            read_start(200, b"{}", fe),
            Err(StartError::Unconfirmed(_))
        ));
        assert!(matches!(
            read_start(201, br#"{"id":""}"#, Operation::EmailFind),
            Err(StartError::Unconfirmed(_))
        ));
    }

    #[test]
    fn rate_limits_follow_retry_after_and_refusals_say_whether_one_contact_is_to_blame() {
        let fe = Operation::Enrich;
        assert_eq!(
            super::read_start(429, b"{}", fe, Some(7)),
            Err(StartError::RateLimited(Duration::from_secs(7)))
        );
        assert_eq!(
            super::read_start(429, br#"{"code":"error.rate.limit"}"#, fe, None),
            Err(StartError::RateLimited(Duration::from_secs(60)))
        );
        let bad_contact = super::read_start(
            400,
            br#"{"code":"error.linkedin.malformated","message":"x"}"#,
            fe,
            None,
        );
        assert!(matches!(
            bad_contact,
            Err(StartError::Rejected {
                per_contact: true,
                ..
            })
        ));
        let whole = super::read_start(
            400,
            br#"{"code":"error.enrichment.webhook_url","message":"Webhook URL must be start with http or https"}"#,
            fe,
            None,
        );
        assert!(matches!(
            whole,
            Err(StartError::Rejected {
                per_contact: false,
                ..
            })
        ));
        let enrow = super::read_start(
            400,
            br#"{"message":"Missing mandatory property on search n\u00b08 of 50"}"#,
            Operation::EmailFind,
            None,
        );
        assert!(matches!(
            enrow,
            Err(StartError::Rejected {
                per_contact: true,
                ..
            })
        ));
    }
}
