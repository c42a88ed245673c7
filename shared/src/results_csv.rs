//! The one results CSV writer, for the API (`GET /jobs/{id}/results?format=csv`) and the CLI
//! (`relay submit --wait`, `relay wait`, `relay results --format csv`): leading columns (the
//! CLI's input file as it was; the API's `index` and the caller's `custom` keys), then the fixed
//! [`RESULT_COLUMNS`]. Every cell goes through [`neutralize`] (spreadsheet formula injection),
//! and a file starts with a UTF-8 byte-order mark unless asked not to (Excel on Windows reads a
//! file without one as its local code page: "José" shows as "JosÃ©").

use std::borrow::Cow;
use std::io::Write;

use serde_json::Value;

/// The columns a results CSV ends with, whatever the provider or the input.
pub const RESULT_COLUMNS: [&str; 13] = [
    "relay_outcome",
    "relay_email",
    "relay_email_status",
    "relay_email_status_raw",
    "relay_phone",
    "relay_emails",
    "relay_phones",
    "relay_reason",
    "relay_provider",
    "relay_domain_sent",
    "relay_operation",
    "relay_verification",
    "relay_attempts",
];

/// The UTF-8 byte-order mark.
pub const BOM: &str = "\u{feff}";

/// The outcome of a row that was not sent (`relay submit --skip-invalid`).
pub const REJECTED: &str = "rejected";

/// One email status vocabulary for both providers: `deliverable`, `risky`, `undeliverable` or
/// `unknown` (empty when there is no email). FullEnrich `DELIVERABLE` is deliverable,
/// `HIGH_PROBABILITY` and `CATCH_ALL` risky (not verified), `INVALID` and `INVALID_DOMAIN`
/// undeliverable; Enrow `valid` is deliverable, `invalid` undeliverable. Any other word is
/// `unknown` (the provider's own word stays in `relay_email_status_raw`).
pub fn email_status(raw: &str) -> &'static str {
    match raw.trim().to_ascii_uppercase().as_str() {
        "" => "",
        "DELIVERABLE" | "VALID" => "deliverable",
        "HIGH_PROBABILITY" | "CATCH_ALL" | "CATCHALL" | "RISKY" => "risky",
        "INVALID" | "INVALID_DOMAIN" | "UNDELIVERABLE" => "undeliverable",
        _ => "unknown",
    }
}

/// A cell a spreadsheet will not run (OWASP's CSV injection advice): a cell that starts with
/// `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so it is text. A number or
/// phone number (`+1 (415) 555-0100`, `-5`: a sign, then only digits, spaces and `().-`) cannot
/// call anything and is left as it is.
pub fn neutralize(cell: &str) -> Cow<'_, str> {
    let Some(first) = cell.chars().next() else {
        return Cow::Borrowed(cell);
    };
    if !matches!(first, '=' | '+' | '-' | '@' | '\t' | '\r') {
        return Cow::Borrowed(cell);
    }
    let rest = &cell[1..];
    let numeric = matches!(first, '+' | '-')
        && rest.chars().any(|c| c.is_ascii_digit())
        && rest
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '(' | ')' | '.' | '-'));
    if numeric {
        Cow::Borrowed(cell)
    } else {
        Cow::Owned(format!("'{cell}"))
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn push_unique(list: &mut Vec<String>, v: Option<String>) {
    if let Some(v) = v
        && !list.contains(&v)
    {
        list.push(v);
    }
}

/// Every email the provider gave for a result row (the chosen one first): FullEnrich's work and
/// personal email lists, Enrow's email.
pub fn all_emails(r: &Value) -> Vec<String> {
    let mut out = Vec::new();
    push_unique(&mut out, text(&r["email"]));
    let info = &r["raw"]["contact_info"];
    for list in ["work_emails", "personal_emails"] {
        for e in info[list].as_array().into_iter().flatten() {
            push_unique(&mut out, text(&e["email"]));
        }
    }
    push_unique(&mut out, text(&r["raw"]["email"]));
    out
}

/// Every phone number the provider gave for a result row (the chosen one first).
pub fn all_phones(r: &Value) -> Vec<String> {
    let mut out = Vec::new();
    push_unique(&mut out, text(&r["phone"]));
    for p in r["raw"]["contact_info"]["phones"]
        .as_array()
        .into_iter()
        .flatten()
    {
        push_unique(&mut out, text(&p["number"]));
    }
    push_unique(&mut out, text(&r["raw"]["number"]));
    out
}

/// The domain the provider was asked with, as it echoes it (FullEnrich `input.company_domain`,
/// Enrow bulk `raw_params.company_domain`, single `info.company_domain`).
fn echoed_domain(r: &Value) -> Option<String> {
    let raw = &r["raw"];
    text(&raw["input"]["company_domain"])
        .or_else(|| text(&raw["raw_params"]["company_domain"]))
        .or_else(|| text(&raw["info"]["company_domain"]))
}

/// The [`RESULT_COLUMNS`] of one result row as the jobs API returns it (with `raw` for the
/// lists). `provider` is the job's, for rows that do not name theirs; `domain_sent` is the
/// domain the caller sent, when it knows it (else the provider's echo of it).
pub fn result_cells(r: &Value, provider: &str, domain_sent: Option<&str>) -> Vec<String> {
    let status_raw = text(&r["email_status"]).unwrap_or_default();
    vec![
        text(&r["outcome"]).unwrap_or_default(),
        text(&r["email"]).unwrap_or_default(),
        email_status(&status_raw).to_string(),
        status_raw,
        text(&r["phone"]).unwrap_or_default(),
        all_emails(r).join(";"),
        all_phones(r).join(";"),
        text(&r["reason"]).unwrap_or_default(),
        text(&r["provider"]).unwrap_or_else(|| provider.to_string()),
        domain_sent
            .map(str::to_string)
            .or_else(|| echoed_domain(r))
            .unwrap_or_default(),
        text(&r["operation"]).unwrap_or_default(),
        text(&r["verification"]["outcome"]).unwrap_or_default(),
        attempts(r),
    ]
}

/// A waterfall row's attempts in one cell: `enrow email_find: not_found; fullenrich enrich:
/// found` (empty for a one-step job's row).
fn attempts(r: &Value) -> String {
    r["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let mut cell = format!(
                "{} {}: {}",
                a["provider"].as_str().unwrap_or_default(),
                a["operation"].as_str().unwrap_or_default(),
                a["outcome"].as_str().unwrap_or_default()
            );
            if let Some(reason) = a["reason"].as_str() {
                cell.push_str(&format!(" ({reason})"));
            }
            cell
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The [`RESULT_COLUMNS`] of a row that was not sent: outcome `rejected`, the field and rule as
/// the reason.
pub fn rejected_cells(reason: &str) -> Vec<String> {
    let mut cells = vec![String::new(); RESULT_COLUMNS.len()];
    cells[0] = REJECTED.into();
    cells[7] = reason.into();
    cells
}

/// The [`RESULT_COLUMNS`] of a row whose result has not come (yet).
pub fn pending_cells() -> Vec<String> {
    vec![String::new(); RESULT_COLUMNS.len()]
}

/// A CSV file written with neutralised cells, BOM first unless `bom` is false.
pub struct Writer<W: Write> {
    w: csv::Writer<W>,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W, bom: bool) -> std::io::Result<Writer<W>> {
        if bom {
            out.write_all(BOM.as_bytes())?;
        }
        Ok(Writer {
            w: csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(out),
        })
    }

    /// One record, every cell neutralised.
    pub fn record<'a>(&mut self, cells: impl IntoIterator<Item = &'a str>) -> csv::Result<()> {
        self.w
            .write_record(cells.into_iter().map(|c| neutralize(c).into_owned()))
    }

    pub fn finish(mut self) -> csv::Result<()> {
        self.w.flush()?;
        Ok(())
    }
}

/// Writes result rows as the API serves them: `index`, every `custom` key (the union, in order
/// of first appearance), then [`RESULT_COLUMNS`].
pub fn write_results(
    out: impl Write,
    results: &[Value],
    provider: &str,
    bom: bool,
) -> csv::Result<()> {
    let mut keys: Vec<String> = Vec::new();
    for r in results {
        if let Some(c) = r["custom"].as_object() {
            for k in c.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    let mut w = Writer::new(out, bom)?;
    w.record(
        std::iter::once("index")
            .chain(keys.iter().map(String::as_str))
            .chain(RESULT_COLUMNS),
    )?;
    for r in results {
        let custom: Vec<String> = keys
            .iter()
            .map(|k| match &r["custom"][k] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                v => v.to_string(),
            })
            .collect();
        let index = r["index"]
            .as_u64()
            .map(|i| i.to_string())
            .unwrap_or_default();
        let cells = result_cells(r, provider, None);
        w.record(
            std::iter::once(index.as_str())
                .chain(custom.iter().map(String::as_str))
                .chain(cells.iter().map(String::as_str)),
        )?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_a_spreadsheet_would_run_are_neutralised() {
        for (cell, out) in [
            ("=1+2@x.io", "'=1+2@x.io"),
            ("+HYPERLINK(\"http://x\")", "'+HYPERLINK(\"http://x\")"),
            ("-1+2", "'-1+2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\r=x", "'\r=x"),
            ("-", "'-"),
            ("+", "'+"),
            ("ada@example.com", "ada@example.com"),
            ("Jos\u{e9}", "Jos\u{e9}"),
            ("a=b", "a=b"),
            ("", ""),
            ("+1 (415) 555-0100", "+1 (415) 555-0100"),
            ("+15705551234", "+15705551234"),
            ("-5", "-5"),
        ] {
            assert_eq!(neutralize(cell), out, "{cell:?}");
        }
        // In the API's file: a provider's `=1+2@x.io` opens as text.
        let mut out = Vec::new();
        let rows = [
            json!({"index": 0, "custom": {"note": "@cmd"}, "outcome": "found",
            "email": "=1+2@x.io", "email_status": "DELIVERABLE"}),
        ];
        write_results(&mut out, &rows, "fullenrich", false).unwrap();
        let text = String::from_utf8(out).unwrap();
        let row = text.lines().nth(1).unwrap();
        assert!(
            row.starts_with("0,'@cmd,found,'=1+2@x.io,deliverable,DELIVERABLE,"),
            "{row}"
        );
        assert!(!text.contains(",=") && !text.contains(",@"), "{text}");
    }

    #[test]
    fn one_email_status_vocabulary_for_both_providers() {
        for (raw, status) in [
            ("DELIVERABLE", "deliverable"),
            ("valid", "deliverable"),
            ("HIGH_PROBABILITY", "risky"),
            ("CATCH_ALL", "risky"),
            ("INVALID", "undeliverable"),
            ("INVALID_DOMAIN", "undeliverable"),
            ("invalid", "undeliverable"),
            ("NOT_FOUND", "unknown"),
            ("something_new", "unknown"),
            ("", ""),
        ] {
            assert_eq!(email_status(raw), status, "{raw}");
        }
    }

    #[test]
    fn a_result_row_carries_every_value_the_provider_gave() {
        let fe = json!({"index": 3, "outcome": "found", "email": "ada@acme.com",
            "email_status": "DELIVERABLE", "phone": "+1 555-123-4567",
            "raw": {"input": {"company_domain": "acme.com"}, "contact_info": {
                "work_emails": [{"email": "ada@acme.com"}, {"email": "a.lovelace@acme.com"}],
                "personal_emails": [{"email": "ada@gmail.com"}],
                "phones": [{"number": "+1 555-123-4567"}, {"number": "+33 6 12 34 56 78"}]}}});
        assert_eq!(
            result_cells(&fe, "fullenrich", None),
            [
                "found",
                "ada@acme.com",
                "deliverable",
                "DELIVERABLE",
                "+1 555-123-4567",
                "ada@acme.com;a.lovelace@acme.com;ada@gmail.com",
                "+1 555-123-4567;+33 6 12 34 56 78",
                "",
                "fullenrich",
                "acme.com",
                "",
                "",
                ""
            ]
        );
        // A waterfall's row: the settling step, the verification, every step's account.
        let wf = json!({"index": 1, "outcome": "found", "email": "cy@acme.com",
            "provider": "fullenrich", "operation": "enrich",
            "verification": {"provider": "enrow", "operation": "email_verify", "outcome": "valid"},
            "attempts": [
                {"provider": "enrow", "operation": "email_find", "outcome": "not_found", "credits": 0},
                {"provider": "fullenrich", "operation": "enrich", "outcome": "found", "credits": 1}]});
        let cells = result_cells(&wf, "enrow", None);
        assert_eq!(
            cells[8], "fullenrich",
            "the step that settled it, not the first"
        );
        assert_eq!(
            cells[10..],
            [
                "enrich",
                "valid",
                "enrow email_find: not_found; fullenrich enrich: found"
            ]
        );
        let enrow = json!({"index": 0, "outcome": "valid", "email": "bo@x.io",
            "email_status": "valid", "raw": {"email": "bo@x.io", "qualification": "valid"}});
        let cells = result_cells(&enrow, "enrow", Some("x.io"));
        assert_eq!(cells[2], "deliverable");
        assert_eq!(cells[5], "bo@x.io");
        assert_eq!((cells[8].as_str(), cells[9].as_str()), ("enrow", "x.io"));
        assert_eq!(rejected_cells("last_name is required")[0], "rejected");
        assert_eq!(
            rejected_cells("last_name is required")[7],
            "last_name is required"
        );
    }

    #[test]
    fn files_start_with_a_bom_unless_asked_not_to() {
        let rows = [json!({"index": 0, "outcome": "not_found"})];
        let mut with = Vec::new();
        write_results(&mut with, &rows, "enrow", true).unwrap();
        assert!(with.starts_with(b"\xEF\xBB\xBFindex,relay_outcome,"));
        let mut without = Vec::new();
        write_results(&mut without, &rows, "enrow", false).unwrap();
        assert!(without.starts_with(b"index,relay_outcome,"));
        assert!(String::from_utf8(without).unwrap().ends_with("\r\n"));
    }
}
