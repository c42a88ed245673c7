//! The OpenAPI document (issue: the client's side) against the code, so it cannot drift: its
//! paths are the router's routes, and its schemas name exactly the fields the API returns. It is
//! generated from the handlers and their types (job-submit's `api/openapi.rs`).

use std::collections::BTreeSet;

use job_submit::{Api, OPENAPI, ROUTES};
use relay_shared::auth::BearerToken;
use relay_shared::jobs::Operation;
use relay_shared::queue::SqsQueue;
use relay_shared::store::DynamoJobStore;
use serde_json::{Value, json};

use crate::support::{Stack, apigw_request};
use relay_shared::ContactIndex;
use relay_shared::JobId;

const TOKEN: &str = "openapi-token-0123456789";

fn props(doc: &Value, schema: &str) -> BTreeSet<String> {
    let s = &doc["components"]["schemas"][schema];
    let own = s["properties"].as_object().cloned().unwrap_or_default();
    let mut out: BTreeSet<String> = own.keys().cloned().collect();
    for part in s["allOf"].as_array().into_iter().flatten() {
        match part["$ref"].as_str() {
            Some(r) => out.extend(props(doc, r.rsplit('/').next().unwrap())),
            None => out.extend(
                part["properties"]
                    .as_object()
                    .into_iter()
                    .flat_map(|o| o.keys().cloned()),
            ),
        }
    }
    out
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn the_openapi_document_is_served_without_auth_and_matches_the_routes_and_bodies() {
    let stack = Stack::new().await;
    let api = Api {
        jobs: DynamoJobStore::new(
            relay_shared::aws::dynamodb(&stack.sdk),
            stack.res.table("JobsTable"),
        ),
        submit_queue: SqsQueue::new(stack.sqs(), stack.res.queue_url("SubmitQueue")),
        token: BearerToken::new(TOKEN),
        callback_policy: Default::default(),
        credit_check: None,
    };
    // Served without a token.
    let resp = api
        .handle(apigw_request("GET", "/openapi.json", &[], b""))
        .await;
    assert_eq!(resp.status(), 200);
    let doc: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // Valid OpenAPI 3.1, by the reference validator (openapi-spec-validator, in the venv).
    let root = relay_local_stack::repo_root();
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .args([
            "-c",
            "import json,sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))",
        ])
        .arg(root.join("docs/openapi.json"))
        .output()
        .expect("the venv's python (scripts/bootstrap.sh)");
    assert!(
        out.status.success(),
        "docs/openapi.json is not valid OpenAPI 3.1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(doc, serde_json::from_str::<Value>(OPENAPI).unwrap());
    // The served document is the one the code generates, and docs/openapi.json (validated
    // above) is it (kept so by job-submit's `docs_openapi_json_is_the_generated_document`).
    let generated = job_submit::generated_openapi();
    assert_eq!(doc, serde_json::from_str::<Value>(&generated).unwrap());
    let file = std::fs::read_to_string(root.join("docs/openapi.json")).unwrap();
    assert_eq!(file, generated);

    // Its paths are the routes, and the router names each request by its route.
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, routes);
    let auth = format!("Bearer {TOKEN}");
    for (method, path) in ROUTES {
        let concrete = path.replace("{id}", "job_00000000000000000000000000000000");
        let (name, _, _) = api
            .route(&apigw_request(
                method,
                &concrete,
                &[("authorization", &auth)],
                b"{}",
            ))
            .await;
        assert_eq!(name, format!("{method} {path}"));
    }

    // The bodies the API returns have exactly the documented fields.
    let contacts = json!([{"email": "ada@example.com", "custom": {"crm_id": "c0"}}]);
    let body = json!({"provider": "enrow", "operation": "email_verify", "contacts": contacts});
    let call = |m: &'static str, p: String, b: Vec<u8>| {
        let auth = auth.clone();
        let api = &api;
        async move {
            let resp = api
                .handle(apigw_request(m, &p, &[("authorization", &auth)], &b))
                .await;
            let status = resp.status().as_u16();
            (
                status,
                serde_json::from_slice::<Value>(resp.body().as_ref()).unwrap(),
            )
        }
    };
    let (status, accepted) = call("POST", "/jobs".into(), body.to_string().into_bytes()).await;
    assert_eq!(status, 202);
    assert_eq!(keys(&accepted), props(&doc, "Accepted"));
    let id = JobId::new(accepted["job_id"].as_str().unwrap());
    let (_, job) = call("GET", format!("/jobs/{id}"), vec![]).await;
    // A one-step job: every documented field but a waterfall's own.
    let waterfall_only: BTreeSet<String> = ["steps", "found_rate"].map(String::from).into();
    let one_step: BTreeSet<String> = props(&doc, "Job")
        .difference(&waterfall_only)
        .cloned()
        .collect();
    assert_eq!(keys(&job), one_step);
    // A waterfall: every documented field, its steps as documented.
    let waterfall = json!({"steps": [{"provider": "enrow", "operation": "email_find"},
            {"provider": "fullenrich", "operation": "enrich"}],
        "contacts": [{"first_name": "Ada", "last_name": "Lovelace", "domain": "example.com"}]});
    let (status, w) = call("POST", "/jobs".into(), waterfall.to_string().into_bytes()).await;
    assert_eq!(status, 202, "{w}");
    let (_, w) = call(
        "GET",
        format!("/jobs/{}", w["job_id"].as_str().unwrap()),
        vec![],
    )
    .await;
    assert_eq!(keys(&w), props(&doc, "Job"));
    let step_schema = &doc["components"]["schemas"]["Job"]["allOf"][1]["properties"]["steps"]["items"]
        ["properties"];
    assert_eq!(
        keys(&w["steps"][0]),
        step_schema
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
    );
    let chunk_schema =
        &doc["components"]["schemas"]["Job"]["allOf"][1]["properties"]["chunks"]["items"];
    assert_eq!(
        keys(&job["chunks"][0]),
        chunk_schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    );
    let (_, list) = call("GET", "/jobs".into(), vec![]).await;
    assert_eq!(keys(&list["jobs"][0]), props(&doc, "JobSummary"));
    {
        use relay_shared::store::OrphanStore;
        api.jobs
            .put_orphan(&relay_shared::store::Orphan {
                provider: relay_shared::Provider::Enrow,
                provider_id: "s-1".into(),
                event: "single_search_finished".into(),
                received_at_ms: relay_shared::now_ms(),
                delivery_id: uuid::Uuid::new_v4().to_string(),
                credits: Some(1.0),
            })
            .await
            .unwrap();
    }
    let (_, orphans) = call("GET", "/orphans".into(), vec![]).await;
    assert_eq!(keys(&orphans["orphans"][0]), props(&doc, "Orphan"));
    let (status, err) = call("POST", "/jobs".into(), b"{\"provider\": \"x\"}".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(keys(&err), props(&doc, "Error"));
    assert_eq!(
        keys(&err["error"]),
        doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    );
    // A result row (stored directly: no provider runs here) names documented fields only.
    let row = serde_json::to_value(relay_shared::jobs::ContactResult {
        waterfall: None,
        index: ContactIndex(0),
        custom: Some(json!({"crm_id": "c0"})),
        outcome: relay_shared::jobs::Outcome::Valid,
        email: Some("ada@example.com".into()),
        email_status: Some("valid".into()),
        phone: None,
        reason: None,
        provisional: true,
        raw: Value::Null,
    })
    .unwrap();
    assert!(keys(&row).is_subset(&props(&doc, "Result")), "{row}");

    // The enums are the code's.
    let ops: Vec<&str> = [
        Operation::EmailFind,
        Operation::EmailVerify,
        Operation::PhoneFind,
        Operation::Enrich,
        Operation::ReverseEmail,
    ]
    .iter()
    .map(|o| o.as_str())
    .collect();
    assert_eq!(
        doc["components"]["schemas"]["Operation"]["enum"],
        json!(ops)
    );
}
