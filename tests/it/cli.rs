//! `relay submit | status | results` (issue: the client's side) end to end on the dev stack: a
//! CSV in, a job through the sandbox, the results CSV out on the input's rows; bad rows refused
//! before anything is sent; exit codes.

use std::path::Path;

use relay_local_stack::dev::DevStack;

use crate::e2e::options;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn relay(stack: &DevStack, token: &str, args: &[&str]) -> Run {
    let bin = relay_local_stack::repo_root().join("target/debug/relay");
    let out = tokio::process::Command::new(&bin)
        .args(args)
        .env("RELAY_URL", &stack.api_url)
        .env("RELAY_API_TOKEN", token)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e} (make functions builds it)", bin.display()));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[tokio::test]
async fn relay_submit_takes_a_csv_and_waits_for_a_results_csv_on_the_same_rows() {
    let opts = options();
    let dir = opts.log_dir.clone();
    let stack = DevStack::start(opts).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().unwrap();
    let token = stack.api_token.clone();

    // Bad rows: every one reported with its line, nothing sent, exit 2.
    let bad = write(
        &dir,
        "bad.csv",
        "Full Name,Company Domain,CRM Id\nAda Lovelace,example.com,c0\nBob,https://example.com/x,c1\n,example.com,c2\n",
    );
    let r = relay(&stack, &token, &["submit", "--provider", "enrow", "--operation", "email_find", &bad]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("line 3: company_domain must be a domain name"), "{}", r.stderr);
    assert!(r.stderr.contains("line 4: fullname is required"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was sent"), "{}", r.stderr);
    assert!(!r.stderr.contains("Bob"), "no contact data in messages");
    assert!(sandbox.starts().is_empty(), "no start reached the provider");

    // A good file: headers mapped whatever their case and spacing, other columns come back.
    let csv = "Full Name,Company Domain,CRM Id,Owner\n\
               Ada Example0,example.com,c0,kim\n\
               Ada Example1,example.com,c1,\n\
               Ada Example2,example.com,c2,lee\n";
    let good = write(&dir, "leads.csv", csv);
    let out = dir.join("leads.results.csv");
    let r = relay(
        &stack,
        &token,
        &[
            "submit", "--provider", "enrow", "--operation", "email_find", &good,
            "--name", "leads", "--wait", "--out", out.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("completed"), "{}", r.stderr);
    let mut rows = csv::Reader::from_path(&out).unwrap();
    let headers: Vec<String> = rows.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(
        headers,
        ["Full Name", "Company Domain", "CRM Id", "Owner", "outcome", "email", "email_status", "phone", "reason"]
    );
    let rows: Vec<Vec<String>> = rows
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], format!("Ada Example{i}"), "input columns as they were");
        assert_eq!(row[2], format!("c{i}"));
        assert!(["found", "not_found"].contains(&row[4].as_str()), "{row:?}");
    }
    assert_eq!(rows[1][3], "", "an empty cell stays empty");

    // The job by id: status, and the results as NDJSON.
    let job = r.stderr.split(':').next().unwrap().trim().to_string();
    assert!(job.starts_with("job_"), "{}", r.stderr);
    let s = relay(&stack, &token, &["status", &job]).await;
    assert_eq!(s.code, Some(0));
    assert!(s.stdout.contains("completed (3 of 3 done"), "{}", s.stdout);
    let n = relay(&stack, &token, &["results", &job, "--format", "ndjson"]).await;
    let lines: Vec<serde_json::Value> = n
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["custom"]["CRM Id"], "c2");

    // A wrong token: exit 3 and a message that says what to do, without the token.
    let r = relay(&stack, "wrong-token-0123456789", &["status", &job]).await;
    assert_eq!(r.code, Some(3));
    assert!(r.stderr.contains("RELAY_API_TOKEN"), "{}", r.stderr);
    assert!(!r.stderr.contains("wrong-token"), "{}", r.stderr);
}
