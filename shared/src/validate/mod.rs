//! `POST /jobs` validation: everything a provider would refuse is refused here first, with the
//! field path and the rule, before a credit is spent. Messages name rules, never values (values
//! are contact data).

use serde_json::{Map, Value};

use crate::Provider;
use crate::jobs::{Contact, Operation};

/// The most contacts one job takes (documented in the README).
mod callback_url;
pub mod contact;
mod formats;
mod steps;

pub use callback_url::{
    CallbackPolicy, MAX_CALLBACK_URL_CHARS, is_public_address, validate_callback_url,
};
pub use contact::{derivable_fields, derive_fields, operation_fields, validate_contact};
pub use formats::{fullenrich_len, is_domain, is_email, is_linkedin_profile, reduce_domain};
pub use steps::{MAX_STEPS, StepPlan, WaterfallPlan};

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

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
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
    /// `max_credits`: the most the job's starts may reserve ([`crate::budget`]).
    pub max_credits: Option<f64>,
    /// `steps` (and `verify`): a waterfall; `provider`, `operation` and `options` are then its
    /// first step's.
    pub waterfall: Option<WaterfallPlan>,
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
    job.contacts = match &job.waterfall {
        Some(plan) => steps::validate_contacts(plan, contacts)?,
        None => validate_contacts(job.operation, 0, contacts)?,
    };
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
    if job.waterfall.is_some() {
        return Err(invalid(
            "staged",
            "a waterfall job (steps) takes its contacts in its POST /jobs body: it cannot be staged",
        ));
    }
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
    let waterfall = match obj.get("steps") {
        None | Some(Value::Null) => None,
        Some(_) => Some(steps::validate_plan(obj)?),
    };
    let (provider, operation) = match &waterfall {
        Some(w) => (w.steps[0].provider, w.steps[0].operation),
        None => provider_and_operation(obj, "")?,
    };
    let name = match obj.get("name") {
        None | Some(Value::Null) if waterfall.is_some() => "enrich-relay waterfall".to_string(),
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
    let options = match &waterfall {
        Some(w) => w.steps[0].options.clone(),
        None => validate_options(operation, obj.get("options"))?,
    };
    let callback_url = match obj.get("callback_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => {
            Some(validate_callback_url(u, policy).map_err(|rule| invalid("callback_url", rule))?)
        }
        Some(_) => return Err(invalid("callback_url", "must be a string (an https URL)")),
    };
    let max_credits = match obj.get("max_credits") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|c| *c > 0.0 && c.is_finite())
                .ok_or_else(|| invalid("max_credits", "must be a positive number of credits"))?,
        ),
    };
    Ok((
        NewJob {
            provider,
            operation,
            name,
            options,
            contacts: Vec::new(),
            callback_url,
            max_credits,
            waterfall,
        },
        obj,
    ))
}

/// A one-step job's (or a waterfall step's) `provider` and `operation`; errors name them under
/// `at` (`""`: the body's own).
pub(crate) fn provider_and_operation(
    obj: &Map<String, Value>,
    at: &str,
) -> Result<(Provider, Operation), Invalid> {
    let field = |f: &str| {
        if at.is_empty() {
            f.to_string()
        } else {
            format!("{at}.{f}")
        }
    };
    let provider = match obj.get("provider") {
        Some(Value::String(p)) => p
            .parse::<Provider>()
            .ok()
            .ok_or_else(|| invalid(field("provider"), "must be \"enrow\" or \"fullenrich\""))?,
        _ => {
            return Err(invalid(
                field("provider"),
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
            field("operation"),
            match provider {
                Provider::Enrow => "must be one of email_find, email_verify, phone_find for enrow",
                Provider::Fullenrich => "must be one of enrich, reverse_email for fullenrich",
            },
        )
    })?;
    Ok((provider, operation))
}

/// The longest deadline a job may ask for (`options.deadline_hours`): 30 days.
pub const MAX_DEADLINE_HOURS: u64 = 720;

pub(crate) fn validate_options(op: Operation, options: Option<&Value>) -> Result<Value, Invalid> {
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
    fn max_credits_is_a_positive_number() {
        let with = |c: Value| {
            validate(&json!({"provider": "enrow", "operation": "email_verify",
                "max_credits": c, "contacts": [{"email": "a@example.com"}]}))
        };
        assert_eq!(with(json!(250)).unwrap().max_credits, Some(250.0));
        assert_eq!(with(json!(0.5)).unwrap().max_credits, Some(0.5));
        assert_eq!(with(Value::Null).unwrap().max_credits, None);
        for bad in [json!(0), json!(-3), json!("100"), json!(true), json!({})] {
            let e = with(bad.clone()).expect_err("refused");
            assert_eq!(e.field, "max_credits", "{bad}");
            assert!(e.message.contains("positive number"), "{bad}");
        }
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
