//! A new waterfall's records: its plan with each step's job id, and each step's job (the first
//! with every contact and its chunks; the later ones empty and `open`), as `POST /jobs` writes
//! them.

use super::{Step, StepOf, Verify, Waterfall};
use crate::ids::JobId;
use crate::jobs::{Chunk, JobMeta, JobStatus, Operation};
use crate::validate::{StepPlan, WaterfallPlan};

/// The waterfall of `plan` under `job_id`: step `t`'s job is `{job_id}_s{t}`, the verify step's
/// `{job_id}_v` (the same ids on every try of one request).
pub fn waterfall_of(job_id: &JobId, plan: &WaterfallPlan) -> Waterfall {
    let step = |s: &StepPlan, id: String| Step {
        provider: s.provider,
        operation: s.operation,
        options: s.options.clone(),
        job_id: JobId::new(id),
    };
    Waterfall {
        steps: plan
            .steps
            .iter()
            .enumerate()
            .map(|(t, s)| step(s, format!("{job_id}_s{t}")))
            .collect(),
        verify: plan.verify.as_ref().map(|(s, when)| Verify {
            step: step(s, format!("{job_id}_v")),
            when: *when,
        }),
        max_credits_per_contact: plan.max_credits_per_contact,
    }
}

/// Each step's job head and chunks, in chain order: `head` is the waterfall's (its contacts,
/// name and budget); `size` gives an operation's contacts per chunk.
pub fn step_jobs(
    head: &JobMeta,
    wf: &Waterfall,
    size: impl Fn(Operation) -> u64,
) -> Vec<(JobMeta, Vec<Chunk>)> {
    let chain = wf.chain();
    let name = head.name.clone().unwrap_or_default();
    chain
        .iter()
        .enumerate()
        .map(|(t, s)| {
            let size = size(s.operation);
            let n = if t == 0 { head.contacts } else { 0 };
            let mut meta = JobMeta::new(
                s.job_id.clone(),
                s.operation,
                Some(format!("{name} (step {} of {})", t + 1, chain.len())),
                JobStatus::Accepted,
                n,
                size,
                s.options.clone(),
            );
            meta.step_of = Some(StepOf {
                job: head.job_id.clone(),
                position: t,
            });
            meta.open = t > 0;
            meta.passes_on = t + 1 < chain.len();
            // Its ceiling only: its chunks reserve from the waterfall's head.
            meta.budget = head.budget;
            let chunks = if t == 0 {
                Chunk::plan(n, size)
            } else {
                Vec::new()
            };
            (meta, chunks)
        })
        .collect()
}

/// The waterfall's own head: no chunks of its own.
pub fn head_of(mut head: JobMeta, wf: Waterfall) -> JobMeta {
    head.chunks = 0;
    head.chunk_seq = 0;
    head.waterfall = Some(wf);
    head
}
