//! The template's alarms, dashboard and limits against the metrics the code emits and the
//! parameters' defaults.

use std::collections::{BTreeMap, BTreeSet};

use relay_shared::metrics::{self, NAMESPACE};
use serde_yaml::Value;

use crate::{Template, tagged};

use super::FUNCTIONS;

/// A number in the template: a literal, or a `!Ref` to a parameter with a numeric default.
pub(super) fn number_of(v: Option<&Value>, defaults: &BTreeMap<String, String>) -> Option<u64> {
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
pub(super) fn check_limits(
    template: &Template,
    defaults: &BTreeMap<String, String>,
) -> Vec<String> {
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
pub(super) fn check_monitoring(template: &Template) -> Vec<String> {
    let (mut problems, alarmed) = check_alarms(template);
    for (ns, metric, dim) in needed_alarms() {
        if !alarmed.contains(&(ns.to_string(), metric.to_string(), dim.clone())) {
            problems.push(format!("no alarm on {ns} {metric} of {dim}"));
        }
    }
    problems.extend(check_dashboard(template));
    problems
}

/// Whether the code emits metric `name` from `function` (a binary).
fn emitted(name: &str, function: &str) -> bool {
    metrics::ALL
        .iter()
        .any(|m| m.name == name && m.function == function)
}

/// (namespace, metric, dimension value: a logical id for AWS metrics, a binary for ours).
type Alarmed = BTreeSet<(String, String, String)>;

/// The template's alarms, and those on an `EnrichRelay` metric the code does not emit.
fn check_alarms(template: &Template) -> (Vec<String>, Alarmed) {
    let mut problems = Vec::new();
    let mut alarmed = Alarmed::new();
    for (id, props) in template.of_type("AWS::CloudWatch::Alarm") {
        let ns = props.get("Namespace").and_then(Value::as_str).unwrap_or("");
        let metric = props
            .get("MetricName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let dim = alarm_dimension(props);
        if ns == NAMESPACE && !emitted(metric, &dim) {
            problems.push(format!(
                "{id}: alarms on {metric} of {dim}, which the code does not emit"
            ));
        }
        alarmed.insert((ns.to_string(), metric.to_string(), dim));
    }
    (problems, alarmed)
}

/// An alarm's first dimension value: a string, or the logical id a `!Ref`/`!GetAtt` names.
fn alarm_dimension(props: &Value) -> String {
    let dims = props
        .get("Dimensions")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    dims.first()
        .and_then(|d| d.get("Value"))
        .map(|v| match v {
            Value::String(s) => s.clone(),
            v => tagged(v, "!Ref")
                .or_else(|| tagged(v, "!GetAtt"))
                .and_then(Value::as_str)
                .map(|t| t.split('.').next().unwrap_or(t).to_string())
                .unwrap_or_default(),
        })
        .unwrap_or_default()
}

/// The alarms the operator needs, as (namespace, metric, dimension value).
fn needed_alarms() -> Vec<(&'static str, &'static str, String)> {
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
    needed
}

/// The dashboard (its body is JSON inside a !Sub string): there is one, and every
/// `EnrichRelay` metric it shows is emitted.
fn check_dashboard(template: &Template) -> Vec<String> {
    let mut problems = Vec::new();
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
