//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` and the types
//! they take and answer ([`ApiDoc`]), as [`generated`] writes it to `docs/openapi.json`: a test
//! fails while the file is another document (`UPDATE_OPENAPI=1 cargo test -p job-submit openapi`
//! writes it), and `GET /openapi.json` serves the file ([`super::OPENAPI`]).

use serde::Serialize;
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Schema, SchemaType};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, path::Paths};
use utoipa::{Modify, OpenApi};

use super::{create, read, retry, schema, write};

/// The generated document as `docs/openapi.json` holds it: JSON indented by one space, one
/// line feed at the end.
pub fn generated() -> String {
    let mut out = Vec::new();
    let indent = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut json = serde_json::Serializer::with_formatter(&mut out, indent);
    ApiDoc::openapi()
        .serialize(&mut json)
        .expect("the document serializes");
    out.push(b'\n');
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// The jobs API. Its webhook (`job.completed`) is in [`Webhooks`]; the providers' webhooks
/// (`/webhooks/...`, webhook-ingest) are not this API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Enrich Relay jobs API",
        description = "Submit contact-enrichment jobs to FullEnrich and Enrow, follow them, and read every result mapped to the contact it was asked for. Errors are JSON: {\"error\": {\"code\", \"message\", \"field\"}}; messages name the rule, never a value.",
    ),
    servers(
        (url = "https://{api}.execute-api.{region}.amazonaws.com", variables(
            ("api" = (default = "api")),
            ("region" = (default = "us-east-1")),
        )),
        (url = "http://127.0.0.1:9000", description = "make dev"),
    ),
    paths(
        super::openapi_json,
        create::create,
        read::list,
        read::job,
        write::delete,
        write::cancel,
        write::add_page,
        write::start,
        read::results,
        retry::retry,
        read::orphans,
    ),
    components(
        schemas(schema::ErrorBody, schema::JobCompleted),
        responses(schema::Error),
    ),
    modifiers(&Bearer, &Webhooks, &ContactsOrStaged),
)]
pub struct ApiDoc;

/// The bearer token every route but `GET /openapi.json` takes.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("RELAY_API_TOKEN"))
            .build();
        let components = doc.components.get_or_insert_default();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
    }
}

/// What the relay sends: `job.completed`, to a job's `callback_url`.
struct Webhooks;

impl Modify for Webhooks {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        #[derive(OpenApi)]
        #[openapi(paths(job_completed))]
        struct Sent;
        let mut webhooks = Paths::new();
        for (path, mut item) in Sent::openapi().paths.paths {
            if let Some(post) = item.post.as_mut() {
                post.tags = None;
            }
            webhooks
                .paths
                .insert(path.trim_start_matches('/').into(), item);
        }
        doc.webhooks = Some(webhooks);
    }
}

/// A job ended (completed, partially_failed, failed or canceled)
///
/// Sent to the job's callback_url once it ends, signed per Standard Webhooks
/// (https://www.standardwebhooks.com) under the deployment's CALLBACK_SECRET: verify with any
/// Standard Webhooks library. webhook-id is the same in every attempt: dedupe on it. Holds the
/// job's fields and figures, never contact data; read results with GET /jobs/{id}/results. A
/// non-2xx answer, or none in 10 s, is retried: 30 s, then doubling up to 2 h between attempts,
/// for 24 h.
#[utoipa::path(
    post,
    path = "/job.completed",
    operation_id = "jobCompleted",
    params(
        ("webhook-id" = String, Header, description = "The event's id, the same in every attempt."),
        ("webhook-timestamp" = String, Header, description = "Unix time, seconds, of this attempt."),
        ("webhook-signature" = String, Header, description = "v1,<base64 HMAC-SHA256 of \"<webhook-id>.<webhook-timestamp>.<body>\"> keyed with the base64-decoded secret after whsec_."),
    ),
    request_body = schema::JobCompleted,
    responses((status = "2XX", description = "Taken: no further attempt.")),
)]
#[allow(dead_code)]
fn job_completed() {}

/// `POST /jobs` takes `contacts` or `staged` (the fields' rules are `NewJob`'s).
struct ContactsOrStaged;

impl Modify for ContactsOrStaged {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let schemas = &mut doc.components.get_or_insert_default().schemas;
        let Some(fields) = schemas.remove("NewJob") else {
            return;
        };
        let requires = |field: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .required(field)
                .build()
        };
        let either = AnyOfBuilder::new()
            .item(requires("contacts"))
            .item(requires("staged"))
            .build();
        let new_job = AllOfBuilder::new()
            .item(fields)
            .item(Schema::AnyOf(either))
            .build();
        schemas.insert("NewJob".into(), RefOr::T(Schema::AllOf(new_job)));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use relay_shared::jobs::Operation;
    use serde_json::{Value, json};
    use strum::VariantArray;

    use super::super::MAX_RESULTS_PAGE_BYTES;
    use super::super::read::{Bounds, ListPage, ResultsPage};
    use super::*;

    #[test]
    fn docs_openapi_json_is_the_generated_document() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let generated = generated();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            // Written; the build that includes it (`OPENAPI`) is the next one.
            std::fs::write(path, &generated).expect("docs/openapi.json written");
            return;
        }
        let file = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            file == generated,
            "docs/openapi.json is not the document the code generates: regenerate it with \
             `UPDATE_OPENAPI=1 cargo test -p job-submit openapi` (or `UPDATE_OPENAPI=1 cargo \
             test --workspace --lib openapi`) and commit it"
        );
        assert_eq!(
            super::super::OPENAPI,
            generated,
            "GET /openapi.json serves the file"
        );
    }

    fn doc() -> Value {
        serde_json::from_str(&generated()).unwrap()
    }

    /// The schema of parameter `name` of `GET path`.
    fn param(doc: &Value, path: &str, name: &str) -> Value {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let p = params.iter().find(|p| p["name"] == name).expect(name);
        p["schema"].clone()
    }

    #[test]
    fn the_documented_bounds_are_the_codes() {
        use relay_shared::validate::{
            MAX_CALLBACK_URL_CHARS, MAX_CONTACTS, MAX_DEADLINE_HOURS, MAX_NAME_CHARS,
        };
        let doc = doc();
        for (path, max, default) in [
            ("/jobs", ListPage::MAX, ListPage::DEFAULT),
            ("/orphans", ListPage::MAX, ListPage::DEFAULT),
            ("/jobs/{id}/results", ResultsPage::MAX, ResultsPage::DEFAULT),
        ] {
            let limit = param(&doc, path, "limit");
            assert_eq!(
                (&limit["minimum"], &limit["maximum"], &limit["default"]),
                (&json!(1), &json!(max), &json!(default)),
                "{path}"
            );
        }
        let new_job = &doc["components"]["schemas"]["NewJob"]["allOf"][0]["properties"];
        assert_eq!(new_job["contacts"]["maxItems"], MAX_CONTACTS);
        let staged = &new_job["staged"]["oneOf"][0]["properties"]["contacts"];
        assert_eq!(staged["maximum"], MAX_CONTACTS);
        assert_eq!(new_job["name"]["maxLength"], MAX_NAME_CHARS);
        assert_eq!(new_job["callback_url"]["maxLength"], MAX_CALLBACK_URL_CHARS);
        let options = &new_job["options"]["oneOf"][0]["properties"];
        assert_eq!(options["deadline_hours"]["maximum"], MAX_DEADLINE_HOURS);
        let mb = MAX_RESULTS_PAGE_BYTES as f64 / 1e6;
        let results = doc["paths"]["/jobs/{id}/results"]["get"]["summary"].to_string();
        assert!(results.contains(&format!("{mb} MB")), "{results}");
    }

    #[test]
    fn the_documented_contact_fields_and_options_are_the_ones_validation_reads() {
        use relay_shared::validate::{derivable_fields, operation_fields};
        let doc = doc();
        let contact = doc["components"]["schemas"]["Contact"]["properties"]
            .as_object()
            .unwrap();
        let documented: BTreeSet<&str> = contact.keys().map(String::as_str).collect();
        let mut read: BTreeSet<&str> = Operation::VARIANTS
            .iter()
            .flat_map(|op| [operation_fields(*op), derivable_fields(*op)].concat())
            .collect();
        read.insert("custom");
        assert_eq!(documented, read);
        // Each documented enrich field is taken, and another is refused.
        let new_job = &doc["components"]["schemas"]["NewJob"]["allOf"][0]["properties"];
        let fields = &new_job["options"]["oneOf"][0]["properties"]["enrich_fields"]["items"];
        let job = |f: &Value| {
            json!({"provider": "fullenrich", "operation": "enrich",
                "options": {"enrich_fields": [f]},
                "contacts": [{"linkedin_url": "https://www.linkedin.com/in/ada"}]})
        };
        for f in fields["enum"].as_array().unwrap() {
            assert!(relay_shared::validate::validate(&job(f)).is_ok(), "{f}");
        }
        assert!(relay_shared::validate::validate(&job(&json!("contact.other"))).is_err());
        // The CSV's description names each of its fixed columns.
        let csv = doc["paths"]["/jobs/{id}/results"]["get"]["responses"]["200"]["content"]
            ["text/csv"]["schema"]["description"]
            .to_string();
        for column in relay_shared::results_csv::RESULT_COLUMNS {
            assert!(csv.contains(column), "{column}");
        }
    }

    #[test]
    fn a_jobs_callback_has_the_documented_fields() {
        use relay_shared::callback::callback_json;
        use relay_shared::jobs::{CallbackState, CallbackStatus, JobMeta, JobStatus};
        let doc = doc();
        let schema = &doc["components"]["schemas"]["CallbackState"];
        let documented: BTreeSet<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let required: BTreeSet<String> =
            serde_json::from_value(schema["required"].clone()).unwrap();
        let mut meta = JobMeta::new(
            "job_1".into(),
            Operation::EmailVerify,
            None,
            JobStatus::Running,
            1,
            1,
            Value::Null,
        );
        meta.callback_url = Some("https://example.com/hook".into());
        let waiting = callback_json(&meta);
        meta.callback = Some(CallbackState {
            status: CallbackStatus::Pending,
            attempts: 2,
            last_status_code: None,
            last_error: Some("timed out".into()),
            next_attempt_at: Some(1),
            since_ms: 0,
        });
        let pending = callback_json(&meta);
        for callback in [waiting, pending] {
            let keys: BTreeSet<String> = callback.as_object().unwrap().keys().cloned().collect();
            assert!(required.is_subset(&keys), "{callback}");
            assert!(keys.is_subset(&documented), "{callback}");
            assert!(
                schema["properties"]["status"]["enum"]
                    .as_array()
                    .unwrap()
                    .contains(&callback["status"])
            );
        }
    }
}
