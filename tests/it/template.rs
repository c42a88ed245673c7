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
        // The API must not be given the webhook secret, nor the worker the API token.
        (
            "          RELAY_API_TOKEN_SSM: !Sub \"${SecretsPrefix}/api-token\"\n      Events:\n        Jobs:",
            "          RELAY_API_TOKEN_SSM: !Sub \"${SecretsPrefix}/api-token\"\n          WEBHOOK_SECRET_SSM: !Sub \"${SecretsPrefix}/webhook-secret\"\n      Events:\n        Jobs:",
            "JobSubmitFunction: sets WEBHOOK_SECRET_SSM, which the code never reads",
        ),
        // Monitoring: the alarms the operator needs, on metrics the code emits.
        (
            "      MetricName: ChunksTimedOut\n",
            "      MetricName: ChunksTimedOutt\n",
            "alarms on ChunksTimedOutt of bulk-fetch, which the code does not emit",
        ),
        (
            "          Value: !GetAtt SubmitQueue.QueueName\n",
            "          Value: !GetAtt WebhookQueue.QueueName\n",
            "no alarm on AWS/SQS ApproximateAgeOfOldestMessage of SubmitQueue",
        ),
        (
            "                [\"EnrichRelay\", \"PollsQueued\", \"Function\", \"sweeper\"]]}},",
            "                [\"EnrichRelay\", \"PollsQueued\", \"Function\", \"bulk-fetch\"]]}},",
            "dashboard shows PollsQueued of bulk-fetch",
        ),
        // Issue 24 item 17: every route throttled, every function's concurrency reserved.
        (
            "      ReservedConcurrentExecutions: !Ref BulkFetchReservedConcurrency\n",
            "",
            "BulkFetchFunction: no reserved concurrency",
        ),
        (
            "        \"POST /webhooks/{proxy+}\":\n",
            "        \"POST /jobs\":\n",
            "no throttling of POST /webhooks/{proxy+}",
        ),
        (
            "    Default: 10\n    MinValue: 5\n",
            "    Default: 3\n    MinValue: 1\n",
            "reserved concurrency 3 is under its event source's MaximumConcurrency 5",
        ),
        // The claim-checked bodies go with their job's erasure (issue 24 item 12).
        (
            "              Action: s3:ListBucket\n",
            "              Action: s3:GetObject\n",
            "s3:ListBucket on PayloadBucket",
        ),
        (
            "            ExpirationInDays: !Ref DedupeRetentionDays\n",
            "            ExpirationInDays: 30\n",
            "no lifecycle rule expiring bodies after DedupeRetentionDays",
        ),
        // A secret a function reads must be granted, and only those.
        (
            "                - !Sub \"arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${SecretsPrefix}/webhook-secret-previous\"\n",
            "",
            "reads SSM parameter webhook-secret-previous, which its policy does not grant",
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

#[tokio::test]
async fn a_rotation_of_both_secrets_through_ssm_keeps_old_urls_and_signatures_working() {
    use relay_shared::ExposeSecret;
    use relay_shared::Provider;
    use relay_shared::auth::{SignatureCheck, WebhookSecret, check_fullenrich_signature};
    use relay_shared::config::IngestConfig;
    let stack = crate::support::Stack::new().await;
    let ssm = aws_sdk_ssm::Client::new(&stack.sdk);
    let prefix = format!("/enrich-relay/test-{}", uuid::Uuid::new_v4().simple());
    let put = |name: &str, value: &str| {
        let ssm = ssm.clone();
        let name = format!("{prefix}/{name}");
        let value = value.to_string();
        async move {
            ssm.put_parameter()
                .name(name)
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .overwrite(true)
                .send()
                .await
                .unwrap();
        }
    };
    let read = || async {
        let vars = std::collections::BTreeMap::from([
            (
                "WEBHOOK_SECRET_SSM".to_string(),
                format!("{prefix}/webhook-secret"),
            ),
            (
                "WEBHOOK_SECRET_PREVIOUS_SSM".to_string(),
                format!("{prefix}/webhook-secret-previous"),
            ),
            (
                "FULLENRICH_API_KEY_SSM".to_string(),
                format!("{prefix}/fullenrich-api-key"),
            ),
            (
                "FULLENRICH_API_KEY_PREVIOUS_SSM".to_string(),
                format!("{prefix}/fullenrich-api-key-previous"),
            ),
            (
                "WEBHOOK_QUEUE_URL".to_string(),
                "https://sqs.example/q".to_string(),
            ),
            ("PAYLOAD_BUCKET".to_string(), "bucket".to_string()),
        ]);
        let env = relay_shared::secrets::with_secrets(&stack.sdk, |k: &str| vars.get(k).cloned())
            .await
            .expect("secrets read");
        IngestConfig::from_env(&env).expect("config")
    };
    let body = br#"{"id":"e1","status":"FINISHED","data":[]}"#;
    let signed = |key: &str| relay_shared::auth::fullenrich_signature(key.as_bytes(), body);
    let verifies = |c: &IngestConfig, sig: &str| {
        let keys: Vec<&[u8]> = c
            .fullenrich_keys
            .iter()
            .map(|k| k.expose_secret().as_bytes())
            .collect();
        check_fullenrich_signature(&keys, body, Some(sig)) == SignatureCheck::Valid
    };
    let old_url =
        WebhookSecret::new("webhook-secret-old-0123").token(Provider::Fullenrich, "job_1");

    // Before: one secret and one key; the rotation parameters do not exist yet.
    put("webhook-secret", "webhook-secret-old-0123").await;
    put("fullenrich-api-key", "fe-key-old").await;
    let before = read().await;
    assert!(
        before
            .webhook_secret
            .verify(Provider::Fullenrich, "job_1", &old_url)
    );
    assert!(verifies(&before, &signed("fe-key-old")));
    assert_eq!(before.fullenrich_keys.len(), 1);

    // During: new values in place, the old ones kept as "previous".
    put("webhook-secret-previous", "webhook-secret-old-0123").await;
    put("webhook-secret", "webhook-secret-new-4567").await;
    put("fullenrich-api-key-previous", "fe-key-old").await;
    put("fullenrich-api-key", "fe-key-new").await;
    let during = read().await;
    assert!(
        during
            .webhook_secret
            .verify(Provider::Fullenrich, "job_1", &old_url),
        "URLs handed out before keep working"
    );
    let new_url = during.webhook_secret.token(Provider::Fullenrich, "job_1");
    assert_ne!(new_url, old_url, "new URLs are signed with the new secret");
    assert!(
        verifies(&during, &signed("fe-key-old")),
        "deliveries signed with the old key"
    );
    assert!(
        verifies(&during, &signed("fe-key-new")),
        "and with the new one"
    );
    assert!(!verifies(&during, &signed("fe-key-other")));

    // After: the previous parameters say "none"; old URLs and signatures stop working.
    put("webhook-secret-previous", relay_shared::secrets::UNUSED).await;
    put("fullenrich-api-key-previous", relay_shared::secrets::UNUSED).await;
    let after = read().await;
    assert!(
        !after
            .webhook_secret
            .verify(Provider::Fullenrich, "job_1", &old_url)
    );
    assert!(
        after
            .webhook_secret
            .verify(Provider::Fullenrich, "job_1", &new_url)
    );
    assert!(!verifies(&after, &signed("fe-key-old")));
    assert!(verifies(&after, &signed("fe-key-new")));
}
