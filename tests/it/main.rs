//! One integration-test binary, a module per area. Every test talks to a real moto server through
//! the real AWS SDK for Rust; each test gets its own tables, queues and bucket, created from
//! template.yaml under a fresh prefix.

mod budget;
mod callback;
mod cli;
mod contract;
mod credit;
mod crm;
mod deploy_doc;
mod dlq;
mod documented;
mod e2e;
mod erasure;
mod events;
mod fetch;
mod global;
mod ingest;
mod openapi;
mod poll;
mod soak;
mod staged;
mod starts;
mod submit;
mod support;
mod template;
mod waterfall;
