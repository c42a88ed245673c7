//! The soak, scaled down (issue 11): 500 deliveries across 10 jobs of both providers, every
//! event 1–5 times, shuffled, concurrent, with GETs not ready / 429 / 5xx, ingest losing SQS for
//! 5 s and bulk-fetch killed mid-batch. `make soak` runs the full size.

use std::time::Duration;

use relay_local_stack::soak::{SoakConfig, run};

use crate::e2e::options;

#[tokio::test]
async fn five_hundred_deliveries_duplicated_and_shuffled_under_faults_land_exactly_once() {
    let cfg = SoakConfig {
        deliveries: 500,
        jobs: 10,
        sqs_outage: Duration::from_secs(5),
        settle_timeout: Duration::from_secs(300),
        ..SoakConfig::full()
    };
    let mut opts = options();
    opts.log_dir = relay_local_stack::repo_root().join(".local/test-soak");
    let report = run(cfg, opts).await.expect("soak ran");
    println!("{report}");
    assert_eq!(report.jobs, 10);
    assert_eq!(report.deliveries, 500);
    assert_eq!(report.accepted, 500, "{report}");
    assert!(report.unavailable > 0, "the SQS outage was felt: {report}");
    assert_eq!(report.bulk_fetch_restarts, 1, "{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.applied_twice, 0, "{report}");
    assert_eq!(report.exact_jobs, 10, "{report}");
    assert!(report.passed(), "{report}");
}
