//! Completion callbacks: when a job ends, the relay POSTs a `job.completed` event to the job's
//! `callback_url`, signed the Standard Webhooks way (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under `CALLBACK_SECRET`),
//! with the `standardwebhooks` crate (the specification's own Rust library).
//!
//! Delivery runs from the webhook queue, never inside the request that ended the job: the end of
//! a job makes its callback due (one write, [`crate::store::Results::settle_job`]); a message
//! (from the settler, else the sweeper) takes it for one attempt ([`CallbackStore`]); a failed
//! attempt makes it due again after an exponential backoff, until a 2xx or [`RETRY_WINDOW`]
//! after the job ended. Every attempt is recorded on the job. A receiver may get an event again
//! only if an attempt's answer is lost (e.g. the relay died after a 2xx): `webhook-id` is the
//! same in every attempt, for its dedupe.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::ConfigError;
use crate::ids::JobId;
use crate::jobs::{CallbackStatus, JobMeta, JobStatus};
use crate::queue::Queue;
use crate::store::{CallbackAttempt, CallbackStore, Jobs, Results, StoreError, Waterfalls};

/// Retries stop this long after the job ended.
pub const RETRY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The first wait before a failed callback attempt is retried (it doubles each time).
pub use crate::config::DEFAULT_CALLBACK_RETRY_BASE as DEFAULT_RETRY_BASE;
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(2 * 3600);
/// How long one attempt waits for the receiver's answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an attempt holds the callback: past it, a sweep takes it again.
pub const ATTEMPT_LEASE: Duration = Duration::from_secs(60);

/// Settles the job when every contact is accounted for, then, if that ended it and it has a
/// callback URL, asks the webhook queue for its callback at once (a message not queued is only
/// logged: the sweeper finds the callback due within its interval). `meta`: the job's head as
/// the caller read it, whose `callback_url` decides; `None`: the head is read after the settle.
/// Returns the status the settle set, if it ended the job.
///
/// A waterfall step's job moves its waterfall on instead ([`crate::waterfall::advance`]): its
/// final chunks pass their contacts on (their starts asked of `submit`), and its end closes
/// the next step or ends the waterfall.
pub async fn settle_then_ask<J: Jobs + Results + Waterfalls, Q: Queue>(
    jobs: &J,
    queue: &Q,
    submit: &Q,
    job_id: &JobId,
    meta: Option<&JobMeta>,
) -> Result<Option<JobStatus>, StoreError> {
    let step = match meta {
        Some(m) => m.step_of.is_some().then(|| m.clone()),
        None => jobs.get_job(job_id).await?.filter(|m| m.step_of.is_some()),
    };
    if let Some(step) = step {
        return crate::waterfall::advance(jobs, submit, queue, &step).await;
    }
    let settled = jobs.settle_job(job_id).await?;
    if settled.is_none() {
        return Ok(None);
    }
    let has_callback = match meta {
        Some(m) => m.callback_url.is_some(),
        None => jobs
            .get_job(job_id)
            .await?
            .is_some_and(|m| m.callback_url.is_some()),
    };
    if has_callback {
        let ask = CallbackRequest::new(job_id, None).to_json();
        if let Err(e) = queue.send(ask).await {
            tracing::warn!(job_id = %job_id, error = %e, "callback not queued: the sweeper will");
        }
    }
    Ok(settled)
}

/// The webhook queue's message that asks for one callback attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackRequest {
    pub callback: CallbackTarget,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackTarget {
    pub job_id: JobId,
    /// The due date this message is for; absent: whenever it is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<u64>,
}

impl CallbackRequest {
    pub fn new(job_id: &JobId, due_at: Option<u64>) -> CallbackRequest {
        CallbackRequest {
            callback: CallbackTarget {
                job_id: job_id.clone(),
                due_at,
            },
        }
    }
}

/// The `job.completed` event's body: the job's fields and figures, no contact data.
pub fn event_body(meta: &JobMeta, now_ms: u64) -> String {
    json!({
        "type": "job.completed",
        "timestamp": rfc3339(now_ms),
        "data": meta.summary_json(),
    })
    .to_string()
}

/// The event's id: the same in every attempt for one job (receivers dedupe on it).
pub fn event_id(job_id: &JobId) -> String {
    format!("evt_{job_id}_completed")
}

fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The wait before attempt `attempts + 1`, after `attempts` failed ones (1-based).
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    let doubled = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    doubled.min(MAX_RETRY_WAIT)
}

/// Signs and sends callbacks, and records each attempt.
#[derive(Clone)]
pub struct CallbackSender {
    http: reqwest::Client,
    signer: std::sync::Arc<standardwebhooks::Webhook>,
    pub retry_base: Duration,
}

/// What one callback message did.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempted {
    /// Nothing: the callback was not pending or not due, or another message took it.
    Skipped,
    Delivered {
        status_code: u16,
    },
    /// Failed; due again at `next_at` (ms).
    Failed {
        next_at: u64,
        why: String,
    },
    /// Failed, and the retry window is over: given up.
    GaveUp {
        why: String,
    },
    /// The attempt was made but its lease ran out before it was recorded: another attempt was
    /// taken meanwhile and records its own.
    LeaseLost,
}

/// The callback client's DNS resolver: it resolves a host name with the system's resolver and
/// keeps only the addresses the relay may call ([`crate::validate::is_public_address`]; loopback
/// too where `allow_loopback`, the local stack). reqwest connects only to what it returns, so a
/// name that resolves (or is rebound, between submit and the attempt) to a private, loopback or
/// link-local address is never called. Literal addresses are not resolved: they were checked
/// when the URL was submitted.
#[derive(Debug, Clone, Copy)]
pub struct PublicAddresses {
    pub allow_loopback: bool,
}

impl PublicAddresses {
    /// Whether an address a callback host resolved to may be called.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        crate::validate::is_public_address(ip) || (self.allow_loopback && ip.is_loopback())
    }
}

impl reqwest::dns::Resolve for PublicAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let filter = *self;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| filter.allows(a.ip()))
                .collect();
            if found.is_empty() {
                // The error names no host: a callback URL is the caller's data.
                return Err("the callback host resolves to no public address".into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl CallbackSender {
    /// `CALLBACK_SECRET` is a Standard Webhooks secret: `whsec_` and base64 of 24 to 64 bytes.
    /// Host names are called only at public addresses ([`PublicAddresses`]).
    pub fn new(secret: &str, retry_base: Duration) -> Result<CallbackSender, ConfigError> {
        Self::with_policy(secret, retry_base, false)
    }

    /// [`Self::new`]; `allow_loopback` (`CALLBACK_ALLOW_LOOPBACK`, the local stack): host names
    /// may resolve to loopback addresses too.
    pub fn with_policy(
        secret: &str,
        retry_base: Duration,
        allow_loopback: bool,
    ) -> Result<CallbackSender, ConfigError> {
        let problem = |p: &str| ConfigError {
            var: "CALLBACK_SECRET",
            problem: p.into(),
        };
        let raw = secret;
        let Some(b64) = raw.strip_prefix("whsec_") else {
            return Err(problem(
                "must be a Standard Webhooks secret: whsec_ followed by base64",
            ));
        };
        let len = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
            .map_err(|_| problem("is not valid base64 after whsec_"))?
            .len();
        if !(24..=64).contains(&len) {
            return Err(problem("must decode to 24 to 64 bytes"));
        }
        let signer = standardwebhooks::Webhook::new(raw)
            .map_err(|_| problem("is not valid base64 after whsec_"))?;
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            // A redirect could lead the relay anywhere, e.g. into its own network.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("enrich-relay-callbacks/1")
            // Every address a host name resolves to is checked when the attempt connects.
            .dns_resolver(PublicAddresses { allow_loopback })
            .build()
            .map_err(|e| problem(&format!("HTTP client: {e}")))?;
        Ok(CallbackSender {
            http,
            signer: std::sync::Arc::new(signer),
            retry_base,
        })
    }

    /// The Standard Webhooks headers for `body` sent now as event `id`.
    pub fn sign(&self, id: &str, timestamp_s: i64, body: &str) -> [(&'static str, String); 3] {
        let signature = self
            .signer
            .sign(id, timestamp_s, body.as_bytes())
            .expect("a JSON body is UTF-8");
        [
            (standardwebhooks::HEADER_WEBHOOK_ID, id.to_string()),
            (
                standardwebhooks::HEADER_WEBHOOK_TIMESTAMP,
                timestamp_s.to_string(),
            ),
            (standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature),
        ]
    }

    /// One signed POST of the job's `job.completed` event: the receiver's status code, or what
    /// kept the request from getting one (no URL or address in the text: they may be the
    /// caller's).
    async fn post(&self, url: &str, meta: &JobMeta) -> (Option<u16>, Option<String>) {
        let now = crate::now_ms();
        let body = event_body(meta, now);
        let headers = self.sign(&event_id(&meta.job_id), (now / 1000) as i64, &body);
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        match req.send().await {
            Ok(resp) => (Some(resp.status().as_u16()), None),
            Err(e) if e.is_timeout() => (None, Some("timed out".to_string())),
            Err(e) if e.is_connect() => (None, Some("could not connect".to_string())),
            Err(_) => (None, Some("request failed".to_string())),
        }
    }

    /// One attempt for the job's callback, if this message may make it: take it, POST the
    /// signed event, record the outcome. `Err`: the store failed (the message is retried).
    pub async fn attempt<S: CallbackStore>(
        &self,
        store: &S,
        target: &CallbackTarget,
    ) -> Result<Attempted, StoreError> {
        let Some(take) = store
            .take_callback(
                &target.job_id,
                target.due_at,
                ATTEMPT_LEASE.as_millis() as u64,
            )
            .await?
        else {
            return Ok(Attempted::Skipped);
        };
        let meta = &take.meta;
        // A deleted job calls back no one (its head lost its callback with the DELETE).
        let Some(url) = meta.callback_url.as_deref().filter(|_| !meta.deleted) else {
            return Ok(Attempted::Skipped);
        };
        let state = meta
            .callback
            .clone()
            .unwrap_or_else(|| crate::jobs::CallbackState {
                status: CallbackStatus::Pending,
                attempts: 1,
                last_status_code: None,
                last_error: None,
                next_attempt_at: None,
                since_ms: crate::now_ms(),
            });
        let (status_code, error) = self.post(url, meta).await;
        let delivered = status_code.is_some_and(|c| (200..300).contains(&c));
        let why = match (status_code, &error) {
            (Some(c), _) => format!("answered {c}"),
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        };
        let next_at = crate::now_ms() + backoff(self.retry_base, state.attempts).as_millis() as u64;
        let window_end = state.since_ms + RETRY_WINDOW.as_millis() as u64;
        let (status, next_at) = if delivered {
            (CallbackStatus::Delivered, None)
        } else if next_at <= window_end {
            (CallbackStatus::Pending, Some(next_at))
        } else {
            (CallbackStatus::Failed, None)
        };
        let recorded = store
            .record_callback(
                &meta.job_id,
                take.lease,
                &CallbackAttempt {
                    status_code,
                    error,
                    status,
                    next_at,
                },
            )
            .await?;
        Ok(match (recorded, status, next_at) {
            (false, _, _) => Attempted::LeaseLost,
            (true, CallbackStatus::Delivered, _) => Attempted::Delivered {
                status_code: status_code.unwrap_or(200),
            },
            (true, CallbackStatus::Pending, Some(next_at)) => Attempted::Failed { next_at, why },
            (true, _, _) => Attempted::GaveUp { why },
        })
    }
}

/// `GET /jobs/{id}`'s `callback` field: where the callback stands (`waiting` until the job ends).
pub fn callback_json(meta: &JobMeta) -> Value {
    match (&meta.callback_url, &meta.callback) {
        (None, _) => Value::Null,
        (Some(url), Some(state)) => {
            let mut v = serde_json::to_value(state).unwrap_or(Value::Null);
            v["url"] = json!(url);
            v
        }
        (Some(url), None) => json!({
            "url": url,
            "status": "waiting",
            "attempts": 0,
            "last_status_code": null,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        // The specification's vector (standard-webhooks, libraries' shared tests).
        let cb = CallbackSender::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", DEFAULT_RETRY_BASE)
            .unwrap();
        let [(_, id), (_, ts), (_, sig)] = cb.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert_eq!(ts, "1614265330");
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_must_be_standard_webhooks_secrets() {
        for bad in ["not-a-whsec-secret-at-all", "whsec_!!!!", "whsec_c2hvcnQ="] {
            let e = CallbackSender::new(bad, DEFAULT_RETRY_BASE)
                .err()
                .expect(bad);
            assert_eq!(e.var, "CALLBACK_SECRET");
            assert!(!e.to_string().contains(bad), "never echoes the secret");
        }
    }

    #[test]
    fn the_backoff_doubles_from_its_base_to_its_cap() {
        let b = Duration::from_secs(30);
        assert_eq!(backoff(b, 1), Duration::from_secs(30));
        assert_eq!(backoff(b, 2), Duration::from_secs(60));
        assert_eq!(backoff(b, 4), Duration::from_secs(240));
        assert_eq!(backoff(b, 12), MAX_RETRY_WAIT);
        assert_eq!(backoff(b, 400), MAX_RETRY_WAIT);
        // From a 30 s base, the attempts within a day: about 20.
        let mut t = Duration::ZERO;
        let mut attempts = 1;
        while t + backoff(b, attempts) <= RETRY_WINDOW {
            t += backoff(b, attempts);
            attempts += 1;
        }
        assert!((15..=25).contains(&attempts), "{attempts}");
    }

    #[test]
    fn a_callback_message_round_trips_and_is_told_from_other_messages() {
        let m = CallbackRequest::new(&JobId::new("job_1"), Some(5));
        assert_eq!(CallbackRequest::from_json(&m.to_json()), Some(m));
        assert_eq!(
            CallbackRequest::from_json(r#"{"callback":{"job_id":"j"}}"#),
            Some(CallbackRequest::new(&JobId::new("j"), None))
        );
        assert_eq!(
            CallbackRequest::from_json(r#"{"poll":{"job_id":"j"}}"#),
            None
        );
    }

    #[test]
    fn resolved_addresses_are_called_only_when_public() {
        let strict = PublicAddresses {
            allow_loopback: false,
        };
        let local = PublicAddresses {
            allow_loopback: true,
        };
        for bad in [
            "127.0.0.1",
            "10.0.0.7",
            "172.16.3.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: std::net::IpAddr = bad.parse().unwrap();
            assert!(!strict.allows(ip), "{bad}");
        }
        for good in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            assert!(strict.allows(good.parse().unwrap()), "{good}");
        }
        assert!(local.allows("127.0.0.1".parse().unwrap()));
        assert!(local.allows("::1".parse().unwrap()));
        assert!(!local.allows("10.0.0.7".parse().unwrap()), "loopback only");
    }

    /// Issue 24 item 15: a callback host name that resolves to a loopback (or any non-public)
    /// address is not called, whatever the URL looked like when it was submitted; the local
    /// stack's policy (`CALLBACK_ALLOW_LOOPBACK`) still reaches loopback receivers by name.
    #[tokio::test]
    async fn a_host_name_resolving_to_loopback_is_not_called() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let target = CallbackTarget {
            job_id: "job_1".into(),
            due_at: None,
        };
        let url = format!("http://localhost:{port}/hook");
        let strict = CallbackSender::new(secret, DEFAULT_RETRY_BASE).unwrap();
        let head = ended_job(&url, crate::now_ms());
        let attempted = strict.attempt(&head, &target).await.unwrap();
        assert!(
            matches!(attempted, Attempted::Failed { .. }),
            "{attempted:?}"
        );
        assert_eq!(
            connections.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "no connection to a loopback address"
        );
        let local = CallbackSender::with_policy(secret, DEFAULT_RETRY_BASE, true).unwrap();
        let head = ended_job(&url, crate::now_ms());
        let attempted = local.attempt(&head, &target).await.unwrap();
        assert_eq!(attempted, Attempted::Delivered { status_code: 204 });
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// One job head's callback state in memory, with the conditions of the DynamoDB store.
    struct OneHead(std::sync::Mutex<(JobMeta, u64)>);

    impl CallbackStore for OneHead {
        async fn take_callback(
            &self,
            _: &JobId,
            due_at: Option<u64>,
            lease_ms: u64,
        ) -> Result<Option<crate::store::CallbackTake>, StoreError> {
            let mut g = self.0.lock().unwrap();
            let (meta, poll_at) = &mut *g;
            let cb = meta.callback.as_mut().unwrap();
            let due = match due_at {
                None => *poll_at <= crate::now_ms(),
                Some(t) => *poll_at == t,
            };
            if cb.status != CallbackStatus::Pending || !due {
                return Ok(None);
            }
            cb.attempts += 1;
            *poll_at = crate::now_ms() + lease_ms;
            Ok(Some(crate::store::CallbackTake {
                meta: meta.clone(),
                lease: *poll_at,
            }))
        }

        async fn record_callback(
            &self,
            _: &JobId,
            lease: u64,
            a: &CallbackAttempt,
        ) -> Result<bool, StoreError> {
            let mut g = self.0.lock().unwrap();
            let (meta, poll_at) = &mut *g;
            let cb = meta.callback.as_mut().unwrap();
            if cb.status != CallbackStatus::Pending || *poll_at != lease {
                return Ok(false);
            }
            cb.status = a.status;
            cb.last_status_code = a.status_code;
            cb.last_error = a.error.clone();
            *poll_at = a.next_at.unwrap_or(0);
            Ok(true)
        }
    }

    fn ended_job(url: &str, since_ms: u64) -> OneHead {
        let mut meta = JobMeta::new(
            "job_1".into(),
            crate::jobs::Operation::EmailVerify,
            None,
            crate::jobs::JobStatus::Completed,
            1,
            1,
            Value::Null,
        );
        meta.callback_url = Some(url.into());
        meta.callback = Some(crate::jobs::CallbackState {
            status: CallbackStatus::Pending,
            attempts: 0,
            last_status_code: None,
            last_error: None,
            next_attempt_at: None,
            since_ms,
        });
        OneHead(std::sync::Mutex::new((meta, since_ms)))
    }

    /// A loopback port nobody listens on: every attempt fails to connect.
    fn closed_port_url() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}/hook")
    }

    #[tokio::test]
    async fn a_failed_attempt_is_due_again_after_its_backoff_until_the_window_ends() {
        let cb = CallbackSender::new(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            Duration::from_secs(30),
        )
        .unwrap();
        let now = crate::now_ms();
        let target = CallbackTarget {
            job_id: "job_1".into(),
            due_at: None,
        };

        // Just ended: due again 30 s on, still pending, the failure recorded.
        let head = ended_job(&closed_port_url(), now);
        let Attempted::Failed { next_at, why } = cb.attempt(&head, &target).await.unwrap() else {
            panic!("a refused connection is a failed attempt");
        };
        assert_eq!(why, "could not connect");
        assert!((now + 29_000..=crate::now_ms() + 31_000).contains(&next_at));
        let state = head.0.lock().unwrap().0.callback.clone().unwrap();
        assert_eq!(state.status, CallbackStatus::Pending);
        assert_eq!(state.attempts, 1);
        assert_eq!(state.last_error.as_deref(), Some("could not connect"));
        // Not due yet: a request without a due date makes no attempt.
        assert_eq!(
            cb.attempt(&head, &target).await.unwrap(),
            Attempted::Skipped
        );
        // The request for that due date does.
        let again = CallbackTarget {
            job_id: "job_1".into(),
            due_at: Some(next_at),
        };
        assert!(matches!(
            cb.attempt(&head, &again).await.unwrap(),
            Attempted::Failed { .. }
        ));
        assert_eq!(
            head.0.lock().unwrap().0.callback.as_ref().unwrap().attempts,
            2
        );

        // Ended a day ago less 10 s: the next wait would pass the window, so it gives up.
        let day = RETRY_WINDOW.as_millis() as u64;
        let head = ended_job(&closed_port_url(), now - day + 10_000);
        assert!(matches!(
            cb.attempt(&head, &target).await.unwrap(),
            Attempted::GaveUp { .. }
        ));
        let state = head.0.lock().unwrap().0.callback.clone().unwrap();
        assert_eq!(state.status, CallbackStatus::Failed);
        assert_eq!(
            cb.attempt(&head, &target).await.unwrap(),
            Attempted::Skipped
        );
    }
}
