//! CSV in and out: a CRM export becomes the contacts of a job (headers mapped to contact fields,
//! every other column kept in `custom` so it comes back on the result row), checked row by row
//! with the API's own rules before anything is sent; results become the input's columns plus the
//! outcome.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use relay_shared::jobs::Operation;
use relay_shared::validate::{operation_fields, validate_contact};
use serde_json::{Map, Value, json};

pub use relay_shared::results_csv::{RESULT_COLUMNS, result_cells, write_results};

/// A header (or a field name) as the mapping compares them: letters and digits only, lower case,
/// so "Full Name", "full_name" and "FULLNAME" all name `fullname`, and "E-mail" `email`.
pub fn normalize(header: &str) -> String {
    header
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A bad row: its line in the file, the field and the rule (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub field: String,
    pub rule: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "line {}: {}", self.line, self.rule)
        } else {
            write!(f, "line {}: {} {}", self.line, self.field, self.rule)
        }
    }
}

/// A contacts file read and checked: its header row, its rows (to write back with the results)
/// and the contacts of the job, in row order.
#[derive(Debug, Clone)]
pub struct Input {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub contacts: Vec<Value>,
}

/// Reads `reader` as a CSV with a header row and maps it for `op`: a column whose header (as
/// [`normalize`]d, or as `--map header=field` says) is a field the operation reads goes to that
/// field; every other column goes to `custom` under its header as written. Empty cells are left
/// out. Every row is checked with the API's rules; `Err` lists every bad row.
pub fn read_contacts(
    reader: impl Read,
    op: Operation,
    maps: &[(String, String)],
) -> Result<Input, Vec<RowError>> {
    let fields = operation_fields(op);
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(reader);
    let headers: Vec<String> = match csv.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(e) => {
            return Err(vec![RowError {
                line: 1,
                field: String::new(),
                rule: format!("is not a CSV header row ({e})"),
            }]);
        }
    };
    let explicit: BTreeMap<String, String> = maps
        .iter()
        .map(|(h, f)| (normalize(h), f.clone()))
        .collect();
    let mut errors = Vec::new();
    for (h, f) in &explicit {
        if !fields.contains(&f.as_str()) {
            errors.push(RowError {
                line: 0,
                field: format!("--map {h}={f}"),
                rule: format!(
                    "names no field of {}: its fields are {}",
                    op.as_str(),
                    fields.join(", ")
                ),
            });
        }
    }
    // Column → contact field, or None for `custom`.
    let target: Vec<Option<String>> = headers
        .iter()
        .map(|h| {
            let n = normalize(h);
            explicit.get(&n).cloned().or_else(|| {
                fields
                    .iter()
                    .find(|f| normalize(f) == n)
                    .map(|f| f.to_string())
            })
        })
        .collect();
    let mut seen = BTreeMap::new();
    for (i, t) in target.iter().enumerate() {
        if let Some(f) = t
            && let Some(first) = seen.insert(f.clone(), i)
        {
            errors.push(RowError {
                line: 1,
                field: f.clone(),
                rule: format!(
                    "comes from two columns ({:?} and {:?}): rename one or use --map",
                    headers[first], headers[i]
                ),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut rows = Vec::new();
    let mut contacts = Vec::new();
    for (i, record) in csv.records().enumerate() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(RowError {
                    line: e.position().map_or(i as u64 + 2, |p| p.line()),
                    field: String::new(),
                    rule: format!("cannot be read: {}", e.kind_text()),
                });
                continue;
            }
        };
        let line = record.position().map_or(i as u64 + 2, |p| p.line());
        let mut contact = Map::new();
        let mut custom = Map::new();
        for (value, (header, t)) in record.iter().zip(headers.iter().zip(&target)) {
            if value.trim().is_empty() {
                continue;
            }
            match t {
                Some(f) => contact.insert(f.clone(), json!(value)),
                None => custom.insert(header.clone(), json!(value)),
            };
        }
        if !custom.is_empty() {
            contact.insert("custom".into(), Value::Object(custom));
        }
        let contact = Value::Object(contact);
        if let Err(e) = validate_contact(op, 0, &contact) {
            errors.push(RowError {
                line,
                field: e
                    .field
                    .strip_prefix("contacts[0].")
                    .or(e.field.strip_prefix("contacts[0]"))
                    .unwrap_or(&e.field)
                    .to_string(),
                rule: e.message,
            });
        }
        rows.push(record.iter().map(str::to_string).collect());
        contacts.push(contact);
    }
    if contacts.is_empty() && errors.is_empty() {
        errors.push(RowError {
            line: 2,
            field: String::new(),
            rule: "no contacts: the file has a header row only".into(),
        });
    }
    if errors.is_empty() {
        Ok(Input {
            headers,
            rows,
            contacts,
        })
    } else {
        Err(errors)
    }
}

trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for csv::Error {
    /// What went wrong, without the record's content.
    fn kind_text(&self) -> String {
        match self.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("{len} fields where the header has {expected_len}"),
            csv::ErrorKind::Utf8 { .. } => "not UTF-8".into(),
            _ => "malformed CSV".into(),
        }
    }
}

/// Writes the input's rows with their results: the input columns, then [`RESULT_COLUMNS`].
/// `results` are matched to rows by their `index`.
pub fn write_with_input(out: impl Write, input: &Input, results: &[Value]) -> csv::Result<()> {
    let by_index: BTreeMap<u64, &Value> = results
        .iter()
        .filter_map(|r| Some((r["index"].as_u64()?, r)))
        .collect();
    // A result column named like an input column (a verification's `email`) is `result_…`.
    let taken: Vec<String> = input.headers.iter().map(|h| normalize(h)).collect();
    let names: Vec<String> = RESULT_COLUMNS
        .iter()
        .map(|c| {
            if taken.contains(&normalize(c)) {
                format!("result_{c}")
            } else {
                c.to_string()
            }
        })
        .collect();
    let mut w = csv::Writer::from_writer(out);
    w.write_record(input.headers.iter().chain(&names))?;
    for (i, row) in input.rows.iter().enumerate() {
        let cells = by_index
            .get(&(i as u64))
            .map(|r| result_cells(r))
            .unwrap_or_default();
        w.write_record(
            row.iter()
                .map(String::as_str)
                .chain(cells.iter().map(String::as_str)),
        )?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_map_case_and_spacing_insensitively_and_the_rest_goes_to_custom() {
        let csv = "First Name,LAST-NAME, Domain ,CRM Id,Owner\nAda,Lovelace,example.com,c1,\n";
        assert_eq!(normalize(" Full Name "), "fullname");
        let input = read_contacts(csv.as_bytes(), Operation::Enrich, &[]).unwrap();
        assert_eq!(
            input.contacts,
            vec![
                json!({"first_name": "Ada", "last_name": "Lovelace", "domain": "example.com",
                "custom": {"CRM Id": "c1"}})
            ],
            "an empty cell is left out"
        );
        let mapped = read_contacts(
            "Person,Company Website\nAda Lovelace,example.com\n".as_bytes(),
            Operation::EmailFind,
            &[
                ("person".into(), "fullname".into()),
                ("Company Website".into(), "company_domain".into()),
            ],
        )
        .unwrap();
        assert_eq!(
            mapped.contacts,
            vec![json!({"fullname": "Ada Lovelace", "company_domain": "example.com"})]
        );
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line_and_rule_and_no_value() {
        let csv = "email,crm_id\nada@example.com,1\nnot-an-email,2\n\"multi\nline\",3\n,4\n";
        let errors = read_contacts(csv.as_bytes(), Operation::EmailVerify, &[]).unwrap_err();
        let lines: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(lines, vec![(3, "email"), (4, "email"), (6, "email")]);
        assert!(errors[0].rule.contains("valid email"), "{}", errors[0]);
        assert!(errors[2].rule.contains("required"), "{}", errors[2]);
        assert!(
            errors
                .iter()
                .all(|e| !e.to_string().contains("not-an-email"))
        );

        let errors = read_contacts("email\n".as_bytes(), Operation::EmailVerify, &[]).unwrap_err();
        assert!(errors[0].rule.contains("no contacts"));
        let errors = read_contacts(
            "mail,Email\nx,y\n".as_bytes(),
            Operation::EmailVerify,
            &[("mail".into(), "email".into())],
        )
        .unwrap_err();
        assert!(errors[0].rule.contains("two columns"), "{}", errors[0]);
        let errors = read_contacts(
            "a\nx\n".as_bytes(),
            Operation::EmailVerify,
            &[("a".into(), "phone".into())],
        )
        .unwrap_err();
        assert!(
            errors[0].rule.contains("its fields are email"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn results_come_back_on_their_input_rows() {
        let input = read_contacts(
            "email,crm_id\nada@example.com,c1\nbob@example.com,c2\n".as_bytes(),
            Operation::EmailVerify,
            &[],
        )
        .unwrap();
        let results = vec![
            json!({"index": 1, "outcome": "invalid", "custom": {"crm_id": "c2"}}),
            json!({"index": 0, "outcome": "valid", "email": "ada@example.com", "email_status": "valid", "custom": {"crm_id": "c1"}}),
        ];
        let mut out = Vec::new();
        write_with_input(&mut out, &input, &results).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "email,crm_id,outcome,result_email,email_status,phone,reason\n\
             ada@example.com,c1,valid,ada@example.com,valid,,\n\
             bob@example.com,c2,invalid,,,,\n"
        );
        let mut out = Vec::new();
        write_results(&mut out, &results).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "index,crm_id,outcome,email,email_status,phone,reason\n\
             1,c2,invalid,,,,\n\
             0,c1,valid,ada@example.com,valid,,\n"
        );
    }
}
