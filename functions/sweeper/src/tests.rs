//! The sweeper's rules on the in-memory twin under the paused clock (milliseconds): what is due
//! gets one message on the right queue, once per hold; what is not due, or final, gets none.

use std::time::Duration;

use relay_shared::envelope::{PollRequest, SubmitAction, SubmitChunk};
use relay_shared::jobs::{
    Chunk, ChunkStatus, Contact, ContactResult, JobMeta, JobStatus, Operation,
};
use relay_shared::queue::MemoryQueue;
use relay_shared::store::memory::MemoryJobs;
use relay_shared::store::{
    CREATION_GRACE, ChunkRef, ChunkUpdate, DEFAULT_POLL_AFTER_MS, DEFAULT_START_OVERDUE_MS,
    ERASE_GRACE, JobWriter, Jobs, Results,
};
use serde_json::json;

use crate::{Sweep, Sweeper};
use relay_shared::JobId;
use relay_shared::{ChunkIndex, ContactIndex, ProviderId};

const HOLD: Duration = Duration::from_secs(600);

fn sweeper() -> Sweeper<MemoryJobs, MemoryQueue> {
    Sweeper {
        jobs: MemoryJobs::default(),
        queue: MemoryQueue::default(),
        submit_queue: MemoryQueue::default(),
        hold: HOLD,
        limit: 100,
    }
}

/// A FullEnrich job of `chunks` one-contact chunks, none started.
fn job(s: &Sweeper<MemoryJobs, MemoryQueue>, chunks: u64, creating: bool) -> JobId {
    let job_id = JobId::new(format!("job_{}", uuid_like(chunks, creating)));
    let mut meta = JobMeta::new(
        job_id.clone(),
        Operation::Enrich,
        None,
        JobStatus::Accepted,
        chunks,
        1,
        json!({}),
    );
    meta.creating = creating;
    let contacts = (0..chunks)
        .map(|i| Contact {
            origin: None,
            index: ContactIndex(i),
            fields: json!({"linkedin_url": "https://www.linkedin.com/in/x"})
                .as_object()
                .cloned()
                .unwrap(),
            custom: None,
        })
        .collect();
    s.jobs.insert(meta, Chunk::plan(chunks, 1), contacts);
    job_id
}

fn uuid_like(a: u64, b: bool) -> String {
    format!("{:032x}", (a << 1) | u64::from(b))
}

/// Moves the paused clock `ms` on, and a second more: `now_ms` counts from its first call, which
/// comes a moment after the runtime's clock was paused.
async fn advance_ms(ms: u64) {
    tokio::time::advance(Duration::from_millis(ms + 1000)).await;
}

fn submits(q: &MemoryQueue) -> Vec<SubmitChunk> {
    q.take()
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect()
}

fn erasures(q: &MemoryQueue) -> Vec<JobId> {
    let mut ids: Vec<JobId> = submits(q)
        .into_iter()
        .filter(|m| m.action == SubmitAction::Delete)
        .map(|m| m.job_id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(start_paused = true)]
async fn a_chunk_whose_start_message_was_lost_gets_its_start_once_a_hold() {
    let s = sweeper();
    let id = job(&s, 2, false);
    assert_eq!(s.sweep().await.unwrap().due, 0, "not overdue yet");
    advance_ms(DEFAULT_START_OVERDUE_MS).await;
    let sweep = s.sweep().await.unwrap();
    assert_eq!((sweep.due, sweep.enqueued), (2, 2), "{sweep:?}");
    let starts = submits(&s.submit_queue);
    assert!(
        starts
            .iter()
            .all(|m| m.job_id == id && m.action == SubmitAction::Start)
    );
    assert_eq!(starts.len(), 2);
    // Taken: the next sweep within the hold sends nothing more.
    assert_eq!(s.sweep().await.unwrap().enqueued, 0);
    assert!(s.submit_queue.take().is_empty() && s.queue.take().is_empty());
    advance_ms(HOLD.as_millis() as u64).await;
    assert_eq!(
        s.sweep().await.unwrap().enqueued,
        2,
        "due again after the hold"
    );
}

#[tokio::test(start_paused = true)]
async fn a_started_chunk_whose_results_never_came_gets_a_poll_carrying_its_take() {
    let s = sweeper();
    let id = job(&s, 2, false);
    s.jobs.start(&id, ChunkIndex(0), &ProviderId::new("fe-0"));
    advance_ms(DEFAULT_POLL_AFTER_MS).await;
    // Chunk 1 is not started: its start is not overdue yet (20 min), chunk 0's poll is (10 min).
    let sweep = s.sweep().await.unwrap();
    assert_eq!(sweep.enqueued, 1, "{sweep:?}");
    let polls: Vec<PollRequest> = s
        .queue
        .take()
        .iter()
        .filter_map(|m| PollRequest::from_json(&m.body))
        .collect();
    assert_eq!(polls.len(), 1);
    assert_eq!(
        (polls[0].poll.job_id.as_str(), polls[0].poll.chunk),
        (id.as_str(), ChunkIndex(0))
    );
    assert!(
        polls[0].poll.taken_at_ms.is_some(),
        "the take rides on the poll"
    );
    assert!(s.submit_queue.take().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_final_chunk_is_never_due() {
    let s = sweeper();
    let id = job(&s, 1, false);
    s.jobs.start(&id, ChunkIndex(0), &ProviderId::new("fe-0"));
    let contact = s.jobs.contacts(&id, 0, 1).await.unwrap().remove(0);
    let update = ChunkUpdate {
        index: ChunkIndex(0),
        status: ChunkStatus::Failed,
        credits: None,
        error: None,
    };
    let chunk = ChunkRef {
        index: ChunkIndex(0),
        offset: 0,
        count: 1,
    };
    let failed = ContactResult::failed(&contact, "provider_lost");
    s.jobs
        .store_chunk(&id, chunk, vec![failed], update)
        .await
        .unwrap();
    advance_ms(DEFAULT_START_OVERDUE_MS * 10).await;
    assert_eq!(s.sweep().await.unwrap(), Sweep::default());
}

#[tokio::test(start_paused = true)]
async fn a_deleted_job_and_an_abandoned_creation_get_their_erasure_once() {
    let s = sweeper();
    let deleted = job(&s, 1, false);
    let creating = job(&s, 3, true);
    assert!(s.jobs.mark_deleted(&deleted).await.unwrap());
    advance_ms(ERASE_GRACE.as_millis() as u64).await;
    let sweep = s.sweep().await.unwrap();
    assert_eq!(
        sweep.erasures, 1,
        "the DELETE's: the creation is not abandoned yet"
    );
    assert_eq!(erasures(&s.submit_queue), vec![deleted.clone()]);
    advance_ms((CREATION_GRACE - ERASE_GRACE).as_millis() as u64).await;
    let sweep = s.sweep().await.unwrap();
    assert_eq!(
        sweep.erasures, 2,
        "{sweep:?}: the DELETE's again (its hold is over), and the creation's"
    );
    let mut want = vec![deleted, creating];
    want.sort();
    assert_eq!(erasures(&s.submit_queue), want);
}
