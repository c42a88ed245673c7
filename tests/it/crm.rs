//! The first hour (issue 28): a real CRM export (`fixtures/crm/contacts.csv`: 40 rows, CRLF,
//! unicode names, `https://www.` and `www.` websites, a quoted field over two lines, a
//! 120-character job title, 11 columns that are no contact field, one row without a last name)
//! goes in as it is, with no `--map`, to FullEnrich `enrich` and to Enrow `email_find`, and a
//! spreadsheet-ready file comes out: every input row and column as it was, then the `relay_`
//! columns, UTF-8 with a BOM; the row that cannot be sent is in the rejects file with its line.

use std::path::Path;

use relay_local_stack::dev::DevStack;
use relay_shared::results_csv::RESULT_COLUMNS;

use crate::cli::{relay, relay_at};
use crate::e2e::options;

/// The fixture's one row that cannot be sent: row 17 (Liam, no last name, no LinkedIn URL),
/// on line 19 (row 12 holds a note over two lines).
const BAD_ROW: usize = 17;
const BAD_LINE: &str = "19";

type Table = (Vec<String>, Vec<Vec<String>>);

/// A CSV file's header and rows, read the way a spreadsheet would (the BOM is not a header).
fn read(p: &Path) -> Table {
    let bytes = std::fs::read(p).unwrap();
    let text = std::str::from_utf8(&bytes).expect("UTF-8");
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let headers = rd.headers().unwrap().iter().map(str::to_string).collect();
    let rows = rd
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    (headers, rows)
}

/// Checks a results file against the input: the BOM, every input column as it was and in
/// order, the `relay_` columns after them, the bad row `rejected`, every other row ended.
fn check_results(out: &Path, input: &Table, outcomes: &[&str]) -> Vec<Vec<String>> {
    let bytes = std::fs::read(out).unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "a UTF-8 BOM first");
    let (in_headers, in_rows) = input;
    let (headers, rows) = read(out);
    assert_eq!(headers[..in_headers.len()], in_headers[..]);
    assert_eq!(headers[in_headers.len()..], RESULT_COLUMNS[..]);
    assert_eq!(rows.len(), in_rows.len(), "one row per input row");
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    for (i, (row, input)) in rows.iter().zip(in_rows).enumerate() {
        assert_eq!(
            row[..input.len()],
            input[..],
            "row {}: input columns intact",
            i + 1
        );
        let outcome = row[col("relay_outcome")].as_str();
        if i + 1 == BAD_ROW {
            assert_eq!(outcome, "rejected", "{row:?}");
            assert!(!row[col("relay_reason")].is_empty(), "{row:?}");
        } else {
            assert!(outcomes.contains(&outcome), "row {}: {row:?}", i + 1);
            let status = row[col("relay_email_status")].as_str();
            assert!(
                ["", "deliverable", "risky", "undeliverable", "unknown"].contains(&status),
                "{row:?}"
            );
            assert_eq!(
                row[col("relay_email")].is_empty(),
                row[col("relay_emails")].is_empty(),
                "{row:?}"
            );
            assert!(!row[col("relay_email")].contains("@www."), "{row:?}");
        }
    }
    // The `https://www.acme.com/` of row 1 was sent as acme.com, and the file says so.
    assert_eq!(in_rows[0][3], "https://www.acme.com/");
    assert_eq!(rows[0][col("relay_domain_sent")], "acme.com");
    rows
}

fn check_rejects(p: &Path, input: &Table, field: &str) {
    let (headers, rows) = read(p);
    assert_eq!(headers[..input.0.len()], input.0[..]);
    assert_eq!(
        headers[input.0.len()..],
        ["relay_line", "relay_field", "relay_rule"]
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][..input.0.len()], input.1[BAD_ROW - 1][..]);
    assert_eq!(rows[0][input.0.len()], BAD_LINE, "the file's own line");
    assert_eq!(rows[0][input.0.len() + 1], field);
}

#[tokio::test]
async fn a_crm_export_goes_in_as_it_is_and_a_spreadsheet_ready_file_comes_out() {
    let opts = options();
    let dir = opts.log_dir.clone();
    let stack = DevStack::start(opts).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().unwrap();
    let token = stack.api_token.clone();
    let crm = relay_local_stack::repo_root().join("fixtures/crm/contacts.csv");
    let crm_path = crm.to_str().unwrap();
    let input = read(&crm);
    assert_eq!(input.1.len(), 40);
    let bytes = std::fs::read(&crm).unwrap();
    let crlf = bytes.windows(2).filter(|w| *w == b"\r\n").count();
    assert_eq!(
        crlf,
        bytes.iter().filter(|b| **b == b'\n').count(),
        "CRLF only"
    );
    assert!(
        input.1.iter().any(|r| r[4].chars().count() == 120),
        "a 120-character title"
    );
    assert!(input.1[0][0] == "Jos\u{e9}" && input.1[0][3] == "https://www.acme.com/");

    // Before any job: an empty list says so. RELAY_URL pasted with `/jobs` on it works.
    let r = relay_at(&format!("{}/jobs", stack.api_url), &token, &["jobs"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.is_empty() && r.stderr.contains("no jobs yet"),
        "{}",
        r.stderr
    );

    // Without --skip-invalid: nothing is sent, and the refusal names the way out.
    let fe = [
        "submit",
        "--provider",
        "fullenrich",
        "--operation",
        "enrich",
        crm_path,
    ];
    let r = relay(&stack, &token, &fe).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("line {BAD_LINE}: last_name")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("--skip-invalid") && r.stderr.contains("--map"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("Liam"), "no contact data in messages");

    // --dry-run: the mapping, the counts, the worst case; nothing sent.
    let r = relay(
        &stack,
        &token,
        &[
            &fe[..],
            &["--dry-run", "--enrich-fields", "work_emails,phones"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for said in [
        "Company      → company_name",
        "Website      → domain",
        "LinkedIn URL → linkedin_url",
        "kept aside (not sent; joined back onto their rows in the results): \"Job Title\", \"Email\"",
        "40 row(s): 39 to send, 1 refused",
        "39 contact(s) in 1 request(s); at most 429 credits (11 a contact)",
        "nothing was sent",
        // The API's own figure, and the sandbox's balance (it never runs out here).
        "dry run at the API: at most 429 fullenrich credits; the account has",
        ": enough",
    ] {
        assert!(r.stderr.contains(said), "{said:?} in:\n{}", r.stderr);
    }
    let aside = r
        .stderr
        .lines()
        .find(|l| l.starts_with("kept aside"))
        .unwrap();
    assert_eq!(
        aside.matches("\", \"").count() + 1,
        11,
        "11 columns that are no field: {aside}"
    );
    assert!(sandbox.starts().is_empty(), "a dry run sends nothing");

    // FullEnrich, no --map: every valid row sent, the bad one in the rejects file.
    let out = dir.join("crm.fullenrich.csv");
    let r = relay(
        &stack,
        &token,
        &[
            &fe[..],
            // The README's quick start: with a budget the job's worst case (39 × 1) fits.
            &[
                "--skip-invalid",
                "--max-credits",
                "50",
                "--wait",
                "--out",
                out.to_str().unwrap(),
            ],
        ]
        .concat(),
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let job = r.job();
    let rids: usize = sandbox
        .starts()
        .iter()
        .filter(|s| s.job_id.as_deref() == Some(job.as_str()))
        .map(|s| s.rids.len())
        .sum();
    assert_eq!(rids, 39, "every valid row sent, once");
    let state = crate::e2e::Client::of(&stack)
        .get(&format!("/jobs/{job}"))
        .await;
    assert_eq!(state["credits"]["budget"], 50.0, "{state}");
    assert!(
        state["credits"]["reserved"].as_f64() == Some(0.0),
        "every hold settled: {state}"
    );
    let rows = check_results(&out, &input, &["found", "not_found"]);
    assert!(
        rows.iter().any(|r| r[16] == "found"),
        "the sandbox finds some"
    );
    check_rejects(&dir.join("crm.fullenrich.rejects.csv"), &input, "last_name");

    // `relay wait` rebuilds the same file from the job and the input; so does `relay results`.
    let again = dir.join("crm.fullenrich.again.csv");
    let r = relay(
        &stack,
        &token,
        &[
            "wait",
            &job,
            "--in",
            crm_path,
            "--out",
            again.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&out).unwrap());
    let r = relay(
        &stack,
        &token,
        &["results", &job, "--in", crm_path, "--no-bom"],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout.as_bytes(),
        &std::fs::read(&out).unwrap()[3..],
        "the same, without the BOM"
    );

    // The job is named after the file; status shows credits and times.
    let r = relay(&stack, &token, &["status", &job]).await;
    assert!(
        r.stdout
            .contains("fullenrich enrich \"contacts.csv\"; credits used:"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("created 20"), "{}", r.stdout);

    // Enrow email_find, the same file, no --map: fullname from First Name + Last Name.
    let out = dir.join("crm.enrow.csv");
    let r = relay(
        &stack,
        &token,
        &[
            "submit",
            "--provider",
            "enrow",
            "--operation",
            "email_find",
            crm_path,
            "--skip-invalid",
            "--wait",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("derived: fullname: first_name + last_name"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("Website ") && l.ends_with("→ company_domain")),
        "{}",
        r.stderr
    );
    let rows = check_results(&out, &input, &["found", "not_found", "valid", "invalid"]);
    let status = RESULT_COLUMNS
        .iter()
        .position(|c| *c == "relay_email_status")
        .unwrap()
        + 16;
    assert!(
        rows.iter().any(|r| r[status] == "deliverable"),
        "Enrow `valid` reads deliverable"
    );
    check_rejects(&dir.join("crm.enrow.rejects.csv"), &input, "last_name");
}

/// The README's waterfall: the CRM export through Enrow's finder, then FullEnrich for whoever it
/// did not find, FullEnrich's finds verified, under a budget, from one `relay submit`.
#[tokio::test]
async fn a_crm_export_goes_through_a_waterfall_from_one_relay_submit() {
    let opts = options();
    let dir = opts.log_dir.clone();
    let stack = DevStack::start(opts).await.expect("dev stack");
    let token = stack.api_token.clone();
    let crm = relay_local_stack::repo_root().join("fixtures/crm/contacts.csv");
    let input = read(&crm);
    let out = dir.join("crm.waterfall.csv");
    let r = relay(
        &stack,
        &token,
        &[
            "submit",
            "--provider",
            "enrow",
            "--operation",
            "email_find",
            "--then",
            "fullenrich:enrich",
            "--verify",
            "found_by_fullenrich",
            crm.to_str().unwrap(),
            "--skip-invalid",
            "--max-credits",
            "100",
            "--wait",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let rows = check_results(&out, &input, &["found", "not_found"]);
    let (headers, _) = read(&out);
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let mut by = std::collections::BTreeMap::new();
    for (i, row) in rows.iter().enumerate().filter(|(i, _)| i + 1 != BAD_ROW) {
        let provider = row[col("relay_provider")].clone();
        let attempts = row[col("relay_attempts")].clone();
        assert!(
            attempts.starts_with("enrow email_find: "),
            "row {}: every contact tried Enrow first: {attempts}",
            i + 1
        );
        match provider.as_str() {
            "enrow" => assert_eq!(row[col("relay_outcome")], "found", "{row:?}"),
            "fullenrich" => {
                assert!(attempts.contains("fullenrich enrich: "), "{attempts}");
                let verified = row[col("relay_verification")].as_str();
                let found = row[col("relay_outcome")] == "found";
                assert_eq!(
                    found,
                    ["valid", "invalid"].contains(&verified),
                    "FullEnrich's finds verified, and only them: {row:?}"
                );
            }
            other => panic!("row {}: settled by {other:?}", i + 1),
        }
        *by.entry(provider).or_insert(0) += 1;
    }
    assert!(by.len() == 2, "both steps settled some: {by:?}");
    let job = r.job();
    let state = crate::e2e::Client::of(&stack)
        .get(&format!("/jobs/{job}"))
        .await;
    assert_eq!(state["steps"].as_array().unwrap().len(), 3, "{state}");
    let spent = state["credits"]["spent"].as_f64().unwrap();
    assert!(spent > 0.0 && spent <= 100.0, "{state}");
}
