//! Cases: a chunk's start under its lease and the job's fence, links, polls, rate schedules and
//! the due index.

use crate::Provider;
use crate::jobs::{ChunkStatus, JobError, JobStatus, Outcome, reasons};
use crate::now_ms;
use crate::store::{
    DEFAULT_POLL_AFTER_MS, DEFAULT_START_OVERDUE_MS, DueAction, DueIndex, JobWriter, Link, Links,
    OrphanStore, Polls, RateSchedule, Results, Slot, StoreError, SubmitLedger,
};

use super::{Faults, chunk_ref, completed, contact, created, pid, result};
use crate::ids::ChunkIndex;

/// A pending chunk is taken by one worker (its own take sent again is still its own), put
/// back, marked unconfirmed by its owner, expired once; split in halves by its owner only; the
/// job counts its chunks out.
pub async fn a_chunk_is_taken_for_its_start_once<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + SubmitLedger,
{
    let meta = created(s, 4, 2).await;
    let id = &meta.job_id;
    let taken = s
        .begin_submit(id, ChunkIndex(0), "w1", 60_000)
        .await
        .unwrap();
    assert_eq!(taken.map(|c| c.status), Some(ChunkStatus::Starting));
    let again = s
        .begin_submit(id, ChunkIndex(0), "w1", 60_000)
        .await
        .unwrap();
    assert_eq!(
        again.map(|c| c.status),
        Some(ChunkStatus::Starting),
        "its own take again"
    );
    assert_eq!(
        s.begin_submit(id, ChunkIndex(0), "w2", 60_000)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.begin_fail(id, ChunkIndex(0), "w2", 60_000).await.unwrap(),
        None
    );

    s.release_submit(id, ChunkIndex(0), "w2").await.unwrap();
    assert_eq!(
        s.chunk(id, ChunkIndex(0)).await.unwrap().unwrap().status,
        ChunkStatus::Starting
    );
    s.release_submit(id, ChunkIndex(0), "w1").await.unwrap();
    assert_eq!(
        s.chunk(id, ChunkIndex(0)).await.unwrap().unwrap().status,
        ChunkStatus::Pending
    );

    assert!(
        s.begin_submit(id, ChunkIndex(0), "w1", 60_000)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        !s.mark_unconfirmed(id, ChunkIndex(0), Some("w2"))
            .await
            .unwrap()
    );
    assert!(
        !s.mark_unconfirmed(id, ChunkIndex(0), None).await.unwrap(),
        "the lease still runs"
    );
    assert!(
        s.mark_unconfirmed(id, ChunkIndex(0), Some("w1"))
            .await
            .unwrap()
    );
    let chunk = s.chunk(id, ChunkIndex(0)).await.unwrap().unwrap();
    assert_eq!(chunk.status, ChunkStatus::StartUnconfirmed);
    assert!(chunk.unconfirmed_at_ms.is_some());
    assert!(s.expire_unconfirmed(id, ChunkIndex(0)).await.unwrap());
    assert!(
        !s.expire_unconfirmed(id, ChunkIndex(0)).await.unwrap(),
        "expired once"
    );
    assert_eq!(
        s.chunk(id, ChunkIndex(0)).await.unwrap().unwrap().status,
        ChunkStatus::Failed
    );
}

/// A chunk taken for its start splits in halves (new indices from the job's `chunk_seq`) for its
/// taker only.
pub async fn a_taken_chunk_splits_in_halves<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + SubmitLedger,
{
    let meta = created(s, 4, 2).await;
    let id = &meta.job_id;
    let second = s
        .begin_submit(id, ChunkIndex(1), "w1", 60_000)
        .await
        .unwrap()
        .unwrap();
    let refused = s.split_chunk(id, &second, "w2").await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let halves = s.split_chunk(id, &second, "w1").await.unwrap();
    let shape: Vec<(ChunkIndex, u64, u64)> = halves
        .iter()
        .map(|c| (c.index, c.offset, c.count))
        .collect();
    assert_eq!(shape, [(ChunkIndex(2), 2, 1), (ChunkIndex(3), 3, 1)]);
    let parent = s.chunk(id, ChunkIndex(1)).await.unwrap().unwrap();
    assert_eq!(
        (parent.status, parent.parts),
        (ChunkStatus::Split, vec![ChunkIndex(2), ChunkIndex(3)])
    );
    let head = s.get_job(id).await.unwrap().unwrap();
    assert_eq!((head.chunks, head.chunk_seq), (3, 4));
    assert_eq!(s.chunks(id).await.unwrap().len(), 4);
    // Three chunks now (the split one's halves count in its place).
    assert_eq!(s.count_submitted(id).await.unwrap(), JobStatus::Submitting);
    assert_eq!(s.count_submitted(id).await.unwrap(), JobStatus::Submitting);
    assert_eq!(s.count_submitted(id).await.unwrap(), JobStatus::Running);
}

/// A job stopped (its error stops its starts) or deleted has none of its chunks taken for a
/// start; a chunk may still be taken to end it. A stopping error is never replaced.
pub async fn a_start_is_fenced_by_its_job<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + SubmitLedger,
{
    let meta = created(s, 3, 1).await;
    let id = &meta.job_id;
    let rejected = JobError::new(reasons::PROVIDER_REJECTED, "refused");
    s.set_job_error(id, &rejected).await.unwrap();
    assert!(
        s.begin_submit(id, ChunkIndex(0), "w1", 60_000)
            .await
            .unwrap()
            .is_some(),
        "not a stop"
    );
    let canceled = JobError::new(reasons::CANCELED, "canceled");
    s.set_job_error(id, &canceled).await.unwrap();
    assert_eq!(
        s.begin_submit(id, ChunkIndex(1), "w1", 60_000)
            .await
            .unwrap(),
        None,
        "stopped"
    );
    let ending = s.begin_fail(id, ChunkIndex(1), "w1", 60_000).await.unwrap();
    assert_eq!(ending.map(|c| c.status), Some(ChunkStatus::Starting));
    s.set_job_error(id, &rejected).await.unwrap();
    let head = s.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        head.error.map(|e| e.code).as_deref(),
        Some(reasons::CANCELED)
    );

    let other = created(s, 1, 1).await;
    assert!(s.mark_deleted(&other.job_id).await.unwrap());
    assert_eq!(
        s.begin_submit(&other.job_id, ChunkIndex(0), "w1", 60_000)
            .await
            .unwrap(),
        None
    );
    assert!(
        s.begin_fail(&other.job_id, ChunkIndex(0), "w1", 60_000)
            .await
            .unwrap()
            .is_some()
    );
}

/// A provider id is linked to its chunk while the chunk waits for one (the same id again is
/// still linked, another is refused), carries a one-contact chunk's contact, and is corrected to
/// the provider's own id.
pub async fn links_follow_their_chunk<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + SubmitLedger + Links,
{
    let meta = created(s, 3, 2).await;
    let id = &meta.job_id;
    let (first, second) = (
        chunk_ref(ChunkIndex(0), 0, 2),
        chunk_ref(ChunkIndex(1), 2, 1),
    );
    let linked = s
        .link_chunk(id, first, &pid("pid-a"), Some(0.5), Some(&contact(0)))
        .await;
    assert!(linked.unwrap());
    let chunk = s.chunk(id, ChunkIndex(0)).await.unwrap().unwrap();
    assert_eq!(chunk.provider_id.as_deref(), Some("pid-a"));
    assert_eq!(
        (chunk.status, chunk.credits),
        (ChunkStatus::Submitted, Some(0.5))
    );
    assert!(chunk.started_at_ms.is_some());
    assert_eq!(chunk.poll_every_ms, Some(DEFAULT_POLL_AFTER_MS));
    let link = s.find_link(id, &pid("pid-a")).await.unwrap();
    let by_range = Link {
        chunk: first,
        contact: None,
    };
    assert_eq!(link, Some(by_range), "two contacts: read by range");
    let linked = s
        .link_chunk(id, second, &pid("pid-b"), None, Some(&contact(2)))
        .await;
    assert!(linked.unwrap());
    let link = s.find_link(id, &pid("pid-b")).await.unwrap().unwrap();
    assert_eq!(
        link.contact,
        Some(contact(2)),
        "a one-contact chunk's link carries it"
    );

    let again = s.link_chunk(id, first, &pid("pid-a"), None, None).await;
    assert!(again.unwrap(), "the same id");
    let another = s.link_chunk(id, first, &pid("pid-x"), None, None).await;
    assert!(!another.unwrap(), "another id");
    assert_eq!(s.find_chunk(id, &pid("pid-x")).await.unwrap(), None);
    s.correct_link(id, first, &pid("pid-c"), None)
        .await
        .unwrap();
    assert_eq!(s.find_chunk(id, &pid("pid-c")).await.unwrap(), Some(first));
    let wrong = s.find_chunk(id, &pid("pid-a")).await.unwrap();
    assert_eq!(wrong, None, "the wrong link is gone");
    let chunk = s.chunk(id, ChunkIndex(0)).await.unwrap().unwrap();
    assert_eq!(chunk.provider_id.as_deref(), Some("pid-c"));
}

/// A linked provider id finds its job (and its head) at its provider only; once the job's
/// erasure took the chunks nothing is linked any more.
pub async fn a_linked_id_finds_its_job<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + SubmitLedger + Links + OrphanStore,
{
    let meta = created(s, 3, 2).await;
    let id = &meta.job_id;
    let second = chunk_ref(ChunkIndex(1), 2, 1);
    let linked = s
        .link_chunk(id, second, &pid("pid-b"), None, Some(&contact(2)))
        .await;
    assert!(linked.unwrap());
    let other = match meta.provider {
        Provider::Fullenrich => Provider::Enrow,
        Provider::Enrow => Provider::Fullenrich,
    };
    let found = s.job_of_provider_id(meta.provider, &pid("pid-b")).await;
    assert_eq!(found.unwrap().as_ref(), Some(id));
    let head = s
        .job_head_of_provider_id(meta.provider, &pid("pid-b"))
        .await;
    assert_eq!(head.unwrap().map(|m| m.job_id).as_ref(), Some(id));
    let elsewhere = s.job_of_provider_id(other, &pid("pid-b")).await;
    assert_eq!(elsewhere.unwrap(), None, "another provider's id");
    let unknown = s.job_of_provider_id(meta.provider, &pid("pid-z")).await;
    assert_eq!(unknown.unwrap(), None);

    assert!(s.mark_deleted(id).await.unwrap());
    while s.delete_items(id, 100).await.unwrap() > 0 {}
    let late = s
        .link_chunk(id, second, &pid("pid-d"), None, Some(&contact(2)))
        .await;
    assert!(!late.unwrap(), "an erased chunk links nothing");
    assert_eq!(s.find_link(id, &pid("pid-d")).await.unwrap(), None);
}

/// Fetches on the word of an unsigned body are counted per chunk, at most `max`.
pub async fn unsigned_fetches_are_counted_per_chunk<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + Links,
{
    let meta = created(s, 3, 2).await;
    let id = &meta.job_id;
    assert!(s.take_candidate(id, ChunkIndex(1), 2).await.unwrap());
    assert!(s.take_candidate(id, ChunkIndex(1), 2).await.unwrap());
    let third = s.take_candidate(id, ChunkIndex(1), 2).await;
    assert!(!third.unwrap(), "at most 2");
    let missing = s.take_candidate(id, ChunkIndex(7), 2).await;
    assert!(!missing.unwrap(), "no such chunk");
}

/// A started chunk's next poll moves as told, a poll the sweeper queued is claimed once, and a
/// final chunk has no poll left.
pub async fn a_poll_is_claimed_once<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + Links + Polls + Results + DueIndex,
{
    let meta = created(s, 2, 2).await;
    let id = &meta.job_id;
    let chunk = chunk_ref(ChunkIndex(0), 0, 2);
    assert!(
        s.link_chunk(id, chunk, &pid("pid-p"), None, None)
            .await
            .unwrap()
    );
    let before = now_ms();
    s.poll_later(id, ChunkIndex(0), 1_000).await.unwrap();
    assert_eq!(
        s.chunk(id, ChunkIndex(0))
            .await
            .unwrap()
            .unwrap()
            .poll_every_ms,
        Some(1_000)
    );
    let (due, _) = s.due_chunks(now_ms() + 1_500, 100, 60_000).await.unwrap();
    let due: Vec<_> = due.into_iter().filter(|d| d.job_id == id).collect();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(
        (due[0].chunk, due[0].action),
        (Some(ChunkIndex(0)), DueAction::Poll)
    );
    assert!((before + 1_000..=now_ms() + 1_000).contains(&due[0].poll_at_ms));

    let taken = s.take_due(&due[0], 60_000).await.unwrap().expect("taken");
    assert_eq!(
        s.take_due(&due[0], 60_000).await.unwrap(),
        None,
        "taken once"
    );
    assert!(
        !s.claim_poll(id, ChunkIndex(0), taken + 7).await.unwrap(),
        "not the poll queued"
    );
    assert!(s.claim_poll(id, ChunkIndex(0), taken).await.unwrap());
    assert!(
        !s.claim_poll(id, ChunkIndex(0), taken).await.unwrap(),
        "a second delivery"
    );

    let done = completed(ChunkIndex(0));
    let set = vec![
        result(0, Outcome::Found, false),
        result(1, Outcome::NotFound, false),
    ];
    s.store_chunk(id, chunk, set, done).await.unwrap();
    s.poll_later(id, ChunkIndex(0), 2_000).await.unwrap();
    assert_eq!(
        s.chunk(id, ChunkIndex(0))
            .await
            .unwrap()
            .unwrap()
            .poll_every_ms,
        None,
        "final"
    );
}

/// A rate schedule gives one slot per interval, no further ahead than the caller can wait; a
/// slot given back is the next one taken, when it was the last.
pub async fn rate_slots_pace_requests<S: RateSchedule>(s: &S, _: &impl Faults) {
    let name = super::job_id();
    let before = now_ms();
    let Slot::At(t0) = s.take_slot(&name, 1_000, 0).await.unwrap() else {
        panic!("an idle schedule gives its slot at once");
    };
    assert!((before..=now_ms()).contains(&t0));
    let busy = s.take_slot(&name, 1_000, 0).await.unwrap();
    assert_eq!(busy, Slot::Busy { retry_in_ms: 1_000 });
    assert_eq!(
        s.take_slot(&name, 1_000, 5_000).await.unwrap(),
        Slot::At(t0 + 1_000)
    );
    assert_eq!(
        s.take_slot(&name, 1_000, 5_000).await.unwrap(),
        Slot::At(t0 + 2_000)
    );
    assert!(matches!(
        s.take_slot(&name, 1_000, 1_500).await.unwrap(),
        Slot::Busy { .. }
    ));
    assert!(
        !s.return_slot(&name, t0 + 1_000, 1_000).await.unwrap(),
        "not the last"
    );
    assert!(s.return_slot(&name, t0 + 2_000, 1_000).await.unwrap());
    assert_eq!(
        s.take_slot(&name, 1_000, 5_000).await.unwrap(),
        Slot::At(t0 + 2_000)
    );
    assert!(!s.return_slot("no-such-schedule", t0, 1_000).await.unwrap());
}

/// Chunks not started are due for their start once it is overdue, each taken once.
pub async fn the_due_index_finds_what_is_due<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + DueIndex,
{
    let meta = created(s, 2, 1).await;
    let id = &meta.job_id;
    let (now, _) = s.due_chunks(now_ms(), 100, 60_000).await.unwrap();
    assert!(now.iter().all(|d| d.job_id != id), "{now:?}");
    let late = now_ms() + DEFAULT_START_OVERDUE_MS + 60_000;
    let (due, _) = s.due_chunks(late, 100, 60_000).await.unwrap();
    let mut due: Vec<_> = due.into_iter().filter(|d| d.job_id == id).collect();
    due.sort_by_key(|d| d.chunk);
    let what: Vec<_> = due.iter().map(|d| (d.chunk, d.action)).collect();
    assert_eq!(
        what,
        [
            (Some(ChunkIndex(0)), DueAction::Start),
            (Some(ChunkIndex(1)), DueAction::Start)
        ]
    );
    assert!(s.take_due(&due[0], 60_000).await.unwrap().is_some());
    assert_eq!(
        s.take_due(&due[0], 60_000).await.unwrap(),
        None,
        "taken once"
    );
    assert!(s.take_due(&due[1], 60_000).await.unwrap().is_some());
}
