//! Enrich Relay's shared library: what the three functions have in common.
//!
//! - [`providers`]: serde types for FullEnrich v2 and Enrow, parsed tolerantly (providers.md §4).
//! - [`envelope`]: the [`envelope::Envelope`] a webhook delivery travels in, from ingest to the worker.
//! - [`auth`]: per-job webhook tokens, FullEnrich `X-Signature-SHA1`, bearer tokens.
//! - [`queue`], [`bodies`]: the SQS queue and the S3 claim-check store, behind traits.
//! - [`config`]: environment read and validated once at cold start.
//! - [`aws`]: SDK configuration shared by every client (emulator endpoint, timeouts).
//! - [`credits`]: the worst-case credits of a contact and of a job, by the documented prices.

pub mod auth;
pub mod aws;
pub mod bodies;
pub mod budget;
pub mod callback;
pub mod config;
pub mod credits;
pub mod envelope;
pub mod ids;
pub mod invocation;
pub mod jobs;
pub mod metrics;
pub mod providers;
pub mod queue;
pub mod results_csv;
pub mod retry;
pub mod routes;
pub mod secrets;
pub mod serde_util;
pub mod store;
#[cfg(feature = "memory")]
pub mod testing;
pub mod validate;
pub mod waterfall;

use serde::{Deserialize, Serialize};

pub use ids::{ChunkIndex, ContactIndex, JobId, ProviderId};

/// Keys and tokens: `Debug` prints `[REDACTED]`, the memory is wiped on drop, and reading one
/// takes an explicit `expose_secret()`.
pub use secrecy::{ExposeSecret, SecretString};

/// The enrichment providers the relay speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::Display, strum::VariantArray)]
#[strum(serialize_all = "lowercase")]
pub enum Provider {
    Fullenrich,
    Enrow,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Milliseconds since the Unix epoch.
#[cfg(not(feature = "memory"))]
pub fn now_ms() -> u64 {
    wall_ms()
}

/// Milliseconds since the Unix epoch, as tokio's clock sees them: the wall clock at the first
/// call, moved on by tokio's `Instant` since. In a runtime whose clock is paused
/// (`#[tokio::test(start_paused = true)]`) time jumps to the next timer, so a simulation of
/// hours of pacing, polls and deadlines on the in-memory stores runs in milliseconds; in any
/// other runtime it is the wall clock. Only with the in-memory twins (feature `memory`): a
/// deployed function reads the wall clock.
#[cfg(feature = "memory")]
pub fn now_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<(u64, std::time::Instant)> = std::sync::OnceLock::new();
    let (wall, at) = ORIGIN.get_or_init(|| (wall_ms(), std::time::Instant::now()));
    let elapsed = tokio::time::Instant::now()
        .into_std()
        .saturating_duration_since(*at);
    wall + elapsed.as_millis() as u64
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The JSON error body every API of the relay answers with:
/// `{"error": {"code", "message", "field"?}}`. Never carries contact data or secrets.
pub fn error_json(code: &str, message: &str, field: Option<&str>) -> String {
    let mut error = serde_json::json!({ "code": code, "message": message });
    if let Some(field) = field {
        error["field"] = serde_json::Value::from(field);
    }
    serde_json::json!({ "error": error }).to_string()
}

/// Every function's cold start: tracing, the AWS SDK configuration, secrets from SSM (where the
/// template names parameters, `<VAR>_SSM`), then the function's configuration, validated.
pub async fn cold_start<C: config::FromEnv>()
-> Result<(aws_config::SdkConfig, C), config::ConfigError> {
    init_tracing();
    let aws = aws::load().await;
    let config = {
        let env = secrets::env_with_secrets(&aws).await?;
        C::read(&env)?
    };
    Ok((aws, config))
}

/// Sets up `tracing` the way Lambda wants it: JSON lines when `AWS_LAMBDA_LOG_FORMAT=JSON`
/// (the template sets it), level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .map(|v| v.eq_ignore_ascii_case("json"))
        .unwrap_or(true);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time();
    // Lambda stamps each line itself; locally the JSON lines are still one event per line.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}
