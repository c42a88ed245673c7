//! What the providers refuse, as their documents say: request validation with each provider's
//! error codes and messages (providers.md §2.5, §3.4) and their rate limits (§1, §2.6, §3.5).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

/// A refusal: the status and the body the provider answers with.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: StatusCode,
    pub body: Value,
}

impl axum::response::IntoResponse for Refusal {
    fn into_response(self) -> axum::response::Response {
        (self.status, self.body.to_string()).into_response()
    }
}

/// FullEnrich's error envelope `{"code","message"}`.
pub fn fullenrich(status: StatusCode, code: &str, message: &str) -> Refusal {
    Refusal {
        status,
        body: json!({ "code": code, "message": message }),
    }
}

/// Enrow's current error body `{"message"}`.
pub fn enrow(status: StatusCode, message: &str) -> Refusal {
    Refusal {
        status,
        body: json!({ "message": message }),
    }
}

/// The documented error body of each provider for a status with no more specific cause (an
/// injected failure): FullEnrich's codes, Enrow's messages; Enrow's single endpoints answer 402
/// `{"reason","success"}`.
pub fn for_status(fullenrich_api: bool, single: bool, status: StatusCode) -> Refusal {
    let code = status.as_u16();
    if fullenrich_api {
        let (c, m) = match code {
            400 => ("error.enrichment.data.empty", "Data is empty"),
            401 => ("error.api.key", "Unknown api key"),
            402 => ("error.credits.insufficient", "Insufficient credits"),
            404 => ("error.enrichment.not_found", "Enrichment ID not found"),
            429 => ("error.rate.limit", "Too many requests. Try again in 1m"),
            _ => ("error.internal", "Internal server error"),
        };
        return fullenrich(status, c, m);
    }
    match code {
        402 if single => Refusal {
            status,
            body: json!({ "reason": "Insufficient credits", "success": false }),
        },
        400 => enrow(status, "Missing payload"),
        401 => enrow(status, "This apikey is not valid"),
        402 => enrow(status, "Insufficient credits"),
        422 => enrow(status, "Insufficient balance"),
        429 => enrow(status, "Too Many Requests"),
        503 => enrow(status, "Service unavailable"),
        _ => enrow(status, "Internal server error"),
    }
}

/// Whether a FullEnrich record is a hit: a profile, or an email or phone with its value.
pub fn fullenrich_found(r: &Value) -> bool {
    let any = |k: &str, v: &str| {
        r.pointer(&format!("/contact_info/{k}"))
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|e| e.get(v).is_some_and(|x| !x.is_null())))
    };
    r.get("profile").is_some_and(|p| !p.is_null())
        || any("work_emails", "email")
        || any("personal_emails", "email")
        || any("phones", "number")
}

const ENRICH_FIELDS: [&str; 3] = [
    "contact.work_emails",
    "contact.personal_emails",
    "contact.phones",
];

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("")
}

/// A plausible email, as the providers' checks go: one `@`, a local part, a dotted domain.
fn email_ok(e: &str) -> bool {
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !e.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn linkedin_ok(u: &str) -> bool {
    u.contains("linkedin.com/in/") || u.contains("linkedin.com/sales/")
}

/// Whether a webhook URL names a loopback host (`127.0.0.0/8`, `[::1]`, `localhost`).
fn loopback(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| &h[1..]).unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Enrow's webhook rule: HTTPS only (providers.md §3.3). `http_loopback`: the sandbox is told the
/// relay runs on loopback, where there is no TLS, and takes `http://` to a loopback host.
pub fn enrow_webhook_ok(url: &str, http_loopback: bool) -> bool {
    url.starts_with("https://") || (http_loopback && url.starts_with("http://") && loopback(url))
}

/// Validates a start request the way the provider of `path` does.
pub fn validate(path: &str, req: &Value, http_loopback: bool) -> Result<(), Refusal> {
    if path.starts_with("/contact/") {
        validate_fullenrich(path, req)
    } else {
        validate_enrow(path, req, http_loopback)
    }
}

fn validate_fullenrich(path: &str, req: &Value) -> Result<(), Refusal> {
    if text(req, "name").is_empty() {
        return bad_request("error.enrichment.name.empty", "Enrichment name not set");
    }
    let urls = [
        req.get("webhook_url"),
        req.pointer("/webhook_events/contact_finished"),
    ];
    for url in urls.into_iter().flatten() {
        let u = url.as_str().unwrap_or("");
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return bad_request(
                "error.enrichment.webhook_url",
                "Webhook URL must be start with http or https",
            );
        }
    }
    let data = match req.get("data").and_then(Value::as_array) {
        Some(d) if !d.is_empty() => d,
        _ => return bad_request("error.enrichment.data.empty", "Data is empty"),
    };
    if data.len() > 100 {
        return bad_request(
            "error.enrichment.data.exceeded",
            "Data contains too many contacts (max: 100)",
        );
    }
    let reverse = path.contains("reverse");
    for d in data {
        if reverse {
            fullenrich_email(d)?;
        } else {
            fullenrich_contact(d)?;
        }
        fullenrich_custom(d)?;
    }
    Ok(())
}

/// FullEnrich's 400 with its code and message.
fn bad_request(code: &str, message: &str) -> Result<(), Refusal> {
    Err(fullenrich(StatusCode::BAD_REQUEST, code, message))
}

/// A reverse-email contact: an email.
fn fullenrich_email(d: &Value) -> Result<(), Refusal> {
    let e = text(d, "email");
    if e.is_empty() {
        return bad_request("error.reverse.email.empty", "Email cannot be empty");
    }
    if !email_ok(e) {
        return bad_request("error.reverse.email.invalid", "Email is invalid");
    }
    Ok(())
}

/// An enrichment contact: a LinkedIn URL, or a name and a company; valid `enrich_fields`.
fn fullenrich_contact(d: &Value) -> Result<(), Refusal> {
    let li = text(d, "linkedin_url");
    if !li.is_empty() && !linkedin_ok(li) {
        return bad_request(
            "error.enrichment.linkedin_url.invalid",
            "Invalid linkedin_url",
        );
    }
    if li.is_empty() {
        if text(d, "first_name").is_empty() {
            return bad_request(
                "error.enrichment.first_name.empty",
                "First name cannot be empty",
            );
        }
        if text(d, "last_name").is_empty() {
            return bad_request(
                "error.enrichment.last_name.empty",
                "Last name cannot be empty",
            );
        }
        if text(d, "domain").is_empty() && text(d, "company_name").is_empty() {
            return bad_request("error.enrichment.domain.empty", "Domain cannot be empty");
        }
    }
    let Some(fields) = d.get("enrich_fields") else {
        return Ok(());
    };
    let fields = fields.as_array().cloned().unwrap_or_default();
    if fields.is_empty() {
        return bad_request(
            "error.enrichment.enrich_fields.empty",
            "enrichFields cannot be empty",
        );
    }
    for f in &fields {
        let f = f.as_str().unwrap_or("");
        if !ENRICH_FIELDS.contains(&f) {
            return bad_request(
                "error.enrichment.enrich_field.value",
                &format!(
                    "enrichField '{f}' not valid must be contact.work_emails or contact.phones or contact.personal_emails"
                ),
            );
        }
    }
    Ok(())
}

/// A contact's `custom`: an object of at most 10 string values of at most 100 UTF-16 units.
fn fullenrich_custom(d: &Value) -> Result<(), Refusal> {
    let Some(custom) = d.get("custom").filter(|c| !c.is_null()) else {
        return Ok(());
    };
    let Some(map) = custom.as_object() else {
        return bad_request(
            "error.enrichment.custom.type",
            "Custom field must be an object",
        );
    };
    if map.len() > 10 {
        return bad_request(
            "error.enrichment.custom.key.exceeded",
            "Custom field contains too many keys (max: 10 keys)",
        );
    }
    for v in map.values() {
        let Some(v) = v.as_str() else {
            return bad_request(
                "error.enrichment.custom.value.type",
                "Custom field values must be strings",
            );
        };
        if v.encode_utf16().count() > 100 {
            return bad_request(
                "error.enrichment.custom.value.exceeded",
                "Custom field value max len exceeded (max: 100 character)",
            );
        }
    }
    Ok(())
}

/// An Enrow finder search: `fullname` and a company (domain or name).
fn enrow_search(s: &Value) -> Result<(), &'static str> {
    if text(s, "fullname").is_empty() {
        return Err("input payload is missing fullname");
    }
    if text(s, "company_domain").is_empty() && text(s, "company_name").is_empty() {
        return Err(
            "both company_domain and company_name are absent, input payload needs at least one of them",
        );
    }
    Ok(())
}

/// An Enrow phone search: a LinkedIn URL, or a name and a company.
fn enrow_phone(s: &Value) -> Result<(), &'static str> {
    let li = text(s, "linkedin_url");
    if !li.is_empty() {
        return if linkedin_ok(li) {
            Ok(())
        } else {
            Err("Invalid linkedin_url")
        };
    }
    let named = ["first_name", "firstname", "fullname"]
        .iter()
        .any(|k| !text(s, k).is_empty());
    let company = !text(s, "company_domain").is_empty() || !text(s, "company_name").is_empty();
    if named && company {
        Ok(())
    } else {
        Err("Missing payload")
    }
}

fn validate_enrow(path: &str, req: &Value, http_loopback: bool) -> Result<(), Refusal> {
    let bad = |m: &str| Err(enrow(StatusCode::BAD_REQUEST, m));
    if let Some(url) = req.pointer("/settings/webhook")
        && !enrow_webhook_ok(url.as_str().unwrap_or(""), http_loopback)
    {
        return bad("Webhook URL must be a valid https URL");
    }
    let list = |keys: &[&str]| -> Vec<Value> {
        keys.iter()
            .find_map(|k| req.get(*k).and_then(Value::as_array).cloned())
            .unwrap_or_default()
    };
    match path {
        "/email/find/single" => enrow_search(req).or_else(&bad),
        "/phone/single" => enrow_phone(req).or_else(&bad),
        "/email/verify/single" => {
            let e = text(req, "email");
            if e.is_empty() {
                bad("Missing payload")
            } else if !email_ok(e) {
                bad("invalid email format")
            } else {
                Ok(())
            }
        }
        "/email/verify/bulk" => {
            let items = list(&["verifications", "emails"]);
            if items.is_empty() {
                return bad("At least 1 verification must be present in the payload");
            }
            if items.len() > 5000 {
                return bad("Too many verifications. Limit is currently at 5000 per batch.");
            }
            if items.iter().any(|e| !email_ok(e.as_str().unwrap_or(""))) {
                return bad("invalid email format");
            }
            Ok(())
        }
        "/email/find/bulk" | "/phone/bulk" => {
            enrow_searches(path == "/phone/bulk", &list(&["searches"])).or_else(|m| bad(&m))
        }
        _ => Ok(()),
    }
}

/// A finder or phone bulk's searches: 1 to 5,000 (phone: 3,000), each complete.
fn enrow_searches(phone: bool, items: &[Value]) -> Result<(), String> {
    if items.is_empty() {
        return Err(if phone {
            "At least 1 phone search must be present in the payload"
        } else {
            "Missing searches payload"
        }
        .to_string());
    }
    let limit = if phone { 3000 } else { 5000 };
    if items.len() > limit {
        return Err(format!(
            "Too many searches. Limit is currently at {limit} per batch."
        ));
    }
    for (i, s) in items.iter().enumerate() {
        let check = if phone {
            enrow_phone(s)
        } else {
            enrow_search(s)
        };
        if let Err(m) = check {
            return Err(if m == "Invalid linkedin_url" {
                m.to_string()
            } else {
                format!(
                    "Missing mandatory property on search n°{} of {}",
                    i + 1,
                    items.len()
                )
            });
        }
    }
    Ok(())
}

/// Sliding-window rate limits: FullEnrich `per_minute` requests per key over every endpoint,
/// GETs included; Enrow `per_second` per key on each POST endpoint, GETs free.
#[derive(Debug)]
pub struct RateLimits {
    fullenrich_per_minute: Option<usize>,
    enrow_per_second: Option<usize>,
    seen: HashMap<String, VecDeque<Instant>>,
}

impl RateLimits {
    pub fn new(fullenrich_per_minute: Option<usize>, enrow_per_second: Option<usize>) -> Self {
        RateLimits {
            fullenrich_per_minute,
            enrow_per_second,
            seen: HashMap::new(),
        }
    }

    /// Counts a request; `Err` with the provider's 429 when it is over its limit. A refused
    /// request is not counted (neither provider documents whether its 429s count).
    pub fn admit(&mut self, fullenrich_api: bool, path: &str, post: bool) -> Result<(), Refusal> {
        let (bucket, limit, window) = if fullenrich_api {
            (
                "fullenrich".to_string(),
                self.fullenrich_per_minute,
                Duration::from_secs(60),
            )
        } else if post {
            (
                format!("enrow {path}"),
                self.enrow_per_second,
                Duration::from_secs(1),
            )
        } else {
            return Ok(());
        };
        let Some(limit) = limit else { return Ok(()) };
        let now = Instant::now();
        let log = self.seen.entry(bucket).or_default();
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            log.pop_front();
        }
        if log.len() >= limit {
            return Err(for_status(
                fullenrich_api,
                false,
                StatusCode::TOO_MANY_REQUESTS,
            ));
        }
        log.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fe(data: Value) -> Value {
        json!({ "name": "n", "webhook_url": "http://127.0.0.1/w", "data": data })
    }

    fn code(r: Result<(), Refusal>) -> String {
        let r = r.expect_err("refused");
        r.body
            .get("code")
            .or(r.body.get("message"))
            .and_then(Value::as_str)
            .unwrap()
            .to_string()
    }

    #[test]
    fn fullenrich_refuses_what_its_spec_lists() {
        let ok =
            json!({"first_name": "A", "last_name": "B", "domain": "x.com", "custom": {"rid": "1"}});
        assert_eq!(
            validate_fullenrich("/contact/enrich/bulk", &fe(json!([ok]))),
            Ok(())
        );
        let cases = [
            (json!({"data": [ok]}), "error.enrichment.name.empty"),
            (fe(json!([])), "error.enrichment.data.empty"),
            (
                fe(json!([{"first_name": "A", "domain": "x.com"}])),
                "error.enrichment.last_name.empty",
            ),
            (
                fe(json!([{"first_name": "A", "last_name": "B"}])),
                "error.enrichment.domain.empty",
            ),
            (
                fe(json!([{"linkedin_url": "https://x.com/a"}])),
                "error.enrichment.linkedin_url.invalid",
            ),
            (
                fe(json!([{"linkedin_url": "https://www.linkedin.com/in/a", "enrich_fields": []}])),
                "error.enrichment.enrich_fields.empty",
            ),
            (
                fe(
                    json!([{"linkedin_url": "https://www.linkedin.com/in/a", "enrich_fields": ["contact.x"]}]),
                ),
                "error.enrichment.enrich_field.value",
            ),
            (
                fe(json!([{"linkedin_url": "https://www.linkedin.com/in/a", "custom": {"n": 1}}])),
                "error.enrichment.custom.value.type",
            ),
            (
                fe(
                    json!([{"linkedin_url": "https://www.linkedin.com/in/a", "custom": {"n": "é".repeat(101)}}]),
                ),
                "error.enrichment.custom.value.exceeded",
            ),
        ];
        for (req, expected) in cases {
            assert_eq!(
                code(validate_fullenrich("/contact/enrich/bulk", &req)),
                expected,
                "{req}"
            );
        }
        let many: serde_json::Map<String, Value> =
            (0..11).map(|i| (format!("k{i}"), json!("v"))).collect();
        let req = fe(json!([{"linkedin_url": "https://www.linkedin.com/in/a", "custom": many}]));
        assert_eq!(
            code(validate_fullenrich("/contact/enrich/bulk", &req)),
            "error.enrichment.custom.key.exceeded"
        );
        let mut req = fe(json!([ok]));
        req["webhook_url"] = json!("ftp://x");
        assert_eq!(
            code(validate_fullenrich("/contact/enrich/bulk", &req)),
            "error.enrichment.webhook_url"
        );
        let req = fe(json!([{"email": "nope"}]));
        assert_eq!(
            code(validate_fullenrich("/contact/reverse/email/bulk", &req)),
            "error.reverse.email.invalid"
        );
    }

    #[test]
    fn enrow_refuses_what_its_pages_list_and_plain_http_hooks() {
        let hook = |u: &str| json!({ "webhook": u });
        let find = json!({"fullname": "A B", "company_domain": "x.com", "settings": hook("https://r.example/w")});
        assert_eq!(validate_enrow("/email/find/single", &find, false), Ok(()));
        let mut http = find.clone();
        http["settings"] = hook("http://127.0.0.1:9000/w");
        assert_eq!(
            code(validate_enrow("/email/find/single", &http, false)),
            "Webhook URL must be a valid https URL"
        );
        assert_eq!(validate_enrow("/email/find/single", &http, true), Ok(()));
        http["settings"] = hook("http://relay.example/w");
        assert!(
            validate_enrow("/email/find/single", &http, true).is_err(),
            "http to a public host"
        );
        assert_eq!(
            code(validate_enrow(
                "/email/find/single",
                &json!({"company_domain": "x.com"}),
                true
            )),
            "input payload is missing fullname"
        );
        assert!(
            code(validate_enrow(
                "/email/find/single",
                &json!({"fullname": "A B"}),
                true
            ))
            .starts_with("both company_domain")
        );
        let bulk =
            json!({"searches": [{"fullname": "A B", "company_name": "X"}, {"fullname": "C"}]});
        assert_eq!(
            code(validate_enrow("/email/find/bulk", &bulk, true)),
            "Missing mandatory property on search n°2 of 2"
        );
        assert_eq!(
            code(validate_enrow(
                "/email/verify/single",
                &json!({"email": "a@b"}),
                true
            )),
            "invalid email format"
        );
        assert_eq!(
            code(validate_enrow(
                "/email/verify/bulk",
                &json!({"verifications": []}),
                true
            )),
            "At least 1 verification must be present in the payload"
        );
        let phones: Vec<Value> = (0..3001)
            .map(|_| json!({"linkedin_url": "https://www.linkedin.com/in/a"}))
            .collect();
        assert_eq!(
            code(validate_enrow(
                "/phone/bulk",
                &json!({"searches": phones}),
                true
            )),
            "Too many searches. Limit is currently at 3000 per batch."
        );
    }

    #[test]
    fn rate_limits_are_per_provider_window() {
        let mut limits = RateLimits::new(Some(3), Some(2));
        for _ in 0..3 {
            assert!(limits.admit(true, "/contact/enrich/bulk/x", false).is_ok());
        }
        let refused = limits
            .admit(true, "/contact/enrich/bulk", true)
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.body["code"], "error.rate.limit");
        assert!(limits.admit(false, "/email/find/bulk", true).is_ok());
        assert!(limits.admit(false, "/email/find/bulk", true).is_ok());
        assert!(limits.admit(false, "/email/find/bulk", true).is_err());
        assert!(
            limits.admit(false, "/phone/bulk", true).is_ok(),
            "per endpoint"
        );
        assert!(
            limits.admit(false, "/email/find/bulk", false).is_ok(),
            "Enrow GETs are free"
        );
    }

    #[test]
    fn loopback_hosts() {
        assert!(loopback("http://127.0.0.1:9000/x"));
        assert!(loopback("http://localhost/x"));
        assert!(loopback("http://[::1]:80/x"));
        assert!(!loopback("http://127.example.com/x"));
        assert!(!loopback("http://10.0.0.1/"));
        assert!(!loopback("http://example.com/127.0.0.1"));
    }
}
