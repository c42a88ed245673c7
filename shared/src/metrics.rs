//! Metrics in CloudWatch Embedded Metric Format (EMF): every function prints one JSON line per
//! invocation (ingest, the API, the sweeper) or per SQS batch (bulk-fetch, job-submit-worker) to
//! stdout, and CloudWatch Logs turns it into metrics. No `PutMetricData` call: no latency in the
//! request path, no IAM permission, no cost per call.
//!
//! Format (the EMF specification): a root object with `_aws.Timestamp` (ms), `_aws.CloudWatchMetrics`
//! (one directive: namespace, dimension sets, metric definitions with units) and, as top-level
//! members, each dimension's value and each metric's value (a number, or an array of up to 100
//! numbers for a distribution such as latency).
//!
//! Hand-written rather than the `metrics` facade with `metrics_cloudwatch_embedded`: the relay
//! needs one line per batch with a fixed set of names, which is a `serde_json::json!` away, and a
//! global recorder would add a flush step to every handler.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every relay metric.
pub const NAMESPACE: &str = "EnrichRelay";
/// The dimension every line carries: which function emitted it.
pub const FUNCTION: &str = "Function";
/// The extra dimension of a refused or parked count: why.
pub const REASON: &str = "Reason";

/// A metric the relay emits: the function that emits it (its `Function` dimension), its name and
/// its CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub function: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
}

const INGEST: &str = "webhook-ingest";
const FETCH: &str = "bulk-fetch";
const WORKER: &str = "job-submit-worker";
const API: &str = "job-submit";
const SWEEPER: &str = "sweeper";

const fn count(function: &'static str, name: &'static str) -> Metric {
    Metric {
        function,
        name,
        unit: "Count",
    }
}

/// webhook-ingest: deliveries made durable in SQS (answered 200).
pub const DELIVERIES_ACCEPTED: Metric = count(INGEST, "DeliveriesAccepted");
/// webhook-ingest: deliveries refused (401/405), by `Reason` (a rotated key, or an attack).
pub const DELIVERIES_REFUSED: Metric = count(INGEST, "DeliveriesRefused");
/// webhook-ingest: deliveries answered 503 because SQS (or S3) did not take them.
pub const DELIVERIES_UNAVAILABLE: Metric = count(INGEST, "DeliveriesUnavailable");
/// bulk-fetch: copies of an event applied already, dropped.
pub const DUPLICATES: Metric = count(FETCH, "Duplicates");
/// bulk-fetch: deliveries parked in the DLQ, by `Reason`.
pub const PARKED: Metric = count(FETCH, "Parked");
/// bulk-fetch: deliveries dropped unseen: for a deleted job (their data is kept nowhere, not
/// even in the DLQ), or naming an id no chunk of their job knows.
pub const DELIVERIES_DROPPED: Metric = count(FETCH, "DeliveriesDropped");
/// bulk-fetch: events of a global webhook for a search no chunk knows, kept as orphans
/// (`GET /orphans`), never parked, never fetched.
pub const ORPHANS_KEPT: Metric = count(FETCH, "OrphansKept");
/// bulk-fetch: deliveries put back on the queue, delayed (provider not ready, rate limit, a
/// request slot).
pub const DEFERRED: Metric = count(FETCH, "Deferred");
/// bulk-fetch: deliveries returned to SQS to be retried.
pub const RETRIED: Metric = count(FETCH, "Retried");
/// bulk-fetch: results stored (new rows) from webhooks and polls.
pub const RESULTS_STORED: Metric = count(FETCH, "ResultsStored");
/// bulk-fetch: polls of chunks whose results had not come (one GET each).
pub const POLLS_MADE: Metric = count(FETCH, "PollsMade");
/// bulk-fetch: results stored by polls (webhooks that never came).
pub const RESULTS_RECOVERED: Metric = count(FETCH, "ResultsRecovered");
/// bulk-fetch: chunks ended at their job's deadline (jobs past their deadline).
pub const CHUNKS_TIMED_OUT: Metric = count(FETCH, "ChunksTimedOut");
/// bulk-fetch: contacts that got no result by their job's deadline.
pub const CONTACTS_TIMED_OUT: Metric = count(FETCH, "ContactsTimedOut");
/// bulk-fetch: completion callbacks a receiver took (2xx).
pub const CALLBACKS_DELIVERED: Metric = count(FETCH, "CallbacksDelivered");
/// bulk-fetch: callback attempts that failed (non-2xx, timeout, refused); retried.
pub const CALLBACK_ATTEMPTS_FAILED: Metric = count(FETCH, "CallbackAttemptsFailed");
/// bulk-fetch: callbacks given up, the retry window over.
pub const CALLBACKS_GIVEN_UP: Metric = count(FETCH, "CallbacksGivenUp");
/// bulk-fetch: from the provider's webhook reaching ingest to its results stored.
pub const END_TO_END_LATENCY: Metric = Metric {
    function: FETCH,
    name: "EndToEndLatency",
    unit: "Milliseconds",
};
/// job-submit-worker: starts the provider took (an id recorded).
pub const STARTS_ACCEPTED: Metric = count(WORKER, "StartsAccepted");
/// job-submit-worker: starts put off (rate limit, another worker holds the chunk).
pub const STARTS_DEFERRED: Metric = count(WORKER, "StartsDeferred");
/// job-submit-worker: starts the provider refused (the chunk or its contacts fail, or it splits).
pub const STARTS_REFUSED: Metric = count(WORKER, "StartsRefused");
/// job-submit-worker: starts whose answer was lost (the chunk awaits its webhook).
pub const STARTS_UNCONFIRMED: Metric = count(WORKER, "StartsUnconfirmed");
/// job-submit-worker: start messages returned to SQS to be retried.
pub const STARTS_RETRIED: Metric = count(WORKER, "StartsRetried");
/// job-submit (API): jobs created.
pub const JOBS_CREATED: Metric = count(API, "JobsCreated");
/// sweeper: chunks found due for a poll.
pub const CHUNKS_DUE: Metric = count(SWEEPER, "ChunksDue");
/// sweeper: polls put on the webhook queue.
pub const POLLS_QUEUED: Metric = count(SWEEPER, "PollsQueued");
/// sweeper: erasures of deleted jobs asked for again (their message lost, or their worker dead).
pub const ERASURES_QUEUED: Metric = count(SWEEPER, "ErasuresQueued");
/// sweeper: sweeps that failed (the index could not be read) and polls that could not be queued.
pub const SWEEP_ERRORS: Metric = count(SWEEPER, "SweepErrors");

/// Every metric the relay emits. The template's alarms and dashboard name only these (a test
/// checks).
pub const ALL: &[Metric] = &[
    DELIVERIES_ACCEPTED,
    DELIVERIES_REFUSED,
    DELIVERIES_UNAVAILABLE,
    DUPLICATES,
    PARKED,
    DELIVERIES_DROPPED,
    ORPHANS_KEPT,
    DEFERRED,
    RETRIED,
    RESULTS_STORED,
    POLLS_MADE,
    RESULTS_RECOVERED,
    CHUNKS_TIMED_OUT,
    CONTACTS_TIMED_OUT,
    CALLBACKS_DELIVERED,
    CALLBACK_ATTEMPTS_FAILED,
    CALLBACKS_GIVEN_UP,
    END_TO_END_LATENCY,
    STARTS_ACCEPTED,
    STARTS_DEFERRED,
    STARTS_REFUSED,
    STARTS_UNCONFIRMED,
    STARTS_RETRIED,
    JOBS_CREATED,
    CHUNKS_DUE,
    POLLS_QUEUED,
    ERASURES_QUEUED,
    SWEEP_ERRORS,
];

/// EMF allows at most 100 values in one metric's array.
const MAX_VALUES: usize = 100;

/// The metrics of one invocation or batch, printed as one EMF line.
#[derive(Debug, Clone)]
pub struct Metrics {
    function: &'static str,
    reason: Option<String>,
    values: BTreeMap<&'static str, (Metric, Vec<f64>)>,
}

impl Metrics {
    pub fn new(function: &'static str) -> Metrics {
        Metrics {
            function,
            reason: None,
            values: BTreeMap::new(),
        }
    }

    /// Adds `n` to a count (recorded even when 0, so an alarm sees a data point).
    pub fn add(&mut self, m: Metric, n: u64) -> &mut Self {
        debug_assert_eq!(
            m.function, self.function,
            "{} is not {}'s",
            m.name, self.function
        );
        let (_, v) = self.values.entry(m.name).or_insert((m, vec![0.0]));
        v[0] += n as f64;
        self
    }

    /// Records one observation of a distribution (e.g. a latency); the first 100 of a line.
    pub fn observe(&mut self, m: Metric, value: f64) -> &mut Self {
        debug_assert_eq!(
            m.function, self.function,
            "{} is not {}'s",
            m.name, self.function
        );
        let (_, v) = self.values.entry(m.name).or_insert((m, Vec::new()));
        if v.len() < MAX_VALUES {
            v.push(value);
        }
        self
    }

    /// Adds the `Reason` dimension: the metrics of this line are also published per reason.
    pub fn with_reason(mut self, reason: &str) -> Metrics {
        self.reason = Some(reason_class(reason));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The EMF line at `timestamp_ms`.
    pub fn line(&self, timestamp_ms: u64) -> String {
        let mut dimensions = vec![json!([FUNCTION])];
        let mut root = Map::new();
        root.insert(FUNCTION.into(), json!(self.function));
        if let Some(r) = &self.reason {
            dimensions.push(json!([FUNCTION, REASON]));
            root.insert(REASON.into(), json!(r));
        }
        let mut definitions = Vec::new();
        for (name, (m, v)) in &self.values {
            definitions.push(json!({"Name": name, "Unit": m.unit}));
            let value = match v.as_slice() {
                [one] if m.unit == "Count" => json!(one),
                many => json!(many),
            };
            root.insert((*name).into(), value);
        }
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": dimensions,
                    "Metrics": definitions,
                }],
            }),
        );
        Value::Object(root).to_string()
    }

    /// Prints the line to stdout (where Lambda's log agent finds it), unless nothing was recorded.
    pub fn emit(&self) {
        if !self.is_empty() {
            println!("{}", self.line(crate::now_ms()));
        }
    }
}

/// A reason as a dimension value: its fixed part (before any `:` or `(` detail), at most 64
/// characters, so the set of values stays small and carries no ids or data.
pub fn reason_class(reason: &str) -> String {
    let head = reason.split([':', '(']).next().unwrap_or(reason).trim();
    head.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_belongs_to_a_function_and_has_one_name() {
        let mut names: Vec<&str> = ALL.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for m in ALL {
            assert!([INGEST, FETCH, WORKER, API, SWEEPER].contains(&m.function));
        }
    }

    /// Checks a line against the EMF specification's rules for the root node.
    fn check_emf(line: &str) -> Value {
        let v: Value = serde_json::from_str(line).expect("one JSON object");
        assert!(!line.contains('\n'), "one line");
        let aws = &v["_aws"];
        assert!(aws["Timestamp"].as_u64().is_some(), "Timestamp in ms");
        let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
        for d in directives {
            assert!(d["Namespace"].as_str().is_some_and(|n| !n.is_empty()));
            let sets = d["Dimensions"].as_array().expect("dimension sets");
            for set in sets {
                let set = set.as_array().unwrap();
                assert!(set.len() <= 30, "at most 30 dimensions in a set");
                for key in set {
                    let key = key.as_str().unwrap();
                    assert!(v[key].is_string(), "dimension {key} has a string value");
                }
            }
            let metrics = d["Metrics"].as_array().expect("metrics");
            assert!(metrics.len() <= 100);
            for m in metrics {
                let name = m["Name"].as_str().unwrap();
                let unit = m["Unit"].as_str().unwrap();
                assert!(
                    ALL.iter().any(|a| a.name == name && a.unit == unit),
                    "{name}"
                );
                match &v[name] {
                    Value::Number(_) => {}
                    Value::Array(a) => {
                        assert!(!a.is_empty() && a.len() <= 100);
                        assert!(a.iter().all(Value::is_number));
                    }
                    other => panic!("{name} has no numeric value: {other}"),
                }
            }
        }
        // Nothing but numbers and the dimensions' values: no room for contact data.
        let dimension_keys: Vec<&str> = directives
            .iter()
            .flat_map(|d| d["Dimensions"].as_array().unwrap())
            .flat_map(|set| set.as_array().unwrap())
            .filter_map(Value::as_str)
            .collect();
        for (k, value) in v.as_object().unwrap() {
            match value {
                Value::String(_) => assert!(dimension_keys.contains(&k.as_str()), "{k}"),
                Value::Number(_) | Value::Array(_) => {}
                Value::Object(_) => assert_eq!(k, "_aws"),
                other => panic!("{k}: {other}"),
            }
        }
        v
    }

    #[test]
    fn a_line_is_valid_emf_with_counts_and_a_distribution() {
        let mut m = Metrics::new("bulk-fetch");
        m.add(RESULTS_STORED, 3)
            .add(RESULTS_STORED, 2)
            .add(DUPLICATES, 0);
        for ms in 0..150 {
            m.observe(END_TO_END_LATENCY, ms as f64);
        }
        let v = check_emf(&m.line(1_700_000_000_000));
        assert_eq!(v["Function"], "bulk-fetch");
        assert_eq!(v["ResultsStored"], 5.0);
        assert_eq!(v["Duplicates"], 0.0, "a zero is a data point");
        assert_eq!(v["EndToEndLatency"].as_array().unwrap().len(), 100);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"]])
        );
        assert!(v.get("Reason").is_none());
    }

    #[test]
    fn a_reason_is_a_second_dimension_set_without_its_details() {
        let mut m =
            Metrics::new("webhook-ingest").with_reason("poll: HTTP 404 id not found (job_x)");
        m.add(DELIVERIES_REFUSED, 1);
        let v = check_emf(&m.line(1));
        assert_eq!(v["Reason"], "poll");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"], ["Function", "Reason"]])
        );
        assert_eq!(reason_class("unknown job"), "unknown job");
        assert_eq!(reason_class(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn nothing_recorded_prints_nothing() {
        assert!(Metrics::new("sweeper").is_empty());
    }
}
