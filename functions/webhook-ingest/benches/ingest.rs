//! The ingest handler's own time per delivery, SQS and S3 stubbed to answer at once; JSON log
//! line included (written to a sink), as on Lambda.
//!
//! `make bench` runs it; figures go in the README.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use lambda_http::{Body, Request};
use relay_shared::Provider;
use relay_shared::auth::{WebhookSecret, fullenrich_signature};
use relay_shared::bodies::{BodyStore, BodyStoreError};
use relay_shared::config::IngestConfig;
use relay_shared::queue::{Queue, QueueError};
use webhook_ingest::Ingest;

struct StubQueue;
impl Queue for StubQueue {
    async fn send_with_attributes(
        &self,
        body: String,
        _attributes: &[(&str, &str)],
    ) -> Result<String, QueueError> {
        std::hint::black_box(body);
        Ok("m-1".into())
    }
    async fn send_delayed(
        &self,
        body: String,
        _delay: std::time::Duration,
    ) -> Result<String, QueueError> {
        std::hint::black_box(body);
        Ok("m-1".into())
    }
}

struct StubStore;
impl BodyStore for StubStore {
    fn bucket(&self) -> &str {
        "bench"
    }
    async fn put(&self, _key: &str, bytes: Vec<u8>) -> Result<(), BodyStoreError> {
        std::hint::black_box(bytes);
        Ok(())
    }
    async fn get(&self, _key: &str) -> Result<Vec<u8>, BodyStoreError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _key: &str) -> Result<(), BodyStoreError> {
        Ok(())
    }
    async fn delete_prefix(&self, _prefix: &str) -> Result<usize, BodyStoreError> {
        Ok(0)
    }
}

const SECRET: &str = "bench-webhook-secret-0123456789";
const FE_KEY: &str = "bench-fullenrich-key";

/// A FullEnrich-like JSON body of about `size` bytes.
fn body(size: usize) -> Vec<u8> {
    let record = r#"{"input":{"first_name":"John","last_name":"Snow","company_domain":"example.com"},"custom":{"rid":"r-0"},"contact_info":{"most_probable_work_email":{"email":"john.snow@example.com","status":"DELIVERABLE"}}}"#;
    let mut s = String::from(
        r#"{"id":"2db5ea61-1752-42cf-8ea1-ab1da060cd0a","status":"FINISHED","data":["#,
    );
    while s.len() + record.len() + 3 < size {
        if !s.ends_with('[') {
            s.push(',');
        }
        s.push_str(record);
    }
    s.push_str("]}");
    s.into_bytes()
}

fn request(provider: Provider, hook: &str, body: &[u8]) -> Request {
    let token = WebhookSecret::new(SECRET).token(provider, "job_bench");
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!(
            "https://api.example/webhooks/{provider}/job_bench/{hook}/{token}"
        ))
        .header("content-type", "application/json");
    if provider == Provider::Fullenrich {
        req = req.header(
            "x-signature-sha1",
            fullenrich_signature(FE_KEY.as_bytes(), body),
        );
    }
    req.body(Body::Binary(body.to_vec())).unwrap()
}

fn bench(c: &mut Criterion) {
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ingest = Ingest::new(
        StubQueue,
        StubStore,
        IngestConfig {
            queue_url: "http://stub".into(),
            payload_bucket: "bench".into(),
            webhook_secret: WebhookSecret::new(SECRET),
            fullenrich_keys: vec![FE_KEY.into()],
            require_signature: false,
        },
    );
    let mut group = c.benchmark_group("ingest");
    for (label, size) in [("2KB", 2 * 1024), ("256KB", 256 * 1024)] {
        let body = body(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        for (provider, hook) in [(Provider::Enrow, "event"), (Provider::Fullenrich, "batch")] {
            group.bench_function(format!("{provider}/{label}"), |b| {
                b.to_async(&rt).iter_batched(
                    || request(provider, hook, &body),
                    |req| async {
                        let resp = ingest.handle(req).await;
                        assert_eq!(resp.status(), 200);
                        resp
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
