//! Jobs larger than one request (issue 25 item 7): a Lambda request body is at most 6 MB, so
//! `relay submit` sends a larger job staged (created, its contacts in pages, then started).
//! DynamoDB's side of a draft (the page claim fenced by the head, the seal, the erasure
//! partition), and the whole way through `relay submit --wait` on the local stack.

use std::path::Path;
use std::time::{Duration, Instant};

use relay_local_stack::dev::{DevStack, LAMBDA_REQUEST_BYTES};
use relay_shared::jobs::{Chunk, Contact, JobMeta, JobStatus, Operation};
use relay_shared::store::{
    DRAFT_TTL, DueIndex, DynamoJobStore, JobDrafts, JobWriter, Jobs, Page, PageWrite,
};
use serde_json::json;

use crate::cli::relay_within;
use crate::e2e::options;
use crate::support::Stack;
use relay_shared::ContactIndex;
use relay_shared::JobId;

#[tokio::test]
async fn a_draft_takes_pages_under_its_head_until_a_start_seals_it_and_is_erasable_until_then() {
    let stack = Stack::new().await;
    let jobs = DynamoJobStore::new(
        relay_shared::aws::dynamodb(&stack.sdk),
        stack.res.table("JobsTable"),
    );
    let meta = JobMeta::new(
        JobId::new(format!("job_{}", uuid::Uuid::new_v4().simple())),
        Operation::EmailVerify,
        Some("big".into()),
        JobStatus::Draft,
        10,
        4,
        json!({}),
    );
    let id = &meta.job_id;
    jobs.create_draft(&meta).await.unwrap();
    assert!(matches!(
        jobs.create_draft(&meta).await,
        Err(relay_shared::store::StoreError::Conflict(_))
    ));
    // Due for its erasure once its time is up, unless started.
    let now = relay_shared::now_ms();
    let due = |at: u64| {
        let jobs = jobs.clone();
        async move {
            jobs.due_erasures(at, 100)
                .await
                .unwrap()
                .iter()
                .any(|d| d.job_id == id)
        }
    };
    assert!(!due(now).await);
    assert!(due(now + DRAFT_TTL.as_millis() as u64 + 1).await);

    let contacts = |from: u64, to: u64| -> Vec<Contact> {
        (from..to)
            .map(|i| Contact {
                origin: None,
                index: ContactIndex(i),
                fields: json!({"email": format!("p{i}@example.com")})
                    .as_object()
                    .cloned()
                    .unwrap(),
                custom: Some(json!({"crm_id": format!("c{i}")})),
            })
            .collect()
    };
    let page = |offset: u64, count: u64, sha: &str| Page {
        offset,
        count,
        sha256: sha.into(),
        complete: false,
    };
    let put = |p: Page, c: Vec<Contact>| {
        let jobs = jobs.clone();
        async move { jobs.put_page(id, &p, &c).await.unwrap() }
    };
    assert_eq!(
        put(page(0, 5, "a"), contacts(0, 5)).await,
        PageWrite::Written
    );
    assert_eq!(
        put(page(0, 5, "a"), contacts(0, 5)).await,
        PageWrite::Unchanged
    );
    assert_eq!(
        put(page(0, 5, "b"), contacts(0, 5)).await,
        PageWrite::Conflict
    );
    // A start holds the seal: no page gets in, and no second start.
    let seal = jobs.seal_draft(id, 60_000).await.unwrap().expect("sealed");
    assert_eq!(
        put(page(5, 5, "c"), contacts(5, 10)).await,
        PageWrite::Closed
    );
    assert_eq!(jobs.seal_draft(id, 60_000).await.unwrap(), None);
    jobs.unseal_draft(id, seal).await.unwrap();
    assert_eq!(
        put(page(5, 5, "c"), contacts(5, 10)).await,
        PageWrite::Written
    );
    let pages = jobs.pages(id).await.unwrap();
    assert_eq!(
        pages
            .iter()
            .map(|p| (p.offset, p.count, p.complete))
            .collect::<Vec<_>>(),
        vec![(0, 5, true), (5, 5, true)]
    );
    assert_eq!(jobs.contacts(id, 0, 10).await.unwrap(), contacts(0, 10));

    // A start whose seal was taken over writes nothing that counts; the holder's start does.
    let plan = Chunk::plan(10, 4);
    let seal = jobs.seal_draft(id, 60_000).await.unwrap().unwrap();
    assert!(!jobs.start_draft(id, &plan, seal + 1).await.unwrap());
    assert_eq!(
        jobs.get_job(id).await.unwrap().unwrap().status,
        JobStatus::Draft
    );
    assert!(jobs.start_draft(id, &plan, seal).await.unwrap());
    let head = jobs.get_job(id).await.unwrap().unwrap();
    assert_eq!((head.status, head.chunks), (JobStatus::Accepted, 3));
    assert_eq!(jobs.chunks(id).await.unwrap().len(), 3);
    assert!(
        !due(u64::MAX / 2).await,
        "started: out of the erasure partition"
    );
    assert_eq!(
        put(page(10, 1, "d"), contacts(10, 11)).await,
        PageWrite::Closed
    );
    assert_eq!(
        put(page(0, 5, "a"), contacts(0, 5)).await,
        PageWrite::Unchanged
    );

    // A draft deleted before its start: its pages go with its erasure.
    let other = JobMeta {
        job_id: JobId::new(format!("job_{}", uuid::Uuid::new_v4().simple())),
        ..meta.clone()
    };
    jobs.create_draft(&other).await.unwrap();
    jobs.put_page(&other.job_id, &page(0, 5, "a"), &contacts(0, 5))
        .await
        .unwrap();
    assert!(jobs.mark_deleted(&other.job_id).await.unwrap());
    assert_eq!(jobs.seal_draft(&other.job_id, 60_000).await.unwrap(), None);
    let mut deleted = 0;
    while let n @ 1.. = relay_shared::store::SubmitLedger::delete_items(&jobs, &other.job_id, 100)
        .await
        .unwrap()
    {
        deleted += n;
    }
    assert_eq!(deleted, 6, "five contacts and the page");
}

/// An Enrow `email_find` CSV of `rows` rows with three columns that go as `custom`.
fn write_csv(dir: &Path, rows: usize) -> String {
    let mut text = String::from("Full Name,Company Domain,CRM Id,Owner,Stage\n");
    for i in 0..rows {
        text.push_str(&format!(
            "Person {i} Example,company{}.example,crm-{i:06},owner-{},stage-{}\n",
            i % 997,
            i % 13,
            i % 5
        ));
    }
    let p = dir.join(format!("contacts-{rows}.csv"));
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// Submits `rows` rows through `relay submit --wait` (pages of at most `page_bytes`, or the
/// default), checks every row came back with its custom columns, and returns the run's time and
/// its stderr.
async fn submit_big(
    stack: &DevStack,
    dir: &Path,
    rows: usize,
    extra: &[&str],
) -> (Duration, String, String) {
    let csv = write_csv(dir, rows);
    let out = dir.join(format!("contacts-{rows}.results.csv"));
    let mut args = vec![
        "submit",
        "--provider",
        "enrow",
        "--operation",
        "email_find",
        "--keep",
        "CRM Id",
        "--keep",
        "Owner",
        "--keep",
        "Stage",
        "--wait",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(&csv);
    let started = Instant::now();
    let r = relay_within(
        &stack.api_url,
        &stack.api_token,
        &args,
        Duration::from_secs(1800),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let bytes = std::fs::read(&out).unwrap();
    let mut rd = csv::Reader::from_reader(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes));
    let headers = rd.headers().unwrap().clone();
    let crm = headers.iter().position(|h| h == "CRM Id").unwrap();
    let outcome = headers.iter().position(|h| h == "relay_outcome").unwrap();
    let mut n = 0;
    for (i, row) in rd.records().enumerate() {
        let row = row.unwrap();
        assert_eq!(&row[crm], format!("crm-{i:06}"), "row {i} in its place");
        assert!(["found", "not_found"].contains(&&row[outcome]), "{row:?}");
        n += 1;
    }
    assert_eq!(n, rows, "every row back");
    let job = r.job();
    (took, r.stderr, job)
}

/// A job over the page size goes in pages by itself, and a retry of the same `relay submit`
/// with its Idempotency-Key resumes the same job (its pages sent again are no-ops). A single
/// body over Lambda's cap is refused at the gateway, as deployed.
#[tokio::test]
async fn a_job_over_the_page_size_goes_in_pages_through_relay_submit_wait_and_a_retry_resumes_it() {
    let opts = options();
    let dir = opts.log_dir.clone();
    let stack = DevStack::start(opts).await.expect("dev stack");
    // 1,000 rows in pages of 20 kB: several pages, in seconds (the emulator writes and reads
    // contacts at about a millisecond each).
    let first = relay_within(
        &stack.api_url,
        &stack.api_token,
        &[
            "submit",
            "--provider",
            "enrow",
            "--operation",
            "email_find",
            "--keep",
            "CRM Id",
            "--keep",
            "Owner",
            "--keep",
            "Stage",
            "--page-bytes",
            "20000",
            "--idempotency-key",
            "big-job-1",
            &write_csv(&dir, 1000),
        ],
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert!(
        first.stderr.contains("in 8 page(s) of at most 20000 bytes"),
        "sent staged: {}",
        first.stderr
    );
    let id = first.stdout.trim().to_string();
    let (_, stderr, job) = submit_big(
        &stack,
        &dir,
        1000,
        &["--page-bytes", "20000", "--idempotency-key", "big-job-1"],
    )
    .await;
    assert_eq!(job, id, "the retry resumed the same job: {stderr}");
    assert!(
        !stderr.contains("page(s)"),
        "started already: no page sent again: {stderr}"
    );

    let http = reqwest::Client::new();
    let head: serde_json::Value = http
        .get(format!("{}/jobs/{id}", stack.api_url))
        .bearer_auth(&stack.api_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (head["contacts"].as_u64(), head["status"].as_str()),
        (Some(1000), Some("completed"))
    );
    let results: serde_json::Value = http
        .get(format!("{}/jobs/{id}/results?limit=1", stack.api_url))
        .bearer_auth(&stack.api_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        results["results"][0]["custom"],
        json!({"relay_row": "1", "CRM Id": "crm-000000", "Owner": "owner-0", "Stage": "stage-0"})
    );

    // One body over the cap never reaches the function.
    let resp = http
        .post(format!("{}/jobs", stack.api_url))
        .bearer_auth(&stack.api_token)
        .body(vec![b' '; LAMBDA_REQUEST_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

/// The README's 50,000-contact job: a 50,000-row CSV with three custom columns through
/// `relay submit --wait` on the local stack, the default page size (`make big-job`; its time
/// is in docs/benchmarks.md).
#[tokio::test]
#[ignore = "about 2.5 minutes: make big-job"]
async fn fifty_thousand_rows_with_three_custom_columns_through_relay_submit_wait() {
    let opts = options();
    let dir = opts.log_dir.clone();
    let stack = DevStack::start(opts).await.expect("dev stack");
    let (took, stderr, job) = submit_big(&stack, &dir, 50_000, &[]).await;
    eprintln!("{stderr}");
    assert!(
        stderr.contains("page(s) of at most 4000000 bytes"),
        "{stderr}"
    );
    eprintln!(
        "{job}: 50,000 rows, three custom columns: relay submit --wait took {:.1} s",
        took.as_secs_f64()
    );
}
