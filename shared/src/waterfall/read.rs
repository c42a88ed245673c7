//! A waterfall as the API reads it: its results in contact order ([`results`]) and its view,
//! per step ([`view`]).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::{Route, merge, settled_counts};
use crate::ids::ContactIndex;
use crate::jobs::{Chunk, ContactResult, JobMeta, JobStatus};
use crate::store::{JobWriter, StoreError, Waterfalls};

/// Up to `limit` of the waterfall's rows from contact `from`: its first step's rows (every
/// contact is there, at its own index), each replaced by the row of the step that settled it.
/// Reads: one query of the first step's rows, one of the routes, one batch read per later step.
pub async fn results<J: JobWriter + Waterfalls>(
    jobs: &J,
    head: &JobMeta,
    from: ContactIndex,
    limit: usize,
) -> Result<Vec<ContactResult>, StoreError> {
    let Some(wf) = head.waterfall.as_ref() else {
        return jobs.results(&head.job_id, from, limit).await;
    };
    let first = jobs.results(&wf.steps[0].job_id, from, limit).await?;
    let (Some(lo), Some(hi)) = (first.first(), first.last()) else {
        return Ok(first);
    };
    let routes = jobs.routes(&head.job_id, lo.index, hi.index).await?;
    let mut wanted: BTreeMap<usize, Vec<ContactIndex>> = BTreeMap::new();
    for r in routes.iter().filter(|r| r.position > 0) {
        wanted.entry(r.position).or_default().push(r.at);
    }
    let mut later = HashMap::new();
    for (position, at) in wanted {
        let Some(step) = wf.step(position) else {
            continue;
        };
        for row in jobs.results_at(&step.job_id, &at).await? {
            later.insert((position, row.index), row);
        }
    }
    let mut by_index: HashMap<ContactIndex, Vec<&Route>> = HashMap::new();
    for r in &routes {
        by_index.entry(r.index).or_default().push(r);
    }
    Ok(first
        .iter()
        .map(|f| merge(wf, f, by_index.get(&f.index).map_or(&[][..], |v| v), &later))
        .collect())
}

/// `GET /jobs/{id}` of a waterfall: its head's fields, its figures (summed from its steps'
/// while it runs, each contact counted at the step that settled it), its found rate, its
/// credits over every step, and each step's own figures (the API adds each step's `chunks`). `steps`: each step's head
/// (with its figures) and chunks, in chain order.
pub fn view(head: &JobMeta, steps: &[(JobMeta, Vec<Chunk>)]) -> Value {
    let Some(wf) = head.waterfall.as_ref() else {
        return head.summary_json();
    };
    let finds: Vec<JobMeta> = steps
        .iter()
        .take(wf.steps.len())
        .map(|(m, _)| m.clone())
        .collect();
    let mut shown = head.clone();
    if !head.status.is_terminal() {
        let f = settled_counts(&finds);
        (shown.done, shown.found, shown.not_found, shown.failed) =
            (f.done, f.found, f.not_found, f.failed);
        if steps.iter().any(|(m, _)| m.status != JobStatus::Accepted) {
            shown.status = JobStatus::Running;
        }
    }
    shown.duplicates = steps.iter().map(|(m, _)| m.duplicates).sum();
    let mut body = shown.summary_json();
    body["found_rate"] = json!(rate(shown.found, shown.contacts));
    let mut by_provider: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut used = 0.0;
    let rows: Vec<Value> = steps
        .iter()
        .enumerate()
        .map(|(position, (m, chunks))| {
            let (row, reserved, spent) = step_row(wf, position, m, chunks);
            let e = by_provider
                .entry(m.provider.as_str().to_string())
                .or_default();
            e.0 += reserved;
            e.1 += spent;
            used += chunks.iter().filter_map(|c| c.credits).sum::<f64>();
            row
        })
        .collect();
    let (reserved, spent) = by_provider
        .values()
        .fold((0.0, 0.0), |(r, s), (pr, ps)| (r + pr, s + ps));
    body["steps"] = Value::Array(rows);
    body["credits_used"] = json!(used);
    body["credits"] = json!({
        "budget": head.budget.map(|b| b.max),
        "left": head.budget.map(|b| b.left),
        "reserved": reserved,
        "spent": spent,
        "max_credits_per_contact": wf.max_credits_per_contact,
        "by_provider": by_provider
            .iter()
            .map(|(p, (r, s))| (p.clone(), json!({"reserved": r, "spent": s})))
            .collect::<serde_json::Map<_, _>>(),
    });
    body["chunks"] = json!([]);
    body
}

/// One step as `GET /jobs/{id}` shows it, with what its chunks reserved and spent.
fn step_row(
    wf: &super::Waterfall,
    position: usize,
    m: &JobMeta,
    chunks: &[Chunk],
) -> (Value, f64, f64) {
    let c = crate::budget::credits_json(m, chunks);
    let (reserved, spent) = (
        c["reserved"].as_f64().unwrap_or(0.0),
        c["spent"].as_f64().unwrap_or(0.0),
    );
    let verify = Some(position) == wf.verify_position();
    let settled_here = m.found
        + m.not_found.saturating_sub(m.passed_on.not_found)
        + m.failed.saturating_sub(m.passed_on.failed);
    let row = json!({
        "position": position,
        "kind": if verify { "verify" } else { "find" },
        "job_id": m.job_id,
        "provider": m.provider.as_str(),
        "operation": m.operation.as_str(),
        "status": m.shown_status(),
        "contacts": m.contacts,
        "done": m.done,
        "found": m.found,
        "not_found": m.not_found,
        "failed": m.failed,
        "passed_on": m.passed_on.not_found + m.passed_on.failed,
        "settled": if verify { Value::Null } else { json!(settled_here) },
        "found_rate": rate(m.found, m.contacts),
        "credits": {"reserved": reserved, "spent": spent},
        "error": m.error,
    });
    (row, reserved, spent)
}

fn rate(found: u64, contacts: u64) -> f64 {
    if contacts == 0 {
        0.0
    } else {
        (found as f64 / contacts as f64 * 1000.0).round() / 1000.0
    }
}
