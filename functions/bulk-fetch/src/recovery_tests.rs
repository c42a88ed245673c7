//! Every job ends, and ends right (issue: a budget that cannot run away, permanent poll errors,
//! results that stand, a leaked URL that can do little), on the in-memory stores: a scripted
//! provider that counts every GET, the account's request schedule as the stores keep it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_shared::Provider;
use relay_shared::bodies::MemoryBodies;
use relay_shared::envelope::{PollRequest, Signature};
use relay_shared::jobs::{
    Chunk, ChunkStatus, ContactResult, JobStatus, Operation, Outcome, reasons,
};
use relay_shared::providers::Hook;
use relay_shared::providers::client::{FetchError, ProviderClient};
use relay_shared::providers::{enrow, fullenrich};
use relay_shared::queue::MemoryQueue;
use relay_shared::store::memory::{MemoryDedupe, MemoryJobs};
use relay_shared::store::{ChunkRef, ChunkUpdate, Jobs, RateSchedule, Results, Slot};
use relay_shared::testing::{envelope, envelope_with, sqs_message};
use serde_json::{Value, json};

use crate::behaviour_tests::{contact, seed_job};
use crate::{Disposition, MAX_CANDIDATES, Worker};
use relay_shared::{ChunkIndex, JobId, ProviderId};

/// A provider whose GETs answer from a script, each one counted.
#[derive(Clone, Default)]
struct Scripted {
    /// FullEnrich enrichments by id; an id not here answers 404.
    fullenrich: Arc<Mutex<std::collections::HashMap<String, Value>>>,
    gets: Arc<Mutex<Vec<String>>>,
    /// A chunk (of a job in a store) whose start goes unconfirmed while the next GET runs.
    unconfirmed_during_get: Arc<Mutex<Option<(MemoryJobs, JobId, ChunkIndex)>>>,
}

impl Scripted {
    fn gets(&self) -> Vec<String> {
        self.gets.lock().unwrap().clone()
    }
    fn knows(&self, id: &str, body: Value) {
        self.fullenrich.lock().unwrap().insert(id.to_string(), body);
    }
}

impl ProviderClient for Scripted {
    async fn fullenrich_job(&self, _: Operation, id: &str) -> Result<fullenrich::Job, FetchError> {
        self.gets.lock().unwrap().push(id.to_string());
        let meanwhile = self.unconfirmed_during_get.lock().unwrap().take();
        if let Some((jobs, job_id, index)) = meanwhile {
            unconfirmed(&jobs, &job_id, index).await;
        }
        match self.fullenrich.lock().unwrap().get(id) {
            Some(body) => Ok(fullenrich::parse_batch(body.to_string().as_bytes()).unwrap()),
            None => Err(FetchError::Permanent(
                "HTTP 404 enrichment not found".into(),
            )),
        }
    }
    async fn enrow_bulk(&self, _: Operation, id: &str) -> Result<enrow::BulkResults, FetchError> {
        self.gets.lock().unwrap().push(id.to_string());
        Err(FetchError::Permanent("HTTP 400 id not found".into()))
    }
    async fn enrow_single(
        &self,
        _: Operation,
        id: &str,
    ) -> Result<(enrow::SingleResult, Value), FetchError> {
        self.gets.lock().unwrap().push(id.to_string());
        Err(FetchError::Permanent("HTTP 400 id not found".into()))
    }
}

type TestWorker = Worker<MemoryJobs, MemoryDedupe, Scripted, MemoryBodies, MemoryQueue>;

/// One FullEnrich request per second, for the figures to read simply.
const INTERVAL: Duration = Duration::from_millis(1000);

fn worker() -> TestWorker {
    crate::behaviour_tests::worker_with(Scripted::default(), INTERVAL)
}

/// A FullEnrich enrich job of `chunks` chunks of 2 contacts (contact `i` is rid `i`).
fn seed_fullenrich(w: &TestWorker, chunks: u32) -> JobId {
    let contacts = (0..u64::from(chunks) * 2)
        .map(|i| {
            let fields =
                json!({"first_name": "Ada", "last_name": format!("L{i}"), "domain": "example.com"});
            contact(i, fields, None)
        })
        .collect();
    seed_job(&w.jobs, Operation::Enrich, 2, contacts, None)
}

/// A finished FullEnrich enrichment of contacts `rids`, every one found.
fn finished(id: &str, rids: &[u64]) -> Value {
    let data: Vec<Value> = rids
        .iter()
        .map(|r| {
            json!({"custom": {"rid": r.to_string()}, "status": "FINISHED",
                   "contact_info": {"most_probable_work_email": {"email": format!("p{r}@example.com"), "status": "DELIVERABLE"}}})
        })
        .collect();
    json!({"id": id, "status": "FINISHED", "cost": {"credits": rids.len()}, "data": data})
}

fn unsigned_batch(job_id: &JobId, id: &str) -> String {
    envelope_with(
        Provider::Fullenrich,
        Hook::Batch,
        job_id,
        json!({"id": id, "status": "FINISHED", "data": []})
            .to_string()
            .as_bytes(),
        Signature::Absent,
    )
}

async fn handle(w: &TestWorker, body: &str) -> Disposition {
    w.handle_record(&sqs_message(body)).await
}

async fn chunk(w: &TestWorker, job_id: &JobId, index: ChunkIndex) -> Chunk {
    w.jobs.chunk(job_id, index).await.unwrap().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_delivery_whose_slot_is_far_off_takes_none_and_waits_in_the_queue() {
    let w = worker();
    let job_id = seed_fullenrich(&w, 1);
    w.jobs
        .start(&job_id, ChunkIndex(0), &ProviderId::new("fe-0"));
    w.providers.knows("fe-0", finished("fe-0", &[0, 1]));
    // A backlog booked the schedule 60 s ahead (60 requests that will be made).
    for _ in 0..60 {
        assert!(matches!(
            w.jobs.take_slot("fullenrich", 1000, 120_000).await.unwrap(),
            Slot::At(_)
        ));
    }
    let d = handle(&w, &unsigned_batch(&job_id, "fe-0")).await;
    let Disposition::Paced(wait) = d else {
        panic!("waits in the queue: {d:?}")
    };
    assert!(
        wait >= Duration::from_secs(39) && wait <= Duration::from_secs(43),
        "until a slot is within the 20 s it may wait, spread by up to 2 s: {wait:?}"
    );
    assert!(w.providers.gets().is_empty(), "no GET yet");
    let requeued = w.requeue.take();
    assert_eq!(
        requeued.len(),
        1,
        "the delivery waits as a new, delayed message"
    );
    assert_eq!(requeued[0].delay, wait);
    // It took no slot: the next caller finds the schedule where the backlog left it.
    let now = relay_shared::now_ms();
    match w.jobs.take_slot("fullenrich", 1000, 120_000).await.unwrap() {
        Slot::At(at) => assert!(at >= now + 59_000 && at <= now + 61_000, "{}", at - now),
        busy => panic!("{busy:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_get_that_would_not_fit_in_the_invocation_is_not_started() {
    let w = worker();
    let job_id = seed_fullenrich(&w, 1);
    w.jobs
        .start(&job_id, ChunkIndex(0), &ProviderId::new("fe-0"));
    w.providers.knows("fe-0", finished("fe-0", &[0, 1]));
    // 15 s left: a 20 s GET and its writes would outlive the invocation.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let d =
        relay_shared::invocation::within(deadline, handle(&w, &unsigned_batch(&job_id, "fe-0")))
            .await;
    assert!(matches!(d, Disposition::Paced(_)), "{d:?}");
    assert!(w.providers.gets().is_empty());
    // With the time it needs, the same delivery is fetched and applied.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let d =
        relay_shared::invocation::within(deadline, handle(&w, &unsigned_batch(&job_id, "fe-0")))
            .await;
    assert!(matches!(d, Disposition::Applied { new: 2, .. }), "{d:?}");
    assert_eq!(w.providers.gets(), vec!["fe-0".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn a_poll_answered_not_found_ends_its_chunk_and_is_never_polled_again() {
    let w = worker();
    let job_id = seed_fullenrich(&w, 2);
    w.jobs
        .start(&job_id, ChunkIndex(0), &ProviderId::new("fe-gone"));
    w.jobs
        .start(&job_id, ChunkIndex(1), &ProviderId::new("fe-1"));
    w.providers.knows("fe-1", finished("fe-1", &[2, 3]));
    let poll = PollRequest::new(&job_id, ChunkIndex(0), relay_shared::now_ms()).to_json();
    let d = handle(&w, &poll).await;
    assert!(
        matches!(&d, Disposition::Polled(r) if r.starts_with("ended")),
        "{d:?}"
    );
    assert!(w.dead_letters.take().is_empty(), "nothing parked");
    let c = chunk(&w, &job_id, ChunkIndex(0)).await;
    assert_eq!(c.status, ChunkStatus::Failed);
    assert_eq!(c.error.unwrap().code, reasons::PROVIDER_LOST);
    let results = w.jobs.results(&job_id);
    assert!(
        results
            .iter()
            .all(|r| r.reason.as_deref() == Some(reasons::PROVIDER_LOST))
    );
    // The chunk is final: a second poll makes no GET.
    handle(&w, &poll).await;
    assert_eq!(w.providers.gets(), vec!["fe-gone".to_string()]);
    // The other chunk's results end the job.
    handle(&w, &unsigned_batch(&job_id, "fe-1")).await;
    let meta = w.jobs.job_view(&job_id).await.unwrap().unwrap();
    assert_eq!(meta.status, JobStatus::PartiallyFailed);
}

#[tokio::test(start_paused = true)]
async fn a_poll_past_the_deadline_times_out_whatever_the_provider_answers() {
    let w = worker();
    let job_id = seed_fullenrich(&w, 1);
    w.jobs
        .start(&job_id, ChunkIndex(0), &ProviderId::new("fe-gone"));
    tokio::time::advance(crate::DEFAULT_DEADLINE + Duration::from_secs(1)).await;
    let poll = PollRequest::new(&job_id, ChunkIndex(0), relay_shared::now_ms()).to_json();
    assert_eq!(handle(&w, &poll).await, Disposition::TimedOut(2));
    let meta = w.jobs.job_view(&job_id).await.unwrap().unwrap();
    assert_eq!(meta.status, JobStatus::Failed);
}

/// A chunk whose start's answer was lost: `start_unconfirmed`, no provider id.
async fn unconfirmed(jobs: &MemoryJobs, job_id: &JobId, index: ChunkIndex) {
    use relay_shared::store::SubmitLedger;
    assert!(
        jobs.begin_submit(job_id, index, "me", 60_000)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        jobs.mark_unconfirmed(job_id, index, Some("me"))
            .await
            .unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn a_signed_contact_finished_adopts_its_unconfirmed_chunk_and_its_results_stand() {
    let w = worker();
    let job_id = seed_fullenrich(&w, 1);
    unconfirmed(&w.jobs, &job_id, ChunkIndex(0)).await;
    let record = |rid: u64| {
        json!({"custom": {"rid": rid.to_string()}, "status": "FINISHED",
               "contact_info": {"most_probable_work_email": {"email": format!("p{rid}@example.com"), "status": "DELIVERABLE"}}})
    };
    for rid in [0, 1] {
        let body = json!({"id": "fe-lost", "status": "IN_PROGRESS", "data": [record(rid)]});
        let d = handle(
            &w,
            &envelope(
                Provider::Fullenrich,
                Hook::Contact,
                &job_id,
                body.to_string().as_bytes(),
            ),
        )
        .await;
        assert!(matches!(d, Disposition::Applied { new: 1, .. }), "{d:?}");
    }
    let c = chunk(&w, &job_id, ChunkIndex(0)).await;
    assert_eq!(
        (c.status, c.provider_id.as_deref()),
        (ChunkStatus::Submitted, Some("fe-lost")),
        "adopted: the sweeper can poll it, and its batch webhook maps"
    );
    // A failure written over the chunk afterwards (as the confirmation timeout used to) leaves
    // the stored results as they are.
    let contacts = w.jobs.contacts(&job_id, 0, 2).await.unwrap();
    let failures = contacts
        .iter()
        .map(|c| ContactResult::failed(c, reasons::START_UNCONFIRMED))
        .collect();
    let update = ChunkUpdate {
        index: ChunkIndex(0),
        status: ChunkStatus::Failed,
        credits: None,
        error: None,
    };
    w.jobs
        .store_chunk(&job_id, ChunkRef::from(&c), failures, update)
        .await
        .unwrap();
    let results = w.jobs.results(&job_id);
    assert_eq!(results.len(), 2);
    assert!(
        results.iter().all(|r| r.outcome == Outcome::Found),
        "results stand: {results:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unsigned_body_naming_an_unknown_id_costs_no_get_and_is_dropped_not_parked() {
    let w = worker();
    let job_id = seed_fullenrich(&w, 2);
    w.jobs
        .start(&job_id, ChunkIndex(0), &ProviderId::new("fe-0"));
    w.jobs
        .start(&job_id, ChunkIndex(1), &ProviderId::new("fe-1"));
    for i in 0..40 {
        let d = handle(&w, &unsigned_batch(&job_id, &format!("made-up-{}", i % 4))).await;
        assert!(matches!(d, Disposition::Dropped(_)), "{d:?}");
    }
    assert!(
        w.providers.gets().is_empty(),
        "no id the job's chunks know: no GET"
    );
    assert!(
        w.dead_letters.take().is_empty(),
        "dropped, not parked with its body"
    );
}

#[tokio::test(start_paused = true)]
async fn a_chunk_awaiting_its_id_lets_a_few_unknown_ids_be_fetched_and_adopts_the_real_one() {
    let w = worker();
    let job_id = seed_fullenrich(&w, 2);
    w.jobs
        .start(&job_id, ChunkIndex(1), &ProviderId::new("fe-1"));
    unconfirmed(&w.jobs, &job_id, ChunkIndex(0)).await;
    for i in 0..40 {
        let d = handle(&w, &unsigned_batch(&job_id, &format!("made-up-{i}"))).await;
        assert!(matches!(d, Disposition::Dropped(_)), "{d:?}");
    }
    assert_eq!(
        w.providers.gets().len(),
        MAX_CANDIDATES as usize,
        "a bounded number of candidates for the one chunk awaiting its id"
    );
    assert!(w.dead_letters.take().is_empty());
    // The real enrichment comes on a signed body: the chunk adopts it without a GET.
    let body = finished("fe-real", &[0, 1]);
    let d = handle(
        &w,
        &envelope(
            Provider::Fullenrich,
            Hook::Batch,
            &job_id,
            body.to_string().as_bytes(),
        ),
    )
    .await;
    assert!(matches!(d, Disposition::Applied { new: 2, .. }), "{d:?}");
    assert_eq!(
        chunk(&w, &job_id, ChunkIndex(0))
            .await
            .provider_id
            .as_deref(),
        Some("fe-real")
    );
}

/// An unsigned batch webhook for `id`, which FullEnrich knows as a finished enrichment of
/// contacts `rids`: fetched and applied.
async fn applies_unsigned(w: &TestWorker, job_id: &JobId, id: &str, rids: &[u64]) {
    w.providers.knows(id, finished(id, rids));
    let d = handle(w, &unsigned_batch(job_id, id)).await;
    let new = rids.len();
    assert_eq!(d, Disposition::Applied { new, existing: 0 });
}

#[tokio::test(start_paused = true)]
async fn an_unsigned_body_for_the_id_a_chunk_awaits_reads_the_jobs_chunks_once() {
    let w = worker();
    let job_id = seed_fullenrich(&w, 1);
    unconfirmed(&w.jobs, &job_id, ChunkIndex(0)).await;
    let before = w.jobs.reads().chunk_queries;
    applies_unsigned(&w, &job_id, "fe-lost", &[0, 1]).await;
    assert_eq!(
        w.jobs.reads().chunk_queries - before,
        1,
        "the chunks its candidate read are the ones its adoption picks from"
    );
    assert_eq!(
        chunk(&w, &job_id, ChunkIndex(0))
            .await
            .provider_id
            .as_deref(),
        Some("fe-lost"),
        "adopted by the GET's records"
    );
}

#[tokio::test(start_paused = true)]
async fn a_chunk_whose_start_goes_unconfirmed_during_the_get_still_adopts_the_id() {
    let w = worker();
    let job_id = seed_fullenrich(&w, 2);
    unconfirmed(&w.jobs, &job_id, ChunkIndex(0)).await;
    // The enrichment is chunk 1's, whose start is unconfirmed only once the GET is under way:
    // the chunks the candidate read before it do not have it; the chunks as they are now do.
    *w.providers.unconfirmed_during_get.lock().unwrap() =
        Some((w.jobs.clone(), job_id.clone(), ChunkIndex(1)));
    applies_unsigned(&w, &job_id, "fe-late", &[2, 3]).await;
    assert_eq!(
        chunk(&w, &job_id, ChunkIndex(1))
            .await
            .provider_id
            .as_deref(),
        Some("fe-late")
    );
    assert_eq!(chunk(&w, &job_id, ChunkIndex(0)).await.provider_id, None);
}

#[tokio::test(start_paused = true)]
async fn a_delivery_whose_results_are_not_ready_waits_twice_as_long_each_time_up_to_15_minutes() {
    let w = worker();
    let job_id = seed_fullenrich(&w, 1);
    w.jobs
        .start(&job_id, ChunkIndex(0), &ProviderId::new("fe-0"));
    let running = json!({"id": "fe-0", "status": "IN_PROGRESS", "data": []});
    w.providers.knows("fe-0", running);
    let mut body = unsigned_batch(&job_id, "fe-0");
    let mut waits = Vec::new();
    for _ in 0..7 {
        let d = handle(&w, &body).await;
        assert!(matches!(d, Disposition::Deferred(..)), "{d:?}");
        let mut requeued = w.requeue.take();
        assert_eq!(requeued.len(), 1, "put back as a new, delayed message");
        let again = requeued.pop().unwrap();
        waits.push(again.delay.as_secs());
        body = again.body;
    }
    assert_eq!(waits, [30, 60, 120, 240, 480, 900, 900]);
}
