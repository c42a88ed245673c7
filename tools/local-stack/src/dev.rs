//! The whole pipeline on one machine: moto with the template's resources, the provider sandbox,
//! the five functions under `cargo lambda watch` (its Runtime API emulator, its invoke endpoint
//! and its function URLs), one router that maps `/jobs…` and `/webhooks/…` to the function URLs
//! the way API Gateway maps them to the functions, and the event sources watch does not emulate:
//! SQS pollers (webhook queue → bulk-fetch, submit queue → job-submit-worker) and the sweeper's
//! schedule, each invoking its function through watch's `/2015-03-31/functions/<name>/invocations`
//! with real SQS or EventBridge event JSON.
//!
//! Everything it starts stops when the [`DevStack`] is dropped: watch gets SIGTERM (it stops the
//! functions it started), the binaries started by hand are killed, moto's guard sees its pipe
//! close. Nothing outlives it, so a second start finds nothing in its way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::poller::Poller;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::watch::{Invoker, Watch, WatchConfig, write_env_file};
use crate::{Moto, Resources, Template, repo_root};

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

pub struct DevStack {
    pub api_url: String,
    /// Enrow's dashboard (global) webhook URL of this stack, set as the sandbox's.
    pub global_webhook_url: String,
    pub api_token: String,
    pub sandbox: Option<Sandbox>,
    pub enrow_url: String,
    pub fullenrich_url: String,
    pub sdk: SdkConfig,
    pub res: Resources,
    /// webhook-ingest's way to AWS, when [`DevOptions::ingest_aws_switch`] asked for one.
    pub ingest_aws: Option<Switch>,
    /// Watch's invoke endpoint and function URLs (`http://[::1]:<port>`).
    pub watch_url: String,
    /// The env file watch was given ([`Host::Watch`]).
    pub env_file: Option<PathBuf>,
    /// Who started the functions.
    pub host: Host,
    invoker: Invoker,
    in_flight: Arc<BTreeMap<&'static str, AtomicUsize>>,
    calls: Calls,
    functions: tokio::sync::Mutex<BTreeMap<&'static str, Function>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    // Dropped after the functions: watch stops the ones it started.
    _watch: Watch,
    _moto: Moto,
}

/// A function process the stack started itself ([`Host::Binaries`]) and what it takes to start
/// it again.
struct Function {
    child: Child,
    command: Vec<(String, String)>,
    path: PathBuf,
    log: PathBuf,
    /// Peak resident memory of the processes before the current one (KiB).
    earlier_peak_kib: u64,
}

impl Function {
    fn spawn(path: &PathBuf, env: &[(String, String)], log: &PathBuf) -> Result<Child, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| e.to_string())?;
        Command::new(path)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!(
                    "{}: {e} (build it: make dev builds every function)",
                    path.display()
                )
            })
    }

    /// The process's peak resident memory (`VmHWM`, KiB), while it runs.
    fn peak_kib(&self) -> u64 {
        let current = self
            .child
            .id()
            .map_or(0, |pid| crate::procstat::status_kb(pid, "VmHWM:"));
        current.max(self.earlier_peak_kib)
    }
}

impl Drop for DevStack {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for f in self.functions.get_mut().values_mut() {
            let _ = f.child.start_kill();
        }
    }
}

/// A TCP pass-through to one address that can be switched off: while off, it drops every open
/// connection and every new one, as an unreachable service does.
pub struct Switch {
    up: tokio::sync::watch::Sender<bool>,
    /// `http://127.0.0.1:port`, to use as an endpoint URL.
    pub endpoint: String,
}

impl Switch {
    pub async fn start(target: std::net::SocketAddr) -> std::io::Result<Switch> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let (up, rx) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut rx = rx.clone();
                if !*rx.borrow() {
                    continue; // dropped: the connection is reset
                }
                tokio::spawn(async move {
                    let Ok(mut out) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Switch { up, endpoint })
    }

    pub fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// Every function's template name, its binary, and the event that wakes it up once at start
/// (so the first real request does not wait for `cargo run`).
const WARM_UP: [(&str, Probe); 5] = [
    ("webhook-ingest", Probe::Url("/webhooks/warm-up")),
    ("bulk-fetch", Probe::EmptySqs),
    ("job-submit", Probe::Url("/openapi.json")),
    ("job-submit-worker", Probe::EmptySqs),
    ("sweeper", Probe::Schedule),
];

#[derive(Clone, Copy)]
enum Probe {
    /// A GET through the function URL (any HTTP answer will do).
    Url(&'static str),
    /// An SQS event with no records.
    EmptySqs,
    /// The sweeper's EventBridge schedule event.
    Schedule,
}

/// EventBridge's scheduled event, as the sweeper's rule sends it.
pub fn schedule_event() -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-01T12:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/enrich-relay-sweep"],
        "detail": {}
    })
}

/// Invocations through watch, counted per function while they run; a [`DevStack::restart`]
/// fails the ones the killed process held at once, as Lambda reports a crashed runtime.
#[derive(Clone)]
struct Calls {
    invoker: Invoker,
    in_flight: Arc<BTreeMap<&'static str, AtomicUsize>>,
    restarts: Arc<BTreeMap<&'static str, tokio::sync::watch::Sender<u64>>>,
}

impl Calls {
    async fn invoke(&self, function: &'static str, event: &Value) -> Result<Value, String> {
        let mut restarted = self.restarts[function].subscribe();
        restarted.mark_unchanged();
        let n = &self.in_flight[function];
        n.fetch_add(1, Ordering::SeqCst);
        let out = tokio::select! {
            r = self.invoker.invoke(function, event) => r,
            _ = restarted.changed() => Err(format!("{function} went away")),
        };
        n.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

impl DevStack {
    pub async fn start(opts: DevOptions) -> Result<DevStack, String> {
        if opts.host == Host::Watch && opts.ingest_aws_switch {
            return Err("ingest_aws_switch needs Host::Binaries: watch gives every function one environment".into());
        }
        let moto = Moto::start(0).map_err(|e| e.to_string())?;
        let sdk = relay_shared::aws::for_endpoint(&moto.endpoint).await;
        let template = Template::load_default().map_err(|e| e.to_string())?;
        let res = template
            .create(&sdk, "dev")
            .await
            .map_err(|e| e.to_string())?;

        let listener = if opts.watch_only {
            None
        } else {
            Some(
                match tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("port {} is taken ({e}); using a free port", opts.port);
                        tokio::net::TcpListener::bind("127.0.0.1:0")
                            .await
                            .map_err(|e| e.to_string())?
                    }
                },
            )
        };
        let api_url = match &listener {
            Some(l) => format!("http://{}", l.local_addr().map_err(|e| e.to_string())?),
            None => String::new(),
        };

        let sandbox = if opts.enrow_url.is_none() || opts.fullenrich_url.is_none() {
            Some(
                Sandbox::start(opts.sandbox.clone(), 0)
                    .await
                    .map_err(|e| format!("sandbox: {e}"))?,
            )
        } else {
            None
        };
        let sandbox_url = sandbox.as_ref().map(|s| s.url.clone()).unwrap_or_default();
        let enrow_url = opts
            .enrow_url
            .clone()
            .unwrap_or_else(|| sandbox_url.clone());
        let fullenrich_url = opts
            .fullenrich_url
            .clone()
            .unwrap_or_else(|| sandbox_url.clone());

        std::fs::create_dir_all(&opts.log_dir).map_err(|e| e.to_string())?;
        let ingest_aws = if opts.ingest_aws_switch {
            let target = ([127, 0, 0, 1], moto.port).into();
            Some(Switch::start(target).await.map_err(|e| e.to_string())?)
        } else {
            None
        };
        // PUBLIC_BASE_URL: where the providers send webhooks (the router; watch's own front
        // under `make watch`).
        let watch_port = match opts.watch_port {
            0 => crate::watch::free_port().map_err(|e| e.to_string())?,
            p => p,
        };
        let public_url = if opts.watch_only {
            format!(
                "{}/lambda-url/webhook-ingest",
                crate::watch::base_url(watch_port)
            )
        } else {
            api_url.clone()
        };
        let global_webhook_url = format!(
            "{public_url}{}",
            relay_shared::auth::global_webhook_path(
                &relay_shared::auth::WebhookSecret::new(opts.webhook_secret.as_bytes()),
                relay_shared::Provider::Enrow,
            )
        );
        // As a user sets it on Enrow's dashboard: searches started without their own webhook
        // report there.
        if let Some(sandbox) = &sandbox {
            sandbox.set_enrow_global_webhook(Some(global_webhook_url.clone()), false);
        }
        let envs = function_envs(
            &template,
            &res,
            &opts,
            &enrow_url,
            &fullenrich_url,
            &public_url,
        );
        let aws_env = |binary: &str| -> Vec<(String, String)> {
            let aws = match (&ingest_aws, binary) {
                (Some(switch), "webhook-ingest") => switch.endpoint.clone(),
                _ => moto.endpoint.clone(),
            };
            [
                ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_string()),
                ("AWS_ENDPOINT_URL", aws),
                ("AWS_REGION", "us-east-1".to_string()),
                ("AWS_ACCESS_KEY_ID", "test".to_string()),
                ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
        };

        let watch_log = opts.log_dir.join("watch.log");
        std::fs::File::create(&watch_log).map_err(|e| e.to_string())?;
        let mut env_file = None;
        let watch = match opts.host {
            Host::Watch => {
                // One env file for the watcher: the union of the functions' variables (they
                // agree on every name they share), moto's endpoint and test credentials.
                let mut all: BTreeMap<String, String> = BTreeMap::new();
                for (binary, env) in &envs {
                    for (k, v) in env.iter().cloned().chain(aws_env(binary)) {
                        if let Some(old) = all.insert(k.clone(), v.clone())
                            && old != v
                        {
                            return Err(format!(
                                "{k}: the functions need different values; watch's one env file cannot give both"
                            ));
                        }
                    }
                }
                let path = opts.log_dir.join("watch.env");
                write_env_file(&path, &all)?;
                let watch = Watch::start(WatchConfig {
                    port: watch_port,
                    env_file: Some(&path),
                    only_lambda_apis: false,
                    ignore_changes: !opts.hot_reload,
                    timeout_seconds: 300,
                    log: &watch_log,
                })
                .await?;
                env_file = Some(path);
                watch
            }
            Host::Binaries => {
                Watch::start(WatchConfig {
                    port: watch_port,
                    env_file: None,
                    only_lambda_apis: true,
                    ignore_changes: true,
                    timeout_seconds: 120,
                    log: &watch_log,
                })
                .await?
            }
        };

        let mut functions = BTreeMap::new();
        if opts.host == Host::Binaries {
            for (binary, env) in &envs {
                let command: Vec<(String, String)> = env
                    .iter()
                    .cloned()
                    .chain(aws_env(binary))
                    .chain(
                        [
                            ("AWS_LAMBDA_RUNTIME_API", watch.runtime_api(binary)),
                            ("AWS_LAMBDA_FUNCTION_NAME", binary.to_string()),
                            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
                            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_string()),
                        ]
                        .map(|(k, v)| (k.to_string(), v)),
                    )
                    .collect();
                let path = opts.bin_dir.join(binary);
                let log = opts.log_dir.join(format!("{binary}.log"));
                std::fs::File::create(&log).map_err(|e| e.to_string())?;
                let child = Function::spawn(&path, &command, &log)?;
                functions.insert(
                    *binary,
                    Function {
                        child,
                        command,
                        path,
                        log,
                        earlier_peak_kib: 0,
                    },
                );
            }
        }

        let invoker = watch.invoker();
        let calls = Calls {
            invoker: invoker.clone(),
            in_flight: Arc::new(
                WARM_UP
                    .iter()
                    .map(|(f, _)| (*f, AtomicUsize::new(0)))
                    .collect(),
            ),
            restarts: Arc::new(
                WARM_UP
                    .iter()
                    .map(|(f, _)| (*f, tokio::sync::watch::channel(0).0))
                    .collect(),
            ),
        };
        warm_up(&calls, &watch_log).await?;

        let mut tasks = Vec::new();
        if let Some(listener) = listener {
            let router = invoker.clone();
            let app = axum::Router::new()
                .fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let router = router.clone();
                        async move { route(&router, method, uri, headers, body).await }
                    },
                )
                // A request body over Lambda's cap is refused (413) as it is deployed.
                .layer(axum::extract::DefaultBodyLimit::max(LAMBDA_REQUEST_BYTES));
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
            for (queue, binary) in [
                ("WebhookQueue", "bulk-fetch"),
                ("SubmitQueue", "job-submit-worker"),
            ] {
                let (url, arn) = res.queues[queue].clone();
                let mut poller = Poller::new(relay_shared::aws::sqs(&sdk), &url, &arn);
                poller.wait_seconds = 1;
                poller.visibility_timeout = Some(opts.retry_visibility_seconds);
                let calls = calls.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let round = poller
                            .round(|event| async {
                                let event =
                                    serde_json::to_value(event).map_err(|e| e.to_string())?;
                                let out = calls.invoke(binary, &event).await?;
                                serde_json::from_value::<SqsBatchResponse>(out)
                                    .map_err(|e| e.to_string())
                            })
                            .await;
                        if round.is_err() {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }));
            }
            // EventBridge's job: the sweeper on its schedule.
            let every = opts.sweep_every;
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let _ = calls.invoke("sweeper", &schedule_event()).await;
                }
            }));
        }
        Ok(DevStack {
            api_url,
            global_webhook_url,
            api_token: opts.api_token,
            sandbox,
            enrow_url,
            fullenrich_url,
            sdk,
            res,
            ingest_aws,
            watch_url: watch.url.clone(),
            env_file,
            host: opts.host,
            invoker,
            in_flight: calls.in_flight.clone(),
            calls,
            functions: tokio::sync::Mutex::new(functions),
            tasks,
            _watch: watch,
            _moto: moto,
        })
    }

    /// Invokes a function through watch's Lambda Invoke endpoint, as `cargo lambda invoke` does.
    pub async fn invoke(&self, function: &str, event: &Value) -> Result<Value, String> {
        self.invoker.invoke(function, event).await
    }

    /// Kills a function's process (SIGKILL, whatever it was doing) and starts it again; the
    /// invocations it held fail, so their SQS messages come back, as after a Lambda crash.
    /// [`Host::Binaries`] only: under watch, watch owns the processes.
    pub async fn restart(&self, binary: &str) -> Result<(), String> {
        let mut functions = self.functions.lock().await;
        let (name, f) = functions
            .iter_mut()
            .find(|(n, _)| **n == binary)
            .ok_or_else(|| format!("no function {binary} started by the stack (Host::Binaries)"))?;
        f.earlier_peak_kib = f.peak_kib();
        f.child.kill().await.map_err(|e| e.to_string())?;
        self.calls.restarts[name].send_modify(|g| *g += 1);
        f.child = Function::spawn(&f.path, &f.command, &f.log)?;
        Ok(())
    }

    /// Invocations a function holds now (e.g. to kill it mid-batch).
    pub async fn in_flight(&self, binary: &str) -> usize {
        self.in_flight
            .get(binary)
            .map_or(0, |n| n.load(Ordering::SeqCst))
    }

    /// Peak resident memory of each function's processes so far (KiB, from `/proc`), for the
    /// processes the stack started ([`Host::Binaries`]).
    pub async fn peak_rss_kib(&self) -> BTreeMap<String, u64> {
        let functions = self.functions.lock().await;
        functions
            .iter()
            .map(|(name, f)| (name.to_string(), f.peak_kib()))
            .collect()
    }

    /// Messages now in a queue of the template (e.g. "WebhookDeadLetterQueue").
    pub async fn queue_depth(&self, queue: &str) -> usize {
        let out = relay_shared::aws::sqs(&self.sdk)
            .get_queue_attributes()
            .queue_url(self.res.queue_url(queue))
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await;
        out.ok()
            .and_then(|o| o.attributes)
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                    .cloned()
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// Each function's environment: its template entry resolved against the local resources, the
/// secrets its entry names (on AWS they come from SSM; here they are plain variables), and the
/// local stack's shorter waits.
fn function_envs(
    template: &Template,
    res: &Resources,
    opts: &DevOptions,
    enrow_url: &str,
    fullenrich_url: &str,
    public_url: &str,
) -> Vec<(&'static str, Vec<(String, String)>)> {
    let enrow_key = opts
        .enrow_key
        .clone()
        .unwrap_or_else(|| opts.sandbox.enrow_key.clone());
    let fullenrich_key = opts
        .fullenrich_key
        .clone()
        .unwrap_or_else(|| opts.sandbox.fullenrich_key.clone());
    let params: BTreeMap<String, String> = [
        ("WebhookSecret", opts.webhook_secret.as_str()),
        ("RelayApiToken", opts.api_token.as_str()),
        ("FullEnrichApiKey", fullenrich_key.as_str()),
        ("EnrowApiKey", enrow_key.as_str()),
        ("EnrowApiUrl", enrow_url),
        ("FullEnrichApiUrl", fullenrich_url),
        ("FullEnrichRequireSignature", "false"),
        ("DedupeRetentionDays", "30"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([(
        "PollAfterSeconds".to_string(),
        opts.poll_after_seconds.to_string(),
    )])
    .collect();
    let mut out = Vec::new();
    for (logical, binary, _) in crate::checks::FUNCTIONS {
        let mut env = template.function_env(logical, res, &params);
        if template.function_names_var(logical, "PUBLIC_BASE_URL") {
            env.insert("PUBLIC_BASE_URL".into(), public_url.to_string());
        }
        let secrets = template.function_secrets(logical);
        for (k, v) in [
            ("WEBHOOK_SECRET", Some(&opts.webhook_secret)),
            ("CALLBACK_SECRET", Some(&opts.callback_secret)),
            (
                "WEBHOOK_SECRET_PREVIOUS",
                opts.webhook_secret_previous.as_ref(),
            ),
            ("RELAY_API_TOKEN", Some(&opts.api_token)),
            ("FULLENRICH_API_KEY", Some(&fullenrich_key)),
            (
                "FULLENRICH_API_KEY_PREVIOUS",
                opts.fullenrich_key_previous.as_ref(),
            ),
            ("ENROW_API_KEY", Some(&enrow_key)),
        ] {
            if let Some(v) = v
                && secrets.iter().any(|s| s == k)
            {
                env.insert(k.into(), v.clone());
            }
        }
        // Deliveries put back to wait (results not ready, a claim held by another copy)
        // come back as soon as failed ones do here: seconds, not the 30 s of AWS.
        env.insert(
            "NOT_READY_WAIT_SECONDS".into(),
            opts.retry_visibility_seconds.to_string(),
        );
        // Callback receivers run on this machine: plain http to loopback is allowed here
        // (never on AWS), and a failed attempt is retried after seconds, not 30 s.
        // bulk-fetch calls them: its resolver lets names resolve to loopback here too.
        if binary == "job-submit" || binary == "bulk-fetch" {
            env.insert("CALLBACK_ALLOW_LOOPBACK".into(), "true".into());
        }
        if template.function_names_var(logical, "CALLBACK_RETRY_BASE_SECONDS") {
            env.insert(
                "CALLBACK_RETRY_BASE_SECONDS".into(),
                opts.callback_retry_base_seconds.to_string(),
            );
        }
        env.extend(opts.extra_env.clone());
        out.push((binary, env.into_iter().collect()));
    }
    out
}

/// One harmless invocation of every function, all at once: under watch that is its
/// `cargo run` (a relink, or a compile after an edit), so the stack is ready when `start`
/// returns. A function that cannot start shows here, with the log to read.
async fn warm_up(calls: &Calls, log: &std::path::Path) -> Result<(), String> {
    let probes = WARM_UP.iter().map(|(function, probe)| async move {
        let out = match probe {
            Probe::Url(path) => calls
                .invoker
                .http()
                .get(calls.invoker.function_url(function, path))
                .send()
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    if r.status().is_server_error() {
                        Err(format!("HTTP {}", r.status()))
                    } else {
                        Ok(())
                    }
                }),
            Probe::EmptySqs => calls
                .invoke(function, &json!({"Records": []}))
                .await
                .map(drop),
            Probe::Schedule => calls.invoke(function, &schedule_event()).await.map(drop),
        };
        out.map_err(|e| format!("{function} did not answer its first invocation: {e}"))
    });
    for r in futures::future::join_all(probes).await {
        r.map_err(|e| format!("{e}; see {}", log.display()))?;
    }
    Ok(())
}

/// The largest request body a Lambda function is invoked with (6 MB, its synchronous payload
/// cap): the local router refuses a larger one, as the deployed API does.
pub const LAMBDA_REQUEST_BYTES: usize = 6 * 1024 * 1024;

/// API Gateway's job: the request to the function URL of the function its path belongs to
/// (watch makes it the payload v2 event), the function's answer back as HTTP.
async fn route(
    invoker: &Invoker,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let function = if path == "/jobs"
        || path.starts_with("/jobs/")
        || path == "/openapi.json"
        || path == "/orphans"
    {
        "job-submit"
    } else if path.starts_with("/webhooks/") {
        "webhook-ingest"
    } else {
        return (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#).into_response();
    };
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or(path);
    let mut req = invoker
        .http()
        .request(method, invoker.function_url(function, target))
        .body(body);
    for (k, v) in &headers {
        if !matches!(
            k.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            req = req.header(k, v);
        }
    }
    let bad_gateway = || {
        (
            StatusCode::BAD_GATEWAY,
            r#"{"message":"Internal Server Error"}"#,
        )
            .into_response()
    };
    let Ok(resp) = req.send().await else {
        return bad_gateway();
    };
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if !matches!(
            k.as_str(),
            "content-length" | "connection" | "transfer-encoding" | "date"
        ) {
            out = out.header(k, v);
        }
    }
    match resp.bytes().await {
        Ok(bytes) => out
            .body(axum::body::Body::from(bytes))
            .unwrap_or_else(|_| bad_gateway()),
        Err(_) => bad_gateway(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_dev_echoes_only_the_secrets_it_made_up() {
        let none = |_: &str| None;
        assert_eq!(
            shown_secret("RELAY_API_TOKEN", "dev-token-change-me-0123", none),
            "dev-token-change-me-0123"
        );
        let set = |k: &str| (k == "RELAY_API_TOKEN").then(|| "prod-token-0123456789".to_string());
        let shown = shown_secret("RELAY_API_TOKEN", "prod-token-0123456789", set);
        assert_eq!(shown, "from RELAY_API_TOKEN");
        assert!(!shown.contains("prod-token"));
        assert_eq!(
            shown_secret("CALLBACK_SECRET", DEV_CALLBACK_SECRET, set),
            DEV_CALLBACK_SECRET
        );
    }
}
