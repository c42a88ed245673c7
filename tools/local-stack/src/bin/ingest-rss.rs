//! CPU time and peak RSS of the release `webhook-ingest` binary over N deliveries (1,000 in
//! `make bench`).
//!
//! Runs the real binary under a loopback Lambda Runtime API, with SQS and S3 in moto (the real
//! SDK), and checks each answer is 200:
//! 1. N deliveries of 2 KB: the process's CPU time (utime + stime from `/proc`, all threads) per
//!    delivery, after the cold start and a first delivery;
//! 2. N authenticated deliveries of mixed sizes (Enrow and signed FullEnrich bodies of 1–64 KB,
//!    and one 1 MB claim-checked body in every 1,000): the peak RSS (VmHWM) and RSS over time.
//!
//! Usage: ingest-rss [PATH_TO_BINARY] [DELIVERIES]   (default target/release/webhook-ingest, 10000)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use relay_local_stack::LocalAws;
use relay_local_stack::procstat::{CpuTimes, cpu_times, status_kb};
use relay_local_stack::runtime_api::{FunctionProcess, tool_args};
use relay_shared::Provider;
use relay_shared::auth::{WebhookSecret, fullenrich_signature};
use relay_shared::testing::apigw_v2_event;

const SECRET: &str = "rss-webhook-secret-0123456789";
const FE_KEY: &str = "rss-fullenrich-key";

fn body(i: usize, size: usize) -> Vec<u8> {
    let mut s = format!(
        r#"{{"event":"single_search_finished","id":"rss-{i}","result":{{"qualification":"valid","custom":"#
    );
    s.push('"');
    while s.len() + 4 < size {
        s.push('x');
    }
    s.push_str("\"}}");
    s.into_bytes()
}

#[tokio::main]
async fn main() {
    let (binary, deliveries) = tool_args("webhook-ingest", 10_000);
    let deliveries = deliveries as usize;
    let aws = LocalAws::start("rss")
        .await
        .expect("moto with the template's resources");
    let function = FunctionProcess::start(
        &binary,
        "webhook-ingest",
        &ingest_env(&aws),
        &aws.moto.endpoint,
    )
    .await;
    let ingest = Ingest {
        function,
        secret: WebhookSecret::new(SECRET),
    };
    let cpu = ingest.cpu_per_2k(deliveries).await;
    let memory = ingest.memory(deliveries).await;
    let hwm = ingest.function.stop();
    report(&binary, deliveries, &cpu, &memory, hwm);
}

/// webhook-ingest's environment: the template's, with the secrets SSM holds on AWS as plain
/// variables.
fn ingest_env(aws: &LocalAws) -> BTreeMap<String, String> {
    let params = BTreeMap::from([(
        "FullEnrichRequireSignature".to_string(),
        "false".to_string(),
    )]);
    let mut env = aws
        .template
        .function_env("WebhookIngestFunction", &aws.res, &params);
    env.insert("WEBHOOK_SECRET".into(), SECRET.into());
    env.insert("FULLENRICH_API_KEY".into(), FE_KEY.into());
    env
}

/// The running binary and the secret its webhook paths are signed with.
struct Ingest {
    function: FunctionProcess,
    secret: WebhookSecret,
}

/// Pass 1: the process's CPU time over the 2 KB deliveries, and their wall time (s).
struct CpuPass {
    cpu: CpuTimes,
    wall: f64,
}

/// Pass 2: the wall time over mixed sizes, and the RSS (kB) after every 1,000 deliveries.
struct MemoryPass {
    elapsed: Duration,
    samples: Vec<(usize, u64)>,
}

impl Ingest {
    /// Delivery `i` of `size` bytes: Enrow's event hook for even `i`, FullEnrich's signed batch
    /// hook for odd, over 50 jobs; the answer must be 200.
    async fn deliver(&self, i: usize, size: usize) {
        let provider = if i.is_multiple_of(2) {
            Provider::Enrow
        } else {
            Provider::Fullenrich
        };
        let hook = if provider == Provider::Enrow {
            "event"
        } else {
            "batch"
        };
        let job = format!("job_{}", i % 50);
        let payload = body(i, size);
        let sig = fullenrich_signature(FE_KEY.as_bytes(), &payload);
        let path = format!(
            "/webhooks/{provider}/{job}/{hook}/{}",
            self.secret.token(provider, &job)
        );
        let event = apigw_v2_event(
            "POST",
            &path,
            &[
                ("content-type", "application/json"),
                ("x-signature-sha1", &sig),
            ],
            &payload,
        );
        let resp = self.function.api.invoke(event).await.expect("invocation");
        assert_eq!(resp["statusCode"], 200, "delivery {i}: {resp}");
    }

    /// 1. CPU time per 2 KB delivery, the whole process (handler, SDK, runtime client, logging),
    /// after the cold start and a first delivery.
    async fn cpu_per_2k(&self, deliveries: usize) -> CpuPass {
        self.deliver(0, 2048).await;
        let pid = self.function.pid;
        let (cpu_before, t_before) = (cpu_times(pid), Instant::now());
        for i in 0..deliveries {
            self.deliver(i, 2048).await;
        }
        CpuPass {
            cpu: cpu_times(pid) - cpu_before,
            wall: t_before.elapsed().as_secs_f64(),
        }
    }

    /// 2. Memory over mixed sizes.
    async fn memory(&self, deliveries: usize) -> MemoryPass {
        let started = Instant::now();
        let mut samples = Vec::new();
        for i in 0..deliveries {
            let size = if i % 1000 == 999 {
                1 << 20
            } else {
                1024 << (i % 7)
            };
            self.deliver(i, size).await;
            if (i + 1) % 1000 == 0 {
                samples.push((i + 1, status_kb(self.function.pid, "VmRSS:")));
            }
        }
        MemoryPass {
            elapsed: started.elapsed(),
            samples,
        }
    }
}

fn report(binary: &str, deliveries: usize, cpu: &CpuPass, memory: &MemoryPass, hwm: u64) {
    let size = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
    let per_delivery = |seconds: f64| seconds * 1e3 / deliveries as f64;
    println!("binary: {binary} ({:.1} MB)", size as f64 / 1e6);
    println!(
        "deliveries: {deliveries} (1-64 KB bodies, every 1000th 1 MB claim-checked), all answered 200"
    );
    println!(
        "wall time: {:.1} s ({:.2} ms per delivery incl. moto)",
        memory.elapsed.as_secs_f64(),
        per_delivery(memory.elapsed.as_secs_f64())
    );
    println!(
        "rss after N deliveries (MB): {}",
        memory
            .samples
            .iter()
            .map(|(n, kb)| format!("{n}:{:.1}", *kb as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("peak RSS (VmHWM): {:.1} MB", hwm as f64 / 1024.0);
    println!(
        "CPU per 2 KB delivery, whole process (utime+stime over {deliveries}): {:.3} ms = {:.3} user + {:.3} system ({:.2} ms wall incl. moto)",
        per_delivery(cpu.cpu.user + cpu.cpu.system),
        per_delivery(cpu.cpu.user),
        per_delivery(cpu.cpu.system),
        per_delivery(cpu.wall)
    );
}
