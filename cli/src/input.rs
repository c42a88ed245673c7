//! A contacts file read as it is: a CRM export with a header row, any line ends (LF, CRLF, CR),
//! blank lines, quoted fields over several lines, a UTF-8 byte-order mark, and `,` `;` or tab
//! as the delimiter (found from the header row, or `--delimiter`). Each row becomes the contact
//! the operation needs (its columns mapped by [`Mapping`], checked and derived by the API's own
//! rules) or the reason it cannot (its line in the file, the field, the rule: never a value).

use relay_shared::jobs::Operation;
use relay_shared::validate::validate_contact;
use serde_json::{Map, Value, json};

use crate::mapping::Mapping;

/// The `custom` key that carries a row's number (1 for the first row after the header) to the
/// provider and back, so each result finds its row whatever was sent.
pub const ROW_KEY: &str = "relay_row";

/// A bad row or file: its line in the file (0 for the command line), the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub field: String,
    pub rule: String,
}

impl RowError {
    /// The field and the rule, as a results file's `relay_reason` says them.
    pub fn reason(&self) -> String {
        if self.field.is_empty() {
            self.rule.clone()
        } else {
            format!("{} {}", self.field, self.rule)
        }
    }
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason())
    }
}

/// One data row of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Its first line in the file (1 is the header row).
    pub line: u64,
    /// Its cells as written.
    pub cells: Vec<String>,
    /// The contact to send (fields, and `custom` with [`ROW_KEY`] and any `--keep` columns), or
    /// why the row cannot be sent.
    pub contact: Result<Value, RowError>,
}

impl Row {
    /// The domain field this row's contact sends, as sent (reduced to the registrable domain).
    pub fn domain_sent(&self) -> Option<&str> {
        let c = self.contact.as_ref().ok()?;
        c["domain"].as_str().or(c["company_domain"].as_str())
    }
}

/// A contacts file read and mapped.
#[derive(Debug, Clone)]
pub struct Input {
    pub headers: Vec<String>,
    pub delimiter: u8,
    pub mapping: Mapping,
    pub rows: Vec<Row>,
}

impl Input {
    /// The contacts to send, in row order (the valid rows).
    pub fn contacts(&self) -> Vec<Value> {
        self.rows
            .iter()
            .filter_map(|r| r.contact.as_ref().ok().cloned())
            .collect()
    }

    pub fn rejected(&self) -> impl Iterator<Item = (&Row, &RowError)> {
        self.rows
            .iter()
            .filter_map(|r| r.contact.as_ref().err().map(|e| (r, e)))
    }

    /// How many rows had their domain reduced (a URL or a `www.` host).
    pub fn domains_reduced(&self) -> usize {
        let col = (0..self.headers.len())
            .find(|i| matches!(self.mapping.field_of(*i), Some("domain" | "company_domain")));
        let Some(col) = col else { return 0 };
        self.rows
            .iter()
            .filter(|r| {
                r.domain_sent()
                    .is_some_and(|d| r.cells.get(col).is_some_and(|c| c.trim() != d))
            })
            .count()
    }
}

/// How to read a file.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub maps: Vec<(String, String)>,
    pub keeps: Vec<String>,
    /// `None`: found from the header row.
    pub delimiter: Option<u8>,
}

/// The delimiter of a header row: the most frequent of `,` `;` and tab outside quotes (`,` when
/// none or tied).
pub fn detect_delimiter(data: &[u8]) -> u8 {
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for &b in data {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                for c in counts.iter_mut() {
                    if c.0 == b {
                        c.1 += 1;
                    }
                }
            }
            _ => {}
        }
    }
    counts
        .iter()
        .fold((b',', 0), |best, c| if c.1 > best.1 { *c } else { best })
        .0
}

/// Where each line starts (byte offsets): a line ends at LF, CRLF or a lone CR.
fn line_starts(data: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\n' => starts.push(i + 1),
            b'\r' if data.get(i + 1) != Some(&b'\n') => starts.push(i + 1),
            _ => {}
        }
        i += 1;
    }
    starts
}

/// The line of byte offset `at`, past any line ends there (the reader reports a record from the
/// end of the one before, so blank lines in between would count to the previous record).
fn line_of(data: &[u8], starts: &[usize], mut at: usize) -> u64 {
    while at < data.len() && matches!(data[at], b'\n' | b'\r') {
        at += 1;
    }
    starts.partition_point(|s| *s <= at) as u64
}

fn file_error(line: u64, rule: impl Into<String>) -> RowError {
    RowError {
        line,
        field: String::new(),
        rule: rule.into(),
    }
}

/// Reads `data` (a whole file) for `op`. `Err` is a file that cannot be used at all (no header
/// row, a bad `--map` or `--keep`, no rows); a bad row is a [`Row`] with its reason.
pub fn read(data: &[u8], op: Operation, opts: &ReadOptions) -> Result<Input, Vec<RowError>> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let delimiter = opts.delimiter.unwrap_or_else(|| detect_delimiter(data));
    let starts = line_starts(data);
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(data);
    let headers = header_row(&mut csv)?;
    let mapping = Mapping::new(op, &headers, &opts.maps, &opts.keeps)
        .map_err(|es| es.into_iter().map(|e| file_error(0, e)).collect::<Vec<_>>())?;
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let at = csv.position().byte() as usize;
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let start = record.position().map_or(at, |p| p.byte() as usize);
                let line = line_of(data, &starts, start);
                let cells: Vec<String> = record.iter().map(str::to_string).collect();
                // A row of empty cells (`,,,`, as spreadsheets leave at the end) is no row.
                if cells.iter().all(|c| c.trim().is_empty()) {
                    continue;
                }
                let contact = if cells.len() != headers.len() {
                    Err(file_error(
                        line,
                        cell_count_rule(&cells, &headers, delimiter),
                    ))
                } else {
                    contact_of(op, &mapping, &headers, &cells, rows.len() + 1, line)
                };
                rows.push(Row {
                    line,
                    cells,
                    contact,
                });
            }
            Err(e) => {
                let line = line_of(
                    data,
                    &starts,
                    e.position().map_or(at, |p| p.byte() as usize),
                );
                let text = kind_text(&e);
                rows.push(Row {
                    line,
                    cells: Vec::new(),
                    contact: Err(file_error(line, format!("cannot be read: {text}"))),
                });
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
            }
        }
    }
    if rows.is_empty() {
        return Err(vec![file_error(
            2,
            "no contacts: the file has a header row only",
        )]);
    }
    if let Some(rule) = no_field_named(op, &mapping, &headers, delimiter) {
        return Err(vec![file_error(1, rule)]);
    }
    Ok(Input {
        headers,
        delimiter,
        mapping,
        rows,
    })
}

/// The header row, or why the file has none.
fn header_row(csv: &mut csv::Reader<&[u8]>) -> Result<Vec<String>, Vec<RowError>> {
    match csv.headers() {
        Ok(h) if h.iter().any(|c| !c.trim().is_empty()) => {
            Ok(h.iter().map(str::to_string).collect())
        }
        Ok(_) => Err(vec![file_error(1, "is not a CSV header row (it is empty)")]),
        Err(e) => Err(vec![file_error(
            1,
            format!("is not a CSV header row ({})", kind_text(&e)),
        )]),
    }
}

/// A row whose cells do not line up with the header row.
fn cell_count_rule(cells: &[String], headers: &[String], delimiter: u8) -> String {
    format!(
        "has {} cells where the header row has {}{}",
        cells.len(),
        headers.len(),
        if delimiter == b',' {
            ""
        } else {
            " (is the delimiter right? see --delimiter)"
        }
    )
}

/// A file none of whose columns names a field of the operation: the rule to show.
fn no_field_named(
    op: Operation,
    mapping: &Mapping,
    headers: &[String],
    delimiter: u8,
) -> Option<String> {
    if !mapping
        .targets
        .iter()
        .all(|t| *t == crate::mapping::Target::Aside)
    {
        return None;
    }
    let hint = if delimiter == b',' && headers.len() == 1 && headers[0].contains([';', '\t']) {
        " (is the file separated by something else than commas? see --delimiter)"
    } else {
        ""
    };
    Some(format!(
        "no column names a field of {} ({}){hint}: name them with --map \"Column=field\"",
        op.as_str(),
        crate::mapping::readable_fields(op).join(", ")
    ))
}

/// The contact of one row, checked with the API's rules.
fn contact_of(
    op: Operation,
    mapping: &Mapping,
    headers: &[String],
    cells: &[String],
    row: usize,
    line: u64,
) -> Result<Value, RowError> {
    let mut fields = Map::new();
    for (i, value) in cells.iter().enumerate() {
        if let Some(f) = mapping.field_of(i)
            && !value.trim().is_empty()
        {
            fields.insert(f.to_string(), json!(value.trim()));
        }
    }
    let mut custom = Map::new();
    custom.insert(ROW_KEY.into(), json!(row.to_string()));
    for &k in &mapping.keep {
        if let Some(v) = cells.get(k).filter(|v| !v.trim().is_empty()) {
            custom.insert(headers[k].clone(), json!(v));
        }
    }
    fields.insert("custom".into(), Value::Object(custom));
    let contact = validate_contact(op, 0, &Value::Object(fields)).map_err(|e| RowError {
        line,
        field: e
            .field
            .strip_prefix("contacts[0].")
            .or(e.field.strip_prefix("contacts[0]"))
            .unwrap_or(&e.field)
            .to_string(),
        rule: e.message,
    })?;
    let mut out = contact.fields;
    if let Some(c) = contact.custom {
        out.insert("custom".into(), c);
    }
    Ok(Value::Object(out))
}

/// What went wrong reading a record, without its content.
fn kind_text(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => {
            "not UTF-8 (save the file as \"CSV UTF-8\" and try again)".into()
        }
        csv::ErrorKind::Io(e) => format!("{e}"),
        _ => "malformed CSV".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str, op: Operation) -> Input {
        read(text.as_bytes(), op, &ReadOptions::default()).unwrap()
    }

    fn bad_lines(text: &str) -> Vec<u64> {
        read_all(text, Operation::EmailVerify)
            .rejected()
            .map(|(_, e)| e.line)
            .collect()
    }

    #[test]
    fn line_numbers_are_the_files_own_for_lf_crlf_blank_lines_and_multiline_fields() {
        // The bad row (`nope`) is on line 3 of each file.
        assert_eq!(bad_lines("email\na@example.com\nnope\n"), [3], "LF");
        assert_eq!(bad_lines("email\r\na@example.com\r\nnope\r\n"), [3], "CRLF");
        assert_eq!(
            bad_lines("email\r\n\r\nnope\r\n"),
            [3],
            "CRLF, a blank line"
        );
        assert_eq!(bad_lines("email\n\nnope\n"), [3], "LF, a blank line");
        assert_eq!(bad_lines("email\ra@example.com\rnope\r"), [3], "CR");
        assert_eq!(
            bad_lines("email,note\r\na@example.com,\"two\r\nlines\"\r\nnope,x\r\n"),
            [4],
            "CRLF, a quoted field over two lines before it"
        );
        assert_eq!(
            bad_lines("\u{feff}email\r\n\r\n\r\na@example.com\r\n\r\nnope"),
            [6],
            "a BOM, blank lines, no line end at the end"
        );
        let input = read_all("email,x\na@example.com,1\n,\n , \n", Operation::EmailVerify);
        assert_eq!(input.rows.len(), 1, "rows of empty cells are no rows");
    }

    #[test]
    fn a_semicolon_or_tab_file_is_read_by_its_own_delimiter() {
        for sep in [";", "\t"] {
            let text = format!(
                "First Name{sep}Last Name{sep}Website\r\nAda{sep}Lovelace{sep}https://www.acme.com/\r\n"
            );
            let input = read_all(&text, Operation::Enrich);
            assert_eq!(input.delimiter, sep.as_bytes()[0]);
            assert_eq!(
                input.contacts(),
                [
                    json!({"first_name": "Ada", "last_name": "Lovelace", "domain": "acme.com",
                    "custom": {"relay_row": "1"}})
                ]
            );
        }
        // Forced to commas, a semicolon file says which way to look.
        let opts = ReadOptions {
            delimiter: Some(b','),
            ..ReadOptions::default()
        };
        let e = read(b"First Name;Last Name\nAda;L\n", Operation::Enrich, &opts).unwrap_err();
        assert!(e[0].rule.contains("--delimiter"), "{}", e[0]);
        assert!(e[0].rule.contains("--map"), "{}", e[0]);
    }

    #[test]
    fn only_contact_fields_and_the_row_key_are_sent_the_rest_stays_here() {
        let text = "First Name,Last Name,Company,Website,Job Title,Owner\n\
                    Ada,Lovelace,Acme,https://www.acme.com/about,CTO,me\n\
                    Bob,,Initech,initech.com,CEO,you\n";
        let input = read_all(text, Operation::Enrich);
        assert_eq!(
            input.contacts(),
            [
                json!({"first_name": "Ada", "last_name": "Lovelace", "company_name": "Acme",
                "domain": "acme.com", "custom": {"relay_row": "1"}})
            ]
        );
        assert_eq!(input.domains_reduced(), 1);
        let (row, e) = input.rejected().next().unwrap();
        assert_eq!((row.line, e.field.as_str()), (3, "last_name"));
        assert!(!e.to_string().contains("Bob"), "no contact data: {e}");
        // --keep sends a column as custom.
        let opts = ReadOptions {
            keeps: vec!["Owner".into()],
            ..ReadOptions::default()
        };
        let input = read(text.as_bytes(), Operation::Enrich, &opts).unwrap();
        assert_eq!(
            input.contacts()[0]["custom"],
            json!({"relay_row": "1", "Owner": "me"})
        );
        // Enrow email_find makes fullname from first + last.
        let input = read_all(text, Operation::EmailFind);
        assert_eq!(
            input.contacts()[0],
            json!({"fullname": "Ada Lovelace", "company_name": "Acme", "company_domain": "acme.com",
                "custom": {"relay_row": "1"}})
        );
        assert_eq!(input.rejected().count(), 1, "Bob has no last name");
    }

    #[test]
    fn a_file_that_cannot_be_used_says_why() {
        let e = read(b"email\n", Operation::EmailVerify, &ReadOptions::default()).unwrap_err();
        assert!(e[0].rule.contains("no contacts"));
        let e = read(
            b"Owner,Notes\nx,y\n",
            Operation::Enrich,
            &ReadOptions::default(),
        )
        .unwrap_err();
        assert!(e[0].rule.contains("--map"), "{}", e[0]);
        let input = read_all("email,x\na@example.com\n", Operation::EmailVerify);
        let (_, e) = input.rejected().next().unwrap();
        assert!(e.rule.contains("1 cells where the header row has 2"), "{e}");
        let input = read(
            b"email\n\xff@x.com\n",
            Operation::EmailVerify,
            &ReadOptions::default(),
        )
        .unwrap();
        let (_, e) = input.rejected().next().unwrap();
        assert!(e.rule.contains("UTF-8"), "{e}");
    }
}
