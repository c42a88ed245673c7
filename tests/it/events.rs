//! `fixtures/events/`: an event file for every function, for `cargo lambda invoke --data-file`
//! (the `--data-example` downloads are not possible offline). Each file decodes as the event its
//! function takes, its webhook tokens open under the local stack's webhook secret, and
//! `cargo lambda invoke` runs each one through watch.

use std::path::PathBuf;
use std::time::Duration;

use relay_local_stack::dev::{DEV_WEBHOOK_SECRET, DevStack};
use relay_shared::Provider;
use relay_shared::auth::WebhookSecret;
use relay_shared::envelope::Envelope;
use serde_json::Value;

use crate::e2e::options;

/// (file, the function it is for).
const EVENTS: [(&str, &str); 10] = [
    ("apigw-webhook-fullenrich-batch.json", "webhook-ingest"),
    ("apigw-webhook-fullenrich-contact.json", "webhook-ingest"),
    ("apigw-webhook-enrow-event.json", "webhook-ingest"),
    ("apigw-jobs-post.json", "job-submit"),
    ("apigw-jobs-get.json", "job-submit"),
    ("sqs-webhook-batch.json", "bulk-fetch"),
    ("sqs-enrow-bulk.json", "bulk-fetch"),
    ("sqs-fullenrich-batch.json", "bulk-fetch"),
    ("sqs-submit-chunk.json", "job-submit-worker"),
    ("schedule-sweeper.json", "sweeper"),
];

fn dir() -> PathBuf {
    relay_local_stack::repo_root().join("fixtures/events")
}

fn load(file: &str) -> Value {
    let p = dir().join(file);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn every_function_has_event_files_and_every_file_decodes_as_its_functions_event() {
    // Every file in the folder is listed, and every function has one.
    let mut on_disk: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = EVENTS.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "fixtures/events and EVENTS differ");
    for (_, binary, _) in relay_local_stack::checks::FUNCTIONS {
        assert!(
            EVENTS.iter().any(|(_, f)| *f == binary),
            "no event file for {binary}"
        );
    }

    let secret = WebhookSecret::new(DEV_WEBHOOK_SECRET);
    let mut kinds = std::collections::BTreeSet::new();
    for (file, function) in EVENTS {
        let event = load(file);
        match function {
            "webhook-ingest" | "job-submit" => {
                // lambda_http reads it as an API Gateway HTTP API (payload v2) request.
                let req = lambda_http::request::from_str(&event.to_string())
                    .unwrap_or_else(|e| panic!("{file}: not an API Gateway v2 event: {e}"));
                let path = req.uri().path().to_string();
                if function == "webhook-ingest" {
                    // /webhooks/{provider}/{job}/{hook}/{token}, the token valid for `make watch`.
                    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                    assert_eq!(parts.len(), 5, "{file}: {path}");
                    let provider: Provider = parts[1].parse().unwrap();
                    assert!(
                        secret.verify(provider, parts[2], parts[4]),
                        "{file}: its token does not open under the dev webhook secret"
                    );
                } else {
                    assert!(path.starts_with("/jobs"), "{file}: {path}");
                }
            }
            "bulk-fetch" | "job-submit-worker" => {
                let sqs: aws_lambda_events::event::sqs::SqsEvent =
                    serde_json::from_value(event.clone())
                        .unwrap_or_else(|e| panic!("{file}: not an SQS event: {e}"));
                assert!(!sqs.records.is_empty(), "{file}: no records");
                for r in &sqs.records {
                    assert_eq!(r.event_source.as_deref(), Some("aws:sqs"), "{file}");
                    let body = r.body.as_deref().unwrap();
                    if function == "bulk-fetch" {
                        let env = Envelope::from_json(body)
                            .unwrap_or_else(|e| panic!("{file}: not an envelope: {e}"));
                        let body_kind = serde_json::to_value(&env.body).unwrap()["kind"]
                            .as_str()
                            .unwrap()
                            .to_string();
                        kinds.insert(format!(
                            "{}/{}/{body_kind}",
                            env.provider.as_str(),
                            env.hook.as_str()
                        ));
                    } else {
                        let chunk: job_submit::SubmitChunk = serde_json::from_str(body)
                            .unwrap_or_else(|e| panic!("{file}: not a submit message: {e}"));
                        assert!(!chunk.job_id.is_empty());
                    }
                }
            }
            "sweeper" => {
                assert_eq!(event["source"], "aws.events", "{file}");
                assert_eq!(event["detail-type"], "Scheduled Event", "{file}");
            }
            other => panic!("{other}?"),
        }
    }
    // An envelope of each hook, and both inline body kinds.
    for k in [
        "fullenrich/batch/text",
        "fullenrich/contact/text",
        "enrow/event/text",
        "enrow/event/base64",
    ] {
        assert!(
            kinds.contains(k),
            "no envelope {k} in the SQS events: {kinds:?}"
        );
    }
}

/// `cargo lambda invoke <function> --data-file fixtures/events/<file>` against the stack's
/// watch, for every file: each function answers (an API Gateway response, a batch response).
#[tokio::test]
async fn cargo_lambda_invoke_runs_every_event_file_through_watch() {
    let mut opts = options();
    opts.watch_only = true;
    let stack = DevStack::start(opts).await.expect("dev stack");
    let port = stack.watch_url.rsplit(':').next().unwrap().to_string();
    let host = relay_local_stack::watch::loopback().to_string();
    for (file, function) in EVENTS {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new("cargo")
                .args(["lambda", "invoke", function, "--output-format", "json"])
                .args(["--invoke-address", &host, "--invoke-port", &port])
                .arg("--data-file")
                .arg(dir().join(file))
                .env("PATH", relay_local_stack::watch::venv_path())
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{file}: no answer in 120 s"))
        .expect("cargo lambda invoke");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file} → {function}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{file}: not JSON ({e}): {stdout}"));
        match function {
            "webhook-ingest" => {
                // Accepted: made durable on the webhook queue (the tokens are valid).
                assert_eq!(answer["statusCode"], 200, "{file}: {answer}");
                let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
                assert_eq!(body["status"], "accepted", "{file}: {answer}");
            }
            "job-submit" => {
                let status = answer["statusCode"].as_u64().unwrap_or(0);
                assert!((200..500).contains(&status), "{file}: {answer}");
            }
            "bulk-fetch" | "job-submit-worker" => {
                assert!(answer["batchItemFailures"].is_array(), "{file}: {answer}")
            }
            _ => {}
        }
    }
    // What ingest accepted is on the webhook queue, as on AWS.
    assert!(stack.queue_depth("WebhookQueue").await >= 3);
}
