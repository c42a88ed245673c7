//! A waterfall's `steps` and `verify` on `POST /jobs`, and its contacts: one contact shape for
//! every step (each step takes the fields its operation needs, derived where they can be).
//! A contact must be able to enter the first step; a later step it lacks a field for, it skips
//! (its row says so); a field it has in a format a step refuses is refused here, naming the
//! step and the field.

use serde_json::{Map, Value};

use super::contact::{validate_contact, validate_for_later_step};
use super::{Invalid, invalid, provider_and_operation, validate_options};
use crate::Provider;
use crate::jobs::{Contact, Operation};
use crate::waterfall::VerifyWhen;

/// The most steps a waterfall takes (besides `verify`).
pub const MAX_STEPS: usize = 4;

/// One step as asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    pub provider: Provider,
    pub operation: Operation,
    pub options: Value,
}

/// A waterfall as asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct WaterfallPlan {
    pub steps: Vec<StepPlan>,
    pub verify: Option<(StepPlan, VerifyWhen)>,
    pub max_credits_per_contact: Option<f64>,
}

impl WaterfallPlan {
    /// The steps in order, the verify step's last.
    pub fn chain(&self) -> Vec<&StepPlan> {
        self.steps
            .iter()
            .chain(self.verify.as_ref().map(|(v, _)| v))
            .collect()
    }
}

fn label(i: usize, s: &StepPlan) -> String {
    format!("steps[{i}] ({} {})", s.provider, s.operation)
}

fn step_of(v: &Value, at: &str) -> Result<StepPlan, Invalid> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(at, "must be an object with provider, operation and options"))?;
    let (provider, operation) = provider_and_operation(obj, at)?;
    let options = validate_options(operation, obj.get("options")).map_err(|e| Invalid {
        field: format!("{at}.{}", e.field),
        message: e.message,
    })?;
    Ok(StepPlan {
        provider,
        operation,
        options,
    })
}

/// `steps`, `verify` and `max_credits_per_contact` of a body that names `steps`.
pub(super) fn validate_plan(obj: &Map<String, Value>) -> Result<WaterfallPlan, Invalid> {
    for k in ["provider", "operation", "options"] {
        if obj.get(k).is_some_and(|v| !v.is_null()) {
            return Err(invalid(
                k,
                "must be absent when the job names steps (each step names its provider, operation and options)",
            ));
        }
    }
    let list = obj
        .get("steps")
        .and_then(Value::as_array)
        .filter(|l| (1..=MAX_STEPS).contains(&l.len()))
        .ok_or_else(|| {
            invalid(
                "steps",
                format!("must be an array of 1 to {MAX_STEPS} steps"),
            )
        })?;
    let steps = list
        .iter()
        .enumerate()
        .map(|(i, s)| step_of(s, &format!("steps[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let verify = match obj.get("verify") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let step = step_of(v, "verify")?;
            if step.operation != Operation::EmailVerify {
                return Err(invalid(
                    "verify.operation",
                    "must be email_verify (enrow): the check of a found email",
                ));
            }
            let when = match v.get("when") {
                None | Some(Value::Null) => VerifyWhen::Found,
                Some(w) => w
                    .as_str()
                    .and_then(|w| w.parse::<VerifyWhen>().ok())
                    .ok_or_else(|| {
                        invalid(
                            "verify.when",
                            "must be found, found_by_enrow or found_by_fullenrich",
                        )
                    })?,
            };
            Some((step, when))
        }
    };
    let max_credits_per_contact = match obj.get("max_credits_per_contact") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|c| *c > 0.0 && c.is_finite())
                .ok_or_else(|| {
                    invalid(
                        "max_credits_per_contact",
                        "must be a positive number of credits",
                    )
                })?,
        ),
    };
    let first = crate::credits::per_contact(steps[0].operation, &steps[0].options);
    if let Some(m) = max_credits_per_contact.filter(|m| first > *m) {
        return Err(invalid(
            "max_credits_per_contact",
            format!(
                "is below what the first step may cost one contact ({first} credits; the most is {m})"
            ),
        ));
    }
    Ok(WaterfallPlan {
        steps,
        verify,
        max_credits_per_contact,
    })
}

/// A waterfall's contacts: each must meet the first step's need (the error names the step and
/// the field); each gets every step's fields it can (a step it cannot enter, it skips later).
pub(super) fn validate_contacts(
    plan: &WaterfallPlan,
    contacts: &[Value],
) -> Result<Vec<Contact>, Invalid> {
    contacts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let named = |t: usize, e: Invalid| Invalid {
                field: e.field,
                message: format!("{}: {}", label(t, &plan.steps[t]), e.message),
            };
            let mut contact =
                validate_contact(plan.steps[0].operation, i, c).map_err(|e| named(0, e))?;
            for (t, s) in plan.steps.iter().enumerate().skip(1) {
                if let Some(later) =
                    validate_for_later_step(s.operation, i, c).map_err(|e| named(t, e))?
                {
                    for (k, v) in later.fields {
                        contact.fields.entry(k).or_insert(v);
                    }
                }
            }
            Ok(contact)
        })
        .collect()
}
