//! `relay`: the operator's and the client's command line.
//!
//! Exit codes: 0 done; 2 bad input (a flag, an unknown queue); 3 the AWS API could not be reached
//! or refused the credentials.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use relay_cli::dlq::{Dlq, DlqError, Filter};

#[derive(Parser)]
#[command(name = "relay", version, about = "Enrich Relay from the command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(DlqError::Usage(m)) => {
            eprintln!("relay: {m}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!(
                "relay: {e}\n(check the AWS credentials and region, or AWS_ENDPOINT_URL for the local stack)"
            );
            ExitCode::from(3)
        }
    }
}

async fn dlqs(queues: &Queues) -> Result<Vec<Dlq>, DlqError> {
    let sqs = relay_shared::aws::sqs(&relay_shared::aws::load().await);
    match (&queues.stack, &queues.dlq) {
        (Some(stack), _) => Dlq::of_stack(&sqs, stack).await,
        (None, Some(url)) => Ok(vec![Dlq::new(sqs, url)]),
        (None, None) => Err(DlqError::Usage(
            "which queues? give --stack NAME (or RELAY_STACK) or --dlq URL (or RELAY_DLQ_URL)".into(),
        )),
    }
}

async fn run(cli: Cli) -> Result<(), DlqError> {
    match cli.command {
        Command::Dlq {
            command: DlqCommand::List { queues },
        } => {
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
            Ok(())
        }
        Command::Dlq {
            command:
                DlqCommand::Replay {
                    queues,
                    reason,
                    job,
                    dry_run,
                    to,
                },
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
            Ok(())
        }
    }
}
