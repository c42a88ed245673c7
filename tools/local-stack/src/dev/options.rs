//! What `make dev` / `make watch` start, from the environment: ports, secrets, providers, hosts.

use crate::repo_root;
use crate::sandbox::SandboxConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Who starts the function processes under watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// `cargo lambda watch` starts each function (`cargo run --bin <name>`) and reloads it when
    /// its source changes; every function gets the variables of `<log_dir>/watch.env`.
    Watch,
    /// `cargo lambda watch --only-lambda-apis`, and the stack starts the built binaries
    /// (`target/debug/<name>`) against watch's Runtime API: each gets only its own template
    /// entry's variables and secrets, webhook-ingest can reach AWS through a [`Switch`], and a
    /// function can be killed mid-invocation ([`DevStack::restart`]).
    Binaries,
}

#[derive(Debug, Clone)]
pub struct DevOptions {
    /// The API's port on 127.0.0.1 (9000; a free one if it is taken).
    pub port: u16,
    /// Watch's invoke port on `::1` (`RELAY_WATCH_PORT`, 9001; 0 for a free one).
    pub watch_port: u16,
    /// Who starts the functions (`RELAY_DEV_FUNCTIONS=watch|binaries`; watch by default).
    pub host: Host,
    /// Reload a function when its source changes (watch only; `make dev` does, tests do not).
    pub hot_reload: bool,
    /// Only moto, the sandbox and watch (`make watch`): no router, no pollers, no schedule;
    /// invoke the functions yourself (`cargo lambda invoke`, curl the function URLs).
    pub watch_only: bool,
    /// Where the function binaries are (`target/debug`), for [`Host::Binaries`].
    pub bin_dir: PathBuf,
    pub api_token: String,
    pub webhook_secret: String,
    /// `CALLBACK_SECRET`: signs completion callbacks (`whsec_` and base64).
    pub callback_secret: String,
    /// `CALLBACK_RETRY_BASE_SECONDS`: the first wait after a failed callback (1 s here).
    pub callback_retry_base_seconds: u64,
    /// Another provider instead of the sandbox (`ENROW_API_URL`, `FULLENRICH_API_URL`).
    pub enrow_url: Option<String>,
    pub fullenrich_url: Option<String>,
    pub enrow_key: Option<String>,
    pub fullenrich_key: Option<String>,
    pub sandbox: SandboxConfig,
    /// How long a failed SQS record waits before it comes back (the queues say minutes).
    pub retry_visibility_seconds: i32,
    /// Where watch's log (`watch.log`, with the functions' log lines), the env file and each
    /// hand-started function's log (`<binary>.log`) go.
    pub log_dir: PathBuf,
    /// During a rotation: the previous webhook secret and FullEnrich key (`WEBHOOK_SECRET_PREVIOUS`,
    /// `FULLENRICH_API_KEY_PREVIOUS`).
    pub webhook_secret_previous: Option<String>,
    pub fullenrich_key_previous: Option<String>,
    /// More variables for every function (e.g. `PROVIDER_TIMEOUT_SECONDS`), over the template's.
    pub extra_env: BTreeMap<String, String>,
    /// webhook-ingest reaches AWS through a switch ([`DevStack::ingest_aws`]) that can cut it off,
    /// as an SQS outage would ([`Host::Binaries`] only).
    pub ingest_aws_switch: bool,
    /// `POLL_AFTER_SECONDS` for the functions (`RELAY_POLL_AFTER_SECONDS`; 600 as on AWS).
    pub poll_after_seconds: u64,
    /// How often the sweeper runs (every 5 minutes on AWS; every few seconds here).
    pub sweep_every: Duration,
}

/// How `make dev` shows a secret: the value when the stack made it up (the dev defaults), never
/// one that came from the environment (`from VAR`): that one is the caller's.
pub fn shown_secret(var: &str, value: &str, env: impl Fn(&str) -> Option<String>) -> String {
    match env(var) {
        Some(v) if !v.is_empty() => format!("from {var}"),
        _ => value.to_string(),
    }
}

/// The local stack's callback secret unless `CALLBACK_SECRET` is set: 24 bytes, base64.
pub const DEV_CALLBACK_SECRET: &str = "whsec_ZGV2LWNhbGxiYWNrLXNlY3JldC0wMTIz";

/// The local stack's webhook secret unless `WEBHOOK_SECRET` is set (the tokens in
/// `fixtures/events/` are made with it).
pub const DEV_WEBHOOK_SECRET: &str = "dev-webhook-secret-0123456789";

/// The local stack's API token unless `RELAY_API_TOKEN` is set.
pub const DEV_API_TOKEN: &str = "dev-token-change-me-0123";

impl DevOptions {
    /// Defaults, overridden by `RELAY_API_TOKEN`, `ENROW_API_URL`, `FULLENRICH_API_URL`,
    /// `ENROW_API_KEY`, `FULLENRICH_API_KEY`, `WEBHOOK_SECRET` when set.
    pub fn from_env() -> DevOptions {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let root = repo_root();
        DevOptions {
            port: var("RELAY_DEV_PORT")
                .and_then(|p| p.parse().ok())
                .unwrap_or(9000),
            watch_port: var("RELAY_WATCH_PORT")
                .and_then(|p| p.parse().ok())
                .unwrap_or(9001),
            host: match var("RELAY_DEV_FUNCTIONS").as_deref() {
                Some("binaries") => Host::Binaries,
                _ => Host::Watch,
            },
            hot_reload: true,
            watch_only: false,
            bin_dir: root.join("target/debug"),
            api_token: var("RELAY_API_TOKEN").unwrap_or_else(|| DEV_API_TOKEN.into()),
            webhook_secret: var("WEBHOOK_SECRET").unwrap_or_else(|| DEV_WEBHOOK_SECRET.into()),
            callback_secret: var("CALLBACK_SECRET").unwrap_or_else(|| DEV_CALLBACK_SECRET.into()),
            callback_retry_base_seconds: 1,
            enrow_url: var("ENROW_API_URL"),
            fullenrich_url: var("FULLENRICH_API_URL"),
            enrow_key: var("ENROW_API_KEY"),
            fullenrich_key: var("FULLENRICH_API_KEY"),
            sandbox: SandboxConfig {
                drop_webhooks: var("SANDBOX_DROP_WEBHOOKS")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0),
                ..SandboxConfig::default()
            },
            retry_visibility_seconds: 5,
            log_dir: root.join(".local/dev"),
            webhook_secret_previous: var("WEBHOOK_SECRET_PREVIOUS"),
            fullenrich_key_previous: var("FULLENRICH_API_KEY_PREVIOUS"),
            extra_env: [
                "FULLENRICH_REQUESTS_PER_MINUTE",
                "START_CONFIRM_TIMEOUT",
                "PROVIDER_TIMEOUT_SECONDS",
            ]
            .into_iter()
            .filter_map(|k| Some((k.to_string(), var(k)?)))
            .collect(),
            ingest_aws_switch: false,
            poll_after_seconds: var("RELAY_POLL_AFTER_SECONDS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(600),
            sweep_every: Duration::from_secs(3),
        }
    }
}
