//! `relay dlq`: the dead-letter queues (counts and reasons; replay, purge).

use clap::{Args, Subcommand};
use relay_cli::dlq::{Dlq, DlqError, Filter};

use crate::commands::common::Failure;

#[derive(Args)]
pub(crate) struct Queues {
    /// The CloudFormation stack (or local-stack prefix): every `{stack}-…DeadLetterQueue…`.
    #[arg(long, env = "RELAY_STACK", conflicts_with = "dlq")]
    pub(crate) stack: Option<String>,
    /// One dead-letter queue by URL.
    #[arg(long, env = "RELAY_DLQ_URL")]
    pub(crate) dlq: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum DlqCommand {
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

pub(crate) async fn dlqs(queues: &Queues) -> Result<Vec<Dlq>, DlqError> {
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

pub(crate) async fn dlq(command: DlqCommand) -> Result<u8, Failure> {
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
