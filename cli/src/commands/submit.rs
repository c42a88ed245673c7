//! `relay submit`: a CSV file in, one job (sent in pages when it is large), and with --wait the
//! results file out.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use relay_cli::api::{ApiError, Client};
use relay_cli::input::Input;
use relay_cli::output;
use relay_shared::jobs::Operation;
use serde_json::{Value, json};

use crate::Api;
use crate::commands::common::{
    Failure, ReadArgs, client, describe, open_out, read_file, write_failed,
};
use crate::commands::wait::{ended, follow};

#[derive(Args)]
pub(crate) struct SubmitArgs {
    /// `enrow` or `fullenrich`.
    #[arg(long)]
    pub(crate) provider: String,
    /// enrow: email_find, email_verify, phone_find; fullenrich: enrich, reverse_email.
    #[arg(long)]
    pub(crate) operation: String,
    /// The CSV file: a header row, one contact a row (a CRM export as it is).
    pub(crate) contacts: std::path::PathBuf,
    /// The job's name (default: the file's name).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Makes a retry of this command return the same job (and spend nothing again).
    #[arg(long)]
    pub(crate) idempotency_key: Option<String>,
    /// An https URL the relay POSTs a signed `job.completed` event to when the job ends.
    #[arg(long)]
    pub(crate) callback_url: Option<String>,
    /// The job's credit budget: each chunk's worst case is reserved from it before the chunk
    /// starts, and a chunk that does not fit is never started (its contacts end
    /// budget_exhausted).
    #[arg(long, value_name = "CREDITS")]
    pub(crate) max_credits: Option<f64>,
    /// A waterfall: after --provider's --operation, the contacts it did not find go on to this
    /// step (`PROVIDER:OPERATION`, e.g. `fullenrich:enrich`; repeat for more steps). Each step
    /// takes the fields it needs from the same columns.
    #[arg(long = "then", value_name = "PROVIDER:OPERATION")]
    pub(crate) then: Vec<String>,
    /// A waterfall's check of the emails it found (Enrow email_verify): whose, `found`,
    /// `found_by_enrow` or `found_by_fullenrich`.
    #[arg(long, value_name = "WHEN")]
    pub(crate) verify: Option<String>,
    /// A waterfall contact whose next step could take it over this many credits skips it.
    #[arg(long, value_name = "CREDITS")]
    pub(crate) max_credits_per_contact: Option<f64>,
    #[command(flatten)]
    pub(crate) read: ReadArgs,
    /// Send the valid rows and write the others to a rejects file (beside --out, else beside
    /// the input: `<name>.rejects.csv`) with their line, field and rule.
    #[arg(long)]
    pub(crate) skip_invalid: bool,
    /// FullEnrich enrich: what to find, comma-separated: work_emails, personal_emails, phones
    /// (default: work_emails).
    #[arg(long, value_delimiter = ',')]
    pub(crate) enrich_fields: Vec<String>,
    /// Enrow email_find / phone_find: the country (ISO alpha-2) used with company names.
    #[arg(long)]
    pub(crate) country_code: Option<String>,
    /// How long the job waits for results after its last chunk started (1–720 hours).
    #[arg(long)]
    pub(crate) deadline_hours: Option<u64>,
    /// Print the mapping, the counts, the rows refused and the job's worst-case credits; send
    /// nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Follow the job with a progress bar until it ends, then write the results file.
    #[arg(long)]
    pub(crate) wait: bool,
    /// Where --wait writes the results file (default: stdout).
    #[arg(long)]
    pub(crate) out: Option<std::path::PathBuf>,
    /// Write files without the UTF-8 byte-order mark.
    #[arg(long)]
    pub(crate) no_bom: bool,
    /// The largest request body sent (bytes): a larger job goes in pages of at most this (a
    /// staged job: created, its contacts added page by page, then started). A Lambda request
    /// is at most 6 MB.
    #[arg(long, env = "RELAY_PAGE_BYTES", default_value_t = PAGE_BYTES)]
    pub(crate) page_bytes: usize,
}

/// The largest body `relay submit` sends by default: under Lambda's 6 MB request cap once API
/// Gateway has escaped it into its event.
pub(crate) const PAGE_BYTES: usize = 4_000_000;

/// `contacts` cut into pages whose bodies stay within `max_bytes` (at least one contact a
/// page): each page's offset in the job and its contacts.
pub(crate) fn pages(contacts: &[Value], max_bytes: usize) -> Vec<(usize, &[Value])> {
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

/// Credits a contact costs at most ([`relay_shared::credits`]: providers.md §2.10, §3.5;
/// Enrow's phone at the spec's 50); no fields: FullEnrich's default.
pub(crate) fn worst_case_credits(op: Operation, enrich_fields: &[String]) -> f64 {
    let options = if enrich_fields.is_empty() {
        json!({})
    } else {
        json!({ "enrich_fields": enrich_fields })
    };
    relay_shared::credits::per_contact(op, &options)
}

/// The flag that sets a request field, for messages.
pub(crate) fn flag_of(field: &str) -> String {
    let f = field.split('[').next().unwrap_or(field);
    match f {
        "options.enrich_fields" => "--enrich-fields".into(),
        "options.country_code" => "--country-code".into(),
        "options.deadline_hours" => "--deadline-hours".into(),
        "name" => "--name".into(),
        "callback_url" => "--callback-url".into(),
        "max_credits" => "--max-credits".into(),
        "max_credits_per_contact" => "--max-credits-per-contact".into(),
        "steps" => "--then".into(),
        f if f.starts_with("verify") => "--verify".into(),
        _ => field.into(),
    }
}

impl SubmitArgs {
    pub(crate) fn body(&self, contacts: Vec<Value>) -> Value {
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
        if let Some(m) = self.max_credits {
            body["max_credits"] = json!(m);
        }
        if !self.then.is_empty() || self.verify.is_some() {
            self.as_waterfall(&mut body);
        }
        body
    }

    /// The body as a waterfall: `--provider`/`--operation` (with the options) its first step,
    /// each `--then` the next; `--verify` its check. The API's validation names a bad step.
    fn as_waterfall(&self, body: &mut Value) {
        let o = body.as_object_mut().expect("an object");
        let mut first =
            json!({"provider": o.remove("provider"), "operation": o.remove("operation")});
        if let Some(options) = o.remove("options") {
            first["options"] = options.clone();
        }
        let mut steps = vec![first];
        for t in &self.then {
            let (provider, operation) = t.split_once(':').unwrap_or((t.as_str(), ""));
            let mut step = json!({"provider": provider, "operation": operation});
            if operation == "enrich" && !self.enrich_fields.is_empty() {
                step["options"] = json!({"enrich_fields": self.enrich_fields_full()});
            }
            steps.push(step);
        }
        o.insert("steps".into(), Value::Array(steps));
        if let Some(when) = &self.verify {
            o.insert(
                "verify".into(),
                json!({"provider": "enrow", "operation": "email_verify", "when": when}),
            );
        }
        if let Some(m) = self.max_credits_per_contact {
            o.insert("max_credits_per_contact".into(), json!(m));
        }
    }

    /// `--enrich-fields` as FullEnrich names them (`phones` → `contact.phones`).
    pub(crate) fn enrich_fields_full(&self) -> Vec<String> {
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

    pub(crate) async fn run(self, api: &Api) -> Result<u8, Failure> {
        let op = self.operation()?;
        // The API decides; loopback receivers work only against a local stack.
        let local = reqwest::Url::parse(api.url.as_deref().unwrap_or_default())
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
        let rejects_path = output::rejects_path(self.out.as_deref(), path);
        let contacts = input.contacts();
        let n = contacts.len();
        self.check_rows(&input, n, &rejects_path)?;
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
        let rejected = input.rejected().count();
        if self.dry_run {
            self.dry_run_report(op, n, rejected, &rejects_path);
            if api.url.is_some() {
                self.dry_run_at_api(&client(api)?, body, n).await?;
            }
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
        let job = self.send(&client, body).await?;
        self.follow_up(&client, &job, &input, n).await
    }

    /// `--operation` as one of `--provider`'s.
    fn operation(&self) -> Result<Operation, Failure> {
        self.operation.parse::<Operation>().ok()
            .filter(|o| o.provider().as_str() == self.provider)
            .ok_or_else(|| {
                Failure(
                    2,
                    format!(
                        "--operation {} is not an operation of --provider {} (enrow: email_find, email_verify, phone_find; fullenrich: enrich, reverse_email)",
                        self.operation, self.provider
                    ),
                )
            })
    }

    /// Bad rows stop the command unless `--skip-invalid` (each printed, unless it will be in the
    /// rejects file); no valid row stops it too.
    fn check_rows(
        &self,
        input: &Input,
        valid: usize,
        rejects_path: &std::path::Path,
    ) -> Result<(), Failure> {
        let path = &self.contacts;
        let rejected = input.rejected().count();
        if rejected > 0 && (!self.skip_invalid || self.dry_run) {
            for (_, e) in input.rejected() {
                eprintln!("{}: {e}", path.display());
            }
        }
        if rejected > 0 && !self.skip_invalid && !self.dry_run {
            return Err(Failure(
                2,
                format!(
                    "{rejected} bad row(s): nothing was sent. --skip-invalid sends the {valid} valid row(s) and writes the others to {}; --map \"Column=field\" names a column the mapping above missed",
                    rejects_path.display()
                ),
            ));
        }
        if valid == 0 {
            return Err(Failure(
                2,
                "no valid row to send: nothing was sent (--map \"Column=field\" names a column the mapping above missed)".into(),
            ));
        }
        Ok(())
    }

    /// What `--dry-run` prints: the requests, the worst-case credits, the rows refused.
    fn dry_run_report(
        &self,
        op: Operation,
        n: usize,
        rejected: usize,
        rejects_path: &std::path::Path,
    ) {
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
    }

    /// `--dry-run` with an API: its estimate and the account's balance (`"dry_run": true`: the
    /// API validates and prices the job, and writes and starts nothing). A job too large for
    /// one request is priced by its head and count (`staged`).
    async fn dry_run_at_api(
        &self,
        client: &Client,
        mut body: Value,
        n: usize,
    ) -> Result<(), Failure> {
        if body.to_string().len() > self.page_bytes
            && let Some(job) = body.as_object_mut()
        {
            job.remove("contacts");
            job.insert("staged".into(), json!({ "contacts": n }));
        }
        body["dry_run"] = json!(true);
        let answer = client
            .call(reqwest::Method::POST, "/jobs", Some(&body), None)
            .await?;
        let estimate = answer["estimate"]["credits"].as_f64().unwrap_or(0.0);
        let account = match answer["balance"]["credits"].as_f64() {
            Some(b) if estimate > b => {
                format!("the account has {b}: not enough, the job would be refused (HTTP 402)")
            }
            Some(b) => format!("the account has {b}: enough"),
            None => {
                "the account's balance is not readable by this deployment (the job is not checked)"
                    .into()
            }
        };
        eprintln!(
            "dry run at the API: at most {estimate} {} credits; {account}",
            self.provider
        );
        Ok(())
    }

    /// The job sent: in one request, or staged in pages when its body is over `--page-bytes`.
    async fn send(&self, client: &Client, body: Value) -> Result<Value, Failure> {
        if body.to_string().len() > self.page_bytes {
            return self.submit_staged(client, body).await;
        }
        Ok(client
            .call(
                reqwest::Method::POST,
                "/jobs",
                Some(&body),
                self.idempotency_key.as_deref(),
            )
            .await?)
    }

    /// After the job is accepted: how to get its results, or (`--wait`) following it and
    /// writing the results file.
    async fn follow_up(
        &self,
        client: &Client,
        job: &Value,
        input: &Input,
        n: usize,
    ) -> Result<u8, Failure> {
        let id = job["job_id"].as_str().unwrap_or_default().to_string();
        eprintln!(
            "{id}: {} contacts accepted in {} chunk(s)",
            job["contacts"], job["chunks"]
        );
        let resume = format!(
            "relay wait {id} --in {}{}{}",
            self.contacts.display(),
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
        let state = follow(client, &id, n as u64).await?;
        let rows = client.results_with_raw(&id, 1000).await?;
        let mut w = open_out(&self.out)?;
        output::write_results_file(&mut w, input, &rows, &self.provider, !self.no_bom)
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
    pub(crate) async fn submit_staged(
        &self,
        client: &Client,
        mut body: Value,
    ) -> Result<Value, Failure> {
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
    pub(crate) fn read_flags(&self) -> String {
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

#[cfg(test)]
mod page_tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Args {
        #[command(flatten)]
        submit: SubmitArgs,
    }

    #[test]
    fn max_credits_goes_on_the_job_and_its_refusal_names_the_flag() {
        use clap::Parser;
        let args = Args::try_parse_from([
            "relay",
            "--provider",
            "fullenrich",
            "--operation",
            "enrich",
            "--max-credits",
            "40",
            "contacts.csv",
        ])
        .unwrap();
        assert_eq!(args.submit.body(vec![])["max_credits"], json!(40.0));
        let without = Args::try_parse_from([
            "relay",
            "--provider",
            "enrow",
            "--operation",
            "email_verify",
            "contacts.csv",
        ])
        .unwrap();
        assert!(without.submit.body(vec![]).get("max_credits").is_none());
        assert_eq!(flag_of("max_credits"), "--max-credits");
    }

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
