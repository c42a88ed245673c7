//! What the commands share: the input file's flags, reading it, where output goes, failures.

use clap::Args;
use relay_cli::api::{ApiError, Client};
use relay_cli::dlq::DlqError;
use relay_cli::input::{self, Input, ReadOptions};
use relay_shared::jobs::Operation;

use crate::Api;

/// How the contacts file is read (give `relay wait` and `relay results` the same as `submit`).
#[derive(Args, Clone)]
pub(crate) struct FileArgs {
    /// The contacts file the job was submitted from (wait, results).
    #[arg(long = "in")]
    pub(crate) input: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) read: ReadArgs,
    /// Write results files without the UTF-8 byte-order mark (Excel wants it; some tools do not).
    #[arg(long)]
    pub(crate) no_bom: bool,
}

#[derive(Args, Clone)]
pub(crate) struct ReadArgs {
    /// A column for a contact field the column names do not say: `--map "Work Email=email"`
    /// (wins over the built-in names).
    #[arg(long = "map", value_parser = parse_map)]
    pub(crate) maps: Vec<(String, String)>,
    /// Also send this column to the provider (as `custom`); by default only contact fields are
    /// sent and every other column stays here.
    #[arg(long = "keep", value_name = "COLUMN")]
    pub(crate) keeps: Vec<String>,
    /// The file's delimiter: `,` `;` or `tab` (default: found from the header row).
    #[arg(long, value_parser = parse_delimiter)]
    pub(crate) delimiter: Option<u8>,
}

impl ReadArgs {
    pub(crate) fn options(&self) -> ReadOptions {
        ReadOptions {
            maps: self.maps.clone(),
            keeps: self.keeps.clone(),
            delimiter: self.delimiter,
        }
    }
}

pub(crate) fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "," | "comma" => Ok(b','),
        ";" | "semicolon" => Ok(b';'),
        "\\t" | "\t" | "tab" => Ok(b'\t'),
        "|" | "pipe" => Ok(b'|'),
        _ => Err("must be , ; tab or |".into()),
    }
}

pub(crate) fn parse_map(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((h, f)) if !h.trim().is_empty() && !f.trim().is_empty() => {
            Ok((h.trim().to_string(), f.trim().to_string()))
        }
        _ => Err("must be HEADER=FIELD, e.g. \"Work Email=email\"".into()),
    }
}

/// A failure: what to print and the exit code.
pub(crate) struct Failure(pub(crate) u8, pub(crate) String);

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

pub(crate) fn client(api: &Api) -> Result<Client, Failure> {
    let url = api.url.as_deref().ok_or_else(|| {
        Failure(
            2,
            "no jobs API: set RELAY_URL (or --url) to its base URL".into(),
        )
    })?;
    let token = api
        .token
        .as_deref()
        .ok_or_else(|| Failure(2, "no API token: set RELAY_API_TOKEN (or --token)".into()))?;
    Client::new(url, token).map_err(|m| Failure(2, m))
}

/// Where output goes: a file, or stdout.
pub(crate) fn open_out(
    out: &Option<std::path::PathBuf>,
) -> Result<Box<dyn std::io::Write>, Failure> {
    Ok(match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| Failure(2, format!("cannot write {}: {e}", p.display())))?,
        )),
        None => Box::new(std::io::stdout()),
    })
}

pub(crate) fn write_failed(e: impl std::fmt::Display) -> Failure {
    Failure(2, format!("cannot write the results: {e}"))
}

/// Reads and maps a contacts file for `op`; a file that cannot be used at all is a failure with
/// each reason.
pub(crate) fn read_file(
    path: &std::path::Path,
    op: Operation,
    read: &ReadArgs,
) -> Result<Input, Failure> {
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
pub(crate) fn describe(path: &std::path::Path, input: &Input) {
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
