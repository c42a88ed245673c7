//! AWS SDK configuration, built once at cold start and shared by every client.
//!
//! `AWS_ENDPOINT_URL` (read by the SDK itself) points every client at the local emulator; S3 then
//! uses path-style addressing, which the emulator needs.

use std::time::Duration;

pub use aws_config::SdkConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

/// Timeouts short enough that ingest answers well inside a provider's patience, long enough for a
/// healthy AWS call with the SDK's own retries.
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(4))
        .operation_timeout(Duration::from_secs(8))
        .build()
}

/// The emulator's timeouts ([`for_endpoint`]).
fn emulator_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(15))
        .operation_attempt_timeout(Duration::from_secs(60))
        .operation_timeout(Duration::from_secs(120))
        .build()
}

/// The SDK configuration from the environment (Lambda's credentials and region, or the local ones).
///
/// Stalled-stream protection is off: it watches the throughput of every request and response
/// body with a timer of its own, work paid on each call, and the attempt and operation timeouts
/// above already end a call that stalls (every body here is small).
///
/// Against the local emulator (`AWS_ENDPOINT_URL`, which a deployed function never has) the
/// emulator's timeouts instead ([`for_endpoint`]): it reads a 5,000-contact chunk's contacts in
/// seconds, more than the 4 s attempt above, while a large job loads it.
pub async fn load() -> SdkConfig {
    let timeouts = if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
        emulator_timeouts()
    } else {
        timeouts()
    };
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .load()
        .await
}

/// An SDK configuration for an explicit endpoint (tests and local tools): fixed region and dummy
/// credentials, so nothing waits on the instance-metadata service. The emulator is one Python
/// process that closes every connection: under a burst of hundreds of calls (while other test
/// stacks load the machine) it accepts and answers in seconds, not milliseconds, so the connect
/// and attempt timeouts are relaxed here (a timed-out attempt that the emulator still completes
/// would be retried and enqueue the delivery twice; see README, "Ingest").
pub async fn for_endpoint(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(emulator_timeouts())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

pub fn sqs(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    let path_style = config.endpoint_url().is_some();
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
