//! The whole pipeline on one machine: moto with the template's resources, the provider sandbox,
//! the four function binaries each under a loopback Lambda Runtime API, one router that maps
//! `/jobs…` and `/webhooks/…` the way API Gateway does, and the SQS event source stand-ins
//! (webhook queue → bulk-fetch, submit queue → job-submit-worker).
//!
//! Everything it starts stops when the [`DevStack`] is dropped: children are killed, moto's
//! guard sees its pipe close. Nothing outlives it, so a second start finds nothing in its way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::poller::Poller;
use crate::runtime_api::{RuntimeApi, apigw_v2_event, lambda_env};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::{Moto, Resources, Template, repo_root};

#[derive(Debug, Clone)]
pub struct DevOptions {
    /// The API's port on 127.0.0.1 (9000; a free one if it is taken).
    pub port: u16,
    /// Where the function binaries are (`target/debug`).
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
    /// Where each function's log goes (`<dir>/<binary>.log`).
    pub log_dir: PathBuf,
    /// During a rotation: the previous webhook secret and FullEnrich key (`WEBHOOK_SECRET_PREVIOUS`,
    /// `FULLENRICH_API_KEY_PREVIOUS`).
    pub webhook_secret_previous: Option<String>,
    pub fullenrich_key_previous: Option<String>,
    /// More variables for every function (e.g. `PROVIDER_TIMEOUT_SECONDS`), over the template's.
    pub extra_env: BTreeMap<String, String>,
    /// webhook-ingest reaches AWS through a switch ([`DevStack::ingest_aws`]) that can cut it off,
    /// as an SQS outage would.
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
            bin_dir: root.join("target/debug"),
            api_token: var("RELAY_API_TOKEN").unwrap_or_else(|| "dev-token-change-me-0123".into()),
            webhook_secret: var("WEBHOOK_SECRET")
                .unwrap_or_else(|| "dev-webhook-secret-0123456789".into()),
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
    pub api_token: String,
    pub sandbox: Option<Sandbox>,
    pub enrow_url: String,
    pub fullenrich_url: String,
    pub sdk: SdkConfig,
    pub res: Resources,
    /// webhook-ingest's way to AWS, when [`DevOptions::ingest_aws_switch`] asked for one.
    pub ingest_aws: Option<Switch>,
    functions: tokio::sync::Mutex<BTreeMap<&'static str, Function>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _moto: Moto,
}

/// A function process and what it takes to start it again.
struct Function {
    child: Child,
    command: Vec<(String, String)>,
    path: PathBuf,
    log: PathBuf,
    api: RuntimeApi,
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

struct Router {
    ingest: RuntimeApi,
    jobs: RuntimeApi,
}

impl DevStack {
    pub async fn start(opts: DevOptions) -> Result<DevStack, String> {
        let moto = Moto::start(0).map_err(|e| e.to_string())?;
        let sdk = relay_shared::aws::for_endpoint(&moto.endpoint).await;
        let template = Template::load_default().map_err(|e| e.to_string())?;
        let res = template
            .create(&sdk, "dev")
            .await
            .map_err(|e| e.to_string())?;

        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("port {} is taken ({e}); using a free port", opts.port);
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        let api_url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );

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
            ("EnrowApiUrl", enrow_url.as_str()),
            ("FullEnrichApiUrl", fullenrich_url.as_str()),
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

        std::fs::create_dir_all(&opts.log_dir).map_err(|e| e.to_string())?;
        let ingest_aws = if opts.ingest_aws_switch {
            let target = ([127, 0, 0, 1], moto.port).into();
            Some(Switch::start(target).await.map_err(|e| e.to_string())?)
        } else {
            None
        };
        let mut functions = BTreeMap::new();
        let mut apis = BTreeMap::new();
        for (logical, binary, _) in crate::checks::FUNCTIONS {
            let api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
            let mut env = template.function_env(logical, &res, &params);
            if template.function_names_var(logical, "PUBLIC_BASE_URL") {
                env.insert("PUBLIC_BASE_URL".into(), api_url.clone());
            }
            // On AWS these come from SSM (`<VAR>_SSM`); locally they are plain variables, and a
            // function gets only the secrets its template entry names, as on AWS.
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
            let aws = match (&ingest_aws, binary) {
                (Some(switch), "webhook-ingest") => switch.endpoint.clone(),
                _ => moto.endpoint.clone(),
            };
            let command: Vec<(String, String)> = env
                .into_iter()
                .chain(
                    lambda_env(binary, &api.address, &aws)
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v)),
                )
                .collect();
            let path = opts.bin_dir.join(binary);
            let log = opts.log_dir.join(format!("{binary}.log"));
            std::fs::File::create(&log).map_err(|e| e.to_string())?;
            let child = Function::spawn(&path, &command, &log)?;
            functions.insert(
                binary,
                Function {
                    child,
                    command,
                    path,
                    log,
                    api: api.clone(),
                    earlier_peak_kib: 0,
                },
            );
            apis.insert(binary, api);
        }

        let router = Arc::new(Router {
            ingest: apis["webhook-ingest"].clone(),
            jobs: apis["job-submit"].clone(),
        });
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let router = Arc::clone(&router);
                async move { route(&router, method, uri, headers, body).await }
            },
        );
        let mut tasks = vec![tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })];
        for (queue, binary) in [
            ("WebhookQueue", "bulk-fetch"),
            ("SubmitQueue", "job-submit-worker"),
        ] {
            let (url, arn) = res.queues[queue].clone();
            let mut poller = Poller::new(relay_shared::aws::sqs(&sdk), &url, &arn);
            poller.wait_seconds = 1;
            poller.visibility_timeout = Some(opts.retry_visibility_seconds);
            let api = apis[binary].clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let round = poller
                        .round(|event| async {
                            let event = serde_json::to_value(event).map_err(|e| e.to_string())?;
                            let out = api.invoke(event).await.map_err(|e| e.to_string())?;
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
        let sweeper = apis["sweeper"].clone();
        let every = opts.sweep_every;
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let _ = sweeper
                    .invoke(serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event"}))
                    .await;
            }
        }));
        Ok(DevStack {
            api_url,
            api_token: opts.api_token,
            sandbox,
            enrow_url,
            fullenrich_url,
            sdk,
            res,
            ingest_aws,
            functions: tokio::sync::Mutex::new(functions),
            tasks,
            _moto: moto,
        })
    }

    /// Kills a function's process (SIGKILL, whatever it was doing) and starts it again; the
    /// invocations it held fail, so their SQS messages come back, as after a Lambda crash.
    pub async fn restart(&self, binary: &str) -> Result<(), String> {
        let mut functions = self.functions.lock().await;
        let f = functions
            .get_mut(binary)
            .ok_or_else(|| format!("no function {binary}"))?;
        f.earlier_peak_kib = f.peak_kib();
        f.child.kill().await.map_err(|e| e.to_string())?;
        f.api.abandon_in_flight();
        f.child = Function::spawn(&f.path, &f.command, &f.log)?;
        Ok(())
    }

    /// Invocations a function holds now (e.g. to kill it mid-batch).
    pub async fn in_flight(&self, binary: &str) -> usize {
        let functions = self.functions.lock().await;
        functions
            .get(binary)
            .map(|f| f.api.in_flight())
            .unwrap_or(0)
    }

    /// Peak resident memory of each function's processes so far (KiB, from `/proc`).
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

/// API Gateway's job: the request as a payload v2 event to the function its path belongs to,
/// the function's answer back as HTTP.
async fn route(
    router: &Router,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let api = if path == "/jobs" || path.starts_with("/jobs/") || path == "/openapi.json" {
        &router.jobs
    } else if path.starts_with("/webhooks/") {
        &router.ingest
    } else {
        return (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#).into_response();
    };
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let header_refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or(path);
    let event = apigw_v2_event(method.as_str(), target, &header_refs, &body);
    match api.invoke(event).await {
        Ok(out) => to_http(&out),
        Err(_) => (
            StatusCode::BAD_GATEWAY,
            r#"{"message":"Internal Server Error"}"#,
        )
            .into_response(),
    }
}

fn to_http(out: &Value) -> Response {
    use base64::Engine;
    let status = out.get("statusCode").and_then(Value::as_u64).unwrap_or(200) as u16;
    let body = out.get("body").and_then(Value::as_str).unwrap_or_default();
    let bytes = if out
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    let mut resp = Response::builder().status(status);
    if let Some(h) = out.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            if let Some(v) = v.as_str() {
                resp = resp.header(k, v);
            }
        }
    }
    resp.body(axum::body::Body::from(bytes))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
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
