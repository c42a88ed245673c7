//! template.yaml against the code: functions, environment, routes, queues, policies.

use relay_local_stack::Template;
use relay_local_stack::checks::{check, parameter_defaults};

fn problems(text: &str) -> Vec<String> {
    check(
        &Template::parse(text).expect("template parses"),
        &parameter_defaults(text),
    )
}

fn template() -> String {
    std::fs::read_to_string(relay_local_stack::repo_root().join("template.yaml")).unwrap()
}

#[test]
fn the_template_names_what_the_code_uses_and_nothing_more() {
    assert_eq!(problems(&template()), Vec::<String>::new());
}

#[test]
fn the_checks_fail_when_a_variable_route_policy_or_function_goes() {
    let t = template();
    let cases = [
        (
            "          DEDUPE_TABLE: !Ref DedupeTable\n",
            "",
            "DEDUPE_TABLE",
        ),
        (
            "              Action: s3:PutObject\n",
            "              Action: s3:GetObject\n",
            "s3:PutObject on PayloadBucket",
        ),
        (
            "            Path: /jobs\n",
            "            Path: /jobz\n",
            "/jobs of JobSubmitFunction",
        ),
        (
            "        Binary: job-submit-worker\n",
            "        Binary: job-worker\n",
            "job-submit-worker",
        ),
        (
            "          PAYLOAD_BUCKET: !Ref PayloadBucket\n",
            "          PAYLOAD_BUCKET: !Ref PayloadBucket\n          STRAY_SETTING: \"1\"\n",
            "STRAY_SETTING",
        ),
        (
            "      VisibilityTimeout: 360\n",
            "      VisibilityTimeout: 120\n",
            "under 6x",
        ),
    ];
    for (from, to, expect) in cases {
        assert!(
            t.contains(from),
            "fixture line {from:?} not in template.yaml"
        );
        let found = problems(&t.replacen(from, to, 1));
        assert!(
            found.iter().any(|p| p.contains(expect)),
            "removing {from:?}: expected a problem naming {expect:?}, got {found:?}"
        );
    }
}

#[tokio::test]
async fn secrets_named_in_ssm_are_read_at_cold_start() {
    use relay_shared::config::IngestConfig;
    let stack = crate::support::Stack::new().await;
    let ssm = aws_sdk_ssm::Client::new(&stack.sdk);
    let name = format!(
        "/enrich-relay/test-{}/webhook-secret",
        uuid::Uuid::new_v4().simple()
    );
    ssm.put_parameter()
        .name(&name)
        .value("secret-from-ssm-0123456789")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let vars = std::collections::BTreeMap::from([
        ("WEBHOOK_SECRET_SSM".to_string(), name.clone()),
        (
            "WEBHOOK_QUEUE_URL".to_string(),
            "https://sqs.example/q".to_string(),
        ),
        ("PAYLOAD_BUCKET".to_string(), "bucket".to_string()),
    ]);
    let env = relay_shared::secrets::with_secrets(&stack.sdk, |k: &str| vars.get(k).cloned())
        .await
        .expect("secrets read");
    let config = IngestConfig::from_env(&env).expect("config");
    let token = config
        .webhook_secret
        .token(relay_shared::Provider::Enrow, "job_1");
    let expected = relay_shared::auth::WebhookSecret::new("secret-from-ssm-0123456789")
        .token(relay_shared::Provider::Enrow, "job_1");
    assert_eq!(token, expected, "the secret is the parameter's value");

    // A missing parameter stops the function with a message naming the variable, not a value.
    let vars = std::collections::BTreeMap::from([(
        "WEBHOOK_SECRET_SSM".to_string(),
        "/enrich-relay/missing".to_string(),
    )]);
    let err = relay_shared::secrets::with_secrets(&stack.sdk, |k: &str| vars.get(k).cloned())
        .await
        .err()
        .expect("missing parameter");
    assert_eq!(err.var, "WEBHOOK_SECRET");
}
