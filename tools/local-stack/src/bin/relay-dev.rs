//! `make dev`: the whole stack in the foreground until Ctrl-C or SIGTERM.

use relay_local_stack::dev::{DevOptions, DevStack};

#[tokio::main]
async fn main() {
    let opts = DevOptions::from_env();
    // A secret that came from the environment is the caller's: never echoed.
    let shown = |var: &str, value: &str| match std::env::var(var) {
        Ok(v) if !v.is_empty() => format!("from {var}"),
        _ => value.to_string(),
    };
    let token = shown("RELAY_API_TOKEN", &opts.api_token);
    let callback_secret = shown("CALLBACK_SECRET", &opts.callback_secret);
    let logs = opts.log_dir.clone();
    let stack = match DevStack::start(opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("make dev: {e}");
            std::process::exit(1);
        }
    };
    println!("Enrich Relay dev stack");
    println!("  API            {}/jobs", stack.api_url);
    println!("  webhooks       {}/webhooks/…", stack.api_url);
    println!("  bearer token   {token}");
    println!("  callbacks      signed with {callback_secret} (Standard Webhooks)");
    println!("  Enrow API      {}", stack.enrow_url);
    println!("  FullEnrich API {}", stack.fullenrich_url);
    println!("  function logs  {}", logs.display());
    println!("Ctrl-C stops everything.");
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
