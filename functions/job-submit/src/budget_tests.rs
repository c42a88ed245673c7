//! A job's credit budget on the in-memory stores (milliseconds): a chunk starts only if its
//! worst case fits in what is left, workers racing never start more than fits, a chunk that
//! does not fit ends `budget_exhausted` and the job still ends, a real cost reported makes room
//! for a later chunk, a start that never happened gives its reservation back. DynamoDB's
//! transactions under racing workers are `tests/it/budget.rs`'s.

use std::sync::Arc;

use relay_shared::jobs::{ChunkStatus, JobStatus, Outcome, reasons};
use relay_shared::providers::submit::StartError;
use relay_shared::store::Jobs;
use relay_shared::store::contract::finish_chunk;
use relay_shared::validate::CallbackPolicy;
use serde_json::{Value, json};

use crate::Submitted;
use crate::api_tests::{api, call};
use crate::worker_tests::{Scripted, Worker, start, worker};
use relay_shared::{ChunkIndex, ContactIndex, JobId, ProviderId};

/// A FullEnrich enrich job of `n` contacts (work emails: 1 credit each at worst, 100 a chunk)
/// with `max_credits`, posted to the API on `w`'s store: its id.
async fn budget_job(w: &Worker, n: usize, max_credits: f64) -> JobId {
    let mut a = api(CallbackPolicy::default());
    a.jobs = w.jobs.clone();
    let contacts: Vec<Value> = (0..n)
        .map(
            |i| json!({"first_name": "Ada", "last_name": format!("L{i}"), "domain": "example.com"}),
        )
        .collect();
    let body = json!({"provider": "fullenrich", "operation": "enrich",
        "options": {"enrich_fields": ["contact.work_emails"]},
        "max_credits": max_credits, "contacts": contacts});
    let (status, got) = call(&a, "POST", "/jobs", &[], &body).await;
    assert_eq!(status, 202, "{got}");
    JobId::new(got["job_id"].as_str().unwrap())
}

/// `credits` of `GET /jobs/{id}`.
async fn credits(w: &Worker, job: &JobId) -> Value {
    let mut a = api(CallbackPolicy::default());
    a.jobs = w.jobs.clone();
    let (status, got) = call(&a, "GET", &format!("/jobs/{job}"), &[], &Value::Null).await;
    assert_eq!(status, 200, "{got}");
    got["credits"].clone()
}

/// Chunk `i` ends with its cost reported, as bulk-fetch ends it.
async fn finish(w: &Worker, job: &JobId, i: u32, cost: f64) {
    finish_chunk(&w.jobs, job, ChunkIndex(i), cost).await;
}

#[tokio::test]
async fn a_budget_that_fits_two_of_three_chunks_starts_two_and_the_job_still_ends() {
    let w = worker();
    let job = budget_job(&w, 300, 250.0).await;
    for id in ["fe-0", "fe-1"] {
        w.starter.answer(Scripted::started(id));
    }
    let outcomes = [
        w.handle(&start(&job, ChunkIndex(0))).await,
        w.handle(&start(&job, ChunkIndex(1))).await,
        w.handle(&start(&job, ChunkIndex(2))).await,
    ];
    assert_eq!(
        outcomes,
        [
            Submitted::Started("fe-0".into()),
            Submitted::Started("fe-1".into()),
            Submitted::Failed(reasons::BUDGET_EXHAUSTED.into()),
        ]
    );
    assert_eq!(
        w.starter.starts.lock().unwrap().len(),
        2,
        "the third never sent"
    );
    let third = w.jobs.results(&job);
    assert_eq!(third.len(), 100);
    assert!(third.iter().all(|r| r.index >= ContactIndex(200)
        && r.outcome == Outcome::Failed
        && r.reason.as_deref() == Some(reasons::BUDGET_EXHAUSTED)));
    let meta = w.jobs.job_view(&job).await.unwrap().unwrap();
    assert_eq!((meta.done, meta.failed), (100, 100));
    let e = meta.error.expect("the job says so");
    assert_eq!(e.code, reasons::BUDGET_EXHAUSTED);
    assert!(
        e.message.contains("100 credits") && e.message.contains("50 of 250"),
        "{}",
        e.message
    );
    assert_eq!(
        credits(&w, &job).await,
        json!({"budget": 250.0, "left": 50.0, "reserved": 200.0, "spent": 0.0,
            "by_provider": {"fullenrich": {"reserved": 200.0, "spent": 0.0}}})
    );

    // The two started chunks finish: the job ends, what they cost spent, the rest back.
    finish(&w, &job, 0, 40.0).await;
    finish(&w, &job, 1, 60.0).await;
    let meta = w.jobs.job_view(&job).await.unwrap().unwrap();
    assert_eq!(meta.status, JobStatus::PartiallyFailed);
    assert_eq!((meta.done, meta.found, meta.failed), (300, 200, 100));
    assert_eq!(
        credits(&w, &job).await,
        json!({"budget": 250.0, "left": 150.0, "reserved": 0.0, "spent": 100.0,
            "by_provider": {"fullenrich": {"reserved": 0.0, "spent": 100.0}}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_racing_never_start_more_chunks_than_the_budget_holds() {
    let first = worker();
    let job = budget_job(&first, 1000, 450.0).await;
    // Three workers on one store, each given every chunk's start message.
    let workers: Vec<Arc<Worker>> = (0..3)
        .map(|_| {
            let w = Worker {
                jobs: first.jobs.clone(),
                ..worker()
            };
            for k in 0..10 {
                w.starter.answer(Scripted::started(&format!("fe-{k}")));
            }
            Arc::new(w)
        })
        .collect();
    let mut races = Vec::new();
    for i in 0..10 {
        for w in &workers {
            let (w, job) = (w.clone(), job.clone());
            races.push(tokio::spawn(async move {
                w.handle(&start(&job, ChunkIndex(i))).await
            }));
        }
    }
    for race in races {
        race.await.unwrap();
    }
    let sent: usize = workers
        .iter()
        .map(|w| w.starter.starts.lock().unwrap().len())
        .sum();
    assert_eq!(sent, 4, "4 chunks of 100 fit in 450");
    let chunks = first.jobs.chunks(&job).await.unwrap();
    let started = chunks
        .iter()
        .filter(|c| c.status == ChunkStatus::Submitted)
        .count();
    let exhausted = chunks
        .iter()
        .filter(|c| {
            c.error
                .as_ref()
                .is_some_and(|e| e.code == reasons::BUDGET_EXHAUSTED)
        })
        .count();
    assert_eq!((started, exhausted), (4, 6));
    assert!(chunks.iter().all(|c| c.status == ChunkStatus::Submitted
        || (c.status == ChunkStatus::Failed && c.reservation.is_none())));
    let shown = credits(&first, &job).await;
    assert_eq!(
        (shown["reserved"].clone(), shown["left"].clone()),
        (json!(400.0), json!(50.0))
    );
    let meta = first.jobs.job_view(&job).await.unwrap().unwrap();
    assert_eq!((meta.done, meta.failed), (600, 600), "counted once each");
}

#[tokio::test]
async fn a_real_cost_reported_makes_room_for_a_later_chunk() {
    let w = worker();
    let job = budget_job(&w, 300, 250.0).await;
    for id in ["fe-0", "fe-1", "fe-2"] {
        w.starter.answer(Scripted::started(id));
    }
    w.handle(&start(&job, ChunkIndex(0))).await;
    w.handle(&start(&job, ChunkIndex(1))).await;
    // Chunk 0 cost 30 of its 100: 70 back, so the third chunk's 100 fits in 120.
    finish(&w, &job, 0, 30.0).await;
    assert_eq!(credits(&w, &job).await["left"], 120.0);
    assert_eq!(
        w.handle(&start(&job, ChunkIndex(2))).await,
        Submitted::Started("fe-2".into())
    );
    let shown = credits(&w, &job).await;
    assert_eq!(
        (
            shown["reserved"].clone(),
            shown["spent"].clone(),
            shown["left"].clone()
        ),
        (json!(200.0), json!(30.0), json!(20.0))
    );
}

#[tokio::test]
async fn a_start_tried_again_reserves_once_and_one_never_made_gives_it_all_back() {
    let w = worker();
    let job = budget_job(&w, 100, 100.0).await;
    // A 429: not started, back to pending with its reservation; the next try finds it held.
    w.starter.answer(Err(StartError::RateLimited(
        std::time::Duration::from_millis(1),
    )));
    w.starter.answer(Scripted::started("fe-0"));
    assert!(matches!(
        w.handle(&start(&job, ChunkIndex(0))).await,
        Submitted::Deferred(_)
    ));
    assert_eq!(credits(&w, &job).await["left"], 0.0);
    assert_eq!(
        w.handle(&start(&job, ChunkIndex(0))).await,
        Submitted::Started("fe-0".into()),
        "its 100 are held already: it fits"
    );
    assert_eq!(credits(&w, &job).await["reserved"], 100.0);

    // A chunk the provider refuses as a whole never started: all of it back.
    let refused = budget_job(&w, 100, 100.0).await;
    w.starter.answer(Err(StartError::Rejected {
        message: "bad request".into(),
        per_contact: false,
    }));
    w.handle(&start(&refused, ChunkIndex(0))).await;
    let shown = credits(&w, &refused).await;
    assert_eq!(
        (shown["left"].clone(), shown["spent"].clone()),
        (json!(100.0), json!(0.0))
    );
}

#[tokio::test]
async fn a_split_chunk_gives_its_reservation_back_to_its_halves() {
    let w = worker();
    // A budget of exactly one chunk: its halves fit only once the parent's hold is back.
    let job = budget_job(&w, 100, 100.0).await;
    w.starter.answer(Err(StartError::Rejected {
        message: "one contact spoils it".into(),
        per_contact: true,
    }));
    let Submitted::Split(halves) = w.handle(&start(&job, ChunkIndex(0))).await else {
        panic!("split");
    };
    assert_eq!(credits(&w, &job).await["left"], 100.0);
    for (k, half) in halves.iter().enumerate() {
        w.starter.answer(Scripted::started(&format!("fe-h{k}")));
        assert_eq!(
            w.handle(&start(&job, *half)).await,
            Submitted::Started(ProviderId::new(format!("fe-h{k}")))
        );
    }
    let shown = credits(&w, &job).await;
    assert_eq!(
        (shown["reserved"].clone(), shown["left"].clone()),
        (json!(100.0), json!(0.0))
    );
}
