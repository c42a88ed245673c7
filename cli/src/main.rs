//! `relay`: the operator's and the client's command line.
//!
//! Exit codes: 0 done; 1 a job waited for ended failed or partially failed; 2 bad input (a row,
//! a flag, an unknown queue); 3 the API (or AWS) could not be reached or refused the credentials.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use relay_cli::api::{ApiError, Client};
use relay_cli::dlq::{Dlq, DlqError, Filter};
use relay_cli::input::{self, Input, ReadOptions};
use relay_cli::output;
use relay_shared::jobs::Operation;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "relay", version, about = "Enrich Relay from the command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the jobs API is, and the token (never echoed: not in help, errors or output).
#[derive(Args, Clone)]
struct Api {
    /// The jobs API's base URL (https; plain http only to a loopback address).
    #[arg(long, env = "RELAY_URL")]
    url: String,
    /// The API's bearer token.
    #[arg(long, env = "RELAY_API_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Ndjson,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Submits the contacts of a CSV file (a CRM export as it is) as one job; with --wait,
    /// follows it and writes the results file (the input's columns, then the relay_ columns).
    Submit {
        #[command(flatten)]
        api: Api,
        #[command(flatten)]
        submit: SubmitArgs,
    },
    /// Follows a job until it ends and writes its results file: with --in (the file it was
    /// submitted from, with the same --map/--keep), the same file `submit --wait` writes. Resumes
    /// or redoes an interrupted `submit --wait`.
    Wait {
        #[command(flatten)]
        api: Api,
        job: String,
        #[command(flatten)]
        file: FileArgs,
        /// Where to write the results file (default: stdout).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// A job's status, counts, credits used and times.
    Status {
        #[command(flatten)]
        api: Api,
        job: String,
    },
    /// Jobs, newest first.
    Jobs {
        #[command(flatten)]
        api: Api,
        /// How many (1–100).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Events of Enrow's dashboard (global) webhook for searches the relay did not start,
    /// newest first (kept 30 days): the search's id, the event, its cost, when it came.
    Orphans {
        #[command(flatten)]
        api: Api,
        /// How many (1–100).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Where the page starts: the `next_cursor` an earlier page printed.
        #[arg(long)]
        cursor: Option<String>,
        /// The API's page as JSON instead of one line per orphan.
        #[arg(long)]
        json: bool,
    },
    /// The URL to set as Enrow's dashboard (global) webhook, from the deployment's webhook
    /// secret: `<base>/webhooks/enrow/global/<token>`.
    GlobalWebhookUrl {
        /// The stack's WebhookBaseUrl output (PUBLIC_BASE_URL).
        #[arg(long, env = "PUBLIC_BASE_URL")]
        base: String,
        /// The webhook secret (the SSM parameter `<SecretsPrefix>/webhook-secret`).
        #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
    },
    /// Cancels a job: chunks not started are not started; started ones finish and are kept.
    Cancel {
        #[command(flatten)]
        api: Api,
        job: String,
    },
    /// A job's results, every page. As CSV with --in (the file it was submitted from): the same
    /// file `submit --wait` writes; without it, the API's CSV (index, custom, relay_ columns).
    Results {
        #[command(flatten)]
        api: Api,
        job: String,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        #[command(flatten)]
        file: FileArgs,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// The dead-letter queues: what is stuck and why, and moving it back.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

/// How the contacts file is read (give `relay wait` and `relay results` the same as `submit`).
#[derive(Args, Clone)]
struct FileArgs {
    /// The contacts file the job was submitted from (wait, results).
    #[arg(long = "in")]
    input: Option<std::path::PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    /// Write results files without the UTF-8 byte-order mark (Excel wants it; some tools do not).
    #[arg(long)]
    no_bom: bool,
}

#[derive(Args, Clone)]
struct ReadArgs {
    /// A column for a contact field the column names do not say: `--map "Work Email=email"`
    /// (wins over the built-in names).
    #[arg(long = "map", value_parser = parse_map)]
    maps: Vec<(String, String)>,
    /// Also send this column to the provider (as `custom`); by default only contact fields are
    /// sent and every other column stays here.
    #[arg(long = "keep", value_name = "COLUMN")]
    keeps: Vec<String>,
    /// The file's delimiter: `,` `;` or `tab` (default: found from the header row).
    #[arg(long, value_parser = parse_delimiter)]
    delimiter: Option<u8>,
}

impl ReadArgs {
    fn options(&self) -> ReadOptions {
        ReadOptions {
            maps: self.maps.clone(),
            keeps: self.keeps.clone(),
            delimiter: self.delimiter,
        }
    }
}

fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "," | "comma" => Ok(b','),
        ";" | "semicolon" => Ok(b';'),
        "\\t" | "\t" | "tab" => Ok(b'\t'),
        "|" | "pipe" => Ok(b'|'),
        _ => Err("must be , ; tab or |".into()),
    }
}

#[derive(Args)]
struct Queues {
    /// The CloudFormation stack (or local-stack prefix): every `{stack}-…DeadLetterQueue…`.
    #[arg(long, env = "RELAY_STACK", conflicts_with = "dlq")]
    stack: Option<String>,
    /// One dead-letter queue by URL.
    #[arg(long, env = "RELAY_DLQ_URL")]
    dlq: Option<String>,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// How many messages each DLQ holds, by reason and by job (never a body: bodies hold contact
    /// data). Leaves every message where it is.
    List {
        #[command(flatten)]
        queues: Queues,
    },
    /// Moves messages back to the queue they came from (parked ones included) and says how many.
    Replay {
        #[command(flatten)]
        queues: Queues,
        /// Only messages whose reason contains this text (case-insensitive), e.g. `retries`.
        #[arg(long)]
        reason: Option<String>,
        /// Only messages of this job.
        #[arg(long)]
        job: Option<String>,
        /// Count what would move; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// The destination queue URL, when it cannot be found from the DLQ's redrive policy.
        #[arg(long)]
        to: Option<String>,
    },
}

fn parse_map(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((h, f)) if !h.trim().is_empty() && !f.trim().is_empty() => {
            Ok((h.trim().to_string(), f.trim().to_string()))
        }
        _ => Err("must be HEADER=FIELD, e.g. \"Work Email=email\"".into()),
    }
}

/// A failure: what to print and the exit code.
struct Failure(u8, String);

impl From<DlqError> for Failure {
    fn from(e: DlqError) -> Self {
        match e {
            DlqError::Usage(m) => Failure(2, m),
            e => Failure(
                3,
                format!(
                    "{e}\n(check the AWS credentials and region, or AWS_ENDPOINT_URL for the local stack)"
                ),
            ),
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure(e.exit_code(), e.to_string())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // A closed pipe (`relay … | head`) ends the command quietly, as it does any Unix tool,
    // instead of a panic on the next write to stdout.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal before any thread writes.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dlq { command } => dlq(command).await,
        Command::Submit { api, submit } => submit.run(&api).await,
        Command::Wait {
            api,
            job,
            file,
            out,
        } => wait(&api, &job, &file, out).await,
        Command::Status { api, job } => status(&api, &job).await,
        Command::Jobs { api, limit } => jobs(&api, limit).await,
        Command::Orphans {
            api,
            limit,
            cursor,
            json,
        } => orphans(&api, limit, cursor.as_deref(), json).await,
        Command::GlobalWebhookUrl { base, secret } => {
            let secret = relay_shared::auth::WebhookSecret::new(secret.into_bytes());
            let path =
                relay_shared::auth::global_webhook_path(&secret, relay_shared::Provider::Enrow);
            println!("{}{path}", base.trim_end_matches('/'));
            Ok(0)
        }
        Command::Cancel { api, job } => cancel(&api, &job).await,
        Command::Results {
            api,
            job,
            format,
            file,
            out,
        } => results(&api, &job, format, &file, out).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure(code, message)) => {
            eprintln!("relay: {message}");
            ExitCode::from(code)
        }
    }
}

fn client(api: &Api) -> Result<Client, Failure> {
    Client::new(&api.url, &api.token).map_err(|m| Failure(2, m))
}

/// Where output goes: a file, or stdout.
fn output(out: &Option<std::path::PathBuf>) -> Result<Box<dyn std::io::Write>, Failure> {
    Ok(match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| Failure(2, format!("cannot write {}: {e}", p.display())))?,
        )),
        None => Box::new(std::io::stdout()),
    })
}

fn write_failed(e: impl std::fmt::Display) -> Failure {
    Failure(2, format!("cannot write the results: {e}"))
}

/// Reads and maps a contacts file for `op`; a file that cannot be used at all is a failure with
/// each reason.
fn read_file(path: &std::path::Path, op: Operation, read: &ReadArgs) -> Result<Input, Failure> {
    let data = std::fs::read(path)
        .map_err(|e| Failure(2, format!("cannot read {}: {e}", path.display())))?;
    input::read(&data, op, &read.options()).map_err(|errors| {
        for e in &errors {
            if e.line == 0 {
                eprintln!("{}: {}", path.display(), e.reason());
            } else {
                eprintln!("{}: {e}", path.display());
            }
        }
        Failure(
            2,
            format!("{} cannot be used: nothing was sent", path.display()),
        )
    })
}

/// Says how the file was read: its delimiter when not a comma, the mapping, the rows.
fn describe(path: &std::path::Path, input: &Input) {
    let name = path.display();
    if input.delimiter != b',' {
        let d = if input.delimiter == b'\t' {
            "tab".to_string()
        } else {
            format!("'{}'", input.delimiter as char)
        };
        eprintln!("{name}: {d}-separated (found from the header row; --delimiter to choose)");
    }
    eprint!("{}", input.mapping.describe(&input.headers));
    let reduced = input.domains_reduced();
    if reduced > 0 {
        eprintln!(
            "{reduced} domain(s) given as a website URL or a www. host: reduced to the registrable domain (https://www.acme.com/about is sent as acme.com; relay_domain_sent says what was sent)"
        );
    }
    let rejected = input.rejected().count();
    eprintln!(
        "{name}: {} row(s): {} to send, {rejected} refused",
        input.rows.len(),
        input.rows.len() - rejected
    );
}

#[derive(Args)]
struct SubmitArgs {
    /// `enrow` or `fullenrich`.
    #[arg(long)]
    provider: String,
    /// enrow: email_find, email_verify, phone_find; fullenrich: enrich, reverse_email.
    #[arg(long)]
    operation: String,
    /// The CSV file: a header row, one contact a row (a CRM export as it is).
    contacts: std::path::PathBuf,
    /// The job's name (default: the file's name).
    #[arg(long)]
    name: Option<String>,
    /// Makes a retry of this command return the same job (and spend nothing again).
    #[arg(long)]
    idempotency_key: Option<String>,
    /// An https URL the relay POSTs a signed `job.completed` event to when the job ends.
    #[arg(long)]
    callback_url: Option<String>,
    #[command(flatten)]
    read: ReadArgs,
    /// Send the valid rows and write the others to a rejects file (beside --out, else beside
    /// the input: `<name>.rejects.csv`) with their line, field and rule.
    #[arg(long)]
    skip_invalid: bool,
    /// FullEnrich enrich: what to find, comma-separated: work_emails, personal_emails, phones
    /// (default: work_emails).
    #[arg(long, value_delimiter = ',')]
    enrich_fields: Vec<String>,
    /// Enrow email_find / phone_find: the country (ISO alpha-2) used with company names.
    #[arg(long)]
    country_code: Option<String>,
    /// How long the job waits for results after its last chunk started (1–720 hours).
    #[arg(long)]
    deadline_hours: Option<u64>,
    /// Print the mapping, the counts, the rows refused and the job's worst-case credits; send
    /// nothing.
    #[arg(long)]
    dry_run: bool,
    /// Follow the job with a progress bar until it ends, then write the results file.
    #[arg(long)]
    wait: bool,
    /// Where --wait writes the results file (default: stdout).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Write files without the UTF-8 byte-order mark.
    #[arg(long)]
    no_bom: bool,
    /// The largest request body sent (bytes): a larger job goes in pages of at most this (a
    /// staged job: created, its contacts added page by page, then started). A Lambda request
    /// is at most 6 MB.
    #[arg(long, env = "RELAY_PAGE_BYTES", default_value_t = PAGE_BYTES)]
    page_bytes: usize,
}

/// The largest body `relay submit` sends by default: under Lambda's 6 MB request cap once API
/// Gateway has escaped it into its event.
const PAGE_BYTES: usize = 4_000_000;

/// `contacts` cut into pages whose bodies stay within `max_bytes` (at least one contact a
/// page): each page's offset in the job and its contacts.
fn pages(contacts: &[Value], max_bytes: usize) -> Vec<(usize, &[Value])> {
    // `{"offset":NNNNN,"contacts":[` … `]}`
    const OVERHEAD: usize = 40;
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, OVERHEAD);
    for (i, c) in contacts.iter().enumerate() {
        let len = c.to_string().len() + 1;
        if i > start && bytes + len > max_bytes {
            out.push((start, &contacts[start..i]));
            (start, bytes) = (i, OVERHEAD);
        }
        bytes += len;
    }
    if start < contacts.len() {
        out.push((start, &contacts[start..]));
    }
    out
}

/// Credits a contact costs at most (providers.md §2.10, §3.5; Enrow's phone at the spec's 50).
fn worst_case_credits(op: Operation, enrich_fields: &[String]) -> f64 {
    match op {
        Operation::Enrich => {
            let fields: Vec<&str> = if enrich_fields.is_empty() {
                vec!["contact.work_emails"]
            } else {
                enrich_fields.iter().map(String::as_str).collect()
            };
            fields
                .iter()
                .map(|f| match *f {
                    "contact.work_emails" => 1.0,
                    "contact.personal_emails" => 3.0,
                    "contact.phones" => 10.0,
                    _ => 0.0,
                })
                .sum()
        }
        Operation::ReverseEmail | Operation::EmailFind => 1.0,
        Operation::EmailVerify => 0.25,
        Operation::PhoneFind => 50.0,
    }
}

/// The flag that sets a request field, for messages.
fn flag_of(field: &str) -> String {
    let f = field.split('[').next().unwrap_or(field);
    match f {
        "options.enrich_fields" => "--enrich-fields".into(),
        "options.country_code" => "--country-code".into(),
        "options.deadline_hours" => "--deadline-hours".into(),
        "name" => "--name".into(),
        "callback_url" => "--callback-url".into(),
        _ => field.into(),
    }
}

impl SubmitArgs {
    fn body(&self, contacts: Vec<Value>) -> Value {
        let name = self.name.clone().unwrap_or_else(|| {
            let n = self
                .contacts
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "contacts".into());
            n.chars()
                .take(relay_shared::validate::MAX_NAME_CHARS)
                .collect()
        });
        let mut body = json!({"provider": self.provider, "operation": self.operation,
            "name": name, "contacts": contacts});
        let mut options = serde_json::Map::new();
        if !self.enrich_fields.is_empty() {
            options.insert("enrich_fields".into(), json!(self.enrich_fields_full()));
        }
        if let Some(c) = &self.country_code {
            options.insert("country_code".into(), json!(c.to_ascii_uppercase()));
        }
        if let Some(h) = self.deadline_hours {
            options.insert("deadline_hours".into(), json!(h));
        }
        if !options.is_empty() {
            body["options"] = Value::Object(options);
        }
        if let Some(u) = &self.callback_url {
            body["callback_url"] = json!(u);
        }
        body
    }

    /// `--enrich-fields` as FullEnrich names them (`phones` → `contact.phones`).
    fn enrich_fields_full(&self) -> Vec<String> {
        self.enrich_fields
            .iter()
            .map(|f| f.trim())
            .filter(|f| !f.is_empty())
            .map(|f| {
                if f.starts_with("contact.") {
                    f.to_string()
                } else {
                    format!("contact.{f}")
                }
            })
            .collect()
    }

    async fn run(self, api: &Api) -> Result<u8, Failure> {
        let op = self.operation.parse::<Operation>().ok()
            .filter(|o| o.provider().as_str() == self.provider)
            .ok_or_else(|| {
                Failure(
                    2,
                    format!(
                        "--operation {} is not an operation of --provider {} (enrow: email_find, email_verify, phone_find; fullenrich: enrich, reverse_email)",
                        self.operation, self.provider
                    ),
                )
            })?;
        // The API decides; loopback receivers work only against a local stack.
        let local = reqwest::Url::parse(&api.url)
            .is_ok_and(|a| matches!(a.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")));
        let policy = relay_shared::validate::CallbackPolicy {
            allow_loopback: local,
        };
        if let Some(u) = &self.callback_url {
            relay_shared::validate::validate_callback_url(u, policy)
                .map_err(|rule| Failure(2, format!("--callback-url {rule}: nothing was sent")))?;
        }
        let path = &self.contacts;
        let input = read_file(path, op, &self.read)?;
        describe(path, &input);
        let contacts = input.contacts();
        let rejected = input.rejected().count();
        let rejects_path = output::rejects_path(self.out.as_deref(), path);
        if rejected > 0 && (!self.skip_invalid || self.dry_run) {
            for (_, e) in input.rejected() {
                eprintln!("{}: {e}", path.display());
            }
        }
        if rejected > 0 && !self.skip_invalid && !self.dry_run {
            return Err(Failure(
                2,
                format!(
                    "{rejected} bad row(s): nothing was sent. --skip-invalid sends the {} valid row(s) and writes the others to {}; --map \"Column=field\" names a column the mapping above missed",
                    contacts.len(),
                    rejects_path.display()
                ),
            ));
        }
        if contacts.is_empty() {
            return Err(Failure(
                2,
                "no valid row to send: nothing was sent (--map \"Column=field\" names a column the mapping above missed)".into(),
            ));
        }
        let n = contacts.len();
        let body = self.body(contacts);
        // The API's own rules on the whole request (options, name), before anything is sent.
        relay_shared::validate::validate_with(&body, policy).map_err(|e| {
            let rule = if e.field.starts_with("options.enrich_fields") {
                "must be work_emails, personal_emails or phones (comma-separated)".to_string()
            } else {
                e.message
            };
            Failure(2, format!("{} {rule}: nothing was sent", flag_of(&e.field)))
        })?;
        if self.dry_run {
            let per = worst_case_credits(op, &self.enrich_fields_full());
            let chunk = match op {
                Operation::Enrich | Operation::ReverseEmail => 100,
                Operation::PhoneFind => 3000,
                _ => 5000,
            };
            eprintln!(
                "dry run: {} {}: {n} contact(s) in {} request(s); at most {} credits ({per} a contact); {rejected} row(s) refused{}; nothing was sent",
                self.provider,
                op.as_str(),
                n.div_ceil(chunk),
                per * n as f64,
                if rejected > 0 && self.skip_invalid {
                    format!(
                        " (--skip-invalid would write them to {})",
                        rejects_path.display()
                    )
                } else {
                    String::new()
                }
            );
            return Ok(0);
        }
        if rejected > 0 {
            let file = std::fs::File::create(&rejects_path)
                .map_err(|e| Failure(2, format!("cannot write {}: {e}", rejects_path.display())))?;
            output::write_rejects_file(std::io::BufWriter::new(file), &input, !self.no_bom)
                .map_err(write_failed)?;
            eprintln!(
                "{rejected} row(s) not sent, each with its line, field and rule: {}",
                rejects_path.display()
            );
        }
        let client = client(api)?;
        let job = if body.to_string().len() > self.page_bytes {
            self.submit_staged(&client, body).await?
        } else {
            client
                .call(
                    reqwest::Method::POST,
                    "/jobs",
                    Some(&body),
                    self.idempotency_key.as_deref(),
                )
                .await?
        };
        let id = job["job_id"].as_str().unwrap_or_default().to_string();
        eprintln!(
            "{id}: {} contacts accepted in {} chunk(s)",
            job["contacts"], job["chunks"]
        );
        let resume = format!(
            "relay wait {id} --in {}{}{}",
            path.display(),
            self.read_flags(),
            self.out
                .as_ref()
                .map(|o| format!(" --out {}", o.display()))
                .unwrap_or_default()
        );
        if !self.wait {
            eprintln!("{id}: results when it ends: {resume}");
            println!("{id}");
            return Ok(0);
        }
        eprintln!("{id}: waiting (interrupted? {resume})");
        let state = follow(&client, &id, n as u64).await?;
        let rows = client.results_with_raw(&id, 1000).await?;
        let mut w = output(&self.out)?;
        output::write_results_file(&mut w, &input, &rows, &self.provider, !self.no_bom)
            .map_err(write_failed)?;
        w.flush().map_err(write_failed)?;
        if let Some(o) = &self.out {
            eprintln!("{id}: results written to {}", o.display());
        }
        Ok(ended(&id, &state))
    }

    /// A job too large for one request: created staged (its fields, how many contacts and
    /// their digest, under the same Idempotency-Key), its contacts sent in pages (a page sent
    /// again is a no-op, so a retry of the whole command resumes), then started.
    async fn submit_staged(&self, client: &Client, mut body: Value) -> Result<Value, Failure> {
        use sha2::Digest;
        let contacts = match body.as_object_mut().and_then(|b| b.remove("contacts")) {
            Some(Value::Array(c)) => c,
            _ => Vec::new(),
        };
        let digest = hex::encode(sha2::Sha256::digest(
            Value::Array(contacts.clone()).to_string().as_bytes(),
        ));
        body["staged"] = json!({"contacts": contacts.len(), "digest": digest});
        let job = client
            .call(
                reqwest::Method::POST,
                "/jobs",
                Some(&body),
                self.idempotency_key.as_deref(),
            )
            .await?;
        let id = job["job_id"].as_str().unwrap_or_default().to_string();
        if job["status"] == "draft" {
            let pages = pages(&contacts, self.page_bytes);
            eprintln!(
                "{id}: {} contacts: sending them in {} page(s) of at most {} bytes",
                contacts.len(),
                pages.len(),
                self.page_bytes
            );
            let path = format!("/jobs/{id}/contacts");
            let sends = pages.into_iter().map(|(offset, page)| {
                let body = json!({"offset": offset, "contacts": page});
                let path = &path;
                async move {
                    match client
                        .call(reqwest::Method::POST, path, Some(&body), None)
                        .await
                    {
                        // Started by an earlier run of this command: its pages are in.
                        Err(ApiError::Invalid { code, .. }) if code == "job_not_draft" => Ok(()),
                        r => r.map(drop),
                    }
                }
            });
            let sent: Vec<Result<(), ApiError>> = futures::StreamExt::collect(
                futures::StreamExt::buffer_unordered(futures::stream::iter(sends), 4),
            )
            .await;
            sent.into_iter().collect::<Result<Vec<()>, _>>()?;
        }
        let start = format!("/jobs/{id}/start");
        for _ in 0..60 {
            match client
                .call(reqwest::Method::POST, &start, Some(&json!({})), None)
                .await
            {
                Err(ApiError::Invalid { code, .. }) if code == "start_in_progress" => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                r => return Ok(r?),
            }
        }
        Err(Failure(
            3,
            format!("{id}: another request kept starting the job; retry the command"),
        ))
    }

    /// The --map/--keep/--delimiter flags given, as `relay wait` takes them again.
    fn read_flags(&self) -> String {
        let mut s = String::new();
        for (h, f) in &self.read.maps {
            s.push_str(&format!(" --map {:?}", format!("{h}={f}")));
        }
        for k in &self.read.keeps {
            s.push_str(&format!(" --keep {k:?}"));
        }
        if let Some(d) = self.read.delimiter {
            let d = if d == b'\t' {
                "tab".to_string()
            } else {
                (d as char).to_string()
            };
            s.push_str(&format!(" --delimiter '{d}'"));
        }
        s
    }
}

const TERMINAL: [&str; 4] = ["completed", "partially_failed", "failed", "canceled"];

/// Polls the job every 2 s with a progress bar (done/total, found, ETA) until it ends.
async fn follow(client: &Client, id: &str, total: u64) -> Result<Value, Failure> {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bar:30} {pos}/{len} done, {msg} (ETA {eta})",
        )
        .expect("template"),
    );
    let mut failures = 0;
    loop {
        // A job runs for minutes to hours: a passing failure of the API (a 5xx, a dropped
        // connection) is waited out, a few in a row end the wait (`relay wait` resumes it).
        let state = match client.get(&format!("/jobs/{id}")).await {
            Err(ApiError::Unreachable(e)) if failures < 10 => {
                failures += 1;
                bar.set_message(format!("retrying: {e}"));
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            r => r?,
        };
        failures = 0;
        bar.set_length(state["contacts"].as_u64().unwrap_or(total));
        bar.set_position(state["done"].as_u64().unwrap_or(0));
        bar.set_message(format!("{} found", state["found"].as_u64().unwrap_or(0)));
        let status = state["status"].as_str().unwrap_or_default();
        if TERMINAL.contains(&status) {
            bar.finish_and_clear();
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Prints how a job ended; its exit code: 0 completed, 1 otherwise.
fn ended(id: &str, state: &Value) -> u8 {
    let status = state["status"].as_str().unwrap_or_default();
    eprintln!(
        "{id}: {status}: {} found, {} not found, {} failed of {}",
        state["found"], state["not_found"], state["failed"], state["contacts"]
    );
    if let Some(e) = state["error"]["message"].as_str() {
        eprintln!("{id}: {e}");
    }
    u8::from(status != "completed")
}

/// `relay wait JOB [--in FILE] [--out F]`: follows the job, then writes its results file.
async fn wait(
    api: &Api,
    id: &str,
    file: &FileArgs,
    out: Option<std::path::PathBuf>,
) -> Result<u8, Failure> {
    let client = client(api)?;
    let head = client.get(&format!("/jobs/{id}")).await?;
    let provider = head["provider"].as_str().unwrap_or_default().to_string();
    let input = job_input(&head, file)?;
    let state = follow(&client, id, head["contacts"].as_u64().unwrap_or(0)).await?;
    let rows = client.results_with_raw(id, 1000).await?;
    write_rows(&mut *output(&out)?, input.as_ref(), &rows, &provider, file)?;
    if let Some(o) = &out {
        eprintln!("{id}: results written to {}", o.display());
    }
    Ok(ended(id, &state))
}

/// The job's input file read as it was at submit, when `--in` names it.
fn job_input(head: &Value, file: &FileArgs) -> Result<Option<Input>, Failure> {
    let Some(path) = &file.input else {
        return Ok(None);
    };
    let op = head["operation"]
        .as_str()
        .and_then(|o| o.parse::<Operation>().ok())
        .ok_or_else(|| Failure(3, "the API did not say the job's operation".into()))?;
    let input = read_file(path, op, &file.read)?;
    let sent = input.rows.len() - input.rejected().count();
    if head["contacts"].as_u64() != Some(sent as u64) {
        return Err(Failure(
            2,
            format!(
                "{} gives {sent} contact(s) to send but the job has {}: is it the file the job was submitted from, with the same --map and --keep?",
                path.display(),
                head["contacts"]
            ),
        ));
    }
    Ok(Some(input))
}

fn write_rows(
    w: &mut dyn std::io::Write,
    input: Option<&Input>,
    rows: &[Value],
    provider: &str,
    file: &FileArgs,
) -> Result<(), Failure> {
    match input {
        Some(input) => output::write_results_file(&mut *w, input, rows, provider, !file.no_bom),
        None => relay_shared::results_csv::write_results(&mut *w, rows, provider, !file.no_bom),
    }
    .map_err(write_failed)?;
    w.flush().map_err(write_failed)
}

/// A time the API gives in ms since the epoch, as RFC 3339 (UTC).
fn when(ms: &Value) -> String {
    ms.as_u64()
        .and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).ok())
        .and_then(|t| {
            t.replace_millisecond(0)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

async fn status(api: &Api, id: &str) -> Result<u8, Failure> {
    let state = client(api)?.get(&format!("/jobs/{id}")).await?;
    println!(
        "{id}: {} ({} of {} done: {} found, {} not found, {} failed; {} duplicate deliveries dropped)",
        state["status"].as_str().unwrap_or_default(),
        state["done"],
        state["contacts"],
        state["found"],
        state["not_found"],
        state["failed"],
        state["duplicates"]
    );
    let credits = match &state["credits_used"] {
        Value::Null => "none yet".to_string(),
        v => v.to_string(),
    };
    println!(
        "{id}: {} {} {:?}; credits used: {credits}; created {}, updated {}",
        state["provider"].as_str().unwrap_or_default(),
        state["operation"].as_str().unwrap_or_default(),
        state["name"].as_str().unwrap_or_default(),
        when(&state["created_at"]),
        when(&state["updated_at"]),
    );
    if let Some(e) = state["error"]["message"].as_str() {
        println!("{id}: {e}");
    }
    Ok(0)
}

async fn jobs(api: &Api, limit: usize) -> Result<u8, Failure> {
    let page = client(api)?
        .get(&format!("/jobs?limit={}", limit.clamp(1, 100)))
        .await?;
    let jobs = page["jobs"].as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        eprintln!("no jobs yet: `relay submit --provider … --operation … contacts.csv` starts one");
    }
    for j in &jobs {
        println!(
            "{}  {:<16}  {:<10} {:<13} {}/{} done  {}  {}",
            j["job_id"].as_str().unwrap_or_default(),
            j["status"].as_str().unwrap_or_default(),
            j["provider"].as_str().unwrap_or_default(),
            j["operation"].as_str().unwrap_or_default(),
            j["done"],
            j["contacts"],
            when(&j["created_at"]),
            j["name"].as_str().unwrap_or_default(),
        );
    }
    Ok(0)
}

async fn orphans(api: &Api, limit: usize, cursor: Option<&str>, json: bool) -> Result<u8, Failure> {
    let mut url = reqwest::Url::parse("http://relay/orphans").expect("a static URL");
    url.query_pairs_mut()
        .append_pair("limit", &limit.clamp(1, 100).to_string());
    if let Some(c) = cursor {
        url.query_pairs_mut().append_pair("cursor", c);
    }
    let query = url.query().unwrap_or_default();
    let page = client(api)?.get(&format!("/orphans?{query}")).await?;
    if json {
        println!("{page}");
        return Ok(0);
    }
    let orphans = page["orphans"].as_array().cloned().unwrap_or_default();
    if orphans.is_empty() {
        eprintln!("no orphans: every event of Enrow's dashboard webhook was for a search of a job");
    }
    for o in &orphans {
        println!(
            "{}  {:<8} {:<28} {}  credits {}",
            when(&o["received_at"]),
            o["provider"].as_str().unwrap_or_default(),
            o["event"].as_str().unwrap_or_default(),
            o["provider_id"].as_str().unwrap_or_default(),
            o["credits"],
        );
    }
    if let Some(next) = page["next_cursor"].as_str() {
        eprintln!("more: relay orphans --cursor '{next}'");
    }
    Ok(0)
}

async fn cancel(api: &Api, id: &str) -> Result<u8, Failure> {
    client(api)?
        .call(
            reqwest::Method::POST,
            &format!("/jobs/{id}/cancel"),
            None,
            None,
        )
        .await?;
    println!("{id}: canceled; chunks not started will not start, started ones finish");
    Ok(0)
}

async fn results(
    api: &Api,
    id: &str,
    format: Format,
    file: &FileArgs,
    out: Option<std::path::PathBuf>,
) -> Result<u8, Failure> {
    let client = client(api)?;
    let rows = match format {
        Format::Csv => client.results_with_raw(id, 1000).await?,
        _ => client.results(id, 1000).await?,
    };
    if rows.is_empty() {
        eprintln!("{id}: no results yet (`relay status {id}` says how far it is)");
    }
    let mut w = output(&out)?;
    match format {
        Format::Csv => {
            let head = client.get(&format!("/jobs/{id}")).await?;
            let provider = head["provider"].as_str().unwrap_or_default().to_string();
            let input = job_input(&head, file)?;
            if input.is_none() {
                eprintln!(
                    "{id}: the API's columns (index, custom, relay_…); --in FILE (the file it was submitted from) gives the file's own columns back"
                );
            }
            write_rows(&mut *w, input.as_ref(), &rows, &provider, file)?;
        }
        Format::Ndjson => {
            rows.iter()
                .try_for_each(|r| writeln!(w, "{r}"))
                .map_err(write_failed)?;
        }
        Format::Json => writeln!(w, "{}", Value::Array(rows)).map_err(write_failed)?,
    }
    w.flush().map_err(write_failed)?;
    Ok(0)
}

async fn dlqs(queues: &Queues) -> Result<Vec<Dlq>, DlqError> {
    let sqs = relay_shared::aws::sqs(&relay_shared::aws::load().await);
    match (&queues.stack, &queues.dlq) {
        (Some(stack), _) => Dlq::of_stack(&sqs, stack).await,
        (None, Some(url)) => Ok(vec![Dlq::new(sqs, url)]),
        (None, None) => Err(DlqError::Usage(
            "which queues? give --stack NAME (or RELAY_STACK) or --dlq URL (or RELAY_DLQ_URL)"
                .into(),
        )),
    }
}

async fn dlq(command: DlqCommand) -> Result<u8, Failure> {
    match command {
        DlqCommand::List { queues } => {
            for q in dlqs(&queues).await? {
                let s = q.summary().await?;
                println!("{}: {} message(s)", q.name(), s.total);
                if s.in_flight > 0 {
                    println!("  ({} more held by another reader right now)", s.in_flight);
                }
                if s.total > 0 {
                    println!("  by reason:");
                    for (reason, n) in &s.by_reason {
                        println!("    {n:>6}  {reason}");
                    }
                    println!("  by job:");
                    for (job, n) in &s.by_job {
                        println!("    {n:>6}  {job}");
                    }
                }
            }
            Ok(0)
        }
        DlqCommand::Replay {
            queues,
            reason,
            job,
            dry_run,
            to,
        } => {
            let filter = Filter { reason, job };
            for q in dlqs(&queues).await? {
                let to = match &to {
                    Some(t) => t.clone(),
                    None => q.source().await?,
                };
                let dest = to.rsplit('/').next().unwrap_or(&to).to_string();
                let r = q.replay(&to, &filter, dry_run).await?;
                if dry_run {
                    println!(
                        "{}: would move {} message(s) to {dest}; {} do not match",
                        q.name(),
                        r.would_move,
                        r.left
                    );
                } else {
                    println!(
                        "{}: moved {} message(s) to {dest}; {} do not match and stay{}",
                        q.name(),
                        r.moved,
                        r.left,
                        if r.failed > 0 {
                            format!("; {} could not be sent and stay", r.failed)
                        } else {
                            String::new()
                        }
                    );
                }
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod page_tests {
    use super::*;

    #[test]
    fn contacts_are_cut_into_pages_within_the_byte_budget_in_order() {
        let contacts: Vec<Value> = (0..1000)
            .map(|i| json!({"email": format!("p{i}@example.com"), "custom": {"relay_row": i.to_string()}}))
            .collect();
        let cut = pages(&contacts, 10_000);
        assert!(cut.len() > 1);
        let mut next = 0;
        for (offset, page) in &cut {
            assert_eq!(*offset, next, "pages follow each other");
            let body = json!({"offset": offset, "contacts": page}).to_string();
            assert!(body.len() <= 10_000, "{}", body.len());
            next += page.len();
        }
        assert_eq!(next, 1000);
        // A contact larger than the budget still goes, alone.
        assert_eq!(pages(&contacts[..3], 10).len(), 3);
        assert_eq!(pages(&contacts, usize::MAX).len(), 1);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
