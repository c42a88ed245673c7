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
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_config::SdkConfig;
use serde_json::Value;

use crate::sandbox::Sandbox;
use crate::watch::{Invoker, Watch};
use crate::{LocalAws, Moto, Resources};

mod functions;
mod options;
mod serve;

pub use functions::Switch;
use functions::{AwsEnv, Function, function_envs, spawn_functions, start_watch};
pub use options::{
    DEV_API_TOKEN, DEV_CALLBACK_SECRET, DEV_WEBHOOK_SECRET, DevOptions, Host, shown_secret,
};
use serve::{Calls, bind_router, serve, warm_up};
pub use serve::{LAMBDA_REQUEST_BYTES, schedule_event};

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

impl DevStack {
    pub async fn start(opts: DevOptions) -> Result<DevStack, String> {
        if opts.host == Host::Watch && opts.ingest_aws_switch {
            return Err("ingest_aws_switch needs Host::Binaries: watch gives every function one environment".into());
        }
        let LocalAws {
            sdk,
            template,
            res,
            moto,
        } = LocalAws::start("dev").await.map_err(|e| e.to_string())?;
        let (listener, api_url) = bind_api(&opts).await?;
        let (sandbox, enrow_url, fullenrich_url) = start_sandbox(&opts).await?;

        std::fs::create_dir_all(&opts.log_dir).map_err(|e| e.to_string())?;
        let ingest_aws = ingest_switch(&opts, &moto).await?;
        let watch_port = match opts.watch_port {
            0 => crate::watch::free_port().map_err(|e| e.to_string())?,
            p => p,
        };
        let (public_url, global_webhook_url) = webhook_urls(&opts, &api_url, watch_port);
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
        let aws = AwsEnv {
            moto: moto.endpoint.clone(),
            ingest: ingest_aws.as_ref().map(|s| s.endpoint.clone()),
        };
        let hosted = host_functions(&opts, &envs, &aws, watch_port).await?;
        let tasks = match listener {
            Some(listener) => serve(listener, &hosted.invoker, &res, &sdk, &opts, &hosted.calls),
            None => Vec::new(),
        };
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
            watch_url: hosted.watch.url.clone(),
            env_file: hosted.env_file,
            host: opts.host,
            invoker: hosted.invoker,
            in_flight: hosted.calls.in_flight.clone(),
            calls: hosted.calls,
            functions: tokio::sync::Mutex::new(hosted.functions),
            tasks,
            _watch: hosted.watch,
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

/// The router's listener and its URL, unless the options ask for none.
async fn bind_api(opts: &DevOptions) -> Result<(Option<tokio::net::TcpListener>, String), String> {
    let listener = bind_router(opts).await?;
    let api_url = match &listener {
        Some(l) => format!("http://{}", l.local_addr().map_err(|e| e.to_string())?),
        None => String::new(),
    };
    Ok((listener, api_url))
}

/// The switch in front of moto for webhook-ingest, when the options ask for one.
async fn ingest_switch(opts: &DevOptions, moto: &Moto) -> Result<Option<Switch>, String> {
    if !opts.ingest_aws_switch {
        return Ok(None);
    }
    let target = ([127, 0, 0, 1], moto.port).into();
    Ok(Some(
        Switch::start(target).await.map_err(|e| e.to_string())?,
    ))
}

/// The functions running and answering: watch, the processes the stack started beside it
/// ([`Host::Binaries`]), and the invoker and call counts of the router and the pollers.
struct Hosted {
    watch: Watch,
    env_file: Option<PathBuf>,
    functions: BTreeMap<&'static str, Function>,
    invoker: Invoker,
    calls: Calls,
}

/// Starts watch (and the binaries, [`Host::Binaries`]) with the functions' environments, logging
/// to `watch.log`, and waits until every function answers.
async fn host_functions(
    opts: &DevOptions,
    envs: &[(&'static str, Vec<(String, String)>)],
    aws: &AwsEnv,
    watch_port: u16,
) -> Result<Hosted, String> {
    let watch_log = opts.log_dir.join("watch.log");
    std::fs::File::create(&watch_log).map_err(|e| e.to_string())?;
    let (watch, env_file) = start_watch(opts, envs, aws, watch_port, &watch_log).await?;
    let functions = match opts.host {
        Host::Binaries => spawn_functions(opts, envs, aws, &watch)?,
        Host::Watch => BTreeMap::new(),
    };
    let invoker = watch.invoker();
    let calls = Calls::new(invoker.clone());
    warm_up(&calls, &watch_log).await?;
    Ok(Hosted {
        watch,
        env_file,
        functions,
        invoker,
        calls,
    })
}

/// The provider sandbox, unless both providers' URLs were given; the Enrow and FullEnrich URLs
/// the functions use.
async fn start_sandbox(opts: &DevOptions) -> Result<(Option<Sandbox>, String, String), String> {
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
    let fullenrich_url = opts.fullenrich_url.clone().unwrap_or(sandbox_url);
    Ok((sandbox, enrow_url, fullenrich_url))
}

/// Where the providers send webhooks (`PUBLIC_BASE_URL`: the router, or watch's own front under
/// `make watch`), and Enrow's global webhook URL there.
fn webhook_urls(opts: &DevOptions, api_url: &str, watch_port: u16) -> (String, String) {
    let public_url = if opts.watch_only {
        format!(
            "{}/lambda-url/webhook-ingest",
            crate::watch::base_url(watch_port)
        )
    } else {
        api_url.to_string()
    };
    let global_webhook_url = format!(
        "{public_url}{}",
        relay_shared::auth::global_webhook_path(
            &relay_shared::auth::WebhookSecret::new(opts.webhook_secret.as_bytes()),
            relay_shared::Provider::Enrow,
        )
    );
    (public_url, global_webhook_url)
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
