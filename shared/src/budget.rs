//! A job's credit budget (`max_credits` on `POST /jobs`): its ceiling, what a chunk's start
//! reserves from it, and how `GET /jobs/{id}` shows it.
//!
//! Before a chunk starts, its worst case (its contacts × the operation's worst case per contact)
//! is reserved from what is left of the budget, in one conditional write together with the
//! chunk's record of it ([`CreditBudget::reserve_credits`]): workers racing never hold more
//! than the budget, and a chunk whose start is retried reserves once. A chunk that does not fit
//! is never started. When the provider reports what the chunk really cost, the rest goes back
//! to the budget, once ([`CreditBudget::release_credits`]); a chunk that ends without a start
//! gives all of it back. A start whose answer was lost keeps its reservation (the provider may
//! have billed it) until a webhook brings its cost.
//!
//! The reservation is keyed by chunk, not by step or provider: a waterfall's steps, each with
//! its own chunks, reserve from the same budget through the same calls.
//!
//! [`CreditBudget::reserve_credits`]: crate::store::CreditBudget::reserve_credits
//! [`CreditBudget::release_credits`]: crate::store::CreditBudget::release_credits

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::jobs::{Chunk, JobMeta, Operation};

/// A job's budget: its ceiling, and what is left of it for further starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// `max_credits` as the caller sent it.
    pub max: f64,
    /// `max` less every chunk's reservation (what it really cost, once that is reported).
    pub left: f64,
}

impl Budget {
    /// A new job's budget: nothing reserved yet.
    pub fn new(max: f64) -> Budget {
        Budget { max, left: max }
    }
}

/// What a chunk's start reserved from its job's budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reservation {
    /// Reserved before its start: its worst case.
    pub credits: f64,
    /// What the reservation was settled at once its cost was known (the provider's report; 0
    /// for a chunk that never started): the difference went back to the budget. `None`: held
    /// whole.
    pub settled: Option<f64>,
}

/// The most a chunk of `contacts` contacts of `op` (with the job's `options`) can cost.
pub fn chunk_worst_case(op: Operation, options: &Value, contacts: u64) -> f64 {
    crate::credits::estimate(op, options, contacts)
}

/// `credits` of `GET /jobs/{id}`: the budget (`null` without one) and what is left of it, the
/// credits reserved by chunks whose cost is not known yet, those spent (reported by the
/// provider), and both by provider.
pub fn credits_json(meta: &JobMeta, chunks: &[Chunk]) -> Value {
    let mut by_provider: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    // A one-step job's chunks are all its provider's.
    let entry = by_provider.entry(meta.provider.as_str()).or_default();
    for c in chunks {
        match c.reservation {
            Some(Reservation {
                credits,
                settled: None,
            }) => entry.0 += credits,
            Some(Reservation {
                settled: Some(spent),
                ..
            }) => entry.1 += spent,
            None => entry.1 += c.credits.unwrap_or(0.0),
        }
    }
    let (reserved, spent) = by_provider
        .values()
        .fold((0.0, 0.0), |(r, s), (pr, ps)| (r + pr, s + ps));
    json!({
        "budget": meta.budget.map(|b| b.max),
        "left": meta.budget.map(|b| b.left),
        "reserved": reserved,
        "spent": spent,
        "by_provider": by_provider
            .iter()
            .map(|(p, (r, s))| (p.to_string(), json!({"reserved": r, "spent": s})))
            .collect::<serde_json::Map<_, _>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobStatus;

    #[test]
    fn the_worst_case_follows_the_operation_and_its_fields() {
        let fields = |f: Value| json!({ "enrich_fields": f });
        let cases = [
            (Operation::Enrich, json!({}), 1.0),
            (
                Operation::Enrich,
                fields(json!(["contact.work_emails"])),
                1.0,
            ),
            (
                Operation::Enrich,
                fields(json!(["contact.personal_emails", "contact.phones"])),
                13.0,
            ),
            (
                Operation::Enrich,
                fields(json!([
                    "contact.work_emails",
                    "contact.personal_emails",
                    "contact.phones"
                ])),
                14.0,
            ),
            (Operation::ReverseEmail, json!({}), 1.0),
            (Operation::EmailFind, json!({}), 1.0),
            (Operation::EmailVerify, json!({}), 0.25),
            (Operation::PhoneFind, json!({}), 50.0),
        ];
        for (op, options, per_contact) in cases {
            assert_eq!(
                chunk_worst_case(op, &options, 100),
                100.0 * per_contact,
                "{op} {options}"
            );
        }
    }

    #[test]
    fn credits_show_what_is_reserved_and_what_was_spent() {
        let mut meta = JobMeta::new(
            "job_b".into(),
            Operation::Enrich,
            None,
            JobStatus::Running,
            300,
            100,
            json!({}),
        );
        meta.budget = Some(Budget {
            max: 250.0,
            left: 120.0,
        });
        let mut chunks = Chunk::plan(300, 100);
        chunks[0].reservation = Some(Reservation {
            credits: 100.0,
            settled: Some(30.0),
        });
        chunks[0].credits = Some(30.0);
        chunks[1].reservation = Some(Reservation {
            credits: 100.0,
            settled: None,
        });
        let shown = credits_json(&meta, &chunks);
        assert_eq!(
            shown,
            json!({"budget": 250.0, "left": 120.0, "reserved": 100.0, "spent": 30.0,
                "by_provider": {"fullenrich": {"reserved": 100.0, "spent": 30.0}}})
        );
        // Without a budget: nothing reserved, what the provider reported is spent.
        meta.budget = None;
        let mut plain = Chunk::plan(300, 100);
        plain[2].credits = Some(12.0);
        let shown = credits_json(&meta, &plain);
        assert_eq!(
            (shown["budget"].clone(), shown["spent"].clone()),
            (Value::Null, json!(12.0))
        );
    }
}
