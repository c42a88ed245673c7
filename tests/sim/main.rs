//! The relay's functions together on the in-memory stores, under tokio's paused clock: the
//! chunk starter, bulk-fetch and a sweeper, fed by a simulated provider and by queues with SQS's
//! delays and redeliveries. Hours of pacing, polls and deadlines run in milliseconds, so a
//! backlog can be measured request by request and thousands of randomized fault plans checked
//! against the relay's promises (issue: every job ends, and ends right).
//!
//! What the simulation does not model: DynamoDB's lost answers and concurrent conditional writes
//! (tests/it, on moto, covers those), the HTTP layer, and the DynamoDB `due` index (the sweeper
//! here reads the chunks as the index would list them; tests/it/poll.rs holds the index to it).

mod provider;
mod waterfall;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use bulk_fetch::Worker;
use job_submit::{ChunkSubmitter, SubmitAction, SubmitChunk};
use relay_shared::auth::WebhookSecret;
use relay_shared::bodies::MemoryBodies;
use relay_shared::callback::{CallbackSender, DEFAULT_RETRY_BASE};
use relay_shared::envelope::PollRequest;
use relay_shared::jobs::{Chunk, ChunkStatus, Contact, JobMeta, JobStatus, Operation};
use relay_shared::now_ms;
use relay_shared::queue::MemoryQueue;
use relay_shared::store::memory::{MemoryDedupe, MemoryJobs};
use relay_shared::store::{JobWriter, Jobs};
use serde_json::{Value, json};
use tokio::time::Instant;

use provider::{Faults, SimProvider};
use relay_shared::JobId;
use relay_shared::{ChunkIndex, ContactIndex};

/// One FullEnrich request per this interval over the account (55 a minute, as configured).
pub const FULLENRICH_INTERVAL: Duration = Duration::from_millis(1091);
/// A sweep every 5 minutes (EventBridge's schedule).
const SWEEP_EVERY: Duration = Duration::from_secs(300);
/// A started chunk is polled this long after its start, then every `POLL_HOLD`.
const POLL_AFTER: Duration = Duration::from_secs(600);
/// How long a chunk may go not started before the sweeper sends its start again.
const START_OVERDUE: Duration = Duration::from_secs(20 * 60);
/// The job deadline in the simulation (24 h on AWS; scaled so a case is short).
pub const DEADLINE: Duration = Duration::from_secs(2 * 3600);
/// The start-confirmation timeout in the simulation (6 h on AWS).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(45 * 60);
/// What a job may take beyond its deadline (twice over: from its creation for chunks not
/// started, from its last start for started ones): the start and confirmation allowances and a
/// few sweeps.
pub const CONFIRM_BOUND: Duration = Duration::from_secs(20 * 60 + 45 * 60 + 4 * 300);
/// SQS: a record sent back comes again after this long; after this many receives, the DLQ.
const VISIBILITY: Duration = Duration::from_secs(60);
const MAX_RECEIVES: u32 = 5;
/// Lambda: how long one invocation may run (bulk-fetch 60 s, the worker 90 s).
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
const WORKER_TIMEOUT: Duration = Duration::from_secs(90);

type SimWorker = Worker<MemoryJobs, MemoryDedupe, SimProvider, MemoryBodies, MemoryQueue>;
type SimSubmitter = ChunkSubmitter<MemoryJobs, SimProvider, MemoryQueue, MemoryBodies>;

#[derive(Debug, Clone)]
enum Msg {
    Webhook(String, u32),
    Submit(String, u32),
}

/// What the queues and functions did, for the invariants.
#[derive(Default)]
pub struct Log {
    pub dead_letters: Vec<String>,
    /// When each job was first seen terminal (ms).
    pub ended_at: HashMap<JobId, u64>,
    pub handled: usize,
    /// Invocations cut at their Lambda timeout (all their records back to the queue).
    pub timed_out: usize,
}

/// What every task shares: the functions, the provider and the log.
struct Inner {
    worker: SimWorker,
    submitter: SimSubmitter,
    provider: SimProvider,
    log: Mutex<Log>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

pub struct Sim {
    pub jobs: MemoryJobs,
    pub provider: SimProvider,
    inner: Arc<Inner>,
    /// Every job of the simulation, with its creation time (ms).
    pub created: BTreeMap<JobId, u64>,
    /// The sweeper's own bookkeeping (the `due` index's `poll_at`): chunk → its start's next
    /// due time (ms), and a started chunk → its next poll.
    due: HashMap<(JobId, ChunkIndex), u64>,
    polled: HashMap<(JobId, ChunkIndex), u64>,
}

/// A message that becomes visible after `delay`, handled then in its own task (functions run
/// concurrently, as Lambda does); what the handling sends is queued the same way.
fn send(inner: &Arc<Inner>, msg: Msg, delay: Duration) {
    let at = Instant::now() + delay;
    let me = Arc::clone(inner);
    let task = tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        let (body, receives, webhook) = match &msg {
            Msg::Webhook(b, r) => (b.clone(), *r, true),
            Msg::Submit(b, r) => (b.clone(), *r, false),
        };
        let mut event = SqsEvent::default();
        event.records = vec![relay_shared::testing::sqs_message(&body)];
        // Each invocation runs with its Lambda deadline, and is cut there as Lambda would.
        let failed = if webhook {
            let d = Instant::now() + FETCH_TIMEOUT;
            tokio::time::timeout_at(
                d,
                relay_shared::invocation::within(d, me.worker.handle_batch(event)),
            )
            .await
            .map(|r| !r.batch_item_failures.is_empty())
        } else {
            let d = Instant::now() + WORKER_TIMEOUT;
            tokio::time::timeout_at(
                d,
                relay_shared::invocation::within(d, me.submitter.handle_batch(event)),
            )
            .await
            .map(|r| !r.batch_item_failures.is_empty())
        };
        let failed = failed.unwrap_or_else(|_| {
            me.log.lock().unwrap().timed_out += 1;
            true
        });
        me.log.lock().unwrap().handled += 1;
        if failed {
            if receives + 1 >= MAX_RECEIVES {
                me.log.lock().unwrap().dead_letters.push(body);
            } else {
                let again = match msg {
                    Msg::Webhook(b, r) => Msg::Webhook(b, r + 1),
                    Msg::Submit(b, r) => Msg::Submit(b, r + 1),
                };
                send(&me, again, VISIBILITY);
            }
        }
        collect(&me);
    });
    inner.tasks.lock().unwrap().push(task.abort_handle());
}

/// Moves what the functions and the provider sent into the queues.
fn collect(inner: &Arc<Inner>) {
    let mut sends: Vec<(Msg, Duration)> = Vec::new();
    for m in inner.worker.requeue.take() {
        sends.push((Msg::Webhook(m.body, 0), m.delay));
    }
    for m in inner.submitter.callback_queue.take() {
        sends.push((Msg::Webhook(m.body, 0), m.delay));
    }
    for m in inner.submitter.queue.take() {
        sends.push((Msg::Submit(m.body, 0), m.delay));
    }
    for m in inner.worker.submit.take() {
        sends.push((Msg::Submit(m.body, 0), m.delay));
    }
    for m in inner.worker.dead_letters.take() {
        inner.log.lock().unwrap().dead_letters.push(m.body);
    }
    for (body, delay) in inner.provider.take_webhooks() {
        sends.push((Msg::Webhook(body, 0), delay));
    }
    for (m, d) in sends {
        send(inner, m, d);
    }
}

impl Sim {
    pub fn new(faults: Faults) -> Sim {
        Self::with_provider(SimProvider::new(faults))
    }

    pub fn with_provider(provider: SimProvider) -> Sim {
        let jobs = MemoryJobs::default();
        let worker = Worker {
            jobs: jobs.clone(),
            dedupe: MemoryDedupe::default(),
            providers: provider.clone(),
            bodies: MemoryBodies::default(),
            callback_sender: CallbackSender::new(
                relay_local_stack::dev::DEV_CALLBACK_SECRET,
                DEFAULT_RETRY_BASE,
            )
            .unwrap(),
            dead_letters: MemoryQueue::default(),
            requeue: MemoryQueue::default(),
            submit: MemoryQueue::default(),
            fullenrich_interval: FULLENRICH_INTERVAL,
            not_ready_wait: Duration::from_secs(30),
            deadline: DEADLINE,
        };
        let submitter = ChunkSubmitter {
            jobs: jobs.clone(),
            bodies: MemoryBodies::default(),
            starter: provider.clone(),
            queue: MemoryQueue::default(),
            callback_queue: MemoryQueue::default(),
            secret: WebhookSecret::new(b"simulation-secret-0123456789"),
            public_base_url: "https://relay.example".into(),
            fullenrich_interval: FULLENRICH_INTERVAL,
            enrow_interval: Duration::from_millis(125),
            lease: Duration::from_secs(120),
            confirm_timeout: CONFIRM_TIMEOUT,
            deadline: DEADLINE,
        };
        let inner = Arc::new(Inner {
            worker,
            submitter,
            provider: provider.clone(),
            log: Mutex::default(),
            tasks: Mutex::default(),
        });
        Sim {
            jobs,
            provider,
            inner,
            created: BTreeMap::new(),
            due: HashMap::new(),
            polled: HashMap::new(),
        }
    }

    pub fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.inner.log.lock().unwrap()
    }

    /// Records a job as `POST /jobs` does (head, chunks of `size`, contacts) and queues a start
    /// message per chunk, except the ones in `lost`.
    pub fn submit(&mut self, op: Operation, n: u64, size: u64, lost: &[u32]) -> JobId {
        let job_id = JobId::new(format!("job_{}", uuid::Uuid::new_v4().simple()));
        let meta = JobMeta::new(
            job_id.clone(),
            op,
            Some("sim".into()),
            JobStatus::Accepted,
            n,
            size,
            Value::Null,
        );
        let contacts = (0..n).map(|i| contact(op, i)).collect();
        let chunks = Chunk::plan(n, size);
        let indices: Vec<ChunkIndex> = chunks.iter().map(|c| c.index).collect();
        self.jobs.insert(meta, chunks, contacts);
        self.created.insert(job_id.clone(), now_ms());
        for i in indices {
            self.due.insert(
                (job_id.clone(), i),
                now_ms() + START_OVERDUE.as_millis() as u64,
            );
            if !lost.contains(&i.get()) {
                send(
                    &self.inner,
                    Msg::Submit(SubmitChunk::start(&job_id, i), 0),
                    Duration::ZERO,
                );
            }
        }
        job_id
    }

    /// Records a waterfall as `POST /jobs` does (its steps' jobs, then its head) over `n`
    /// contacts of every step's fields, `size` contacts per chunk in every step, and queues its
    /// first step's starts, except the chunks in `lost`. Returns the waterfall's id.
    pub fn submit_waterfall(
        &mut self,
        steps: &[(relay_shared::Provider, Operation, Value)],
        n: u64,
        size: u64,
        max_credits: Option<f64>,
        lost: &[u32],
    ) -> JobId {
        use relay_shared::validate::{StepPlan, WaterfallPlan};
        use relay_shared::waterfall::plan;
        let job_id = JobId::new(format!("job_{}", uuid::Uuid::new_v4().simple()));
        let wplan = WaterfallPlan {
            steps: steps
                .iter()
                .map(|(provider, operation, options)| StepPlan {
                    provider: *provider,
                    operation: *operation,
                    options: options.clone(),
                })
                .collect(),
            verify: None,
            max_credits_per_contact: None,
        };
        let mut head = JobMeta::new(
            job_id.clone(),
            steps[0].1,
            Some("sim waterfall".into()),
            JobStatus::Accepted,
            n,
            size,
            steps[0].2.clone(),
        );
        head.budget = max_credits.map(relay_shared::budget::Budget::new);
        let wf = plan::waterfall_of(&job_id, &wplan);
        let jobs = plan::step_jobs(&head, &wf, |_| size);
        let contacts: Vec<Contact> = (0..n).map(every_step_contact).collect();
        let first_chunks: Vec<ChunkIndex> = jobs[0].1.iter().map(|c| c.index).collect();
        for (t, (meta, chunks)) in jobs.into_iter().enumerate() {
            let id = meta.job_id.clone();
            let c = if t == 0 { contacts.clone() } else { Vec::new() };
            self.jobs.insert(meta, chunks, c);
            self.created.insert(id, now_ms());
        }
        self.jobs
            .insert(plan::head_of(head, wf.clone()), Vec::new(), Vec::new());
        self.created.insert(job_id.clone(), now_ms());
        let first = wf.steps[0].job_id.clone();
        for i in first_chunks {
            self.due.insert(
                (first.clone(), i),
                now_ms() + START_OVERDUE.as_millis() as u64,
            );
            if !lost.contains(&i.get()) {
                send(
                    &self.inner,
                    Msg::Submit(SubmitChunk::start(&first, i), 0),
                    Duration::ZERO,
                );
            }
        }
        job_id
    }

    /// A waterfall's rows as `GET /jobs/{id}/results` serves them.
    pub async fn waterfall_rows(&self, job_id: &JobId) -> Vec<relay_shared::jobs::ContactResult> {
        let head = self.jobs.get_job(job_id).await.unwrap().unwrap();
        relay_shared::waterfall::read::results(&self.jobs, &head, ContactIndex(0), 100_000)
            .await
            .unwrap()
    }

    /// A delivery queued by ingest, visible after `delay`.
    pub fn deliver(&mut self, body: String, delay: Duration) {
        send(&self.inner, Msg::Webhook(body, 0), delay);
    }

    /// One sweep: started chunks whose results have not come get a poll, chunks not started
    /// past their start's due time get their start (or confirmation check) again.
    async fn sweep(&mut self) {
        let now = now_ms();
        let jobs: Vec<JobId> = self.created.keys().cloned().collect();
        for job_id in jobs {
            let Ok(Some(meta)) = self.jobs.get_job(&job_id).await else {
                continue;
            };
            if meta.deleted || meta.status.is_terminal() {
                continue;
            }
            let Ok(chunks) = self.jobs.chunks(&job_id).await else {
                continue;
            };
            for c in chunks.iter().filter(|c| !c.status.is_final()) {
                let key = (job_id.clone(), c.index);
                let due = match c.status {
                    // Its start + the poll interval, then a poll interval after each poll.
                    ChunkStatus::Submitted => c
                        .started_at_ms
                        .map(|s| s + POLL_AFTER.as_millis() as u64)
                        .unwrap_or(now)
                        .max(*self.polled.get(&key).unwrap_or(&0)),
                    _ => *self
                        .due
                        .entry(key.clone())
                        .or_insert(now + START_OVERDUE.as_millis() as u64),
                };
                if due > now {
                    continue;
                }
                let msg = match c.status {
                    ChunkStatus::Submitted => {
                        Msg::Webhook(PollRequest::new(&job_id, c.index, due).to_json(), 0)
                    }
                    ChunkStatus::StartUnconfirmed => Msg::Submit(
                        SubmitChunk::message(&job_id, c.index, SubmitAction::ConfirmCheck),
                        0,
                    ),
                    _ => Msg::Submit(SubmitChunk::start(&job_id, c.index), 0),
                };
                let next = now + POLL_AFTER.as_millis() as u64;
                if c.status == ChunkStatus::Submitted {
                    self.polled.insert(key, next);
                } else {
                    self.due.insert(key, next);
                }
                send(&self.inner, msg, Duration::ZERO);
            }
        }
    }

    /// Runs until every job ended (or was erased) or `limit` of simulated time passed, with a
    /// sweep every 5 minutes; `at` runs `f` once, that far in. Returns the simulated time.
    pub async fn run(&mut self, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            self.note_ended().await;
            if self.all_done() || started.elapsed() >= limit {
                return started.elapsed();
            }
            self.sweep().await;
        }
    }

    /// Advances until `after` from now (the functions run meanwhile), then returns.
    pub async fn run_for(&mut self, after: Duration) {
        tokio::time::sleep(after).await;
        self.note_ended().await;
    }

    async fn note_ended(&self) {
        for job_id in self.created.keys() {
            if self.log().ended_at.contains_key(job_id) {
                continue;
            }
            if let Ok(Some(m)) = self.jobs.get_job(job_id).await
                && (m.status.is_terminal() || m.deleted)
            {
                self.log().ended_at.insert(job_id.clone(), now_ms());
            }
        }
    }

    fn all_done(&self) -> bool {
        let log = self.log();
        self.created.keys().all(|j| log.ended_at.contains_key(j))
    }

    /// Cancels a job as `POST /jobs/{id}/cancel` does (a waterfall's steps with it).
    pub async fn cancel(&self, job_id: &JobId) {
        let e =
            relay_shared::jobs::JobError::new(relay_shared::jobs::reasons::CANCELED, "canceled");
        self.jobs.set_job_error(job_id, &e).await.unwrap();
        for s in self.steps_of(job_id).await {
            self.jobs.set_job_error(&s, &e).await.unwrap();
        }
    }

    /// A waterfall's steps' jobs (none for a one-step job).
    pub async fn steps_of(&self, job_id: &JobId) -> Vec<JobId> {
        let head = self.jobs.get_job(job_id).await.ok().flatten();
        head.and_then(|m| m.waterfall)
            .map(|wf| wf.chain().into_iter().map(|s| s.job_id.clone()).collect())
            .unwrap_or_default()
    }

    /// Deletes a job as `DELETE /jobs/{id}` does: marked, then erased by the worker.
    pub async fn delete(&mut self, job_id: &JobId) {
        let steps = self.steps_of(job_id).await;
        assert!(self.jobs.mark_deleted(job_id).await.unwrap());
        for s in &steps {
            self.jobs.mark_deleted(s).await.unwrap();
        }
        for j in std::iter::once(job_id).chain(&steps) {
            send(
                &self.inner,
                Msg::Submit(SubmitChunk::delete(j), 0),
                Duration::ZERO,
            );
        }
    }

    /// What is left of a job's contact data in the store: contacts and results.
    pub async fn contact_data(&self, job_id: &JobId, n: u64) -> usize {
        let contacts = self
            .jobs
            .contacts(job_id, 0, n)
            .await
            .map(|c| c.len())
            .unwrap_or(0);
        contacts + self.jobs.results(job_id).len()
    }

    pub async fn meta(&self, job_id: &JobId) -> JobMeta {
        self.jobs.job_view(job_id).await.unwrap().unwrap()
    }

    /// Stops every task still waiting.
    pub fn stop(&mut self) {
        for t in self.inner.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

fn contact(op: Operation, i: u64) -> Contact {
    let fields = match op {
        Operation::EmailFind => {
            json!({"fullname": format!("Person {i}"), "company_domain": "example.com"})
        }
        _ => json!({"first_name": "Ada", "last_name": format!("L{i}"), "domain": "example.com"}),
    };
    Contact {
        origin: None,
        index: ContactIndex(i),
        fields: fields.as_object().cloned().unwrap(),
        custom: None,
    }
}

/// A contact with every step's fields (`Person {i}`, last name `L{i}`: the provider knows the
/// person by the number, whichever step asks).
fn every_step_contact(i: u64) -> Contact {
    let fields = json!({"fullname": format!("Person L{i}"), "company_domain": "example.com",
        "first_name": "Person", "last_name": format!("L{i}"), "domain": "example.com"});
    Contact {
        origin: None,
        index: ContactIndex(i),
        fields: fields.as_object().cloned().unwrap(),
        custom: Some(json!({"crm_id": format!("lead_{i}")})),
    }
}

/// The most requests any 60 s window holds, of `at` (ms, sorted).
pub fn busiest_minute(at: &[u64]) -> usize {
    let mut most = 0;
    let mut lo = 0;
    for hi in 0..at.len() {
        while at[hi] - at[lo] >= 60_000 {
            lo += 1;
        }
        most = most.max(hi - lo + 1);
    }
    most
}

mod budget;
mod property;
