//! A delivery's event: its identity (the dedupe key) and what applying it means, from one parse
//! of its body.

use relay_shared::JobId;
use relay_shared::Provider;
use relay_shared::ProviderId;
use relay_shared::envelope::{Envelope, Signature};
use relay_shared::jobs::RECORD_KEY;
use relay_shared::providers::Hook;
use relay_shared::providers::enrow::{self, EventKind};
use relay_shared::providers::fullenrich::{self};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// An event's identity (providers.md §5), the one place its formats are written: a FullEnrich
/// batch `fe:batch:{id}:{status}`, a FullEnrich `contact_finished` `fe:contact:{scope}:{records}`,
/// an Enrow event `enrow:{event}:{id}`. A webhook and a poll of one completion have one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventKey(String);

impl EventKey {
    pub(crate) fn fullenrich_batch(id: &str, status: &str) -> EventKey {
        EventKey(format!("fe:batch:{id}:{status}"))
    }

    pub(crate) fn fullenrich_contact(scope: &str, records: &str) -> EventKey {
        EventKey(format!("fe:contact:{scope}:{records}"))
    }

    pub(crate) fn enrow(kind: &EventKind, id: &str) -> EventKey {
        EventKey(format!("enrow:{kind}:{id}"))
    }

    /// The dedupe key: scoped to a job, so a caller holding one job's URL who posts events
    /// naming another job's provider ids claims keys of its own job only.
    pub(crate) fn scoped(&self, job_id: &JobId) -> String {
        format!("{job_id}#{}", self.0)
    }

    /// The claim of an orphan: no job's (`~` is in no job id).
    pub(crate) fn orphan(&self) -> String {
        format!("~orphan#{}", self.0)
    }
}

/// A parsed delivery: the event's identity and what applying it means.
pub(crate) enum Action {
    FullenrichBatch {
        id: ProviderId,
        job: fullenrich::Job,
        /// The body carried a valid `X-Signature-SHA1`: its records are FullEnrich's.
        signed: bool,
    },
    FullenrichContact {
        job: fullenrich::Job,
        signed: bool,
    },
    EnrowSingle {
        id: ProviderId,
        /// The event's name (as a poll, the one that would announce it).
        kind: EventKind,
        result: enrow::SingleResult,
        /// The event's top-level `custom` (where `verification_finished` carries it).
        custom: Option<Value>,
        raw: Value,
        credits: Option<f64>,
    },
    EnrowBulk {
        id: ProviderId,
        kind: EventKind,
        credits: Option<f64>,
        /// The results, when a poll fetched them already (one GET per poll).
        prefetched: Option<enrow::BulkResults>,
    },
}

impl Action {
    /// The Enrow search id an Enrow event names.
    pub(crate) fn enrow_id(&self) -> Option<&ProviderId> {
        self.enrow_event().map(|(id, _, _)| id)
    }

    /// An Enrow event's search id, name and cost.
    pub(crate) fn enrow_event(&self) -> Option<(&ProviderId, &EventKind, Option<f64>)> {
        match self {
            Action::EnrowSingle {
                id, kind, credits, ..
            }
            | Action::EnrowBulk {
                id, kind, credits, ..
            } => Some((id, kind, *credits)),
            _ => None,
        }
    }

    /// One contact's result (or a snapshot of several), written row by row.
    pub(crate) fn is_single_result(&self) -> bool {
        matches!(
            self,
            Action::EnrowSingle { .. } | Action::FullenrichContact { .. }
        )
    }
}

/// The event's identity (the dedupe key, providers.md §5) and what to do with it, from the one
/// parse of its body. `Err` is the reason a delivery can never be processed.
pub(crate) fn parse(env: &Envelope, raw: &[u8]) -> Result<(EventKey, Action), String> {
    const NOT_JSON: &str = "body is not JSON";
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err("empty body".into());
    }
    let signed = env.signature == Signature::Verified;
    match (env.provider, env.hook) {
        // Parsed once: the event is read from the value a single result keeps as its `raw`.
        (Provider::Enrow, _) => enrow_event(serde_json::from_slice(raw).map_err(|_| NOT_JSON)?),
        _ if serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_err() => Err(NOT_JSON.into()),
        (Provider::Fullenrich, Hook::Batch) => fullenrich_batch(raw, signed),
        (Provider::Fullenrich, Hook::Contact) => fullenrich_contact(env, raw, signed),
        (Provider::Fullenrich, Hook::Event | Hook::Global) => Err("no such FullEnrich hook".into()),
    }
}

/// A FullEnrich batch webhook: one enrichment, at one status.
fn fullenrich_batch(raw: &[u8], signed: bool) -> Result<(EventKey, Action), String> {
    let job = fullenrich::parse_batch(raw).map_err(|_| "not a FullEnrich job object")?;
    let id = ProviderId::new(job.id.clone().ok_or("FullEnrich batch without id")?);
    let status = job
        .status
        .as_ref()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    Ok((
        EventKey::fullenrich_batch(&id, &status),
        Action::FullenrichBatch { id, job, signed },
    ))
}

/// A FullEnrich `contact_finished` body. Its identity is what it finishes: the record keys of its
/// finished records (a body may be the whole enrichment, most of it still running); the same
/// snapshot delivered again is the same event, a later one with more finished is another.
fn fullenrich_contact(
    env: &Envelope,
    raw: &[u8],
    signed: bool,
) -> Result<(EventKey, Action), String> {
    let job = fullenrich::parse_contact_finished(raw)
        .map_err(|_| "not a FullEnrich contact_finished body")?;
    if job.data.is_empty() {
        return Err("contact_finished without a record".into());
    }
    let scope = job.id.clone().unwrap_or_else(|| env.job_id.to_string());
    let mut finished: Vec<String> = job
        .data
        .iter()
        .filter(|r| r.is_finished())
        .map(|record| {
            record.custom_str(RECORD_KEY).unwrap_or_else(|| {
                let input = record.raw.get("input").cloned().unwrap_or(Value::Null);
                hex::encode(Sha256::digest(input.to_string().as_bytes()))
            })
        })
        .collect();
    finished.sort();
    let records = match finished.as_slice() {
        [one] => one.clone(),
        [] => format!("none:{}", hex::encode(Sha256::digest(raw))),
        many => hex::encode(Sha256::digest(many.join(",").as_bytes())),
    };
    Ok((
        EventKey::fullenrich_contact(&scope, &records),
        Action::FullenrichContact { job, signed },
    ))
}

/// An Enrow event (its body, parsed): a bulk's (its results are fetched) or a single search's (its
/// result inline, the body kept as its `raw`).
fn enrow_event(body: Value) -> Result<(EventKey, Action), String> {
    let event = enrow::Event::deserialize(&body).map_err(|_| "not an Enrow event")?;
    let kind = event.event.clone().ok_or("Enrow event without a name")?;
    if let EventKind::Other(name) = &kind {
        return Err(format!("unknown Enrow event {name:?}"));
    }
    let id = ProviderId::new(event.id.clone().ok_or("Enrow event without id")?);
    let key = EventKey::enrow(&kind, &id);
    let credits = event.credits.cost;
    if kind.is_bulk() {
        return Ok((
            key,
            Action::EnrowBulk {
                id,
                kind,
                credits,
                prefetched: None,
            },
        ));
    }
    let result = event
        .single_result()
        .ok_or("Enrow single event without a result")?;
    Ok((
        key,
        Action::EnrowSingle {
            id,
            kind,
            result,
            custom: event.custom.clone(),
            raw: body,
            credits,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_shared::testing::envelope;
    use serde_json::json;

    fn parse_enrow(body: &[u8]) -> Result<(EventKey, Action), String> {
        let env = envelope(Provider::Enrow, Hook::Event, &JobId::new("job_1"), body);
        parse(&Envelope::from_json(&env).unwrap(), body)
    }

    #[test]
    fn an_enrow_single_event_keeps_its_whole_body_as_raw_and_a_bad_body_says_why() {
        let body = json!({"event": "single_search_finished", "id": "s-1", "credits": {"cost": 1},
            "result": {"email": "person@example.com", "qualification": "valid"}, "extra": [1, 2]});
        let (key, action) = parse_enrow(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            key,
            EventKey::enrow(&EventKind::SingleSearchFinished, "s-1")
        );
        let Action::EnrowSingle {
            raw,
            result,
            credits,
            ..
        } = action
        else {
            panic!("a single event");
        };
        assert_eq!(raw, body);
        assert_eq!(result.email.as_deref(), Some("person@example.com"));
        assert_eq!(credits, Some(1.0));
        let reason = |body: &[u8]| parse_enrow(body).err();
        assert_eq!(reason(b"<html>").as_deref(), Some("body is not JSON"));
        assert_eq!(reason(b"\"text\"").as_deref(), Some("not an Enrow event"));
    }
}
