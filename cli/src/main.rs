//! `relay`: the operator's and the client's command line.
//!
//! Exit codes: 0 done; 1 a job waited for ended failed or partially failed; 2 bad input (a row,
//! a flag, an unknown queue); 3 the API (or AWS) could not be reached or refused the credentials.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod commands;

use crate::commands::common::{Failure, FileArgs};
use crate::commands::dlq::{DlqCommand, dlq};
use crate::commands::jobs::{cancel, jobs, orphans, results, status};
use crate::commands::retry::retry;
use crate::commands::submit::SubmitArgs;
use crate::commands::wait::wait;

#[derive(Parser)]
#[command(name = "relay", version, about = "Enrich Relay from the command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the jobs API is, and the token (never echoed: not in help, errors or output). Every
/// command but `submit --dry-run` needs both (a dry run without them prices the job locally).
#[derive(Args, Clone)]
pub(crate) struct Api {
    /// The jobs API's base URL (https; plain http only to a loopback address).
    #[arg(long, env = "RELAY_URL")]
    pub(crate) url: Option<String>,
    /// The API's bearer token.
    #[arg(long, env = "RELAY_API_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Csv,
    Ndjson,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Submits the contacts of a CSV file (a CRM export as it is) as one job; with --wait,
    /// follows it and writes the results file (the input's columns, then the relay_ columns).
    Submit {
        #[command(flatten)]
        api: Api,
        #[command(flatten)]
        submit: SubmitArgs,
    },
    /// Follows a job until it ends and writes its results file: with --in (the file it was
    /// submitted from, with the same --map/--keep), the same file `submit --wait` writes. Resumes
    /// or redoes an interrupted `submit --wait`.
    Wait {
        #[command(flatten)]
        api: Api,
        job: String,
        #[command(flatten)]
        file: FileArgs,
        /// Where to write the results file (default: stdout).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// A new job of the contacts of JOB that ended failed for a reason a retry can change
    /// (timed out, refused, lost by the provider, out of credits); never the ones whose start may
    /// have been billed (start_unconfirmed) unless --include-unconfirmed. Prints the new job's id;
    /// with --wait, follows it and writes its results file.
    Retry {
        #[command(flatten)]
        api: Api,
        job: String,
        /// Also send the contacts whose start was never confirmed (they may be billed twice).
        #[arg(long)]
        include_unconfirmed: bool,
        /// Follow the new job until it ends and write its results file.
        #[arg(long)]
        wait: bool,
        /// Where to write the results file with --wait (default: stdout).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Write the results file without the UTF-8 byte-order mark.
        #[arg(long)]
        no_bom: bool,
    },
    /// A job's status, counts, credits used and times.
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
    /// Events of Enrow's dashboard (global) webhook for searches the relay did not start,
    /// newest first (kept 30 days): the search's id, the event, its cost, when it came.
    Orphans {
        #[command(flatten)]
        api: Api,
        /// How many (1–100).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Where the page starts: the `next_cursor` an earlier page printed.
        #[arg(long)]
        cursor: Option<String>,
        /// The API's page as JSON instead of one line per orphan.
        #[arg(long)]
        json: bool,
    },
    /// The URL to set as Enrow's dashboard (global) webhook, from the deployment's webhook
    /// secret: `<base>/webhooks/enrow/global/<token>`.
    GlobalWebhookUrl {
        /// The stack's WebhookBaseUrl output (PUBLIC_BASE_URL).
        #[arg(long, env = "PUBLIC_BASE_URL")]
        base: String,
        /// The webhook secret (the SSM parameter `<SecretsPrefix>/webhook-secret`).
        #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
    },
    /// Cancels a job: chunks not started are not started; started ones finish and are kept.
    Cancel {
        #[command(flatten)]
        api: Api,
        job: String,
    },
    /// A job's results, every page. As CSV with --in (the file it was submitted from): the same
    /// file `submit --wait` writes; without it, the API's CSV (index, custom, relay_ columns).
    Results {
        #[command(flatten)]
        api: Api,
        job: String,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        #[command(flatten)]
        file: FileArgs,
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

#[tokio::main]
async fn main() -> ExitCode {
    // A closed pipe (`relay … | head`) ends the command quietly, as it does any Unix tool,
    // instead of a panic on the next write to stdout.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal before any thread writes.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dlq { command } => dlq(command).await,
        Command::Submit { api, submit } => submit.run(&api).await,
        Command::Wait {
            api,
            job,
            file,
            out,
        } => wait(&api, &job, &file, out).await,
        Command::Retry {
            api,
            job,
            include_unconfirmed,
            wait,
            out,
            no_bom,
        } => retry(&api, &job, include_unconfirmed, wait, out, no_bom).await,
        Command::Status { api, job } => status(&api, &job).await,
        Command::Jobs { api, limit } => jobs(&api, limit).await,
        Command::Orphans {
            api,
            limit,
            cursor,
            json,
        } => orphans(&api, limit, cursor.as_deref(), json).await,
        Command::GlobalWebhookUrl { base, secret } => {
            let secret = relay_shared::auth::WebhookSecret::new(secret.into_bytes());
            let path =
                relay_shared::auth::global_webhook_path(&secret, relay_shared::Provider::Enrow);
            println!("{}{path}", base.trim_end_matches('/'));
            Ok(0)
        }
        Command::Cancel { api, job } => cancel(&api, &job).await,
        Command::Results {
            api,
            job,
            format,
            file,
            out,
        } => results(&api, &job, format, &file, out).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure(code, message)) => {
            eprintln!("relay: {message}");
            ExitCode::from(code)
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
