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
struct Checked<'a> {
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

/// The functions and their binaries: one each way.
fn check_functions(c: &Checked, problems: &mut Vec<String>) {
    let Checked {
        functions,
        template,
        ..
    } = c;
    for (id, binary, _) in FUNCTIONS {
        match template.resources.get(id) {
            None => problems.push(format!("binary {binary}: no function {id} in the template")),
            Some(r) => {
                let built = r
                    .get("Metadata")
                    .and_then(|m| m.get("BuildProperties"))
                    .and_then(|b| b.get("Binary"))
                    .and_then(Value::as_str);
                if built != Some(binary) {
                    problems.push(format!(
                        "{id}: builds {built:?}, the code's binary is {binary}"
                    ));
                }
            }
        }
    }
    for id in functions.keys() {
        if !FUNCTIONS.iter().any(|(f, _, _)| f == id) {
            problems.push(format!("{id}: a function with no binary in the code"));
        }
    }
}

/// Each function's environment: what its config reads, and nothing it does not.
fn check_environment(c: &Checked, problems: &mut Vec<String>) {
    let Checked {
        functions,
        defaults: parameter_defaults,
        ..
    } = c;
    for (id, _, config) in FUNCTIONS {
        let Some(props) = functions.get(id) else {
            continue;
        };
        let vars: BTreeMap<String, String> = props
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), value_of(v, parameter_defaults))))
            .collect();
        // `<VAR>_SSM` names the SSM parameter the function reads `<VAR>` from at cold start.
        let mut resolved = vars.clone();
        for var in relay_shared::secrets::SECRET_VARS {
            if vars.contains_key(&relay_shared::secrets::ssm_var(var)) {
                resolved.insert(var.to_string(), "ssm-secret-placeholder-0123456789".into());
            }
        }
        let (error, mut asked) = read_config(config, &resolved);
        // A secret's parameter counts as read only where the code reads the secret: each
        // function is given (and granted) only the secrets it uses.
        for var in relay_shared::secrets::SECRET_VARS {
            if asked.contains(var) {
                asked.insert(relay_shared::secrets::ssm_var(var));
            }
        }
        if let Some(e) = error {
            problems.push(format!("{id}: {e}"));
        }
        for var in vars.keys() {
            if !asked.contains(var) {
                problems.push(format!("{id}: sets {var}, which the code never reads"));
            }
        }
    }
}

/// Routes: the API's routes and the template's events, the same set.
fn check_routes(c: &Checked, problems: &mut Vec<String>) {
    let Checked { functions, .. } = c;
    let mut routed = BTreeSet::new();
    for (id, props) in functions {
        for (_, event) in props
            .get("Events")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                continue;
            }
            let p = event.get("Properties");
            let method = p
                .and_then(|p| p.get("Method"))
                .and_then(Value::as_str)
                .unwrap_or("ANY")
                .to_ascii_uppercase();
            let path = p
                .and_then(|p| p.get("Path"))
                .and_then(Value::as_str)
                .unwrap_or("");
            routed.insert((id.to_string(), method, path.to_string()));
        }
    }
    let served: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|(f, m, p)| (f.to_string(), m.to_string(), p.to_string()))
        .collect();
    for r in served.difference(&routed) {
        problems.push(format!(
            "route {} {} of {} is not in the template",
            r.1, r.2, r.0
        ));
    }
    for r in routed.difference(&served) {
        problems.push(format!(
            "route {} {} to {} is served by no code",
            r.1, r.2, r.0
        ));
    }
}

/// SQS consumers: which function reads which queue, and how.
fn check_consumers(c: &Checked, problems: &mut Vec<String>) {
    let Checked {
        functions,
        template,
        ..
    } = c;
    for (id, queue) in CONSUMERS {
        let Some(props) = functions.get(id) else {
            continue;
        };
        let timeout = props.get("Timeout").and_then(Value::as_u64).unwrap_or(3);
        let source = props
            .get("Events")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .map(|(_, e)| e)
            .find(|e| {
                e.get("Type").and_then(Value::as_str) == Some("SQS")
                    && e.get("Properties")
                        .and_then(|p| p.get("Queue"))
                        .map(resource_ids)
                        .is_some_and(|ids| ids.iter().any(|i| i == queue))
            });
        match source {
            None => problems.push(format!("{id}: no SQS event source on {queue}")),
            Some(e) => {
                let types = e
                    .get("Properties")
                    .and_then(|p| p.get("FunctionResponseTypes"));
                if !as_list(types)
                    .iter()
                    .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
                {
                    problems.push(format!(
                        "{id}: its {queue} event source does not report batch item failures"
                    ));
                }
            }
        }
        let q = template.properties(queue);
        let visibility = q
            .and_then(|q| q.get("VisibilityTimeout"))
            .and_then(Value::as_u64)
            .unwrap_or(30);
        if visibility < 6 * timeout {
            problems.push(format!(
                "{queue}: visibility timeout {visibility} s is under 6x {id}'s {timeout} s"
            ));
        }
        if q.and_then(|q| q.get("RedrivePolicy")).is_none() {
            problems.push(format!("{queue}: no DLQ redrive"));
        }
    }
}

/// Policies: exactly the calls each function makes.
fn check_policies(c: &Checked, problems: &mut Vec<String>) {
    let Checked { functions, .. } = c;
    let mut granted: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (id, props) in functions {
        for policy in as_list(props.get("Policies")) {
            for st in as_list(policy.get("Statement")) {
                for action in as_list(st.get("Action")).iter().filter_map(|a| a.as_str()) {
                    for resource in as_list(st.get("Resource")) {
                        for rid in resource_ids(resource) {
                            granted.insert((id.to_string(), action.to_string(), rid));
                        }
                    }
                }
            }
        }
    }
    let needed: BTreeSet<(String, String, String)> = CALLS
        .iter()
        .map(|(f, a, r)| (f.to_string(), a.to_string(), r.to_string()))
        .collect();
    for (f, a, r) in needed.difference(&granted) {
        problems.push(format!(
            "{f}: its code calls {a} on {r}, which its policy does not grant"
        ));
    }
    for (f, a, r) in granted.difference(&needed) {
        problems.push(format!(
            "{f}: its policy grants {a} on {r}, which its code never calls"
        ));
    }
}

/// Secrets: each function may read exactly the SSM parameters its variables name.
fn check_secrets(c: &Checked, problems: &mut Vec<String>) {
    let Checked { functions, .. } = c;
    for (id, props) in functions {
        let text = |v: &Value| match v {
            Value::Tagged(t) => t.value.as_str().unwrap_or("").to_string(),
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        let named: BTreeSet<String> = props
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str().is_some_and(|k| k.ends_with("_SSM")))
            .filter_map(|(_, v)| text(v).rsplit_once('/').map(|(_, p)| p.to_string()))
            .collect();
        let mut readable = BTreeSet::new();
        for policy in as_list(props.get("Policies")) {
            for st in as_list(policy.get("Statement")) {
                if !as_list(st.get("Action"))
                    .iter()
                    .any(|a| a.as_str() == Some("ssm:GetParameter"))
                {
                    continue;
                }
                for resource in as_list(st.get("Resource")) {
                    if let Some((_, p)) = text(resource).rsplit_once('/') {
                        readable.insert(p.to_string());
                    }
                }
            }
        }
        for p in named.difference(&readable) {
            problems.push(format!(
                "{id}: reads SSM parameter {p}, which its policy does not grant"
            ));
        }
        for p in readable.difference(&named) {
            problems.push(format!(
                "{id}: may read SSM parameter {p}, which none of its variables names"
            ));
        }
    }
}

/// A number in the template: a literal, or a `!Ref` to a parameter with a numeric default.
fn number_of(v: Option<&Value>, defaults: &BTreeMap<String, String>) -> Option<u64> {
    let v = v?;
    match tagged(v, "!Ref").and_then(Value::as_str) {
        Some(param) => defaults.get(param)?.parse().ok(),
        None => v.as_u64(),
    }
}

/// Limits that keep a flood of requests from taking everything (issue 24 item 17): API Gateway
/// throttles every route, the webhook route on its own limits; every function has reserved
/// concurrency, an SQS consumer's at least its event source's `MaximumConcurrency`. And what is
/// kept expires: claim-checked bodies with the dedupe retention (item 12).
fn check_limits(template: &Template, defaults: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let api = template.properties("HttpApi");
    let throttled = |settings: Option<&Value>| {
        number_of(
            settings.and_then(|s| s.get("ThrottlingRateLimit")),
            defaults,
        )
        .is_some()
            && number_of(
                settings.and_then(|s| s.get("ThrottlingBurstLimit")),
                defaults,
            )
            .is_some()
    };
    if !throttled(api.and_then(|a| a.get("DefaultRouteSettings"))) {
        problems.push("HttpApi: no default route throttling (rate and burst)".to_string());
    }
    let webhooks = api
        .and_then(|a| a.get("RouteSettings"))
        .and_then(|r| r.get("POST /webhooks/{proxy+}"));
    if !throttled(webhooks) {
        problems.push("HttpApi: no throttling of POST /webhooks/{proxy+}".to_string());
    }
    // Claim-checked bodies are kept as long as the dedupe keys of their events, no longer.
    let expires = template
        .properties("PayloadBucket")
        .and_then(|b| b.get("LifecycleConfiguration"))
        .and_then(|l| l.get("Rules"))
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("ExpirationInDays"))
        .filter_map(|v| tagged(v, "!Ref").and_then(Value::as_str))
        .any(|p| p == "DedupeRetentionDays");
    if !expires {
        problems.push(
            "PayloadBucket: no lifecycle rule expiring bodies after DedupeRetentionDays"
                .to_string(),
        );
    }
    for (id, _, _) in FUNCTIONS {
        let Some(props) = template.properties(id) else {
            continue;
        };
        let Some(reserved) = number_of(props.get("ReservedConcurrentExecutions"), defaults) else {
            problems.push(format!("{id}: no reserved concurrency"));
            continue;
        };
        for (_, event) in props
            .get("Events")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            let max = event
                .get("Properties")
                .and_then(|p| p.get("ScalingConfig"))
                .and_then(|c| c.get("MaximumConcurrency"));
            if let Some(max) = number_of(max, defaults)
                && reserved < max
            {
                problems.push(format!(
                    "{id}: reserved concurrency {reserved} is under its event source's MaximumConcurrency {max}"
                ));
            }
        }
    }
    problems
}

/// The alarms the operator needs (issue: recovery and operations), each on a metric that exists:
/// queue age on both queues, errors of every function, and on the relay's own EMF metrics:
/// refused deliveries, parked deliveries, jobs past their deadline, sweep errors. Every
/// `EnrichRelay` metric an alarm or the dashboard names is one the code emits
/// ([`relay_shared::metrics::ALL`]) from the function its `Function` dimension names.
fn check_monitoring(template: &Template) -> Vec<String> {
    use relay_shared::metrics::{self, NAMESPACE};
    let mut problems = Vec::new();
    let emitted = |name: &str, function: &str| {
        metrics::ALL
            .iter()
            .any(|m| m.name == name && m.function == function)
    };
    // (namespace, metric, dimension value: a logical id for AWS metrics, a binary for ours).
    let mut alarmed: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (id, props) in template.of_type("AWS::CloudWatch::Alarm") {
        let ns = props.get("Namespace").and_then(Value::as_str).unwrap_or("");
        let metric = props
            .get("MetricName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let dims = props
            .get("Dimensions")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        let dim = dims
            .first()
            .and_then(|d| d.get("Value"))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                v => tagged(v, "!Ref")
                    .or_else(|| tagged(v, "!GetAtt"))
                    .and_then(Value::as_str)
                    .map(|t| t.split('.').next().unwrap_or(t).to_string())
                    .unwrap_or_default(),
            })
            .unwrap_or_default();
        if ns == NAMESPACE && !emitted(metric, &dim) {
            problems.push(format!(
                "{id}: alarms on {metric} of {dim}, which the code does not emit"
            ));
        }
        alarmed.insert((ns.to_string(), metric.to_string(), dim));
    }
    let mut needed: Vec<(&str, &str, String)> = vec![
        (
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            "WebhookQueue".into(),
        ),
        (
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            "SubmitQueue".into(),
        ),
        (
            NAMESPACE,
            metrics::DELIVERIES_REFUSED.name,
            "webhook-ingest".into(),
        ),
        (NAMESPACE, metrics::PARKED.name, "bulk-fetch".into()),
        (
            NAMESPACE,
            metrics::CHUNKS_TIMED_OUT.name,
            "bulk-fetch".into(),
        ),
        (NAMESPACE, metrics::SWEEP_ERRORS.name, "sweeper".into()),
    ];
    for (id, _, _) in FUNCTIONS {
        needed.push(("AWS/Lambda", "Errors", id.to_string()));
    }
    for (ns, metric, dim) in needed {
        if !alarmed.contains(&(ns.to_string(), metric.to_string(), dim.clone())) {
            problems.push(format!("no alarm on {ns} {metric} of {dim}"));
        }
    }
    // The dashboard: its body is JSON inside a !Sub string.
    let bodies: Vec<String> = template
        .of_type("AWS::CloudWatch::Dashboard")
        .filter_map(|(_, p)| p.get("DashboardBody"))
        .filter_map(|b| tagged(b, "!Sub").and_then(Value::as_str).or(b.as_str()))
        .map(str::to_string)
        .collect();
    if bodies.is_empty() {
        problems.push("no CloudWatch dashboard".into());
    }
    for body in bodies {
        let body: serde_json::Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("dashboard body is not JSON: {e}"));
                continue;
            }
        };
        let rows = body["widgets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|w| {
                w["properties"]["metrics"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            });
        for row in rows {
            let f = |i: usize| {
                row.get(i)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            if f(0) == NAMESPACE && !emitted(&f(1), &f(3)) {
                problems.push(format!(
                    "dashboard shows {} of {}, which the code does not emit",
                    f(1),
                    f(3)
                ));
            }
        }
    }
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
