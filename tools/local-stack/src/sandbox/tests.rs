//! The sandbox over HTTP, on loopback: the balance GETs, the costs each operation reports, and
//! outcomes that agree with [`finds`]. Webhooks are captured, not sent; delays are milliseconds.

use std::time::Duration;

use relay_shared::Provider;
use relay_shared::providers::client::{FetchError, ProviderHttp};
use serde_json::{Value, json};

use super::{Sandbox, SandboxConfig, finds};

const HOOK: &str = "http://127.0.0.1:9/webhooks/test";

struct Api {
    sb: Sandbox,
    config: SandboxConfig,
    http: reqwest::Client,
}

/// Fast: 10 ms to the webhooks, captured; no rate limits unless a test sets them.
fn quick() -> SandboxConfig {
    SandboxConfig {
        delay: Duration::from_millis(10),
        capture_webhooks: true,
        fullenrich_per_minute: None,
        enrow_per_second: None,
        ..SandboxConfig::default()
    }
}

impl Api {
    async fn start(config: SandboxConfig) -> Api {
        let sb = Sandbox::start(config.clone(), 0).await.expect("sandbox");
        Api {
            sb,
            config,
            http: reqwest::Client::new(),
        }
    }

    /// A request with the provider's key (`key: false`: none); `body`: a POST.
    async fn call(&self, p: Provider, path: &str, body: Option<&Value>, key: bool) -> (u16, Value) {
        let url = format!("{}{path}", self.sb.url);
        let mut req = match body {
            Some(b) => self.http.post(url).json(b),
            None => self.http.get(url),
        };
        if key {
            req = match p {
                Provider::Fullenrich => req.bearer_auth(&self.config.fullenrich_key),
                Provider::Enrow => req.header("x-api-key", &self.config.enrow_key),
            };
        }
        let resp = req.send().await.expect("sandbox answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, p: Provider, path: &str, body: Value) -> (u16, Value) {
        self.call(p, path, Some(&body), true).await
    }

    async fn get(&self, p: Provider, path: &str) -> (u16, Value) {
        self.call(p, path, None, true).await
    }

    /// GETs `path` until its answer is the finished one.
    async fn finished(&self, p: Provider, path: &str) -> Value {
        for _ in 0..500 {
            let (status, v) = self.get(p, path).await;
            let done = match p {
                Provider::Fullenrich => v.get("status").is_some(),
                Provider::Enrow => {
                    v.pointer("/general/status") == Some(&json!("completed"))
                        || (v.get("qualification").is_some() && v["qualification"] != "ongoing")
                }
            };
            if done {
                assert!([200, 402].contains(&status), "{status} {v}");
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{path} never finished");
    }

    /// The next `n` webhook bodies captured.
    async fn hooks(&self, n: usize) -> Vec<Value> {
        let mut got = Vec::new();
        for _ in 0..500 {
            got.extend(
                self.sb
                    .take_captured()
                    .into_iter()
                    .map(|c| serde_json::from_slice::<Value>(&c.body).unwrap()),
            );
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} webhooks of {n}", got.len());
    }

    async fn balance(&self, p: Provider) -> f64 {
        let (path, key) = match p {
            Provider::Fullenrich => ("/account/credits", "balance"),
            Provider::Enrow => ("/account/info", "credits"),
        };
        let (status, v) = self.get(p, path).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v[key].as_f64(), Some(self.sb.balance(p)), "{v}");
        v[key].as_f64().unwrap()
    }
}

/// An Enrow search whose company domain carries `tag` (`found-by-…`).
fn search(i: usize, tag: &str) -> Value {
    json!({"fullname": format!("Person {i}"), "company_domain": format!("{tag}.example"), "custom": i.to_string()})
}

fn bulk(searches: Vec<Value>) -> Value {
    json!({ "searches": searches, "settings": { "webhook": HOOK } })
}

#[tokio::test]
async fn balance_gets_need_their_keys_and_fullenrich_counts_them_in_its_minute() {
    let api = Api::start(SandboxConfig {
        fullenrich_per_minute: Some(3),
        enrow_per_second: Some(1),
        fullenrich_credits: Some(500.0),
        enrow_credits: Some(36000.0),
        enrow_global_webhook: Some("https://relay.example/global".into()),
        ..quick()
    })
    .await;
    let (status, v) = api
        .call(Provider::Fullenrich, "/account/credits", None, false)
        .await;
    assert_eq!((status, v["code"].as_str()), (401, Some("error.api.key")));
    let (status, v) = api
        .call(Provider::Enrow, "/account/info", None, false)
        .await;
    assert_eq!(
        (status, v["message"].as_str()),
        (401, Some("This apikey is not valid"))
    );
    for _ in 0..3 {
        let (status, v) = api.get(Provider::Fullenrich, "/account/credits").await;
        assert_eq!((status, v), (200, json!({"balance": 500.0})));
    }
    let (status, v) = api.get(Provider::Fullenrich, "/account/credits").await;
    assert_eq!(
        (status, v["code"].as_str()),
        (429, Some("error.rate.limit")),
        "the fourth request of the minute"
    );
    let (status, _) = api
        .post(Provider::Fullenrich, "/contact/enrich/bulk", json!({}))
        .await;
    assert_eq!(status, 429, "one budget over every endpoint");
    for _ in 0..5 {
        let (status, v) = api.get(Provider::Enrow, "/account/info").await;
        assert_eq!(
            (status, v),
            (
                200,
                json!({"credits": 36000.0, "webhooks": ["https://relay.example/global"]})
            ),
            "Enrow's GETs are free"
        );
    }
    let c = api.sb.counters();
    assert_eq!(c.balance_gets.load(std::sync::atomic::Ordering::Relaxed), 8);
}

#[tokio::test]
async fn the_provider_clients_read_both_balances() {
    let api = Api::start(SandboxConfig {
        fullenrich_per_minute: Some(1),
        fullenrich_credits: Some(250.5),
        ..quick()
    })
    .await;
    let url = api.sb.url.clone();
    let keys = (&api.config.enrow_key, &api.config.fullenrich_key);
    let client = ProviderHttp::new(&url, keys.0, &url, keys.1);
    assert_eq!(
        client.account_balance(Provider::Fullenrich).await,
        Ok(250.5)
    );
    assert_eq!(
        client.account_balance(Provider::Enrow).await,
        Ok(super::UNLIMITED),
        "no balance set: the large default"
    );
    assert_eq!(
        client.account_balance(Provider::Fullenrich).await,
        Err(FetchError::RateLimited(None)),
        "FullEnrich's minute is spent"
    );
    let wrong = ProviderHttp::new(&url, "nope", &url, "nope");
    for p in [Provider::Enrow, Provider::Fullenrich] {
        match wrong.account_balance(p).await {
            Err(FetchError::Permanent(m)) => assert!(m.starts_with("HTTP 401"), "{m}"),
            other => panic!("{p:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_enrow_start_reserves_its_worst_case_and_is_refused_when_the_balance_is_short() {
    // The webhooks (and so the refunds) are a minute away: the reservation holds throughout.
    let api = Api::start(SandboxConfig {
        delay: Duration::from_secs(60),
        enrow_credits: Some(15.0),
        ..quick()
    })
    .await;
    let searches = |n: usize| (0..n).map(|i| search(i, "found-by-none")).collect();
    let (status, v) = api
        .post(Provider::Enrow, "/email/find/bulk", bulk(searches(10)))
        .await;
    assert_eq!(
        (status, v["credits_used"].as_f64()),
        (200, Some(10.0)),
        "{v}"
    );
    assert_eq!(api.balance(Provider::Enrow).await, 5.0, "reserved up front");
    let (status, v) = api
        .post(Provider::Enrow, "/email/find/bulk", bulk(searches(6)))
        .await;
    assert_eq!(
        (status, v),
        (402, json!({"message": "Insufficient credits"}))
    );
    let mut single = search(0, "found-by-enrow");
    single["settings"] = json!({ "webhook": HOOK });
    api.sb.set_enrow_credits(Some(0.5));
    let (status, v) = api
        .post(Provider::Enrow, "/email/find/single", single)
        .await;
    assert_eq!(
        (status, v),
        (
            402,
            json!({"reason": "Insufficient credits", "success": false})
        )
    );
    let verify = json!({"email": "ada@example.com", "settings": {"webhook": HOOK}});
    let (status, v) = api
        .post(Provider::Enrow, "/email/verify/single", verify)
        .await;
    assert_eq!(
        (status, v["credits_used"].as_f64()),
        (200, Some(0.25)),
        "{v}"
    );
    assert_eq!(api.balance(Provider::Enrow).await, 0.25);
    assert_eq!(api.sb.starts().len(), 4, "every start is logged");
}

/// A quick sandbox whose Enrow account holds 100 credits.
async fn enrow_with_100() -> Api {
    Api::start(SandboxConfig {
        enrow_credits: Some(100.0),
        ..quick()
    })
    .await
}

#[tokio::test]
async fn enrow_find_bulk_refunds_its_misses_and_reports_initial_refunded_final() {
    let api = enrow_with_100().await;
    let searches = (0..10)
        .map(|i| {
            search(
                i,
                if i < 6 {
                    "found-by-enrow"
                } else {
                    "found-by-none"
                },
            )
        })
        .collect();
    let (status, v) = api
        .post(Provider::Enrow, "/email/find/bulk", bulk(searches))
        .await;
    assert_eq!(
        (status, v["credits_used"].as_f64()),
        (200, Some(10.0)),
        "{v}"
    );
    let id = v["id"].as_str().unwrap();
    let got = api
        .finished(Provider::Enrow, &format!("/email/find/bulk?id={id}"))
        .await;
    assert_eq!(
        got["stats"],
        json!({"requested": 10, "finished": 10, "valid": 6,
               "credits_cost": {"initial": 10.0, "refunded": 4.0, "final": 6.0}})
    );
    let hooks = api.hooks(1).await;
    assert_eq!(
        hooks[0],
        json!({"event": "bulk_search_finished", "id": id, "credits": {"cost": 6.0}})
    );
    assert_eq!(
        api.balance(Provider::Enrow).await,
        94.0,
        "the misses refunded"
    );
    let parsed = relay_shared::providers::enrow::BulkResults::parse(got.to_string().as_bytes());
    assert_eq!(
        parsed.unwrap().credits_cost(),
        Some(6.0),
        "the relay reads `final`"
    );
}

#[tokio::test]
async fn enrow_verify_and_phone_bulks_report_their_costs_as_their_pages_show() {
    let api = Api::start(quick()).await;
    let emails = json!([
        "a@found-by-enrow.example",
        "b@found-by-none.example",
        "c@x.example",
        "d@y.example"
    ]);
    let (_, v) = api
        .post(
            Provider::Enrow,
            "/email/verify/bulk",
            json!({"verifications": emails, "settings": {"webhook": HOOK}}),
        )
        .await;
    assert_eq!(v["credits_used"].as_f64(), Some(1.0), "0.25 a check: {v}");
    let verify_id = v["id"].as_str().unwrap().to_string();
    let got = api
        .finished(
            Provider::Enrow,
            &format!("/email/verify/bulk?id={verify_id}"),
        )
        .await;
    let valid = emails
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| finds(Provider::Enrow, e))
        .count();
    assert_eq!(
        got["stats"],
        json!({"requested": 4, "finished": 4, "valid": valid, "credits_cost": 1.0}),
        "every check is paid, valid or not"
    );
    let phones: Vec<Value> = ["found-by-enrow", "found-by-enrow", "found-by-none"]
        .iter()
        .enumerate()
        .map(|(i, tag)| json!({"linkedin_url": format!("https://www.linkedin.com/in/p{i}-{tag}"), "custom": i.to_string()}))
        .collect();
    let (_, v) = api.post(Provider::Enrow, "/phone/bulk", bulk(phones)).await;
    assert_eq!(
        v["credits_used"].as_f64(),
        Some(120.0),
        "40 a search reserved: {v}"
    );
    let phone_id = v["id"].as_str().unwrap().to_string();
    let got = api
        .finished(Provider::Enrow, &format!("/phone/bulk?id={phone_id}"))
        .await;
    assert_eq!(
        got["stats"],
        json!({"requested": 3, "finished": 3, "found": 2, "credits_cost": 80.0, "credits_to_refund": 0})
    );
    let hooks = api.hooks(2).await;
    assert!(hooks.contains(
        &json!({"event": "bulk_verification_finished", "id": verify_id, "credits": {"cost": 1.0}})
    ));
    assert!(
        hooks.contains(&json!({"event": "bulk_phone_search_finished", "id": phone_id})),
        "the phone event carries the id alone: {hooks:?}"
    );
    assert_eq!(api.balance(Provider::Enrow).await, super::UNLIMITED - 81.0);
}

#[tokio::test]
async fn enrow_singles_cost_a_hit_and_refund_a_miss() {
    let api = enrow_with_100().await;
    let single = |tag: &str| {
        let mut s = search(0, tag);
        s["settings"] = json!({ "webhook": HOOK });
        s
    };
    for (tag, cost) in [("found-by-enrow", 1.0), ("found-by-none", 0.0)] {
        let (_, v) = api
            .post(Provider::Enrow, "/email/find/single", single(tag))
            .await;
        assert_eq!(v["credits_used"].as_f64(), Some(1.0), "{v}");
        let hook = api.hooks(1).await.remove(0);
        assert_eq!(hook["credits"], json!({"cost": cost}), "{tag}: {hook}");
    }
    let phone = json!({"linkedin_url": "https://www.linkedin.com/in/found-by-enrow", "custom": "0", "settings": {"webhook": HOOK}});
    let (_, v) = api.post(Provider::Enrow, "/phone/single", phone).await;
    assert_eq!(v["credits_used"].as_f64(), Some(40.0), "{v}");
    let hook = api.hooks(1).await.remove(0);
    assert_eq!(
        (&hook["credits"], &hook["result"]["qualification"]),
        (&json!({"cost": 40.0}), &json!("found"))
    );
    let verify = json!({"email": "ada@example.com", "settings": {"webhook": HOOK}});
    api.post(Provider::Enrow, "/email/verify/single", verify)
        .await;
    let hook = api.hooks(1).await.remove(0);
    assert!(hook.get("credits").is_none(), "flat, no credits: {hook}");
    // A job's refund lands as it ends, before its event goes.
    assert_eq!(
        api.balance(Provider::Enrow).await,
        100.0 - 1.0 - 40.0 - 0.25
    );
}

#[tokio::test]
async fn fullenrich_costs_each_hit_by_its_fields_and_the_balance_pays_them() {
    let api = Api::start(SandboxConfig {
        fullenrich_credits: Some(100.0),
        contact_webhooks: false,
        ..quick()
    })
    .await;
    let all = json!([
        "contact.work_emails",
        "contact.personal_emails",
        "contact.phones"
    ]);
    let data: Vec<Value> = [
        "found-by-fullenrich",
        "found-by-enrow",
        "found-by-fullenrich",
    ]
    .iter()
    .enumerate()
    .map(|(i, tag)| {
        json!({"first_name": format!("P{i}"), "last_name": "L", "domain": format!("{tag}.example"),
                               "enrich_fields": all, "custom": {"rid": i.to_string()}})
    })
    .collect();
    let req = json!({"name": "n", "webhook_url": HOOK, "data": data});
    let (status, v) = api
        .post(Provider::Fullenrich, "/contact/enrich/bulk", req)
        .await;
    assert_eq!(status, 200, "{v}");
    let id = v["enrichment_id"].as_str().unwrap();
    let job = api
        .finished(Provider::Fullenrich, &format!("/contact/enrich/bulk/{id}"))
        .await;
    assert_eq!(
        job["cost"],
        json!({"credits": 28.0}),
        "two hits at 1 + 3 + 10"
    );
    assert_eq!(api.hooks(1).await[0]["cost"], json!({"credits": 28.0}));
    assert_eq!(api.balance(Provider::Fullenrich).await, 72.0);
    let emails = json!([{"email": "a@found-by-fullenrich.example", "custom": {"rid": "0"}},
                        {"email": "b@found-by-none.example", "custom": {"rid": "1"}}]);
    let req = json!({"name": "n", "webhook_url": HOOK, "data": emails});
    let (_, v) = api
        .post(Provider::Fullenrich, "/contact/reverse/email/bulk", req)
        .await;
    let id = v["enrichment_id"].as_str().unwrap();
    let job = api
        .finished(
            Provider::Fullenrich,
            &format!("/contact/reverse/email/bulk/{id}"),
        )
        .await;
    assert_eq!(job["cost"], json!({"credits": 1.0}), "one hit");
    assert_eq!(api.balance(Provider::Fullenrich).await, 71.0);
}

#[tokio::test]
async fn each_provider_finds_the_contacts_finds_says() {
    let api = Api::start(quick()).await;
    let people: Vec<Value> = (0..20)
        .map(|i| json!({"first_name": format!("Ada{i}"), "last_name": "Example", "domain": "example.com"}))
        .collect();
    let data: Vec<Value> = people
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut r = p.clone();
            r["custom"] = json!({"rid": i.to_string()});
            r
        })
        .collect();
    let req = json!({"name": "n", "webhook_url": HOOK, "data": data});
    let (_, v) = api
        .post(Provider::Fullenrich, "/contact/enrich/bulk", req)
        .await;
    let fe = api
        .finished(
            Provider::Fullenrich,
            &format!(
                "/contact/enrich/bulk/{}",
                v["enrichment_id"].as_str().unwrap()
            ),
        )
        .await;
    let searches = (0..20)
        .map(|i| json!({"fullname": format!("Ada{i} Example"), "company_domain": "example.com", "custom": i.to_string()}))
        .collect();
    let (_, v) = api
        .post(Provider::Enrow, "/email/find/bulk", bulk(searches))
        .await;
    let en = api
        .finished(
            Provider::Enrow,
            &format!("/email/find/bulk?id={}", v["id"].as_str().unwrap()),
        )
        .await;
    let mut differ = 0;
    for (i, p) in people.iter().enumerate() {
        let rec = fe["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["custom"]["rid"] == i.to_string())
            .unwrap();
        let row = en["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["custom"] == i.to_string())
            .unwrap();
        let fe_found = super::rules::fullenrich_found(rec);
        let en_found = row["qualification"] == "valid";
        assert_eq!(fe_found, finds(Provider::Fullenrich, p), "#{i}: {rec}");
        assert_eq!(en_found, finds(Provider::Enrow, p), "#{i}: {row}");
        differ += usize::from(fe_found != en_found);
    }
    assert!(differ > 0, "the providers find different contacts");
}
