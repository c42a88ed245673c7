//! `make dev`: the whole stack in the foreground until Ctrl-C or SIGTERM, every function under
//! `cargo lambda watch`. `make watch` (`relay-dev --watch-only`): moto, the sandbox and watch on
//! [::1]:9000 only (where `cargo lambda invoke` sends), for `cargo lambda invoke <function> --data-file fixtures/events/…` and
//! curl to the function URLs.

use relay_local_stack::dev::{DevOptions, DevStack, shown_secret};

#[tokio::main]
async fn main() {
    let mut opts = DevOptions::from_env();
    if std::env::args().any(|a| a == "--watch-only") {
        opts.watch_only = true;
        // cargo lambda invoke's default port.
        opts.watch_port = std::env::var("RELAY_WATCH_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(9000);
    }
    let env = |k: &str| std::env::var(k).ok();
    let token = shown_secret("RELAY_API_TOKEN", &opts.api_token, env);
    let webhook_secret = shown_secret("WEBHOOK_SECRET", &opts.webhook_secret, env);
    let callback_secret = shown_secret("CALLBACK_SECRET", &opts.callback_secret, env);
    let logs = opts.log_dir.clone();
    let watch_only = opts.watch_only;
    let started = std::time::Instant::now();
    eprintln!(
        "starting moto, the provider sandbox and cargo lambda watch (the first start builds each function)…"
    );
    let stack = match DevStack::start(opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("make dev: {e}");
            std::process::exit(1);
        }
    };
    let port = stack.watch_url.rsplit(':').next().unwrap_or("9000");
    println!(
        "Enrich Relay dev stack (ready in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    if !watch_only {
        println!("  API            {}/jobs", stack.api_url);
        println!("  webhooks       {}/webhooks/…", stack.api_url);
    }
    println!(
        "  Enrow global   {} (the dashboard webhook; the sandbox's is set to it)",
        stack.global_webhook_url
    );
    println!("  cargo lambda watch {}", stack.watch_url);
    println!(
        "    function URLs  {}/lambda-url/job-submit/jobs, …/lambda-url/webhook-ingest/webhooks/…",
        stack.watch_url
    );
    println!(
        "    invoke         cargo lambda invoke bulk-fetch --invoke-port {port} --data-file fixtures/events/sqs-enrow-bulk.json"
    );
    if let Some(f) = &stack.env_file {
        println!("    env file       {}", f.display());
    }
    println!("  bearer token   {token}");
    println!("  webhook secret {webhook_secret}");
    println!("  callbacks      signed with {callback_secret} (Standard Webhooks)");
    println!("  Enrow API      {}", stack.enrow_url);
    println!("  FullEnrich API {}", stack.fullenrich_url);
    println!("  logs           {}/watch.log", logs.display());
    if !watch_only {
        println!("In another terminal, for `relay`:");
        println!(
            "  export RELAY_URL={} RELAY_API_TOKEN={token}",
            stack.api_url
        );
    }
    println!(
        "The stack's data (jobs, results, queues) lives only as long as the stack: Ctrl-C ends both."
    );
    println!(
        "Edit a function's source and watch rebuilds and restarts it. Ctrl-C stops everything."
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(stack);
    // Give the children a moment to be reaped before the process ends.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}
