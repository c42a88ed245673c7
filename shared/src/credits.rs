//! What a job may cost: the worst-case credits of one contact for an (operation, options) pair,
//! and of a job's contacts ([`estimate`]), from the providers' documented prices. Pure: no I/O.
//!
//! | Provider | Operation | Worst case per contact | Source |
//! |---|---|---|---|
//! | FullEnrich | `enrich` | 1 per `contact.work_emails`, 3 per `contact.personal_emails`, 10 per `contact.phones` in `enrich_fields` (default: [`DEFAULT_ENRICH_FIELDS`], as the start request fills it) | providers.md §2.10 |
//! | FullEnrich | `reverse_email` | 1 (a hit) | §2.10 |
//! | Enrow | `email_find` | 1 (an email found) | §3.5 |
//! | Enrow | `email_verify` | 0.25 (every check) | §3.5 |
//! | Enrow | `phone_find` | 50 (a phone found: 40 in the current doc, 50 in the spec and on legacy plans; the worst case takes 50) | §3.2, §3.5 |
//!
//! Misses cost nothing (FullEnrich: "nothing found 0"; Enrow: "misses are free", bulk reserves
//! then refunds), so the worst case is every contact found. A field named twice in
//! `enrich_fields` is paid once; a value the providers do not know costs nothing (validation
//! refuses it before any start). The real cost is what the provider reports afterwards
//! (FullEnrich `cost.credits`; Enrow `credits_used`, `credits.cost`, `stats.credits_cost`).

use serde_json::Value;

use crate::jobs::Operation;
pub use crate::providers::fullenrich::DEFAULT_ENRICH_FIELDS;

/// What FullEnrich charges for one field found (§2.10); `None` for a field it does not know.
pub fn enrich_field_cost(field: &str) -> Option<f64> {
    match field {
        "contact.work_emails" => Some(1.0),
        "contact.personal_emails" => Some(3.0),
        "contact.phones" => Some(10.0),
        _ => None,
    }
}

/// The fields a FullEnrich enrichment asks for: `options.enrich_fields`, each once, else the
/// default the start request sends.
pub fn enrich_fields(options: &Value) -> Vec<&str> {
    let mut fields: Vec<&str> = match options.get("enrich_fields").and_then(Value::as_array) {
        Some(list) => list.iter().filter_map(Value::as_str).collect(),
        None => DEFAULT_ENRICH_FIELDS.to_vec(),
    };
    fields.sort_unstable();
    fields.dedup();
    fields
}

/// The most one contact can cost for this operation and these (validated) job options.
pub fn per_contact(operation: Operation, options: &Value) -> f64 {
    match operation {
        Operation::Enrich => enrich_fields(options)
            .into_iter()
            .filter_map(enrich_field_cost)
            .sum(),
        Operation::ReverseEmail | Operation::EmailFind => 1.0,
        Operation::EmailVerify => 0.25,
        Operation::PhoneFind => 50.0,
    }
}

/// The most `contacts` contacts can cost for this operation and these options.
pub fn estimate(operation: Operation, options: &Value, contacts: u64) -> f64 {
    per_contact(operation, options) * contacts as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fullenrich_enrich_costs_its_fields() {
        let cost =
            |fields: Value| per_contact(Operation::Enrich, &json!({ "enrich_fields": fields }));
        assert_eq!(cost(json!(["contact.work_emails"])), 1.0);
        assert_eq!(cost(json!(["contact.personal_emails"])), 3.0);
        assert_eq!(cost(json!(["contact.phones"])), 10.0);
        assert_eq!(
            cost(json!([
                "contact.work_emails",
                "contact.personal_emails",
                "contact.phones"
            ])),
            14.0
        );
        assert_eq!(
            cost(json!(["contact.phones", "contact.phones"])),
            10.0,
            "paid once"
        );
        assert_eq!(cost(json!(["contact.x"])), 0.0, "unknown: nothing");
    }

    #[test]
    fn fullenrich_enrich_without_fields_costs_the_default_the_start_sends() {
        assert_eq!(DEFAULT_ENRICH_FIELDS, ["contact.work_emails"]);
        assert_eq!(per_contact(Operation::Enrich, &json!({})), 1.0);
        assert_eq!(per_contact(Operation::Enrich, &Value::Null), 1.0);
        let start = crate::providers::submit::start_request(
            Operation::Enrich,
            "n",
            &[crate::jobs::Contact {
                origin: None,
                index: crate::ContactIndex(0),
                fields: json!({"first_name": "A", "last_name": "B", "domain": "x.com"})
                    .as_object()
                    .unwrap()
                    .clone(),
                custom: None,
            }],
            &json!({}),
            &crate::providers::submit::WebhookUrls {
                main: "https://r/w".into(),
                contact: None,
            },
        );
        let sent = json!({ "enrich_fields": start.body["data"][0]["enrich_fields"] });
        assert_eq!(per_contact(Operation::Enrich, &sent), 1.0, "{sent}");
    }

    #[test]
    fn the_other_operations_cost_their_documented_worst_case() {
        let none = json!({});
        assert_eq!(per_contact(Operation::ReverseEmail, &none), 1.0);
        assert_eq!(per_contact(Operation::EmailFind, &none), 1.0);
        assert_eq!(per_contact(Operation::EmailVerify, &none), 0.25);
        assert_eq!(per_contact(Operation::PhoneFind, &none), 50.0);
        // Options that do not price (country_code, deadline_hours) change nothing.
        let opts = json!({"country_code": "FR", "deadline_hours": 2});
        assert_eq!(per_contact(Operation::PhoneFind, &opts), 50.0);
    }

    #[test]
    fn an_estimate_is_the_worst_case_times_the_contacts() {
        let phones = json!({"enrich_fields": ["contact.phones", "contact.work_emails"]});
        assert_eq!(estimate(Operation::Enrich, &phones, 250), 2750.0);
        assert_eq!(estimate(Operation::EmailVerify, &json!({}), 3), 0.75);
        assert_eq!(estimate(Operation::PhoneFind, &json!({}), 0), 0.0);
    }
}
