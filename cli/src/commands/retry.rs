//! `relay retry JOB [--include-unconfirmed] [--wait] [--out F]`: a new job of the contacts that
//! ended failed for a reason a retry can change (`POST /jobs/{id}/retry`); with --wait, follows
//! it and writes its results file.

use relay_shared::JobId;
use serde_json::json;

use crate::Api;
use crate::commands::common::{Failure, client, open_out, write_failed};
use crate::commands::wait::{ended, follow};

pub(crate) async fn retry(
    api: &Api,
    id: &str,
    include_unconfirmed: bool,
    wait: bool,
    out: Option<std::path::PathBuf>,
    no_bom: bool,
) -> Result<u8, Failure> {
    let Some(id) = JobId::parse(id) else {
        return Err(Failure(2, format!("{id}: not a job id")));
    };
    let client = client(api)?;
    // One key per retry of this job: a retry of the command after a lost answer finds the job
    // the first one created instead of making a second.
    let key = format!("retry-{id}-{include_unconfirmed}");
    let body = json!({"include_unconfirmed": include_unconfirmed});
    let path = format!("/jobs/{id}/retry");
    let got = client
        .call(reqwest::Method::POST, &path, Some(&body), Some(&key))
        .await?;
    let new = got["job_id"].as_str().unwrap_or_default().to_string();
    eprintln!(
        "{new}: retries {} contact(s) of {id}{}",
        got["retried"],
        unconfirmed_note(&got)
    );
    println!("{new}");
    if !wait {
        return Ok(0);
    }
    let head = client.get(&format!("/jobs/{new}")).await?;
    let provider = head["provider"].as_str().unwrap_or_default().to_string();
    let state = follow(&client, &new, head["contacts"].as_u64().unwrap_or(0)).await?;
    let rows = client.results_with_raw(&new, 1000).await?;
    let mut w = open_out(&out)?;
    relay_shared::results_csv::write_results(&mut *w, &rows, &provider, !no_bom)
        .map_err(write_failed)?;
    w.flush().map_err(write_failed)?;
    if let Some(o) = &out {
        eprintln!("{new}: results written to {}", o.display());
    }
    Ok(ended(&new, &state))
}

/// What the answer says of the contacts whose start may have been billed.
fn unconfirmed_note(got: &serde_json::Value) -> String {
    match (
        got["unconfirmed"].as_u64(),
        got["unconfirmed_included"].as_bool(),
    ) {
        (Some(n), Some(true)) if n > 0 => {
            format!(", {n} of them unconfirmed (their first start may have been billed)")
        }
        (Some(n), _) if n > 0 => format!(
            "; {n} unconfirmed contact(s) left out (their start may have been billed: --include-unconfirmed sends them)"
        ),
        _ => String::new(),
    }
}
