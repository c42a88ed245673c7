//! Items ⇄ types: job heads, chunks, contacts, results, through `serde_dynamo`.
//!
//! Each item has a private struct whose field names are the item's attribute names; JSON values
//! (options, custom fields, the provider's record) are stored as their text, and read back
//! leniently: an attribute that is missing or does not parse reads as its default, as before.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::attrs::{Item, data_error, get_n};
use super::callbacks::parse_state;
use super::keys::{LIST_PK, chunk_sk, contact_sk, index_of, job_pk, result_sk};
use crate::Provider;
use crate::budget::{Budget, Reservation};
use crate::ids::{ChunkIndex, ContactIndex};
use crate::ids::{JobId, ProviderId};
use crate::jobs::{
    Chunk, ChunkStatus, Contact, ContactResult, JobError, JobMeta, JobStatus, Operation, Outcome,
};
use crate::now_ms;
use crate::store::StoreError;

/// A JSON value stored as its text (an `S` attribute); unreadable text reads as the default.
mod json_text {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&serde_json::to_string(v).map_err(serde::ser::Error::custom)?)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: DeserializeOwned + Default,
        D: Deserializer<'de>,
    {
        let text = Option::<String>::deserialize(d)?;
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }
}

fn to_item<T: Serialize>(v: &T) -> Item {
    serde_dynamo::to_item(v).expect("an item struct serializes")
}

fn from_item<'a, T: Deserialize<'a>>(item: &Item, what: &str) -> Result<T, StoreError> {
    serde_dynamo::from_item(item.clone())
        .map_err(|e| StoreError::Data(format!("unreadable {what}: {e}")))
}

fn one() -> u64 {
    1
}

#[derive(Serialize, Deserialize)]
struct MetaItem {
    #[serde(default)]
    pk: String,
    #[serde(default)]
    sk: String,
    job_id: JobId,
    provider: Provider,
    operation: Operation,
    status: JobStatus,
    #[serde(default)]
    contacts: u64,
    #[serde(default = "one")]
    chunk_size: u64,
    #[serde(default)]
    chunks: u64,
    /// Older heads have none: the next index is then `chunks`.
    #[serde(default)]
    chunk_seq: Option<u64>,
    #[serde(default)]
    done: u64,
    #[serde(default)]
    found: u64,
    #[serde(default)]
    not_found: u64,
    #[serde(default)]
    failed: u64,
    #[serde(default)]
    duplicates: u64,
    #[serde(default)]
    created_at: u64,
    #[serde(default)]
    updated_at: u64,
    #[serde(default, with = "json_text")]
    options: Value,
    /// The `recent` index (GET /jobs): job heads only.
    #[serde(default)]
    list_pk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    callback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text")]
    error: Option<JobError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_of: Option<JobId>,
    /// The budget (`max_credits`) and what no reservation holds of it ([`Budget`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_credits: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cr_left: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text")]
    waterfall: Option<crate::waterfall::Waterfall>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text")]
    step_of: Option<crate::waterfall::StepOf>,
    /// A later step's job while more contacts may come (removed when the step before settles).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    open: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    passes_on: bool,
    /// Of its results, those passed on to a later step (added by each pass-on).
    #[serde(default)]
    fwd_not_found: u64,
    #[serde(default)]
    fwd_failed: u64,
}

pub(super) fn meta_item(m: &JobMeta) -> Item {
    to_item(&MetaItem {
        pk: job_pk(&m.job_id),
        sk: "META".into(),
        job_id: m.job_id.clone(),
        provider: m.provider,
        operation: m.operation,
        status: m.status,
        contacts: m.contacts,
        chunk_size: m.chunk_size,
        chunks: m.chunks,
        chunk_seq: Some(m.chunk_seq),
        done: m.done,
        found: m.found,
        not_found: m.not_found,
        failed: m.failed,
        duplicates: m.duplicates,
        created_at: m.created_at_ms,
        updated_at: m.updated_at_ms,
        options: m.options.clone(),
        list_pk: LIST_PK.into(),
        name: m.name.clone(),
        callback_url: m.callback_url.clone(),
        retry_of: m.retry_of.clone(),
        error: m.error.clone(),
        max_credits: m.budget.map(|b| b.max),
        cr_left: m.budget.map(|b| b.left),
        waterfall: m.waterfall.clone(),
        step_of: m.step_of.clone(),
        open: m.open,
        passes_on: m.passes_on,
        fwd_not_found: m.passed_on.not_found,
        fwd_failed: m.passed_on.failed,
    })
}

pub(super) fn parse_meta(item: &Item) -> Result<JobMeta, StoreError> {
    let m: MetaItem = from_item(item, "job head")?;
    Ok(JobMeta {
        job_id: m.job_id,
        provider: m.provider,
        operation: m.operation,
        name: m.name,
        status: m.status,
        contacts: m.contacts,
        chunk_size: m.chunk_size,
        chunks: m.chunks,
        chunk_seq: m.chunk_seq.unwrap_or(m.chunks),
        done: m.done,
        found: m.found,
        not_found: m.not_found,
        failed: m.failed,
        duplicates: m.duplicates,
        created_at_ms: m.created_at,
        updated_at_ms: m.updated_at,
        error: m.error,
        options: m.options,
        deleted: item.contains_key("deleted_at"),
        erased: item.contains_key("erased_at"),
        creating: item.contains_key("creating"),
        callback_url: m.callback_url,
        callback: parse_state(item),
        retry_of: m.retry_of,
        budget: m.max_credits.map(|max| Budget {
            max,
            left: m.cr_left.unwrap_or(max),
        }),
        waterfall: m.waterfall,
        step_of: m.step_of,
        open: m.open,
        passes_on: m.passes_on,
        passed_on: crate::jobs::PassedOn {
            not_found: m.fwd_not_found,
            failed: m.fwd_failed,
        },
    })
}

fn pending() -> ChunkStatus {
    ChunkStatus::Pending
}

/// A chunk as written when it is planned; its progress (`c_*`, the lease, `poll_at`, `error`,
/// …) is written by updates and read here where the chunk's readers need it.
#[derive(Serialize, Deserialize)]
struct ChunkItem {
    #[serde(default)]
    pk: String,
    #[serde(default)]
    sk: String,
    chunk: ChunkIndex,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    count: u64,
    #[serde(default = "pending")]
    status: ChunkStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider_id: Option<ProviderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credits: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unconfirmed_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "json_text")]
    parts: Vec<ChunkIndex>,
    #[serde(default, skip_serializing, with = "json_text")]
    error: Option<JobError>,
    #[serde(default, skip_serializing)]
    poll_every: Option<u64>,
    #[serde(default, skip_serializing)]
    started_at: Option<u64>,
    /// Its reservation, written by its own updates ([`Reservation`]).
    #[serde(default, skip_serializing)]
    cr_hold: Option<f64>,
    #[serde(default, skip_serializing)]
    cr_spent: Option<f64>,
    /// A waterfall step's final chunk, its contacts all passed on (set by its own update).
    #[serde(default, skip_serializing)]
    passed: bool,
}

pub(super) fn chunk_item(pk: &str, c: &Chunk) -> Item {
    to_item(&ChunkItem {
        pk: pk.into(),
        sk: chunk_sk(c.index),
        chunk: c.index,
        offset: c.offset,
        count: c.count,
        status: c.status,
        provider_id: c.provider_id.clone(),
        credits: c.credits,
        unconfirmed_at: c.unconfirmed_at_ms,
        parts: c.parts.clone(),
        error: None,
        poll_every: None,
        started_at: None,
        cr_hold: None,
        cr_spent: None,
        passed: false,
    })
}

pub(super) fn parse_chunk(item: &Item) -> Result<Chunk, StoreError> {
    let c: ChunkItem = from_item(item, "chunk")?;
    Ok(Chunk {
        index: c.chunk,
        offset: c.offset,
        count: c.count,
        provider_id: c.provider_id,
        status: c.status,
        credits: c.credits,
        error: c.error,
        unconfirmed_at_ms: c.unconfirmed_at,
        parts: c.parts,
        poll_every_ms: c.poll_every,
        started_at_ms: c.started_at,
        reservation: c.cr_hold.map(|credits| Reservation {
            credits,
            settled: c.cr_spent,
        }),
        passed: c.passed,
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

#[derive(Serialize, Deserialize)]
struct ContactItem {
    #[serde(default)]
    pk: String,
    sk: String,
    #[serde(default, with = "json_text")]
    fields: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text")]
    custom: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text")]
    origin: Option<crate::waterfall::Origin>,
}

pub(super) fn contact_item(pk: &str, c: &Contact) -> Item {
    to_item(&ContactItem {
        pk: pk.into(),
        sk: contact_sk(c.index),
        fields: c.fields.clone(),
        custom: c.custom.clone(),
        origin: c.origin.clone(),
    })
}

pub(super) fn parse_contact(item: &Item) -> Result<Contact, StoreError> {
    let c: ContactItem = from_item(item, "contact")?;
    Ok(Contact {
        index: ContactIndex(
            index_of(Some(&c.sk), "CONTACT#").ok_or_else(|| data_error("contact"))?,
        ),
        fields: c.fields,
        custom: c.custom,
        origin: c.origin,
    })
}

#[derive(Serialize, Deserialize)]
struct ResultItem {
    #[serde(default)]
    pk: String,
    sk: String,
    outcome: Outcome,
    #[serde(default, with = "json_text")]
    raw: Value,
    #[serde(default)]
    stored_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text")]
    custom: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    provisional: bool,
}

pub(super) fn result_item(pk: &str, r: &ContactResult) -> Item {
    to_item(&ResultItem {
        pk: pk.into(),
        sk: result_sk(r.index),
        outcome: r.outcome,
        raw: r.raw.clone(),
        stored_at: now_ms(),
        email: r.email.clone(),
        email_status: r.email_status.clone(),
        phone: r.phone.clone(),
        reason: r.reason.clone(),
        custom: r.custom.clone(),
        provisional: r.provisional,
    })
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
    let r: ResultItem = from_item(item, "result")?;
    Ok(ContactResult {
        index: ContactIndex(index_of(Some(&r.sk), "RESULT#").ok_or_else(|| data_error("result"))?),
        custom: r.custom,
        outcome: r.outcome,
        email: r.email,
        email_status: r.email_status,
        phone: r.phone,
        reason: r.reason,
        provisional: r.provisional,
        raw: r.raw,
        waterfall: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::attrs::{n, s};
    use super::*;
    use serde_json::json;

    #[test]
    fn heads_chunks_contacts_and_results_read_back_as_written() {
        let mut meta = JobMeta::new(
            "job_1".into(),
            Operation::Enrich,
            Some("n".into()),
            JobStatus::Running,
            250,
            100,
            json!({"enrich_fields": ["contact.work_emails"]}),
        );
        meta.callback_url = Some("https://example.org/hook".into());
        meta.error = Some(JobError::new("canceled", "by the client"));
        meta.budget = Some(Budget::new(250.0));
        let item = meta_item(&meta);
        assert_eq!(item["status"], AttributeValue::S("running".into()));
        assert_eq!(item["contacts"], AttributeValue::N("250".into()));
        assert!(matches!(&item["options"], AttributeValue::S(t) if t.contains("enrich_fields")));
        assert_eq!(parse_meta(&item).unwrap(), meta);

        let mut chunk = Chunk::plan(250, 100).remove(2);
        chunk.parts = vec![ChunkIndex(3), ChunkIndex(4)];
        chunk.credits = Some(1.5);
        let item = chunk_item("JOB#job_1", &chunk);
        assert!(!item.contains_key("error") && !item.contains_key("poll_every"));
        assert_eq!(parse_chunk(&item).unwrap(), chunk);

        let contact = Contact {
            origin: None,
            index: ContactIndex(7),
            fields: json!({"first_name": "A"}).as_object().cloned().unwrap(),
            custom: Some(json!({"user_id": "u7"})),
        };
        assert_eq!(
            parse_contact(&contact_item("JOB#job_1", &contact)).unwrap(),
            contact
        );

        let result = ContactResult {
            waterfall: None,
            index: ContactIndex(7),
            custom: None,
            outcome: Outcome::Found,
            email: Some("a@example.com".into()),
            email_status: Some("DELIVERABLE".into()),
            phone: None,
            reason: None,
            provisional: true,
            raw: json!({"contact_info": {}}),
        };
        let item = result_item("JOB#job_1", &result);
        assert!(!item.contains_key("phone") && !item.contains_key("custom"));
        assert_eq!(item["provisional"], AttributeValue::Bool(true));
        assert_eq!(parse_result(&item).unwrap(), result);
        let final_row = ContactResult {
            provisional: false,
            ..result
        };
        assert!(!result_item("JOB#job_1", &final_row).contains_key("provisional"));
    }

    #[test]
    fn an_older_or_damaged_head_reads_leniently() {
        let item = Item::from([
            ("job_id".into(), s("job_2")),
            ("provider".into(), s("enrow")),
            ("operation".into(), s("email_find")),
            ("status".into(), s("completed")),
            ("chunks".into(), n(3)),
            ("error".into(), s("{not json")),
            ("deleted_at".into(), n(1)),
        ]);
        let meta = parse_meta(&item).unwrap();
        assert_eq!(
            (meta.chunk_seq, meta.chunk_size),
            (3, 1),
            "defaults as before"
        );
        assert!(meta.error.is_none() && meta.deleted && meta.options.is_null());
        let bad = Item::from([
            ("job_id".into(), s("job_3")),
            ("provider".into(), s("acme")),
        ]);
        assert!(matches!(parse_meta(&bad), Err(StoreError::Data(_))));
    }
}
