//! The sweeper: on an EventBridge schedule, puts a poll on the webhook queue for every started
//! chunk whose results have not come for `POLL_AFTER_SECONDS` (bulk-fetch applies them).

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_shared::config::SweepConfig;
use serde_json::{Value, json};
use sweeper::{Sweep, Sweeper};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (aws, config) = relay_shared::cold_start::<SweepConfig>().await?;
    let sweeper = std::sync::Arc::new(Sweeper::deployed(&aws, config));
    run(service_fn(move |_: LambdaEvent<Value>| {
        let sweeper = std::sync::Arc::clone(&sweeper);
        async move {
            // An error fails the invocation: the schedule's next run sweeps again, and the
            // sweeper-errors alarm sees it.
            let sweep = sweeper.sweep().await;
            Sweep::metrics(sweep.as_ref().ok()).emit();
            let sweep = sweep?;
            tracing::info!(
                due = sweep.due,
                enqueued = sweep.enqueued,
                skipped = sweep.skipped,
                failed = sweep.failed,
                erasures = sweep.erasures,
                queries = sweep.read.queries,
                read_units = sweep.read.read_units,
                "sweep done"
            );
            Ok::<_, Error>(json!({
                "due": sweep.due, "enqueued": sweep.enqueued,
                "skipped": sweep.skipped, "failed": sweep.failed, "erasures": sweep.erasures
            }))
        }
    }))
    .await
}
