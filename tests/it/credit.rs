//! The credit check before spending (issue 27, item 5) end to end on the dev stack: the API
//! reads the sandbox's balance (its FullEnrich key, the read in a slot of the shared schedule,
//! kept in DynamoDB for a minute) and refuses a job whose worst case exceeds it, before anything
//! is written or started; `dry_run` and `relay submit --dry-run` show both figures.

use std::sync::atomic::Ordering;
use std::time::Duration;

use relay_local_stack::dev::DevStack;
use serde_json::{Value, json};

use crate::cli::relay;
use crate::e2e::{Client, fe_contacts, options};

/// `POST /jobs`: its status and body, whatever they are.
async fn post(stack: &DevStack, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/jobs", stack.api_url))
        .bearer_auth(&stack.api_token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_sandbox_balance_below_the_estimate_is_a_402_and_the_sandbox_saw_no_start() {
    let mut opts = options();
    let dir = opts.log_dir.clone();
    opts.sandbox.fullenrich_credits = Some(25.0);
    let stack = DevStack::start(opts).await.expect("dev stack");
    let sandbox = stack.sandbox.clone().unwrap();
    let c = Client::of(&stack);

    // 30 work emails at 1 each: 30 at worst, over the 25 the account holds.
    let body =
        json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe_contacts(30)});
    let (status, refused) = post(&stack, &body).await;
    assert_eq!(status, 402, "{refused}");
    assert_eq!(refused["error"]["code"], "credits_insufficient");
    assert_eq!(
        (&refused["estimate"], &refused["balance"]),
        (
            &json!({"provider": "fullenrich", "credits": 30.0}),
            &json!({"provider": "fullenrich", "credits": 25.0})
        )
    );
    assert_eq!(c.get("/jobs").await["jobs"], json!([]), "no job written");

    // The same request as a dry run: both figures, nothing written.
    let mut dry = body.clone();
    dry["dry_run"] = json!(true);
    let (status, priced) = post(&stack, &dry).await;
    assert_eq!(status, 200, "{priced}");
    assert_eq!(
        priced,
        json!({"dry_run": true, "contacts": 30,
            "estimate": {"provider": "fullenrich", "credits": 30.0},
            "balance": {"provider": "fullenrich", "credits": 25.0}})
    );

    // relay submit --dry-run asks the API too.
    let csv: String = std::iter::once("first_name,last_name,domain\n".to_string())
        .chain((0..30).map(|i| format!("Ada{i},Example,example.com\n")))
        .collect();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("thirty.csv");
    std::fs::write(&path, csv).unwrap();
    let args = [
        "submit",
        "--provider",
        "fullenrich",
        "--operation",
        "enrich",
        path.to_str().unwrap(),
        "--dry-run",
    ];
    let r = relay(&stack, &stack.api_token, &args).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("at most 30 credits (1 a contact)")
            && r.stderr.contains(
                "dry run at the API: at most 30 fullenrich credits; the account has 25: not enough"
            ),
        "{}",
        r.stderr
    );

    // Within the balance: accepted, and it runs.
    let small =
        json!({"provider": "fullenrich", "operation": "enrich", "contacts": fe_contacts(20)});
    let (status, accepted) = post(&stack, &small).await;
    assert_eq!(status, 202, "{accepted}");
    let job = accepted["job_id"].as_str().unwrap().to_string();
    let state = c.wait_done(&job, Duration::from_secs(120)).await;
    assert_eq!(state["done"], 20, "{state}");
    // The sandbox saw the accepted job's start only, and one balance read for four requests
    // (the figure kept a minute, in the jobs table).
    let starts = sandbox.starts();
    assert!(!starts.is_empty());
    assert!(
        starts
            .iter()
            .all(|s| s.job_id.as_deref() == Some(job.as_str())),
        "{starts:?}"
    );
    assert_eq!(sandbox.counters().balance_gets.load(Ordering::Relaxed), 1);
}
