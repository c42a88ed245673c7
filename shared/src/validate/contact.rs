//! One contact: the fields its operation takes, derived where they can be, their formats, and
//! the caller's `custom`.

use crate::Provider;
use crate::jobs::{Contact, Operation, RECORD_KEY};
use serde_json::{Map, Value};

use super::{
    FULLENRICH_CUSTOM_KEYS, FULLENRICH_CUSTOM_VALUE_CHARS, Invalid, MAX_CUSTOM_BYTES,
    fullenrich_len, invalid, is_email, is_linkedin_profile, reduce_domain,
};
use crate::ids::ContactIndex;

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

/// Whether a contact's fields meet `op`'s need: `Err((field, rule))` names what it lacks.
pub fn requirement(
    op: Operation,
    c: &Map<String, Value>,
) -> Result<(), (&'static str, &'static str)> {
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

pub fn validate_contact(op: Operation, i: usize, c: &Value) -> Result<Contact, Invalid> {
    validate_for(op, i, c, true).map(|c| c.expect("a contact that meets the need"))
}

/// A contact for a later waterfall step: `None` when it lacks a field the step needs (it
/// skips the step); a field it has in a wrong format is an error all the same.
pub fn validate_for_later_step(
    op: Operation,
    i: usize,
    c: &Value,
) -> Result<Option<Contact>, Invalid> {
    validate_for(op, i, c, false)
}

fn validate_for(
    op: Operation,
    i: usize,
    c: &Value,
    needed: bool,
) -> Result<Option<Contact>, Invalid> {
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
    if op == Operation::EmailFind && needed {
        half_a_name(&fields).map_err(|(f, rule)| invalid(at(f), rule))?;
    }
    derive_fields(op, &mut fields);
    fields.retain(|k, _| operation_fields(op).contains(&k.as_str()));
    match requirement(op, &fields) {
        Ok(()) => {}
        Err(_) if !needed => return Ok(None),
        Err((f, rule)) => return Err(invalid(at(f), rule)),
    }
    check_formats(&mut fields).map_err(|(f, rule)| invalid(at(&f), rule))?;
    let custom = match obj.get("custom") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            check_custom(op, m).map_err(|(f, rule)| invalid(at(&f), rule))?;
            Some(Value::Object(m.clone()))
        }
        Some(_) => return Err(invalid(at("custom"), "must be an object")),
    };
    Ok(Some(Contact {
        index: ContactIndex(i as u64),
        fields,
        custom,
        origin: None,
    }))
}

/// email_find takes a fullname, or makes it of first_name + last_name: one of the two alone
/// names the other as missing.
fn half_a_name(fields: &Map<String, Value>) -> Result<(), (&'static str, &'static str)> {
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
        return Err((
            missing,
            "is required to make the fullname email_find needs (first_name + last_name), or give a fullname",
        ));
    }
    Ok(())
}

/// Formats: what a provider would refuse for the whole request (a chunk of up to 5,000
/// contacts) is refused here, for this contact, before anything is sent. A domain field is
/// reduced to its registrable domain first: that is what is sent.
fn check_formats(fields: &mut Map<String, Value>) -> Result<(), (String, &'static str)> {
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
        return Err((k.clone(), rule));
    }
    Ok(())
}

/// The caller's `custom`: at most [`MAX_CUSTOM_BYTES`]; for FullEnrich also its limits (keys,
/// string values and their length) and the relay's reserved key. `Err`: the field and the rule.
fn check_custom(op: Operation, m: &Map<String, Value>) -> Result<(), (String, String)> {
    if serde_json::to_string(m).map(|s| s.len()).unwrap_or(0) > MAX_CUSTOM_BYTES {
        return Err((
            "custom".into(),
            format!("must be at most {MAX_CUSTOM_BYTES} bytes as JSON"),
        ));
    }
    if op.provider() != Provider::Fullenrich {
        return Ok(());
    }
    if m.contains_key(RECORD_KEY) {
        return Err((
            format!("custom.{RECORD_KEY}"),
            format!("\"{RECORD_KEY}\" is reserved by the relay to map results back"),
        ));
    }
    if m.len() > FULLENRICH_CUSTOM_KEYS {
        return Err((
            "custom".into(),
            format!(
                "FullEnrich takes at most 10 custom keys and the relay reserves one (\"{RECORD_KEY}\"): at most {FULLENRICH_CUSTOM_KEYS} keys"
            ),
        ));
    }
    for (k, v) in m {
        let rule = match v {
            Value::String(s) if fullenrich_len(s) <= FULLENRICH_CUSTOM_VALUE_CHARS => continue,
            Value::String(_) => format!(
                "must be at most {FULLENRICH_CUSTOM_VALUE_CHARS} characters as FullEnrich counts them (UTF-16 code units: an emoji counts 2)"
            ),
            _ => "must be a string (FullEnrich custom values are strings)".into(),
        };
        return Err((format!("custom.{k}"), rule));
    }
    Ok(())
}
