//! A provider as providers.md documents both: starts that take an enrichment, results ready a
//! while later, webhooks (signed or not, once or several times, or never), result GETs by id,
//! and the faults the documents allow. Every request is logged with its (simulated) time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_shared::JobId;
use relay_shared::Provider;
use relay_shared::ProviderId;
use relay_shared::envelope::Signature;
use relay_shared::jobs::Operation;
use relay_shared::now_ms;
use relay_shared::providers::Hook;
use relay_shared::providers::client::{FetchError, ProviderClient};
use relay_shared::providers::submit::{StartError, StartRequest, Started, Submitter};
use relay_shared::providers::{enrow, fullenrich};
use relay_shared::testing::envelope_with;
use serde_json::{Value, json};

/// A small seeded generator (xorshift64*): the same seed, the same plan.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the provider does wrong, drawn per start from the seed.
#[derive(Debug, Clone)]
pub struct Faults {
    pub seed: u64,
    /// The start is taken, but its answer is lost (a timeout after sending, a 5xx).
    pub answer_lost: f64,
    /// The enrichment is gone when polled (FullEnrich 404, Enrow "Could not retrieve").
    pub vanishes: f64,
    /// How many times the batch webhook is sent: `min_copies` (0: maybe never) to this many.
    pub min_copies: u64,
    pub max_copies: u64,
    /// A FullEnrich batch webhook without `X-Signature-SHA1`.
    pub unsigned: f64,
    /// FullEnrich also sends signed `contact_finished` bodies.
    pub per_contact: f64,
    /// Results are ready this long after the start.
    pub ready_after: Duration,
}

impl Faults {
    /// A provider that does everything right, once.
    pub fn none() -> Faults {
        Faults {
            seed: 1,
            answer_lost: 0.0,
            vanishes: 0.0,
            min_copies: 1,
            max_copies: 1,
            unsigned: 0.0,
            per_contact: 0.0,
            ready_after: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Start,
    Get,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub at_ms: u64,
    pub provider: Provider,
    pub kind: Kind,
}

struct Enrichment {
    job_id: JobId,
    op: Operation,
    rids: Vec<u64>,
    /// Per record: whether the provider finds it.
    finds: Vec<bool>,
    ready_at_ms: u64,
    vanished: bool,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    enrichments: HashMap<String, Enrichment>,
    /// Contacts the relay was shown as found (a webhook actually sent, or a GET answered).
    shown_found: HashSet<(JobId, u64)>,
    /// Every start, by the contacts it carried.
    started: Vec<(JobId, Vec<u64>)>,
    /// Every start, by provider and the people it asked about ([`person`]).
    asked: Vec<(Provider, Vec<u64>)>,
    webhooks: Vec<(String, Duration)>,
    next: u64,
    rng: Option<Rng>,
}

/// Which people ([`person`]) a provider finds.
pub type Finds = Arc<dyn Fn(Provider, u64) -> bool + Send + Sync>;

#[derive(Clone)]
pub struct SimProvider {
    faults: Faults,
    state: Arc<Mutex<State>>,
    finds: Finds,
}

/// Whether the provider finds contact `rid` (deterministic: six in ten).
pub fn found(rid: u64) -> bool {
    (rid * 7 + 3) % 10 < 6
}

/// The person a start's record asks about: the number in its name (`Person 7`, last name
/// `L7`), the same whichever step of a waterfall asks; its record key when it has none.
fn person(record: &Value, rid: u64) -> u64 {
    let number = |v: &Value| {
        v.as_str().and_then(|t| {
            t.trim_start_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
    };
    number(&record["last_name"])
        .or_else(|| number(&record["fullname"]))
        .unwrap_or(rid)
}

/// The records a start carried, each with its key and person.
fn records(op: Operation, body: &Value) -> Vec<(u64, u64)> {
    let list: Vec<Value> = match op {
        Operation::Enrich | Operation::ReverseEmail => {
            body["data"].as_array().cloned().unwrap_or_default()
        }
        _ => match body.get("searches").and_then(Value::as_array) {
            Some(s) => s.clone(),
            None => vec![body.clone()],
        },
    };
    let keys = rids(op, body);
    list.iter()
        .zip(keys)
        .map(|(r, k)| (k, person(r, k)))
        .collect()
}

/// The job id in a webhook URL (`…/webhooks/{provider}/{job}/{hook}/{token}`).
fn job_of(url: &str) -> JobId {
    let parts: Vec<&str> = url.split('/').collect();
    let i = parts.iter().position(|p| *p == "webhooks").unwrap_or(0);
    JobId::new(*parts.get(i + 2).unwrap_or(&""))
}

/// The record keys a start carried.
fn rids(op: Operation, body: &Value) -> Vec<u64> {
    let rid = |v: &Value| match v {
        Value::Object(o) => o.get("rid").and_then(|r| r.as_str()?.parse().ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    match op {
        Operation::Enrich | Operation::ReverseEmail => body["data"]
            .as_array()
            .map(|d| d.iter().filter_map(|r| rid(&r["custom"])).collect())
            .unwrap_or_default(),
        _ => match body.get("searches").and_then(Value::as_array) {
            Some(s) => s.iter().filter_map(|r| rid(&r["custom"])).collect(),
            None => rid(&body["custom"]).into_iter().collect(),
        },
    }
}

impl SimProvider {
    pub fn new(faults: Faults) -> SimProvider {
        Self::with_finds(faults, Arc::new(|_, person| found(person)))
    }

    /// A provider whose providers find the people `finds` says.
    pub fn with_finds(faults: Faults, finds: Finds) -> SimProvider {
        let state = State {
            rng: Some(Rng::new(faults.seed)),
            ..State::default()
        };
        SimProvider {
            faults,
            state: Arc::new(Mutex::new(state)),
            finds,
        }
    }

    /// Every start: its provider and the people it asked about.
    pub fn asked(&self) -> Vec<(Provider, Vec<u64>)> {
        self.state.lock().unwrap().asked.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn started(&self) -> Vec<(JobId, Vec<u64>)> {
        self.state.lock().unwrap().started.clone()
    }

    pub fn shown_found(&self) -> HashSet<(JobId, u64)> {
        self.state.lock().unwrap().shown_found.clone()
    }

    /// An enrichment started already (outside the simulation's starts), ready now: its id.
    pub fn seed(&self, job_id: &JobId, op: Operation, rids: Vec<u64>) -> ProviderId {
        let mut s = self.state.lock().unwrap();
        s.next += 1;
        let id = format!("bulk-{}", s.next);
        let e = Enrichment {
            job_id: job_id.clone(),
            op,
            finds: rids
                .iter()
                .map(|r| (self.finds)(op.provider(), *r))
                .collect(),
            rids,
            ready_at_ms: now_ms(),
            vanished: false,
        };
        s.enrichments.insert(id.clone(), e);
        ProviderId::new(id)
    }

    /// The batch webhook of enrichment `id` as FullEnrich sends it unsigned: only a trigger.
    pub fn unsigned_batch(job_id: &JobId, id: &ProviderId) -> String {
        envelope_with(
            Provider::Fullenrich,
            Hook::Batch,
            job_id,
            json!({"id": id, "status": "FINISHED", "data": []})
                .to_string()
                .as_bytes(),
            Signature::Absent,
        )
    }

    pub fn take_webhooks(&self) -> Vec<(String, Duration)> {
        std::mem::take(&mut self.state.lock().unwrap().webhooks)
    }

    fn log(&self, s: &mut State, provider: Provider, kind: Kind) {
        s.calls.push(Call {
            at_ms: now_ms(),
            provider,
            kind,
        });
    }

    /// The enrichment's results as FullEnrich's GET and batch webhook carry them.
    fn fullenrich_body(id: &str, e: &Enrichment) -> Value {
        let data: Vec<Value> = e
            .rids
            .iter()
            .zip(&e.finds)
            .map(|(r, f)| fullenrich_record(*r, *f))
            .collect();
        json!({"id": id, "status": "FINISHED", "cost": {"credits": e.rids.len()}, "data": data})
    }

    /// Plans the webhooks of a new enrichment.
    fn plan(&self, s: &mut State, id: &str, e: &Enrichment) {
        let rng = s.rng.as_mut().expect("rng");
        let copies = self.faults.min_copies
            + rng.below(
                self.faults
                    .max_copies
                    .saturating_sub(self.faults.min_copies)
                    + 1,
            );
        let per_contact = rng.chance(self.faults.per_contact);
        let unsigned = rng.chance(self.faults.unsigned);
        let ready = self.faults.ready_after;
        let mut hooks = Vec::new();
        match e.op.provider() {
            Provider::Fullenrich => {
                if per_contact {
                    for (k, (r, f)) in e.rids.iter().zip(&e.finds).enumerate() {
                        let body = json!({"id": id, "status": "IN_PROGRESS", "data": [fullenrich_record(*r, *f)]});
                        let env = envelope_with(
                            Provider::Fullenrich,
                            Hook::Contact,
                            &e.job_id,
                            body.to_string().as_bytes(),
                            Signature::Verified,
                        );
                        hooks.push((env, ready / 2 + Duration::from_millis(k as u64 * 10)));
                        if *f {
                            s.shown_found.insert((e.job_id.clone(), *r));
                        }
                    }
                }
                let (body, signature) = if unsigned {
                    (
                        json!({"id": id, "status": "FINISHED", "data": []}),
                        Signature::Absent,
                    )
                } else {
                    (Self::fullenrich_body(id, e), Signature::Verified)
                };
                for c in 0..copies {
                    let env = envelope_with(
                        Provider::Fullenrich,
                        Hook::Batch,
                        &e.job_id,
                        body.to_string().as_bytes(),
                        signature,
                    );
                    hooks.push((env, ready + Duration::from_secs(c * 60)));
                }
                if copies > 0 && !unsigned {
                    for (r, _) in e.rids.iter().zip(&e.finds).filter(|(_, f)| **f) {
                        s.shown_found.insert((e.job_id.clone(), *r));
                    }
                }
            }
            Provider::Enrow => {
                let single = e.rids.len() == 1 && !id.starts_with("bulk");
                for c in 0..copies {
                    let body = if single {
                        let r = e.rids[0];
                        json!({"event": "single_search_finished", "id": id, "credits": {"cost": 1},
                               "result": enrow_row(r, e.finds[0])})
                    } else {
                        json!({"event": "bulk_search_finished", "id": id})
                    };
                    let env = envelope_with(
                        Provider::Enrow,
                        Hook::Event,
                        &e.job_id,
                        body.to_string().as_bytes(),
                        Signature::NotApplicable,
                    );
                    hooks.push((env, ready + Duration::from_secs(c * 30)));
                }
                if copies > 0 && single && e.finds[0] {
                    s.shown_found.insert((e.job_id.clone(), e.rids[0]));
                }
            }
        }
        s.webhooks.extend(hooks);
    }
}

fn fullenrich_record(rid: u64, found: bool) -> Value {
    if found {
        json!({"custom": {"rid": rid.to_string()}, "status": "FINISHED",
               "contact_info": {"most_probable_work_email": {"email": format!("p{rid}@example.com"), "status": "DELIVERABLE"}}})
    } else {
        json!({"custom": {"rid": rid.to_string()}, "status": "FINISHED", "contact_info": {}})
    }
}

fn enrow_row(rid: u64, found: bool) -> Value {
    if found {
        json!({"email": format!("p{rid}@example.com"), "qualification": "valid", "custom": {"rid": rid.to_string()}})
    } else {
        json!({"email": null, "qualification": "invalid", "custom": {"rid": rid.to_string()}})
    }
}

impl Submitter for SimProvider {
    async fn start(&self, op: Operation, request: &StartRequest) -> Result<Started, StartError> {
        let mut s = self.state.lock().unwrap();
        self.log(&mut s, op.provider(), Kind::Start);
        let url = request.body["webhook_url"]
            .as_str()
            .or(request.body["settings"]["webhook"].as_str())
            .unwrap_or_default();
        let job_id = job_of(url);
        let records = records(op, &request.body);
        let rids: Vec<u64> = records.iter().map(|(r, _)| *r).collect();
        let finds = records
            .iter()
            .map(|(_, p)| (self.finds)(op.provider(), *p))
            .collect();
        s.asked
            .push((op.provider(), records.iter().map(|(_, p)| *p).collect()));
        s.next += 1;
        let single = request.path.ends_with("/single");
        let id = format!("{}{}", if single { "single-" } else { "bulk-" }, s.next);
        let rng = s.rng.as_mut().expect("rng");
        let lost = rng.chance(self.faults.answer_lost);
        let vanished = rng.chance(self.faults.vanishes);
        let e = Enrichment {
            job_id: job_id.clone(),
            op,
            rids: rids.clone(),
            finds,
            ready_at_ms: now_ms() + self.faults.ready_after.as_millis() as u64,
            vanished,
        };
        s.started.push((job_id, rids));
        if !vanished {
            self.plan(&mut s, &id, &e);
        }
        s.enrichments.insert(id.clone(), e);
        if lost {
            return Err(StartError::Unconfirmed("the answer was lost".into()));
        }
        Ok(Started {
            id: ProviderId::new(id),
            credits: None,
        })
    }
}

impl SimProvider {
    fn get(
        &self,
        provider: Provider,
        id: &str,
    ) -> Result<(Operation, Vec<(u64, bool)>, JobId), FetchError> {
        let mut s = self.state.lock().unwrap();
        self.log(&mut s, provider, Kind::Get);
        let Some(e) = s.enrichments.get(id) else {
            return Err(FetchError::Permanent("HTTP 404 not found".into()));
        };
        if e.vanished {
            return Err(FetchError::Permanent("HTTP 404 not found".into()));
        }
        if now_ms() < e.ready_at_ms {
            return Err(FetchError::NotReady);
        }
        let rids: Vec<(u64, bool)> = e
            .rids
            .iter()
            .copied()
            .zip(e.finds.iter().copied())
            .collect();
        let (op, job) = (e.op, e.job_id.clone());
        for (r, _) in rids.iter().filter(|(_, f)| *f) {
            s.shown_found.insert((job.clone(), *r));
        }
        Ok((op, rids, job))
    }
}

impl ProviderClient for SimProvider {
    async fn fullenrich_job(&self, _: Operation, id: &str) -> Result<fullenrich::Job, FetchError> {
        let (_, rids, _) = self.get(Provider::Fullenrich, id)?;
        let data: Vec<Value> = rids
            .iter()
            .map(|(r, f)| fullenrich_record(*r, *f))
            .collect();
        let body =
            json!({"id": id, "status": "FINISHED", "cost": {"credits": rids.len()}, "data": data});
        Ok(fullenrich::parse_batch(body.to_string().as_bytes()).expect("a job object"))
    }

    async fn enrow_bulk(&self, _: Operation, id: &str) -> Result<enrow::BulkResults, FetchError> {
        let (_, rids, _) = self.get(Provider::Enrow, id)?;
        let results: Vec<Value> = rids
            .iter()
            .enumerate()
            .map(|(k, (r, f))| {
                let mut row = enrow_row(*r, *f);
                row["index"] = json!(k.to_string());
                row["custom"] = json!(r.to_string());
                row
            })
            .collect();
        let body = json!({"general": {"id": id, "status": "completed"}, "results": results});
        Ok(enrow::BulkResults::parse(body.to_string().as_bytes()).expect("bulk results"))
    }

    async fn enrow_single(
        &self,
        _: Operation,
        id: &str,
    ) -> Result<(enrow::SingleResult, Value), FetchError> {
        let (_, rids, _) = self.get(Provider::Enrow, id)?;
        let row = enrow_row(rids[0].0, rids[0].1);
        Ok((
            enrow::SingleResult::from_value(&row).expect("a single result"),
            row,
        ))
    }
}
