//! Cases: completion callbacks, orphans, dedupe claims, account balances.

use crate::Provider;
use crate::jobs::{CallbackStatus, JobStatus, Outcome};
use crate::now_ms;
use crate::store::{
    BalanceCache, CachedBalance, CallbackAttempt, CallbackStore, Claim, DedupeStore, DueAction,
    DueIndex, JobWriter, Orphan, OrphanStore, Results,
};

use super::{Faults, chunk_ref, completed, new_job, result};
use crate::ids::ChunkIndex;

/// A job that ends with a callback URL has its callback due in the same write; an attempt is
/// taken once per due date (two messages for one date make one attempt), held by its lease,
/// and recorded under it.
pub async fn a_callback_is_taken_once_per_due_date<S>(s: &S, _: &impl Faults)
where
    S: JobWriter + Results + CallbackStore + DueIndex,
{
    let (mut meta, chunks, contacts) = new_job(1, 1);
    meta.callback_url = Some("https://example.com/hook".into());
    let id = meta.job_id.clone();
    s.create_job(&meta, &chunks, &contacts).await.unwrap();
    let early = s.take_callback(&id, None, 60_000).await.unwrap();
    assert_eq!(early, None, "not ended");
    let chunk = chunk_ref(ChunkIndex(0), 0, 1);
    let done = completed(ChunkIndex(0));
    let rows = vec![result(0, Outcome::Found, false)];
    s.store_chunk(&id, chunk, rows, done).await.unwrap();
    assert_eq!(s.settle_job(&id).await.unwrap(), Some(JobStatus::Completed));

    let (due, _) = s.due_chunks(now_ms() + 1, 100, 60_000).await.unwrap();
    let due: Vec<_> = due.into_iter().filter(|d| d.job_id == id).collect();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!((due[0].chunk, due[0].action), (None, DueAction::Callback));
    let at = due[0].poll_at_ms;
    let take = s.take_callback(&id, Some(at), 60_000).await.unwrap();
    let take = take.expect("taken");
    let state = take.meta.callback.clone().expect("its state");
    assert_eq!((state.status, state.attempts), (CallbackStatus::Pending, 1));
    assert!(take.lease > at);
    let twice = s.take_callback(&id, Some(at), 60_000).await.unwrap();
    assert_eq!(twice, None, "one per date");
    let held = s.take_callback(&id, None, 60_000).await.unwrap();
    assert_eq!(held, None, "held");

    let retry = attempt(Some(500), CallbackStatus::Pending, Some(now_ms()));
    let foreign = s.record_callback(&id, take.lease + 1, &retry).await;
    assert!(!foreign.unwrap(), "not its lease");
    assert!(s.record_callback(&id, take.lease, &retry).await.unwrap());
    let second = s.take_callback(&id, None, 60_000).await.unwrap();
    let second = second.expect("due again");
    assert_eq!(second.meta.callback.map(|c| c.attempts), Some(2));
    let delivered = attempt(Some(200), CallbackStatus::Delivered, None);
    let recorded = s.record_callback(&id, second.lease, &delivered).await;
    assert!(recorded.unwrap());
    let again = s.record_callback(&id, second.lease, &delivered).await;
    assert!(!again.unwrap(), "recorded");
    let after = s.take_callback(&id, None, 60_000).await.unwrap();
    assert_eq!(after, None, "delivered");
    let head = s.get_job(&id).await.unwrap().unwrap();
    let state = head.callback.expect("its state");
    let seen = (state.status, state.attempts, state.last_status_code);
    assert_eq!(seen, (CallbackStatus::Delivered, 2, Some(200)));
}

/// A callback attempt's record.
fn attempt(code: Option<u16>, status: CallbackStatus, next_at: Option<u64>) -> CallbackAttempt {
    CallbackAttempt {
        status_code: code,
        error: None,
        status,
        next_at,
    }
}

/// Orphans are kept as sent and listed newest first, a page at a time.
pub async fn orphans_are_listed_newest_first<S: OrphanStore>(s: &S, _: &impl Faults) {
    let now = now_ms();
    let orphan = |id: &str, at: u64, credits: Option<f64>| Orphan {
        provider: Provider::Enrow,
        provider_id: id.into(),
        event: "enrichment.completed".into(),
        received_at_ms: at,
        delivery_id: format!("d-{id}"),
        credits,
    };
    let (older, newer) = (
        orphan("e-1", now - 2_000, Some(1.0)),
        orphan("e-2", now - 1_000, None),
    );
    s.put_orphan(&older).await.unwrap();
    s.put_orphan(&newer).await.unwrap();
    s.put_orphan(&newer).await.unwrap();
    let (page, next) = s.list_orphans(1, None).await.unwrap();
    assert_eq!(page, [newer.clone()]);
    let (page, _) = s.list_orphans(1, next.as_ref()).await.unwrap();
    assert_eq!(page, [older.clone()]);
    let (all, next) = s.list_orphans(10, None).await.unwrap();
    assert_eq!((all, next), (vec![newer, older], None));
}

/// A delivery's claim (with a 1 s lease): its owner's claim again is still its own, another's
/// waits while the lease runs and takes it over after; a completed claim is a duplicate; only
/// the owner completes or releases it.
pub async fn dedupe_claims_hold_with_a_lease<D: DedupeStore>(d: &D) {
    let key = super::job_id();
    assert_eq!(d.claim(&key, "me").await.unwrap(), Claim::Claimed);
    assert_eq!(
        d.claim(&key, "me").await.unwrap(),
        Claim::Claimed,
        "its own claim"
    );
    assert_eq!(d.claim(&key, "other").await.unwrap(), Claim::InProgress);
    d.complete(&key, "other").await.unwrap();
    assert_eq!(
        d.claim(&key, "third").await.unwrap(),
        Claim::InProgress,
        "not completed"
    );
    d.complete(&key, "me").await.unwrap();
    assert_eq!(d.claim(&key, "other").await.unwrap(), Claim::Duplicate);
    assert_eq!(d.claim(&key, "me").await.unwrap(), Claim::Duplicate);

    let key = super::job_id();
    assert_eq!(d.claim(&key, "a").await.unwrap(), Claim::Claimed);
    d.release(&key, "b").await.unwrap();
    assert_eq!(
        d.claim(&key, "c").await.unwrap(),
        Claim::InProgress,
        "released by its owner only"
    );
    d.release(&key, "a").await.unwrap();
    assert_eq!(d.claim(&key, "c").await.unwrap(), Claim::Claimed);

    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(
        d.claim(&key, "d").await.unwrap(),
        Claim::Claimed,
        "the lease ran out"
    );
    d.complete(&key, "c").await.unwrap();
    assert_eq!(
        d.claim(&key, "e").await.unwrap(),
        Claim::InProgress,
        "taken over"
    );
}

/// A provider account's balance: none until read; a read is claimed once per period (a second
/// claim within it, as a racing instance's, is refused; one after it wins again); the figure
/// recorded is the one read, with when, per provider.
pub async fn a_balance_read_is_claimed_once_a_period<S: BalanceCache>(s: &S, _: &impl Faults) {
    let none = s.cached_balance(Provider::Fullenrich).await.unwrap();
    assert_eq!(none, CachedBalance::default());
    assert!(
        s.claim_balance_read(Provider::Fullenrich, 60_000)
            .await
            .unwrap()
    );
    assert!(
        !s.claim_balance_read(Provider::Fullenrich, 60_000)
            .await
            .unwrap(),
        "claimed already this minute"
    );
    assert!(
        s.claim_balance_read(Provider::Enrow, 60_000).await.unwrap(),
        "another account"
    );
    let before = now_ms();
    s.record_balance(Provider::Fullenrich, 250.5).await.unwrap();
    let cached = s.cached_balance(Provider::Fullenrich).await.unwrap();
    assert_eq!(cached.credits, Some(250.5));
    let read_at = cached.read_at_ms.expect("when");
    assert!(read_at >= before && read_at <= now_ms(), "{cached:?}");
    assert_eq!(cached.fresh(read_at + 59_999, 60_000), Some(250.5));
    assert_eq!(cached.fresh(read_at + 60_000, 60_000), None, "stale");
    assert_eq!(
        s.cached_balance(Provider::Enrow).await.unwrap().credits,
        None,
        "claimed, not read"
    );
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    assert!(
        s.claim_balance_read(Provider::Fullenrich, 20)
            .await
            .unwrap(),
        "its period passed"
    );
}
