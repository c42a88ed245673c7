//! Configuration, read and validated once at cold start. A missing or malformed value stops the
//! function with a message that names the variable (and never prints a secret's value).

use crate::auth::WebhookSecret;

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
    pub fn secret(&self, var: &'static str) -> Result<String, ConfigError> {
        let v = self.required(var)?;
        if v.len() < 16 {
            return Err(ConfigError {
                var,
                problem: "is shorter than 16 characters".into(),
            });
        }
        Ok(v)
    }
}

/// webhook-ingest's configuration.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub queue_url: String,
    pub payload_bucket: String,
    pub webhook_secret: WebhookSecret,
    /// FullEnrich API keys that may sign deliveries: current first, then the previous one during a
    /// rotation. Empty when no key is configured.
    pub fullenrich_keys: Vec<String>,
    /// `FULLENRICH_REQUIRE_SIGNATURE`: refuse FullEnrich deliveries without `X-Signature-SHA1`.
    pub require_signature: bool,
}

impl IngestConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let fullenrich_keys: Vec<String> = ["FULLENRICH_API_KEY", "FULLENRICH_API_KEY_PREVIOUS"]
            .into_iter()
            .filter_map(|v| env.optional(v))
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
            webhook_secret: WebhookSecret::new(env.secret("WEBHOOK_SECRET")?),
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
        assert_eq!(c.fullenrich_keys, vec!["fe-key", "fe-old"]);
    }
}

/// Where the providers are and the keys to call them with.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub enrow_url: String,
    pub enrow_key: String,
    pub fullenrich_url: String,
    pub fullenrich_key: String,
}

impl ProviderSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        use crate::providers::client::{ENROW_DEFAULT_URL, FULLENRICH_DEFAULT_URL};
        Ok(ProviderSettings {
            enrow_url: env.url("ENROW_API_URL", Some(ENROW_DEFAULT_URL))?,
            enrow_key: env.optional("ENROW_API_KEY").unwrap_or_default(),
            fullenrich_url: env.url("FULLENRICH_API_URL", Some(FULLENRICH_DEFAULT_URL))?,
            fullenrich_key: env.optional("FULLENRICH_API_KEY").unwrap_or_default(),
        })
    }

    /// The HTTP client for these providers.
    pub fn client(&self) -> crate::providers::client::ProviderHttp {
        crate::providers::client::ProviderHttp::new(
            &self.enrow_url,
            &self.enrow_key,
            &self.fullenrich_url,
            &self.fullenrich_key,
        )
    }
}

/// bulk-fetch's configuration.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub jobs_table: String,
    pub dedupe_table: String,
    /// Where deliveries that can never be processed are parked, with the reason.
    pub dead_letter_queue_url: String,
    /// The claim-check bucket ingest writes large bodies to.
    pub payload_bucket: String,
    pub providers: ProviderSettings,
    pub dedupe_retention_days: u64,
    pub dedupe_lease_seconds: u64,
}

impl FetchConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(FetchConfig {
            jobs_table: env.required("JOBS_TABLE")?,
            dedupe_table: env.required("DEDUPE_TABLE")?,
            dead_letter_queue_url: env.url("WEBHOOK_DLQ_URL", None)?,
            payload_bucket: env.required("PAYLOAD_BUCKET")?,
            providers: ProviderSettings::from_env(env)?,
            dedupe_retention_days: env.number("DEDUPE_RETENTION_DAYS", 30)?,
            dedupe_lease_seconds: env.number("DEDUPE_LEASE_SECONDS", 120)?,
        })
    }
}

/// job-submit's configuration (the jobs API and the chunk submitter).
#[derive(Debug, Clone)]
pub struct SubmitConfig {
    pub jobs_table: String,
    /// One message per chunk to start; consumed by `job-submit-worker`.
    pub submit_queue_url: String,
    /// Base of the webhook URLs handed to providers (the API's public address).
    pub public_base_url: String,
    pub webhook_secret: WebhookSecret,
    pub api_token: String,
    pub providers: ProviderSettings,
    /// FullEnrich allows 60 requests a minute per account, polling included: starts take 50 by
    /// default and leave the rest to the result GETs.
    pub fullenrich_starts_per_minute: u64,
    /// Enrow allows 10 POSTs a second per endpoint.
    pub enrow_starts_per_second: u64,
}

impl SubmitConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(SubmitConfig {
            jobs_table: env.required("JOBS_TABLE")?,
            submit_queue_url: env.url("SUBMIT_QUEUE_URL", None)?,
            public_base_url: env
                .url("PUBLIC_BASE_URL", None)?
                .trim_end_matches('/')
                .to_string(),
            webhook_secret: WebhookSecret::new(env.secret("WEBHOOK_SECRET")?),
            api_token: env.secret("RELAY_API_TOKEN")?,
            providers: ProviderSettings::from_env(env)?,
            fullenrich_starts_per_minute: env.number("FULLENRICH_STARTS_PER_MINUTE", 50)?.min(60),
            enrow_starts_per_second: env.number("ENROW_STARTS_PER_SECOND", 8)?.min(10),
        })
    }
}
