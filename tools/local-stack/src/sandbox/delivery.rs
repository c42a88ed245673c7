//! Sending a job's webhooks after its `delay`: FullEnrich's signed and retried, a share sent
//! twice (`duplicate_rate`) or never (`drop_webhooks`), Enrow's also to the dashboard webhook
//! (`enrow_global_copy`), or kept for a soak to send (`capture_webhooks`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value;

use super::{Inner, SandboxConfig, draw};

/// A webhook the sandbox would have sent (`capture_webhooks`).
#[derive(Debug, Clone)]
pub struct Captured {
    pub url: String,
    pub body: Vec<u8>,
    /// `X-Signature-SHA1`, when this delivery is signed.
    pub signature: Option<String>,
}

/// One webhook a start plans: where, what, and whether FullEnrich sends it (signed, retried).
pub(super) struct Webhook {
    pub url: String,
    pub body: Vec<u8>,
    pub fullenrich: bool,
}

impl Webhook {
    pub fn new(url: &str, body: &Value, fullenrich: bool) -> Self {
        Webhook {
            url: url.to_string(),
            body: body.to_string().into_bytes(),
            fullenrich,
        }
    }
}

/// After the configured delay, sends job `job_id`'s webhooks in order; the job is done (its
/// result GETs answer with the results) when its final webhook (FullEnrich's batch, Enrow's
/// event) goes.
pub(super) async fn send_all(
    inner: Arc<Inner>,
    job_id: String,
    webhooks: Vec<Webhook>,
    config: SandboxConfig,
) {
    tokio::time::sleep(config.delay).await;
    let last = webhooks.len().saturating_sub(1);
    // Done: the results are served, and what the start reserved beyond the cost is refunded,
    // both at once (the balances, then the jobs: the order a start takes them in).
    let mark_ready = |inner: &Inner| {
        let mut balances = inner.credits.lock().unwrap();
        if let Some(j) = inner.jobs.lock().unwrap().get_mut(&job_id)
            && !j.ready
        {
            j.ready = true;
            if j.reserved > j.credits {
                balances.of(j.provider).refund(j.reserved - j.credits);
            }
        }
    };
    if webhooks.is_empty() {
        mark_ready(&inner);
    }
    for (i, hook) in webhooks.into_iter().enumerate() {
        if i == last {
            mark_ready(&inner);
        }
        let global = (!hook.fullenrich && config.enrow_global_copy)
            .then(|| config.enrow_global_webhook.clone())
            .flatten()
            .filter(|g| *g != hook.url);
        if let Some(global) = global {
            deliver_once(&inner, &global, hook.body.clone()).await;
        }
        deliver(&inner, &hook.url, hook.body, hook.fullenrich).await;
    }
}

/// Sends one webhook (signed for FullEnrich), retrying non-2xx FullEnrich deliveries 5 times,
/// and a second copy at the duplicate rate.
async fn deliver(inner: &Inner, url: &str, body: Vec<u8>, fullenrich: bool) {
    let config = inner.config.lock().unwrap().clone();
    let n = inner.deliveries.fetch_add(1, Ordering::Relaxed);
    let signed = fullenrich && draw(&format!("sign-{n}")) < config.sign_rate;
    if config.capture_webhooks {
        let signature = signed.then(|| {
            relay_shared::auth::fullenrich_signature(config.fullenrich_key.as_bytes(), &body)
        });
        inner.captured.lock().unwrap().push(Captured {
            url: url.to_string(),
            body,
            signature,
        });
        return;
    }
    if draw(&format!("drop-{n}")) < config.drop_webhooks {
        inner
            .counters
            .webhooks_dropped
            .fetch_add(1, Ordering::Relaxed);
        return;
    }
    for copy in 0..copies(n, config.duplicate_rate) {
        if copy == 1 {
            inner
                .counters
                .duplicates_sent
                .fetch_add(1, Ordering::Relaxed);
        }
        let attempts = if fullenrich { 6 } else { 1 };
        post(inner, &config, url, &body, signed, attempts).await;
    }
}

/// Deterministic: delivery n is doubled when the running share crosses a whole number.
fn copies(n: u64, duplicate_rate: f64) -> u32 {
    if ((n + 1) as f64 * duplicate_rate).floor() > (n as f64 * duplicate_rate).floor() {
        2
    } else {
        1
    }
}

/// Posts one copy, up to `attempts` times until a 2xx, `retry_interval` apart.
async fn post(
    inner: &Inner,
    config: &SandboxConfig,
    url: &str,
    body: &[u8],
    signed: bool,
    attempts: u32,
) {
    for attempt in 0..attempts {
        let mut req = inner
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if signed {
            let sig =
                relay_shared::auth::fullenrich_signature(config.fullenrich_key.as_bytes(), body);
            req = req.header("X-Signature-SHA1", sig);
        }
        inner.counters.webhooks_sent.fetch_add(1, Ordering::Relaxed);
        match req.send().await {
            Ok(r) if r.status().is_success() => break,
            _ if attempt + 1 < attempts => {
                inner
                    .counters
                    .webhooks_retried
                    .fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(config.retry_interval).await;
            }
            _ => {}
        }
    }
}

/// Sends one Enrow event to the dashboard webhook (`enrow_global_copy`): once, never dropped.
async fn deliver_once(inner: &Inner, url: &str, body: Vec<u8>) {
    inner.counters.webhooks_sent.fetch_add(1, Ordering::Relaxed);
    let _ = inner
        .http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
}
