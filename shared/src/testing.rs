//! Fixtures for tests (feature `memory`): the events and messages the functions get, as AWS and
//! ingest make them, so a function's unit tests need nothing beyond this crate.

use aws_lambda_events::event::sqs::SqsMessage;
use serde_json::Value;

use crate::Provider;
use crate::envelope::{Body, Envelope, Signature};
use crate::ids::JobId;
use crate::providers::Hook;

/// The SQS message body ingest would send for this delivery (FullEnrich bodies as if they carried
/// a valid `X-Signature-SHA1`).
pub fn envelope(provider: Provider, hook: Hook, job_id: &JobId, body: &[u8]) -> String {
    let signature = match provider {
        Provider::Fullenrich => Signature::Verified,
        Provider::Enrow => Signature::NotApplicable,
    };
    envelope_with(provider, hook, job_id, body, signature)
}

/// The same with the signature ingest found (e.g. `Signature::Absent`: accepted on the URL token).
pub fn envelope_with(
    provider: Provider,
    hook: Hook,
    job_id: &JobId,
    body: &[u8],
    signature: Signature,
) -> String {
    Envelope {
        v: 1,
        delivery_id: uuid::Uuid::new_v4().to_string(),
        provider,
        hook,
        job_id: job_id.clone(),
        received_at_ms: crate::now_ms(),
        headers: Default::default(),
        signature,
        body: Body::inline(body),
        requeues: 0,
        paced: 0,
    }
    .to_json()
}

/// An SQS record as Lambda's event source hands it over.
pub fn sqs_message(body: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(uuid::Uuid::new_v4().to_string());
    m.receipt_handle = Some("rh".into());
    m.body = Some(body.to_string());
    m.event_source = Some("aws:sqs".into());
    m
}

/// An API Gateway HTTP API (payload v2) event, body base64-encoded as API Gateway does for binary.
#[allow(deprecated)] // `http_method` is deprecated; it is set to the request's method all the same
pub fn apigw_v2_event(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Value {
    use aws_lambda_events::apigw::{
        ApiGatewayV2httpRequest, ApiGatewayV2httpRequestContext,
        ApiGatewayV2httpRequestContextHttpDescription,
    };
    use aws_lambda_events::http::{HeaderMap, HeaderName, HeaderValue, Method};
    use aws_lambda_events::query_map::QueryMap;
    use base64::Engine;

    let method: Method = method.parse().unwrap_or(Method::GET);
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    // API Gateway hands the parameters decoded, a repeated key with each of its values.
    let mut params: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| !k.is_empty()) {
        params
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    let headers: HeaderMap = headers
        .iter()
        .filter_map(|(k, v)| {
            let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).ok()?;
            Some((name, HeaderValue::from_str(v).ok()?))
        })
        .collect();

    let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
    http.method = method.clone();
    http.path = Some(path.to_string());
    http.protocol = Some("HTTP/1.1".into());
    http.source_ip = Some("127.0.0.1".into());
    http.user_agent = Some("local".into());
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.account_id = Some("123456789012".into());
    context.apiid = Some("api".into());
    context.domain_name = Some("api.execute-api.us-east-1.amazonaws.com".into());
    context.domain_prefix = Some("api".into());
    context.request_id = Some("req".into());
    context.route_key = Some("$default".into());
    context.stage = Some("$default".into());
    context.time = Some("22/Nov/2026:12:00:00 +0000".into());
    context.http = http;
    let mut event = ApiGatewayV2httpRequest::default();
    event.version = Some("2.0".into());
    event.route_key = Some("$default".into());
    event.http_method = method;
    event.raw_path = Some(path.to_string());
    event.raw_query_string = Some(query.to_string());
    event.query_string_parameters = QueryMap::from(params);
    event.headers = headers;
    event.request_context = context;
    event.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
    event.is_base64_encoded = true;
    serde_json::to_value(event).expect("an API Gateway event serializes")
}
