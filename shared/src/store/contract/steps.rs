//! Cases: waterfall steps ([`Waterfalls`]): a chunk passing its contacts on, once; routes and
//! rows read back; a step that settles only once closed and passed on; one budget for every
//! step.

use serde_json::json;

use crate::budget::Budget;
use crate::ids::{ChunkIndex, ContactIndex, JobId};
use crate::jobs::{ChunkStatus, JobMeta, JobStatus, Operation, Outcome};
use crate::store::{
    CreditBudget, JobWriter, PassOn, Reserve, Results, StoreError, WaterfallFigures, Waterfalls,
};
use crate::waterfall::{Attempt, Origin, Route, StepOf};

use super::{Faults, completed, contact, created, job_id, new_job, result};

/// A later step's job: empty, open, a step of `of`.
async fn open_step<S: JobWriter>(s: &S, of: &JobId) -> JobMeta {
    let mut meta = JobMeta::new(
        job_id(),
        Operation::Enrich,
        Some("step".into()),
        JobStatus::Accepted,
        0,
        2,
        json!({}),
    );
    meta.step_of = Some(StepOf {
        job: of.clone(),
        position: 1,
    });
    meta.open = true;
    s.create_job(&meta, &[], &[]).await.expect("create");
    meta
}

fn pass(from: &JobId, chunk: u32, to: &JobId, count: u64) -> PassOn {
    PassOn {
        from: from.clone(),
        chunk: ChunkIndex(chunk),
        to: to.clone(),
        count,
        chunk_size: 2,
        not_found: count - 1,
        failed: 1,
    }
}

/// A source chunk passes its contacts on once: the same call again returns the same indices
/// and chunks, another source chunk takes the next ones, the source head counts what it
/// passed on once, and a closed step takes nothing.
pub async fn a_chunk_passes_its_contacts_on_once<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + Waterfalls,
{
    let source = created(s, 6, 3).await;
    let target = open_step(s, &source.job_id).await;
    let first = s
        .pass_on(&pass(&source.job_id, 0, &target.job_id, 3))
        .await
        .unwrap();
    assert_eq!(first.base, 0);
    let indices: Vec<u32> = first.chunks.iter().map(|c| c.index.get()).collect();
    assert_eq!(indices, [0, 1], "3 contacts in chunks of 2");
    assert_eq!(
        s.pass_on(&pass(&source.job_id, 0, &target.job_id, 3))
            .await
            .unwrap(),
        first,
        "the same pass-on again"
    );
    let second = s
        .pass_on(&pass(&source.job_id, 1, &target.job_id, 2))
        .await
        .unwrap();
    assert_eq!(second.base, 3);
    assert_eq!(second.chunks[0].index, ChunkIndex(2));
    assert_eq!((second.chunks[0].offset, second.chunks[0].count), (3, 2));
    let head = s.get_job(&target.job_id).await.unwrap().unwrap();
    assert_eq!((head.contacts, head.chunks, head.chunk_seq), (5, 3, 3));
    let chunks = s.chunks(&target.job_id).await.unwrap();
    assert_eq!(chunks.len(), 3);
    assert!(chunks.iter().all(|c| c.status == ChunkStatus::Pending));
    let src = s.get_job(&source.job_id).await.unwrap().unwrap();
    assert_eq!(
        (src.passed_on.not_found, src.passed_on.failed),
        (2 + 1, 2),
        "counted once per source chunk"
    );
    // The contacts, written after, read back with their origin.
    let mut c = contact(7);
    c.index = ContactIndex(3);
    c.origin = Some(Origin {
        index: ContactIndex(7),
        attempts: vec![],
    });
    s.write_contacts(&target.job_id, &[c.clone()])
        .await
        .unwrap();
    assert_eq!(s.contacts(&target.job_id, 3, 1).await.unwrap(), vec![c]);
    s.close_step(&target.job_id).await.unwrap();
    assert!(matches!(
        s.pass_on(&pass(&source.job_id, 2, &target.job_id, 1)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.pass_on(&pass(&source.job_id, 0, &target.job_id, 3))
            .await
            .unwrap(),
        first,
        "a pass-on made before still answers once closed"
    );
}

/// Routes read back in contact order over a range, several per contact; `results_at` reads
/// the rows stored of the indices asked.
pub async fn routes_and_rows_read_back<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + Results + Waterfalls,
{
    let head = created(s, 4, 4).await;
    let route = |index: u64, position: usize| Route {
        index: ContactIndex(index),
        position,
        at: ContactIndex(index + 10),
        attempts: vec![Attempt {
            provider: crate::Provider::Enrow,
            operation: Operation::EmailFind,
            outcome: "not_found".into(),
            reason: None,
            credits: 0.0,
        }],
        after: vec![],
    };
    let routes = vec![route(1, 1), route(1, 2), route(2, 1), route(3, 1)];
    s.put_routes(&head.job_id, &routes).await.unwrap();
    s.put_routes(&head.job_id, &routes[..1]).await.unwrap();
    let got = s
        .routes(&head.job_id, ContactIndex(1), ContactIndex(2))
        .await
        .unwrap();
    assert_eq!(got, routes[..3].to_vec());
    let chunk = super::chunk_ref(ChunkIndex(0), 0, 4);
    let set = vec![
        result(0, Outcome::Found, false),
        result(2, Outcome::NotFound, false),
    ];
    s.store_chunk(&head.job_id, chunk, set, completed(ChunkIndex(0)))
        .await
        .unwrap();
    let rows = s
        .results_at(
            &head.job_id,
            &[ContactIndex(2), ContactIndex(1), ContactIndex(0)],
        )
        .await
        .unwrap();
    let indices: Vec<u64> = rows.iter().map(|r| r.index.get()).collect();
    assert_eq!(indices, [0, 2], "the stored ones, in order");
}

/// A step that passes contacts on settles only once each final chunk is marked passed on; an
/// open step only once closed (an empty one then ends at once); the waterfall ends once with
/// the figures it is given.
pub async fn a_step_settles_only_closed_and_passed_on<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + Results + Waterfalls,
{
    let (mut meta, chunks, all) = new_job(2, 2);
    meta.passes_on = true;
    s.create_job(&meta, &chunks, &all).await.unwrap();
    let id = &meta.job_id;
    let set = vec![
        result(0, Outcome::Found, false),
        result(1, Outcome::NotFound, false),
    ];
    s.store_chunk(
        id,
        super::chunk_ref(ChunkIndex(0), 0, 2),
        set,
        completed(ChunkIndex(0)),
    )
    .await
    .unwrap();
    assert_eq!(s.settle_job(id).await.unwrap(), None, "not passed on yet");
    s.mark_passed(id, ChunkIndex(0)).await.unwrap();
    assert_eq!(
        s.chunk(id, ChunkIndex(0)).await.unwrap().unwrap().passed,
        true
    );
    assert_eq!(s.settle_job(id).await.unwrap(), Some(JobStatus::Completed));

    let step = open_step(s, id).await;
    assert_eq!(s.settle_job(&step.job_id).await.unwrap(), None, "open");
    s.close_step(&step.job_id).await.unwrap();
    assert_eq!(
        s.settle_job(&step.job_id).await.unwrap(),
        Some(JobStatus::Completed),
        "closed and empty: nothing to wait for"
    );

    let head = created(s, 10, 10).await;
    let figures = WaterfallFigures {
        done: 10,
        found: 7,
        not_found: 2,
        failed: 1,
    };
    assert_eq!(
        s.settle_waterfall(&head.job_id, figures).await.unwrap(),
        Some(JobStatus::PartiallyFailed)
    );
    assert_eq!(
        s.settle_waterfall(&head.job_id, figures).await.unwrap(),
        None
    );
    let m = s.get_job(&head.job_id).await.unwrap().unwrap();
    assert_eq!((m.done, m.found, m.not_found, m.failed), (10, 7, 2, 1));
}

/// A step's chunk reserves from its waterfall's budget, and its release goes back there.
pub async fn a_step_reserves_from_its_waterfalls_budget<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + Results + CreditBudget,
{
    let (mut head, _, _) = new_job(0, 1);
    head.budget = Some(Budget::new(10.0));
    s.create_job(&head, &[], &[]).await.unwrap();
    let step = created(s, 4, 2).await;
    let (w, j) = (&head.job_id, &step.job_id);
    assert_eq!(
        s.reserve_credits(w, j, ChunkIndex(0), 6.0).await.unwrap(),
        Reserve::Reserved
    );
    assert_eq!(
        s.reserve_credits(w, j, ChunkIndex(1), 6.0).await.unwrap(),
        Reserve::Exhausted { left: 4.0 }
    );
    let left = |m: Option<JobMeta>| m.unwrap().budget.unwrap().left;
    assert!(s.release_credits(j, ChunkIndex(0), 1.0).await.unwrap());
    assert_eq!(
        left(s.get_job(w).await.unwrap()),
        9.0,
        "the rest went back to the waterfall"
    );
    assert_eq!(
        s.get_job(j).await.unwrap().unwrap().budget,
        None,
        "the step holds none"
    );
}
