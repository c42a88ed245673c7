//! `relay wait`: follows a job until it ends, and writes its results file.

use std::time::Duration;

use relay_cli::api::{ApiError, Client};
use relay_cli::input::Input;
use relay_cli::output;
use relay_shared::jobs::Operation;
use serde_json::Value;

use crate::Api;
use crate::commands::common::{Failure, FileArgs, client, open_out, read_file, write_failed};

pub(crate) const TERMINAL: [&str; 4] = ["completed", "partially_failed", "failed", "canceled"];

/// Polls the job every 2 s with a progress bar (done/total, found, ETA) until it ends.
pub(crate) async fn follow(client: &Client, id: &str, total: u64) -> Result<Value, Failure> {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bar:30} {pos}/{len} done, {msg} (ETA {eta})",
        )
        .expect("template"),
    );
    let mut failures = 0;
    loop {
        // A job runs for minutes to hours: a passing failure of the API (a 5xx, a dropped
        // connection) is waited out, a few in a row end the wait (`relay wait` resumes it).
        let state = match client.get(&format!("/jobs/{id}")).await {
            Err(ApiError::Unreachable(e)) if failures < 10 => {
                failures += 1;
                bar.set_message(format!("retrying: {e}"));
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            r => r?,
        };
        failures = 0;
        bar.set_length(state["contacts"].as_u64().unwrap_or(total));
        bar.set_position(state["done"].as_u64().unwrap_or(0));
        bar.set_message(format!("{} found", state["found"].as_u64().unwrap_or(0)));
        let status = state["status"].as_str().unwrap_or_default();
        if TERMINAL.contains(&status) {
            bar.finish_and_clear();
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Prints how a job ended; its exit code: 0 completed, 1 otherwise.
pub(crate) fn ended(id: &str, state: &Value) -> u8 {
    let status = state["status"].as_str().unwrap_or_default();
    eprintln!(
        "{id}: {status}: {} found, {} not found, {} failed of {}",
        state["found"], state["not_found"], state["failed"], state["contacts"]
    );
    if let Some(e) = state["error"]["message"].as_str() {
        eprintln!("{id}: {e}");
    }
    u8::from(status != "completed")
}

/// `relay wait JOB [--in FILE] [--out F]`: follows the job, then writes its results file.
pub(crate) async fn wait(
    api: &Api,
    id: &str,
    file: &FileArgs,
    out: Option<std::path::PathBuf>,
) -> Result<u8, Failure> {
    let client = client(api)?;
    let head = client.get(&format!("/jobs/{id}")).await?;
    let provider = head["provider"].as_str().unwrap_or_default().to_string();
    let input = job_input(&head, file)?;
    let state = follow(&client, id, head["contacts"].as_u64().unwrap_or(0)).await?;
    let rows = client.results_with_raw(id, 1000).await?;
    write_rows(
        &mut *open_out(&out)?,
        input.as_ref(),
        &rows,
        &provider,
        file,
    )?;
    if let Some(o) = &out {
        eprintln!("{id}: results written to {}", o.display());
    }
    Ok(ended(id, &state))
}

/// The job's input file read as it was at submit, when `--in` names it.
pub(crate) fn job_input(head: &Value, file: &FileArgs) -> Result<Option<Input>, Failure> {
    let Some(path) = &file.input else {
        return Ok(None);
    };
    let op = head["operation"]
        .as_str()
        .and_then(|o| o.parse::<Operation>().ok())
        .ok_or_else(|| Failure(3, "the API did not say the job's operation".into()))?;
    let input = read_file(path, op, &file.read)?;
    let sent = input.rows.len() - input.rejected().count();
    if head["contacts"].as_u64() != Some(sent as u64) {
        return Err(Failure(
            2,
            format!(
                "{} gives {sent} contact(s) to send but the job has {}: is it the file the job was submitted from, with the same --map and --keep?",
                path.display(),
                head["contacts"]
            ),
        ));
    }
    Ok(Some(input))
}

pub(crate) fn write_rows(
    w: &mut dyn std::io::Write,
    input: Option<&Input>,
    rows: &[Value],
    provider: &str,
    file: &FileArgs,
) -> Result<(), Failure> {
    match input {
        Some(input) => output::write_results_file(&mut *w, input, rows, provider, !file.no_bom),
        None => relay_shared::results_csv::write_results(&mut *w, rows, provider, !file.no_bom),
    }
    .map_err(write_failed)?;
    w.flush().map_err(write_failed)
}
