//! How a provider's record becomes a [`ContactResult`]: FullEnrich's enrichment record, Enrow's
//! search or verification, normalized to one outcome, email, status and phone.

use serde_json::Value;

use super::{Contact, ContactResult, Operation, Outcome};
use crate::providers::{enrow, fullenrich};

/// Normalizes a FullEnrich record for `contact`.
pub fn from_fullenrich(
    operation: Operation,
    contact: &Contact,
    record: &fullenrich::Record,
) -> ContactResult {
    let info = &record.contact_info;
    let (outcome, email, email_status, phone) = match operation {
        Operation::ReverseEmail => {
            let found = record.profile.as_ref().is_some_and(|p| p.is_object());
            let outcome = if found {
                Outcome::Found
            } else {
                Outcome::NotFound
            };
            (outcome, None, None, None)
        }
        _ => {
            let email = info.work_email().or(info.personal_email());
            let phone = info.phone().and_then(|p| p.number.clone());
            let found = email.is_some() || phone.is_some();
            (
                if found {
                    Outcome::Found
                } else {
                    Outcome::NotFound
                },
                email.and_then(|e| e.email.clone()),
                email.and_then(|e| e.status.as_ref().map(|s| s.as_str().to_string())),
                phone,
            )
        }
    };
    ContactResult {
        waterfall: None,
        index: contact.index,
        custom: contact.custom.clone(),
        outcome,
        email,
        email_status,
        phone,
        reason: None,
        provisional: false,
        raw: record.raw.clone(),
    }
}

/// The fields of an Enrow result, single or bulk.
pub struct EnrowFields<'a> {
    pub qualification: Option<&'a enrow::Qualification>,
    pub email: Option<&'a str>,
    pub number: Option<&'a str>,
}

/// Normalizes an Enrow result for `contact`. A missing email or number means not found,
/// whatever the qualification says (rule 3).
pub fn from_enrow(
    operation: Operation,
    contact: &Contact,
    fields: EnrowFields<'_>,
    raw: Value,
) -> ContactResult {
    use enrow::Qualification as Q;
    let q = fields.qualification;
    let (outcome, email, phone) = match operation {
        Operation::EmailVerify => {
            let outcome = match q {
                Some(Q::Valid) => Outcome::Valid,
                Some(Q::Invalid) => Outcome::Invalid,
                _ => Outcome::Failed,
            };
            let email = fields.email.or(contact.field("email"));
            (outcome, email, None)
        }
        Operation::PhoneFind => match (q, fields.number) {
            (Some(Q::Found) | None, Some(n)) => (Outcome::Found, None, Some(n)),
            _ => (Outcome::NotFound, None, None),
        },
        _ => match (q, fields.email) {
            (Some(Q::Valid) | None, Some(e)) => (Outcome::Found, Some(e), None),
            _ => (Outcome::NotFound, None, None),
        },
    };
    ContactResult {
        waterfall: None,
        index: contact.index,
        custom: contact.custom.clone(),
        outcome,
        email: email.map(str::to_string),
        email_status: q
            .map(|q| q.as_str().to_string())
            .filter(|_| email.is_some()),
        phone: phone.map(str::to_string),
        reason: (outcome == Outcome::Failed).then(|| "unknown_qualification".to_string()),
        provisional: false,
        raw,
    }
}
