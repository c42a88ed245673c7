//! Cases: results and their counters.

use std::collections::HashSet;

use crate::jobs::{ChunkStatus, ContactResult, JobStatus, Outcome};
use crate::store::{JobWriter, Results, StoreError, Stored, SubmitLedger};

use super::{Faults, chunk_ref, completed, contact, created, figures, result};
use crate::ids::ContactIndex;
use crate::ids::{ChunkIndex, JobId};

/// What a write did, without its cost (how many calls it made is the backend's own).
fn did(s: &Stored) -> (usize, usize, usize) {
    (s.new, s.existing, s.replaced)
}

/// The first final row of a contact stands; a second result for it is counted nowhere.
pub async fn the_first_final_result_wins<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + Results,
{
    let meta = created(s, 2, 2).await;
    let id = &meta.job_id;
    let first = s
        .store_result(id, ChunkIndex(0), result(0, Outcome::Found, false), None)
        .await;
    let first = first.unwrap();
    assert_eq!(did(&first), (1, 0, 0));
    assert!(
        !first.awaiting_link,
        "a pending chunk does not wait for a link"
    );
    let second = s
        .store_result(id, ChunkIndex(0), result(0, Outcome::NotFound, false), None)
        .await;
    assert_eq!(did(&second.unwrap()), (0, 1, 0));
    let rows = s.results(id, ContactIndex(0), 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, Outcome::Found);
    assert_eq!(figures(s, id).await, [1, 1, 0, 0]);
    assert_eq!(
        s.stored_indices(id, ContactIndex(0), ContactIndex(1))
            .await
            .unwrap(),
        HashSet::from([ContactIndex(0)])
    );
    assert_eq!(s.settle_job(id).await.unwrap(), None, "a contact left");
}

/// A provisional row (a per-contact webhook's) is replaced by the final result, once, and the
/// counters move by the difference; the chunk's final set replaces the rest and settles the job.
pub async fn a_provisional_row_is_replaced_once<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + Results,
{
    let meta = created(s, 3, 3).await;
    let id = &meta.job_id;
    let chunk = chunk_ref(ChunkIndex(0), 0, 3);
    for i in 0..2 {
        let p = s
            .store_result(id, ChunkIndex(0), result(i, Outcome::Found, true), None)
            .await;
        assert_eq!(did(&p.unwrap()), (1, 0, 0));
    }
    let again = s
        .store_result(id, ChunkIndex(0), result(0, Outcome::Found, true), None)
        .await;
    assert_eq!(
        did(&again.unwrap()),
        (0, 1, 0),
        "a provisional row is not replaced by one"
    );
    assert_eq!(figures(s, id).await, [2, 2, 0, 0]);
    // The final result of contact 0 replaces its stand-in: one found becomes a not found.
    let fin = s
        .store_result(id, ChunkIndex(0), result(0, Outcome::NotFound, false), None)
        .await;
    assert_eq!(did(&fin.unwrap()), (0, 0, 1));
    assert_eq!(figures(s, id).await, [2, 1, 1, 0]);
    let twice = s
        .store_result(id, ChunkIndex(0), result(0, Outcome::Found, false), None)
        .await;
    assert_eq!(did(&twice.unwrap()), (0, 1, 0), "replaced once");
    assert_eq!(figures(s, id).await, [2, 1, 1, 0]);

    // The chunk's final set: 0 stands, 1 replaces its stand-in, 2 is new.
    let set = vec![
        result(0, Outcome::Found, false),
        result(1, Outcome::NotFound, false),
        result(2, Outcome::Found, false),
    ];
    let stored = s
        .store_chunk(id, chunk, set.clone(), completed(ChunkIndex(0)))
        .await
        .unwrap();
    assert_eq!(did(&stored), (1, 1, 1));
    let group = stored.final_group.expect("the chunk joined its group");
    assert_eq!((group.group, group.size), (0, 1));
    assert!(stored.may_settle(1));
    assert_eq!(figures(s, id).await, [3, 1, 2, 0]);
    let replay = s
        .store_chunk(id, chunk, set, completed(ChunkIndex(0)))
        .await
        .unwrap();
    assert_eq!(did(&replay), (0, 3, 0), "a replay writes nothing");
    assert_eq!(figures(s, id).await, [3, 1, 2, 0]);

    let rows: Vec<(Outcome, bool)> = s
        .results(id, ContactIndex(0), 10)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.outcome, r.provisional))
        .collect();
    assert_eq!(
        rows,
        [
            (Outcome::NotFound, false),
            (Outcome::NotFound, false),
            (Outcome::Found, false)
        ]
    );
    assert_eq!(s.settle_job(id).await.unwrap(), Some(JobStatus::Completed));
    assert_eq!(s.settle_job(id).await.unwrap(), None, "settled once");
    let head = s.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        (head.status, head.done, head.found, head.not_found),
        (JobStatus::Completed, 3, 1, 2)
    );
}

/// A chunk's set is written while its chunk is there: one outside the chunk is refused, and
/// once the job's erasure took the chunk nothing is written.
pub async fn a_chunk_set_is_written_under_its_chunk<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + Results + SubmitLedger,
{
    let meta = created(s, 4, 2).await;
    let id = &meta.job_id;
    let second = chunk_ref(ChunkIndex(1), 2, 2);
    let set = vec![
        result(2, Outcome::Found, false),
        result(2, Outcome::NotFound, false),
    ];
    let stored = s
        .store_chunk(id, second, set, completed(ChunkIndex(1)))
        .await
        .unwrap();
    assert_eq!(
        did(&stored),
        (1, 0, 0),
        "the same contact twice: the first stands"
    );
    assert_eq!(
        s.results(id, ContactIndex(0), 10).await.unwrap()[0].outcome,
        Outcome::Found
    );
    assert_eq!(figures(s, id).await, [1, 1, 0, 0]);
    assert_eq!(
        s.chunk(id, ChunkIndex(1)).await.unwrap().unwrap().status,
        ChunkStatus::Completed
    );

    assert!(s.mark_deleted(id).await.unwrap());
    while s.delete_items(id, 100).await.unwrap() > 0 {}
    let first = chunk_ref(ChunkIndex(0), 0, 2);
    let gone = s
        .store_chunk(
            id,
            first,
            vec![result(0, Outcome::Found, false)],
            completed(ChunkIndex(0)),
        )
        .await;
    assert!(matches!(gone, Err(StoreError::Conflict(_))), "{gone:?}");
    assert!(s.results(id, ContactIndex(0), 10).await.unwrap().is_empty());
}

/// A failure (the relay's inference, or a provider's account of a contact it could not
/// finish) never replaces a stored result; a deadline's placeholder is replaced by any result.
pub async fn a_failure_never_replaces_a_result<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + Results,
{
    let meta = created(s, 2, 2).await;
    let id = &meta.job_id;
    s.store_result(id, ChunkIndex(0), result(0, Outcome::Found, true), None)
        .await
        .unwrap();
    let failure = ContactResult::failed(&contact(0), "provider_rejected");
    let kept = s
        .store_result(id, ChunkIndex(0), failure, None)
        .await
        .unwrap();
    assert_eq!(did(&kept), (0, 1, 0));
    let placeholder = ContactResult::timed_out(&contact(0));
    let kept = s
        .store_result(id, ChunkIndex(0), placeholder, None)
        .await
        .unwrap();
    assert_eq!(did(&kept), (0, 1, 0), "a placeholder replaces nothing");

    s.store_result(
        id,
        ChunkIndex(0),
        ContactResult::timed_out(&contact(1)),
        None,
    )
    .await
    .unwrap();
    assert_eq!(figures(s, id).await, [2, 1, 0, 1]);
    let failure = ContactResult::failed(&contact(1), "provider_rejected");
    let replaced = s
        .store_result(id, ChunkIndex(0), failure, None)
        .await
        .unwrap();
    assert_eq!(
        did(&replaced),
        (0, 0, 1),
        "any result replaces a placeholder"
    );
    let rows = s.results(id, ContactIndex(0), 10).await.unwrap();
    assert_eq!(
        (rows[0].outcome, rows[0].provisional),
        (Outcome::Found, true)
    );
    assert_eq!(rows[1].reason.as_deref(), Some("provider_rejected"));
    assert!(!rows[1].provisional);
    assert_eq!(figures(s, id).await, [2, 1, 0, 1]);
}

/// A job read with its chunks is the job and the chunks read apart, while it runs (figures
/// summed over the chunks) and once it ended (its settled figures), duplicates included.
pub async fn a_job_reads_with_its_chunks_as_apart<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + Results,
{
    let meta = created(s, 3, 2).await;
    let id = &meta.job_id;
    let apart = || async {
        let view = s.job_view(id).await.unwrap().unwrap();
        (view, s.chunks(id).await.unwrap())
    };
    let together = || async { s.job_with_chunks(id).await.unwrap().unwrap() };
    assert_eq!(together().await, apart().await, "nothing stored yet");
    s.add_duplicate(id).await.unwrap();
    let rows = vec![
        result(0, Outcome::Found, false),
        result(1, Outcome::NotFound, false),
    ];
    let done = completed(ChunkIndex(0));
    s.store_chunk(id, chunk_ref(ChunkIndex(0), 0, 2), rows, done)
        .await
        .unwrap();
    let (running, chunks) = together().await;
    assert_eq!((running.clone(), chunks), apart().await, "running");
    assert_eq!((running.done, running.found, running.duplicates), (2, 1, 1));
    let last = vec![result(2, Outcome::Found, false)];
    let done = completed(ChunkIndex(1));
    s.store_chunk(id, chunk_ref(ChunkIndex(1), 2, 1), last, done)
        .await
        .unwrap();
    s.settle_job(id).await.unwrap();
    let (ended, _) = together().await;
    assert_eq!(ended.status, JobStatus::Completed);
    assert_eq!(together().await, apart().await, "ended");
    assert_eq!(
        s.job_with_chunks(&JobId::new("job_none")).await.unwrap(),
        None
    );
}
