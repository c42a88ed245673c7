//! Enrow's dashboard (global) webhook on the in-memory stores: an event whose id a chunk knows is
//! applied to that chunk under the key its job's own URL gives it (the same event on both URLs
//! applies once); an event no chunk knows is kept once as an orphan (no contact data), never
//! parked, never fetched.

use std::sync::{Arc, Mutex};

use relay_shared::Provider;
use relay_shared::bodies::MemoryBodies;
use relay_shared::jobs::{JobStatus, Operation};
use relay_shared::providers::Hook;
use relay_shared::providers::client::{FetchError, ProviderClient};
use relay_shared::providers::{enrow, fullenrich};
use relay_shared::queue::MemoryQueue;
use relay_shared::store::memory::{MemoryDedupe, MemoryJobs};
use relay_shared::store::{Jobs, OrphanStore};
use relay_shared::testing::{envelope, sqs_message};
use serde_json::{Value, json};

use crate::behaviour_tests::{person, seed_job};
use crate::{Disposition, Worker};
use relay_shared::{ChunkIndex, JobId, ProviderId};

/// Enrow's bulk GET: every contact of the bulk found; each GET counted.
#[derive(Clone, Default)]
struct EnrowBulk {
    gets: Arc<Mutex<Vec<String>>>,
}

impl ProviderClient for EnrowBulk {
    async fn fullenrich_job(&self, _: Operation, _: &str) -> Result<fullenrich::Job, FetchError> {
        Err(FetchError::Retryable("no FullEnrich in this test".into()))
    }
    async fn enrow_bulk(&self, _: Operation, id: &str) -> Result<enrow::BulkResults, FetchError> {
        self.gets.lock().unwrap().push(id.to_string());
        let body = json!({"general": {"id": id, "status": "completed"},
            "results": [
                {"index": "0", "qualification": "valid", "email": "p0@example.com", "custom": "0"},
                {"index": "1", "qualification": "valid", "email": "p1@example.com", "custom": "1"}]});
        Ok(enrow::BulkResults::parse(body.to_string().as_bytes()).unwrap())
    }
    async fn enrow_single(
        &self,
        _: Operation,
        id: &str,
    ) -> Result<(enrow::SingleResult, Value), FetchError> {
        self.gets.lock().unwrap().push(id.to_string());
        Err(FetchError::Permanent("HTTP 500 no such search".into()))
    }
}

type TestWorker = Worker<MemoryJobs, MemoryDedupe, EnrowBulk, MemoryBodies, MemoryQueue>;

fn worker() -> TestWorker {
    crate::behaviour_tests::worker_with(EnrowBulk::default(), std::time::Duration::from_millis(1))
}

/// A started Enrow email_find job of `contacts` contacts in one chunk, under provider id `id`.
fn seed(w: &TestWorker, contacts: u64, id: &str) -> JobId {
    let people = (0..contacts).map(|i| person(i, None)).collect();
    let job_id = seed_job(&w.jobs, Operation::EmailFind, contacts, people, None);
    w.jobs.start(&job_id, ChunkIndex(0), &ProviderId::new(id));
    job_id
}

fn single(id: &str) -> Vec<u8> {
    json!({"event": "single_search_finished", "id": id, "credits": {"cost": 1},
        "result": {"email": "person@example.com", "qualification": "valid"}})
    .to_string()
    .into_bytes()
}

fn bulk(id: &str) -> Vec<u8> {
    json!({"event": "bulk_search_finished", "id": id, "credits": {"cost": 2}})
        .to_string()
        .into_bytes()
}

/// The same body as it comes on the job's own URL and on the global one.
fn on_job_url(job_id: &JobId, body: &[u8]) -> String {
    envelope(Provider::Enrow, Hook::Event, job_id, body)
}

fn on_global_url(body: &[u8]) -> String {
    envelope(Provider::Enrow, Hook::Global, &JobId::new(""), body)
}

/// The same, received at `at_ms`.
fn on_global_url_at(body: &[u8], at_ms: u64) -> String {
    let mut env = relay_shared::envelope::Envelope::from_json(&on_global_url(body)).unwrap();
    env.received_at_ms = at_ms;
    env.to_json()
}

async fn handle(w: &TestWorker, body: &str) -> Disposition {
    w.handle_record(&sqs_message(body)).await
}

#[tokio::test]
async fn a_global_single_event_applies_to_its_chunk_and_its_copy_on_the_job_url_is_a_duplicate() {
    let w = worker();
    let job_id = seed(&w, 1, "s-1");
    assert_eq!(
        handle(&w, &on_global_url(&single("s-1"))).await,
        Disposition::Applied {
            new: 1,
            existing: 0
        }
    );
    assert_eq!(
        handle(&w, &on_job_url(&job_id, &single("s-1"))).await,
        Disposition::Duplicate
    );
    assert_eq!(
        handle(&w, &on_global_url(&single("s-1"))).await,
        Disposition::Duplicate
    );
    let meta = w.jobs.job_view(&job_id).await.unwrap().unwrap();
    assert_eq!((meta.done, meta.found), (1, 1));
    assert_eq!(meta.status, JobStatus::Completed);
    assert_eq!(w.jobs.results(&job_id).len(), 1);
    assert!(w.dead_letters.take().is_empty());
}

/// A global delivery finds its job by its id; the head that lookup read is the one it applies
/// with: it reads no more heads than the same event on its job's own URL (one).
#[tokio::test]
async fn a_global_delivery_reads_its_jobs_head_once() {
    for global in [true, false] {
        let w = worker();
        let job_id = seed(&w, 1, "s-1");
        let body = if global {
            on_global_url(&single("s-1"))
        } else {
            on_job_url(&job_id, &single("s-1"))
        };
        let before = w.jobs.reads().heads;
        assert_eq!(
            handle(&w, &body).await,
            Disposition::Applied {
                new: 1,
                existing: 0
            }
        );
        assert_eq!(w.jobs.reads().heads - before, 1, "global: {global}");
    }
}

#[tokio::test]
async fn a_bulk_event_on_both_urls_claims_one_key_and_is_fetched_once() {
    for global_first in [true, false] {
        let w = worker();
        let job_id = seed(&w, 2, "b-1");
        let (first, second) = if global_first {
            (
                on_global_url(&bulk("b-1")),
                on_job_url(&job_id, &bulk("b-1")),
            )
        } else {
            (
                on_job_url(&job_id, &bulk("b-1")),
                on_global_url(&bulk("b-1")),
            )
        };
        assert_eq!(
            handle(&w, &first).await,
            Disposition::Applied {
                new: 2,
                existing: 0
            }
        );
        assert_eq!(handle(&w, &second).await, Disposition::Duplicate);
        assert_eq!(
            w.providers.gets.lock().unwrap().as_slice(),
            ["b-1"],
            "one GET for the event, whichever URL it came on first"
        );
        let meta = w.jobs.job_view(&job_id).await.unwrap().unwrap();
        assert_eq!(
            (meta.done, meta.found, meta.status),
            (2, 2, JobStatus::Completed)
        );
    }
}

#[tokio::test]
async fn an_event_no_chunk_knows_is_kept_once_as_an_orphan_never_parked_never_fetched() {
    let w = worker();
    let job_id = seed(&w, 1, "known");
    let body = single("elsewhere");
    let now = relay_shared::now_ms();
    assert_eq!(
        handle(&w, &on_global_url_at(&body, now - 2)).await,
        Disposition::Orphaned
    );
    // The same event again (Enrow's rare duplicate, or a redelivery): one orphan.
    assert_eq!(
        handle(&w, &on_global_url(&body)).await,
        Disposition::Duplicate
    );
    assert_eq!(
        handle(&w, &on_global_url(&bulk("other-bulk"))).await,
        Disposition::Orphaned
    );

    assert!(w.dead_letters.take().is_empty(), "never parked");
    assert!(w.requeue.take().is_empty(), "never put back");
    assert!(w.providers.gets.lock().unwrap().is_empty(), "never fetched");
    assert!(w.jobs.results(&job_id).is_empty(), "no job touched");

    let (orphans, next) = w.jobs.list_orphans(10, None).await.unwrap();
    assert_eq!(next, None);
    let seen: Vec<(&str, &str)> = orphans
        .iter()
        .map(|o| (o.provider_id.as_str(), o.event.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("other-bulk", "bulk_search_finished"),
            ("elsewhere", "single_search_finished")
        ],
        "newest first"
    );
    assert_eq!(orphans[1].credits, Some(1.0));
    // Paged: a page of one says where the next starts.
    let (page, next) = w.jobs.list_orphans(1, None).await.unwrap();
    assert_eq!(page[0].provider_id, "other-bulk");
    let (page, _) = w.jobs.list_orphans(1, next.as_ref()).await.unwrap();
    assert_eq!(page[0].provider_id, "elsewhere");

    let handled = [crate::Handled {
        disposition: Disposition::Orphaned,
        poll: false,
        received_at_ms: None,
    }];
    let line: Value =
        serde_json::from_str(&crate::batch_metrics(&handled, 1_000)[0].line(1_000)).unwrap();
    assert_eq!(line["OrphansKept"], 1.0);
    assert!(line.get("Parked").is_none_or(|p| p == 0.0));
}

#[tokio::test]
async fn a_global_event_for_a_deleted_job_is_dropped_and_a_bad_body_still_parked() {
    use relay_shared::store::JobWriter;
    let w = worker();
    let job_id = seed(&w, 1, "gone");
    assert!(w.jobs.mark_deleted(&job_id).await.unwrap());
    let d = handle(&w, &on_global_url(&single("gone"))).await;
    assert!(matches!(d, Disposition::Dropped(_)), "{d:?}");
    // A body that is no Enrow event is kept in the DLQ, as on any URL.
    let d = handle(&w, &on_global_url(b"{\"hello\":1}")).await;
    assert!(matches!(d, Disposition::Parked(_)), "{d:?}");
    assert_eq!(w.dead_letters.take().len(), 1);
    assert!(w.jobs.list_orphans(10, None).await.unwrap().0.is_empty());
}
