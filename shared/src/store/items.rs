//! Items ⇄ types: job heads, chunks, contacts, results.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::jobs::{
    Chunk, ChunkStatus, Contact, ContactResult, JobMeta, JobStatus, Operation, Outcome,
};
use crate::{Provider, now_ms};

use super::*;

pub(super) fn meta_item(m: &JobMeta) -> Item {
    let mut item = Item::from([
        ("pk".into(), s(job_pk(&m.job_id))),
        ("sk".into(), s("META")),
        ("job_id".into(), s(&m.job_id)),
        ("provider".into(), s(m.provider.as_str())),
        ("operation".into(), s(m.operation.as_str())),
        ("status".into(), s(m.status.as_str())),
        ("contacts".into(), n(m.contacts)),
        ("chunk_size".into(), n(m.chunk_size)),
        ("chunks".into(), n(m.chunks)),
        ("chunk_seq".into(), n(m.chunk_seq)),
        ("done".into(), n(m.done)),
        ("found".into(), n(m.found)),
        ("not_found".into(), n(m.not_found)),
        ("failed".into(), n(m.failed)),
        ("duplicates".into(), n(m.duplicates)),
        ("created_at".into(), n(m.created_at_ms)),
        ("updated_at".into(), n(m.updated_at_ms)),
        ("options".into(), s(m.options.to_string())),
        // The `recent` index (GET /jobs): job heads only.
        ("list_pk".into(), s(LIST_PK)),
    ]);
    if let Some(name) = &m.name {
        item.insert("name".into(), s(name));
    }
    if let Some(url) = &m.callback_url {
        item.insert("callback_url".into(), s(url));
    }
    if let Some(e) = &m.error {
        item.insert(
            "error".into(),
            s(serde_json::to_string(e).unwrap_or_default()),
        );
    }
    item
}

pub(super) fn parse_meta(item: &Item) -> Result<JobMeta, StoreError> {
    Ok(JobMeta {
        job_id: get_s(item, "job_id")
            .ok_or_else(|| data_error("job id"))?
            .to_string(),
        provider: get_s(item, "provider")
            .and_then(|v| v.parse::<Provider>().ok())
            .ok_or_else(|| data_error("provider"))?,
        operation: get_s(item, "operation")
            .and_then(|v| v.parse::<Operation>().ok())
            .ok_or_else(|| data_error("operation"))?,
        name: get_s(item, "name").map(str::to_string),
        status: get_s(item, "status")
            .and_then(|v| v.parse::<JobStatus>().ok())
            .ok_or_else(|| data_error("status"))?,
        contacts: get_n(item, "contacts").unwrap_or(0),
        chunk_size: get_n(item, "chunk_size").unwrap_or(1),
        chunks: get_n(item, "chunks").unwrap_or(0),
        chunk_seq: get_n(item, "chunk_seq")
            .or_else(|| get_n(item, "chunks"))
            .unwrap_or(0),
        done: get_n(item, "done").unwrap_or(0),
        found: get_n(item, "found").unwrap_or(0),
        not_found: get_n(item, "not_found").unwrap_or(0),
        failed: get_n(item, "failed").unwrap_or(0),
        duplicates: get_n(item, "duplicates").unwrap_or(0),
        created_at_ms: get_n(item, "created_at").unwrap_or(0),
        updated_at_ms: get_n(item, "updated_at").unwrap_or(0),
        error: get_json(item, "error").and_then(|v| serde_json::from_value(v).ok()),
        options: get_json(item, "options").unwrap_or(Value::Null),
        deleted: item.contains_key("deleted_at"),
        callback_url: get_s(item, "callback_url").map(str::to_string),
        callback: callbacks::parse_state(item),
    })
}

pub(super) fn chunk_item(pk: &str, c: &Chunk) -> Item {
    let mut item = Item::from([
        ("pk".into(), s(pk)),
        ("sk".into(), s(chunk_sk(c.index))),
        ("chunk".into(), n(c.index)),
        ("offset".into(), n(c.offset)),
        ("count".into(), n(c.count)),
        ("status".into(), s(c.status.as_str())),
    ]);
    if let Some(pid) = &c.provider_id {
        item.insert("provider_id".into(), s(pid));
    }
    if let Some(cr) = c.credits {
        item.insert("credits".into(), n(cr));
    }
    if let Some(at) = c.unconfirmed_at_ms {
        item.insert("unconfirmed_at".into(), n(at));
    }
    if !c.parts.is_empty() {
        item.insert(
            "parts".into(),
            s(serde_json::to_string(&c.parts).unwrap_or_default()),
        );
    }
    item
}

pub(super) fn parse_chunk(item: &Item) -> Result<Chunk, StoreError> {
    Ok(Chunk {
        index: get_n(item, "chunk").ok_or_else(|| data_error("chunk"))?,
        offset: get_n(item, "offset").unwrap_or(0),
        count: get_n(item, "count").unwrap_or(0),
        provider_id: get_s(item, "provider_id").map(str::to_string),
        status: get_s(item, "status")
            .and_then(|v| v.parse::<ChunkStatus>().ok())
            .unwrap_or(ChunkStatus::Pending),
        credits: get_n(item, "credits"),
        error: get_json(item, "error").and_then(|v| serde_json::from_value(v).ok()),
        unconfirmed_at_ms: get_n(item, "unconfirmed_at"),
        parts: get_json(item, "parts")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        poll_every_ms: get_n(item, "poll_every"),
        started_at_ms: get_n(item, "started_at"),
    })
}

/// An item's size by DynamoDB's rule: each attribute's name plus its value (a string its UTF-8
/// bytes; a number about one byte per two significant digits, plus one).
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
                    AttributeValue::B(b) => b.as_ref().len(),
                    AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
                    // Lists, maps and sets: not in the relay's index entries; a rough figure.
                    other => format!("{other:?}").len(),
                }
        })
        .sum()
}

pub(super) fn parse_contact(item: &Item) -> Result<Contact, StoreError> {
    Ok(Contact {
        index: index_of(get_s(item, "sk"), "CONTACT#").ok_or_else(|| data_error("contact"))?,
        fields: match get_json(item, "fields") {
            Some(Value::Object(m)) => m,
            _ => Default::default(),
        },
        custom: get_json(item, "custom"),
    })
}

pub(super) fn result_item(pk: &str, r: &ContactResult) -> Item {
    let mut item = Item::from([
        ("pk".into(), s(pk)),
        ("sk".into(), s(result_sk(r.index))),
        ("outcome".into(), s(r.outcome.as_str())),
        ("raw".into(), s(r.raw.to_string())),
        ("stored_at".into(), n(now_ms())),
    ]);
    for (k, v) in [
        ("email", &r.email),
        ("email_status", &r.email_status),
        ("phone", &r.phone),
        ("reason", &r.reason),
    ] {
        if let Some(v) = v {
            item.insert(k.into(), s(v));
        }
    }
    if let Some(c) = &r.custom {
        item.insert("custom".into(), s(c.to_string()));
    }
    if r.provisional {
        item.insert("provisional".into(), AttributeValue::Bool(true));
    }
    item
}

/// Whether an item's `expires_at` (TTL, seconds) has passed.
pub(super) fn expired(item: &Item) -> bool {
    get_n::<u64>(item, "expires_at").is_some_and(|at| at <= now_ms() / 1000)
}

/// When a result row was written (the version a replacing write is conditioned on).
pub(super) fn stored_at(item: &Item) -> u64 {
    get_n(item, "stored_at").unwrap_or(0)
}

pub(super) fn parse_result(item: &Item) -> Result<ContactResult, StoreError> {
    let opt = |k| get_s(item, k).map(str::to_string);
    Ok(ContactResult {
        index: index_of(get_s(item, "sk"), "RESULT#").ok_or_else(|| data_error("result"))?,
        custom: get_json(item, "custom"),
        outcome: get_s(item, "outcome")
            .and_then(|v| v.parse::<Outcome>().ok())
            .ok_or_else(|| data_error("outcome"))?,
        email: opt("email"),
        email_status: opt("email_status"),
        phone: opt("phone"),
        reason: opt("reason"),
        provisional: item
            .get("provisional")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        raw: get_json(item, "raw").unwrap_or(Value::Null),
    })
}
