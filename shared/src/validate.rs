//! `POST /jobs` validation: everything a provider would refuse is refused here first, with the
//! field path and the rule, before a credit is spent. Messages name rules, never values (values
//! are contact data).

use serde_json::{Map, Value};

use crate::Provider;
use crate::jobs::{Contact, Operation, RECORD_KEY};

/// The most contacts one job takes (documented in the README).
pub const MAX_CONTACTS: usize = 50_000;
/// FullEnrich allows 10 `custom` keys; the relay uses one (`rid`) to map results back.
pub const FULLENRICH_CUSTOM_KEYS: usize = 9;
pub const FULLENRICH_CUSTOM_VALUE_CHARS: usize = 100;
pub const MAX_NAME_CHARS: usize = 200;
/// A bound on one contact's `custom` (any provider), serialized.
pub const MAX_CUSTOM_BYTES: usize = 2048;

const FULLENRICH_FIELDS: [&str; 3] = [
    "contact.work_emails",
    "contact.personal_emails",
    "contact.phones",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A valid job request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub provider: Provider,
    pub operation: Operation,
    pub name: String,
    pub options: Value,
    pub contacts: Vec<Contact>,
    /// Where `job.completed` is POSTed when the job ends.
    pub callback_url: Option<String>,
}

/// The longest `callback_url` taken.
pub const MAX_CALLBACK_URL_CHARS: usize = 2048;

/// Which callback URLs a deployment takes: https to a public host always; plain http to a
/// loopback address only where the operator allows it (the local stack).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallbackPolicy {
    pub allow_loopback: bool,
}

/// The fields each operation reads from a contact, and which of them it needs.
pub fn operation_fields(op: Operation) -> &'static [&'static str] {
    match op {
        Operation::EmailFind => &["fullname", "company_domain", "company_name"],
        Operation::EmailVerify | Operation::ReverseEmail => &["email"],
        Operation::PhoneFind => &[
            "linkedin_url",
            "first_name",
            "last_name",
            "company_domain",
            "company_name",
        ],
        Operation::Enrich => &[
            "linkedin_url",
            "first_name",
            "last_name",
            "domain",
            "company_name",
        ],
    }
}

fn requirement(op: Operation, c: &Map<String, Value>) -> Result<(), (&'static str, &'static str)> {
    let has = |k: &str| {
        c.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
    };
    match op {
        Operation::EmailFind => {
            if !has("fullname") {
                return Err((
                    "fullname",
                    "is required for email_find (or first_name + last_name, joined into it)",
                ));
            }
            if !has("company_domain") && !has("company_name") {
                return Err((
                    "company_domain",
                    "company_domain or company_name is required",
                ));
            }
        }
        Operation::EmailVerify | Operation::ReverseEmail => {
            if !has("email") {
                return Err(("email", "is required"));
            }
        }
        Operation::PhoneFind | Operation::Enrich => {
            let company = if op == Operation::Enrich {
                "domain"
            } else {
                "company_domain"
            };
            if !has("linkedin_url") {
                if !has("first_name") {
                    return Err((
                        "first_name",
                        "is required without a linkedin_url (a contact needs a linkedin_url, or first_name + last_name + a company)",
                    ));
                }
                if !has("last_name") {
                    return Err((
                        "last_name",
                        "is required without a linkedin_url (a contact needs a linkedin_url, or first_name + last_name + a company)",
                    ));
                }
                if !has(company) && !has("company_name") {
                    return Err((
                        if op == Operation::Enrich {
                            "domain"
                        } else {
                            "company_domain"
                        },
                        "a company (domain or company_name) is required with a name when there is no linkedin_url",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// One DNS label as the HTML standard's email rule and hostnames take it: 1 to 63 letters, digits
/// and hyphens, not starting or ending with a hyphen.
fn is_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// A domain name a provider can look up: dot-separated labels ([`is_label`]), at least two of
/// them, at most 253 characters, and a top-level label that is not all digits (no IP addresses).
pub fn is_domain(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    s.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| is_label(l))
        && !labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

/// The HTML living standard's "valid email address" (the `input type=email` rule): a local part
/// of letters, digits and ``.!#$%&'*+/=?^_`{|}~-``, an `@`, and dot-separated labels. The relay
/// also wants a dotted domain, as an address on the internet has.
pub fn is_email(s: &str) -> bool {
    const LOCAL: &[u8] = b".!#$%&'*+/=?^_`{|}~-";
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && s.len() <= 254
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || LOCAL.contains(&b))
        && is_domain(domain)
}

/// A LinkedIn profile URL as the providers take it: `http(s)://`, a `linkedin.com` host (`www.`
/// or a country prefix allowed), and a profile path (`/in/<handle>`, `/pub/…`, or Sales
/// Navigator's `/sales/lead/…`, `/sales/people/…`).
pub fn is_linkedin_profile(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_ok = host == "linkedin.com"
        || host.strip_suffix(".linkedin.com").is_some_and(|sub| {
            sub == "www" || (sub.len() <= 3 && sub.bytes().all(|b| b.is_ascii_lowercase()))
        });
    let path = path.split(['?', '#']).next().unwrap_or("");
    let handle = ["in/", "pub/", "sales/lead/", "sales/people/"]
        .iter()
        .find_map(|p| path.strip_prefix(p));
    host_ok
        && handle.is_some_and(|h| !h.trim_end_matches('/').is_empty())
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A string's length as FullEnrich counts it (a JavaScript string's `length`: UTF-16 code units,
/// so an emoji counts 2).
pub fn fullenrich_len(s: &str) -> usize {
    s.encode_utf16().count()
}

pub fn validate(body: &Value) -> Result<NewJob, Invalid> {
    validate_with(body, CallbackPolicy::default())
}

/// [`validate`], with the deployment's rule for callback URLs.
pub fn validate_with(body: &Value, policy: CallbackPolicy) -> Result<NewJob, Invalid> {
    let (mut job, obj) = validate_head(body, policy)?;
    let contacts = match obj.get("contacts") {
        Some(Value::Array(a)) => a,
        _ => return Err(invalid("contacts", "is required: an array of contacts")),
    };
    if contacts.is_empty() {
        return Err(invalid("contacts", "must hold at least one contact"));
    }
    if contacts.len() > MAX_CONTACTS {
        return Err(invalid(
            "contacts",
            format!("must hold at most {MAX_CONTACTS} contacts per job"),
        ));
    }
    job.contacts = validate_contacts(job.operation, 0, contacts)?;
    Ok(job)
}

/// Each contact of `contacts` ([`validate_contact`]), the first being the job's contact `offset`
/// (a page of a staged job): errors name the contact by its index in the whole job.
pub fn validate_contacts(
    op: Operation,
    offset: usize,
    contacts: &[Value],
) -> Result<Vec<Contact>, Invalid> {
    contacts
        .iter()
        .enumerate()
        .map(|(i, c)| validate_contact(op, offset + i, c))
        .collect()
}

/// A staged job's `POST /jobs` (`"staged": {"contacts": N}`): the job's fields as
/// [`validate_with`] takes them, no `contacts` (they come in pages), and how many will come.
/// Returns the job (no contacts) and N.
pub fn validate_staged(body: &Value, policy: CallbackPolicy) -> Result<(NewJob, u64), Invalid> {
    let (job, obj) = validate_head(body, policy)?;
    if obj
        .get("contacts")
        .is_some_and(|c| c != &Value::Array(vec![]))
    {
        return Err(invalid(
            "contacts",
            "must be absent (or empty) on a staged job: its contacts come in pages (POST /jobs/{id}/contacts)",
        ));
    }
    let staged = obj.get("staged").and_then(Value::as_object);
    let n = staged
        .and_then(|s| s.get("contacts"))
        .and_then(Value::as_u64)
        .filter(|n| (1..=MAX_CONTACTS as u64).contains(n))
        .ok_or_else(|| {
            invalid(
                "staged.contacts",
                format!("is required: how many contacts the job will take, 1 to {MAX_CONTACTS}"),
            )
        })?;
    match staged.and_then(|s| s.get("digest")) {
        None | Some(Value::Null) => {}
        Some(Value::String(d)) if d.len() <= 128 => {}
        Some(_) => {
            return Err(invalid(
                "staged.digest",
                "must be a string of at most 128 characters",
            ));
        }
    }
    if let Some(k) = staged.and_then(|s| {
        s.keys()
            .find(|k| !["contacts", "digest"].contains(&k.as_str()))
    }) {
        return Err(invalid(
            format!("staged.{k}"),
            "is not a field of staged (contacts, digest)",
        ));
    }
    Ok((job, n))
}

/// The job's own fields (provider, operation, name, options, callback URL): everything but its
/// contacts, which the caller validates.
fn validate_head(
    body: &Value,
    policy: CallbackPolicy,
) -> Result<(NewJob, &Map<String, Value>), Invalid> {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("", "the body must be a JSON object"))?;
    let provider = match obj.get("provider") {
        Some(Value::String(p)) => p
            .parse::<Provider>()
            .ok()
            .ok_or_else(|| invalid("provider", "must be \"enrow\" or \"fullenrich\""))?,
        _ => {
            return Err(invalid(
                "provider",
                "is required: \"enrow\" or \"fullenrich\"",
            ));
        }
    };
    let operation = match obj.get("operation") {
        Some(Value::String(o)) => o
            .parse::<Operation>()
            .ok()
            .filter(|op| op.provider() == provider),
        _ => None,
    }
    .ok_or_else(|| {
        invalid(
            "operation",
            match provider {
                Provider::Enrow => "must be one of email_find, email_verify, phone_find for enrow",
                Provider::Fullenrich => "must be one of enrich, reverse_email for fullenrich",
            },
        )
    })?;
    let name = match obj.get("name") {
        None | Some(Value::Null) => format!("enrich-relay {}", operation.as_str()),
        Some(Value::String(n)) if n.chars().count() <= MAX_NAME_CHARS && !n.trim().is_empty() => {
            n.clone()
        }
        Some(_) => {
            return Err(invalid(
                "name",
                format!("must be a non-empty string of at most {MAX_NAME_CHARS} characters"),
            ));
        }
    };
    let options = validate_options(operation, obj.get("options"))?;
    let callback_url = match obj.get("callback_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => {
            Some(validate_callback_url(u, policy).map_err(|rule| invalid("callback_url", rule))?)
        }
        Some(_) => return Err(invalid("callback_url", "must be a string (an https URL)")),
    };
    Ok((
        NewJob {
            provider,
            operation,
            name,
            options,
            contacts: Vec::new(),
            callback_url,
        },
        obj,
    ))
}

/// A callback URL the relay may POST to: https, a host name or a public address, no
/// credentials. Private, loopback and link-local addresses are refused (the relay runs inside a
/// cloud network; a callback must not reach it), loopback http only under the policy.
pub fn validate_callback_url(u: &str, policy: CallbackPolicy) -> Result<String, String> {
    use std::net::IpAddr;
    if u.chars().count() > MAX_CALLBACK_URL_CHARS {
        return Err(format!(
            "must be at most {MAX_CALLBACK_URL_CHARS} characters"
        ));
    }
    let url = reqwest::Url::parse(u).map_err(|_| "must be an absolute https URL".to_string())?;
    let ip = match url.host() {
        Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        Some(url::Host::Domain(_)) => None,
        None => return Err("must be an absolute https URL".into()),
    };
    // A host name's trailing dot (`localhost.`) names the same host.
    let host = url
        .host_str()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase());
    let loopback = ip.is_some_and(|ip| ip.is_loopback()) || host.as_deref() == Some("localhost");
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials (user:password@)".into());
    }
    if loopback && policy.allow_loopback {
        return if matches!(url.scheme(), "http" | "https") {
            Ok(url.to_string())
        } else {
            Err("must be an http or https URL".into())
        };
    }
    if url.scheme() != "https" {
        return Err("must be an https URL".into());
    }
    let private = loopback
        || host.as_deref().is_some_and(|h| h.ends_with(".localhost"))
        || ip.is_some_and(|ip| !is_public_address(ip));
    if private {
        return Err(
            "must point to a public host (not a private, loopback or link-local address)".into(),
        );
    }
    Ok(url.to_string())
}

/// The fields an operation takes from a contact besides its own ([`operation_fields`]), because
/// it derives one of its own from them: Enrow `email_find` makes `fullname` from `first_name` +
/// `last_name` and reads `domain` as `company_domain`; FullEnrich `enrich` and Enrow
/// `phone_find` split a `fullname` into `first_name` + `last_name` and read the other company
/// domain field as theirs.
pub fn derivable_fields(op: Operation) -> &'static [&'static str] {
    match op {
        Operation::EmailFind => &["first_name", "last_name", "domain"],
        Operation::Enrich => &["fullname", "company_domain"],
        Operation::PhoneFind => &["fullname", "domain"],
        Operation::EmailVerify | Operation::ReverseEmail => &[],
    }
}

/// Fills the operation's fields from the others a contact has ([`derivable_fields`]), where
/// they are missing: `fullname` from `first_name` + `last_name` (both needed), `first_name` +
/// `last_name` from a `fullname` (its first word, and the rest; a one-word name gives a first
/// name only), and one company domain field from the other. The fields derived from are left
/// in place; [`validate_contact`] keeps only the operation's own.
pub fn derive_fields(op: Operation, fields: &mut Map<String, Value>) {
    let get = |f: &Map<String, Value>, k: &str| {
        f.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (own_domain, other_domain) = match op {
        Operation::EmailFind | Operation::PhoneFind => ("company_domain", "domain"),
        Operation::Enrich => ("domain", "company_domain"),
        Operation::EmailVerify | Operation::ReverseEmail => return,
    };
    if get(fields, own_domain).is_none()
        && let Some(d) = get(fields, other_domain)
    {
        fields.insert(own_domain.into(), Value::from(d));
    }
    match op {
        Operation::EmailFind => {
            if get(fields, "fullname").is_none()
                && let (Some(first), Some(last)) =
                    (get(fields, "first_name"), get(fields, "last_name"))
            {
                fields.insert("fullname".into(), Value::from(format!("{first} {last}")));
            }
        }
        _ => {
            if get(fields, "first_name").is_none()
                && get(fields, "last_name").is_none()
                && let Some(full) = get(fields, "fullname")
            {
                let mut words = full.split_whitespace();
                let first = words.next().unwrap_or_default().to_string();
                let rest = words.collect::<Vec<_>>().join(" ");
                fields.insert("first_name".into(), Value::from(first));
                if !rest.is_empty() {
                    fields.insert("last_name".into(), Value::from(rest));
                }
            }
        }
    }
}

/// A domain field's value reduced to the registrable domain a provider looks up: a website URL
/// or a host (`https://www.acme.com/about`, `http://soylent.com`, `www.acme.com`, `Acme.COM.`)
/// becomes its registrable domain by the Public Suffix List (`acme.com`; `shop.example.co.uk`
/// becomes `example.co.uk`). `Err` holds the rule when there is no such domain (spaces, an IP
/// address, a bare word, a public suffix alone).
pub fn reduce_domain(value: &str) -> Result<String, &'static str> {
    const RULE: &str = "must be a domain name like example.com (a known suffix), or a website URL such as https://www.example.com/about (sent as example.com); not an IP address, a bare word or a suffix alone";
    let v = value.trim();
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RULE);
    }
    let with_scheme = if v.contains("://") {
        v.to_string()
    } else {
        format!("http://{v}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|_| RULE)?;
    if !matches!(url.scheme(), "http" | "https") || url.password().is_some() {
        return Err(RULE);
    }
    let host = match url.host() {
        Some(url::Host::Domain(h)) => h.trim_end_matches('.').to_ascii_lowercase(),
        _ => return Err(RULE),
    };
    let domain = psl::domain(host.as_bytes()).ok_or(RULE)?;
    // A suffix the list knows (so a typo such as `acme.cmo`, or `www.acme`, is refused), or a
    // top-level domain reserved for examples and tests (RFC 2606: `.example`, `.test`).
    let tld = host.rsplit('.').next().unwrap_or_default();
    if !domain.suffix().is_known() && !matches!(tld, "example" | "test") {
        return Err(RULE);
    }
    let registrable = std::str::from_utf8(domain.as_bytes())
        .map_err(|_| RULE)?
        .to_string();
    if is_domain(&registrable) {
        Ok(registrable)
    } else {
        Err(RULE)
    }
}

/// Whether the relay may call `ip`: not private, loopback, link-local (e.g. `169.254.169.254`),
/// carrier-grade NAT, unspecified, broadcast or documentation. Checked on a callback URL's
/// literal address at submit, and on every address its host name resolves to at connect time
/// ([`crate::callback`]).
pub fn is_public_address(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let private = match ip {
        IpAddr::V4(a) => {
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_documentation()
                // 100.64.0.0/10, carrier-grade NAT
                || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link-local
                || (a.segments()[0] & 0xfe00) == 0xfc00
                || (a.segments()[0] & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped().is_some()
        }
    };
    !private
}

pub fn validate_contact(op: Operation, i: usize, c: &Value) -> Result<Contact, Invalid> {
    let at = |f: &str| format!("contacts[{i}].{f}");
    let obj = c
        .as_object()
        .ok_or_else(|| invalid(format!("contacts[{i}]"), "must be an object"))?;
    let mut fields = Map::new();
    for k in operation_fields(op).iter().chain(derivable_fields(op)) {
        match obj.get(*k) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.len() <= 500 => {
                fields.insert(k.to_string(), Value::from(s.trim()));
            }
            Some(_) => return Err(invalid(at(k), "must be a string of at most 500 bytes")),
        }
    }
    if op == Operation::EmailFind {
        let has = |k: &str| {
            fields
                .get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        if !has("fullname") && has("first_name") != has("last_name") {
            let missing = if has("first_name") {
                "last_name"
            } else {
                "first_name"
            };
            return Err(invalid(
                at(missing),
                "is required to make the fullname email_find needs (first_name + last_name), or give a fullname",
            ));
        }
    }
    derive_fields(op, &mut fields);
    fields.retain(|k, _| operation_fields(op).contains(&k.as_str()));
    requirement(op, &fields).map_err(|(f, rule)| invalid(at(f), rule))?;
    // Formats: what a provider would refuse for the whole request (a chunk of up to 5,000
    // contacts) is refused here, for this contact, before anything is sent. A domain field is
    // reduced to its registrable domain first: that is what is sent.
    for (k, v) in fields.iter_mut() {
        let text = v.as_str().unwrap_or_default();
        if text.is_empty() {
            continue;
        }
        let rule = match k.as_str() {
            "email" if !is_email(text) => {
                "is not a valid email address (the HTML standard's rule, with a dotted domain)"
            }
            "domain" | "company_domain" => match reduce_domain(text) {
                Ok(d) => {
                    *v = Value::from(d);
                    continue;
                }
                Err(rule) => rule,
            },
            "linkedin_url" if !is_linkedin_profile(text) => {
                "must be a LinkedIn profile URL, like https://www.linkedin.com/in/<handle>"
            }
            _ => continue,
        };
        return Err(invalid(at(k), rule));
    }
    let custom = match obj.get("custom") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            if serde_json::to_string(m).map(|s| s.len()).unwrap_or(0) > MAX_CUSTOM_BYTES {
                return Err(invalid(
                    at("custom"),
                    format!("must be at most {MAX_CUSTOM_BYTES} bytes as JSON"),
                ));
            }
            if op.provider() == Provider::Fullenrich {
                if m.contains_key(RECORD_KEY) {
                    return Err(invalid(
                        at(&format!("custom.{RECORD_KEY}")),
                        format!("\"{RECORD_KEY}\" is reserved by the relay to map results back"),
                    ));
                }
                if m.len() > FULLENRICH_CUSTOM_KEYS {
                    return Err(invalid(
                        at("custom"),
                        format!(
                            "FullEnrich takes at most 10 custom keys and the relay reserves one (\"{RECORD_KEY}\"): at most {FULLENRICH_CUSTOM_KEYS} keys"
                        ),
                    ));
                }
                for (k, v) in m {
                    match v {
                        Value::String(s) if fullenrich_len(s) <= FULLENRICH_CUSTOM_VALUE_CHARS => {}
                        Value::String(_) => {
                            return Err(invalid(
                                at(&format!("custom.{k}")),
                                format!(
                                    "must be at most {FULLENRICH_CUSTOM_VALUE_CHARS} characters as FullEnrich counts them (UTF-16 code units: an emoji counts 2)"
                                ),
                            ));
                        }
                        _ => {
                            return Err(invalid(
                                at(&format!("custom.{k}")),
                                "must be a string (FullEnrich custom values are strings)",
                            ));
                        }
                    }
                }
            }
            Some(Value::Object(m.clone()))
        }
        Some(_) => return Err(invalid(at("custom"), "must be an object")),
    };
    Ok(Contact {
        index: i as u64,
        fields,
        custom,
    })
}

/// The longest deadline a job may ask for (`options.deadline_hours`): 30 days.
pub const MAX_DEADLINE_HOURS: u64 = 720;

fn validate_options(op: Operation, options: Option<&Value>) -> Result<Value, Invalid> {
    let Some(options) = options.filter(|o| !o.is_null()) else {
        return Ok(Value::Object(Map::new()));
    };
    let m = options
        .as_object()
        .ok_or_else(|| invalid("options", "must be an object"))?;
    let mut out = Map::new();
    for (k, v) in m {
        let field = format!("options.{k}");
        match (op, k.as_str()) {
            (Operation::Enrich, "enrich_fields") => {
                let list = v
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| invalid(&field, "must be a non-empty array"))?;
                for (j, f) in list.iter().enumerate() {
                    if !f.as_str().is_some_and(|f| FULLENRICH_FIELDS.contains(&f)) {
                        return Err(invalid(
                            format!("{field}[{j}]"),
                            "must be contact.work_emails, contact.personal_emails or contact.phones",
                        ));
                    }
                }
            }
            (Operation::EmailFind | Operation::PhoneFind, "country_code") => {
                if !v
                    .as_str()
                    .is_some_and(|c| c.len() == 2 && c.chars().all(|c| c.is_ascii_alphabetic()))
                {
                    return Err(invalid(
                        &field,
                        "must be an ISO 3166 alpha-2 code, e.g. \"US\"",
                    ));
                }
            }
            // How long the job waits for its results after its last chunk started (default
            // `JOB_DEADLINE_HOURS`); then its open contacts are `timed_out`.
            (_, "deadline_hours") => {
                if !v
                    .as_u64()
                    .is_some_and(|h| (1..=MAX_DEADLINE_HOURS).contains(&h))
                {
                    return Err(invalid(
                        &field,
                        format!("must be a whole number of hours from 1 to {MAX_DEADLINE_HOURS}"),
                    ));
                }
            }
            (Operation::EmailFind | Operation::PhoneFind, "retrieve_gender") => {
                if !v.is_boolean() {
                    return Err(invalid(&field, "must be true or false"));
                }
            }
            _ => {
                return Err(invalid(
                    &field,
                    format!("is not an option of {}", op.as_str()),
                ));
            }
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fe(contacts: Value) -> Result<NewJob, Invalid> {
        validate(&json!({"provider": "fullenrich", "operation": "enrich", "contacts": contacts}))
    }

    fn field(r: Result<NewJob, Invalid>) -> String {
        r.expect_err("invalid").field
    }

    #[test]
    fn a_deadline_is_whole_hours_within_thirty_days() {
        let li = json!({"linkedin_url": "https://www.linkedin.com/in/ada"});
        let with = |h: Value| {
            validate(&json!({"provider": "fullenrich", "operation": "enrich",
                "options": {"deadline_hours": h}, "contacts": [li]}))
        };
        assert_eq!(with(json!(48)).unwrap().options["deadline_hours"], 48);
        for bad in [json!(0), json!(1.5), json!("24"), json!(721)] {
            let e = with(bad.clone()).expect_err("invalid");
            assert_eq!(e.field, "options.deadline_hours", "{bad}");
            assert!(e.message.contains("1 to 720"), "{}", e.message);
        }
    }

    #[test]
    fn fullenrich_custom_rules_name_the_field() {
        let ok = json!({"linkedin_url": "https://www.linkedin.com/in/x"});
        let mut c = ok.clone();
        c["custom"] = json!({"user_id": 12});
        assert_eq!(field(fe(json!([ok, c]))), "contacts[1].custom.user_id");
        let mut c = ok.clone();
        c["custom"] = Value::Object((0..10).map(|i| (format!("k{i}"), json!("v"))).collect());
        let e = fe(json!([c])).unwrap_err();
        assert_eq!(e.field, "contacts[0].custom");
        assert!(e.message.contains("reserves one"), "{}", e.message);
        let mut c = ok.clone();
        c["custom"] = json!({"note": "x".repeat(101)});
        assert_eq!(field(fe(json!([c]))), "contacts[0].custom.note");
        let mut c = ok.clone();
        c["custom"] = Value::Object(
            (0..9)
                .map(|i| (format!("k{i}"), json!("x".repeat(100))))
                .collect(),
        );
        assert!(fe(json!([c])).is_ok(), "9 keys of 100 characters are fine");
    }

    #[test]
    fn required_fields_per_operation() {
        assert_eq!(
            field(fe(json!([{"first_name": "A", "last_name": "B"}]))),
            "contacts[0].domain"
        );
        assert_eq!(
            field(fe(json!([{"first_name": "A", "domain": "d.com"}]))),
            "contacts[0].last_name"
        );
        let enrow = |op: &str, c: Value| {
            validate(&json!({"provider": "enrow", "operation": op, "contacts": [c]}))
        };
        assert_eq!(
            field(enrow("email_find", json!({"company_domain": "d.com"}))),
            "contacts[0].fullname"
        );
        assert_eq!(
            field(enrow("email_verify", json!({"email": "not an email"}))),
            "contacts[0].email"
        );
        assert!(
            enrow(
                "phone_find",
                json!({"linkedin_url": "https://www.linkedin.com/in/x"})
            )
            .is_ok()
        );
        assert_eq!(
            field(enrow("phone_find", json!({"first_name": 3}))),
            "contacts[0].first_name"
        );
    }

    #[test]
    fn job_level_rules() {
        assert_eq!(field(validate(&json!({"provider": "x"}))), "provider");
        assert_eq!(
            field(validate(
                &json!({"provider": "enrow", "operation": "enrich", "contacts": []})
            )),
            "operation"
        );
        assert_eq!(field(fe(json!([]))), "contacts");
        let li = json!({"linkedin_url": "https://www.linkedin.com/in/x"});
        let many = Value::Array(vec![li.clone(); MAX_CONTACTS + 1]);
        assert_eq!(field(fe(many)), "contacts");
        let r = validate(
            &json!({"provider": "fullenrich", "operation": "enrich", "options": {"enrich_fields": ["contact.x"]}, "contacts": [li]}),
        );
        assert_eq!(field(r), "options.enrich_fields[0]");
    }

    #[test]
    fn emails() {
        for good in [
            "a.b@example.co",
            "first+tag@sub.example.com",
            "o'brien@example.ie",
            "x_y-z@a-b.example",
            "!#$%&'*+/=?^_`{|}~-@example.com",
        ] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "@b.com",
            "a@b.com.",
            "a b@c.com",
            "a@@b.com",
            "a@-b.com",
            "a@b-.com",
            "\"quoted\"@example.com",
            "ad\u{e9}le@example.com",
            "a@exa_mple.com",
            "a@1.2.3.4",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        let label63 = "a".repeat(63);
        assert!(is_email(&format!("a@{label63}.com")));
        assert!(!is_email(&format!("a@{label63}a.com")));
    }

    #[test]
    fn domains_and_linkedin_profiles() {
        for good in [
            "example.com",
            "sub.example.co.uk",
            "xn--bcher-kva.example",
            "a-b.io",
        ] {
            assert!(is_domain(good), "{good}");
        }
        for bad in [
            "example",
            "https://example.com",
            "example.com/about",
            "exa mple.com",
            ".example.com",
            "example..com",
            "-a.com",
            "10.0.0.1",
        ] {
            assert!(!is_domain(bad), "{bad}");
        }
        for good in [
            "https://www.linkedin.com/in/ada-lovelace",
            "https://linkedin.com/in/ada/",
            "http://fr.linkedin.com/in/ada?trk=x",
            "https://www.linkedin.com/in/ACwAAAbcdef",
            "https://www.linkedin.com/sales/lead/ACwAA123,NAME_SEARCH",
            "https://www.LinkedIn.com/pub/ada/1/2/3",
        ] {
            assert!(is_linkedin_profile(good), "{good}");
        }
        for bad in [
            "u",
            "www.linkedin.com/in/ada",
            "https://www.linkedin.com/company/acme",
            "https://www.linkedin.com/in/",
            "https://linkedin.com.evil.example/in/ada",
            "https://evil.example/in/ada",
            "https://www.linkedin.com/in/ada lovelace",
        ] {
            assert!(!is_linkedin_profile(bad), "{bad}");
        }
        let enrich = |c: Value| fe(json!([c]));
        assert_eq!(
            field(enrich(
                json!({"first_name": "A", "last_name": "B", "domain": "https://10.0.0.1/x"})
            )),
            "contacts[0].domain"
        );
        assert_eq!(
            field(enrich(json!({"linkedin_url": "linkedin.com/in/ada"}))),
            "contacts[0].linkedin_url"
        );
        let e = validate(&json!({"provider": "enrow", "operation": "email_find", "contacts": [{"fullname": "A B", "company_domain": "acme"}]})).unwrap_err();
        assert_eq!(e.field, "contacts[0].company_domain");
        assert!(!e.message.contains("acme"), "messages never echo values");
    }

    #[test]
    fn fullenrich_counts_custom_lengths_in_utf16_units() {
        assert_eq!(fullenrich_len("abc"), 3);
        assert_eq!(fullenrich_len("\u{e9}"), 1);
        assert_eq!(fullenrich_len("\u{1F600}"), 2);
        let ok = json!({"linkedin_url": "https://www.linkedin.com/in/x"});
        let mut c = ok.clone();
        // 50 emoji: 50 characters, 100 UTF-16 units: fits.
        c["custom"] = json!({"note": "\u{1F600}".repeat(50)});
        assert!(fe(json!([c])).is_ok());
        // 51 emoji: 51 characters (a character count would let it pass), 102 units: refused.
        let mut c = ok.clone();
        c["custom"] = json!({"note": "\u{1F600}".repeat(51)});
        let e = fe(json!([c])).unwrap_err();
        assert_eq!(e.field, "contacts[0].custom.note");
        assert!(e.message.contains("UTF-16"), "{}", e.message);
    }

    #[test]
    fn callback_urls_are_https_to_public_hosts() {
        let strict = CallbackPolicy::default();
        let local = CallbackPolicy {
            allow_loopback: true,
        };
        for ok in [
            "https://hooks.example.com/relay/done",
            "https://hooks.example.com:8443/x?y=1",
            "https://93.184.216.34/done",
        ] {
            assert!(validate_callback_url(ok, strict).is_ok(), "{ok}");
        }
        for (bad, rule) in [
            ("http://hooks.example.com/done", "https"),
            ("ftp://hooks.example.com/done", "https"),
            ("hooks.example.com/done", "absolute"),
            ("https://user:pw@hooks.example.com/", "credentials"),
            ("https://127.0.0.1/done", "public"),
            ("https://localhost/done", "public"),
            ("https://localhost./done", "public"),
            ("https://LocalHost./done", "public"),
            ("https://api.localhost/done", "public"),
            ("https://api.localhost./done", "public"),
            ("https://10.1.2.3/done", "public"),
            ("https://192.168.0.1/done", "public"),
            ("https://172.16.0.1/done", "public"),
            ("https://169.254.169.254/latest/meta-data", "public"),
            ("https://100.64.0.1/done", "public"),
            ("https://0.0.0.0/done", "public"),
            ("https://[::1]/done", "public"),
            ("https://[fd00::1]/done", "public"),
            ("https://[fe80::1]/done", "public"),
            ("https://[::ffff:10.0.0.1]/done", "public"),
            ("http://127.0.0.1:8080/done", "https"),
        ] {
            let e = validate_callback_url(bad, strict).expect_err(bad);
            assert!(e.contains(rule), "{bad}: {e}");
        }
        // The local stack's receivers: plain http to loopback, and only loopback.
        assert!(validate_callback_url("http://127.0.0.1:8080/done", local).is_ok());
        assert!(validate_callback_url("http://localhost:8080/done", local).is_ok());
        assert!(validate_callback_url("http://10.0.0.1/done", local).is_err());
        let long = format!(
            "https://hooks.example.com/{}",
            "a".repeat(MAX_CALLBACK_URL_CHARS)
        );
        assert!(validate_callback_url(&long, strict).is_err());
        // In a request: the field is named, and the rule.
        let body = json!({"provider": "enrow", "operation": "email_verify",
            "callback_url": "http://hooks.example.com/", "contacts": [{"email": "a@example.com"}]});
        let e = validate(&body).unwrap_err();
        assert_eq!(e.field, "callback_url");
        assert!(e.message.contains("https"));
        let body = json!({"provider": "enrow", "operation": "email_verify",
            "callback_url": 5, "contacts": [{"email": "a@example.com"}]});
        assert_eq!(validate(&body).unwrap_err().field, "callback_url");
    }

    #[test]
    fn a_website_or_www_host_is_reduced_to_its_registrable_domain() {
        for (input, sent) in [
            ("https://www.acme.com/", "acme.com"),
            ("https://www.acme.com/about?x=1#y", "acme.com"),
            ("http://soylent.com", "soylent.com"),
            ("www.acme.com", "acme.com"),
            ("WWW.Acme.COM.", "acme.com"),
            ("acme.com/contact", "acme.com"),
            ("shop.example.co.uk", "example.co.uk"),
            ("https://blog.initech.com.au:8443/p", "initech.com.au"),
            ("b\u{fc}cher.de", "xn--bcher-kva.de"),
            ("acme.example", "acme.example"),
            ("example.com", "example.com"),
        ] {
            assert_eq!(reduce_domain(input).as_deref(), Ok(sent), "{input}");
        }
        for bad in [
            "",
            "acme",
            "co.uk",
            "https://10.0.0.1/",
            "http://[::1]/",
            "exa mple.com",
            "ftp://acme.com",
            "mailto:a@acme.com",
            "https://user:pw@acme.com",
            "www.acme",
            "acme.cmo",
        ] {
            assert!(reduce_domain(bad).is_err(), "{bad}");
        }
        // In a request (the API and the CLI alike): what is sent is the reduced domain.
        let job = fe(
            json!([{"first_name": "A", "last_name": "B", "company_name": "Acme",
            "domain": "https://www.acme.com/about"}]),
        )
        .unwrap();
        assert_eq!(job.contacts[0].field("domain"), Some("acme.com"));
        let e = validate(&json!({"provider": "enrow", "operation": "email_find",
            "contacts": [{"fullname": "A B", "company_domain": "https://www.acme"}]}))
        .unwrap_err();
        assert_eq!(e.field, "contacts[0].company_domain");
        assert!(e.message.contains("website URL"), "{}", e.message);
    }

    #[test]
    fn each_operation_derives_its_fields_from_what_the_contact_has() {
        let enrow = |c: Value| {
            validate(&json!({"provider": "enrow", "operation": "email_find", "contacts": [c]}))
        };
        // Enrow email_find: fullname from first + last, company_domain from domain.
        let job = enrow(
            json!({"first_name": "Jos\u{e9}", "last_name": "Garc\u{ed}a",
            "domain": "www.acme.com"}),
        )
        .unwrap();
        let c = &job.contacts[0];
        assert_eq!(c.field("fullname"), Some("Jos\u{e9} Garc\u{ed}a"));
        assert_eq!(c.field("company_domain"), Some("acme.com"));
        assert_eq!(
            c.fields.len(),
            2,
            "only the operation's own fields are sent: {c:?}"
        );
        // A first name alone makes no full name, and the message says which half is missing.
        let e = enrow(json!({"first_name": "Ada", "company_name": "Acme"})).unwrap_err();
        assert_eq!(e.field, "contacts[0].last_name");
        assert!(
            e.message.contains("first_name + last_name"),
            "{}",
            e.message
        );
        let e = enrow(json!({"company_name": "Acme"})).unwrap_err();
        assert_eq!(e.field, "contacts[0].fullname");
        // A fullname the caller gave wins over first + last.
        let job = enrow(
            json!({"fullname": "Ada King", "first_name": "Ada", "last_name": "L",
            "company_name": "Acme"}),
        )
        .unwrap();
        assert_eq!(job.contacts[0].field("fullname"), Some("Ada King"));

        // FullEnrich enrich: first + last from a full name, domain from company_domain.
        let job =
            fe(json!([{"fullname": "Ada  Byron Lovelace", "company_domain": "acme.com"}])).unwrap();
        let c = &job.contacts[0];
        assert_eq!(c.field("first_name"), Some("Ada"));
        assert_eq!(c.field("last_name"), Some("Byron Lovelace"));
        assert_eq!(c.field("domain"), Some("acme.com"));
        assert!(c.field("fullname").is_none() && c.field("company_domain").is_none());
        // A one-word name has no last name to give.
        assert_eq!(
            field(fe(json!([{"fullname": "Cher", "domain": "acme.com"}]))),
            "contacts[0].last_name"
        );
        // Given names are never replaced by a split.
        let job = fe(
            json!([{"fullname": "X Y", "first_name": "Ada", "last_name": "Lovelace",
            "company_name": "Acme"}]),
        )
        .unwrap();
        assert_eq!(job.contacts[0].field("first_name"), Some("Ada"));
    }
}
