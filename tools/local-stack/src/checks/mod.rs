//! Template checks: the template and the code must name the same things. Every function binary has
//! a function (and no function lacks a binary); every environment variable a function's config
//! requires is set, and every one set is read; every route the code serves is routed, and only
//! those; each SQS consumer reports batch item failures from a queue with a DLQ and a visibility
//! timeout at least 6x the consumer's; each function's policy grants exactly the actions its code
//! calls, on the resources it calls them on.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use relay_shared::config::{ApiConfig, Env, FetchConfig, IngestConfig, SweepConfig, WorkerConfig};
use serde_yaml::Value;

use crate::{Template, tagged};

mod monitoring;
mod resources;

use monitoring::{check_limits, check_monitoring};
use resources::{
    check_consumers, check_environment, check_functions, check_policies, check_routes,
    check_secrets,
};

/// (logical id, binary, config).
pub const FUNCTIONS: [(&str, &str, &str); 5] = [
    ("WebhookIngestFunction", "webhook-ingest", "ingest"),
    ("BulkFetchFunction", "bulk-fetch", "fetch"),
    ("JobSubmitFunction", "job-submit", "api"),
    ("JobSubmitWorkerFunction", "job-submit-worker", "worker"),
    ("SweeperFunction", "sweeper", "sweep"),
];

/// The routes the code serves: (function, method, path).
pub const ROUTES: [(&str, &str, &str); 5] = [
    ("WebhookIngestFunction", "POST", "/webhooks/{proxy+}"),
    ("JobSubmitFunction", "ANY", "/jobs"),
    ("JobSubmitFunction", "ANY", "/jobs/{proxy+}"),
    ("JobSubmitFunction", "GET", "/openapi.json"),
    ("JobSubmitFunction", "GET", "/orphans"),
];

/// SQS consumers: (function, queue).
pub const CONSUMERS: [(&str, &str); 2] = [
    ("BulkFetchFunction", "WebhookQueue"),
    ("JobSubmitWorkerFunction", "SubmitQueue"),
];

/// The AWS calls each function's code makes: (function, action, resource logical id).
pub const CALLS: &[(&str, &str, &str)] = &[
    ("WebhookIngestFunction", "ssm:GetParameter", "SSM"),
    ("BulkFetchFunction", "ssm:GetParameter", "SSM"),
    ("JobSubmitFunction", "ssm:GetParameter", "SSM"),
    ("JobSubmitWorkerFunction", "ssm:GetParameter", "SSM"),
    ("WebhookIngestFunction", "sqs:SendMessage", "WebhookQueue"),
    ("WebhookIngestFunction", "s3:PutObject", "PayloadBucket"),
    (
        "BulkFetchFunction",
        "sqs:SendMessage",
        "WebhookDeadLetterQueue",
    ),
    ("BulkFetchFunction", "sqs:SendMessage", "WebhookQueue"),
    // A waterfall step's new chunks, asked to start.
    ("BulkFetchFunction", "sqs:SendMessage", "SubmitQueue"),
    // A waterfall step's chunk rows, read by index to pass its contacts on.
    ("BulkFetchFunction", "dynamodb:BatchGetItem", "JobsTable"),
    (
        "JobSubmitWorkerFunction",
        "dynamodb:BatchGetItem",
        "JobsTable",
    ),
    ("BulkFetchFunction", "s3:GetObject", "PayloadBucket"),
    // The body of a delivery dropped for a deleted job.
    ("BulkFetchFunction", "s3:DeleteObject", "PayloadBucket"),
    // Result rows conditional on their chunk (nothing lands after an erasure).
    (
        "BulkFetchFunction",
        "dynamodb:ConditionCheckItem",
        "JobsTable",
    ),
    ("BulkFetchFunction", "dynamodb:PutItem", "DedupeTable"),
    ("BulkFetchFunction", "dynamodb:UpdateItem", "DedupeTable"),
    ("BulkFetchFunction", "dynamodb:DeleteItem", "DedupeTable"),
    ("BulkFetchFunction", "dynamodb:GetItem", "JobsTable"),
    ("BulkFetchFunction", "dynamodb:Query", "JobsTable"),
    ("BulkFetchFunction", "dynamodb:PutItem", "JobsTable"),
    ("BulkFetchFunction", "dynamodb:UpdateItem", "JobsTable"),
    ("BulkFetchFunction", "dynamodb:BatchWriteItem", "JobsTable"),
    ("JobSubmitFunction", "dynamodb:GetItem", "JobsTable"),
    ("JobSubmitFunction", "dynamodb:Query", "JobsTable"),
    ("JobSubmitFunction", "dynamodb:PutItem", "JobsTable"),
    ("JobSubmitFunction", "dynamodb:UpdateItem", "JobsTable"),
    ("JobSubmitFunction", "dynamodb:BatchWriteItem", "JobsTable"),
    // GET /jobs: the `recent` index (keys only), then the heads.
    ("JobSubmitFunction", "dynamodb:BatchGetItem", "JobsTable"),
    ("JobSubmitFunction", "sqs:SendMessage", "SubmitQueue"),
    ("JobSubmitWorkerFunction", "dynamodb:GetItem", "JobsTable"),
    ("JobSubmitWorkerFunction", "dynamodb:Query", "JobsTable"),
    ("JobSubmitWorkerFunction", "dynamodb:PutItem", "JobsTable"),
    (
        "JobSubmitWorkerFunction",
        "dynamodb:UpdateItem",
        "JobsTable",
    ),
    (
        "JobSubmitWorkerFunction",
        "dynamodb:BatchWriteItem",
        "JobsTable",
    ),
    // The take of a chunk for its start is fenced by the job's head (a condition check in a
    // transaction); a wrong adoption's link is deleted.
    (
        "JobSubmitWorkerFunction",
        "dynamodb:ConditionCheckItem",
        "JobsTable",
    ),
    (
        "JobSubmitWorkerFunction",
        "dynamodb:DeleteItem",
        "JobsTable",
    ),
    ("JobSubmitWorkerFunction", "sqs:SendMessage", "SubmitQueue"),
    (
        "JobSubmitWorkerFunction",
        "dynamodb:ConditionCheckItem",
        "JobsTable",
    ),
    // A deleted job's erasure: its claim-checked bodies, found by the job's prefix.
    ("JobSubmitWorkerFunction", "s3:ListBucket", "PayloadBucket"),
    (
        "JobSubmitWorkerFunction",
        "s3:DeleteObject",
        "PayloadBucket",
    ),
    // A job the worker ends asks for its completion callback.
    ("JobSubmitWorkerFunction", "sqs:SendMessage", "WebhookQueue"),
    // The sweeper reads the `due` index (the table's ARN + /index/due) and takes due chunks.
    ("SweeperFunction", "dynamodb:Query", "JobsTable"),
    ("SweeperFunction", "dynamodb:UpdateItem", "JobsTable"),
    ("SweeperFunction", "sqs:SendMessage", "WebhookQueue"),
    // Starts whose messages were lost, and overdue erasures, go again on the submit queue.
    ("SweeperFunction", "sqs:SendMessage", "SubmitQueue"),
];

fn as_list(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Sequence(s)) => s.iter().collect(),
        Some(v) => vec![v],
        None => vec![],
    }
}

/// The logical ids a policy `Resource` points at (`!GetAtt X.Arn`, `!Sub "${X.Arn}/…"`, `!Ref X`).
fn resource_ids(v: &Value) -> Vec<String> {
    let text = match v {
        Value::Tagged(t) => match &t.value {
            Value::String(s) => s.clone(),
            Value::Sequence(s) => s
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("."),
            _ => String::new(),
        },
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    if text.contains(":ssm:") {
        return vec!["SSM".into()];
    }
    let text = text.replace("${", "").replace('}', "");
    // `X.Arn`, `X.Arn/deliveries/*`: the logical id is what precedes the first dot.
    text.split(['/', ' '])
        .next()
        .and_then(|part| part.split('.').next())
        .filter(|id| !id.is_empty())
        .map(|id| vec![id.to_string()])
        .unwrap_or_default()
}

/// A value for a template variable: its literal, its parameter's default, or a placeholder
/// that passes any check for a URL or a secret.
fn value_of(v: &Value, defaults: &BTreeMap<String, String>) -> String {
    const PLACEHOLDER: &str = "https://placeholder.example/0123456789abcdef";
    match (v, tagged(v, "!Ref").and_then(Value::as_str)) {
        (_, Some(target)) => defaults
            .get(target)
            .filter(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| PLACEHOLDER.to_string()),
        (Value::String(s), None) => s.clone(),
        (Value::Number(n), None) => n.to_string(),
        _ => PLACEHOLDER.to_string(),
    }
}

/// Reads `config` from `vars` the way the function does; returns the error (if any) and every
/// variable the code asked for.
fn read_config(
    config: &str,
    vars: &BTreeMap<String, String>,
) -> (Option<String>, BTreeSet<String>) {
    let asked = RefCell::new(BTreeSet::new());
    let env = Env(|k: &str| {
        asked.borrow_mut().insert(k.to_string());
        vars.get(k).cloned()
    });
    let error = match config {
        "ingest" => IngestConfig::from_env(&env).err(),
        "fetch" => FetchConfig::from_env(&env).err(),
        "api" => ApiConfig::from_env(&env).err(),
        "sweep" => SweepConfig::from_env(&env).err(),
        _ => WorkerConfig::from_env(&env).err(),
    };
    (error.map(|e| e.to_string()), asked.into_inner())
}

/// What every check reads: the template, its functions by id, the parameters' defaults.
pub(super) struct Checked<'a> {
    template: &'a Template,
    functions: BTreeMap<&'a str, &'a Value>,
    defaults: &'a BTreeMap<String, String>,
}

/// Every mismatch between the template and the code; empty when they agree.
pub fn check(template: &Template, parameter_defaults: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let checked = Checked {
        template,
        functions: template.of_type("AWS::Serverless::Function").collect(),
        defaults: parameter_defaults,
    };
    for step in [
        check_functions,
        check_environment,
        check_routes,
        check_consumers,
        check_policies,
        check_secrets,
    ] {
        step(&checked, &mut problems);
    }
    problems.extend(check_monitoring(template));
    problems.extend(check_limits(template, parameter_defaults));
    problems
}

/// The template's parameter defaults.
pub fn parameter_defaults(text: &str) -> BTreeMap<String, String> {
    let doc: Value = serde_yaml::from_str(text).unwrap_or(Value::Null);
    doc.get("Parameters")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let d = v.get("Default")?;
            let d = match d {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k.as_str()?.to_string(), d))
        })
        .collect()
}
