//! `make soak`: 10,000 deliveries across 50 jobs of both providers on the local stack, every
//! event sent 1–5 times, shuffled and concurrent, with the faults the providers' documents allow;
//! prints the report and exits non-zero unless nothing was lost and nothing applied twice.
//!
//! `relay-soak [DELIVERIES] [JOBS]` runs another size.

use clap::Parser;
use relay_local_stack::dev::DevOptions;
use relay_local_stack::soak::{SoakConfig, run};

/// The soak on the local stack: prints its report; exits 1 unless it passed, 2 if it could not run.
#[derive(Parser)]
struct Args {
    /// Deliveries to send in all (every event 1–5 times)
    #[arg(default_value_t = SoakConfig::full().deliveries)]
    deliveries: usize,
    /// Jobs, half FullEnrich and half Enrow
    #[arg(default_value_t = SoakConfig::full().jobs)]
    jobs: usize,
    /// Seconds to wait for every job to end once everything was sent
    #[arg(long, default_value_t = SoakConfig::full().settle_timeout.as_secs())]
    settle_seconds: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let cfg = SoakConfig {
        deliveries: args.deliveries,
        jobs: args.jobs,
        settle_timeout: std::time::Duration::from_secs(args.settle_seconds),
        ..SoakConfig::full()
    };
    let mut opts = DevOptions::from_env();
    // The built binaries under watch's Runtime API (each with its own environment; the soak
    // kills one mid-batch), on free ports beside a running `make dev`.
    opts.host = relay_local_stack::dev::Host::Binaries;
    opts.hot_reload = false;
    opts.watch_port = 0;
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
