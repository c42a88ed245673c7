//! bulk-fetch's paths on the in-memory stores (no moto, milliseconds): apply once, duplicate,
//! park with the body, drop for a deleted job, settle, and the completion callback's request.
//! DynamoDB's own semantics (transactions, leases under concurrency) are `tests/it/fetch.rs`'s.

use std::time::Duration;

use relay_shared::Provider;
use relay_shared::bodies::MemoryBodies;
use relay_shared::callback::{CallbackRequest, CallbackSender, DEFAULT_RETRY_BASE};
use relay_shared::jobs::{Chunk, Contact, JobMeta, JobStatus, Operation, Outcome};
use relay_shared::providers::Hook;
use relay_shared::providers::client::{FetchError, ProviderClient};
use relay_shared::providers::{enrow, fullenrich};
use relay_shared::queue::MemoryQueue;
use relay_shared::store::memory::{MemoryDedupe, MemoryJobs};
use relay_shared::testing::{envelope, sqs_message};
use serde_json::{Value, json};

use crate::{Disposition, Worker};
use relay_shared::{ChunkIndex, ContactIndex, JobId, ProviderId};

/// Enrow single events carry their result: nothing here calls a provider.
struct NoCalls;

impl ProviderClient for NoCalls {
    async fn fullenrich_job(&self, _: Operation, _: &str) -> Result<fullenrich::Job, FetchError> {
        Err(FetchError::Retryable("no provider in this test".into()))
    }
    async fn enrow_bulk(&self, _: Operation, _: &str) -> Result<enrow::BulkResults, FetchError> {
        Err(FetchError::Retryable("no provider in this test".into()))
    }
    async fn enrow_single(
        &self,
        _: Operation,
        _: &str,
    ) -> Result<(enrow::SingleResult, Value), FetchError> {
        Err(FetchError::Retryable("no provider in this test".into()))
    }
}

type TestWorker = Worker<MemoryJobs, MemoryDedupe, NoCalls, MemoryBodies, MemoryQueue>;

fn worker() -> TestWorker {
    worker_with(NoCalls, Duration::from_millis(1))
}

/// A worker on fresh in-memory stores, asking `providers` for results, one FullEnrich request
/// per `fullenrich_interval`.
pub(crate) fn worker_with<P: ProviderClient>(
    providers: P,
    fullenrich_interval: Duration,
) -> Worker<MemoryJobs, MemoryDedupe, P, MemoryBodies, MemoryQueue> {
    Worker {
        jobs: MemoryJobs::default(),
        dedupe: MemoryDedupe::default(),
        providers,
        bodies: MemoryBodies::default(),
        callback_sender: CallbackSender::new(
            "whsec_YmVoYXZpb3VyLXRlc3RzLWNhbGxiYWNrLTAxMjM=",
            DEFAULT_RETRY_BASE,
        )
        .unwrap(),
        dead_letters: MemoryQueue::default(),
        requeue: MemoryQueue::default(),
        submit: MemoryQueue::default(),
        fullenrich_interval,
        not_ready_wait: crate::NOT_READY_WAIT,
        deadline: crate::DEFAULT_DEADLINE,
    }
}

/// A running job as `POST /jobs` records it on `jobs`, of `op`, its `contacts` in chunks of
/// `chunk_size`; none started. Its id.
pub(crate) fn seed_job(
    jobs: &MemoryJobs,
    op: Operation,
    chunk_size: u64,
    contacts: Vec<Contact>,
    callback_url: Option<&str>,
) -> JobId {
    let job_id = JobId::new(format!("job_{}", uuid::Uuid::new_v4().simple()));
    let n = contacts.len() as u64;
    let mut meta = JobMeta::new(
        job_id.clone(),
        op,
        None,
        JobStatus::Running,
        n,
        chunk_size,
        Value::Null,
    );
    meta.callback_url = callback_url.map(str::to_string);
    jobs.insert(meta, Chunk::plan(n, chunk_size), contacts);
    job_id
}

/// Contact `index` (its record key) with these fields and `custom`.
pub(crate) fn contact(index: u64, fields: Value, custom: Option<Value>) -> Contact {
    let fields = fields.as_object().cloned().expect("fields are an object");
    Contact {
        origin: None,
        index: ContactIndex(index),
        fields,
        custom,
    }
}

/// Contact `index` of an Enrow email_find job.
pub(crate) fn person(index: u64, custom: Option<Value>) -> Contact {
    let fields = json!({"fullname": format!("Person {index}"), "company_domain": "example.com"});
    contact(index, fields, custom)
}

/// A started Enrow email_find job of one-contact chunks, chunk `i` under provider id `ids[i]`.
fn seed(w: &TestWorker, ids: &[&str], callback_url: Option<&str>) -> JobId {
    let contacts = (0..ids.len() as u64)
        .map(|i| person(i, Some(json!({"crm_id": format!("c{i}")}))))
        .collect();
    let job_id = seed_job(&w.jobs, Operation::EmailFind, 1, contacts, callback_url);
    for (i, id) in ids.iter().enumerate() {
        w.jobs
            .start(&job_id, ChunkIndex(i as u32), &ProviderId::new(*id));
    }
    job_id
}

/// An Enrow `single_search_finished` delivery for provider id `id`, as ingest queues it.
fn found(job_id: &JobId, id: &str) -> String {
    let body = json!({"event": "single_search_finished", "id": id, "credits": {"cost": 1},
        "result": {"email": "person@example.com", "qualification": "valid"}});
    envelope(
        Provider::Enrow,
        Hook::Event,
        job_id,
        body.to_string().as_bytes(),
    )
}

async fn handle(w: &TestWorker, body: &str) -> Disposition {
    w.handle_record(&sqs_message(body)).await
}

async fn job(w: &TestWorker, job_id: &JobId) -> JobMeta {
    use relay_shared::store::Jobs;
    w.jobs.job_view(job_id).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_result_is_applied_once_and_its_copy_counted_as_a_duplicate() {
    let w = worker();
    let job_id = seed(&w, &["a", "b"], None);
    let delivery = found(&job_id, "a");
    assert_eq!(
        handle(&w, &delivery).await,
        Disposition::Applied {
            new: 1,
            existing: 0
        }
    );
    assert_eq!(handle(&w, &delivery).await, Disposition::Duplicate);
    let meta = job(&w, &job_id).await;
    assert_eq!((meta.done, meta.found, meta.duplicates), (1, 1, 1));
    assert_eq!(meta.status, JobStatus::Running, "one contact still open");
    let results = w.jobs.results(&job_id);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].outcome, Outcome::Found);
    assert_eq!(results[0].custom, Some(json!({"crm_id": "c0"})));

    // The last contact's result ends the job.
    handle(&w, &found(&job_id, "b")).await;
    assert_eq!(job(&w, &job_id).await.status, JobStatus::Completed);
    assert!(w.dead_letters.take().is_empty());
}

#[tokio::test]
async fn deliveries_that_can_never_be_applied_are_parked_with_their_body() {
    let w = worker();
    let job_id = seed(&w, &["a"], None);
    let cases = [
        ("not an envelope".to_string(), "unreadable envelope"),
        (found(&JobId::new("job_unknown"), "a"), "unknown job"),
        (
            envelope(
                Provider::Fullenrich,
                Hook::Batch,
                &job_id,
                br#"{"id": "x", "status": "FINISHED", "data": []}"#,
            ),
            "provider does not match the job",
        ),
    ];
    for (body, reason) in &cases {
        assert_eq!(
            handle(&w, body).await,
            Disposition::Parked(reason.to_string()),
            "{reason}"
        );
    }
    let parked = w.dead_letters.take();
    assert_eq!(parked.len(), cases.len());
    for (sent, (body, reason)) in parked.iter().zip(&cases) {
        assert_eq!(&sent.body, body, "the body is kept as it came");
        assert!(
            sent.attributes
                .contains(&("reason".into(), reason.to_string()))
        );
    }
    assert_eq!(job(&w, &job_id).await.done, 0, "nothing applied");
}

#[tokio::test]
async fn a_job_with_a_callback_url_asks_for_its_callback_when_it_ends_and_not_before() {
    let w = worker();
    let job_id = seed(&w, &["a", "b"], Some("https://hooks.example.com/done"));
    handle(&w, &found(&job_id, "a")).await;
    assert!(w.requeue.take().is_empty(), "the job has not ended");
    // A request for a callback that is not due makes no attempt.
    let early = CallbackRequest::new(&job_id, None).to_json();
    assert!(matches!(
        handle(&w, &early).await,
        Disposition::Callback(relay_shared::callback::Attempted::Skipped)
    ));

    handle(&w, &found(&job_id, "b")).await;
    let asked: Vec<_> = w
        .requeue
        .take()
        .into_iter()
        .map(|m| CallbackRequest::from_json(&m.body))
        .collect();
    assert_eq!(asked, vec![Some(CallbackRequest::new(&job_id, None))]);
    let cb = job(&w, &job_id).await.callback.unwrap();
    assert_eq!(cb.status, relay_shared::jobs::CallbackStatus::Pending);
    assert_eq!(cb.attempts, 0);
}

#[tokio::test]
async fn a_job_without_a_callback_url_asks_for_none() {
    let w = worker();
    let job_id = seed(&w, &["a"], None);
    handle(&w, &found(&job_id, "a")).await;
    assert_eq!(job(&w, &job_id).await.status, JobStatus::Completed);
    assert!(w.requeue.take().is_empty());
    assert_eq!(job(&w, &job_id).await.callback, None);
}

#[tokio::test]
async fn a_failed_write_sends_the_record_back_and_its_redelivery_applies_it_once() {
    let w = worker();
    let job_id = seed(&w, &["a"], None);
    let delivery = found(&job_id, "a");
    w.jobs.fail_writes(1);
    assert!(matches!(handle(&w, &delivery).await, Disposition::Retry(_)));
    assert_eq!(job(&w, &job_id).await.done, 0);
    // The claim was released: the redelivery applies (it is no duplicate), once.
    assert_eq!(
        handle(&w, &delivery).await,
        Disposition::Applied {
            new: 1,
            existing: 0
        }
    );
    assert_eq!(handle(&w, &delivery).await, Disposition::Duplicate);
    let meta = job(&w, &job_id).await;
    assert_eq!((meta.done, meta.status), (1, JobStatus::Completed));
}

#[tokio::test]
async fn deliveries_for_a_deleted_job_are_dropped_not_parked() {
    let w = worker();
    let job_id = seed(&w, &["a"], None);
    let mut meta = job(&w, &job_id).await;
    meta.deleted = true;
    w.jobs.insert(meta, Chunk::plan(1, 1), Vec::new());
    assert!(matches!(
        handle(&w, &found(&job_id, "a")).await,
        Disposition::Dropped(_)
    ));
    assert!(w.dead_letters.take().is_empty(), "its data is kept nowhere");
    assert!(w.jobs.results(&job_id).is_empty());
}

/// A loopback port nobody listens on: an attempt to it fails to connect.
fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/hook")
}

/// Issue 24 item 13: a job deleted after it ended, its callback still pending, calls back no
/// one: the DELETE clears the callback (URL, state, due date), and an attempt whose message
/// comes afterwards makes no request.
#[tokio::test]
async fn a_deleted_job_calls_back_no_one() {
    use relay_shared::callback::Attempted;
    use relay_shared::store::{JobWriter, Jobs};
    let w = worker();
    let job_id = seed(&w, &["a"], Some(&closed_port_url()));
    handle(&w, &found(&job_id, "a")).await;
    assert_eq!(job(&w, &job_id).await.status, JobStatus::Completed);
    let ask = w.requeue.take();
    assert_eq!(ask.len(), 1, "the callback was asked for");
    assert!(w.jobs.mark_deleted(&job_id).await.unwrap());
    // The message asking for the callback comes after the DELETE: no attempt is made.
    assert_eq!(
        handle(&w, &ask[0].body).await,
        Disposition::Callback(Attempted::Skipped)
    );
    let head = w.jobs.get_job(&job_id).await.unwrap().unwrap();
    assert_eq!(
        head.callback_url, None,
        "the tombstone keeps no callback URL"
    );
    assert_eq!(head.callback, None, "nor its state");
    assert!(w.requeue.take().is_empty(), "and no retry is asked for");
}

/// Issue 24 item 11: a delivery that reads its job's head before the DELETE is seen (an
/// eventually consistent read) and finds its link erased is dropped and counted, not parked
/// with its contact data.
#[tokio::test]
async fn a_delivery_whose_link_was_erased_meanwhile_is_dropped_not_parked() {
    use relay_shared::store::{JobWriter, SubmitLedger};
    let w = worker();
    let job_id = seed(&w, &["a"], None);
    assert!(w.jobs.mark_deleted(&job_id).await.unwrap());
    while w.jobs.delete_items(&job_id, 100).await.unwrap() > 0 {}
    w.jobs.stale_heads(true);
    let d = handle(&w, &found(&job_id, "a")).await;
    assert!(matches!(d, Disposition::Dropped(_)), "{d:?}");
    assert!(w.dead_letters.take().is_empty(), "its data is kept nowhere");
    assert!(w.jobs.results(&job_id).is_empty());
    let handled = [crate::Handled {
        disposition: d,
        poll: false,
        received_at_ms: None,
    }];
    let line: Value =
        serde_json::from_str(&crate::batch_metrics(&handled, 1_000)[0].line(1_000)).unwrap();
    assert_eq!(
        line["DeliveriesDropped"], 1.0,
        "dropped deliveries are counted"
    );
}

#[tokio::test]
async fn a_redelivered_cost_report_gives_back_the_reservation_once() {
    use relay_shared::store::{CreditBudget, Jobs, Reserve};
    let w = worker();
    let contacts = (0..2).map(|i| person(i, None)).collect();
    let job_id = seed_job(&w.jobs, Operation::EmailFind, 1, contacts, None);
    // A budget of 10; each one-contact chunk holds a worst case of 3 from its start.
    let mut meta = w.jobs.get_job(&job_id).await.unwrap().unwrap();
    meta.budget = Some(relay_shared::budget::Budget::new(10.0));
    w.jobs.insert(
        meta,
        Chunk::plan(2, 1),
        w.jobs.contacts(&job_id, 0, 2).await.unwrap(),
    );
    for (i, id) in ["a", "b"].iter().enumerate() {
        let index = ChunkIndex(i as u32);
        assert_eq!(
            w.jobs
                .reserve_credits(&job_id, &job_id, index, 3.0)
                .await
                .unwrap(),
            Reserve::Reserved
        );
        w.jobs.start(&job_id, index, &ProviderId::new(*id));
    }
    let left = || async {
        let meta = w.jobs.get_job(&job_id).await.unwrap().unwrap();
        meta.budget.unwrap().left
    };
    assert_eq!(left().await, 4.0);
    // Enrow's event says the search cost 1: 2 of its 3 back.
    let delivery = found(&job_id, "a");
    assert!(matches!(
        handle(&w, &delivery).await,
        Disposition::Applied { new: 1, .. }
    ));
    assert_eq!(left().await, 6.0);
    // The same delivery again, and again past a dedupe that lost its claim (applied anew).
    assert_eq!(handle(&w, &delivery).await, Disposition::Duplicate);
    let forgetful = Worker {
        jobs: w.jobs.clone(),
        dedupe: MemoryDedupe::default(),
        ..worker()
    };
    let again = forgetful.handle_record(&sqs_message(&delivery)).await;
    assert_eq!(again, Disposition::Duplicate, "its row found stored");
    assert_eq!(left().await, 6.0, "released once");
    let chunk = w.jobs.chunk(&job_id, ChunkIndex(0)).await.unwrap().unwrap();
    assert_eq!(
        chunk.reservation,
        Some(relay_shared::budget::Reservation {
            credits: 3.0,
            settled: Some(1.0)
        })
    );
}
