//! A waterfall moving on: a step's final chunks passing their contacts on, a step's end
//! closing the next, the last step's end ending the waterfall.
//!
//! [`advance`] runs wherever a step's chunk may have become final (a delivery's or a poll's
//! write, a start that failed, the deadline): idempotent, so a redelivery of the write that
//! made the chunk final finishes what a worker that died left undone. A chunk is passed on in
//! this order: its contacts' new indices and chunks in the target step (one transaction, once),
//! the contacts written there, their routes under the waterfall, the starts queued, the chunk
//! marked passed. A step settles only once every final chunk of it is marked.

use std::collections::{BTreeMap, HashMap};

use super::{
    Attempt, Next, Origin, Route, Step, Waterfall, next_step, passed_contact, passes_on,
    verify_contact, wants_verify,
};
use crate::envelope::SubmitChunk;
use crate::ids::{ContactIndex, JobId};
use crate::jobs::{Chunk, ChunkStatus, Contact, JobMeta, JobStatus, Outcome};
use crate::providers::submit::chunk_size;
use crate::queue::Queue;
use crate::store::{Jobs, PassOn, Results, StoreError, Waterfalls};

/// Passes on the final chunks of `step`'s job, settles it if it can, and then closes the next
/// step (and so on down the chain), or, the last step settled, ends the waterfall. Start
/// messages go to `submit`; the waterfall's callback, when it ends, is asked of `callbacks`.
/// Returns the waterfall's status when this call ended it.
pub async fn advance<J, Q>(
    jobs: &J,
    submit: &Q,
    callbacks: &Q,
    step: &JobMeta,
) -> Result<Option<JobStatus>, StoreError>
where
    J: Jobs + Results + Waterfalls,
    Q: Queue,
{
    let Some(of) = step.step_of.as_ref() else {
        return Ok(None);
    };
    let Some(head) = jobs.get_job(&of.job).await? else {
        return Ok(None);
    };
    let Some(wf) = head.waterfall.as_ref().filter(|_| !head.deleted) else {
        return Ok(None);
    };
    let mut position = of.position;
    loop {
        let Some(this) = wf.step(position) else {
            return Ok(None);
        };
        if position + 1 < wf.chain().len() {
            let chunks = jobs.chunks(&this.job_id).await?;
            for c in chunks.iter().filter(|c| waits_to_pass(c)) {
                pass_chunk(jobs, submit, &head.job_id, wf, position, c).await?;
            }
        }
        // Ended now, or before (a redelivery repairing what a worker that died left undone).
        let ended = jobs.settle_job(&this.job_id).await?.is_some()
            || jobs
                .get_job(&this.job_id)
                .await?
                .is_some_and(|m| m.status.is_terminal());
        if !ended {
            return Ok(None);
        }
        match wf.step(position + 1) {
            Some(next) => {
                jobs.close_step(&next.job_id).await?;
                position += 1;
            }
            None => return end(jobs, callbacks, &head, wf).await,
        }
    }
}

/// A final chunk whose contacts have not all gone where they go next (a split chunk's contacts
/// are its halves').
fn waits_to_pass(c: &Chunk) -> bool {
    c.status.is_final() && c.status != ChunkStatus::Split && !c.passed
}

/// Ends the waterfall once its last step has: its figures summed from its find steps'.
async fn end<J, Q>(
    jobs: &J,
    callbacks: &Q,
    head: &JobMeta,
    wf: &Waterfall,
) -> Result<Option<JobStatus>, StoreError>
where
    J: Jobs + Waterfalls,
    Q: Queue,
{
    let mut steps = Vec::with_capacity(wf.steps.len());
    for s in &wf.steps {
        match jobs.get_job(&s.job_id).await? {
            Some(m) => steps.push(m),
            None => return Ok(None),
        }
    }
    let figures = super::settled_counts(&steps);
    let status = jobs.settle_waterfall(&head.job_id, figures).await?;
    if status.is_some() && head.callback_url.is_some() {
        let ask = crate::callback::CallbackRequest::new(&head.job_id, None).to_json();
        if let Err(e) = callbacks.send(ask).await {
            tracing::warn!(job_id = %head.job_id, error = %e, "callback not queued: the sweeper will");
        }
    }
    Ok(status)
}

/// Where one contact of a chunk goes: the later step's contact and its route there.
struct Going {
    contact: Contact,
    route: Route,
    outcome: Outcome,
}

/// Passes one final chunk of the step at `position` on.
async fn pass_chunk<J, Q>(
    jobs: &J,
    submit: &Q,
    waterfall: &JobId,
    wf: &Waterfall,
    position: usize,
    chunk: &Chunk,
) -> Result<(), StoreError>
where
    J: Jobs + Results + Waterfalls,
    Q: Queue,
{
    let step = wf.step(position).expect("a step of the chain");
    let contacts = jobs
        .contacts(&step.job_id, chunk.offset, chunk.count)
        .await?;
    let indices: Vec<ContactIndex> = contacts.iter().map(|c| c.index).collect();
    let rows: HashMap<ContactIndex, _> = jobs
        .results_at(&step.job_id, &indices)
        .await?
        .into_iter()
        .filter(|r| chunk.holds(r.index))
        .map(|r| (r.index, r))
        .collect();
    let (going, ending) = sort(wf, position, step, &contacts, &rows);
    let finds = wf.steps.len();
    for (t, list) in going {
        let target = wf.step(t).expect("a step of the chain");
        send_on(
            jobs,
            submit,
            waterfall,
            step,
            target,
            t == finds,
            chunk,
            list,
        )
        .await?;
    }
    if !ending.is_empty() {
        jobs.put_routes(waterfall, &ending).await?;
    }
    jobs.mark_passed(&step.job_id, chunk.index).await
}

/// Where each contact of a final chunk goes: by target step, the contacts and routes going on
/// (not settled here, or found and to be verified); the routes of those that end here having
/// skipped later steps.
fn sort(
    wf: &Waterfall,
    position: usize,
    step: &Step,
    contacts: &[Contact],
    rows: &HashMap<ContactIndex, crate::jobs::ContactResult>,
) -> (BTreeMap<usize, Vec<Going>>, Vec<Route>) {
    let mut going: BTreeMap<usize, Vec<Going>> = BTreeMap::new();
    let mut ending: Vec<Route> = Vec::new();
    let finds = wf.steps.len();
    for c in contacts {
        let Some(r) = rows.get(&c.index) else {
            continue;
        };
        let (index, before) = match &c.origin {
            Some(o) => (o.index, o.attempts.clone()),
            None => (c.index, Vec::new()),
        };
        let this = Attempt::of(step, r);
        let spent: f64 = before.iter().map(|a| a.credits).sum::<f64>() + this.credits;
        if position >= finds {
            continue;
        }
        if passes_on(r) {
            match next_step(wf, position, &c.fields, spent) {
                Next::Go {
                    position: t,
                    skipped,
                } => {
                    let mut attempts = before.clone();
                    attempts.push(this);
                    attempts.extend(skipped);
                    let origin = Origin {
                        index,
                        attempts: attempts.clone(),
                    };
                    going.entry(t).or_default().push(Going {
                        contact: passed_contact(c, origin),
                        route: route(index, t, attempts, Vec::new()),
                        outcome: r.outcome,
                    });
                }
                Next::End { skipped } if !skipped.is_empty() => {
                    ending.push(Route {
                        at: c.index,
                        ..route(index, position, before, skipped)
                    });
                }
                Next::End { .. } => {}
            }
        } else if wants_verify(wf, step, r, spent) {
            let email = r.email.as_deref().unwrap_or_default();
            going.entry(finds).or_default().push(Going {
                contact: verify_contact(c, index, email),
                route: route(index, finds, Vec::new(), Vec::new()),
                outcome: r.outcome,
            });
        }
    }
    (going, ending)
}

fn route(
    index: ContactIndex,
    position: usize,
    attempts: Vec<Attempt>,
    after: Vec<Attempt>,
) -> Route {
    Route {
        index,
        position,
        at: ContactIndex(0),
        attempts,
        after,
    }
}

/// Puts one chunk's contacts for one later step into that step's job, routes them, and asks
/// for their starts.
#[allow(clippy::too_many_arguments)]
async fn send_on<J, Q>(
    jobs: &J,
    submit: &Q,
    waterfall: &JobId,
    from: &Step,
    target: &Step,
    verify: bool,
    chunk: &Chunk,
    list: Vec<Going>,
) -> Result<(), StoreError>
where
    J: Waterfalls,
    Q: Queue,
{
    let count = |o: &[Outcome]| {
        if verify {
            0
        } else {
            list.iter().filter(|g| o.contains(&g.outcome)).count() as u64
        }
    };
    let passed = jobs
        .pass_on(&PassOn {
            from: from.job_id.clone(),
            chunk: chunk.index,
            to: target.job_id.clone(),
            count: list.len() as u64,
            chunk_size: chunk_size(target.operation),
            not_found: count(&[Outcome::NotFound, Outcome::Invalid]),
            failed: count(&[Outcome::Failed]),
        })
        .await?;
    let (contacts, routes): (Vec<Contact>, Vec<Route>) = list
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let at = ContactIndex(passed.base + i as u64);
            (
                Contact {
                    index: at,
                    ..g.contact
                },
                Route { at, ..g.route },
            )
        })
        .unzip();
    jobs.write_contacts(&target.job_id, &contacts).await?;
    jobs.put_routes(waterfall, &routes).await?;
    for c in &passed.chunks {
        if let Err(e) = submit
            .send(SubmitChunk::start(&target.job_id, c.index))
            .await
        {
            tracing::warn!(job_id = %target.job_id, error = %e, "start not queued: the sweeper sends it when overdue");
        }
    }
    Ok(())
}
