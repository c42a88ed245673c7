//! `relay`: the operator's and the client's command line.
//!
//! Exit codes: 0 done; 1 a job waited for ended failed or partially failed; 2 bad input (a row,
//! a flag, an unknown queue); 3 the API (or AWS) could not be reached or refused the credentials.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use relay_cli::api::{ApiError, Client};
use relay_cli::dlq::{Dlq, DlqError, Filter};
use relay_cli::table;
use relay_shared::jobs::Operation;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "relay", version, about = "Enrich Relay from the command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the jobs API is, and the token (never echoed: not in help, errors or output).
#[derive(Args, Clone)]
struct Api {
    /// The jobs API's base URL (https; plain http only to a loopback address).
    #[arg(long, env = "RELAY_URL")]
    url: String,
    /// The API's bearer token.
    #[arg(long, env = "RELAY_API_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Ndjson,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Submits the contacts of a CSV file as one job; with --wait, follows it and writes the
    /// results CSV (the input columns, then outcome, email, email_status, phone, reason).
    Submit {
        #[command(flatten)]
        api: Api,
        #[command(flatten)]
        submit: SubmitArgs,
    },
    /// A job's status and counts.
    Status {
        #[command(flatten)]
        api: Api,
        job: String,
    },
    /// Jobs, newest first.
    Jobs {
        #[command(flatten)]
        api: Api,
        /// How many (1–100).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Cancels a job: chunks not started are not started; started ones finish and are kept.
    Cancel {
        #[command(flatten)]
        api: Api,
        job: String,
    },
    /// A job's results, every page.
    Results {
        #[command(flatten)]
        api: Api,
        job: String,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// The dead-letter queues: what is stuck and why, and moving it back.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Args)]
struct Queues {
    /// The CloudFormation stack (or local-stack prefix): every `{stack}-…DeadLetterQueue…`.
    #[arg(long, env = "RELAY_STACK", conflicts_with = "dlq")]
    stack: Option<String>,
    /// One dead-letter queue by URL.
    #[arg(long, env = "RELAY_DLQ_URL")]
    dlq: Option<String>,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// How many messages each DLQ holds, by reason and by job (never a body: bodies hold contact
    /// data). Leaves every message where it is.
    List {
        #[command(flatten)]
        queues: Queues,
    },
    /// Moves messages back to the queue they came from (parked ones included) and says how many.
    Replay {
        #[command(flatten)]
        queues: Queues,
        /// Only messages whose reason contains this text (case-insensitive), e.g. `retries`.
        #[arg(long)]
        reason: Option<String>,
        /// Only messages of this job.
        #[arg(long)]
        job: Option<String>,
        /// Count what would move; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// The destination queue URL, when it cannot be found from the DLQ's redrive policy.
        #[arg(long)]
        to: Option<String>,
    },
}

fn parse_map(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((h, f)) if !h.trim().is_empty() && !f.trim().is_empty() => {
            Ok((h.trim().to_string(), f.trim().to_string()))
        }
        _ => Err("must be HEADER=FIELD, e.g. \"Work Email=email\"".into()),
    }
}

/// A failure: what to print and the exit code.
struct Failure(u8, String);

impl From<DlqError> for Failure {
    fn from(e: DlqError) -> Self {
        match e {
            DlqError::Usage(m) => Failure(2, m),
            e => Failure(
                3,
                format!(
                    "{e}\n(check the AWS credentials and region, or AWS_ENDPOINT_URL for the local stack)"
                ),
            ),
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure(e.exit_code(), e.to_string())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dlq { command } => dlq(command).await,
        Command::Submit { api, submit } => submit.run(&api).await,
        Command::Status { api, job } => status(&api, &job).await,
        Command::Jobs { api, limit } => jobs(&api, limit).await,
        Command::Cancel { api, job } => cancel(&api, &job).await,
        Command::Results {
            api,
            job,
            format,
            out,
        } => results(&api, &job, format, out).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure(code, message)) => {
            eprintln!("relay: {message}");
            ExitCode::from(code)
        }
    }
}

fn client(api: &Api) -> Result<Client, Failure> {
    Client::new(&api.url, &api.token).map_err(|m| Failure(2, m))
}

/// Where output goes: a file, or stdout.
fn output(out: &Option<std::path::PathBuf>) -> Result<Box<dyn std::io::Write>, Failure> {
    Ok(match out {
        Some(p) => Box::new(
            std::fs::File::create(p)
                .map_err(|e| Failure(2, format!("cannot write {}: {e}", p.display())))?,
        ),
        None => Box::new(std::io::stdout()),
    })
}

#[derive(Args)]
struct SubmitArgs {
    /// `enrow` or `fullenrich`.
    #[arg(long)]
    provider: String,
    /// enrow: email_find, email_verify, phone_find; fullenrich: enrich, reverse_email.
    #[arg(long)]
    operation: String,
    /// The CSV file: a header row, one contact a row.
    contacts: std::path::PathBuf,
    /// The job's name.
    #[arg(long)]
    name: Option<String>,
    /// Makes a retry of this command return the same job (and spend nothing again).
    #[arg(long)]
    idempotency_key: Option<String>,
    /// An https URL the relay POSTs a signed `job.completed` event to when the job ends.
    #[arg(long)]
    callback_url: Option<String>,
    /// A column for a contact field when its header does not say it: `--map "Work Email=email"`.
    #[arg(long = "map", value_parser = parse_map)]
    maps: Vec<(String, String)>,
    /// Follow the job with a progress bar until it ends, then write the results.
    #[arg(long)]
    wait: bool,
    /// Where --wait writes the results CSV (default: stdout).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

impl SubmitArgs {
    async fn run(self, api: &Api) -> Result<u8, Failure> {
        let op = self.operation.parse::<Operation>().ok()
            .filter(|o| o.provider().as_str() == self.provider)
            .ok_or_else(|| {
                Failure(
                    2,
                    format!(
                        "--operation {} is not an operation of --provider {} (enrow: email_find, email_verify, phone_find; fullenrich: enrich, reverse_email)",
                        self.operation, self.provider
                    ),
                )
            })?;
        if let Some(u) = &self.callback_url {
            // The API decides; loopback receivers work only against a local stack.
            let local = reqwest::Url::parse(&api.url)
                .is_ok_and(|a| matches!(a.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")));
            let policy = relay_shared::validate::CallbackPolicy {
                allow_loopback: local,
            };
            relay_shared::validate::validate_callback_url(u, policy)
                .map_err(|rule| Failure(2, format!("--callback-url {rule}: nothing was sent")))?;
        }
        let file = std::fs::File::open(&self.contacts)
            .map_err(|e| Failure(2, format!("cannot read {}: {e}", self.contacts.display())))?;
        let input = match table::read_contacts(std::io::BufReader::new(file), op, &self.maps) {
            Ok(input) => input,
            Err(errors) => {
                for e in &errors {
                    eprintln!("{}: {e}", self.contacts.display());
                }
                return Err(Failure(
                    2,
                    format!("{} bad row(s): nothing was sent", errors.len()),
                ));
            }
        };
        let mut body = json!({"provider": self.provider, "operation": self.operation,
            "contacts": input.contacts});
        if let Some(n) = &self.name {
            body["name"] = json!(n);
        }
        if let Some(u) = &self.callback_url {
            body["callback_url"] = json!(u);
        }
        let client = client(api)?;
        let job = client
            .call(
                reqwest::Method::POST,
                "/jobs",
                Some(&body),
                self.idempotency_key.as_deref(),
            )
            .await?;
        let id = job["job_id"].as_str().unwrap_or_default().to_string();
        eprintln!(
            "{id}: {} contacts accepted in {} chunk(s)",
            job["contacts"], job["chunks"]
        );
        if !self.wait {
            println!("{id}");
            return Ok(0);
        }
        let state = follow(&client, &id, input.contacts.len() as u64).await?;
        let rows = client.results(&id, 1000).await?;
        table::write_with_input(output(&self.out)?, &input, &rows)
            .map_err(|e| Failure(2, format!("cannot write the results: {e}")))?;
        Ok(ended(&id, &state))
    }
}

/// Polls the job every 2 s with a progress bar (done/total, found, ETA) until it ends.
async fn follow(client: &Client, id: &str, total: u64) -> Result<Value, Failure> {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bar:30} {pos}/{len} done, {msg} (ETA {eta})",
        )
        .expect("template"),
    );
    loop {
        let state = client.get(&format!("/jobs/{id}")).await?;
        bar.set_position(state["done"].as_u64().unwrap_or(0));
        bar.set_message(format!("{} found", state["found"].as_u64().unwrap_or(0)));
        let status = state["status"].as_str().unwrap_or_default();
        if matches!(status, "completed" | "partially_failed" | "failed") {
            bar.finish_and_clear();
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Prints how a job ended; its exit code: 0 completed, 1 otherwise.
fn ended(id: &str, state: &Value) -> u8 {
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

async fn status(api: &Api, id: &str) -> Result<u8, Failure> {
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
    if let Some(e) = state["error"]["message"].as_str() {
        println!("{id}: {e}");
    }
    Ok(0)
}

async fn jobs(api: &Api, limit: usize) -> Result<u8, Failure> {
    let page = client(api)?
        .get(&format!("/jobs?limit={}", limit.clamp(1, 100)))
        .await?;
    for j in page["jobs"].as_array().into_iter().flatten() {
        println!(
            "{}  {:<16}  {:<10} {:<13} {}/{} done  {}",
            j["job_id"].as_str().unwrap_or_default(),
            j["status"].as_str().unwrap_or_default(),
            j["provider"].as_str().unwrap_or_default(),
            j["operation"].as_str().unwrap_or_default(),
            j["done"],
            j["contacts"],
            j["name"].as_str().unwrap_or_default(),
        );
    }
    Ok(0)
}

async fn cancel(api: &Api, id: &str) -> Result<u8, Failure> {
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

async fn results(
    api: &Api,
    id: &str,
    format: Format,
    out: Option<std::path::PathBuf>,
) -> Result<u8, Failure> {
    let rows = client(api)?.results(id, 1000).await?;
    let mut w = output(&out)?;
    let written = match format {
        Format::Csv => table::write_results(&mut w, &rows).map_err(|e| e.to_string()),
        Format::Ndjson => rows
            .iter()
            .try_for_each(|r| writeln!(w, "{r}"))
            .map_err(|e| e.to_string()),
        Format::Json => writeln!(w, "{}", Value::Array(rows)).map_err(|e| e.to_string()),
    };
    written.map_err(|e| Failure(2, format!("cannot write the results: {e}")))?;
    Ok(0)
}

async fn dlqs(queues: &Queues) -> Result<Vec<Dlq>, DlqError> {
    let sqs = relay_shared::aws::sqs(&relay_shared::aws::load().await);
    match (&queues.stack, &queues.dlq) {
        (Some(stack), _) => Dlq::of_stack(&sqs, stack).await,
        (None, Some(url)) => Ok(vec![Dlq::new(sqs, url)]),
        (None, None) => Err(DlqError::Usage(
            "which queues? give --stack NAME (or RELAY_STACK) or --dlq URL (or RELAY_DLQ_URL)"
                .into(),
        )),
    }
}

async fn dlq(command: DlqCommand) -> Result<u8, Failure> {
    match command {
        DlqCommand::List { queues } => {
            for q in dlqs(&queues).await? {
                let s = q.summary().await?;
                println!("{}: {} message(s)", q.name(), s.total);
                if s.in_flight > 0 {
                    println!("  ({} more held by another reader right now)", s.in_flight);
                }
                if s.total > 0 {
                    println!("  by reason:");
                    for (reason, n) in &s.by_reason {
                        println!("    {n:>6}  {reason}");
                    }
                    println!("  by job:");
                    for (job, n) in &s.by_job {
                        println!("    {n:>6}  {job}");
                    }
                }
            }
            Ok(0)
        }
        DlqCommand::Replay {
            queues,
            reason,
            job,
            dry_run,
            to,
        } => {
            let filter = Filter { reason, job };
            for q in dlqs(&queues).await? {
                let to = match &to {
                    Some(t) => t.clone(),
                    None => q.source().await?,
                };
                let dest = to.rsplit('/').next().unwrap_or(&to).to_string();
                let r = q.replay(&to, &filter, dry_run).await?;
                if dry_run {
                    println!(
                        "{}: would move {} message(s) to {dest}; {} do not match",
                        q.name(),
                        r.would_move,
                        r.left
                    );
                } else {
                    println!(
                        "{}: moved {} message(s) to {dest}; {} do not match and stay{}",
                        q.name(),
                        r.moved,
                        r.left,
                        if r.failed > 0 {
                            format!("; {} could not be sent and stay", r.failed)
                        } else {
                            String::new()
                        }
                    );
                }
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
