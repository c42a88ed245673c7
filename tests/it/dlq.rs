//! `relay dlq` (issue: recovery and operations) on moto: a listing that counts by reason and job
//! and moves nothing, and replays that move parked and exhausted messages back to their source
//! queue, filtered, with a dry run.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::MessageAttributeValue;
use relay_cli::dlq::{Dlq, Filter, RETRIES_EXHAUSTED};

use crate::support::Stack;

const NO_CHUNK: &str = "provider id belongs to no chunk of this job";

fn envelope(job: &str, n: usize) -> String {
    serde_json::json!({"job_id": job, "n": n}).to_string()
}

/// Puts a message in the DLQ the way bulk-fetch parks one: body and `reason`/`job_id` attributes.
async fn park(stack: &Stack, job: &str, reason: &str, n: usize) {
    let attr = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .unwrap()
    };
    stack
        .sqs()
        .send_message()
        .queue_url(stack.res.queue_url("WebhookDeadLetterQueue"))
        .message_body(envelope(job, n))
        .message_attributes("reason", attr(reason))
        .message_attributes("job_id", attr(job))
        .send()
        .await
        .unwrap();
}

/// Sends a message to the webhook queue and fails it until SQS moves it to the DLQ
/// (`maxReceiveCount` 5 in the template).
async fn exhaust(stack: &Stack, job: &str, n: usize) {
    let sqs = stack.sqs();
    let queue = stack.res.queue_url("WebhookQueue");
    sqs.send_message()
        .queue_url(queue)
        .message_body(envelope(job, n))
        .send()
        .await
        .unwrap();
    for _ in 0..6 {
        let got = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for m in got.messages.unwrap_or_default() {
            sqs.change_message_visibility()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle.unwrap())
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
    }
}

async fn bodies(stack: &Stack, queue: &str) -> Vec<String> {
    let mut out: Vec<String> = Dlq::new(stack.sqs(), stack.res.queue_url(queue))
        .read_all()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.body)
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn dlq_list_counts_by_reason_and_job_and_replay_moves_what_the_filter_names() {
    let stack = Stack::new().await;
    park(&stack, "job_a", NO_CHUNK, 0).await;
    park(&stack, "job_a", NO_CHUNK, 1).await;
    park(&stack, "job_b", "undecodable body", 2).await;
    exhaust(&stack, "job_a", 3).await;
    exhaust(&stack, "job_b", 4).await;

    let dlq = Dlq::new(stack.sqs(), stack.res.queue_url("WebhookDeadLetterQueue"));
    let summary = dlq.summary().await.unwrap();
    assert_eq!(summary.total, 5);
    assert_eq!(
        summary.by_reason,
        BTreeMap::from([
            (NO_CHUNK.to_string(), 2),
            (RETRIES_EXHAUSTED.to_string(), 2),
            ("undecodable body".to_string(), 1),
        ])
    );
    assert_eq!(
        summary.by_job,
        BTreeMap::from([("job_a".to_string(), 3), ("job_b".to_string(), 2)]),
        "an exhausted message's job is read from its body"
    );
    // Listing moves nothing, and leaves everything visible at once.
    assert_eq!(dlq.summary().await.unwrap(), summary);

    let source = dlq.source().await.unwrap();
    assert_eq!(source, stack.res.queue_url("WebhookQueue"));

    let parked_a = Filter {
        reason: Some("NO CHUNK".into()),
        job: Some("job_a".into()),
    };
    let dry = dlq.replay(&source, &parked_a, true).await.unwrap();
    assert_eq!((dry.would_move, dry.moved, dry.left), (2, 0, 3));
    assert_eq!(
        dlq.summary().await.unwrap().total,
        5,
        "a dry run moves nothing"
    );

    let r = dlq.replay(&source, &parked_a, false).await.unwrap();
    assert_eq!((r.moved, r.left, r.failed), (2, 3, 0));
    assert_eq!(
        bodies(&stack, "WebhookQueue").await,
        vec![envelope("job_a", 0), envelope("job_a", 1)],
        "moved with their bodies as they were"
    );
    let r = dlq
        .replay(
            &source,
            &Filter {
                reason: Some("retries".into()),
                job: None,
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!((r.moved, r.left), (2, 1));
    assert_eq!(
        bodies(&stack, "WebhookDeadLetterQueue").await,
        vec![envelope("job_b", 2)]
    );
}

#[tokio::test]
async fn the_relay_binary_lists_and_replays_a_stacks_dlqs_and_says_what_to_do_without_one() {
    let stack = Stack::new().await;
    park(&stack, "job_a", NO_CHUNK, 0).await;
    let prefix = stack
        .res
        .queue_url("WebhookQueue")
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches("-WebhookQueue")
        .to_string();
    let bin = relay_local_stack::repo_root().join("target/debug/relay");
    let relay = |args: &[&str]| {
        std::process::Command::new(&bin)
            .args(args)
            .env("AWS_ENDPOINT_URL", &crate::support::moto().endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("RELAY_STACK")
            .env_remove("RELAY_DLQ_URL")
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (make functions builds it)", bin.display()))
    };
    let out = relay(&["dlq", "list", "--stack", &prefix]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("WebhookDeadLetterQueue: 1 message(s)"),
        "{text}"
    );
    assert!(text.contains(&format!("1  {NO_CHUNK}")), "{text}");
    assert!(
        text.contains("SubmitDeadLetterQueue: 0 message(s)"),
        "{text}"
    );
    assert!(!text.contains("\"n\""), "no body is printed: {text}");

    let out = relay(&["dlq", "replay", "--stack", &prefix, "--job", "job_a"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("WebhookDeadLetterQueue: moved 1 message(s) to")
            && text.contains("-WebhookQueue"),
        "{text}"
    );
    assert_eq!(
        bodies(&stack, "WebhookQueue").await,
        vec![envelope("job_a", 0)]
    );

    let out = relay(&["dlq", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stack"));
    let out = relay(&["dlq", "list", "--stack", "no-such-stack"]);
    assert_eq!(out.status.code(), Some(2));
}
