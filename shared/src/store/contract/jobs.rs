//! Cases: a job's creation under its `creating` mark, its erasure, a staged job's pages, and
//! `Idempotency-Key`s.

use crate::jobs::{Chunk, JobStatus};
use crate::now_ms;
use crate::store::{
    CREATION_GRACE, DueIndex, ERASE_GRACE, Idempotency, IdempotencyKeys, JobDrafts, JobWriter,
    Links, Page, PageWrite, Results, StoreError, SubmitLedger,
};

use super::{Faults, contact, created, new_job, result};
use crate::ids::ContactIndex;
use crate::ids::{ChunkIndex, JobId, ProviderId};
use crate::jobs::Outcome;

/// A job is written under its `creating` mark: not listed, and no chunk of it taken, until
/// its creation finishes; a retry finishes it; an existing id is a `Conflict`.
pub async fn a_job_is_listed_once_created<S>(s: &S, faults: &impl Faults)
where
    S: JobWriter + SubmitLedger + DueIndex,
{
    let (meta, chunks, contacts) = new_job(3, 2);
    faults.fail_creations(true);
    let failed = s.create_job(&meta, &chunks, &contacts).await;
    faults.fail_creations(false);
    assert!(failed.is_err(), "the injected failure: {failed:?}");
    let head = s
        .get_job(&meta.job_id)
        .await
        .unwrap()
        .expect("the head is written first");
    assert!(head.creating, "marked creating");
    let (listed, _) = s.list_jobs(100, None).await.unwrap();
    assert!(
        listed.iter().all(|m| m.job_id != meta.job_id),
        "not listed while creating"
    );
    assert_eq!(
        s.begin_submit(&meta.job_id, ChunkIndex(0), "w1", 60_000)
            .await
            .unwrap(),
        None
    );
    // Its erasure is due past the grace, should no retry come.
    let late = now_ms() + CREATION_GRACE.as_millis() as u64 + 60_000;
    let due = s.due_erasures(late, 100).await.unwrap();
    assert!(due.iter().any(|d| d.job_id == meta.job_id), "{due:?}");

    // A retry (the same job) finishes it.
    s.create_job(&meta, &chunks, &contacts).await.unwrap();
    let head = s.get_job(&meta.job_id).await.unwrap().unwrap();
    assert!(!head.creating && !head.deleted);
    let (listed, _) = s.list_jobs(100, None).await.unwrap();
    assert!(
        listed.iter().any(|m| m.job_id == meta.job_id),
        "listed once created"
    );
    assert!(
        !s.abandon_creation(&meta.job_id).await.unwrap(),
        "nothing to abandon"
    );
    assert_eq!(s.chunks(&meta.job_id).await.unwrap().len(), 2);
    assert_eq!(s.contacts(&meta.job_id, 0, 3).await.unwrap(), contacts);

    let again = s.create_job(&meta, &chunks, &contacts).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

/// A deleted job reads as deleted, leaves the listing, is due for its erasure until its items
/// are gone and its head is a tombstone.
pub async fn a_deleted_job_is_erased<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + SubmitLedger + Results + Links + DueIndex,
{
    assert!(
        !s.mark_deleted(&JobId::new("job_none")).await.unwrap(),
        "no such job"
    );
    let meta = created(s, 2, 1).await;
    let id = &meta.job_id;
    let chunk = s.chunk(id, ChunkIndex(0)).await.unwrap().unwrap();
    assert!(
        s.link_chunk(
            id,
            (&chunk).into(),
            &ProviderId::new("pid-e"),
            None,
            Some(&contact(0))
        )
        .await
        .unwrap()
    );
    s.store_result(id, ChunkIndex(0), result(0, Outcome::Found, false), None)
        .await
        .unwrap();

    assert!(s.mark_deleted(id).await.unwrap());
    assert!(s.get_job(id).await.unwrap().unwrap().deleted);
    let (listed, _) = s.list_jobs(100, None).await.unwrap();
    assert!(
        listed.iter().all(|m| m.job_id != id),
        "a deleted job is not listed"
    );
    let late = now_ms() + ERASE_GRACE.as_millis() as u64 + 60_000;
    assert!(
        s.due_erasures(late, 100)
            .await
            .unwrap()
            .iter()
            .any(|d| d.job_id == id)
    );

    let mut rounds = 0;
    while s.delete_items(id, 2).await.unwrap() > 0 {
        rounds += 1;
        assert!(rounds < 20, "the items run out");
    }
    assert!(
        rounds >= 3,
        "2 contacts, 2 chunks, a result and a link, 2 a round"
    );
    assert!(s.chunks(id).await.unwrap().is_empty());
    assert!(s.contacts(id, 0, 2).await.unwrap().is_empty());
    assert!(s.results(id, ContactIndex(0), 10).await.unwrap().is_empty());
    // Nothing of it is written again.
    let late_result = s
        .store_result(id, ChunkIndex(1), result(1, Outcome::Found, false), None)
        .await;
    assert!(
        matches!(late_result, Err(StoreError::Conflict(_))),
        "{late_result:?}"
    );

    s.finish_erasure(id).await.unwrap();
    let tomb = s.get_job(id).await.unwrap().expect("a tombstone");
    assert!(tomb.erased && tomb.deleted);
    assert_eq!((tomb.name, tomb.callback_url), (None, None));
    assert!(
        s.due_erasures(late, 100)
            .await
            .unwrap()
            .iter()
            .all(|d| d.job_id != id)
    );
    assert!(!s.mark_deleted(id).await.unwrap(), "erased already");
}

/// A draft takes pages (the same page again is unchanged, another body for its offset a
/// conflict) until a start seals it; a seal lifted lets pages come again; the start makes it
/// `accepted` with its chunks, once.
pub async fn a_draft_takes_pages_until_its_start<S>(s: &S, _: &impl Faults)
where
    S: JobDrafts,
{
    let (mut meta, _, contacts) = new_job(4, 2);
    meta.status = JobStatus::Draft;
    let id = meta.job_id.clone();
    s.create_draft(&meta).await.unwrap();
    let again = s.create_draft(&meta).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let page = |offset: u64, sha: &str| Page {
        offset,
        count: 2,
        sha256: sha.into(),
        complete: false,
    };
    let first = &contacts[0..2];
    let second = &contacts[2..4];
    assert_eq!(
        s.put_page(&id, &page(0, "a"), first).await.unwrap(),
        PageWrite::Written
    );
    assert_eq!(
        s.put_page(&id, &page(0, "a"), first).await.unwrap(),
        PageWrite::Unchanged
    );
    assert_eq!(
        s.put_page(&id, &page(0, "b"), first).await.unwrap(),
        PageWrite::Conflict
    );
    let pages = s.pages(&id).await.unwrap();
    assert_eq!(pages.len(), 1);
    assert!(pages[0].complete && pages[0].sha256 == "a" && pages[0].count == 2);

    let seal = s.seal_draft(&id, 60_000).await.unwrap().expect("sealed");
    assert_eq!(
        s.seal_draft(&id, 60_000).await.unwrap(),
        None,
        "held by the first"
    );
    assert_eq!(
        s.put_page(&id, &page(2, "c"), second).await.unwrap(),
        PageWrite::Closed
    );
    s.unseal_draft(&id, seal).await.unwrap();
    assert_eq!(
        s.put_page(&id, &page(2, "c"), second).await.unwrap(),
        PageWrite::Written
    );
    assert_eq!(s.contacts(&id, 0, 4).await.unwrap(), contacts);

    let seal = s
        .seal_draft(&id, 60_000)
        .await
        .unwrap()
        .expect("sealed again");
    let chunks = Chunk::plan(4, 2);
    assert!(
        !s.start_draft(&id, &chunks, seal + 1).await.unwrap(),
        "another seal"
    );
    assert!(s.start_draft(&id, &chunks, seal).await.unwrap());
    assert_eq!(
        s.get_job(&id).await.unwrap().unwrap().status,
        JobStatus::Accepted
    );
    assert_eq!(s.chunks(&id).await.unwrap().len(), 2);
    assert!(
        !s.start_draft(&id, &chunks, seal).await.unwrap(),
        "started once"
    );
    assert_eq!(
        s.put_page(&id, &page(4, "d"), &[]).await.unwrap(),
        PageWrite::Closed
    );
}

/// An `Idempotency-Key` is owned by one request at a time, for one body and one job: a retry
/// waits while the first holds it, takes over once it gave up, and finds the job once created.
pub async fn idempotency_keys_hold_one_job<S: IdempotencyKeys>(s: &S, _: &impl Faults) {
    let key = super::job_id();
    let owned = s
        .claim_idempotency_key(&key, "sha-a", &JobId::new("job_1"), "o1", 60_000)
        .await;
    assert_eq!(
        owned.unwrap(),
        Idempotency::Owned {
            job_id: "job_1".into()
        }
    );
    match s
        .claim_idempotency_key(&key, "sha-a", &JobId::new("job_2"), "o2", 60_000)
        .await
        .unwrap()
    {
        Idempotency::InUse { retry_after_ms } => assert!((1..=60_000).contains(&retry_after_ms)),
        other => panic!("in use: {other:?}"),
    }
    let other_body = s
        .claim_idempotency_key(&key, "sha-b", &JobId::new("job_2"), "o2", 60_000)
        .await;
    assert_eq!(
        other_body.unwrap(),
        Idempotency::Mismatch {
            job_id: "job_1".into()
        }
    );
    // Only the owner ends its hold.
    s.finish_idempotency_key(&key, "o2", true).await.unwrap();
    s.finish_idempotency_key(&key, "o1", false).await.unwrap();
    let taken = s
        .claim_idempotency_key(&key, "sha-a", &JobId::new("job_3"), "o3", 60_000)
        .await;
    assert_eq!(
        taken.unwrap(),
        Idempotency::Owned {
            job_id: "job_1".into()
        }
    );
    s.finish_idempotency_key(&key, "o3", true).await.unwrap();
    let created = s
        .claim_idempotency_key(&key, "sha-a", &JobId::new("job_4"), "o4", 60_000)
        .await;
    assert_eq!(
        created.unwrap(),
        Idempotency::Created {
            job_id: "job_1".into()
        }
    );
}
