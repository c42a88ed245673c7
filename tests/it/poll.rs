//! Recovery (issue: missed webhooks polled back): the sweeper finds started chunks whose results
//! have not come and bulk-fetch polls them, on moto (the `due` index, the race with a webhook)
//! and end to end on the dev stack with every webhook dropped.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use relay_local_stack::dev::DevStack;
use relay_shared::Provider;
use relay_shared::envelope::PollRequest;
use relay_shared::jobs::{ChunkStatus, JobStatus, Operation, Outcome};
use relay_shared::providers::Hook;
use relay_shared::store::{DueIndex, Jobs, Links};
use serde_json::{Value, json};

use crate::e2e::{Client, fe_contacts, options};
use crate::fetch::finder;
use crate::support::fetch::{Fetch, enrow_event, fixture_json};
use relay_shared::ChunkIndex;
use relay_shared::JobId;
use relay_shared::ProviderId;

#[tokio::test]
async fn a_webhook_and_a_poll_of_one_chunk_racing_apply_once_and_not_ready_doubles_the_wait() {
    let f = Fetch::new().await;
    let job = f.seed_finders(3, 5000, &["race"]).await;
    let results = fixture_json("enrow/bulk_email_find_results.json").to_string();
    f.stub.script(
        "/email/find/bulk",
        "race",
        vec![(200, results.clone()), (200, results)],
    );
    let webhook = Fetch::envelope(
        Provider::Enrow,
        Hook::Event,
        &job,
        &enrow_event("bulk_search_finished", "race", Some(2.0)),
    );
    let poll = PollRequest::new(&job, ChunkIndex(0), relay_shared::now_ms()).to_json();
    // In one batch, concurrently; then each again, as SQS may redeliver.
    let redelivered = f
        .run_until_settled(vec![poll.clone(), webhook.clone()])
        .await;
    f.run_until_settled(vec![webhook, poll]).await;
    let rows = f.results(&job).await;
    assert_eq!(rows.len(), 3, "{redelivered} redeliveries");
    let meta = f.job(&job).await;
    assert_eq!(meta.done, 3, "counted once");
    assert_eq!(meta.found + meta.not_found + meta.failed, 3);
    assert!(
        f.stub.hits("/email/find/bulk", "race") <= 2,
        "one GET per poll or webhook"
    );
    let chunk = f.jobs.chunk(&job, ChunkIndex(0)).await.unwrap().unwrap();
    assert_eq!(chunk.status, ChunkStatus::Completed);
    assert_eq!(chunk.poll_every_ms, None, "out of the due index once final");

    // A chunk whose results are not ready: one GET, and its next poll waits twice as long.
    let slow = f.seed_finders(2, 5000, &["slow"]).await;
    f.stub.script(
        "/email/find/bulk",
        "slow",
        vec![(
            202,
            json!({"general": {"id": "slow", "status": "ongoing"}}).to_string(),
        )],
    );
    let before = f.jobs.chunk(&slow, ChunkIndex(0)).await.unwrap().unwrap();
    let (resp, _) = f
        .run(&[PollRequest::new(&slow, ChunkIndex(0), relay_shared::now_ms()).to_json()])
        .await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(f.stub.hits("/email/find/bulk", "slow"), 1);
    let after = f.jobs.chunk(&slow, ChunkIndex(0)).await.unwrap().unwrap();
    assert_eq!(
        after.poll_every_ms,
        before.poll_every_ms.map(|e| e * 2),
        "the wait doubles"
    );
    assert!(f.results(&slow).await.is_empty());
}

#[tokio::test]
async fn the_due_index_finds_due_chunks_only_and_a_sweep_takes_each_once() {
    let f = Fetch::new().await;
    // Seeded chunks are due 600 s after their start: none is due now.
    let job = f.seed_finders(4, 2, &["a", "b"]).await;
    let now = relay_shared::now_ms();
    assert!(
        f.jobs
            .due_chunks(now, 100, 60_000)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    let later = f
        .jobs
        .due_chunks(now + 601_000, 100, 60_000)
        .await
        .unwrap()
        .0;
    let mine: Vec<_> = later.iter().filter(|d| d.job_id == job).collect();
    assert_eq!(mine.len(), 2, "{later:?}");
    // Taken once: a second sweep that read the same due time loses.
    assert!(f.jobs.take_due(mine[0], 60_000).await.unwrap().is_some());
    assert!(f.jobs.take_due(mine[0], 60_000).await.unwrap().is_none());
}

/// What a sweep at `at` (up to 100 chunks, taken for 60 s) finds due of `job`: chunk indices,
/// sorted.
async fn due_of(f: &Fetch, job: &JobId, at: u64) -> Vec<u32> {
    let due = f.jobs.due_chunks(at, 100, 60_000).await.unwrap().0;
    let mut chunks: Vec<u32> = due
        .iter()
        .filter(|d| d.job_id == job)
        .filter_map(|d| d.chunk.map(ChunkIndex::get))
        .collect();
    chunks.sort();
    chunks
}

/// The `due` index entries of a job, as (sort key, poll_at).
async fn index_entries(f: &Fetch, job: &JobId) -> Vec<(String, u64)> {
    let out = relay_shared::aws::dynamodb(&f.stack.sdk)
        .query()
        .table_name(f.stack.res.table("JobsTable"))
        .index_name("due")
        .key_condition_expression("poll_shard = :s")
        .expression_attribute_values(
            ":s",
            AttributeValue::S(relay_shared::store::poll_shard(job)),
        )
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .filter(|i| i["pk"].as_s().unwrap() == &format!("JOB#{job}"))
        .map(|i| {
            (
                i["sk"].as_s().unwrap().clone(),
                i["poll_at"].as_n().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_chunk_is_due_through_its_group_which_leaves_the_index_once_every_chunk_is_final() {
    let f = Fetch::new().await;
    // Three one-contact chunks (Enrow single), started: one index entry, their group's.
    let contacts = (0..3)
        .map(|i| {
            (
                json!({"email": format!("p{i}@example.com")}),
                json!({"crm_id": format!("c{i}")}),
            )
        })
        .collect();
    let job = f
        .seed(Operation::EmailVerify, contacts, 1, &["v0", "v1", "v2"])
        .await;
    let entries = index_entries(&f, &job).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].0, "CHUNK#~F00000", "the group, not its chunks");

    // A result that ends its chunk writes no index entry: the group stays, its date unchanged.
    let result = |id: &str| Fetch::enrow_fixture(&job, "enrow/verification_finished.json", id);
    let (resp, _) = f.run(&[result("v0")]).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(
        f.jobs
            .chunk(&job, ChunkIndex(0))
            .await
            .unwrap()
            .unwrap()
            .status,
        ChunkStatus::Completed
    );
    assert_eq!(index_entries(&f, &job).await, entries);
    // Mapped to its contact through the contact its link carries.
    let rows = f.results(&job).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].custom, Some(json!({"crm_id": "c0"})));

    // Due: the group's open chunks, not the final one; the group comes back after the hold.
    let at = relay_shared::now_ms() + 601_000;
    assert_eq!(due_of(&f, &job, at).await, [1, 2]);
    let entries = index_entries(&f, &job).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].1,
        at + 60_000,
        "due again when its taken chunks are"
    );
    assert!(due_of(&f, &job, at).await.is_empty());

    // The other two end; the next visit finds every chunk final and takes the group out.
    f.run_until_settled(vec![result("v1"), result("v2")]).await;
    assert_eq!(f.job(&job).await.status, JobStatus::Completed);
    assert!(due_of(&f, &job, at + 61_000).await.is_empty());
    assert!(index_entries(&f, &job).await.is_empty());
}

#[tokio::test]
async fn a_sweep_with_no_room_left_keeps_the_group_due() {
    let f = Fetch::new().await;
    let job = f.seed_finders(3, 1, &["r0", "r1", "r2"]).await;
    let at = relay_shared::now_ms() + 601_000;
    let first = f.jobs.due_chunks(at, 2, 60_000).await.unwrap().0;
    assert_eq!(first.iter().filter(|d| d.job_id == job).count(), 2);
    let before = index_entries(&f, &job).await;
    assert!(before[0].1 <= at, "still due: {before:?}");
    for d in &first {
        // Taken past `at`: not due again at it.
        assert!(f.jobs.take_due(d, 700_000).await.unwrap().is_some());
    }
    // The next sweep finds the one left (the two taken are not due before the hold ends).
    let next = f.jobs.due_chunks(at, 100, 60_000).await.unwrap().0;
    let left: Vec<_> = next.iter().filter(|d| d.job_id == job).collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(first.iter().all(|d| d.chunk != left[0].chunk));
}

#[tokio::test]
async fn a_group_with_a_chunk_not_started_stays_in_the_index_and_a_start_into_a_due_group_moves_it()
{
    let f = Fetch::new().await;
    // Two one-contact chunks; only the first started, and it ends.
    let job = f.seed_finders(2, 1, &["s0"]).await;
    let (resp, _) = f
        .run(&[Fetch::enrow_fixture(
            &job,
            "enrow/single_search_finished.json",
            "s0",
        )])
        .await;
    assert!(resp.batch_item_failures.is_empty());
    // A visit finds nothing to poll, but a chunk that may still start: the group stays, due
    // again when that chunk's start is due (its message may have been lost), within a poll
    // interval.
    let at = relay_shared::now_ms() + 601_000;
    assert!(due_of(&f, &job, at).await.is_empty());
    let entries = index_entries(&f, &job).await;
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0].1 > at && entries[0].1 <= at + f.jobs.poll_after_ms,
        "{entries:?}"
    );

    // The group is due now (a sweep may be reading it): the second chunk's start moves it to
    // that chunk's poll date, so that the sweep's own next date cannot overwrite it.
    relay_shared::aws::dynamodb(&f.stack.sdk)
        .update_item()
        .table_name(f.stack.res.table("JobsTable"))
        .key("pk", AttributeValue::S(format!("JOB#{job}")))
        .key("sk", AttributeValue::S("CHUNK#~F00000".into()))
        .update_expression("SET poll_at = :at")
        .expression_attribute_values(":at", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let chunk = f.jobs.chunk(&job, ChunkIndex(1)).await.unwrap().unwrap();
    assert!(
        f.jobs
            .link_chunk(&job, (&chunk).into(), &ProviderId::new("s1"), None, None)
            .await
            .unwrap()
    );
    let group_at = index_entries(&f, &job).await[0].1;
    assert!(
        group_at > relay_shared::now_ms(),
        "moved from the past: {group_at}"
    );
    assert_eq!(due_of(&f, &job, group_at).await, [1]);
}

#[tokio::test]
async fn jobs_whose_webhooks_never_come_are_completed_by_polling() {
    let mut opts = options();
    opts.sandbox.drop_webhooks = 1.0;
    opts.poll_after_seconds = 1;
    opts.sweep_every = Duration::from_millis(500);
    let stack = DevStack::start(opts).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().unwrap();
    let c = Client::of(&stack);
    let fe = c
        .post_job(
            json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe_contacts(5)}),
        )
        .await;
    let finders: Vec<Value> = (0..4).map(|i| json!({"fullname": format!("Ada Example{i}"), "company_domain": "example.com", "custom": {"crm_id": format!("c{i}")}})).collect();
    let bulk = c
        .post_job(json!({"provider": "enrow", "operation": "email_find", "contacts": finders}))
        .await;
    let single = c
        .post_job(json!({"provider": "enrow", "operation": "email_verify", "contacts": [{"email": "ada@example.com", "custom": {"crm_id": "c0"}}]}))
        .await;
    for (job, n) in [(&fe, 5), (&bulk, 4), (&single, 1)] {
        let state = c.wait_done(job, Duration::from_secs(90)).await;
        assert_eq!(state["status"], "completed", "{state}");
        assert_eq!(state["done"], n);
        assert_eq!(
            state["found"].as_u64().unwrap() + state["not_found"].as_u64().unwrap(),
            n
        );
        let results = c.results(job).await;
        assert_eq!(results.len(), n as usize);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r["custom"]["crm_id"], format!("c{i}"), "mapped: {r}");
        }
    }
    let counters = sandbox.counters();
    assert!(counters.webhooks_dropped.load(Ordering::Relaxed) >= 3 + 5);
    assert_eq!(counters.webhooks_sent.load(Ordering::Relaxed), 0);
    // One GET per chunk: each was due once and found its results.
    assert_eq!(counters.gets.load(Ordering::Relaxed), 3);
}

/// Moves a chunk's start back `hours`: the job's deadline counts from its last chunk's start.
async fn started_hours_ago(f: &Fetch, job: &str, chunk: ChunkIndex, hours: u64) {
    let at = relay_shared::now_ms() - hours * 3_600_000;
    relay_shared::aws::dynamodb(&f.stack.sdk)
        .update_item()
        .table_name(f.stack.res.table("JobsTable"))
        .key("pk", AttributeValue::S(format!("JOB#{job}")))
        .key(
            "sk",
            AttributeValue::S(relay_shared::store::chunk_sk(chunk)),
        )
        .update_expression("SET started_at = :at")
        .expression_attribute_values(":at", AttributeValue::N(at.to_string()))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_job_whose_provider_never_finishes_times_out_at_its_deadline_and_late_results_still_count()
 {
    use crate::fetch::{fe_contacts as records, fe_env, fe_record};
    let f = Fetch::new().await;
    // FullEnrich: three contacts in one batch that stays IN_PROGRESS; one per-contact result came.
    let fe = f
        .seed(Operation::Enrich, records(3), 100, &["fe-never"])
        .await;
    let in_progress =
        json!({"code": "error.enrichment.in_progress", "message": "Enrichment is in progress"});
    f.stub.script(
        "/contact/enrich/bulk",
        "fe-never",
        vec![(400, in_progress.to_string())],
    );
    let contact =
        json!({"id": "fe-never", "status": "IN_PROGRESS", "data": [fe_record(0, "found")]});
    f.run_until_settled(vec![fe_env(
        &fe,
        Hook::Contact,
        contact.to_string().as_bytes(),
    )])
    .await;
    let poll = |job: &JobId| PollRequest::new(job, ChunkIndex(0), relay_shared::now_ms()).to_json();

    // Before the deadline a poll that finds nothing ready only reschedules.
    started_hours_ago(&f, &fe, ChunkIndex(0), 23).await;
    f.run_until_settled(vec![poll(&fe)]).await;
    assert_eq!(f.job(&fe).await.status, JobStatus::Running);
    let chunk = f.jobs.chunk(&fe, ChunkIndex(0)).await.unwrap().unwrap();
    assert_eq!(chunk.status, ChunkStatus::Submitted);
    assert!(
        chunk.poll_every_ms.unwrap() <= 3_600_000,
        "the next poll is no later than the deadline"
    );

    // 24 h after the start (the default deadline), the next poll times the open contacts out.
    started_hours_ago(&f, &fe, ChunkIndex(0), 25).await;
    f.run_until_settled(vec![poll(&fe)]).await;
    assert_eq!(
        f.stub.hits("/contact/enrich/bulk", "fe-never"),
        2,
        "one GET per poll"
    );
    let meta = f.job(&fe).await;
    assert_eq!(
        (meta.status, meta.done, meta.found, meta.failed),
        (JobStatus::PartiallyFailed, 3, 1, 2),
        "the result that came is kept; the two others timed out"
    );
    let rows = f.results(&fe).await;
    for r in &rows[1..] {
        assert_eq!(
            (r.outcome, r.reason.as_deref()),
            (Outcome::Failed, Some("timed_out"))
        );
    }
    let chunk = f.jobs.chunk(&fe, ChunkIndex(0)).await.unwrap().unwrap();
    assert_eq!(chunk.status, ChunkStatus::Failed);
    assert_eq!(chunk.error.unwrap().code, "timed_out");
    assert_eq!(chunk.poll_every_ms, None, "out of the due index");

    // The batch ends after all: its records replace the placeholders (and the provisional row),
    // counted once however often it is delivered. The job keeps its terminal status.
    let batch = json!({"id": "fe-never", "status": "FINISHED", "cost": {"credits": 2}, "data": [
        fe_record(0, "found"), fe_record(1, "found"), fe_record(2, "not_found")]});
    let late = fe_env(&fe, Hook::Batch, batch.to_string().as_bytes());
    f.run_until_settled(vec![late.clone()]).await;
    f.run_until_settled(vec![late, poll(&fe)]).await;
    let meta = f.job(&fe).await;
    assert_eq!(
        (
            meta.status,
            meta.done,
            meta.found,
            meta.not_found,
            meta.failed
        ),
        (JobStatus::PartiallyFailed, 3, 2, 1, 0)
    );
    assert!(f.results(&fe).await.iter().all(|r| !r.provisional));

    // Enrow single: nothing ever comes, so the job fails; the late result still counts once.
    let id = "single-never";
    let single = f
        .seed(Operation::EmailFind, vec![finder(0)], 1, &[id])
        .await;
    f.stub.script(
        "/email/find/single",
        id,
        vec![(
            200,
            json!({"id": id, "qualification": "ongoing"}).to_string(),
        )],
    );
    started_hours_ago(&f, &single, ChunkIndex(0), 25).await;
    f.run_until_settled(vec![poll(&single)]).await;
    let meta = f.job(&single).await;
    assert_eq!(
        (meta.status, meta.done, meta.failed),
        (JobStatus::Failed, 1, 1),
        "nothing came back"
    );
    let late = Fetch::enrow_fixture(&single, "enrow/single_search_finished.json", id);
    f.run_until_settled(vec![late.clone(), late]).await;
    let meta = f.job(&single).await;
    assert_eq!(
        (meta.status, meta.done, meta.found, meta.failed),
        (JobStatus::Failed, 1, 1, 0)
    );
    assert_eq!(f.results(&single).await[0].outcome, Outcome::Found);
}

/// Retention (issue: the client's side): every item of a job carries `expires_at`, so DynamoDB's
/// TTL deletes its contacts and results `RESULT_RETENTION_DAYS` after they were written, and a job
/// past it reads as gone before TTL gets round to it.
#[tokio::test]
async fn every_item_of_a_job_expires_and_an_expired_job_is_gone() {
    use crate::fetch::{fe_contacts as records, fe_env, fe_record};
    let f = Fetch::new().await;
    let job = f
        .seed(Operation::Enrich, records(2), 100, &["fe-ttl"])
        .await;
    let batch = json!({"id": "fe-ttl", "status": "FINISHED", "data": [fe_record(0, "found"), fe_record(1, "not_found")]});
    f.run_until_settled(vec![fe_env(
        &job,
        Hook::Batch,
        batch.to_string().as_bytes(),
    )])
    .await;
    let ddb = relay_shared::aws::dynamodb(&f.stack.sdk);
    let items = ddb
        .query()
        .table_name(f.stack.res.table("JobsTable"))
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("JOB#{job}")))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let kinds: std::collections::BTreeSet<String> = items
        .iter()
        .map(|i| {
            let sk = i["sk"].as_s().unwrap();
            sk.split('#').next().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["CHUNK", "CONTACT", "META", "PID", "RESULT"],
        "every kind of item is here"
    );
    let now_s = relay_shared::now_ms() / 1000;
    let ninety_days = 90 * 86_400;
    for item in &items {
        let at: u64 = item
            .get("expires_at")
            .unwrap_or_else(|| panic!("{} has no expires_at", item["sk"].as_s().unwrap()))
            .as_n()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            at.abs_diff(now_s + ninety_days) < 300,
            "{} expires {at}",
            item["sk"].as_s().unwrap()
        );
    }
    // Past its retention, the job is gone for every reader (TTL deletes lazily).
    ddb.update_item()
        .table_name(f.stack.res.table("JobsTable"))
        .key("pk", AttributeValue::S(format!("JOB#{job}")))
        .key("sk", AttributeValue::S("META".into()))
        .update_expression("SET expires_at = :past")
        .expression_attribute_values(":past", AttributeValue::N((now_s - 1).to_string()))
        .send()
        .await
        .unwrap();
    assert!(f.jobs.job_view(&job).await.unwrap().is_none());
}

#[tokio::test]
async fn a_poll_message_delivered_twice_makes_one_get() {
    let f = Fetch::new().await;
    let job = f.seed_finders(2, 5000, &["twice"]).await;
    f.stub.script(
        "/email/find/bulk",
        "twice",
        vec![(
            202,
            json!({"general": {"id": "twice", "status": "ongoing"}}).to_string(),
        )],
    );
    let now = relay_shared::now_ms();
    let due = f
        .jobs
        .due_chunks(now + 601_000, 100, 60_000)
        .await
        .unwrap()
        .0;
    let mine = due.iter().find(|d| d.job_id == job).expect("due");
    let taken = f.jobs.take_due(mine, 60_000).await.unwrap().expect("taken");
    let poll = PollRequest::new(&job, ChunkIndex(0), mine.poll_at_ms)
        .taken_at(taken)
        .to_json();
    // SQS delivers the sweeper's message twice.
    f.run(&[poll.clone()]).await;
    f.run(&[poll]).await;
    assert_eq!(
        f.stub.hits("/email/find/bulk", "twice"),
        1,
        "one GET per poll taken"
    );
}

#[tokio::test]
async fn a_sweep_with_little_room_turns_to_every_shard_in_turn() {
    let f = Fetch::new().await;
    // Jobs until every shard of the due index holds one due chunk.
    let mut by_shard = std::collections::BTreeMap::new();
    while by_shard.len() < relay_shared::store::POLL_SHARDS as usize {
        let job = f.seed_finders(2, 5000, &["s"]).await;
        by_shard
            .entry(relay_shared::store::poll_shard(&job))
            .or_insert(job);
    }
    let now = relay_shared::now_ms() + 601_000;
    let mut seen = std::collections::BTreeSet::new();
    // One chunk a sweep, a sweep a minute: within as many sweeps as shards, each is served.
    for minute in 0..u64::from(relay_shared::store::POLL_SHARDS) {
        let due = f
            .jobs
            .due_chunks(now + minute * 60_000, 1, 1)
            .await
            .unwrap()
            .0;
        for d in due
            .iter()
            .filter(|d| by_shard.values().any(|j| *j == d.job_id))
        {
            seen.insert(relay_shared::store::poll_shard(&d.job_id));
        }
    }
    assert_eq!(
        seen.len(),
        relay_shared::store::POLL_SHARDS as usize,
        "{seen:?}"
    );
}
