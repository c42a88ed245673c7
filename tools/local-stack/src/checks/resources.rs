//! The template's functions against the code: binaries, environments, routes, queue consumers,
//! policies and the SSM parameters each may read.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use super::{
    CALLS, CONSUMERS, Checked, FUNCTIONS, ROUTES, as_list, read_config, resource_ids, value_of,
};

/// The functions and their binaries: one each way.
pub(super) fn check_functions(c: &Checked, problems: &mut Vec<String>) {
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
pub(super) fn check_environment(c: &Checked, problems: &mut Vec<String>) {
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
pub(super) fn check_routes(c: &Checked, problems: &mut Vec<String>) {
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
pub(super) fn check_consumers(c: &Checked, problems: &mut Vec<String>) {
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
pub(super) fn check_policies(c: &Checked, problems: &mut Vec<String>) {
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
pub(super) fn check_secrets(c: &Checked, problems: &mut Vec<String>) {
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
