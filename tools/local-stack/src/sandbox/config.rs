//! What a test or the demo tells the sandbox: [`SandboxConfig`] and the start behaviours it can
//! inject ([`StartFault`]).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub enrow_key: String,
    pub fullenrich_key: String,
    /// Time from a start to its webhooks.
    pub delay: Duration,
    /// Share of Enrow webhooks (and FullEnrich batch webhooks) delivered twice, 0.0 to 1.0.
    pub duplicate_rate: f64,
    /// FullEnrich's retry interval after a non-2xx (a minute in production).
    pub retry_interval: Duration,
    /// Statuses for the next start requests, in order (failure injection).
    pub start_failures: Vec<u16>,
    /// Behaviours for the next start requests, in order, after `start_failures`.
    pub start_faults: Vec<StartFault>,
    /// Random start faults for every start with no queued fault: (fault, probability), drawn
    /// from a seeded generator.
    pub fault_mix: Vec<(StartFault, f64)>,
    /// FullEnrich's balance (`GET /account/credits`); `None`: it never runs out (and reports
    /// [`UNLIMITED`](super::UNLIMITED) less what it spent).
    pub fullenrich_credits: Option<f64>,
    /// Enrow's balance (`GET /account/info`); `None`: it never runs out (and reports
    /// [`UNLIMITED`](super::UNLIMITED) less what it spent). A start it does not cover is a 402.
    pub enrow_credits: Option<f64>,
    /// A contact whose LinkedIn URL contains this is refused with a 400 for its whole request.
    pub reject_marker: Option<String>,
    /// Whether FullEnrich sends `contact_finished` webhooks when the start asked for them (on),
    /// or only the batch webhook.
    pub contact_webhooks: bool,
    /// Share of FullEnrich deliveries that carry `X-Signature-SHA1` (0.75): only some copies of
    /// FullEnrich's page document the header, so the relay must cope with both.
    pub sign_rate: f64,
    /// Share of `contact_finished` bodies that carry the whole enrichment so far (every record,
    /// the unfinished ones without `contact_info`) instead of the one record (0.25): FullEnrich
    /// says webhook content equals GET content.
    pub snapshot_rate: f64,
    /// Whether Enrow takes `http://` webhook URLs to a loopback host (on: the local stack has no
    /// TLS). Enrow documents HTTPS only, and refuses any other `http://` URL.
    pub http_loopback_webhooks: bool,
    /// FullEnrich's limit: requests per minute per key over every endpoint (60); `None`: off.
    pub fullenrich_per_minute: Option<usize>,
    /// Enrow's limit: requests per second per key on each POST endpoint (10); `None`: off.
    pub enrow_per_second: Option<usize>,
    /// Share of FullEnrich batches canceled part-way (a user's act in the dashboard; 0).
    pub cancel_rate: f64,
    /// Share of webhooks never sent (a provider that does not call back; 0).
    pub drop_webhooks: f64,
    /// Enrow's dashboard ("global") webhook: an Enrow search started without
    /// `settings.webhook` sends its event there, as Enrow documents; `None`: none set.
    pub enrow_global_webhook: Option<String>,
    /// Also send every Enrow event to the dashboard webhook, never dropped (off): Enrow's page
    /// does not say whether the dashboard webhook sees events of searches that named their own;
    /// this lets a test lose the per-request one (`drop_webhooks`) and see the global one come.
    pub enrow_global_copy: bool,
    /// Keep the webhooks instead of sending them ([`Sandbox::take_captured`]): a soak sends
    /// them itself, each several times, shuffled.
    pub capture_webhooks: bool,
    /// Every result GET of a job answers "not ready" this many times before the results.
    pub get_not_ready_first: u32,
    /// Random result-GET failures, (status, probability), seeded: 429 (with `Retry-After: 1`),
    /// 500, 503.
    pub get_faults: Vec<(u16, f64)>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enrow_key: "sandbox-enrow-key".into(),
            fullenrich_key: "sandbox-fullenrich-key".into(),
            delay: Duration::from_millis(500),
            duplicate_rate: 0.0,
            retry_interval: Duration::from_secs(1),
            start_failures: Vec::new(),
            start_faults: Vec::new(),
            fault_mix: Vec::new(),
            fullenrich_credits: None,
            enrow_credits: None,
            reject_marker: None,
            contact_webhooks: true,
            sign_rate: 0.75,
            snapshot_rate: 0.25,
            http_loopback_webhooks: true,
            fullenrich_per_minute: Some(60),
            enrow_per_second: Some(10),
            cancel_rate: 0.0,
            drop_webhooks: 0.0,
            enrow_global_webhook: None,
            enrow_global_copy: false,
            capture_webhooks: false,
            get_not_ready_first: 0,
            get_faults: Vec::new(),
        }
    }
}

/// A start behaviour a provider's documents allow.
#[derive(Debug, Clone, PartialEq)]
pub enum StartFault {
    /// Answer with this status and an error body; nothing is stored.
    Status(u16),
    /// 429 with `Retry-After: secs`; nothing is stored.
    RateLimited { retry_after: u64 },
    /// Store the job (its webhooks will come) and answer only after this long: a client with a
    /// shorter timeout never sees the id.
    AcceptThenHang(Duration),
    /// Store the job (its webhooks will come), then answer 500.
    StoreThen5xx,
    /// Store the job (its webhooks will come), then answer 200 with no id.
    AcceptWithoutId,
}
