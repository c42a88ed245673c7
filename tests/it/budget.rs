//! A job's credit budget on DynamoDB (moto), through the jobs API and the chunk submitter
//! against the loopback provider stub: workers racing for one budget start only what fits, the
//! chunk that does not fit ends `budget_exhausted` and the job still ends, and a real cost
//! reported makes room for a later chunk.

use std::time::Duration;

use job_submit::{Api, ChunkSubmitter, Submitted};
use relay_local_stack::provider_stub::ProviderStub;
use relay_shared::auth::{BearerToken, WebhookSecret};
use relay_shared::bodies::S3Bodies;
use relay_shared::providers::client::ProviderHttp;
use relay_shared::queue::SqsQueue;
use relay_shared::store::DynamoJobStore;
use relay_shared::store::contract::finish_chunk;
use serde_json::{Value, json};

use crate::support::{Stack, apigw_request};
use relay_shared::{ChunkIndex, JobId};

const TOKEN: &str = "budget-api-token-0123456789";

type Worker = ChunkSubmitter<DynamoJobStore, ProviderHttp, SqsQueue, S3Bodies>;

struct Budgets {
    _stack: Stack,
    stub: ProviderStub,
    api: Api<DynamoJobStore, SqsQueue>,
    jobs: DynamoJobStore,
    workers: Vec<Worker>,
}

impl Budgets {
    /// A fresh stack, the stub, the API and `n` workers on one jobs table.
    async fn new(n: usize) -> Budgets {
        let stack = Stack::new().await;
        let stub = ProviderStub::start().await;
        let jobs = DynamoJobStore::new(
            relay_shared::aws::dynamodb(&stack.sdk),
            stack.res.table("JobsTable"),
        );
        let submit_queue = || SqsQueue::new(stack.sqs(), stack.res.queue_url("SubmitQueue"));
        let api = Api {
            jobs: jobs.clone(),
            submit_queue: submit_queue(),
            token: BearerToken::new(TOKEN),
            callback_policy: Default::default(),
            credit_check: None,
        };
        let workers = (0..n)
            .map(|_| ChunkSubmitter {
                jobs: jobs.clone(),
                bodies: S3Bodies::new(stack.s3(), stack.res.bucket("PayloadBucket")),
                starter: ProviderHttp::new(&stub.url, "enrow-key", &stub.url, "fullenrich-key"),
                queue: submit_queue(),
                callback_queue: SqsQueue::new(stack.sqs(), stack.webhook_queue()),
                secret: WebhookSecret::new("budget-webhook-secret-0123456789"),
                public_base_url: "https://relay.example".into(),
                fullenrich_interval: Duration::from_millis(1),
                enrow_interval: Duration::from_millis(1),
                lease: Duration::from_secs(60),
                confirm_timeout: Duration::from_secs(2),
                deadline: Duration::from_secs(24 * 3600),
            })
            .collect();
        Budgets {
            _stack: stack,
            stub,
            api,
            jobs,
            workers,
        }
    }

    async fn call(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let auth = format!("Bearer {TOKEN}");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let resp = self
            .api
            .handle(apigw_request(method, path, &headers, &body))
            .await;
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_slice(resp.body().as_ref()).unwrap_or(Value::Null),
        )
    }

    /// A FullEnrich enrich job of `n` contacts (work emails: at worst 100 credits a chunk of
    /// 100) with `max_credits`: its id.
    async fn job(&self, n: usize, max_credits: f64) -> JobId {
        let contacts: Vec<Value> = (0..n)
            .map(|i| json!({"first_name": format!("F{i}"), "last_name": "L", "domain": "example.com"}))
            .collect();
        let body = json!({"provider": "fullenrich", "operation": "enrich",
            "max_credits": max_credits, "contacts": contacts});
        let (status, got) = self.call("POST", "/jobs", &body).await;
        assert_eq!(status, 202, "{got}");
        JobId::new(got["job_id"].as_str().unwrap())
    }

    async fn state(&self, job: &JobId) -> Value {
        let (status, got) = self
            .call("GET", &format!("/jobs/{job}"), &Value::Null)
            .await;
        assert_eq!(status, 200, "{got}");
        got
    }

    /// Chunk `i` ends with its cost reported, as bulk-fetch ends it.
    async fn finish(&self, job: &JobId, i: u32, cost: f64) {
        finish_chunk(&self.jobs, job, ChunkIndex(i), cost).await;
    }
}

#[tokio::test]
async fn racing_workers_start_two_of_three_chunks_a_budget_fits_and_the_job_still_ends() {
    let b = Budgets::new(4).await;
    let job = b.job(300, 250.0).await;
    // Four workers, each handed every chunk's start at once: twelve starts racing.
    let races = b
        .workers
        .iter()
        .flat_map(|w| (0..3).map(move |i| (w, ChunkIndex(i))))
        .map(|(w, i)| w.submit(&job, i));
    let outcomes = futures::future::join_all(races).await;
    let started = outcomes
        .iter()
        .filter(|o| matches!(o, Submitted::Started(_)))
        .count();
    let exhausted = outcomes
        .iter()
        .filter(|o| **o == Submitted::Failed("budget_exhausted".into()))
        .count();
    assert_eq!((started, exhausted), (2, 1), "{outcomes:?}");
    assert_eq!(b.stub.starts().len(), 2, "the provider got two starts");

    let state = b.state(&job).await;
    assert_eq!(
        state["credits"],
        json!({"budget": 250.0, "left": 50.0, "reserved": 200.0, "spent": 0.0,
            "by_provider": {"fullenrich": {"reserved": 200.0, "spent": 0.0}}}),
        "{state}"
    );
    assert_eq!(state["error"]["code"], "budget_exhausted");
    assert_eq!(
        (state["done"].clone(), state["failed"].clone()),
        (json!(100), json!(100))
    );
    let left_out: Vec<&Value> = state["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "failed")
        .collect();
    assert_eq!(left_out.len(), 1);
    let (_, page) = b
        .call(
            "GET",
            &format!("/jobs/{job}/results?limit=1000"),
            &Value::Null,
        )
        .await;
    let rows = page["results"].as_array().unwrap();
    assert_eq!(rows.len(), 100, "the third chunk's contacts only");
    assert!(
        rows.iter()
            .all(|r| r["outcome"] == "failed" && r["reason"] == "budget_exhausted")
    );

    // The two started chunks report their cost: the job ends, the rest of their holds back.
    let mut open = Vec::new();
    for c in state["chunks"].as_array().unwrap() {
        if c["status"] == "submitted" {
            open.push(c["index"].as_u64().unwrap() as u32);
        }
    }
    b.finish(&job, open[0], 40.0).await;
    b.finish(&job, open[1], 60.0).await;
    let state = b.state(&job).await;
    assert_eq!(state["status"], "partially_failed", "{state}");
    assert_eq!(
        (state["found"].clone(), state["failed"].clone()),
        (json!(200), json!(100))
    );
    assert_eq!(
        (
            state["credits"]["reserved"].clone(),
            state["credits"]["spent"].clone(),
            state["credits"]["left"].clone()
        ),
        (json!(0.0), json!(100.0), json!(150.0))
    );
}

#[tokio::test]
async fn a_real_cost_reported_makes_room_for_a_later_chunk() {
    let b = Budgets::new(1).await;
    let w = &b.workers[0];
    let job = b.job(300, 250.0).await;
    for i in 0..2 {
        assert!(matches!(
            w.submit(&job, ChunkIndex(i)).await,
            Submitted::Started(_)
        ));
    }
    // Chunk 0 cost 30 of the 100 it held: 120 left, room for the third chunk's 100.
    b.finish(&job, 0, 30.0).await;
    assert_eq!(b.state(&job).await["credits"]["left"], 120.0);
    assert!(matches!(
        w.submit(&job, ChunkIndex(2)).await,
        Submitted::Started(_)
    ));
    let credits = b.state(&job).await["credits"].clone();
    assert_eq!(
        (
            credits["reserved"].clone(),
            credits["spent"].clone(),
            credits["left"].clone()
        ),
        (json!(200.0), json!(30.0), json!(20.0))
    );
    assert_eq!(b.stub.starts().len(), 3);
}
