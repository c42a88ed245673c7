//! `relay status`, `jobs`, `orphans`, `cancel`, `results`: one API call each.

use std::io::Write;

use serde_json::Value;

use crate::Api;
use crate::Format;
use crate::commands::common::{Failure, FileArgs, client, open_out, write_failed};
use crate::commands::wait::{job_input, write_rows};

/// A time the API gives in ms since the epoch, as RFC 3339 (UTC).
pub(crate) fn when(ms: &Value) -> String {
    ms.as_u64()
        .and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).ok())
        .and_then(|t| {
            t.replace_millisecond(0)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

pub(crate) async fn status(api: &Api, id: &str) -> Result<u8, Failure> {
    let state = client(api)?.get(&format!("/jobs/{id}")).await?;
    println!(
        "{id}: {} ({} of {} done: {} found, {} not found, {} failed; {} duplicate deliveries dropped)",
        state["status"].as_str().unwrap_or_default(),
        state["done"],
        state["contacts"],
        state["found"],
        state["not_found"],
        state["failed"],
        state["duplicates"]
    );
    let credits = match &state["credits_used"] {
        Value::Null => "none yet".to_string(),
        v => v.to_string(),
    };
    println!(
        "{id}: {} {} {:?}; credits used: {credits}; created {}, updated {}",
        state["provider"].as_str().unwrap_or_default(),
        state["operation"].as_str().unwrap_or_default(),
        state["name"].as_str().unwrap_or_default(),
        when(&state["created_at"]),
        when(&state["updated_at"]),
    );
    if let Some(e) = state["error"]["message"].as_str() {
        println!("{id}: {e}");
    }
    Ok(0)
}

pub(crate) async fn jobs(api: &Api, limit: usize) -> Result<u8, Failure> {
    let page = client(api)?
        .get(&format!("/jobs?limit={}", limit.clamp(1, 100)))
        .await?;
    let jobs = page["jobs"].as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        eprintln!("no jobs yet: `relay submit --provider … --operation … contacts.csv` starts one");
    }
    for j in &jobs {
        println!(
            "{}  {:<16}  {:<10} {:<13} {}/{} done  {}  {}",
            j["job_id"].as_str().unwrap_or_default(),
            j["status"].as_str().unwrap_or_default(),
            j["provider"].as_str().unwrap_or_default(),
            j["operation"].as_str().unwrap_or_default(),
            j["done"],
            j["contacts"],
            when(&j["created_at"]),
            j["name"].as_str().unwrap_or_default(),
        );
    }
    Ok(0)
}

pub(crate) async fn orphans(
    api: &Api,
    limit: usize,
    cursor: Option<&str>,
    json: bool,
) -> Result<u8, Failure> {
    let mut url = reqwest::Url::parse("http://relay/orphans").expect("a static URL");
    url.query_pairs_mut()
        .append_pair("limit", &limit.clamp(1, 100).to_string());
    if let Some(c) = cursor {
        url.query_pairs_mut().append_pair("cursor", c);
    }
    let query = url.query().unwrap_or_default();
    let page = client(api)?.get(&format!("/orphans?{query}")).await?;
    if json {
        println!("{page}");
        return Ok(0);
    }
    let orphans = page["orphans"].as_array().cloned().unwrap_or_default();
    if orphans.is_empty() {
        eprintln!("no orphans: every event of Enrow's dashboard webhook was for a search of a job");
    }
    for o in &orphans {
        println!(
            "{}  {:<8} {:<28} {}  credits {}",
            when(&o["received_at"]),
            o["provider"].as_str().unwrap_or_default(),
            o["event"].as_str().unwrap_or_default(),
            o["provider_id"].as_str().unwrap_or_default(),
            o["credits"],
        );
    }
    if let Some(next) = page["next_cursor"].as_str() {
        eprintln!("more: relay orphans --cursor '{next}'");
    }
    Ok(0)
}

pub(crate) async fn cancel(api: &Api, id: &str) -> Result<u8, Failure> {
    client(api)?
        .call(
            reqwest::Method::POST,
            &format!("/jobs/{id}/cancel"),
            None,
            None,
        )
        .await?;
    println!("{id}: canceled; chunks not started will not start, started ones finish");
    Ok(0)
}

pub(crate) async fn results(
    api: &Api,
    id: &str,
    format: Format,
    file: &FileArgs,
    out: Option<std::path::PathBuf>,
) -> Result<u8, Failure> {
    let client = client(api)?;
    let rows = match format {
        Format::Csv => client.results_with_raw(id, 1000).await?,
        _ => client.results(id, 1000).await?,
    };
    if rows.is_empty() {
        eprintln!("{id}: no results yet (`relay status {id}` says how far it is)");
    }
    let mut w = open_out(&out)?;
    match format {
        Format::Csv => {
            let head = client.get(&format!("/jobs/{id}")).await?;
            let provider = head["provider"].as_str().unwrap_or_default().to_string();
            let input = job_input(&head, file)?;
            if input.is_none() {
                eprintln!(
                    "{id}: the API's columns (index, custom, relay_…); --in FILE (the file it was submitted from) gives the file's own columns back"
                );
            }
            write_rows(&mut *w, input.as_ref(), &rows, &provider, file)?;
        }
        Format::Ndjson => {
            rows.iter()
                .try_for_each(|r| writeln!(w, "{r}"))
                .map_err(write_failed)?;
        }
        Format::Json => writeln!(w, "{}", Value::Array(rows)).map_err(write_failed)?,
    }
    w.flush().map_err(write_failed)?;
    Ok(0)
}
