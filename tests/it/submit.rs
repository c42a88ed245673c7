//! job-submit against moto and the loopback provider stub: the jobs API and the chunk submitter.

use std::time::Duration;

use job_submit::{Api, ChunkSubmitter};
use relay_local_stack::poller::Poller;
use relay_local_stack::provider_stub::ProviderStub;
use relay_shared::auth::{BearerToken, WebhookSecret};
use relay_shared::bodies::S3Bodies;
use relay_shared::jobs::{ChunkStatus, ContactResult, Outcome};
use relay_shared::providers::client::ProviderHttp;
use relay_shared::queue::SqsQueue;
use relay_shared::store::{
    ChunkRef, ChunkUpdate, DynamoJobStore, Jobs, Links, Results, SubmitLedger,
};
use serde_json::{Value, json};

use crate::support::lost_answer::LostAnswer;
use crate::support::{Stack, apigw_request};
use relay_shared::ChunkIndex;
use relay_shared::JobId;
use relay_shared::ProviderId;

const TOKEN: &str = "test-api-token-0123456789";
const SECRET: &str = "test-webhook-secret-0123456789";
const BASE: &str = "https://relay.example";
const ENROW_KEY: &str = "enrow-submit-key";
const FE_KEY: &str = "fullenrich-submit-key";

struct Submit {
    stack: Stack,
    stub: ProviderStub,
    api: Api<DynamoJobStore, SqsQueue>,
    worker: ChunkSubmitter<DynamoJobStore, ProviderHttp, SqsQueue, S3Bodies>,
    jobs: DynamoJobStore,
}

impl Submit {
    async fn new() -> Submit {
        Self::with_interval(Duration::from_millis(1)).await
    }

    async fn with_interval(fullenrich_interval: Duration) -> Submit {
        let stack = Stack::new().await;
        let stub = ProviderStub::start().await;
        let jobs = DynamoJobStore::new(
            relay_shared::aws::dynamodb(&stack.sdk),
            stack.res.table("JobsTable"),
        );
        let api = Api {
            jobs: jobs.clone(),
            submit_queue: SqsQueue::new(stack.sqs(), stack.res.queue_url("SubmitQueue")),
            token: BearerToken::new(TOKEN),
            callback_policy: Default::default(),
            credit_check: None,
        };
        let worker = ChunkSubmitter {
            jobs: jobs.clone(),
            bodies: S3Bodies::new(stack.s3(), stack.res.bucket("PayloadBucket")),
            starter: ProviderHttp::new(&stub.url, ENROW_KEY, &stub.url, FE_KEY),
            queue: SqsQueue::new(stack.sqs(), stack.res.queue_url("SubmitQueue")),
            callback_queue: SqsQueue::new(stack.sqs(), stack.webhook_queue()),
            secret: WebhookSecret::new(SECRET),
            public_base_url: BASE.into(),
            fullenrich_interval,
            enrow_interval: Duration::from_millis(1),
            lease: Duration::from_secs(60),
            // Scaled: a start left unconfirmed fails its contacts 2 s later (6 h on AWS).
            confirm_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(24 * 3600),
        };
        Submit {
            stack,
            stub,
            api,
            worker,
            jobs,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        let resp = self
            .api
            .handle(apigw_request(method, path, headers, body))
            .await;
        let status = resp.status().as_u16();
        let body: Value = serde_json::from_slice(resp.body().as_ref()).unwrap_or(Value::Null);
        (status, body)
    }

    /// A FullEnrich `enrich` job of `n` contacts, accepted: its id.
    async fn fullenrich_job(&self, n: usize) -> JobId {
        let body =
            json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe_contacts(n)});
        let (status, got) = self.post(&body, &[]).await;
        assert_eq!(status, 202, "{got}");
        JobId::new(got["job_id"].as_str().unwrap())
    }

    async fn post(&self, body: &Value, extra: &[(&str, &str)]) -> (u16, Value) {
        let auth = format!("Bearer {TOKEN}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        self.call("POST", "/jobs", &headers, body.to_string().as_bytes())
            .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let auth = format!("Bearer {TOKEN}");
        self.call("GET", path, &[("authorization", &auth)], b"")
            .await
    }

    /// Runs the submit queue through the worker until it is empty (failed records come back
    /// after a 1 s visibility timeout).
    async fn submit_all(&self) {
        self.stack
            .run_queue("SubmitQueue", Duration::from_secs(120), |e| {
                self.worker.handle_batch(e)
            })
            .await;
    }
}

fn fe_contacts(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"first_name": format!("F{i}"), "last_name": "L", "domain": "example.com", "custom": {"crm_id": format!("c{i}")}}))
        .collect()
}

fn finders(n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"fullname": format!("Person {i}"), "company_domain": "example.com", "custom": {"n": i}})).collect()
}

#[tokio::test]
async fn each_operation_sends_the_documented_request_and_records_provider_ids() {
    let s = Submit::new().await;
    let token = |p, job: &str| WebhookSecret::new(SECRET).token(p, job);
    let cases = [
        (
            "fullenrich",
            "enrich",
            json!([{"linkedin_url": "https://www.linkedin.com/in/ada", "custom": {"crm_id": "x"}}, {"first_name": "A", "last_name": "B", "company_name": "C"}]),
            "/contact/enrich/bulk",
        ),
        (
            "fullenrich",
            "reverse_email",
            json!([{"email": "ada@example.com"}, {"email": "bob@example.com"}]),
            "/contact/reverse/email/bulk",
        ),
        (
            "enrow",
            "email_find",
            json!([{"fullname": "Ada L", "company_domain": "example.com"}, {"fullname": "Bob B", "company_name": "Acme"}]),
            "/email/find/bulk",
        ),
        (
            "enrow",
            "email_verify",
            json!([{"email": "ada@example.com"}, {"email": "bob@example.com"}]),
            "/email/verify/bulk",
        ),
        (
            "enrow",
            "phone_find",
            json!([{"linkedin_url": "https://www.linkedin.com/in/ada"}, {"first_name": "B", "last_name": "C", "company_domain": "example.com"}]),
            "/phone/bulk",
        ),
    ];
    let mut jobs = Vec::new();
    for (provider, operation, contacts, _) in &cases {
        let (status, body) = s.post(&json!({"provider": provider, "operation": operation, "name": "t", "contacts": contacts}), &[]).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(
            (
                body["status"].as_str(),
                body["contacts"].as_u64(),
                body["chunks"].as_u64()
            ),
            (Some("accepted"), Some(2), Some(1))
        );
        jobs.push(JobId::new(body["job_id"].as_str().unwrap()));
    }
    s.submit_all().await;
    let starts = s.stub.starts();
    assert_eq!(starts.len(), 5);
    for ((provider, operation, _, path), job) in cases.iter().zip(&jobs) {
        let start = starts
            .iter()
            .find(|st| st.path == *path)
            .unwrap_or_else(|| panic!("{path} not called"));
        let b = &start.body;
        match *provider {
            "fullenrich" => {
                assert_eq!(start.auth, format!("authorization: Bearer {FE_KEY}"));
                let t = token(relay_shared::Provider::Fullenrich, job);
                assert_eq!(
                    b["webhook_url"],
                    format!("{BASE}/webhooks/fullenrich/{job}/batch/{t}")
                );
                assert_eq!(
                    b["webhook_events"]["contact_finished"],
                    format!("{BASE}/webhooks/fullenrich/{job}/contact/{t}")
                );
                assert_eq!(b["name"], "t");
                assert_eq!(b["data"][1]["custom"]["rid"], "1");
                if *operation == "enrich" {
                    assert_eq!(
                        b["data"][0],
                        json!({"linkedin_url": "https://www.linkedin.com/in/ada", "enrich_fields": ["contact.work_emails"], "custom": {"crm_id": "x", "rid": "0"}})
                    );
                    assert_eq!(b["data"][1]["company_name"], "C");
                } else {
                    assert_eq!(
                        b["data"][0],
                        json!({"email": "ada@example.com", "custom": {"rid": "0"}})
                    );
                }
            }
            _ => {
                assert_eq!(start.auth, format!("x-api-key: {ENROW_KEY}"));
                let t = token(relay_shared::Provider::Enrow, job);
                assert_eq!(
                    b["settings"]["webhook"],
                    format!("{BASE}/webhooks/enrow/{job}/event/{t}")
                );
                match *operation {
                    "email_find" => {
                        assert_eq!(
                            b["searches"][0],
                            json!({"fullname": "Ada L", "company_domain": "example.com", "custom": "0"})
                        );
                        assert_eq!(b["searches"][1]["company_name"], "Acme");
                    }
                    "email_verify" => assert_eq!(
                        b["verifications"],
                        json!(["ada@example.com", "bob@example.com"])
                    ),
                    _ => {
                        assert_eq!(
                            b["searches"][0],
                            json!({"linkedin_url": "https://www.linkedin.com/in/ada", "custom": "0"})
                        );
                        assert_eq!(
                            b["searches"][1],
                            json!({"first_name": "B", "last_name": "C", "company_domain": "example.com", "custom": "1"})
                        );
                    }
                }
            }
        }
        let (status, got) = s.get(&format!("/jobs/{job}")).await;
        assert_eq!(status, 200);
        assert_eq!(got["status"], "running");
        assert_eq!(
            got["chunks"][0]["provider_id"].as_str(),
            start.id.as_deref(),
            "the provider id is recorded"
        );
        assert_eq!(got["chunks"][0]["status"], "submitted");
        // The provider id leads back to the chunk (what bulk-fetch looks up).
        let chunk = s
            .jobs
            .find_chunk(job, &ProviderId::new(start.id.as_deref().unwrap()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (chunk.index, chunk.offset, chunk.count),
            (ChunkIndex(0), 0, 2)
        );
    }
}

#[tokio::test]
async fn chunk_boundaries_and_the_single_endpoints() {
    let s = Submit::new().await;
    let cases: Vec<(&str, &str, Vec<Value>, u64)> = vec![
        ("fullenrich", "enrich", fe_contacts(100), 1),
        ("fullenrich", "enrich", fe_contacts(101), 2),
        ("enrow", "email_find", finders(5000), 1),
        ("enrow", "email_find", finders(5001), 2),
        (
            "enrow",
            "phone_find",
            (0..3000)
                .map(|i| json!({"linkedin_url": format!("https://www.linkedin.com/in/p{i}")}))
                .collect(),
            1,
        ),
        (
            "enrow",
            "phone_find",
            (0..3001)
                .map(|i| json!({"linkedin_url": format!("https://www.linkedin.com/in/p{i}")}))
                .collect(),
            2,
        ),
    ];
    for (provider, operation, contacts, chunks) in cases {
        let n = contacts.len();
        let (status, body) = s
            .post(
                &json!({"provider": provider, "operation": operation, "contacts": contacts}),
                &[],
            )
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(
            body["chunks"].as_u64(),
            Some(chunks),
            "{provider} {operation} {n}"
        );
    }
    // One contact each: the single endpoints.
    let singles = [
        (
            "email_find",
            json!({"fullname": "Ada L", "company_domain": "example.com"}),
            "/email/find/single",
        ),
        (
            "email_verify",
            json!({"email": "ada@example.com"}),
            "/email/verify/single",
        ),
        (
            "phone_find",
            json!({"linkedin_url": "https://www.linkedin.com/in/ada"}),
            "/phone/single",
        ),
    ];
    for (op, c, _) in &singles {
        let (status, _) = s
            .post(
                &json!({"provider": "enrow", "operation": op, "contacts": [c]}),
                &[],
            )
            .await;
        assert_eq!(status, 202);
    }
    s.submit_all().await;
    let starts = s.stub.starts();
    let sizes = |path: &str, key: &str| {
        let mut v: Vec<usize> = starts
            .iter()
            .filter(|st| st.path == path)
            .map(|st| st.body[key].as_array().map_or(0, Vec::len))
            .collect();
        v.sort();
        v
    };
    assert_eq!(sizes("/contact/enrich/bulk", "data"), vec![1, 100, 100]);
    // A trailing chunk of one contact goes to the single endpoint too.
    assert_eq!(sizes("/email/find/bulk", "searches"), vec![5000, 5000]);
    assert_eq!(sizes("/phone/bulk", "searches"), vec![3000, 3000]);
    for (_, contact, path) in &singles {
        let st = starts
            .iter()
            .find(|st| {
                st.path == *path
                    && contact
                        .as_object()
                        .unwrap()
                        .iter()
                        .all(|(k, v)| &st.body[k] == v)
            })
            .unwrap_or_else(|| panic!("{path}"));
        assert!(
            st.body["settings"]["webhook"]
                .as_str()
                .unwrap()
                .starts_with(BASE)
        );
    }
    // The 5,001st search is contact 5000 of its job, alone in its chunk, with its record key.
    let last = starts
        .iter()
        .find(|st| st.path == "/email/find/single" && st.body["fullname"] == "Person 5000")
        .unwrap();
    assert_eq!(last.body["custom"], json!({"rid": "5000"}));
    let last = starts
        .iter()
        .find(|st| {
            st.path == "/phone/single"
                && st.body["linkedin_url"] == "https://www.linkedin.com/in/p3000"
        })
        .unwrap();
    assert_eq!(last.body["custom"], "3000");
}

#[tokio::test]
async fn invalid_jobs_get_400_naming_the_field_and_reach_no_provider() {
    let s = Submit::new().await;
    let fe = |contacts: Value| json!({"provider": "fullenrich", "operation": "enrich", "contacts": contacts});
    let ok = json!({"linkedin_url": "https://www.linkedin.com/in/ada"});
    let eleven: serde_json::Map<String, Value> =
        (0..11).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        (
            fe(
                json!([ok, {"linkedin_url": "https://www.linkedin.com/in/u", "custom": {"user_id": 12584}}]),
            ),
            "contacts[1].custom.user_id",
        ),
        (
            fe(json!([{"linkedin_url": "https://www.linkedin.com/in/u", "custom": eleven}])),
            "contacts[0].custom",
        ),
        (
            fe(
                json!([{"linkedin_url": "https://www.linkedin.com/in/u", "custom": {"note": "x".repeat(101)}}]),
            ),
            "contacts[0].custom.note",
        ),
        (
            fe(json!([{"first_name": "Ada", "domain": "example.com"}])),
            "contacts[0].last_name",
        ),
        (
            json!({"provider": "enrow", "operation": "email_verify", "contacts": [{"email": "nope"}]}),
            "contacts[0].email",
        ),
        (fe(json!([])), "contacts"),
    ];
    for (body, field) in cases {
        let (status, resp) = s.post(&body, &[]).await;
        assert_eq!(status, 400, "{resp}");
        assert_eq!(resp["error"]["field"], field, "{resp}");
        assert_eq!(resp["error"]["code"], "invalid_request");
        assert!(
            !resp.to_string().contains("12584"),
            "no submitted values in the error"
        );
    }
    let (status, resp) = s
        .call(
            "POST",
            "/jobs",
            &[("authorization", &format!("Bearer {TOKEN}"))],
            b"{not json",
        )
        .await;
    assert_eq!(
        (status, resp["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    s.submit_all().await;
    assert!(s.stub.starts().is_empty(), "no provider call");
}

#[tokio::test]
async fn rate_limits_credits_and_idempotency() {
    let s = Submit::new().await;
    // 429, then success: started once, with the id of the success.
    s.stub.script_start(
        "/contact/enrich/bulk",
        vec![
            (
                429,
                r#"{"code":"error.rate.limit","message":"Too many requests. Try again in 1m"}"#
                    .into(),
            ),
            (200, r#"{"enrichment_id":"fe-after-429"}"#.into()),
        ],
    );
    let job = s.fullenrich_job(3).await;
    s.submit_all().await;
    let starts = s.stub.starts();
    assert_eq!(starts.len(), 2, "one refused, one accepted");
    let (_, got) = s.get(&format!("/jobs/{job}")).await;
    assert_eq!(got["chunks"][0]["provider_id"], "fe-after-429");
    assert_eq!(got["status"], "running");

    // Out of credits: the job fails with the reason and every contact is accounted for.
    s.stub.script_start(
        "/email/find/bulk",
        vec![(402, r#"{"message":"Insufficient balance"}"#.into())],
    );
    let (_, body) = s
        .post(
            &json!({"provider": "enrow", "operation": "email_find", "contacts": finders(4)}),
            &[],
        )
        .await;
    let job = JobId::new(body["job_id"].as_str().unwrap());
    s.submit_all().await;
    let (_, got) = s.get(&format!("/jobs/{job}")).await;
    assert_eq!(got["status"], "failed", "{got}");
    assert_eq!(got["error"]["code"], "credits_insufficient");
    assert_eq!(
        (got["done"].as_u64(), got["failed"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(
        s.stub
            .starts()
            .iter()
            .filter(|st| st.path == "/email/find/bulk")
            .count(),
        1,
        "402 is not retried"
    );

    // The same Idempotency-Key: the same job, one provider call in all; another body: refused.
    let req = json!({"provider": "enrow", "operation": "email_verify", "contacts": [{"email": "ada@example.com"}]});
    let (s1, first) = s.post(&req, &[("idempotency-key", "order-42")]).await;
    s.submit_all().await;
    let (s2, again) = s.post(&req, &[("idempotency-key", "order-42")]).await;
    s.submit_all().await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["job_id"], again["job_id"]);
    assert_eq!(
        s.stub
            .starts()
            .iter()
            .filter(|st| st.path == "/email/verify/single")
            .count(),
        1
    );
    let other = json!({"provider": "enrow", "operation": "email_verify", "contacts": [{"email": "bob@example.com"}]});
    let (status, resp) = s.post(&other, &[("idempotency-key", "order-42")]).await;
    assert_eq!(
        (status, resp["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
}

#[tokio::test]
async fn a_10000_contact_fullenrich_job_is_accepted_at_once_and_paced() {
    // Scaled clock: 600 starts a minute (100 ms apart) stands for FullEnrich's 60 (1 s apart).
    let interval = Duration::from_millis(100);
    let s = Submit::with_interval(interval).await;
    let started = std::time::Instant::now();
    let (status, body) = s.post(&json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe_contacts(10_000)}), &[]).await;
    let accepted_in = started.elapsed();
    assert_eq!(
        (status, body["chunks"].as_u64()),
        (202, Some(100)),
        "{body}"
    );
    assert!(
        s.stub.starts().is_empty(),
        "answered before any provider call"
    );
    eprintln!("10,000 contacts accepted in {accepted_in:?}");

    // Two workers at once, as the event source's maximum concurrency allows.
    let (url, arn) = s.stack.res.queues["SubmitQueue"].clone();
    let run = async || {
        let mut poller = Poller::new(s.stack.sqs(), &url, &arn);
        poller.batch_size = 5;
        poller.visibility_timeout = Some(2);
        let mut empty = 0;
        while empty < 3 || s.stack.queue_in_flight(&url).await > 0 {
            let r = poller
                .round(|e| async { Ok(s.worker.handle_batch(e).await) })
                .await
                .unwrap();
            empty = if r.received == 0 { empty + 1 } else { 0 };
        }
    };
    futures::join!(run(), run());
    let starts = s.stub.starts();
    assert_eq!(starts.len(), 100, "every chunk once");
    let mut at: Vec<_> = starts.iter().map(|st| st.at).collect();
    at.sort();
    // Slots are reserved 100 ms apart; arrival jitters by the moto round trips in between.
    let tolerance = Duration::from_millis(50);
    // In any window of 60 slots (a "minute"), at most 60 starts.
    for w in at.windows(61) {
        assert!(w[60] - w[0] + tolerance >= interval * 60);
    }
    let mut offsets: Vec<u64> = starts
        .iter()
        .map(|st| {
            st.body["data"][0]["custom"]["rid"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    offsets.sort();
    assert_eq!(offsets, (0..100).map(|i| i * 100).collect::<Vec<u64>>());
}

#[tokio::test]
async fn auth_404_and_results_in_contact_order() {
    let s = Submit::new().await;
    let (status, _) = s.call("GET", "/jobs/job_x", &[], b"").await;
    assert_eq!(status, 401);
    let (status, _) = s
        .call(
            "POST",
            "/jobs",
            &[("authorization", "Bearer wrong-token-0123456789")],
            b"{}",
        )
        .await;
    assert_eq!(status, 401);
    let (status, body) = s.get("/jobs/job_unknown").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = s.get("/jobs/job_unknown/results").await;
    assert_eq!(status, 404);

    let job = s.fullenrich_job(250).await;
    // Results arrive chunk by chunk, out of order (as bulk-fetch stores them).
    for index in [2u32, 0, 1] {
        let offset = index as u64 * 100;
        let count = if index == 2 { 50 } else { 100 };
        let contacts = s.jobs.contacts(&job, offset, count).await.unwrap();
        let results: Vec<ContactResult> = contacts
            .iter()
            .map(|c| ContactResult {
                outcome: Outcome::Found,
                email: Some(format!("p{}@example.com", c.index)),
                ..ContactResult::failed(c, "x")
            })
            .map(|r| ContactResult { reason: None, ..r })
            .collect();
        let update = ChunkUpdate {
            index: ChunkIndex(index),
            status: ChunkStatus::Completed,
            credits: Some(1.0),
            error: None,
        };
        s.jobs
            .store_chunk(
                &job,
                ChunkRef {
                    index: ChunkIndex(index),
                    offset,
                    count,
                },
                results,
                update,
            )
            .await
            .unwrap();
    }
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/jobs/{job}/results?limit=100&cursor={c}"),
            None => format!("/jobs/{job}/results?limit=100"),
        };
        let (status, page) = s.get(&path).await;
        assert_eq!(status, 200);
        for r in page["results"].as_array().unwrap() {
            let i = r["index"].as_u64().unwrap();
            assert_eq!(
                r["custom"],
                json!({"crm_id": format!("c{i}")}),
                "the caller's custom, without rid"
            );
            assert_eq!(r["outcome"], "found");
            seen.push(i);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, (0..250).collect::<Vec<u64>>());
    let (_, got) = s.get(&format!("/jobs/{job}")).await;
    assert_eq!(
        (
            got["done"].as_u64(),
            got["found"].as_u64(),
            got["credits_used"].as_f64()
        ),
        (Some(250), Some(250), Some(3.0))
    );
    let (status, resp) = s.get(&format!("/jobs/{job}/results?limit=0")).await;
    assert_eq!(
        (status, resp["error"]["field"].as_str()),
        (400, Some("limit"))
    );
}

/// The record keys (contact indices) a start request carried.
fn rids(start: &relay_local_stack::provider_stub::Start) -> Vec<u64> {
    start.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["custom"]["rid"].as_str()?.parse().ok())
        .collect()
}

/// How many start requests carried contact `rid` of any job.
fn starts_of(s: &Submit, rid: u64) -> usize {
    s.stub
        .starts()
        .iter()
        .filter(|st| rids(st).contains(&rid))
        .count()
}

#[tokio::test]
async fn a_chunk_taken_for_its_start_whose_answer_was_lost_is_still_the_takers() {
    let s = Submit::new().await;
    let job = s.fullenrich_job(3).await;
    // The take lands, its answer is lost, and the SDK sends it again: the resend must find the
    // chunk held by its own owner. Were it taken for another worker's hold, the start would be
    // skipped, and the chunk left `starting` would end `start_unconfirmed` without ever starting.
    let (jobs, lost) = LostAnswer::store(&s.stack, "SET #status = :starting, submit_until");
    let taken = jobs
        .begin_submit(&job, ChunkIndex(0), "me", 60_000)
        .await
        .unwrap();
    assert!(lost.happened(), "the take's answer was lost once");
    let taken = taken.expect("the resent take finds its own hold");
    assert_eq!(taken.status, ChunkStatus::Starting);
    assert!(
        s.jobs
            .begin_submit(&job, ChunkIndex(0), "another-worker", 60_000)
            .await
            .unwrap()
            .is_none(),
        "another worker still cannot take it"
    );
}

#[tokio::test]
async fn a_worker_that_died_mid_start_leaves_its_chunk_unconfirmed_and_never_starts_it_again() {
    let s = Submit::new().await;
    let job = s.fullenrich_job(3).await;
    // A worker took the chunk, may have sent the start, and died: its lease (1 ms) runs out.
    let taken = s
        .jobs
        .begin_submit(&job, ChunkIndex(0), "dead-worker", 1)
        .await
        .unwrap();
    assert!(taken.is_some());
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The chunk's message comes back: the chunk becomes unconfirmed, nothing is sent, and with
    // no webhook within the confirmation timeout its contacts fail with the reason.
    s.submit_all().await;
    assert!(s.stub.starts().is_empty(), "never re-sent on a guess");
    let (_, got) = s.get(&format!("/jobs/{job}")).await;
    assert_eq!(got["chunks"][0]["status"], "failed", "{got}");
    assert_eq!(got["error"]["code"], "start_unconfirmed", "{got}");
    assert_eq!(got["status"], "failed");
    assert_eq!(
        (got["done"].as_u64(), got["failed"].as_u64()),
        (Some(3), Some(3))
    );
    let (_, results) = s.get(&format!("/jobs/{job}/results")).await;
    assert!(
        results["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["reason"] == "start_unconfirmed"),
        "{results}"
    );
}

#[tokio::test]
async fn a_start_answered_5xx_or_without_an_id_is_not_retried() {
    let s = Submit::new().await;
    for (answer, contacts) in [
        ((503, r#"{"message":"Service Unavailable"}"#.to_string()), 2),
        ((200, r#"{"message":"operating"}"#.to_string()), 3),
    ] {
        s.stub.script_start("/contact/enrich/bulk", vec![answer]);
        let job = s.fullenrich_job(contacts).await;
        s.submit_all().await;
        let (_, got) = s.get(&format!("/jobs/{job}")).await;
        // No webhook comes from the stub: after the (scaled) timeout the contacts fail.
        assert_eq!(got["error"]["code"], "start_unconfirmed", "{got}");
        assert_eq!(got["done"].as_u64(), Some(contacts as u64));
    }
    assert_eq!(
        s.stub.starts().len(),
        2,
        "one start request per job, never repeated"
    );
}

#[tokio::test]
async fn an_idempotency_key_retry_finishes_a_job_whose_chunks_were_not_queued() {
    let s = Submit::new().await;
    let req =
        json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe_contacts(250)});
    // The first request: the job is recorded, but SendMessage fails (a queue that is not there).
    let broken = Api {
        jobs: s.jobs.clone(),
        submit_queue: SqsQueue::new(
            s.stack.sqs(),
            format!("{}-missing", s.stack.res.queue_url("SubmitQueue")),
        ),
        token: BearerToken::new(TOKEN),
        callback_policy: Default::default(),
        credit_check: None,
    };
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", "crm-sync-7"),
    ];
    let first = broken
        .handle(apigw_request(
            "POST",
            "/jobs",
            &headers,
            req.to_string().as_bytes(),
        ))
        .await;
    // Accepted: the job is recorded, its chunks due for their starts (the sweeper sends the
    // lost messages); the client is not told to retry.
    assert_eq!(first.status().as_u16(), 202);
    let first: Value = serde_json::from_slice(first.body().as_ref()).unwrap();
    // A retry with the same key and body (a client that timed out) finishes it at once: the
    // same job, every chunk queued.
    let (status, body) = s.post(&req, &[("idempotency-key", "crm-sync-7")]).await;
    assert_eq!(status, 202, "{body}");
    let job = JobId::new(body["job_id"].as_str().unwrap());
    assert_eq!(first["job_id"].as_str(), Some(job.as_str()));
    assert_eq!(body["chunks"], 3);
    s.submit_all().await;
    // A third call changes nothing: the job's chunks are all started already.
    let (status, again) = s.post(&req, &[("idempotency-key", "crm-sync-7")]).await;
    assert_eq!(
        (status, again["job_id"].as_str()),
        (202, Some(job.as_str()))
    );
    s.submit_all().await;
    for chunk in 0..3u64 {
        assert_eq!(
            starts_of(&s, chunk * 100),
            1,
            "chunk {chunk} started exactly once"
        );
    }
    let (_, got) = s.get(&format!("/jobs/{job}")).await;
    assert_eq!(got["status"], "running", "{got}");
}

#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_job_and_reset_no_chunk() {
    let s = Submit::new().await;
    let req =
        json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe_contacts(300)});
    let key = [("idempotency-key", "crm-sync-8")];
    let answers = futures::future::join_all((0..4).map(|_| s.post(&req, &key))).await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 202)
        .map(|(_, b)| b)
        .collect();
    assert!(!created.is_empty(), "{answers:?}");
    for (status, body) in &answers {
        match status {
            202 => assert_eq!(body["job_id"], created[0]["job_id"]),
            409 => assert_eq!(body["error"]["code"], "idempotency_key_in_use", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let job = created[0]["job_id"].as_str().unwrap().to_string();
    s.submit_all().await;
    // Late retries of the same request while the chunks run reset nothing.
    for _ in 0..2 {
        let (status, body) = s.post(&req, &key).await;
        assert_eq!((status, body["job_id"].as_str()), (202, Some(job.as_str())));
    }
    s.submit_all().await;
    for chunk in 0..3u64 {
        assert_eq!(
            starts_of(&s, chunk * 100),
            1,
            "chunk {chunk} started exactly once"
        );
    }
    let (_, got) = s.get(&format!("/jobs/{job}")).await;
    assert!(
        got["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "submitted" && c["provider_id"].is_string()),
        "{got}"
    );
}

#[tokio::test]
async fn a_chunk_marked_unconfirmed_whose_answer_was_lost_is_still_marked_by_this_call() {
    let s = Submit::new().await;
    let job = s.fullenrich_job(3).await;
    assert!(
        s.jobs
            .begin_submit(&job, ChunkIndex(0), "me", 60_000)
            .await
            .unwrap()
            .is_some()
    );
    // The mark lands, its answer is lost, and the SDK sends it again: the resend must see its
    // own mark, or the caller (told "someone else marked it") schedules no confirmation check
    // and the chunk waits forever.
    let (jobs, lost) = LostAnswer::store(&s.stack, "SET #status = :unconfirmed");
    let marked = jobs
        .mark_unconfirmed(&job, ChunkIndex(0), Some("me"))
        .await
        .unwrap();
    assert!(lost.happened(), "the mark's answer was lost once");
    assert!(marked, "the resent mark recognises its own earlier write");
    // Another caller (a second start message after the lease) did not mark it.
    assert!(
        !s.jobs
            .mark_unconfirmed(&job, ChunkIndex(0), None)
            .await
            .unwrap()
    );
    let chunk = s.jobs.chunk(&job, ChunkIndex(0)).await.unwrap().unwrap();
    assert_eq!(chunk.status, ChunkStatus::StartUnconfirmed);
}

#[tokio::test]
async fn an_unconfirmed_chunk_expired_by_a_call_whose_answer_was_lost_is_still_ended_by_it() {
    let s = Submit::new().await;
    let job = s.fullenrich_job(3).await;
    assert!(
        s.jobs
            .begin_submit(&job, ChunkIndex(0), "me", 60_000)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.jobs
            .mark_unconfirmed(&job, ChunkIndex(0), Some("me"))
            .await
            .unwrap()
    );
    // The expiry lands, its answer is lost, the SDK resends: the resend must report that this
    // call ended it, or its contacts are never failed and the job never ends.
    let (jobs, lost) = LostAnswer::store(&s.stack, "SET #status = :failed");
    let ended = jobs.expire_unconfirmed(&job, ChunkIndex(0)).await.unwrap();
    assert!(lost.happened(), "the expiry's answer was lost once");
    assert!(ended, "the resent expiry recognises its own earlier write");
    assert!(
        !s.jobs
            .expire_unconfirmed(&job, ChunkIndex(0))
            .await
            .unwrap(),
        "a second check did not end it"
    );
}

#[tokio::test]
async fn a_chunk_whose_start_message_was_lost_is_started_by_the_sweeper_once() {
    let s = Submit::new().await;
    // An API whose chunks are overdue for their start after 8 s (20 min on AWS; 3 s was less
    // than a loaded machine takes to create the job and drain its messages).
    let api = Api {
        jobs: s.jobs.clone().with_start_overdue(Duration::from_secs(8)),
        submit_queue: SqsQueue::new(s.stack.sqs(), s.stack.res.queue_url("SubmitQueue")),
        token: BearerToken::new(TOKEN),
        callback_policy: Default::default(),
        credit_check: None,
    };
    let auth = format!("Bearer {TOKEN}");
    let body =
        json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe_contacts(150)});
    let req = apigw_request(
        "POST",
        "/jobs",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    let resp = api.handle(req).await;
    assert_eq!(resp.status(), 202);
    let job: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    let job = JobId::new(job["job_id"].as_str().unwrap());
    // Both start messages are lost (a failed send, the submit DLQ).
    let lost = s.stack.drain(&s.stack.res.queue_url("SubmitQueue")).await;
    assert_eq!(lost.len(), 2);
    let sweeper = sweeper::Sweeper {
        jobs: s.jobs.clone(),
        queue: SqsQueue::new(s.stack.sqs(), s.stack.webhook_queue()),
        submit_queue: SqsQueue::new(s.stack.sqs(), s.stack.res.queue_url("SubmitQueue")),
        hold: Duration::from_secs(60),
        limit: 100,
    };
    assert_eq!(
        sweeper.sweep().await.unwrap().enqueued,
        0,
        "not overdue yet"
    );
    tokio::time::sleep(Duration::from_millis(8100)).await;
    let sweep = sweeper.sweep().await.unwrap();
    assert_eq!(sweep.enqueued, 2, "{sweep:?}");
    s.submit_all().await;
    assert_eq!(s.stub.starts().len(), 2, "both chunks started, once each");
    for i in 0..2 {
        let c = s.jobs.chunk(&job, ChunkIndex(i)).await.unwrap().unwrap();
        assert_eq!(c.status, ChunkStatus::Submitted);
    }
    // Started: the next sweeps send no start again.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    sweeper.sweep().await.unwrap();
    s.submit_all().await;
    assert_eq!(s.stub.starts().len(), 2);
}

#[tokio::test]
async fn a_cancel_fences_every_later_take_and_is_never_replaced_by_a_lesser_error() {
    let s = Submit::new().await;
    let job = s.fullenrich_job(3).await;
    let canceled = relay_shared::jobs::JobError::new("canceled", "canceled by the client");
    s.jobs.set_job_error(&job, &canceled).await.unwrap();
    assert!(
        s.jobs
            .begin_submit(&job, ChunkIndex(0), "worker", 60_000)
            .await
            .unwrap()
            .is_none(),
        "no chunk of a canceled job is taken for a start"
    );
    let lesser = relay_shared::jobs::JobError::new("start_unconfirmed", "lost");
    s.jobs.set_job_error(&job, &lesser).await.unwrap();
    let meta = s.jobs.get_job(&job).await.unwrap().unwrap();
    assert_eq!(meta.error.unwrap().code, "canceled");
    assert!(
        s.jobs
            .begin_fail(&job, ChunkIndex(0), "worker", 60_000)
            .await
            .unwrap()
            .is_some(),
        "taken to be ended canceled"
    );
}
