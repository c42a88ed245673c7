//! The functions' processes and environments: under `cargo lambda watch` (one env file), or
//! started by the stack against watch's Runtime API; how each reaches AWS.

use crate::watch::{Watch, WatchConfig, write_env_file};
use crate::{Resources, Template};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::process::{Child, Command};

use super::{DevOptions, Host};

/// A function process the stack started itself ([`Host::Binaries`]) and what it takes to start
/// it again.
pub(crate) struct Function {
    pub(crate) child: Child,
    pub(crate) command: Vec<(String, String)>,
    pub(crate) path: PathBuf,
    pub(crate) log: PathBuf,
    /// Peak resident memory of the processes before the current one (KiB).
    pub(crate) earlier_peak_kib: u64,
}

impl Function {
    pub(crate) fn spawn(
        path: &PathBuf,
        env: &[(String, String)],
        log: &PathBuf,
    ) -> Result<Child, String> {
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
    pub(crate) fn peak_kib(&self) -> u64 {
        let current = self
            .child
            .id()
            .map_or(0, |pid| crate::procstat::status_kb(pid, "VmHWM:"));
        current.max(self.earlier_peak_kib)
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

/// How the functions reach AWS: moto, or for webhook-ingest the switch in front of it.
pub(crate) struct AwsEnv {
    pub(crate) moto: String,
    pub(crate) ingest: Option<String>,
}

impl AwsEnv {
    pub(crate) fn of(&self, binary: &str) -> Vec<(String, String)> {
        let aws = match (&self.ingest, binary) {
            (Some(switch), "webhook-ingest") => switch.clone(),
            _ => self.moto.clone(),
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
    }
}

/// `cargo lambda watch`: with every function under it and one env file ([`Host::Watch`]), or as
/// the Runtime API of the binaries the stack starts itself ([`Host::Binaries`]).
pub(crate) async fn start_watch(
    opts: &DevOptions,
    envs: &[(&'static str, Vec<(String, String)>)],
    aws: &AwsEnv,
    port: u16,
    log: &std::path::Path,
) -> Result<(Watch, Option<PathBuf>), String> {
    if opts.host == Host::Binaries {
        let watch = Watch::start(WatchConfig {
            port,
            env_file: None,
            only_lambda_apis: true,
            ignore_changes: true,
            timeout_seconds: 120,
            log,
        })
        .await?;
        return Ok((watch, None));
    }
    // One env file for the watcher: the union of the functions' variables (they agree on every
    // name they share), moto's endpoint and test credentials.
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    for (binary, env) in envs {
        for (k, v) in env.iter().cloned().chain(aws.of(binary)) {
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
        port,
        env_file: Some(&path),
        only_lambda_apis: false,
        ignore_changes: !opts.hot_reload,
        timeout_seconds: 300,
        log,
    })
    .await?;
    Ok((watch, Some(path)))
}

/// The function binaries, started by the stack against watch's Runtime API ([`Host::Binaries`]).
pub(crate) fn spawn_functions(
    opts: &DevOptions,
    envs: &[(&'static str, Vec<(String, String)>)],
    aws: &AwsEnv,
    watch: &Watch,
) -> Result<BTreeMap<&'static str, Function>, String> {
    let mut functions = BTreeMap::new();
    for (binary, env) in envs {
        let command: Vec<(String, String)> = env
            .iter()
            .cloned()
            .chain(aws.of(binary))
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
    Ok(functions)
}

/// Each function's environment: its template entry resolved against the local resources, the
/// secrets its entry names (on AWS they come from SSM; here they are plain variables), and the
/// local stack's shorter waits.
pub(crate) fn function_envs(
    template: &Template,
    res: &Resources,
    opts: &DevOptions,
    enrow_url: &str,
    fullenrich_url: &str,
    public_url: &str,
) -> Vec<(&'static str, Vec<(String, String)>)> {
    let keys = ProviderKeys::of(opts);
    let params = parameters(opts, &keys, enrow_url, fullenrich_url);
    let mut out = Vec::new();
    for (logical, binary, _) in crate::checks::FUNCTIONS {
        let mut env = template.function_env(logical, res, &params);
        if template.function_names_var(logical, "PUBLIC_BASE_URL") {
            env.insert("PUBLIC_BASE_URL".into(), public_url.to_string());
        }
        let secrets = template.function_secrets(logical);
        for (k, v) in keys.secrets(opts) {
            if let Some(v) = v
                && secrets.iter().any(|s| s == k)
            {
                env.insert(k.into(), v.clone());
            }
        }
        local_waits(template, logical, binary, opts, &mut env);
        env.extend(opts.extra_env.clone());
        out.push((binary, env.into_iter().collect()));
    }
    out
}

/// The providers' API keys the functions get: the ones given, else the sandbox's.
struct ProviderKeys {
    enrow: String,
    fullenrich: String,
}

impl ProviderKeys {
    fn of(opts: &DevOptions) -> ProviderKeys {
        ProviderKeys {
            enrow: opts
                .enrow_key
                .clone()
                .unwrap_or_else(|| opts.sandbox.enrow_key.clone()),
            fullenrich: opts
                .fullenrich_key
                .clone()
                .unwrap_or_else(|| opts.sandbox.fullenrich_key.clone()),
        }
    }

    /// Every secret a function may name, with its value here (`None`: not set).
    fn secrets<'a>(&'a self, opts: &'a DevOptions) -> [(&'static str, Option<&'a String>); 7] {
        [
            ("WEBHOOK_SECRET", Some(&opts.webhook_secret)),
            ("CALLBACK_SECRET", Some(&opts.callback_secret)),
            (
                "WEBHOOK_SECRET_PREVIOUS",
                opts.webhook_secret_previous.as_ref(),
            ),
            ("RELAY_API_TOKEN", Some(&opts.api_token)),
            ("FULLENRICH_API_KEY", Some(&self.fullenrich)),
            (
                "FULLENRICH_API_KEY_PREVIOUS",
                opts.fullenrich_key_previous.as_ref(),
            ),
            ("ENROW_API_KEY", Some(&self.enrow)),
        ]
    }
}

/// The template's parameters as the local stack sets them.
fn parameters(
    opts: &DevOptions,
    keys: &ProviderKeys,
    enrow_url: &str,
    fullenrich_url: &str,
) -> BTreeMap<String, String> {
    [
        ("WebhookSecret", opts.webhook_secret.as_str()),
        ("RelayApiToken", opts.api_token.as_str()),
        ("FullEnrichApiKey", keys.fullenrich.as_str()),
        ("EnrowApiKey", keys.enrow.as_str()),
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
    .collect()
}

/// The local stack's shorter waits, and loopback callbacks, for one function.
fn local_waits(
    template: &Template,
    logical: &str,
    binary: &str,
    opts: &DevOptions,
    env: &mut BTreeMap<String, String>,
) {
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
}
