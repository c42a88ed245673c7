//! Erasure that erases (issue 24 items 10–13) against moto: the sweeper finds a deleted job whose
//! erasure was never asked for, the erasure takes the claim-checked bodies too, and nothing of
//! the job is written after it — a single result's row, a bulk set's rows, a link — nor is a
//! callback taken.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use job_submit::{Api, ChunkSubmitter};
use relay_shared::Provider;
use relay_shared::auth::{BearerToken, WebhookSecret};
use relay_shared::bodies::{BodyStore, S3Bodies, delivery_key};
use relay_shared::jobs::{ChunkStatus, ContactResult, Operation};
use relay_shared::providers::client::ProviderHttp;
use relay_shared::queue::SqsQueue;
use relay_shared::store::{
    CallbackStore, ChunkRef, ChunkUpdate, DueIndex, DynamoJobStore, JobWriter, Jobs, Links,
    Results, SubmitLedger,
};
use serde_json::{Value, json};
use sweeper::Sweeper;

use crate::support::refuse::Refuse;
use crate::support::{Stack, apigw_request};
use relay_shared::{ChunkIndex, JobId, ProviderId};

const TOKEN: &str = "erasure-api-token-0123456789";

/// Every sort key of the job's partition.
async fn items_of(stack: &Stack, job_id: &JobId) -> Vec<String> {
    let out = relay_shared::aws::dynamodb(&stack.sdk)
        .query()
        .table_name(stack.res.table("JobsTable"))
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("JOB#{job_id}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .filter_map(|i| i.get("sk").and_then(|v| v.as_s().ok()).cloned())
        .collect()
}

fn jobs(stack: &Stack) -> DynamoJobStore {
    DynamoJobStore::new(
        relay_shared::aws::dynamodb(&stack.sdk),
        stack.res.table("JobsTable"),
    )
}

fn finders(n: usize) -> Vec<(Value, Value)> {
    (0..n)
        .map(|i| {
            (
                json!({"fullname": format!("Ada Lovelace {i}"), "company_domain": "example.com"}),
                json!({"crm_id": format!("c{i}")}),
            )
        })
        .collect()
}

type Worker = ChunkSubmitter<DynamoJobStore, ProviderHttp, SqsQueue, S3Bodies>;

/// The jobs API, the submit worker and the sweeper on `jobs`, as deployed (the provider never
/// reached: nothing here starts a chunk).
struct Rig {
    api: Api<DynamoJobStore, SqsQueue>,
    worker: Worker,
    sweeper: Sweeper<DynamoJobStore, SqsQueue>,
    submit_url: String,
}

impl Rig {
    fn new(stack: &Stack, jobs: &DynamoJobStore) -> Rig {
        let submit_url = stack.res.queue_url("SubmitQueue").to_string();
        let bucket = stack.res.bucket("PayloadBucket").to_string();
        Rig {
            api: Api {
                jobs: jobs.clone(),
                submit_queue: SqsQueue::new(stack.sqs(), &submit_url),
                token: BearerToken::new(TOKEN),
                callback_policy: Default::default(),
                credit_check: None,
            },
            worker: ChunkSubmitter {
                jobs: jobs.clone(),
                bodies: S3Bodies::new(stack.s3(), &bucket),
                starter: ProviderHttp::new("http://127.0.0.1:9", "k", "http://127.0.0.1:9", "k"),
                queue: SqsQueue::new(stack.sqs(), &submit_url),
                callback_queue: SqsQueue::new(stack.sqs(), stack.webhook_queue()),
                secret: WebhookSecret::new("erasure-webhook-secret-0123456789"),
                public_base_url: "https://relay.example".into(),
                fullenrich_interval: Duration::from_millis(1),
                enrow_interval: Duration::from_millis(1),
                lease: Duration::from_secs(60),
                confirm_timeout: Duration::from_secs(60),
                deadline: Duration::from_secs(24 * 3600),
            },
            sweeper: Sweeper {
                jobs: jobs.clone(),
                queue: SqsQueue::new(stack.sqs(), stack.webhook_queue()),
                submit_queue: SqsQueue::new(stack.sqs(), &submit_url),
                hold: Duration::from_secs(60),
                limit: 100,
            },
            submit_url,
        }
    }

    /// One API request with the token; its status and JSON body.
    async fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        let auth = format!("Bearer {TOKEN}");
        let req = apigw_request(method, path, &[("authorization", auth.as_str())], body);
        let resp = self.api.handle(req).await;
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_slice::<Value>(resp.body().as_ref()).unwrap_or(Value::Null),
        )
    }

    /// Runs the worker on the submit queue until it is empty (an erasure continues itself in
    /// new messages).
    async fn run_worker(&self, stack: &Stack) {
        stack
            .run_queue("SubmitQueue", Duration::from_secs(60), |e| {
                self.worker.handle_batch(e)
            })
            .await;
    }
}

/// Item 10 (and 12): the DELETE's erasure message is lost; the sweeper finds the job deleted and
/// not erased, asks for its erasure, and the worker erases it, its claim-checked bodies
/// included. Afterwards the job is erased: the sweeper asks no more, and a DELETE is a 404.
#[tokio::test]
async fn a_deleted_job_whose_erasure_message_was_lost_is_erased_by_the_sweeper() {
    let stack = Stack::new().await;
    // At once, here: on AWS the sweeper looks ERASE_GRACE after the DELETE.
    let jobs = jobs(&stack).with_erase_grace(Duration::ZERO);
    let rig = Rig::new(&stack, &jobs);
    let submit_url = rig.submit_url.clone();
    let bucket = stack.res.bucket("PayloadBucket").to_string();
    let bodies = S3Bodies::new(stack.s3(), &bucket);
    let call = |method: &'static str, path: String, body: Vec<u8>| {
        let rig = &rig;
        async move { rig.call(method, &path, &body).await }
    };
    let contacts: Vec<Value> = (0..3)
        .map(|i| json!({"linkedin_url": format!("https://www.linkedin.com/in/ada-{i}")}))
        .collect();
    let body = json!({"provider": "fullenrich", "operation": "enrich", "contacts": contacts});
    let (status, created) = call("POST", "/jobs".into(), body.to_string().into_bytes()).await;
    assert_eq!(status, 202, "{created}");
    let job = JobId::new(created["job_id"].as_str().unwrap());
    stack.drain(&submit_url).await;
    // Two claim-checked bodies of its deliveries, and one of another job.
    for (j, d) in [
        (job.as_str(), "d1"),
        (job.as_str(), "d2"),
        ("job_other", "d3"),
    ] {
        bodies
            .put(&delivery_key(Provider::Fullenrich, j, d), b"{}".to_vec())
            .await
            .unwrap();
    }

    let (status, _) = call("DELETE", format!("/jobs/{job}"), Vec::new()).await;
    assert_eq!(status, 202);
    assert_eq!(
        stack.drain(&submit_url).await.len(),
        1,
        "then the message is lost"
    );

    let sweep = rig.sweeper.sweep().await.unwrap();
    assert_eq!(sweep.erasures, 1, "{sweep:?}");
    let again = rig.sweeper.sweep().await.unwrap();
    assert_eq!(again.erasures, 0, "taken: not asked twice while it runs");
    rig.run_worker(&stack).await;
    assert_eq!(items_of(&stack, &job).await, vec!["META".to_string()]);
    let head = jobs.get_job(&job).await.unwrap().unwrap();
    assert!(head.erased && head.name.is_none());
    let left = stack
        .s3()
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("deliveries/")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = left.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        keys,
        vec![delivery_key(Provider::Fullenrich, "job_other", "d3")]
    );
    let (status, _) = call("DELETE", format!("/jobs/{job}"), Vec::new()).await;
    assert_eq!(status, 404, "erased: nothing left to delete");
    assert!(jobs.due_erasures(u64::MAX, 10).await.unwrap().is_empty());
}

/// Item 11: a single result that comes after the erasure (its delivery read the head before the
/// DELETE) writes no row: the row's put is conditional on its chunk.
#[tokio::test]
async fn a_single_result_after_the_erasure_writes_nothing() {
    let stack = Stack::new().await;
    let jobs = jobs(&stack);
    let job = relay_local_stack::seed::seed_job(
        &jobs,
        Operation::EmailFind,
        finders(1),
        1,
        &["single-late"],
    )
    .await;
    let contact = jobs.contacts(&job, 0, 1).await.unwrap().pop().unwrap();
    assert!(jobs.mark_deleted(&job).await.unwrap());
    while jobs.delete_items(&job, 100).await.unwrap() > 0 {}
    let update = ChunkUpdate {
        index: ChunkIndex(0),
        status: ChunkStatus::Completed,
        credits: None,
        error: None,
    };
    let late = jobs
        .store_result(
            &job,
            ChunkIndex(0),
            ContactResult::failed(&contact, "late"),
            Some(update),
        )
        .await;
    assert!(late.is_err(), "{late:?}");
    assert_eq!(items_of(&stack, &job).await, vec!["META".to_string()]);
    // Nor does a link, which carries a one-contact chunk's contact.
    let linked = jobs
        .link_chunk(
            &job,
            ChunkRef {
                index: ChunkIndex(0),
                offset: 0,
                count: 1,
            },
            &ProviderId::new("single-late"),
            None,
            Some(&contact),
        )
        .await
        .unwrap();
    assert!(!linked);
    assert!(
        !items_of(&stack, &job)
            .await
            .iter()
            .any(|sk| sk.starts_with("PID#")
                || sk.starts_with("RESULT#")
                || sk.starts_with("CONTACT#"))
    );
}

/// Holds the first write of result rows (BatchWriteItem or TransactWriteItems naming `RESULT#`)
/// until released: the moment between a bulk set's lease take and its rows.
#[derive(Debug, Clone, Default)]
struct HoldRowWrites {
    /// 0: waiting for it; 1: held; 2: released.
    gate: Arc<(Mutex<u8>, Condvar)>,
}

impl HoldRowWrites {
    fn wait_held(&self) {
        let (m, cv) = &*self.gate;
        let g = m.lock().unwrap();
        let (g, _) = cv
            .wait_timeout_while(g, Duration::from_secs(30), |g| *g == 0)
            .unwrap();
        assert_ne!(*g, 0, "the bulk set never wrote its rows");
    }

    fn release(&self) {
        let (m, cv) = &*self.gate;
        *m.lock().unwrap() = 2;
        cv.notify_all();
    }
}

impl Intercept for HoldRowWrites {
    fn name(&self) -> &'static str {
        "hold-row-writes"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = ctx.request();
        let target = req.headers().get("x-amz-target").unwrap_or_default();
        let writes = target.ends_with("BatchWriteItem") || target.ends_with("TransactWriteItems");
        let body = String::from_utf8_lossy(req.body().bytes().unwrap_or_default()).into_owned();
        if writes && body.contains("RESULT#") {
            let (m, cv) = &*self.gate;
            let mut g = m.lock().unwrap();
            if *g == 0 {
                *g = 1;
                cv.notify_all();
                while *g == 1 {
                    g = cv.wait(g).unwrap();
                }
            }
        }
        Ok(())
    }
}

/// Item 11: a bulk set that took its chunk's lease before the erasure and writes its rows after
/// it leaves no row: each write of rows is conditional on the lease it holds (the chunk is gone).
#[tokio::test]
async fn a_bulk_set_whose_chunk_is_erased_while_it_holds_it_writes_no_row() {
    let stack = Stack::new().await;
    let plain = jobs(&stack);
    let job =
        relay_local_stack::seed::seed_job(&plain, Operation::EmailFind, finders(5), 5, &["bulk-1"])
            .await;
    let contacts = plain.contacts(&job, 0, 5).await.unwrap();
    let results: Vec<ContactResult> = contacts.iter().map(ContactResult::timed_out).collect();
    let update = ChunkUpdate {
        index: ChunkIndex(0),
        status: ChunkStatus::Failed,
        credits: None,
        error: None,
    };
    let chunk = ChunkRef {
        index: ChunkIndex(0),
        offset: 0,
        count: 5,
    };
    // The bulk set runs on a thread of its own (its own runtime and HTTP client), so that the
    // hold blocks it alone.
    let hold = HoldRowWrites::default();
    let (gate, table, endpoint, id) = (
        hold.clone(),
        stack.res.table("JobsTable").to_string(),
        crate::support::moto().endpoint.clone(),
        job.clone(),
    );
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let sdk = relay_shared::aws::for_endpoint(&endpoint).await;
            let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
                .interceptor(gate)
                .build();
            let held = DynamoJobStore::new(aws_sdk_dynamodb::Client::from_conf(config), table);
            held.store_chunk(&id, chunk, results, update)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    });
    let gate = hold.clone();
    tokio::task::spawn_blocking(move || gate.wait_held())
        .await
        .unwrap();
    // The erasure runs while the bulk set holds the chunk, its rows not written yet.
    assert!(plain.mark_deleted(&job).await.unwrap());
    while plain.delete_items(&job, 100).await.unwrap() > 0 {}
    hold.release();
    let stored = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    assert!(stored.is_err(), "{stored:?}");
    assert_eq!(
        items_of(&stack, &job).await,
        vec!["META".to_string()],
        "no row after the erasure"
    );
}

/// Item 13 on DynamoDB: a job deleted with its callback pending leaves the `due` index's
/// callback shards, and its callback can no longer be taken.
#[tokio::test]
async fn a_deleted_jobs_pending_callback_is_never_taken() {
    let stack = Stack::new().await;
    let jobs = jobs(&stack);
    let job =
        relay_local_stack::seed::seed_job(&jobs, Operation::EmailFind, finders(1), 1, &["cb-1"])
            .await;
    let ddb = relay_shared::aws::dynamodb(&stack.sdk);
    ddb.update_item()
        .table_name(stack.res.table("JobsTable"))
        .key("pk", AttributeValue::S(format!("JOB#{job}")))
        .key("sk", AttributeValue::S("META".into()))
        .update_expression("SET callback_url = :u")
        .expression_attribute_values(
            ":u",
            AttributeValue::S("https://hooks.example.com/done".into()),
        )
        .send()
        .await
        .unwrap();
    let contact = jobs.contacts(&job, 0, 1).await.unwrap().pop().unwrap();
    let update = ChunkUpdate {
        index: ChunkIndex(0),
        status: ChunkStatus::Completed,
        credits: None,
        error: None,
    };
    let stored = jobs
        .store_result(
            &job,
            ChunkIndex(0),
            ContactResult::failed(&contact, "x"),
            Some(update),
        )
        .await
        .unwrap();
    assert!(stored.may_settle(1));
    assert!(jobs.settle_job(&job).await.unwrap().is_some());
    let due = jobs.due_chunks(u64::MAX, 10, 1000).await.unwrap().0;
    assert!(
        due.iter().any(|d| d.job_id == job && d.chunk.is_none()),
        "its callback is due"
    );

    assert!(jobs.mark_deleted(&job).await.unwrap());
    assert!(
        jobs.take_callback(&job, None, 60_000)
            .await
            .unwrap()
            .is_none()
    );
    let due = jobs.due_chunks(u64::MAX, 10, 1000).await.unwrap().0;
    assert!(!due.iter().any(|d| d.job_id == job), "{due:?}");
    let head = jobs.get_job(&job).await.unwrap().unwrap();
    assert_eq!((head.callback_url, head.callback), (None, None));
}

/// Job ids with contact items in the table.
async fn jobs_with_contacts(stack: &Stack) -> Vec<String> {
    let out = relay_shared::aws::dynamodb(&stack.sdk)
        .scan()
        .table_name(stack.res.table("JobsTable"))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let mut ids: Vec<String> = out
        .items()
        .iter()
        .filter(|i| {
            i.get("sk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|sk| sk.starts_with("CONTACT#"))
        })
        .filter_map(|i| {
            i.get("pk")?
                .as_s()
                .ok()?
                .strip_prefix("JOB#")
                .map(str::to_string)
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// A `POST /jobs` whose writes fail part-way: some contacts are written, the chunk is not.
async fn a_failed_creation(stack: &Stack, failing: &DynamoJobStore) -> JobId {
    let rig = Rig::new(stack, failing);
    // 60 contacts: two batches of 25 contacts, then one with the last 10, the chunk and its group,
    // which fails.
    let contacts: Vec<Value> = (0..60)
        .map(|i| json!({"linkedin_url": format!("https://www.linkedin.com/in/ada-{i}")}))
        .collect();
    let body = json!({"provider": "fullenrich", "operation": "enrich", "contacts": contacts});
    let (status, answer) = rig.call("POST", "/jobs", body.to_string().as_bytes()).await;
    assert_eq!(status, 503, "{answer}");
    let left = jobs_with_contacts(stack).await;
    assert_eq!(left.len(), 1, "contacts were written before the failure");
    JobId::new(left[0].as_str())
}

fn refusing(stack: &Stack, marker: &'static str) -> DynamoJobStore {
    Refuse::new(marker).store(stack)
}

/// Item 14: a job whose creation failed part-way left contact items; the job can still be
/// deleted by id (its head was written first), and its erasure takes every item it wrote.
#[tokio::test]
async fn a_job_whose_creation_failed_part_way_can_be_deleted_and_is_erased() {
    let stack = Stack::new().await;
    let job = a_failed_creation(&stack, &refusing(&stack, "CHUNK#00000")).await;
    let jobs = jobs(&stack).with_erase_grace(Duration::ZERO);
    let rig = Rig::new(&stack, &jobs);
    let (status, listed) = rig.call("GET", "/jobs", b"").await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["jobs"],
        json!([]),
        "a job never created is not listed"
    );

    let (status, answer) = rig.call("DELETE", &format!("/jobs/{job}"), b"").await;
    assert_eq!(status, 202, "{answer}");
    rig.run_worker(&stack).await;
    assert_eq!(items_of(&stack, &job).await, vec!["META".to_string()]);
    assert!(jobs_with_contacts(&stack).await.is_empty());
}

/// Item 14: a creation abandoned part-way (no retry, no DELETE) is found by the sweeper once it
/// has been `creating` for `CREATION_GRACE`, and erased: nothing of it is left but a tombstone.
#[tokio::test]
async fn a_creation_abandoned_part_way_is_erased_by_the_sweeper() {
    let stack = Stack::new().await;
    let failing = refusing(&stack, "CHUNK#00000").with_creation_grace(Duration::ZERO);
    let job = a_failed_creation(&stack, &failing).await;
    let jobs = jobs(&stack);
    assert!(jobs.get_job(&job).await.unwrap().unwrap().creating);
    let rig = Rig::new(&stack, &jobs);
    let sweep = rig.sweeper.sweep().await.unwrap();
    assert_eq!(sweep.erasures, 1, "{sweep:?}");
    rig.run_worker(&stack).await;
    assert_eq!(items_of(&stack, &job).await, vec!["META".to_string()]);
    let head = jobs.get_job(&job).await.unwrap().unwrap();
    assert!(head.deleted && head.erased && !head.creating);
    assert!(jobs.due_erasures(u64::MAX, 10).await.unwrap().is_empty());
}

/// Item 14: a job created whole leaves the `due` index's erasure partition with its mark, so the
/// sweeper never takes it for abandoned.
#[tokio::test]
async fn a_job_created_whole_is_never_taken_for_abandoned() {
    let stack = Stack::new().await;
    let jobs = jobs(&stack).with_creation_grace(Duration::ZERO);
    let rig = Rig::new(&stack, &jobs);
    let body = json!({"provider": "enrow", "operation": "email_verify",
        "contacts": [{"email": "a@example.com"}]});
    let (status, created) = rig.call("POST", "/jobs", body.to_string().as_bytes()).await;
    assert_eq!(status, 202, "{created}");
    let head = jobs
        .get_job(&JobId::new(created["job_id"].as_str().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert!(!head.creating);
    assert!(jobs.due_erasures(u64::MAX, 10).await.unwrap().is_empty());
    let (_, listed) = rig.call("GET", "/jobs", b"").await;
    assert_eq!(listed["jobs"][0]["job_id"], created["job_id"]);
}
