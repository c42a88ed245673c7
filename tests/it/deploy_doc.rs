//! docs/deploy.md held to template.yaml, the way `template.rs` holds the code to it: the page's
//! function table, stack outputs, parameter table (with defaults) and alarm table are the
//! template's, all of them and nothing else; the counts it states are the template's; every
//! resource-like name it puts in backticks exists.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

fn read(path: &str) -> String {
    let p = relay_local_stack::repo_root().join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Facts {
    /// Function logical id → its binary (`BuildProperties.Binary`).
    functions: BTreeMap<String, String>,
    /// Parameter → its default, as the page would show it.
    parameters: BTreeMap<String, String>,
    outputs: BTreeSet<String>,
    alarms: BTreeSet<String>,
    /// Every logical id, output and parameter.
    names: BTreeSet<String>,
}

fn facts(template: &str) -> Facts {
    let doc: Value = serde_yaml::from_str(template).expect("template.yaml parses");
    let keys = |section: &str| -> Vec<(String, Value)> {
        doc.get(section)
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.clone()))
            .collect()
    };
    let resources = keys("Resources");
    let of_type = |t: &str| -> Vec<(String, Value)> {
        resources
            .iter()
            .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(t))
            .cloned()
            .collect()
    };
    let scalar = |v: &Value| match v {
        Value::String(s) if s.is_empty() => "empty".to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "?".to_string(),
    };
    Facts {
        functions: of_type("AWS::Serverless::Function")
            .into_iter()
            .map(|(id, r)| {
                let bin = r
                    .get("Metadata")
                    .and_then(|m| m.get("BuildProperties"))
                    .and_then(|b| b.get("Binary"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                (id, bin)
            })
            .collect(),
        parameters: keys("Parameters")
            .into_iter()
            .map(|(k, v)| (k, v.get("Default").map(scalar).unwrap_or_default()))
            .collect(),
        outputs: keys("Outputs").into_iter().map(|(k, _)| k).collect(),
        alarms: of_type("AWS::CloudWatch::Alarm")
            .into_iter()
            .map(|(k, _)| k)
            .collect(),
        names: resources
            .iter()
            .map(|(k, _)| k.clone())
            .chain(keys("Outputs").into_iter().map(|(k, _)| k))
            .chain(keys("Parameters").into_iter().map(|(k, _)| k))
            .collect(),
    }
}

/// The page's sections by heading (`## …`, `### …`), text under each.
fn sections(md: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![(String::new(), String::new())];
    for line in md.lines() {
        if line.starts_with("## ") || line.starts_with("### ") {
            out.push((
                line.trim_start_matches('#').trim().to_string(),
                String::new(),
            ));
        } else {
            let last = out.last_mut().unwrap();
            last.1.push_str(line);
            last.1.push('\n');
        }
    }
    out
}

/// The tables of a text: each a list of rows, each row its cells (backticks stripped), the
/// header and the `|---|` line left out.
fn tables(text: &str) -> Vec<Vec<Vec<String>>> {
    let mut out: Vec<Vec<Vec<String>>> = Vec::new();
    let mut current: Option<Vec<Vec<String>>> = None;
    let mut header_seen = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('|') {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect();
            if current.is_none() {
                current = Some(Vec::new());
                header_seen = false;
            }
            if !header_seen {
                header_seen = true; // the header row
            } else if cells
                .iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
            {
                // the separator
            } else {
                current.as_mut().unwrap().push(cells);
            }
        } else if let Some(t) = current.take() {
            out.push(t);
        }
    }
    out.extend(current);
    out
}

fn number_word(n: usize) -> String {
    const WORDS: [&str; 13] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    WORDS.get(n).map_or(n.to_string(), |w| w.to_string())
}

fn compare(what: &str, doc: &BTreeSet<String>, template: &BTreeSet<String>, out: &mut Vec<String>) {
    for missing in template.difference(doc) {
        out.push(format!(
            "{what}: {missing} is in the template, not in docs/deploy.md"
        ));
    }
    for extra in doc.difference(template) {
        out.push(format!(
            "{what}: docs/deploy.md names {extra}, the template has no such thing"
        ));
    }
}

/// What docs/deploy.md says that the template does not.
fn problems(md: &str, template: &str) -> Vec<String> {
    let f = facts(template);
    let mut out = Vec::new();
    let secs = sections(md);
    let section = |start: &str| -> String {
        secs.iter()
            .find(|(h, _)| h.starts_with(start))
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| String::new())
    };

    let holds = section("What the stack holds");
    let holds_tables = tables(&holds);
    if holds_tables.len() != 2 {
        out.push(format!(
            "'What the stack holds' should have two tables (functions, outputs), has {}",
            holds_tables.len()
        ));
    } else {
        let doc_functions: BTreeMap<String, String> = holds_tables[0]
            .iter()
            .map(|r| (r[0].clone(), r.get(1).cloned().unwrap_or_default()))
            .collect();
        compare(
            "functions",
            &doc_functions.keys().cloned().collect(),
            &f.functions.keys().cloned().collect(),
            &mut out,
        );
        for (id, bin) in &doc_functions {
            if let Some(real) = f.functions.get(id)
                && real != bin
            {
                out.push(format!(
                    "{id}: the page says binary {bin}, the template {real}"
                ));
            }
        }
        compare(
            "outputs",
            &holds_tables[1].iter().map(|r| r[0].clone()).collect(),
            &f.outputs,
            &mut out,
        );
    }
    let n = f.functions.len();
    let count = format!("{} arm64 Lambda functions", number_word(n));
    if !md.contains(&count) {
        out.push(format!("the page should say \"{count}\""));
    }
    let alarms = format!("{} CloudWatch", f.alarms.len());
    if !holds.contains(&alarms) {
        out.push(format!(
            "'What the stack holds' should say \"{alarms}\" alarms"
        ));
    }

    let params = section("Parameters");
    let rows: Vec<Vec<String>> = tables(&params).into_iter().flatten().collect();
    let doc_params: BTreeMap<String, String> = rows
        .iter()
        .map(|r| (r[0].clone(), r.get(1).cloned().unwrap_or_default()))
        .collect();
    compare(
        "parameters",
        &doc_params.keys().cloned().collect(),
        &f.parameters.keys().cloned().collect(),
        &mut out,
    );
    for (p, default) in &doc_params {
        if let Some(real) = f.parameters.get(p)
            && real != default
        {
            out.push(format!(
                "{p}: the page says default {default}, the template {real}"
            ));
        }
    }

    let alarm_section = section("7. Alarms");
    compare(
        "alarms",
        &tables(&alarm_section)
            .into_iter()
            .flatten()
            .map(|r| r[0].clone())
            .collect(),
        &f.alarms,
        &mut out,
    );
    if !alarm_section.contains(&format!("All {} go to", f.alarms.len())) {
        out.push(format!(
            "'Alarms' should say \"All {} go to\"",
            f.alarms.len()
        ));
    }

    // Every stack output a command reads, and every resource-like name in backticks, exists.
    for part in md.split("OutputKey=='").skip(1) {
        let name = part.split('\'').next().unwrap_or_default();
        if !f.outputs.contains(name) {
            out.push(format!(
                "a command reads the output {name}, which the template does not have"
            ));
        }
    }
    for part in md.split('`').skip(1).step_by(2) {
        let looks_like_resource = part.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && part.chars().all(|c| c.is_ascii_alphanumeric())
            && [
                "Alarm", "Function", "Url", "Queue", "Table", "Topic", "Bucket",
            ]
            .iter()
            .any(|s| part.ends_with(s));
        if looks_like_resource && !f.names.contains(part) {
            out.push(format!(
                "`{part}` is not a resource, output or parameter of the template"
            ));
        }
    }
    out
}

#[test]
fn docs_deploy_names_the_templates_functions_parameters_outputs_and_alarms_and_nothing_else() {
    let found = problems(&read("docs/deploy.md"), &read("template.yaml"));
    assert!(
        found.is_empty(),
        "docs/deploy.md has drifted:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_deploy_doc_check_fails_on_each_kind_of_drift() {
    let md = read("docs/deploy.md");
    let template = read("template.yaml");
    let drifted = [
        (
            "a count",
            md.replace("five arm64 Lambda functions", "four arm64 Lambda functions"),
        ),
        (
            "an output",
            md.replace("| `WebhookBaseUrl` |", "| `WebhookUrl` |"),
        ),
        (
            "a read output",
            md.replace("OutputKey=='ApiUrl'", "OutputKey=='ApiBaseUrl'"),
        ),
        (
            "a default",
            md.replace(
                "| `PollAfterSeconds` | `600` |",
                "| `PollAfterSeconds` | `300` |",
            ),
        ),
        (
            "an alarm",
            md.replace("| `SweepErrorsAlarm` |", "| `SweepFailuresAlarm` |"),
        ),
        ("a name", format!("{md}\nSee `WebhookDlqAlarm`.\n")),
    ];
    for (what, doc) in drifted {
        assert_ne!(doc, md, "{what}: the replacement found nothing to replace");
        assert!(
            !problems(&doc, &template).is_empty(),
            "{what}: drift not caught"
        );
    }
    // And a template that grows a function the page does not list.
    let grown = template.replace(
        "  SweeperFunctionLogs:",
        "  ExtraFunction:\n    Type: AWS::Serverless::Function\n    Properties: {}\n\n  SweeperFunctionLogs:",
    );
    assert_ne!(grown, template);
    assert!(
        !problems(&md, &grown).is_empty(),
        "a new function not caught"
    );
}
