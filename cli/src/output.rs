//! The files the CLI writes, through the one results writer (`relay_shared::results_csv`): the
//! results file (every input row, its columns as they were, then the `relay_` columns) and the
//! rejects file (the rows not sent, with their line, field and rule).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use relay_shared::results_csv::{
    RESULT_COLUMNS, Writer, pending_cells, rejected_cells, result_cells,
};
use serde_json::Value;

use crate::input::{Input, ROW_KEY};

/// The columns a rejects file adds to the input's.
pub const REJECT_COLUMNS: [&str; 3] = ["relay_line", "relay_field", "relay_rule"];

/// Writes every row of `input` with its result: the input columns as they were, then
/// [`RESULT_COLUMNS`]. A result finds its row by the row key it carried (`custom.relay_row`),
/// else by its place among the rows sent; a row not sent is `rejected` with its reason.
pub fn write_results_file(
    out: impl Write,
    input: &Input,
    results: &[Value],
    provider: &str,
    bom: bool,
) -> csv::Result<()> {
    let by_row: BTreeMap<String, &Value> = results
        .iter()
        .filter_map(|r| Some((r["custom"][ROW_KEY].as_str()?.to_string(), r)))
        .collect();
    let by_index: BTreeMap<u64, &Value> = results
        .iter()
        .filter_map(|r| Some((r["index"].as_u64()?, r)))
        .collect();
    let mut w = Writer::new(out, bom)?;
    w.record(
        input
            .headers
            .iter()
            .map(String::as_str)
            .chain(RESULT_COLUMNS),
    )?;
    let mut sent = 0u64;
    for (i, row) in input.rows.iter().enumerate() {
        let cells = match &row.contact {
            Err(e) => rejected_cells(&e.reason()),
            Ok(_) => {
                let key = (i + 1).to_string();
                let r = by_row
                    .get(&key)
                    .or_else(|| by_row.is_empty().then(|| by_index.get(&sent)).flatten());
                sent += 1;
                match r {
                    Some(r) => result_cells(r, provider, row.domain_sent()),
                    None => pending_cells(),
                }
            }
        };
        let mut input_cells = row.cells.clone();
        input_cells.resize(input.headers.len(), String::new());
        w.record(
            input_cells
                .iter()
                .map(String::as_str)
                .chain(cells.iter().map(String::as_str)),
        )?;
    }
    w.finish()
}

/// Writes the rows not sent: the input columns, then their line, field and rule.
pub fn write_rejects_file(out: impl Write, input: &Input, bom: bool) -> csv::Result<()> {
    let mut w = Writer::new(out, bom)?;
    w.record(
        input
            .headers
            .iter()
            .map(String::as_str)
            .chain(REJECT_COLUMNS),
    )?;
    for (row, e) in input.rejected() {
        let mut cells = row.cells.clone();
        cells.resize(input.headers.len(), String::new());
        let line = e.line.to_string();
        w.record(cells.iter().map(String::as_str).chain([
            line.as_str(),
            e.field.as_str(),
            e.rule.as_str(),
        ]))?;
    }
    w.finish()
}

/// Where the rejects go: beside `--out` (`leads.results.csv` → `leads.results.rejects.csv`),
/// else beside the input file (`leads.csv` → `leads.rejects.csv`).
pub fn rejects_path(out: Option<&Path>, contacts: &Path) -> PathBuf {
    let base = out.unwrap_or(contacts);
    let stem = match base.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("csv") => base.with_extension(""),
        _ => base.to_path_buf(),
    };
    let mut name = stem.file_name().unwrap_or_default().to_os_string();
    name.push(".rejects.csv");
    stem.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{ReadOptions, read};
    use relay_shared::jobs::Operation;
    use serde_json::json;

    #[test]
    fn every_input_row_comes_back_in_order_with_its_result_and_the_rejects_with_their_reason() {
        let text = "Full Name,Website,Owner\r\nAda Lovelace,https://www.acme.com/,=me\r\nCher,acme.com,you\r\nBob Bo,initech.com,\r\n";
        let input = read(text.as_bytes(), Operation::Enrich, &ReadOptions::default()).unwrap();
        // Results in any order, found by their row key.
        let results = vec![
            json!({"index": 1, "custom": {"relay_row": "3"}, "outcome": "not_found"}),
            json!({"index": 0, "custom": {"relay_row": "1"}, "outcome": "found",
                "email": "ada@acme.com", "email_status": "DELIVERABLE"}),
        ];
        let mut out = Vec::new();
        write_results_file(&mut out, &input, &results, "fullenrich", true).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "\u{feff}Full Name,Website,Owner,relay_outcome,relay_email,relay_email_status,relay_email_status_raw,relay_phone,relay_emails,relay_phones,relay_reason,relay_provider,relay_domain_sent,relay_operation,relay_verification,relay_attempts"
        );
        assert_eq!(
            lines[1],
            "Ada Lovelace,https://www.acme.com/,'=me,found,ada@acme.com,deliverable,DELIVERABLE,,ada@acme.com,,,fullenrich,acme.com,,,"
        );
        assert!(
            lines[2].starts_with(
                "Cher,acme.com,you,rejected,,,,,,,\"last_name is required without a linkedin_url"
            ),
            "{}",
            lines[2]
        );
        assert_eq!(
            lines[3],
            "Bob Bo,initech.com,,not_found,,,,,,,,fullenrich,initech.com,,,"
        );
        let mut out = Vec::new();
        write_rejects_file(&mut out, &input, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "Full Name,Website,Owner,relay_line,relay_field,relay_rule\r\n\
             Cher,acme.com,you,3,last_name,\"is required without a linkedin_url (a contact needs a linkedin_url, or first_name + last_name + a company)\"\r\n"
        );
    }

    #[test]
    fn rejects_go_beside_the_results_or_the_input() {
        assert_eq!(
            rejects_path(
                Some(Path::new("out/leads.results.csv")),
                Path::new("leads.csv")
            ),
            Path::new("out/leads.results.rejects.csv")
        );
        assert_eq!(
            rejects_path(None, Path::new("in/leads.CSV")),
            Path::new("in/leads.rejects.csv")
        );
        assert_eq!(
            rejects_path(Some(Path::new("results")), Path::new("x.csv")),
            Path::new("results.rejects.csv")
        );
    }
}
