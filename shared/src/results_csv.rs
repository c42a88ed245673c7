//! Results as CSV, the same columns for the API (`GET /jobs/{id}/results?format=csv`) and the
//! CLI (`relay results --format csv`): `index`, the caller's `custom` keys, then
//! [`RESULT_COLUMNS`].

use std::io::Write;

use serde_json::Value;

/// The columns a results CSV ends with (after the input's, or after `index` and `custom`).
pub const RESULT_COLUMNS: [&str; 5] = ["outcome", "email", "email_status", "phone", "reason"];

/// The result columns of one result row (as the jobs API returns it).
pub fn result_cells(r: &Value) -> [String; 5] {
    RESULT_COLUMNS.map(|c| r[c].as_str().unwrap_or_default().to_string())
}

/// Writes result rows: `index`, every `custom` key (the union, in order of first appearance),
/// then [`RESULT_COLUMNS`].
pub fn write_results(out: impl Write, results: &[Value]) -> csv::Result<()> {
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
    let mut w = csv::Writer::from_writer(out);
    w.write_record(
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
        w.write_record(
            std::iter::once(index.as_str())
                .chain(custom.iter().map(String::as_str))
                .chain(result_cells(r).iter().map(String::as_str)),
        )?;
    }
    w.flush()?;
    Ok(())
}
