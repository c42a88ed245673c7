//! The chunk starter's paths on the in-memory stores (no moto, milliseconds): the start rule
//! (a start is sent again only when the provider is known not to have it), 429s waited out in
//! the queue, out of credits ending the job. DynamoDB's own semantics are `tests/it/submit.rs`'s.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use relay_shared::auth::WebhookSecret;
use relay_shared::bodies::{BodyStore, MemoryBodies};
use relay_shared::jobs::{Chunk, ChunkStatus, Contact, JobMeta, JobStatus, Operation, reasons};
use relay_shared::providers::submit::{StartError, StartRequest, Started, Submitter};
use relay_shared::queue::MemoryQueue;
use relay_shared::store::memory::MemoryJobs;
use relay_shared::store::{Jobs, Links, RateSchedule};
use serde_json::{Value, json};

use crate::{ChunkSubmitter, SubmitAction, SubmitChunk, Submitted};
use relay_shared::ContactIndex;
use relay_shared::ProviderId;
use relay_shared::{ChunkIndex, JobId};

/// A provider that answers each start from a script, and counts the starts it got.
#[derive(Default)]
pub(crate) struct Scripted {
    answers: Mutex<VecDeque<Result<Started, StartError>>>,
    pub(crate) starts: Mutex<Vec<Value>>,
}

impl Scripted {
    pub(crate) fn answer(&self, a: Result<Started, StartError>) {
        self.answers.lock().unwrap().push_back(a);
    }
    pub(crate) fn started(id: &str) -> Result<Started, StartError> {
        Ok(Started {
            id: id.into(),
            credits: None,
        })
    }
}

impl Submitter for Scripted {
    async fn start(&self, _: Operation, request: &StartRequest) -> Result<Started, StartError> {
        self.starts.lock().unwrap().push(request.body.clone());
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .expect("a start nobody scripted")
    }
}

pub(crate) type Worker = ChunkSubmitter<MemoryJobs, Scripted, MemoryQueue, MemoryBodies>;

pub(crate) fn worker() -> Worker {
    ChunkSubmitter {
        jobs: MemoryJobs::default(),
        bodies: MemoryBodies::default(),
        starter: Scripted::default(),
        queue: MemoryQueue::default(),
        callback_queue: MemoryQueue::default(),
        secret: WebhookSecret::new(b"worker-tests-secret-0123456789"),
        public_base_url: "https://relay.example".into(),
        fullenrich_interval: Duration::from_millis(1),
        enrow_interval: Duration::from_millis(1),
        lease: Duration::from_secs(60),
        confirm_timeout: Duration::from_secs(3600),
        deadline: Duration::from_secs(24 * 3600),
    }
}

/// An accepted FullEnrich enrich job of `n` contacts (chunks of 100).
fn fullenrich_job(w: &Worker, n: u64) -> JobId {
    let job_id = JobId::new(format!("job_{}", uuid::Uuid::new_v4().simple()));
    let meta = JobMeta::new(
        job_id.clone(),
        Operation::Enrich,
        Some("tests".into()),
        JobStatus::Accepted,
        n,
        100,
        json!({}),
    );
    let contacts = (0..n)
        .map(|i| Contact {
            origin: None,
            index: ContactIndex(i),
            fields:
                json!({"first_name": "Ada", "last_name": format!("L{i}"), "domain": "example.com"})
                    .as_object()
                    .cloned()
                    .unwrap(),
            custom: None,
        })
        .collect();
    w.jobs.insert(meta, Chunk::plan(n, 100), contacts);
    job_id
}

pub(crate) fn start(job_id: &JobId, chunk: ChunkIndex) -> SubmitChunk {
    serde_json::from_str(&SubmitChunk::start(job_id, chunk)).unwrap()
}

async fn chunk(w: &Worker, job_id: &JobId, i: u32) -> Chunk {
    let i = ChunkIndex(i);
    w.jobs.chunk(job_id, i).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_chunk_is_started_once_and_a_redelivered_message_sends_nothing() {
    let w = worker();
    let job = fullenrich_job(&w, 150);
    w.starter.answer(Scripted::started("fe-0"));
    w.starter.answer(Scripted::started("fe-1"));
    assert_eq!(
        w.handle(&start(&job, ChunkIndex(0))).await,
        Submitted::Started("fe-0".into())
    );
    assert_eq!(
        w.handle(&start(&job, ChunkIndex(0))).await,
        Submitted::Skipped
    );
    assert_eq!(w.starter.starts.lock().unwrap().len(), 1);
    let c = chunk(&w, &job, 0).await;
    assert_eq!(
        (c.status, c.provider_id.as_deref()),
        (ChunkStatus::Submitted, Some("fe-0"))
    );
    // The start carries the relay's record keys, so results map back to their contacts.
    let sent = w.starter.starts.lock().unwrap()[0].clone();
    assert_eq!(sent["data"][0]["custom"]["rid"], "0");
    assert_eq!(sent["data"].as_array().unwrap().len(), 100);

    assert_eq!(
        w.jobs.job_view(&job).await.unwrap().unwrap().status,
        JobStatus::Submitting
    );
    assert_eq!(
        w.handle(&start(&job, ChunkIndex(1))).await,
        Submitted::Started("fe-1".into())
    );
    assert_eq!(
        w.jobs.job_view(&job).await.unwrap().unwrap().status,
        JobStatus::Running
    );
}

#[tokio::test]
async fn a_429_puts_the_chunk_back_and_the_message_waits_in_the_queue() {
    let w = worker();
    let job = fullenrich_job(&w, 10);
    w.starter
        .answer(Err(StartError::RateLimited(Duration::from_secs(60))));
    let outcome = w.handle(&start(&job, ChunkIndex(0))).await;
    assert!(matches!(outcome, Submitted::Deferred(_)), "{outcome:?}");
    assert_eq!(chunk(&w, &job, 0).await.status, ChunkStatus::Pending);
    let queued = w.queue.take();
    assert_eq!(queued.len(), 1);
    assert!(
        queued[0].delay >= Duration::from_secs(59),
        "{:?}",
        queued[0].delay
    );
    assert_eq!(
        serde_json::from_str::<SubmitChunk>(&queued[0].body).unwrap(),
        start(&job, ChunkIndex(0))
    );
    // Known not started: the waited-out message starts it.
    w.starter.answer(Scripted::started("fe-0"));
    assert_eq!(
        w.handle(&start(&job, ChunkIndex(0))).await,
        Submitted::Started("fe-0".into())
    );
}

#[tokio::test]
async fn a_start_whose_answer_is_lost_is_never_sent_again() {
    let w = worker();
    let job = fullenrich_job(&w, 10);
    w.starter.answer(Err(StartError::Unconfirmed(
        "timed out after sending".into(),
    )));
    let outcome = w.handle(&start(&job, ChunkIndex(0))).await;
    assert!(matches!(outcome, Submitted::Unconfirmed(_)), "{outcome:?}");
    assert_eq!(
        chunk(&w, &job, 0).await.status,
        ChunkStatus::StartUnconfirmed
    );
    // A redelivery of the start message sends nothing (no answer is scripted: a second start
    // would panic the provider).
    assert_eq!(
        w.handle(&start(&job, ChunkIndex(0))).await,
        Submitted::Skipped
    );
    assert_eq!(w.starter.starts.lock().unwrap().len(), 1);
    // A confirmation check waits in the queue for the webhook.
    let checks: Vec<SubmitChunk> = w
        .queue
        .take()
        .iter()
        .filter_map(|m| serde_json::from_str(&m.body).ok())
        .collect();
    assert!(
        checks
            .iter()
            .any(|m| m.action == SubmitAction::ConfirmCheck),
        "{checks:?}"
    );
}

#[tokio::test]
async fn out_of_credits_fails_the_chunk_and_starts_nothing_more() {
    let w = worker();
    let job = fullenrich_job(&w, 150);
    w.starter.answer(Err(StartError::OutOfCredits));
    let outcome = w.handle(&start(&job, ChunkIndex(0))).await;
    assert!(matches!(outcome, Submitted::Failed(_)), "{outcome:?}");
    // The second chunk is not sent (nothing is scripted for it).
    let outcome = w.handle(&start(&job, ChunkIndex(1))).await;
    assert!(matches!(outcome, Submitted::Failed(_)), "{outcome:?}");
    assert_eq!(w.starter.starts.lock().unwrap().len(), 1);
    let meta = w.jobs.job_view(&job).await.unwrap().unwrap();
    assert_eq!(
        meta.error.as_ref().map(|e| e.code.as_str()),
        Some(reasons::CREDITS_INSUFFICIENT)
    );
    assert_eq!((meta.failed, meta.status), (150, JobStatus::Failed));
}

#[tokio::test]
async fn a_job_the_worker_ends_asks_for_its_callback() {
    use relay_shared::callback::CallbackRequest;
    let w = worker();
    let job = fullenrich_job(&w, 10);
    let mut meta = w.jobs.job_view(&job).await.unwrap().unwrap();
    meta.callback_url = Some("https://hooks.example.com/done".into());
    w.jobs.insert(
        meta,
        Chunk::plan(10, 100),
        w.jobs.contacts(&job, 0, 10).await.unwrap(),
    );
    w.starter.answer(Err(StartError::OutOfCredits));
    w.handle(&start(&job, ChunkIndex(0))).await;
    assert_eq!(
        w.jobs.job_view(&job).await.unwrap().unwrap().status,
        JobStatus::Failed
    );
    let asked: Vec<_> = w
        .callback_queue
        .take()
        .iter()
        .map(|m| CallbackRequest::from_json(&m.body))
        .collect();
    assert_eq!(asked, vec![Some(CallbackRequest::new(&job, None))]);
}

#[tokio::test(start_paused = true)]
async fn a_start_whose_slot_is_far_off_takes_none_and_gives_its_chunk_back() {
    let mut w = worker();
    w.fullenrich_interval = Duration::from_secs(1);
    let job = fullenrich_job(&w, 100);
    // The account's schedule is booked a minute ahead by other requests that will be made.
    for _ in 0..60 {
        w.jobs.take_slot("fullenrich", 1000, 120_000).await.unwrap();
    }
    let got = w.handle(&start(&job, ChunkIndex(0))).await;
    let Submitted::Deferred(wait) = got else {
        panic!("waits in the queue: {got:?}")
    };
    assert!(
        wait >= Duration::from_secs(29) && wait <= Duration::from_secs(31),
        "{wait:?}"
    );
    assert!(w.starter.starts.lock().unwrap().is_empty(), "nothing sent");
    assert_eq!(
        chunk(&w, &job, 0).await.status,
        ChunkStatus::Pending,
        "given back"
    );
    let queued = w.queue.take();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].delay, wait);
    // The worker never sleeps past what its invocation has left.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let got =
        relay_shared::invocation::within(deadline, w.handle(&start(&job, ChunkIndex(0)))).await;
    assert!(matches!(got, Submitted::Deferred(_)), "{got:?}");
    assert!(w.starter.starts.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_chunk_still_pending_at_its_jobs_deadline_never_starts_and_the_job_ends() {
    let w = worker();
    let job = fullenrich_job(&w, 150);
    w.starter.answer(Scripted::started("fe-0"));
    assert_eq!(
        w.handle(&start(&job, ChunkIndex(0))).await,
        Submitted::Started("fe-0".into())
    );
    // Chunk 1's start message was lost; its job's deadline passes.
    tokio::time::advance(Duration::from_secs(24 * 3600 + 1)).await;
    assert_eq!(
        w.handle(&start(&job, ChunkIndex(1))).await,
        Submitted::Failed(reasons::TIMED_OUT.into())
    );
    assert_eq!(w.starter.starts.lock().unwrap().len(), 1, "never started");
    let c = chunk(&w, &job, 1).await;
    assert_eq!(c.status, ChunkStatus::Failed);
}

#[tokio::test]
async fn a_cancel_recorded_before_the_take_stops_the_start() {
    use relay_shared::store::SubmitLedger;
    let w = worker();
    let job = fullenrich_job(&w, 100);
    let canceled = relay_shared::jobs::JobError::new(reasons::CANCELED, "canceled");
    w.jobs.set_job_error(&job, &canceled).await.unwrap();
    assert!(
        w.jobs
            .begin_submit(&job, ChunkIndex(0), "worker", 60_000)
            .await
            .unwrap()
            .is_none(),
        "the take is fenced by the job's cancel"
    );
    // A later error that does not stop the job leaves the cancel in place.
    let other = relay_shared::jobs::JobError::new(reasons::START_UNCONFIRMED, "lost");
    w.jobs.set_job_error(&job, &other).await.unwrap();
    let meta = w.jobs.get_job(&job).await.unwrap().unwrap();
    assert_eq!(meta.error.unwrap().code, reasons::CANCELED);
    // The chunk ends canceled, never started.
    assert_eq!(
        w.handle(&start(&job, ChunkIndex(0))).await,
        Submitted::Failed(reasons::CANCELED.into())
    );
    assert!(w.starter.starts.lock().unwrap().is_empty());
}

/// A provider whose start answer arrives after a webhook adopted the chunk under a wrong id.
struct AdoptedMeanwhile {
    jobs: MemoryJobs,
    job: JobId,
}

impl Submitter for AdoptedMeanwhile {
    async fn start(&self, _: Operation, _: &StartRequest) -> Result<Started, StartError> {
        let c = self
            .jobs
            .chunk(&self.job, ChunkIndex(0))
            .await
            .unwrap()
            .unwrap();
        let at = relay_shared::store::ChunkRef::from(&c);
        assert!(
            self.jobs
                .link_chunk(&self.job, at, &ProviderId::new("fe-wrong"), None, None)
                .await
                .unwrap()
        );
        Scripted::started("fe-real")
    }
}

#[tokio::test]
async fn a_chunk_adopted_under_a_wrong_id_takes_the_id_its_start_was_answered_with() {
    let w = worker();
    let job = fullenrich_job(&w, 100);
    let w = ChunkSubmitter {
        starter: AdoptedMeanwhile {
            jobs: w.jobs.clone(),
            job: job.clone(),
        },
        jobs: w.jobs,
        bodies: w.bodies,
        queue: w.queue,
        callback_queue: w.callback_queue,
        secret: w.secret,
        public_base_url: w.public_base_url,
        fullenrich_interval: w.fullenrich_interval,
        enrow_interval: w.enrow_interval,
        lease: w.lease,
        confirm_timeout: w.confirm_timeout,
        deadline: w.deadline,
    };
    assert_eq!(
        w.handle(&start(&job, ChunkIndex(0))).await,
        Submitted::Started("fe-real".into())
    );
    let c = w.jobs.chunk(&job, ChunkIndex(0)).await.unwrap().unwrap();
    assert_eq!(c.provider_id.as_deref(), Some("fe-real"));
    let link = w
        .jobs
        .find_chunk(&job, &ProviderId::new("fe-real"))
        .await
        .unwrap();
    assert_eq!(
        link.map(|l| l.index),
        Some(ChunkIndex(0)),
        "the real id maps"
    );
    assert!(
        w.jobs
            .find_chunk(&job, &ProviderId::new("fe-wrong"))
            .await
            .unwrap()
            .is_none(),
        "the wrong one goes"
    );
}

/// Runs a job's erasure as the worker does: the erase message, then each one it sends on.
async fn erase(w: &Worker, job_id: &JobId) {
    let mut next = vec![serde_json::from_str::<SubmitChunk>(&SubmitChunk::delete(job_id)).unwrap()];
    while let Some(m) = next.pop() {
        assert_eq!(w.handle(&m).await, Submitted::Skipped);
        next.extend(
            w.queue
                .take()
                .iter()
                .filter_map(|s| serde_json::from_str::<SubmitChunk>(&s.body).ok())
                .filter(|m| m.action == SubmitAction::Delete),
        );
    }
}

/// Issue 24 item 12: a job's erasure deletes its claim-checked delivery bodies (the largest,
/// most contact-rich things the relay keeps), and only its own; the head is then a tombstone
/// without name, options or callback.
#[tokio::test]
async fn a_jobs_erasure_deletes_its_claim_checked_bodies_and_only_its_own() {
    use relay_shared::Provider;
    use relay_shared::bodies::delivery_key;
    use relay_shared::store::JobWriter;
    let w = worker();
    let job = fullenrich_job(&w, 3);
    let other = fullenrich_job(&w, 3);
    for (j, d) in [(&job, "d1"), (&job, "d2"), (&other, "d3")] {
        let key = delivery_key(Provider::Fullenrich, j, d);
        w.bodies
            .put(&key, b"{\"datas\": []}".to_vec())
            .await
            .unwrap();
    }
    assert!(w.jobs.mark_deleted(&job).await.unwrap());
    erase(&w, &job).await;
    assert_eq!(
        w.bodies.keys(),
        vec![delivery_key(Provider::Fullenrich, &other, "d3")],
        "the deleted job's bodies are gone, the other job's kept"
    );
    let head = w.jobs.get_job(&job).await.unwrap().unwrap();
    assert!(head.erased && head.name.is_none() && head.options.is_null());
    assert!(w.jobs.chunks(&job).await.unwrap().is_empty());
    // A job not deleted is never erased by a stray message.
    erase(&w, &other).await;
    assert_eq!(w.bodies.keys().len(), 1);
    assert_eq!(w.jobs.chunks(&other).await.unwrap().len(), 1);
}

/// Issue 24 item 14: a job still being created (its head written first, the rest of it not
/// known to be) starts nothing, even on the sweeper's start for a chunk of it; its erasure, once
/// the sweeper asks for it, marks it deleted and takes everything it wrote.
#[tokio::test]
async fn a_job_still_being_created_starts_nothing_and_an_abandoned_one_is_erased() {
    use relay_shared::store::JobWriter;
    let w = worker();
    let job = fullenrich_job(&w, 3);
    let meta = w.jobs.get_job(&job).await.unwrap().unwrap();
    let contacts = w.jobs.contacts(&job, 0, 3).await.unwrap();
    // A creation whose chunks were written, then its request died before clearing the mark.
    w.jobs.insert(
        JobMeta {
            creating: true,
            ..meta.clone()
        },
        Chunk::plan(3, 100),
        contacts.clone(),
    );
    assert_eq!(
        w.handle(&start(&job, ChunkIndex(0))).await,
        Submitted::Skipped
    );
    assert!(w.starter.starts.lock().unwrap().is_empty());
    assert_eq!(chunk(&w, &job, 0).await.status, ChunkStatus::Pending);
    let (listed, _) = w.jobs.list_jobs(10, None).await.unwrap();
    assert!(listed.is_empty(), "not listed while it is being created");

    erase(&w, &job).await;
    let head = w.jobs.get_job(&job).await.unwrap().unwrap();
    assert!(head.deleted && head.erased && !head.creating);
    assert!(w.jobs.chunks(&job).await.unwrap().is_empty());
    assert!(w.jobs.contacts(&job, 0, 3).await.unwrap().is_empty());
    // A creation that finished is never abandoned by a stray erasure message.
    let other = fullenrich_job(&w, 3);
    erase(&w, &other).await;
    assert_eq!(w.jobs.chunks(&other).await.unwrap().len(), 1);
}

/// A staged job (issue 25 item 7) as the worker sees it: the chunks of a draft whose start has
/// not made it `accepted` start nothing; a cancel before its start stops every chunk; a draft
/// left unstarted past [`DRAFT_TTL`](relay_shared::store::DRAFT_TTL) is erased when the
/// sweeper asks, a draft still in time is not.
#[tokio::test]
async fn a_draft_starts_nothing_until_its_start_and_one_left_unstarted_is_erased() {
    use relay_shared::store::{DRAFT_TTL, JobDrafts, JobWriter, Page};
    let w = worker();
    let draft = |age_ms: u64| {
        let mut meta = JobMeta::new(
            JobId::new(format!("job_{}", uuid::Uuid::new_v4().simple())),
            Operation::Enrich,
            Some("big".into()),
            JobStatus::Draft,
            150,
            100,
            json!({}),
        );
        meta.created_at_ms -= age_ms;
        meta
    };
    let page = |n| Page {
        offset: 0,
        count: n,
        sha256: "p0".into(),
        complete: false,
    };
    let contacts: Vec<Contact> = (0..150)
        .map(|i| Contact {
            origin: None,
            index: ContactIndex(i),
            fields: json!({"linkedin_url": format!("https://www.linkedin.com/in/p{i}")})
                .as_object()
                .cloned()
                .unwrap(),
            custom: None,
        })
        .collect();

    // Chunks written by a start that has not made the job accepted (it died, or lost its seal).
    let meta = draft(0);
    let job = meta.job_id.clone();
    w.jobs.create_draft(&meta).await.unwrap();
    w.jobs.put_page(&job, &page(150), &contacts).await.unwrap();
    let seal = w.jobs.seal_draft(&job, 60_000).await.unwrap().unwrap();
    assert!(
        !w.jobs
            .start_draft(&job, &Chunk::plan(150, 100), seal + 1)
            .await
            .unwrap()
    );
    assert_eq!(w.submit(&job, ChunkIndex(0)).await, Submitted::Skipped);
    assert!(
        w.starter.starts.lock().unwrap().is_empty(),
        "a draft's chunk never starts"
    );

    // A cancel recorded before the start: the started job's chunks are never sent.
    let meta = draft(0);
    let job = meta.job_id.clone();
    w.jobs.create_draft(&meta).await.unwrap();
    w.jobs.put_page(&job, &page(150), &contacts).await.unwrap();
    w.jobs
        .set_job_error(
            &job,
            &relay_shared::jobs::JobError::new(reasons::CANCELED, "canceled"),
        )
        .await
        .unwrap();
    let seal = w.jobs.seal_draft(&job, 60_000).await.unwrap().unwrap();
    assert!(
        w.jobs
            .start_draft(&job, &Chunk::plan(150, 100), seal)
            .await
            .unwrap()
    );
    for i in 0..2 {
        assert_eq!(
            w.submit(&job, ChunkIndex(i)).await,
            Submitted::Failed(reasons::CANCELED.into())
        );
    }
    assert!(w.starter.starts.lock().unwrap().is_empty());
    assert_eq!(
        w.jobs.job_view(&job).await.unwrap().unwrap().shown_status(),
        "canceled"
    );

    // Left unstarted: erased once due, not before.
    let young = draft(DRAFT_TTL.as_millis() as u64 - 60_000);
    let old = draft(DRAFT_TTL.as_millis() as u64 + 1);
    for m in [&young, &old] {
        w.jobs.create_draft(m).await.unwrap();
        w.jobs
            .put_page(&m.job_id, &page(150), &contacts)
            .await
            .unwrap();
    }
    erase(&w, &young.job_id).await;
    erase(&w, &old.job_id).await;
    let head = w.jobs.get_job(&young.job_id).await.unwrap().unwrap();
    assert!(!head.deleted && w.jobs.contacts(&young.job_id, 0, 150).await.unwrap().len() == 150);
    let head = w.jobs.get_job(&old.job_id).await.unwrap().unwrap();
    assert!(head.deleted && head.erased, "{head:?}");
    assert!(
        w.jobs
            .contacts(&old.job_id, 0, 150)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(w.jobs.pages(&old.job_id).await.unwrap().is_empty());
    let listed = w.jobs.list_jobs(100, None).await.unwrap().0;
    assert!(listed.iter().all(|m| m.job_id != old.job_id));
}
