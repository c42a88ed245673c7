//! A waterfall's rows and figures, read from its steps: each contact's row is the row of the
//! step that settled it, with every step's account ([`merge`]); its figures are its steps',
//! each contact counted at the step that settled it ([`settled_counts`]).

use std::collections::HashMap;

use super::{Attempt, Route, Settled, Verification, Waterfall};
use crate::ids::ContactIndex;
use crate::jobs::{ContactResult, JobMeta};
use crate::store::WaterfallFigures;

/// One waterfall contact's row, from `first` (its first step's row: the contact's index there
/// is the waterfall's), its `routes` (in any order) and `later`, the later steps' rows by
/// (position, index there). While the step it went on to has no row for it yet, the row is
/// its last step's, `provisional`, naming the step it waits at.
pub fn merge(
    wf: &Waterfall,
    first: &ContactResult,
    routes: &[&Route],
    later: &HashMap<(usize, ContactIndex), ContactResult>,
) -> ContactResult {
    let finds = wf.steps.len();
    let settling = routes
        .iter()
        .filter(|r| r.position < finds)
        .max_by_key(|r| r.position);
    let (position, row, before, after) = match settling {
        Some(r) if r.position > 0 => match later.get(&(r.position, r.at)) {
            Some(row) => (r.position, row, r.attempts.as_slice(), r.after.as_slice()),
            None => return waiting(wf, first, r),
        },
        Some(r) => (0, first, r.attempts.as_slice(), r.after.as_slice()),
        None => (0, first, &[][..], &[][..]),
    };
    let step = &wf.steps[position];
    let mut attempts: Vec<Attempt> = before.to_vec();
    attempts.push(Attempt::of(step, row));
    attempts.extend_from_slice(after);
    let verification = wf.verify.as_ref().and_then(|v| {
        let route = routes.iter().find(|r| r.position == finds)?;
        let checked = later.get(&(finds, route.at));
        Some(Verification {
            provider: v.step.provider,
            operation: v.step.operation,
            outcome: checked
                .map_or("pending", |c| c.outcome.as_str())
                .to_string(),
            email_status: checked.and_then(|c| c.email_status.clone()),
            reason: checked.and_then(|c| c.reason.clone()),
        })
    });
    ContactResult {
        index: first.index,
        custom: first.custom.clone(),
        waterfall: Some(Settled {
            provider: step.provider,
            operation: step.operation,
            attempts,
            verification,
        }),
        ..row.clone()
    }
}

/// The row of a contact that waits at a later step: its first step's, provisional, with the
/// attempts so far.
fn waiting(wf: &Waterfall, first: &ContactResult, route: &Route) -> ContactResult {
    let step = &wf.steps[route.position];
    ContactResult {
        provisional: true,
        waterfall: Some(Settled {
            provider: step.provider,
            operation: step.operation,
            attempts: route.attempts.clone(),
            verification: None,
        }),
        ..first.clone()
    }
}

/// A waterfall's figures from its find steps' heads (in order; the verify step's is not one of
/// them): each step's figures less what it passed on.
pub fn settled_counts(steps: &[JobMeta]) -> WaterfallFigures {
    let mut f = WaterfallFigures::default();
    for s in steps {
        let not_found = s.not_found.saturating_sub(s.passed_on.not_found);
        let failed = s.failed.saturating_sub(s.passed_on.failed);
        f.found += s.found;
        f.not_found += not_found;
        f.failed += failed;
        f.done += s.found + not_found + failed;
    }
    f
}
