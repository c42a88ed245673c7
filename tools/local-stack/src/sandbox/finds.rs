//! Which contacts each provider finds: a pure, deterministic decision a test can make in advance
//! ([`finds`]), from the contact alone, whatever names the request gives its fields.
//!
//! - The contact's identity is its name, domain, company name, LinkedIn URL and email, read
//!   under any provider's spelling (`first_name` + `last_name`, `firstname` + `lastname`,
//!   `fullname` or `full_name`; `domain` or `company_domain`), trimmed and lowercased; a bare
//!   string is an email (Enrow's bulk verifications). The record key, `custom`, the webhook
//!   URLs, `enrich_fields` and the other settings do not count: the same contact gets the same
//!   answer in every job, chunk and position.
//! - By default a stable hash of the provider's name and that identity decides: each provider
//!   finds about three contacts in four ([`FOUND_PERCENT`]), independently of the other.
//! - The override: a field of the identity holding `found-by-` followed by provider names joined
//!   by `-` (`found-by-enrow`, `found-by-fullenrich`, `found-by-enrow-fullenrich`,
//!   `found-by-none`) is found by exactly the providers it names, by any operation of theirs
//!   (a verification is `valid`). The tag may sit anywhere in a field and ends at the first
//!   character that is not a letter, digit or `-`: a domain `found-by-enrow.example.com`, a
//!   last name `Lovelace found-by-none`. So a test builds a contact set where one provider finds
//!   exactly the share it wants.

use relay_shared::Provider;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The share of contacts (in percent) a provider finds when no tag decides.
pub const FOUND_PERCENT: u32 = 75;

/// The tag that names the providers that find a contact.
pub const FOUND_BY: &str = "found-by-";

/// Whether `provider` finds this contact (a request record, a search, a relay contact, or a
/// bare email): the `found-by-` tag when a field carries one, else the hash.
pub fn finds(provider: Provider, contact: &Value) -> bool {
    let fields = identity(contact);
    match tagged(&fields) {
        Some(names) => names.contains(&provider.as_str()),
        None => percent(provider, &fields) < FOUND_PERCENT,
    }
}

/// A stable number from the contact's identity (for the fake phone numbers).
pub fn digits(contact: &Value) -> u32 {
    percent_of(&format!("digits\n{}", identity(contact).join("\n"))) * 7919 % 10_000_000
}

/// The identity fields, in a fixed order: name, domain, company name, LinkedIn URL, email.
fn identity(contact: &Value) -> Vec<String> {
    if let Value::String(email) = contact {
        return vec![
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            norm(email),
        ];
    }
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| contact.get(*k).and_then(Value::as_str))
            .map(norm)
            .unwrap_or_default()
    };
    let full = text(&["fullname", "full_name"]);
    let name = if full.is_empty() {
        let first = text(&["first_name", "firstname"]);
        let last = text(&["last_name", "lastname"]);
        format!("{first} {last}").trim().to_string()
    } else {
        full
    };
    vec![
        name,
        text(&["domain", "company_domain"]),
        text(&["company_name"]),
        text(&["linkedin_url", "professional_network_url"]),
        text(&["email"]),
    ]
}

fn norm(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The providers a `found-by-` tag names, from the first field that carries one.
fn tagged(fields: &[String]) -> Option<Vec<&str>> {
    fields.iter().find_map(|f| {
        let (_, rest) = f.split_once(FOUND_BY)?;
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(rest.len());
        Some(rest[..end].split('-').filter(|n| !n.is_empty()).collect())
    })
}

/// The provider's stable 0..100 draw for an identity.
fn percent(provider: Provider, fields: &[String]) -> u32 {
    percent_of(&format!("{}\n{}", provider.as_str(), fields.join("\n")))
}

fn percent_of(text: &str) -> u32 {
    let h = Sha256::digest(text.as_bytes());
    u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % 100
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_same_contact_gets_the_same_answer_under_any_spelling_and_any_record_key() {
        for i in 0..200 {
            let relay = json!({"first_name": format!("Ada{i}"), "last_name": "Example", "domain": "example.com"});
            let fe = json!({"first_name": format!("Ada{i}"), "last_name": "Example", "domain": "example.com",
                            "enrich_fields": ["contact.phones"], "custom": {"rid": i.to_string()}});
            let enrow = json!({"fullname": format!("ada{i}  example"), "company_domain": "EXAMPLE.com",
                               "custom": i.to_string(), "settings": {"webhook": "https://x/w"}});
            for p in [Provider::Fullenrich, Provider::Enrow] {
                assert_eq!(finds(p, &relay), finds(p, &fe), "{p:?} #{i}");
                assert_eq!(finds(p, &relay), finds(p, &enrow), "{p:?} #{i}");
            }
        }
    }

    #[test]
    fn each_provider_finds_about_three_in_four_and_not_the_same_ones() {
        let contacts: Vec<Value> = (0..2000)
            .map(|i| json!({"fullname": format!("Person {i}"), "company_domain": "example.com"}))
            .collect();
        let found = |p| contacts.iter().filter(|c| finds(p, c)).count();
        let (fe, en) = (found(Provider::Fullenrich), found(Provider::Enrow));
        for n in [fe, en] {
            assert!((1400..1600).contains(&n), "{fe} {en} of 2000");
        }
        let differ = contacts
            .iter()
            .filter(|c| finds(Provider::Fullenrich, c) != finds(Provider::Enrow, c))
            .count();
        // Independent draws at 3/4 differ on 2 · 3/4 · 1/4 = 3/8 of the contacts.
        assert!((650..850).contains(&differ), "{differ} of 2000 differ");
    }

    #[test]
    fn a_found_by_tag_decides_for_every_provider() {
        let c = |domain: &str| json!({"first_name": "Ada", "last_name": "L", "domain": domain});
        let cases = [
            ("found-by-enrow.example.com", true, false),
            ("found-by-fullenrich.example.com", false, true),
            ("x.found-by-enrow-fullenrich.example", true, true),
            ("found-by-none.example.com", false, false),
        ];
        for (domain, enrow, fullenrich) in cases {
            assert_eq!(finds(Provider::Enrow, &c(domain)), enrow, "{domain}");
            assert_eq!(
                finds(Provider::Fullenrich, &c(domain)),
                fullenrich,
                "{domain}"
            );
        }
        let named = json!({"fullname": "Ada Found-By-None", "company_domain": "example.com"});
        assert!(!finds(Provider::Enrow, &named), "in a name, any case");
        let email = json!("ada@found-by-fullenrich.example");
        assert!(!finds(Provider::Enrow, &email), "a bare email");
        assert!(finds(
            Provider::Fullenrich,
            &json!({"email": "ada@found-by-fullenrich.example"})
        ));
    }

    #[test]
    fn tags_build_a_waterfall_set_with_exact_shares() {
        // Enrow finds 60 of 100; FullEnrich half of the other 40.
        let contacts: Vec<Value> = (0..100)
            .map(|i| {
                let tag = match i {
                    0..60 => "found-by-enrow",
                    60..80 => "found-by-fullenrich",
                    _ => "found-by-none",
                };
                json!({"first_name": format!("P{i}"), "last_name": "L", "domain": format!("{tag}.example")})
            })
            .collect();
        let enrow: Vec<&Value> = contacts
            .iter()
            .filter(|c| finds(Provider::Enrow, c))
            .collect();
        let rest: Vec<&Value> = contacts
            .iter()
            .filter(|c| !finds(Provider::Enrow, c))
            .collect();
        let fullenrich = rest
            .iter()
            .filter(|c| finds(Provider::Fullenrich, c))
            .count();
        assert_eq!((enrow.len(), rest.len(), fullenrich), (60, 40, 20));
    }
}
