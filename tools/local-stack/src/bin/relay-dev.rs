//! `make dev`: the whole stack in the foreground until Ctrl-C or SIGTERM.

use relay_local_stack::dev::{DevOptions, DevStack, shown_secret};

#[tokio::main]
async fn main() {
    let opts = DevOptions::from_env();
    let env = |k: &str| std::env::var(k).ok();
    let token = shown_secret("RELAY_API_TOKEN", &opts.api_token, env);
    let callback_secret = shown_secret("CALLBACK_SECRET", &opts.callback_secret, env);
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
