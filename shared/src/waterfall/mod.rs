//! Waterfall jobs: a job that names `steps` (and optionally `verify`) instead of one provider.
//!
//! The job the caller sees (its head holds the [`Waterfall`]) has no chunks of its own. Each
//! step is a job of its own (its head holds [`StepOf`]): its own contacts, chunks, starts,
//! webhooks, polls, deadline and figures, through the very code paths of a one-step job. The
//! first step takes every contact, at the same index. When a step's chunk is final, the contacts
//! it did not settle (not found, invalid, or failed for a reason another provider could change)
//! go on to the next step they can enter, as a new chunk of that step's job ([`advance`]): the
//! next provider starts on them while the first is still working on its other chunks. Found
//! emails go to the `verify` step when asked.
//!
//! Where a contact went is kept under the waterfall's head as a [`Route`] (one small item per
//! contact and step it entered), so its one result row is read from the step that settled it,
//! with every step's outcome in `attempts` ([`merge`]). A later step's job stays `open` (it
//! cannot settle) until the step before it has settled, all its chunks passed on; the
//! waterfall settles when its last step does, its figures summed from its steps'.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Provider;
use crate::ids::{ContactIndex, JobId};
use crate::jobs::{Contact, ContactResult, Operation, Outcome, reasons};

pub mod advance;
pub mod plan;
pub mod read;
mod rows;
pub use advance::advance;
pub use rows::{merge, settled_counts};

/// One step: what it asks of which provider, and the job that runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub provider: Provider,
    pub operation: Operation,
    #[serde(default)]
    pub options: Value,
    /// The step's own job.
    pub job_id: JobId,
}

/// Which found emails the verify step checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::Display, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum VerifyWhen {
    /// Every email a step found.
    Found,
    FoundByEnrow,
    FoundByFullenrich,
}

impl VerifyWhen {
    pub fn takes(self, provider: Provider) -> bool {
        match self {
            VerifyWhen::Found => true,
            VerifyWhen::FoundByEnrow => provider == Provider::Enrow,
            VerifyWhen::FoundByFullenrich => provider == Provider::Fullenrich,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verify {
    #[serde(flatten)]
    pub step: Step,
    pub when: VerifyWhen,
}

/// A waterfall job's plan (on its head).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waterfall {
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
    /// `max_credits_per_contact`: a contact whose next step could take it over this skips it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_credits_per_contact: Option<f64>,
}

impl Waterfall {
    /// The steps' jobs in order, the verify step's last: a position in this list is a step's
    /// `position`.
    pub fn chain(&self) -> Vec<&Step> {
        self.steps
            .iter()
            .chain(self.verify.as_ref().map(|v| &v.step))
            .collect()
    }

    /// The verify step's position, when there is one.
    pub fn verify_position(&self) -> Option<usize> {
        self.verify.as_ref().map(|_| self.steps.len())
    }

    pub fn step(&self, position: usize) -> Option<&Step> {
        self.chain().get(position).copied()
    }
}

/// On a step's job head: the waterfall it is a step of, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOf {
    pub job: JobId,
    pub position: usize,
}

/// One step's account of a contact, as its result row shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    pub provider: Provider,
    pub operation: Operation,
    /// `found`, `not_found`, `valid`, `invalid`, `failed`, or `skipped` (the contact did not
    /// enter the step: `reason` says why).
    pub outcome: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// What the contact cost at this step (the documented price of what was found; misses are
    /// free).
    #[serde(default)]
    pub credits: f64,
}

pub const SKIPPED: &str = "skipped";
/// A contact that lacks a field the step needs skips it.
pub const MISSING_FIELDS: &str = "missing_fields";
/// A contact whose next step could take it over `max_credits_per_contact` skips it.
pub const CONTACT_BUDGET_EXHAUSTED: &str = "contact_budget_exhausted";

impl Attempt {
    /// What `step`'s result `r` says of its contact.
    pub fn of(step: &Step, r: &ContactResult) -> Attempt {
        let credits = match (step.operation, r.outcome) {
            (Operation::EmailVerify, Outcome::Valid | Outcome::Invalid) => {
                crate::credits::per_contact(step.operation, &step.options)
            }
            (_, Outcome::Found | Outcome::Valid) => {
                crate::credits::per_contact(step.operation, &step.options)
            }
            _ => 0.0,
        };
        Attempt {
            provider: step.provider,
            operation: step.operation,
            outcome: r.outcome.as_str().to_string(),
            reason: r.reason.clone(),
            credits,
        }
    }

    fn skipped(step: &Step, reason: &str) -> Attempt {
        Attempt {
            provider: step.provider,
            operation: step.operation,
            outcome: SKIPPED.to_string(),
            reason: Some(reason.to_string()),
            credits: 0.0,
        }
    }
}

/// On a contact of a later step's job: the waterfall contact it is, and what the steps before
/// made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub index: ContactIndex,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

/// Where a waterfall contact went: the step at `position` holds it as its contact `at`; the
/// steps before made `attempts` of it, and `after` are the steps it skipped once settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub index: ContactIndex,
    pub position: usize,
    pub at: ContactIndex,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Attempt>,
}

/// The verification of a found email (`verify`), as the result row shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verification {
    pub provider: Provider,
    pub operation: Operation,
    /// `valid`, `invalid`, `failed`, or `pending` while the check runs.
    pub outcome: String,
    #[serde(default)]
    pub email_status: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a waterfall's result row adds to a one-step row: the step that settled it, every
/// step's account, and the verification when asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Settled {
    /// The step that settled the contact (the last it entered). A waterfall's rows only, as
    /// are `operation`, `attempts` and `verification`.
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub provider: Provider,
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub operation: Operation,
    /// Every step's account of the contact, in order.
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub attempts: Vec<Attempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// Whether a step's result leaves its contact to the next step: not found, invalid, or failed
/// for a reason another provider could change. Not a cancel, not the account's credits running
/// out, not a start that may have been billed (`start_unconfirmed`), not the contact's own
/// budget.
pub fn passes_on(r: &ContactResult) -> bool {
    match r.outcome {
        Outcome::NotFound | Outcome::Invalid => true,
        Outcome::Found | Outcome::Valid => false,
        Outcome::Failed => !matches!(
            r.reason.as_deref(),
            Some(
                reasons::CANCELED
                    | reasons::CREDITS_INSUFFICIENT
                    | reasons::START_UNCONFIRMED
                    | CONTACT_BUDGET_EXHAUSTED
            )
        ),
    }
}

/// Whether a contact with `fields` can enter a step of `op`: `Err((field, rule))` names what it
/// lacks.
pub fn can_enter(
    op: Operation,
    fields: &Map<String, Value>,
) -> Result<(), (&'static str, &'static str)> {
    crate::validate::contact::requirement(op, fields)
}

/// Where a contact a step did not settle goes next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// To the step at `position`, having skipped `skipped` on the way.
    Go {
        position: usize,
        skipped: Vec<Attempt>,
    },
    /// Nowhere: it ends at the step that did not settle it, having skipped `skipped`.
    End { skipped: Vec<Attempt> },
}

/// The next find step after `position` that a contact with `fields`, which has cost `spent`
/// credits so far, can enter: a step it lacks a field for, or whose worst case would take it
/// over `max_credits_per_contact`, is skipped with the reason.
pub fn next_step(wf: &Waterfall, position: usize, fields: &Map<String, Value>, spent: f64) -> Next {
    let mut skipped = Vec::new();
    for (p, step) in wf.steps.iter().enumerate().skip(position + 1) {
        if can_enter(step.operation, fields).is_err() {
            skipped.push(Attempt::skipped(step, MISSING_FIELDS));
            continue;
        }
        let cost = crate::credits::per_contact(step.operation, &step.options);
        if wf
            .max_credits_per_contact
            .is_some_and(|m| spent + cost > m + 1e-9)
        {
            skipped.push(Attempt::skipped(step, CONTACT_BUDGET_EXHAUSTED));
            continue;
        }
        return Next::Go {
            position: p,
            skipped,
        };
    }
    Next::End { skipped }
}

/// Whether a found result goes to the verify step: it found an email, by a provider `when` takes,
/// and the check fits in the contact's budget.
pub fn wants_verify(wf: &Waterfall, step: &Step, r: &ContactResult, spent: f64) -> bool {
    let Some(v) = wf.verify.as_ref() else {
        return false;
    };
    let cost = crate::credits::per_contact(v.step.operation, &v.step.options);
    r.outcome == Outcome::Found
        && r.email.as_deref().is_some_and(|e| !e.is_empty())
        && v.when.takes(step.provider)
        && !wf
            .max_credits_per_contact
            .is_some_and(|m| spent + cost > m + 1e-9)
}

/// The contact a step passes on to the step at `position`: its fields (every step's, as the
/// first validated them), its `custom`, and its origin.
pub fn passed_contact(c: &Contact, origin: Origin) -> Contact {
    Contact {
        index: ContactIndex(0),
        fields: c.fields.clone(),
        custom: c.custom.clone(),
        origin: Some(origin),
    }
}

/// The contact the verify step checks: the found email.
pub fn verify_contact(c: &Contact, index: ContactIndex, email: &str) -> Contact {
    let mut fields = Map::new();
    fields.insert("email".into(), Value::from(email));
    Contact {
        index: ContactIndex(0),
        fields,
        custom: c.custom.clone(),
        origin: Some(Origin {
            index,
            attempts: Vec::new(),
        }),
    }
}

#[cfg(test)]
mod tests;
