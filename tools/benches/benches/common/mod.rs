//! What the bulk-fetch benches share: a worker over fresh moto tables whose DynamoDB requests
//! are counted and priced.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use bulk_fetch::Worker;
use relay_local_stack::Template;
use relay_local_stack::provider_stub::ProviderStub;
use relay_shared::bodies::S3Bodies;
use relay_shared::providers::client::ProviderHttp;
use relay_shared::queue::SqsQueue;
use relay_shared::store::{DynamoDedupe, DynamoJobStore};
use relay_shared::testing::sqs_message;
use serde_json::Value;

/// DynamoDB requests by operation (the `X-Amz-Target` header), retries included, with the
/// capacity units DynamoDB charges for them and the transactions it refused.
#[derive(Debug, Default, Clone)]
pub struct Counter(Arc<Mutex<Tally>>);

#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub calls: BTreeMap<String, usize>,
    pub wru: f64,
    pub rru: f64,
    /// Responses naming `TransactionConflict` (a transaction that met another on an item).
    pub transaction_conflicts: usize,
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "request-counter"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = ctx.request().headers().get("x-amz-target").unwrap_or("?");
        let op = target.rsplit('.').next().unwrap_or(target).to_string();
        let body: Value = ctx
            .request()
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let (wru, rru) = capacity(&op, &body);
        let mut t = self.0.lock().unwrap();
        *t.calls.entry(op).or_insert(0) += 1;
        t.wru += wru;
        t.rru += rru;
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        ctx: &BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let conflict = ctx
            .response()
            .body()
            .bytes()
            .is_some_and(|b| String::from_utf8_lossy(b).contains("TransactionConflict"));
        if conflict {
            self.0.lock().unwrap().transaction_conflicts += 1;
        }
        Ok(())
    }
}

impl Counter {
    pub fn take(&self) -> Tally {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

pub const WRITES: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];

pub fn writes(calls: &BTreeMap<String, usize>) -> usize {
    WRITES
        .iter()
        .map(|w| calls.get(*w).copied().unwrap_or(0))
        .sum()
}

/// The size DynamoDB bills for an item: attribute names plus values (strings by length,
/// numbers about one byte per two digits plus one, sets and documents by their members).
fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" | "B" => inner.as_str().map_or(0, str::len),
        "N" => inner.as_str().map_or(0, |n| n.len().div_ceil(2) + 1),
        "BOOL" | "NULL" => 1,
        "SS" | "BS" => inner.as_array().map_or(0, |a| {
            a.iter().filter_map(Value::as_str).map(str::len).sum()
        }),
        "NS" => inner.as_array().map_or(0, |a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|n| n.len().div_ceil(2) + 1)
                .sum()
        }),
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |a| a.iter().map(|x| 1 + value_size(x)).sum())
        }
        "M" => 3 + inner.as_object().map_or(0, item_size),
        _ => 0,
    }
}

fn item_size(item: &serde_json::Map<String, Value>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn wru_of_item(item: Option<&Value>) -> f64 {
    let size = item.and_then(Value::as_object).map_or(0, item_size);
    size.div_ceil(1024).max(1) as f64
}

/// Writes to the sparse `due` index (keys only). Its members are job heads (callbacks) and
/// groups of chunks, which carry `poll_shard`: an update that sets it puts an entry (counted as
/// one write, as if the item was not in the index yet), one that removes it removes the entry
/// (one), one that moves a member's `poll_at` moves it (two: a delete and a put). A chunk's own
/// `poll_at` is not in the index (a chunk carries no `poll_shard`): no index write.
fn gsi_wru_of_update(body: &Value) -> f64 {
    let expr = body["UpdateExpression"].as_str().unwrap_or_default();
    let (set, remove) = match expr.split_once("REMOVE") {
        Some((set, remove)) => (set, remove),
        None => (expr, ""),
    };
    let sk = body["Key"]["sk"]["S"].as_str().unwrap_or_default();
    let member = sk == "META" || sk.starts_with("CHUNK#~F");
    if remove.contains("poll_shard") || set.contains("poll_shard") {
        1.0
    } else if member && (set.contains("poll_at =") || set.contains("poll_at=")) {
        2.0
    } else {
        0.0
    }
}

/// Capacity units of one request by DynamoDB's on-demand rules: a write 1 WRU per KB of the item
/// (updates: its items here stay under 1 KB) plus its index writes, twice that in a transaction;
/// a read 1 RRU per 4 KB strongly consistent, half that eventually consistent (these reads
/// return under 4 KB). Returns (WRU, RRU).
pub fn capacity(op: &str, body: &Value) -> (f64, f64) {
    let read = |b: &Value| {
        if b["ConsistentRead"].as_bool() == Some(true) {
            1.0
        } else {
            0.5
        }
    };
    match op {
        "PutItem" => {
            let gsi = f64::from(u8::from(body["Item"].get("poll_shard").is_some()));
            (wru_of_item(body.get("Item")) + gsi, 0.0)
        }
        "UpdateItem" => (1.0 + gsi_wru_of_update(body), 0.0),
        "DeleteItem" => (1.0, 0.0),
        "BatchWriteItem" => {
            let mut w = 0.0;
            for reqs in body["RequestItems"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                for r in reqs.as_array().into_iter().flatten() {
                    w += match r.get("PutRequest") {
                        Some(p) => wru_of_item(p.get("Item")),
                        None => 1.0,
                    };
                }
            }
            (w, 0.0)
        }
        "TransactWriteItems" => {
            let mut w = 0.0;
            for t in body["TransactItems"].as_array().into_iter().flatten() {
                w += match (t.get("Put"), t.get("Update")) {
                    (Some(p), _) => wru_of_item(p.get("Item")),
                    (_, Some(u)) => 1.0 + gsi_wru_of_update(u),
                    _ => 1.0,
                };
            }
            (2.0 * w, 0.0)
        }
        "GetItem" | "Query" => (0.0, read(body)),
        _ => (0.0, 0.0),
    }
}

/// On-demand prices, us-east-1: DynamoDB $0.625 per million WRU and $0.125 per million RRU.
pub fn dynamo_dollars_per_million(wru: f64, rru: f64) -> f64 {
    wru * 0.625 + rru * 0.125
}

pub fn sqs_event(bodies: &[String]) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = bodies.iter().map(|b| sqs_message(b)).collect();
    e
}

pub type BenchWorker = Worker<DynamoJobStore, DynamoDedupe, ProviderHttp, S3Bodies, SqsQueue>;

/// A worker over fresh tables (moto slows down as a table grows, so each measurement gets its
/// own), its DynamoDB requests counted.
pub async fn fresh_worker(
    sdk: &aws_config::SdkConfig,
    stub: &ProviderStub,
    counter: &Counter,
) -> (BenchWorker, DynamoJobStore) {
    let prefix = format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let res = Template::load_default()
        .expect("template.yaml")
        .create(sdk, &prefix)
        .await
        .expect("create local resources");
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build(),
    );
    let jobs = DynamoJobStore::new(ddb.clone(), res.table("JobsTable"));
    let worker = Worker {
        jobs: jobs.clone(),
        dedupe: DynamoDedupe::new(ddb, res.table("DedupeTable"), 120_000, 30 * 86_400),
        providers: ProviderHttp::new(&stub.url, "bench-key", &stub.url, "bench-key"),
        bodies: S3Bodies::new(relay_shared::aws::s3(sdk), res.bucket("PayloadBucket")),
        callback_sender: relay_shared::callback::CallbackSender::new(
            relay_local_stack::dev::DEV_CALLBACK_SECRET,
            relay_shared::callback::DEFAULT_RETRY_BASE,
        )
        .unwrap(),
        dead_letters: SqsQueue::new(
            relay_shared::aws::sqs(sdk),
            res.queue_url("WebhookDeadLetterQueue"),
        ),
        requeue: SqsQueue::new(relay_shared::aws::sqs(sdk), res.queue_url("WebhookQueue")),
        submit: SqsQueue::new(relay_shared::aws::sqs(sdk), res.queue_url("SubmitQueue")),
        fullenrich_interval: std::time::Duration::from_millis(1),
        not_ready_wait: bulk_fetch::NOT_READY_WAIT,
        deadline: bulk_fetch::DEFAULT_DEADLINE,
    };
    (worker, jobs)
}
