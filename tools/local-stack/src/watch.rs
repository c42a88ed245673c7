//! `cargo lambda watch` (cargo-lambda 1.9.2, from `.venv/bin`): the Lambda Runtime API emulator
//! the local stack runs the functions under, its invoke endpoint
//! (`POST /2015-03-31/functions/<name>/invocations`) and its function URLs
//! (`/lambda-url/<name>/…`, an API Gateway v2 event for the function).
//!
//! Two ways to run the functions under it:
//! - [`Watch::start`] without `only_lambda_apis`: watch starts each function itself with
//!   `cargo run --bin <name>` on its first invocation and restarts it when a source file changes
//!   (hot reload). Every function gets the variables of the one `--env-file`.
//! - with `only_lambda_apis`: watch serves the APIs only, and the caller starts the built
//!   binaries against [`Watch::runtime_api`] (each with its own environment; one can be killed
//!   mid-invocation, as the soak does).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::repo_root;

pub struct WatchConfig<'a> {
    /// The invoke port on [`loopback`] (0: a free one).
    pub port: u16,
    /// `--env-file`: the variables every function started by watch gets.
    pub env_file: Option<&'a Path>,
    /// `--only-lambda-apis`: the caller starts the functions.
    pub only_lambda_apis: bool,
    /// `--ignore-changes`: no reload on a source change (tests, so an edit does not restart a
    /// function under a running test).
    pub ignore_changes: bool,
    /// `--timeout`: how long an invoke request waits for the function's answer. A function that
    /// dies in its cold start leaves the request waiting until then; the first invocation of a
    /// function watch starts includes its `cargo run` (a compile if the sources changed).
    pub timeout_seconds: u32,
    /// Where watch's output goes (the functions it starts write their logs there too).
    pub log: &'a Path,
}

/// A running `cargo lambda watch`; stopped (SIGTERM, which stops the functions it started, then
/// SIGKILL) when dropped, and when the process that started it dies.
pub struct Watch {
    child: Child,
    pub port: u16,
    /// `http://[::1]:<port>` ([`base_url`])
    pub url: String,
}

/// The `.venv/bin` that holds cargo-lambda and zig, first on PATH.
pub fn venv_path() -> String {
    let bin = repo_root().join(".venv/bin");
    match std::env::var("PATH") {
        Ok(p) if !p.is_empty() => format!("{}:{p}", bin.display()),
        _ => bin.display().to_string(),
    }
}

/// The loopback address watch listens on: `::1`, where `cargo lambda invoke` sends by default
/// (`--invoke-address ::1`), or 127.0.0.1 on a machine without IPv6.
pub fn loopback() -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    static HOST: std::sync::OnceLock<IpAddr> = std::sync::OnceLock::new();
    *HOST.get_or_init(
        || match std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
            Ok(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        },
    )
}

/// A free port on [`loopback`] (bound, then released for the child to take).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((loopback(), 0))?
        .local_addr()?
        .port())
}

/// `http://[::1]:<port>` (or `http://127.0.0.1:<port>`).
pub fn base_url(port: u16) -> String {
    format!("http://{}", std::net::SocketAddr::new(loopback(), port))
}

impl Watch {
    pub async fn start(cfg: WatchConfig<'_>) -> Result<Watch, String> {
        let port = match cfg.port {
            0 => free_port().map_err(|e| e.to_string())?,
            p => p,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cfg.log)
            .map_err(|e| format!("{}: {e}", cfg.log.display()))?;
        let mut cmd = Command::new("cargo");
        cmd.args([
            "lambda",
            "watch",
            "--invoke-address",
            &loopback().to_string(),
        ])
        .args(["--invoke-port", &port.to_string()])
        .args(["--timeout", &cfg.timeout_seconds.to_string()])
        .arg("--disable-cors");
        if cfg.only_lambda_apis {
            cmd.arg("--only-lambda-apis");
        }
        if cfg.ignore_changes {
            cmd.arg("--ignore-changes");
        }
        if let Some(f) = cfg.env_file {
            cmd.arg("--env-file").arg(f);
        }
        cmd.current_dir(repo_root())
            .env("PATH", venv_path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log));
        // Stop with the process that started it, even when that one is killed.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cargo lambda watch: {e} (run scripts/bootstrap.sh first)"))?;
        let mut watch = Watch {
            child,
            port,
            url: base_url(port),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect((loopback(), port))
                .await
                .is_ok()
            {
                return Ok(watch);
            }
            if let Ok(Some(status)) = watch.child.try_wait() {
                return Err(format!(
                    "cargo lambda watch exited ({status}); see {}",
                    cfg.log.display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "cargo lambda watch did not listen on {port} in 60 s; see {}",
                    cfg.log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `AWS_LAMBDA_RUNTIME_API` for a function started by hand under `--only-lambda-apis`.
    pub fn runtime_api(&self, function: &str) -> String {
        format!("{}/.rt/{function}", self.url)
    }

    pub fn invoker(&self) -> Invoker {
        Invoker {
            http: reqwest::Client::new(),
            url: self.url.clone(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls into a watch: Lambda's Invoke API, and its function URLs.
#[derive(Clone)]
pub struct Invoker {
    http: reqwest::Client,
    pub url: String,
}

impl Invoker {
    /// `POST /2015-03-31/functions/<function>/invocations`: `Ok` with the function's answer,
    /// `Err` when it failed (or watch did: a timeout, a function that is not there).
    pub async fn invoke(&self, function: &str, event: &Value) -> Result<Value, String> {
        let resp = self
            .http
            .post(format!(
                "{}/2015-03-31/functions/{function}/invocations",
                self.url
            ))
            .json(event)
            .send()
            .await
            .map_err(|e| format!("invoke {function}: {e}"))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("invoke {function}: {e}"))?;
        if !status.is_success() {
            return Err(format!("invoke {function}: {status}: {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// An HTTP request to a function's URL (`/lambda-url/<function><path_and_query>`).
    pub fn function_url(&self, function: &str, path_and_query: &str) -> String {
        format!("{}/lambda-url/{function}{path_and_query}", self.url)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// The env file watch reads (`KEY=VALUE` a line, sorted), mode 0600. Values with a newline are
/// refused.
pub fn write_env_file<'a>(
    path: &PathBuf,
    vars: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), String> {
    let mut text = String::from(
        "# Written by the dev stack (tools/local-stack/src/dev.rs) for `cargo lambda watch --env-file`.\n\
         # Local values only: dev secrets, moto's endpoint, the sandbox's URLs. Rewritten at each start.\n",
    );
    for (k, v) in vars {
        if v.contains('\n') {
            return Err(format!(
                "{k}: a value with a newline cannot go in an env file"
            ));
        }
        text.push_str(&format!("{k}={v}\n"));
    }
    // It holds the secrets (a real provider key when one is set): readable by its owner only.
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_env_file_is_key_value_lines_readable_by_its_owner_only() {
        let dir = std::env::temp_dir().join(format!("watch-env-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("watch.env");
        let vars: std::collections::BTreeMap<String, String> = [("B", "2"), ("A", "x=y")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        write_env_file(&path, &vars).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["A=x=y", "B=2"]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Written again (a second start): replaced, still 0600.
        write_env_file(&path, &vars).unwrap();
        let bad: std::collections::BTreeMap<String, String> =
            [("K".to_string(), "a\nb".to_string())].into();
        assert!(write_env_file(&path, &bad).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
