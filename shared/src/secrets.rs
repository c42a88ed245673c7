//! Secrets from SSM Parameter Store, read once at cold start.
//!
//! On AWS the template passes parameter *names* (`WEBHOOK_SECRET_SSM=/enrich-relay/prod/webhook-secret`),
//! never values; [`env_with_secrets`] reads each named SecureString and serves it under the plain
//! name (`WEBHOOK_SECRET`) to the config loader. Locally the plain variables are set directly.

use std::collections::BTreeMap;

use aws_config::SdkConfig;

use crate::config::{ConfigError, Env};

/// The variables that may come from SSM: `<VAR>_SSM` names the parameter.
pub const SECRET_VARS: [&str; 7] = [
    "WEBHOOK_SECRET",
    "CALLBACK_SECRET",
    "WEBHOOK_SECRET_PREVIOUS",
    "RELAY_API_TOKEN",
    "FULLENRICH_API_KEY",
    "FULLENRICH_API_KEY_PREVIOUS",
    "ENROW_API_KEY",
];

/// Whether a secret is needed only during a rotation: its SSM parameter may be absent (or hold a
/// placeholder), and then the variable is simply unset.
pub fn is_rotation_only(var: &str) -> bool {
    var.ends_with("_PREVIOUS")
}

/// What an unused rotation parameter may hold (SSM refuses empty values).
pub const UNUSED: &str = "none";

/// The SSM-backed name of a secret variable.
pub fn ssm_var(var: &str) -> String {
    format!("{var}_SSM")
}

/// The process environment, with every `<VAR>_SSM` parameter read and served as `<VAR>`.
pub async fn env_with_secrets(
    sdk: &SdkConfig,
) -> Result<Env<impl Fn(&str) -> Option<String>>, ConfigError> {
    with_secrets(sdk, |k: &str| std::env::var(k).ok()).await
}

/// `lookup`, with every `<VAR>_SSM` parameter it names read from SSM and served as `<VAR>`.
pub async fn with_secrets<L>(
    sdk: &SdkConfig,
    lookup: L,
) -> Result<Env<impl Fn(&str) -> Option<String>>, ConfigError>
where
    L: Fn(&str) -> Option<String>,
{
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let mut secrets = BTreeMap::new();
    for var in SECRET_VARS {
        let Some(name) = lookup(&ssm_var(var)).filter(|n| !n.is_empty()) else {
            continue;
        };
        let out = ssm
            .get_parameter()
            .name(&name)
            .with_decryption(true)
            .send()
            .await;
        if is_rotation_only(var)
            && let Err(e) = &out
            && e.as_service_error()
                .is_some_and(|se| se.is_parameter_not_found())
        {
            continue;
        }
        let out = out.map_err(|e| ConfigError {
            var,
            problem: format!(
                "could not be read from SSM parameter {name}: {}",
                aws_sdk_ssm::error::DisplayErrorContext(e)
            ),
        })?;
        let value = out
            .parameter
            .and_then(|p| p.value)
            .ok_or_else(|| ConfigError {
                var,
                problem: format!("SSM parameter {name} has no value"),
            })?;
        if is_rotation_only(var) && value.trim() == UNUSED {
            continue;
        }
        secrets.insert(var.to_string(), value);
    }
    Ok(Env(move |k: &str| {
        secrets.get(k).cloned().or_else(|| lookup(k))
    }))
}
