//! Cases: a job's credit budget: a chunk's reservation before its start, its release on the
//! chunk's real cost, and workers racing for one budget.

use crate::budget::{Budget, Reservation};
use crate::ids::{ChunkIndex, JobId};
use crate::jobs::{ChunkStatus, Outcome};
use crate::store::{ChunkUpdate, CreditBudget, JobWriter, Reserve, Results, SubmitLedger};

use super::{Faults, chunk_ref, created, new_job, result};

/// A job of `chunks` chunks of `size` contacts with a budget of `max` credits, created.
async fn budgeted<S: JobWriter>(s: &S, chunks: u64, size: u64, max: f64) -> JobId {
    let (mut meta, planned, all) = new_job(chunks * size, size);
    meta.budget = Some(Budget::new(max));
    s.create_job(&meta, &planned, &all).await.expect("create");
    meta.job_id
}

async fn left<S: JobWriter>(s: &S, id: &JobId) -> f64 {
    let meta = s.get_job(id).await.unwrap().unwrap();
    meta.budget.expect("a budget").left
}

async fn reservation<S: JobWriter>(s: &S, id: &JobId, i: u32) -> Option<Reservation> {
    s.chunk(id, ChunkIndex(i))
        .await
        .unwrap()
        .unwrap()
        .reservation
}

fn ended(index: u32, status: ChunkStatus, credits: Option<f64>) -> ChunkUpdate {
    ChunkUpdate {
        index: ChunkIndex(index),
        status,
        credits,
        error: None,
    }
}

/// A pending chunk reserves once, and only if it fits; a chunk not pending reserves nothing; a
/// job without a budget reserves nothing.
pub async fn a_budget_is_reserved_once_and_only_if_it_fits<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + SubmitLedger + Results + CreditBudget,
{
    let id = &budgeted(s, 3, 2, 250.0).await;
    let (c0, c1, c2) = (ChunkIndex(0), ChunkIndex(1), ChunkIndex(2));
    assert_eq!(
        s.reserve_credits(id, id, c0, 100.0).await.unwrap(),
        Reserve::Reserved
    );
    assert_eq!(
        s.reserve_credits(id, id, c0, 100.0).await.unwrap(),
        Reserve::Held,
        "its start tried again"
    );
    assert_eq!(
        s.reserve_credits(id, id, c1, 100.0).await.unwrap(),
        Reserve::Reserved
    );
    assert_eq!(left(s, id).await, 50.0);
    assert_eq!(
        s.reserve_credits(id, id, c2, 100.0).await.unwrap(),
        Reserve::Exhausted { left: 50.0 }
    );
    assert_eq!(reservation(s, id, 2).await, None, "nothing recorded");
    // Taken by a worker meanwhile: not pending, nothing reserved.
    assert!(s.begin_submit(id, c2, "w", 60_000).await.unwrap().is_some());
    assert_eq!(
        s.reserve_credits(id, id, c2, 10.0).await.unwrap(),
        Reserve::NotPending
    );
    s.release_submit(id, c2, "w").await.unwrap();
    assert_eq!(left(s, id).await, 50.0);

    let plain = created(s, 2, 2).await;
    assert_eq!(
        s.reserve_credits(&plain.job_id, &plain.job_id, c0, 1.0)
            .await
            .unwrap(),
        Reserve::Unlimited
    );
    assert_eq!(reservation(s, &plain.job_id, 0).await, None);
    assert!(!s.release_credits(&plain.job_id, c0, 0.0).await.unwrap());
}

/// The cost reported with a chunk's end gives the rest back, once (a redelivered report gives
/// back nothing more), which makes room for a later chunk; a cost reported before the end gives
/// back nothing; a start that never happened gives all of it back.
pub async fn a_reservation_is_released_once_at_the_real_cost<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + SubmitLedger + Results + CreditBudget,
{
    let id = &budgeted(s, 3, 2, 250.0).await;
    let (c0, c1, c2) = (ChunkIndex(0), ChunkIndex(1), ChunkIndex(2));
    for c in [c0, c1] {
        assert_eq!(
            s.reserve_credits(id, id, c, 100.0).await.unwrap(),
            Reserve::Reserved
        );
    }
    assert_eq!(left(s, id).await, 50.0);
    // Chunk 0 ends, its cost reported: 70 back, once.
    let set = || {
        vec![
            result(0, Outcome::Found, false),
            result(1, Outcome::NotFound, false),
        ]
    };
    let report = ended(0, ChunkStatus::Completed, Some(30.0));
    s.store_chunk(id, chunk_ref(c0, 0, 2), set(), report.clone())
        .await
        .unwrap();
    assert_eq!(left(s, id).await, 120.0);
    let settled = Some(Reservation {
        credits: 100.0,
        settled: Some(30.0),
    });
    assert_eq!(reservation(s, id, 0).await, settled);
    s.store_chunk(id, chunk_ref(c0, 0, 2), set(), report)
        .await
        .unwrap();
    assert!(!s.release_credits(id, c0, 0.0).await.unwrap());
    assert_eq!(
        left(s, id).await,
        120.0,
        "a redelivered report gives back nothing more"
    );
    assert_eq!(reservation(s, id, 0).await, settled);

    // Chunk 1: a cost before its end (a start's `credits_used`) gives back nothing; its last
    // single result, ending it with its cost, does.
    let early = ended(1, ChunkStatus::Submitted, Some(3.0));
    s.store_result(id, c1, result(2, Outcome::Found, false), Some(early))
        .await
        .unwrap();
    assert_eq!(left(s, id).await, 120.0);
    let last = ended(1, ChunkStatus::Completed, Some(0.5));
    s.store_result(id, c1, result(3, Outcome::NotFound, false), Some(last))
        .await
        .unwrap();
    assert_eq!(left(s, id).await, 219.5);

    // The room made lets chunk 2 reserve; a start that never happened gives all of it back.
    assert_eq!(
        s.reserve_credits(id, id, c2, 100.0).await.unwrap(),
        Reserve::Reserved
    );
    assert_eq!(left(s, id).await, 119.5);
    assert!(s.release_credits(id, c2, 0.0).await.unwrap());
    assert!(!s.release_credits(id, c2, 0.0).await.unwrap());
    assert_eq!(left(s, id).await, 219.5);
}

/// Workers racing for one budget, two for each chunk: exactly as many chunks reserve as fit,
/// each once, and the budget never goes below zero.
pub async fn racing_reservations_never_exceed_the_budget<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + CreditBudget,
{
    let id = &budgeted(s, 10, 1, 4.5).await;
    let races = (0..20u32).map(|k| s.reserve_credits(id, id, ChunkIndex(k % 10), 1.0));
    let answers: Vec<Reserve> = futures::future::join_all(races)
        .await
        .into_iter()
        .map(|r| r.expect("reserve"))
        .collect();
    let reserved = answers.iter().filter(|a| **a == Reserve::Reserved).count();
    assert_eq!(reserved, 4, "{answers:?}");
    let mut held = 0;
    for i in 0..10 {
        if reservation(s, id, i).await.is_some() {
            held += 1;
        }
    }
    assert_eq!(held, 4, "one reservation per chunk that fit");
    assert_eq!(left(s, id).await, 0.5);
}
