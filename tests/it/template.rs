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
