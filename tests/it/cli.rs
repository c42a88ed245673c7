//! `relay submit | status | results` (issue: the client's side) end to end on the dev stack: a
//! CSV in, a job through the sandbox, the results CSV out on the input's rows; bad rows refused
//! before anything is sent; exit codes.

use std::path::Path;

use relay_local_stack::dev::DevStack;
use serde_json::Value;

use crate::e2e::options;
use relay_shared::JobId;

pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// The job the command made, as its progress lines name it (`job_…: …` on stderr).
    pub(crate) fn job(&self) -> String {
        let job = self
            .stderr
            .lines()
            .find_map(|l| l.split(':').next().filter(|j| j.starts_with("job_")))
            .unwrap_or_default()
            .to_string();
        assert!(job.starts_with("job_"), "{}", self.stderr);
        job
    }
}

pub(crate) async fn relay(stack: &DevStack, token: &str, args: &[&str]) -> Run {
    relay_at(&stack.api_url, token, args).await
}

/// `relay` with `RELAY_URL` set to `url`.
pub(crate) async fn relay_at(url: &str, token: &str, args: &[&str]) -> Run {
    relay_within(url, token, args, std::time::Duration::from_secs(300)).await
}

/// [`relay_at`], failing the test if it takes longer than `limit`.
pub(crate) async fn relay_within(
    url: &str,
    token: &str,
    args: &[&str],
    limit: std::time::Duration,
) -> Run {
    let bin = relay_local_stack::repo_root().join("target/debug/relay");
    let run = tokio::process::Command::new(&bin)
        .args(args)
        .env("RELAY_URL", url)
        .env("RELAY_API_TOKEN", token)
        .kill_on_drop(true)
        .output();
    // `--wait` follows a job until it ends: bounded here, so a stuck job fails the test.
    let out = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("relay {args:?} did not end within {limit:?}"))
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
        "Full Name,Company Domain,CRM Id\nAda Lovelace,example.com,c0\nBob,https://10.0.0.1/x,c1\n,example.com,c2\n",
    );
    let r = relay(
        &stack,
        &token,
        &[
            "submit",
            "--provider",
            "enrow",
            "--operation",
            "email_find",
            &bad,
        ],
    )
    .await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("line 3: company_domain must be a domain name"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("line 4: fullname is required"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was sent"), "{}", r.stderr);
    assert!(!r.stderr.contains("Bob"), "no contact data in messages");
    // A callback URL the API would refuse is refused here first.
    let r = relay(
        &stack,
        &token,
        &[
            "submit",
            "--provider",
            "enrow",
            "--operation",
            "email_find",
            "--callback-url",
            "http://hooks.example.com/done",
            &bad,
        ],
    )
    .await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("--callback-url must be an https URL"),
        "{}",
        r.stderr
    );
    assert!(sandbox.starts().is_empty(), "no start reached the provider");

    // The demo's CRM export (250 contacts, FullEnrich): every input row comes back, in order,
    // its columns intact, with its outcome after them.
    let demo = relay_local_stack::repo_root().join("fixtures/demo/contacts.csv");
    let out = dir.join("contacts.results.csv");
    let r = relay(
        &stack,
        &token,
        &[
            "submit",
            "--provider",
            "fullenrich",
            "--operation",
            "enrich",
            demo.to_str().unwrap(),
            "--name",
            "demo",
            "--wait",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("completed"), "{}", r.stderr);
    let read = |p: &Path| -> (Vec<String>, Vec<Vec<String>>) {
        let bytes = std::fs::read(p).unwrap();
        let bytes = bytes
            .strip_prefix(b"\xEF\xBB\xBF")
            .unwrap_or(&bytes)
            .to_vec();
        let mut rd = csv::Reader::from_reader(&bytes[..]);
        let headers = rd.headers().unwrap().iter().map(str::to_string).collect();
        let rows = rd
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect();
        (headers, rows)
    };
    let (in_headers, in_rows) = read(&demo);
    let (headers, rows) = read(&out);
    assert_eq!(headers[..in_headers.len()], in_headers[..]);
    assert_eq!(
        headers[in_headers.len()..],
        relay_shared::results_csv::RESULT_COLUMNS[..]
    );
    assert_eq!(rows.len(), in_rows.len(), "one row per input row");
    for (row, input) in rows.iter().zip(&in_rows) {
        assert_eq!(
            row[..input.len()],
            input[..],
            "input columns intact, in order"
        );
        assert!(
            ["found", "not_found"].contains(&row[input.len()].as_str()),
            "{row:?}"
        );
    }

    // The job by id: status, and the results as NDJSON.
    let job = r.job();
    let s = relay(&stack, &token, &["status", &job]).await;
    assert_eq!(s.code, Some(0));
    assert!(
        s.stdout.contains("completed (250 of 250 done"),
        "{}",
        s.stdout
    );
    let n = relay(&stack, &token, &["results", &job, "--format", "ndjson"]).await;
    let lines: Vec<serde_json::Value> = n
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 250);
    // Only the contact fields and the row key went to the provider: crm_id stayed here.
    assert_eq!(lines[2]["custom"], serde_json::json!({"relay_row": "3"}));
    assert_eq!(
        lines[2]["email"].as_str().unwrap_or(""),
        rows[2][in_headers.len() + 1]
    );

    // A closed pipe ends the CLI quietly (no panic, no exit 101).
    let mut child =
        tokio::process::Command::new(relay_local_stack::repo_root().join("target/debug/relay"))
            .args(["results", &job, "--format", "ndjson"])
            .env("RELAY_URL", &stack.api_url)
            .env("RELAY_API_TOKEN", &token)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The API serves the same as CSV and NDJSON, a page at a time, the next in X-Next-Cursor.
    let http = reqwest::Client::new();
    let get = |q: String| {
        http.get(format!("{}/jobs/{job}/results?{q}", stack.api_url))
            .bearer_auth(&token)
            .send()
    };
    let resp = get("format=csv&limit=2".into()).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let cursor = resp.headers()["x-next-cursor"]
        .to_str()
        .unwrap()
        .to_string();
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "index,relay_row,{}",
            relay_shared::results_csv::RESULT_COLUMNS.join(",")
        )
    );
    assert!(lines[1].starts_with("0,1,"), "{text}");
    assert_eq!(lines.len(), 3);
    let resp = get(format!("format=ndjson&limit=1000&cursor={cursor}"))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    assert!(
        resp.headers().get("x-next-cursor").is_none(),
        "the last page"
    );
    let text = resp.text().await.unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["index"].as_u64(), text.lines().count()),
        (Some(2), 248)
    );
    let resp = get("format=xml".into()).await.unwrap();
    assert_eq!(resp.status(), 400);

    // A wrong token: exit 3 and a message that says what to do, without the token.
    let r = relay(&stack, "wrong-token-0123456789", &["status", &job]).await;
    assert_eq!(r.code, Some(3));
    assert!(r.stderr.contains("RELAY_API_TOKEN"), "{}", r.stderr);
    assert!(!r.stderr.contains("wrong-token"), "{}", r.stderr);
}

#[tokio::test]
async fn jobs_are_listed_newest_first_and_a_canceled_job_starts_nothing_more() {
    use crate::e2e::{Client, fe_contacts};
    use serde_json::json;
    use std::time::Duration;
    let mut opts = options();
    // One FullEnrich request every 10 s: the job's later chunks wait for their turn.
    opts.extra_env
        .insert("FULLENRICH_REQUESTS_PER_MINUTE".into(), "6".into());
    let stack = DevStack::start(opts).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().unwrap();
    let token = stack.api_token.clone();
    let c = Client::of(&stack);
    let first = c
        .post_job(
            json!({"provider": "enrow", "operation": "email_verify", "name": "first",
            "contacts": [{"email": "ada@example.com"}]}),
        )
        .await;
    let job = c
        .post_job(
            json!({"provider": "fullenrich", "operation": "enrich", "name": "big",
            "contacts": fe_contacts(300)}),
        )
        .await;
    // Cancel once one chunk has started (the next one waits 10 s for its turn; chunks of one
    // batch take their slots in any order).
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = c.get(&format!("/jobs/{job}")).await;
        let status = |s: &str| {
            v["chunks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["status"] == s)
                .count()
        };
        if status("submitted") == 1 {
            assert_eq!(status("pending"), 2, "{v}");
            break;
        }
        assert!(std::time::Instant::now() < until, "not started: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = relay(&stack, &token, &["cancel", &job]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let state = c.wait_done(&job, Duration::from_secs(90)).await;
    assert_eq!(state["status"], "canceled", "{state}");
    assert_eq!(state["error"]["code"], "canceled");
    assert_eq!(state["failed"], 200, "the two chunks not started: {state}");
    assert_eq!(
        state["found"].as_u64().unwrap() + state["not_found"].as_u64().unwrap(),
        100,
        "the started chunk finished and is kept"
    );
    let stored = sandbox.starts().iter().filter(|s| s.stored).count();
    assert_eq!(
        stored,
        2,
        "the Enrow job and the first chunk only: {:?}",
        sandbox.starts()
    );
    let rows = c.results(&job).await;
    // Whichever chunk started first, the two others' contacts are the canceled ones.
    let canceled = rows.iter().filter(|r| r["reason"] == "canceled").count();
    assert_eq!(canceled, 200);
    for chunk in state["chunks"].as_array().unwrap() {
        let i = chunk["index"].as_u64().unwrap() as usize;
        let reasons: Vec<&Value> = rows[i * 100..(i + 1) * 100]
            .iter()
            .map(|r| &r["reason"])
            .collect();
        let all_canceled = reasons.iter().all(|r| *r == "canceled");
        assert_eq!(all_canceled, chunk["status"] == "failed", "{chunk}");
    }
    // Once ended, there is nothing to cancel: 409, exit 2 with the reason.
    let r = relay(&stack, &token, &["cancel", &job]).await;
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("has ended"), "{}", r.stderr);

    // Newest first, a page at a time.
    let r = relay(&stack, &token, &["jobs"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let ids: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids, vec![job.as_str(), first.as_str()], "{}", r.stdout);
    assert!(r.stdout.lines().next().unwrap().contains("canceled"));
    let page = c.get("/jobs?limit=1").await;
    assert_eq!(page["jobs"][0]["job_id"], job.as_str());
    assert!(page["jobs"][0].get("chunks").is_none());
    let cursor = page["next_cursor"].as_str().unwrap();
    let page = c.get(&format!("/jobs?limit=1&cursor={cursor}")).await;
    assert_eq!(page["jobs"][0]["job_id"], first.as_str());
    let resp = c
        .http
        .get(format!("{}/jobs?limit=1000", c.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["field"], "limit");
}

/// `DELETE /jobs/{id}` (issue: the client's side, retention): the job is gone at once for every
/// reader, its items are deleted in the background, and only a tombstone without contact data
/// is left until its retention ends.
#[tokio::test]
async fn a_deleted_job_is_gone_at_once_and_its_items_are_erased() {
    use crate::e2e::Client;
    use serde_json::json;
    use std::time::{Duration, Instant};
    let stack = DevStack::start(options()).await.expect("dev stack");
    let c = Client::of(&stack);
    let contacts: Vec<serde_json::Value> = (0..4)
        .map(|i| json!({"fullname": format!("Ada Example{i}"), "company_domain": "example.com", "custom": {"crm_id": format!("c{i}")}}))
        .collect();
    let job = c
        .post_job(json!({"provider": "enrow", "operation": "email_find", "name": "to erase", "contacts": contacts}))
        .await;
    c.wait_done(&job, Duration::from_secs(60)).await;
    let delete = |id: JobId| {
        c.http
            .delete(format!("{}/jobs/{id}", c.base))
            .bearer_auth(&stack.api_token)
            .send()
    };
    let resp = delete(job.clone()).await.unwrap();
    assert_eq!(resp.status(), 202);
    for path in [format!("/jobs/{job}"), format!("/jobs/{job}/results")] {
        let resp = c
            .http
            .get(format!("{}{path}", c.base))
            .bearer_auth(&stack.api_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
    assert!(c.get("/jobs").await["jobs"].as_array().unwrap().is_empty());
    // A DELETE retried before the erasure finished asks for it again (a retry never leaves the
    // data in place); once the job is erased, it is 404.
    let again = delete(job.clone()).await.unwrap().status();
    assert!(again == 202 || again == 404, "{again}");

    // In the background, every item but the head goes; the head loses the caller's name.
    let ddb = relay_shared::aws::dynamodb(&stack.sdk);
    let until = Instant::now() + Duration::from_secs(30);
    let items = loop {
        let items = ddb
            .query()
            .table_name(stack.res.table("JobsTable"))
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("JOB#{job}")),
            )
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default();
        if items.len() == 1 && !items[0].contains_key("name") {
            break items;
        }
        assert!(Instant::now() < until, "{} items left", items.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(items[0]["sk"].as_s().unwrap(), "META");
    assert_eq!(
        delete(job.clone()).await.unwrap().status(),
        404,
        "erased: nothing left to erase"
    );
    assert!(items[0].contains_key("deleted_at") && items[0].contains_key("expires_at"));
}
