//! `make soak`: 10,000 deliveries across 50 jobs of both providers on the local stack, every
//! event sent 1–5 times, shuffled and concurrent, with the faults the providers' documents allow;
//! prints the report and exits non-zero unless nothing was lost and nothing applied twice.
//!
//! `relay-soak [DELIVERIES] [JOBS]` runs another size.

use relay_local_stack::dev::DevOptions;
use relay_local_stack::soak::{SoakConfig, run};

#[tokio::main]
async fn main() {
    let mut cfg = SoakConfig::full();
    let mut args = std::env::args().skip(1);
    if let Some(n) = args.next().and_then(|a| a.parse().ok()) {
        cfg.deliveries = n;
    }
    if let Some(n) = args.next().and_then(|a| a.parse().ok()) {
        cfg.jobs = n;
    }
    let mut opts = DevOptions::from_env();
    opts.port = 0;
    opts.log_dir = relay_local_stack::repo_root().join(".local/soak");
    println!(
        "soak: {} deliveries across {} jobs (logs in .local/soak)",
        cfg.deliveries, cfg.jobs
    );
    match run(cfg, opts).await {
        Ok(report) => {
            print!("{report}");
            if !report.passed() {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("soak failed: {e}");
            std::process::exit(2);
        }
    }
}
