//! A Lambda Runtime API on loopback: runs a real function binary (release or debug) the way
//! Lambda does, one invocation at a time, so benches and the local stack can drive it.
//!
//! `GET /2018-06-01/runtime/invocation/next` hands out queued events; the function's
//! `…/{id}/response` or `…/{id}/error` completes the matching [`RuntimeApi::invoke`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Notify, oneshot};

type Reply = oneshot::Sender<Result<Value, Value>>;

#[derive(Default)]
struct Inner {
    queue: Mutex<VecDeque<(Value, Reply)>>,
    in_flight: Mutex<HashMap<String, Reply>>,
    ready: Notify,
}

#[derive(Clone)]
pub struct RuntimeApi {
    inner: Arc<Inner>,
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
}

impl RuntimeApi {
    /// Serves on 127.0.0.1 (a free port) until the process ends.
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(RuntimeApi { inner, address })
    }

    /// Fails every invocation the function took and has not answered (it was killed): each
    /// [`RuntimeApi::invoke`] waiting on one returns `Err`, as Lambda reports a crashed runtime.
    pub fn abandon_in_flight(&self) -> usize {
        let mut in_flight = self.inner.in_flight.lock().unwrap();
        let n = in_flight.len();
        in_flight.clear();
        n
    }

    /// Invocations handed to the function and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.lock().unwrap().len()
    }

    /// Invokes the function with `event`; `Ok` with its response, `Err` with its error body.
    pub async fn invoke(&self, event: Value) -> Result<Value, Value> {
        let (tx, rx) = oneshot::channel();
        self.inner.queue.lock().unwrap().push_back((event, tx));
        self.inner.ready.notify_one();
        rx.await
            .unwrap_or_else(|_| Err(Value::from("the function went away")))
    }
}

async fn next(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    loop {
        let ready = inner.ready.notified();
        let item = inner.queue.lock().unwrap().pop_front();
        if let Some((event, reply)) = item {
            let id = uuid::Uuid::new_v4().to_string();
            inner.in_flight.lock().unwrap().insert(id.clone(), reply);
            let deadline = relay_shared::now_ms() + 60_000;
            let mut headers = HeaderMap::new();
            headers.insert(
                "lambda-runtime-aws-request-id",
                HeaderValue::from_str(&id).unwrap(),
            );
            headers.insert("lambda-runtime-deadline-ms", HeaderValue::from(deadline));
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:local"),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                HeaderValue::from_static("Root=1-00000000-000000000000000000000000"),
            );
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            return (headers, event.to_string());
        }
        ready.await;
    }
}

fn complete(inner: &Inner, id: &str, result: Result<Value, Value>) -> StatusCode {
    match inner.in_flight.lock().unwrap().remove(id) {
        Some(reply) => {
            let _ = reply.send(result);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

fn json_or_text(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| Value::from(body))
}

async fn response(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    complete(&inner, &id, Ok(json_or_text(&body)))
}

async fn error(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    complete(&inner, &id, Err(json_or_text(&body)))
}

async fn init_error(body: String) -> StatusCode {
    eprintln!("function init error: {body}");
    StatusCode::ACCEPTED
}

/// The environment Lambda gives a function (plus the local AWS endpoint and test credentials),
/// for a binary served by the Runtime API at `runtime_api`.
pub fn lambda_env(
    function: &str,
    runtime_api: &str,
    aws_endpoint: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_string()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_string()),
        ("AWS_ENDPOINT_URL", aws_endpoint.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
    ]
}

/// Starts a function's binary under `api` as Lambda would: the template's environment `env`
/// plus Lambda's own variables, AWS at `aws_endpoint`; its stdout (log and metric lines) is
/// discarded, its stderr shown.
pub fn spawn_function(
    binary: &str,
    function: &str,
    env: &std::collections::BTreeMap<String, String>,
    api: &RuntimeApi,
    aws_endpoint: &str,
) -> std::process::Child {
    std::process::Command::new(binary)
        .envs(env)
        .envs(lambda_env(function, &api.address, aws_endpoint))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{binary}: {e} (build it: cargo build --release -p {function})"))
}

/// A function binary started under its own Runtime API, for the measuring tools: invoke it
/// through `api`, read what it uses through `pid` ([`crate::procstat`]), then
/// [`FunctionProcess::stop`] it.
pub struct FunctionProcess {
    pub api: RuntimeApi,
    pub pid: u32,
    child: std::process::Child,
}

impl FunctionProcess {
    /// [`spawn_function`] under a fresh [`RuntimeApi`].
    pub async fn start(
        binary: &str,
        function: &str,
        env: &std::collections::BTreeMap<String, String>,
        aws_endpoint: &str,
    ) -> FunctionProcess {
        let api = RuntimeApi::start().await.expect("runtime api");
        let child = spawn_function(binary, function, env, &api, aws_endpoint);
        FunctionProcess {
            api,
            pid: child.id(),
            child,
        }
    }

    /// Kills the process; its peak resident memory (`VmHWM`, kB) read just before.
    pub fn stop(mut self) -> u64 {
        let hwm = crate::procstat::status_kb(self.pid, "VmHWM:");
        let _ = self.child.kill();
        let _ = self.child.wait();
        hwm
    }
}

/// A measuring tool's command line: which release binary of a function to run, and how many
/// events to send it.
#[derive(Debug, clap::Parser)]
pub struct ToolArgs {
    /// The function's binary [default: target/release/<function>]
    pub binary: Option<String>,
    /// How many events to send [default: the tool's own]
    pub count: Option<u64>,
}

/// The binary (by default `target/release/<function>`) and the count (by default
/// `default_count`) from the command line; `--help` says so.
pub fn tool_args(function: &str, default_count: u64) -> (String, u64) {
    let args = <ToolArgs as clap::Parser>::parse();
    let binary = args.binary.unwrap_or_else(|| {
        crate::repo_root()
            .join("target/release")
            .join(function)
            .display()
            .to_string()
    });
    (binary, args.count.unwrap_or(default_count))
}
