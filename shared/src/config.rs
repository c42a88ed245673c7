//! Configuration, read and validated once at cold start. A missing or malformed value stops the
//! function with a message that names the variable (and never prints a secret's value).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::auth::WebhookSecret;

/// The wait after the first failed attempt (`CALLBACK_RETRY_BASE_SECONDS`); it doubles after each
/// failure, up to the callback's `MAX_RETRY_WAIT`.
pub const DEFAULT_CALLBACK_RETRY_BASE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("configuration error: {var} {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

/// Reads variables through a lookup function, so tests need not touch the process environment.
pub struct Env<F: Fn(&str) -> Option<String>>(pub F);

/// The process environment.
pub fn process_env() -> Env<impl Fn(&str) -> Option<String>> {
    Env(|k: &str| std::env::var(k).ok())
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn optional(&self, var: &'static str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.optional(var).ok_or_else(|| ConfigError {
            var,
            problem: "is not set".into(),
        })
    }

    pub fn flag(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(var).as_deref().map(str::to_ascii_lowercase) {
            None => Ok(default),
            Some(v) if ["true", "1", "yes"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["false", "0", "no"].contains(&v.as_str()) => Ok(false),
            Some(_) => Err(ConfigError {
                var,
                problem: "must be true or false".into(),
            }),
        }
    }

    pub fn url(&self, var: &'static str, default: Option<&str>) -> Result<String, ConfigError> {
        let value = match (self.optional(var), default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_string(),
            (None, None) => return self.required(var),
        };
        if value.starts_with("http://") || value.starts_with("https://") {
            Ok(value.trim_end_matches('/').to_string())
        } else {
            Err(ConfigError {
                var,
                problem: "must be an http(s) URL".into(),
            })
        }
    }

    /// A positive whole number, `default` when unset.
    pub fn number(&self, var: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.optional(var) {
            None => Ok(default),
            Some(v) => v.trim().parse().ok().filter(|n| *n > 0).ok_or(ConfigError {
                var,
                problem: "must be a positive whole number".into(),
            }),
        }
    }

    /// A secret: required, and at least 16 bytes so a placeholder like "x" cannot slip through.
    pub fn secret(&self, var: &'static str) -> Result<SecretString, ConfigError> {
        let v = self.required(var)?;
        if v.len() < 16 {
            return Err(ConfigError {
                var,
                problem: "is shorter than 16 characters".into(),
            });
        }
        Ok(SecretString::from(v))
    }

    /// An optional secret (e.g. the previous key during a rotation), held so it never prints.
    pub fn optional_secret(&self, var: &'static str) -> Option<SecretString> {
        self.optional(var).map(SecretString::from)
    }

    /// The webhook URL key (`WEBHOOK_SECRET`) and, during a rotation, the previous one.
    pub fn webhook_secret(&self) -> Result<WebhookSecret, ConfigError> {
        let current = self.secret("WEBHOOK_SECRET")?;
        let previous = self.optional_secret("WEBHOOK_SECRET_PREVIOUS");
        Ok(WebhookSecret::new(current.expose_secret().as_bytes())
            .with_previous(previous.map(|p| p.expose_secret().as_bytes().to_vec())))
    }

    /// A duration: a whole number of seconds, or with a unit (`90s`, `30m`, `6h`); `default`
    /// when unset.
    pub fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        let Some(v) = self.optional(var) else {
            return Ok(default);
        };
        let v = v.trim();
        let (digits, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((i, _)) => v.split_at(i),
            None => (v, "s"),
        };
        let scale = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => 0,
        };
        match digits.parse::<u64>() {
            Ok(n) if n > 0 && scale > 0 => Ok(Duration::from_secs(n * scale)),
            _ => Err(ConfigError {
                var,
                problem: "must be a positive duration: seconds, or a number with s, m or h".into(),
            }),
        }
    }
}

/// A function's configuration, read at cold start ([`crate::cold_start`]).
pub trait FromEnv: Sized {
    fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError>;
}

macro_rules! from_env {
    ($($t:ty),*) => {$(
        impl FromEnv for $t {
            fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
                <$t>::from_env(env)
            }
        }
    )*};
}

from_env!(
    IngestConfig,
    FetchConfig,
    SweepConfig,
    ApiConfig,
    WorkerConfig
);

/// webhook-ingest's configuration. `Debug` never prints a key.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub queue_url: String,
    pub payload_bucket: String,
    /// `WEBHOOK_SECRET`, and `WEBHOOK_SECRET_PREVIOUS` during a rotation.
    pub webhook_secret: WebhookSecret,
    /// FullEnrich API keys that may sign deliveries: current first, then the previous one during a
    /// rotation. Empty when no key is configured.
    pub fullenrich_keys: Vec<SecretString>,
    /// `FULLENRICH_REQUIRE_SIGNATURE`: refuse FullEnrich deliveries without `X-Signature-SHA1`.
    pub require_signature: bool,
}

impl IngestConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let fullenrich_keys: Vec<SecretString> =
            ["FULLENRICH_API_KEY", "FULLENRICH_API_KEY_PREVIOUS"]
                .into_iter()
                .filter_map(|v| env.optional_secret(v))
                .collect();
        let require_signature = env.flag("FULLENRICH_REQUIRE_SIGNATURE", false)?;
        if require_signature && fullenrich_keys.is_empty() {
            return Err(ConfigError {
                var: "FULLENRICH_API_KEY",
                problem: "is not set, and FULLENRICH_REQUIRE_SIGNATURE=true needs it".into(),
            });
        }
        Ok(IngestConfig {
            queue_url: env.url("WEBHOOK_QUEUE_URL", None)?,
            payload_bucket: env.required("PAYLOAD_BUCKET")?,
            webhook_secret: env.webhook_secret()?,
            fullenrich_keys,
            require_signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env(move |k: &str| map.get(k).cloned())
    }

    const OK: &[(&str, &str)] = &[
        ("WEBHOOK_QUEUE_URL", "http://127.0.0.1:5000/123/q"),
        ("PAYLOAD_BUCKET", "bodies"),
        ("WEBHOOK_SECRET", "0123456789abcdef0123"),
    ];

    #[test]
    fn ingest_config_reads_and_names_the_bad_variable() {
        let c = IngestConfig::from_env(&env(OK)).unwrap();
        assert!(!c.require_signature);
        assert!(c.fullenrich_keys.is_empty());

        let missing = IngestConfig::from_env(&env(&OK[1..])).unwrap_err();
        assert_eq!(missing.var, "WEBHOOK_QUEUE_URL");

        let mut short = OK.to_vec();
        short[2] = ("WEBHOOK_SECRET", "xyzzy");
        let err = IngestConfig::from_env(&env(&short)).unwrap_err();
        assert_eq!(err.var, "WEBHOOK_SECRET");
        assert!(!err.to_string().contains("xyzzy"), "never echoes a secret");

        let mut flag = OK.to_vec();
        flag.push(("FULLENRICH_REQUIRE_SIGNATURE", "maybe"));
        assert_eq!(
            IngestConfig::from_env(&env(&flag)).unwrap_err().var,
            "FULLENRICH_REQUIRE_SIGNATURE"
        );

        let mut need_key = OK.to_vec();
        need_key.push(("FULLENRICH_REQUIRE_SIGNATURE", "true"));
        assert_eq!(
            IngestConfig::from_env(&env(&need_key)).unwrap_err().var,
            "FULLENRICH_API_KEY"
        );
        need_key.push(("FULLENRICH_API_KEY", "fe-key"));
        need_key.push(("FULLENRICH_API_KEY_PREVIOUS", "fe-old"));
        let c = IngestConfig::from_env(&env(&need_key)).unwrap();
        assert!(c.require_signature);
        let keys: Vec<&str> = c
            .fullenrich_keys
            .iter()
            .map(|k| k.expose_secret())
            .collect();
        assert_eq!(keys, vec!["fe-key", "fe-old"]);
    }

    #[test]
    fn no_configuration_prints_a_secret() {
        let mut vars = OK.to_vec();
        vars.extend([
            ("FULLENRICH_API_KEY", "fe-key-never-printed"),
            ("FULLENRICH_API_KEY_PREVIOUS", "fe-old-never-printed"),
            (
                "WEBHOOK_SECRET_PREVIOUS",
                "old-webhook-secret-never-printed",
            ),
            ("ENROW_API_KEY", "enrow-key-never-printed"),
            ("RELAY_API_TOKEN", "api-token-never-printed"),
            (
                "CALLBACK_SECRET",
                "whsec_Y2FsbGJhY2stc2VjcmV0LW5ldmVyLXByaW50ZWQ=never-printed",
            ),
            ("JOBS_TABLE", "jobs"),
            ("DEDUPE_TABLE", "dedupe"),
            ("SUBMIT_QUEUE_URL", "http://127.0.0.1:5000/123/submit"),
            ("WEBHOOK_DLQ_URL", "http://127.0.0.1:5000/123/dlq"),
            ("PUBLIC_BASE_URL", "https://relay.example"),
        ]);
        let e = env(&vars);
        let printed = [
            format!("{:?}", IngestConfig::from_env(&e).unwrap()),
            format!("{:?}", FetchConfig::from_env(&e).unwrap()),
            format!("{:?}", ApiConfig::from_env(&e).unwrap()),
            format!("{:?}", WorkerConfig::from_env(&e).unwrap()),
            format!("{:?}", ProviderSettings::from_env(&e).unwrap().client()),
        ];
        for p in &printed {
            for (_, v) in &vars {
                if v.contains("never-printed") || v.starts_with("0123456789") {
                    assert!(!p.contains(v), "{p}");
                }
            }
        }
        assert!(printed[0].contains("REDACTED") || printed[0].contains("WebhookSecret(..)"));
    }

    #[test]
    fn durations_take_seconds_or_a_unit() {
        let d = |v: &str| {
            env(&[("START_CONFIRM_TIMEOUT", v)])
                .duration("START_CONFIRM_TIMEOUT", Duration::from_secs(1))
        };
        assert_eq!(d("90"), Ok(Duration::from_secs(90)));
        assert_eq!(d("6h"), Ok(Duration::from_secs(21_600)));
        assert_eq!(d("30m"), Ok(Duration::from_secs(1800)));
        assert!(d("soon").is_err());
        assert!(d("0").is_err());
        assert_eq!(
            env(&[]).duration("START_CONFIRM_TIMEOUT", Duration::from_secs(5)),
            Ok(Duration::from_secs(5))
        );
    }
}

/// Where the providers are and the keys to call them with. `Debug` never prints a key.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub enrow_url: String,
    pub enrow_key: SecretString,
    pub fullenrich_url: String,
    pub fullenrich_key: SecretString,
    /// `PROVIDER_TIMEOUT_SECONDS`: how long one provider call may take (20 s).
    pub timeout: Duration,
}

impl ProviderSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        use crate::providers::client::{
            DEFAULT_TIMEOUT, ENROW_DEFAULT_URL, FULLENRICH_DEFAULT_URL,
        };
        Ok(ProviderSettings {
            enrow_url: env.url("ENROW_API_URL", Some(ENROW_DEFAULT_URL))?,
            enrow_key: env.optional_secret("ENROW_API_KEY").unwrap_or_default(),
            fullenrich_url: env.url("FULLENRICH_API_URL", Some(FULLENRICH_DEFAULT_URL))?,
            fullenrich_key: env
                .optional_secret("FULLENRICH_API_KEY")
                .unwrap_or_default(),
            timeout: env.duration("PROVIDER_TIMEOUT_SECONDS", DEFAULT_TIMEOUT)?,
        })
    }

    /// The HTTP client for these providers.
    pub fn client(&self) -> crate::providers::client::ProviderHttp {
        crate::providers::client::ProviderHttp::new(
            &self.enrow_url,
            self.enrow_key.expose_secret(),
            &self.fullenrich_url,
            self.fullenrich_key.expose_secret(),
        )
        .with_timeout(self.timeout)
    }
}

/// FullEnrich allows 60 requests a minute per account over every endpoint (providers.md §2.6):
/// starts (job-submit-worker) and result GETs (bulk-fetch) share one schedule at this pace.
fn fullenrich_interval<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Duration, ConfigError> {
    let per_minute = env.number("FULLENRICH_REQUESTS_PER_MINUTE", 55)?.min(60);
    // Rounded up: `per_minute` slots never fit in one 60 s window plus one.
    Ok(Duration::from_millis(60_000u64.div_ceil(per_minute)))
}

/// `JOB_DEADLINE_HOURS` (24, at least 1).
fn job_deadline<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(
        env.number("JOB_DEADLINE_HOURS", 24)?.max(1) * 3600,
    ))
}

/// bulk-fetch's configuration.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub jobs_table: String,
    pub dedupe_table: String,
    /// Where a delivery waits again, delayed, when its provider is not ready or rate-limits.
    pub webhook_queue_url: String,
    /// Where deliveries that can never be processed are parked, with the reason.
    pub dead_letter_queue_url: String,
    /// `SUBMIT_QUEUE_URL`: where a waterfall step's new chunks are asked to start.
    pub submit_queue_url: String,
    /// The claim-check bucket ingest writes large bodies to.
    pub payload_bucket: String,
    pub providers: ProviderSettings,
    pub dedupe_retention: Duration,
    pub dedupe_lease: Duration,
    /// How long a bulk apply holds its chunk before another worker may take it over (longer
    /// than the function's timeout).
    pub apply_lease: Duration,
    /// The first wait of a delivery whose results are not ready (`NOT_READY_WAIT_SECONDS`, 30);
    /// it doubles with each wait.
    pub not_ready_wait: Duration,
    /// `POLL_AFTER_SECONDS`: a chunk adopted now is first polled this long after (600 s).
    pub poll_after: Duration,
    /// One FullEnrich request per this interval, shared with the starts.
    pub fullenrich_interval: Duration,
    /// `RESULT_RETENTION_DAYS`: how long a job's items are kept (90 days).
    pub retention: Duration,
    /// `JOB_DEADLINE_HOURS` (24): how long a job waits for its results after its last chunk
    /// started before its open contacts time out (a job's `options.deadline_hours` wins).
    pub deadline: Duration,
    /// `CALLBACK_SECRET`: signs completion callbacks (a Standard Webhooks `whsec_` secret).
    pub callback_secret: SecretString,
    /// `CALLBACK_RETRY_BASE_SECONDS` (30): the wait after a callback's first failed attempt; it
    /// doubles with each failure.
    pub callback_retry_base: Duration,
    /// `CALLBACK_ALLOW_LOOPBACK` (false; `true` only on the local stack): callback host names may
    /// resolve to loopback addresses (receivers on the developer's machine).
    pub callback_allow_loopback: bool,
}

impl FetchConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(FetchConfig {
            jobs_table: env.required("JOBS_TABLE")?,
            dedupe_table: env.required("DEDUPE_TABLE")?,
            webhook_queue_url: env.url("WEBHOOK_QUEUE_URL", None)?,
            dead_letter_queue_url: env.url("WEBHOOK_DLQ_URL", None)?,
            submit_queue_url: env.url("SUBMIT_QUEUE_URL", None)?,
            payload_bucket: env.required("PAYLOAD_BUCKET")?,
            providers: ProviderSettings::from_env(env)?,
            dedupe_retention: Duration::from_secs(
                env.number("DEDUPE_RETENTION_DAYS", 30)? * 86_400,
            ),
            dedupe_lease: Duration::from_secs(env.number("DEDUPE_LEASE_SECONDS", 120)?),
            apply_lease: Duration::from_secs(env.number("APPLY_LEASE_SECONDS", 120)?),
            not_ready_wait: Duration::from_secs(env.number("NOT_READY_WAIT_SECONDS", 30)?.max(1)),
            poll_after: poll_after(env)?,
            fullenrich_interval: fullenrich_interval(env)?,
            deadline: job_deadline(env)?,
            retention: retention(env)?,
            callback_secret: env.secret("CALLBACK_SECRET")?,
            callback_retry_base: env
                .duration("CALLBACK_RETRY_BASE_SECONDS", DEFAULT_CALLBACK_RETRY_BASE)?,
            callback_allow_loopback: env.flag("CALLBACK_ALLOW_LOOPBACK", false)?,
        })
    }
}

/// The sweeper's configuration: the jobs table (its `due` index), the webhook queue its polls
/// go to, how long a chunk waits for its results before a poll.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub jobs_table: String,
    pub webhook_queue_url: String,
    /// `SUBMIT_QUEUE_URL`: where lost starts and overdue erasures are asked for again.
    pub submit_queue_url: String,
    pub poll_after: Duration,
    /// Polls queued per sweep at most.
    pub limit: usize,
}

impl SweepConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(SweepConfig {
            jobs_table: env.required("JOBS_TABLE")?,
            webhook_queue_url: env.url("WEBHOOK_QUEUE_URL", None)?,
            submit_queue_url: env.url("SUBMIT_QUEUE_URL", None)?,
            poll_after: poll_after(env)?,
            limit: env.number("SWEEP_LIMIT", 5000)? as usize,
        })
    }
}

/// `RESULT_RETENTION_DAYS` (90): how long a job's contacts and results are kept.
pub fn retention<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(
        env.number(
            "RESULT_RETENTION_DAYS",
            crate::store::DEFAULT_RETENTION_DAYS,
        )? * 86_400,
    ))
}

/// `POLL_AFTER_SECONDS` (600): how long a started chunk may go without its results before the
/// sweeper polls it; both providers say to poll no more than every 5–10 minutes.
pub fn poll_after<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(
        env.number(
            "POLL_AFTER_SECONDS",
            crate::store::DEFAULT_POLL_AFTER_MS / 1000,
        )?
        .max(1),
    ))
}

/// The jobs API's configuration (`job-submit`): it needs the API token, and no webhook secret
/// (it starts nothing and signs no URL); the provider keys, when set, only read the accounts'
/// balances (the credit check of `POST /jobs`).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub jobs_table: String,
    /// One message per chunk to start; consumed by `job-submit-worker`.
    pub submit_queue_url: String,
    pub api_token: SecretString,
    /// `RESULT_RETENTION_DAYS`: how long a job's items are kept (90 days).
    pub retention: Duration,
    /// `CALLBACK_ALLOW_LOOPBACK` (false): callback URLs may be plain http to a loopback address
    /// (the local stack's receivers); never set on AWS.
    pub callback_allow_loopback: bool,
    /// The providers' balance endpoints, read by the credit check of `POST /jobs` for each
    /// provider whose key is set (no key: that provider's jobs are not checked).
    pub providers: ProviderSettings,
    /// FullEnrich's shared schedule (a balance read takes a slot of it, as a start does).
    pub fullenrich_interval: Duration,
}

impl ApiConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(ApiConfig {
            jobs_table: env.required("JOBS_TABLE")?,
            submit_queue_url: env.url("SUBMIT_QUEUE_URL", None)?,
            api_token: env.secret("RELAY_API_TOKEN")?,
            retention: retention(env)?,
            callback_allow_loopback: env.flag("CALLBACK_ALLOW_LOOPBACK", false)?,
            providers: ProviderSettings::from_env(env)?,
            fullenrich_interval: fullenrich_interval(env)?,
        })
    }
}

/// The chunk starter's configuration (`job-submit-worker`): provider keys and the webhook
/// secret, and no API token.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub jobs_table: String,
    /// Its own queue: rate-limited starts and start confirmations wait there, delayed.
    pub submit_queue_url: String,
    /// `WEBHOOK_QUEUE_URL`: where a job this worker ends (canceled, refused, out of credits)
    /// asks for its completion callback.
    pub webhook_queue_url: String,
    /// Base of the webhook URLs handed to providers (the API's public address).
    pub public_base_url: String,
    pub webhook_secret: WebhookSecret,
    pub providers: ProviderSettings,
    /// One FullEnrich request per this interval, shared with bulk-fetch's result GETs.
    pub fullenrich_interval: Duration,
    /// Enrow allows 10 POSTs a second per endpoint.
    pub enrow_interval: Duration,
    /// `START_CONFIRM_TIMEOUT`: how long a start whose answer was lost may wait for its webhook
    /// before its contacts fail with `start_unconfirmed` (6 h).
    pub start_confirm_timeout: Duration,
    /// `POLL_AFTER_SECONDS`: a chunk started now is first polled this long after (600 s).
    pub poll_after: Duration,
    /// `RESULT_RETENTION_DAYS`: how long a job's items are kept (90 days).
    pub retention: Duration,
    /// `JOB_DEADLINE_HOURS` (24): a chunk still pending this long after its job was created
    /// never starts (a job's `options.deadline_hours` wins).
    pub deadline: Duration,
    /// `PAYLOAD_BUCKET`: the claim-check bucket, where a job's erasure deletes its bodies.
    pub payload_bucket: String,
}

impl WorkerConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(WorkerConfig {
            jobs_table: env.required("JOBS_TABLE")?,
            submit_queue_url: env.url("SUBMIT_QUEUE_URL", None)?,
            webhook_queue_url: env.url("WEBHOOK_QUEUE_URL", None)?,
            public_base_url: env
                .url("PUBLIC_BASE_URL", None)?
                .trim_end_matches('/')
                .to_string(),
            webhook_secret: env.webhook_secret()?,
            providers: ProviderSettings::from_env(env)?,
            fullenrich_interval: fullenrich_interval(env)?,
            enrow_interval: Duration::from_millis(
                1000 / env.number("ENROW_STARTS_PER_SECOND", 8)?.min(10),
            ),
            start_confirm_timeout: env
                .duration("START_CONFIRM_TIMEOUT", Duration::from_secs(6 * 3600))?,
            poll_after: poll_after(env)?,
            retention: retention(env)?,
            deadline: job_deadline(env)?,
            payload_bucket: env.required("PAYLOAD_BUCKET")?,
        })
    }
}
