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
use std::time::Instant;

use relay_local_stack::procstat::{cpu_times, status_kb};
use relay_local_stack::runtime_api::{RuntimeApi, spawn_function, tool_args};
use relay_local_stack::{Moto, Template};
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

    let moto = Moto::start(0).expect("moto");
    let sdk = relay_shared::aws::for_endpoint(&moto.endpoint).await;
    let template = Template::load_default().expect("template");
    let res = template.create(&sdk, "rss").await.expect("resources");
    let params = BTreeMap::from([(
        "FullEnrichRequireSignature".to_string(),
        "false".to_string(),
    )]);
    let mut env = template.function_env("WebhookIngestFunction", &res, &params);
    // On AWS these come from SSM; here they are plain variables.
    env.insert("WEBHOOK_SECRET".into(), SECRET.into());
    env.insert("FULLENRICH_API_KEY".into(), FE_KEY.into());

    let api = RuntimeApi::start().await.expect("runtime api");
    let mut child = spawn_function(&binary, "webhook-ingest", &env, &api, &moto.endpoint);
    let pid = child.id();
    let secret = WebhookSecret::new(SECRET);

    let deliver = |i: usize, size: usize| {
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
            secret.token(provider, &job)
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
        let api = api.clone();
        async move {
            let resp = api.invoke(event).await.expect("invocation");
            assert_eq!(resp["statusCode"], 200, "delivery {i}: {resp}");
        }
    };

    // 1. CPU time per 2 KB delivery, the whole process (handler, SDK, runtime client, logging),
    // after the cold start and a first delivery.
    deliver(0, 2048).await;
    let (cpu_before, t_before) = (cpu_times(pid), Instant::now());
    for i in 0..deliveries {
        deliver(i, 2048).await;
    }
    let cpu_2k = cpu_times(pid) - cpu_before;
    let wall_2k = t_before.elapsed().as_secs_f64();

    // 2. Memory over mixed sizes.
    let started = Instant::now();
    let mut samples = Vec::new();
    for i in 0..deliveries {
        let size = if i % 1000 == 999 {
            1 << 20
        } else {
            1024 << (i % 7)
        };
        deliver(i, size).await;
        if (i + 1) % 1000 == 0 {
            samples.push((i + 1, status_kb(pid, "VmRSS:")));
        }
    }
    let elapsed = started.elapsed();
    let hwm = status_kb(pid, "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);

    println!("binary: {binary} ({:.1} MB)", size as f64 / 1e6);
    println!(
        "deliveries: {deliveries} (1-64 KB bodies, every 1000th 1 MB claim-checked), all answered 200"
    );
    println!(
        "wall time: {:.1} s ({:.2} ms per delivery incl. moto)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e3 / deliveries as f64
    );
    println!(
        "rss after N deliveries (MB): {}",
        samples
            .iter()
            .map(|(n, kb)| format!("{n}:{:.1}", *kb as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("peak RSS (VmHWM): {:.1} MB", hwm as f64 / 1024.0);
    println!(
        "CPU per 2 KB delivery, whole process (utime+stime over {deliveries}): {:.3} ms = {:.3} user + {:.3} system ({:.2} ms wall incl. moto)",
        (cpu_2k.user + cpu_2k.system) * 1e3 / deliveries as f64,
        cpu_2k.user * 1e3 / deliveries as f64,
        cpu_2k.system * 1e3 / deliveries as f64,
        wall_2k * 1e3 / deliveries as f64
    );
}
