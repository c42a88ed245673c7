//! Which column of a CRM export is which contact field: a table of the names CRMs give each
//! field (HubSpot, Salesforce, Pipedrive, Apollo, spreadsheets), compared by letters and digits
//! only, so "LinkedIn URL", "linkedin_url" and "LINKEDIN-URL" are one name. `--map` wins over
//! the table; every column that names no field the operation reads is kept aside (it stays on
//! this machine and is joined back onto its row in the results), unless `--keep` sends it.

use relay_shared::jobs::Operation;
use relay_shared::validate::{derivable_fields, operation_fields};

/// A header (or a field name) as the mapping compares them: letters and digits only, lower case,
/// so "Full Name", "full_name" and "FULLNAME" all name `fullname`, and "E-mail" `email`.
/// Letters beyond ASCII count too (lower-cased), so "Prénom" stays itself.
pub fn normalize(header: &str) -> String {
    header
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The contact fields and the headers that name them, best first (as [`normalize`]d). `domain`
/// stands for the operation's company domain field (`domain` for FullEnrich, `company_domain`
/// for Enrow).
pub const SYNONYMS: &[(&str, &[&str])] = &[
    (
        "email",
        &[
            "email",
            "emailaddress",
            "workemail",
            "businessemail",
            "mail",
            "primaryemail",
            "contactemail",
        ],
    ),
    (
        "first_name",
        &["firstname", "first", "givenname", "forename", "fname"],
    ),
    (
        "last_name",
        &["lastname", "last", "surname", "familyname", "lname"],
    ),
    (
        "fullname",
        &["fullname", "name", "contactname", "personname", "leadname"],
    ),
    (
        "company_name",
        &[
            "companyname",
            "company",
            "accountname",
            "account",
            "organization",
            "organisation",
            "organizationname",
            "employer",
        ],
    ),
    (
        "domain",
        &[
            "domain",
            "companydomain",
            "website",
            "companywebsite",
            "websiteurl",
            "companywebsiteurl",
            "companyurl",
            "url",
            "web",
            "site",
            "homepage",
        ],
    ),
    (
        "linkedin_url",
        &[
            "linkedinurl",
            "linkedin",
            "personlinkedinurl",
            "linkedinprofile",
            "linkedinprofileurl",
            "linkedinpersonurl",
            "linkedinprofilelink",
        ],
    ),
];

/// The field a header names by [`SYNONYMS`], for `op`, and how good a name it is (0 best).
pub fn synonym_field(op: Operation, header: &str) -> Option<(&'static str, usize)> {
    let n = normalize(header);
    let readable = readable_fields(op);
    SYNONYMS.iter().find_map(|(concept, names)| {
        let rank = names.iter().position(|s| *s == n)?;
        let field = concept_field(op, concept);
        readable.contains(&field).then_some((field, rank))
    })
}

/// The field a concept of [`SYNONYMS`] is for `op` (`domain` is the operation's domain field).
fn concept_field(op: Operation, concept: &'static str) -> &'static str {
    match (concept, op) {
        ("domain", Operation::EmailFind | Operation::PhoneFind) => "company_domain",
        _ => concept,
    }
}

/// Every field `op` takes from a row: its own and those it derives its own from.
pub fn readable_fields(op: Operation) -> Vec<&'static str> {
    operation_fields(op)
        .iter()
        .chain(derivable_fields(op))
        .copied()
        .collect()
}

/// What one column is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A contact field, sent to the provider.
    Field(&'static str),
    /// Kept on this machine, joined back onto its row in the results.
    Aside,
}

/// The mapping of a file's columns for one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub op: Operation,
    pub targets: Vec<Target>,
    /// Columns also sent as `custom` (`--keep`), by position.
    pub keep: Vec<usize>,
    /// Columns that name a field another column already gives (kept aside), by position, with
    /// that field.
    pub shadowed: Vec<(usize, &'static str)>,
}

impl Mapping {
    /// Maps `headers` for `op`: `--map HEADER=FIELD` first, then [`SYNONYMS`] (for each field, the
    /// best-named column; the leftmost of equals). `Err` names each bad `--map` or `--keep`.
    pub fn new(
        op: Operation,
        headers: &[String],
        maps: &[(String, String)],
        keeps: &[String],
    ) -> Result<Mapping, Vec<String>> {
        let readable = readable_fields(op);
        let mut errors = Vec::new();
        let mut targets = vec![Target::Aside; headers.len()];
        let find = |h: &str| {
            let n = normalize(h);
            headers.iter().position(|x| normalize(x) == n)
        };
        for (h, f) in maps {
            let Some(field) = readable.iter().find(|r| **r == f.as_str()) else {
                errors.push(format!(
                    "--map {h}={f}: {f} is no field of {}: its fields are {}",
                    op.as_str(),
                    readable.join(", ")
                ));
                continue;
            };
            match find(h) {
                None => errors.push(format!("--map {h}={f}: the file has no column {h:?}")),
                Some(i) if targets.contains(&Target::Field(field)) => errors.push(format!(
                    "--map {h}={f}: another --map already gives {f} (column {:?})",
                    headers[i]
                )),
                Some(i) => targets[i] = Target::Field(field),
            }
        }
        let mut shadowed = Vec::new();
        // Each field still free takes its best-named column.
        let mut best: Vec<(&'static str, usize, usize)> = Vec::new(); // field, rank, column
        for (i, h) in headers.iter().enumerate() {
            if targets[i] != Target::Aside || maps.iter().any(|(m, _)| normalize(m) == normalize(h))
            {
                continue;
            }
            let Some((field, rank)) = synonym_field(op, h) else {
                continue;
            };
            if targets.contains(&Target::Field(field)) {
                shadowed.push((i, field));
                continue;
            }
            match best.iter_mut().find(|(f, _, _)| *f == field) {
                Some(b) if rank < b.1 => {
                    shadowed.push((b.2, field));
                    *b = (field, rank, i);
                }
                Some(_) => shadowed.push((i, field)),
                None => best.push((field, rank, i)),
            }
        }
        for (field, _, i) in best {
            targets[i] = Target::Field(field);
        }
        shadowed.sort();
        let mut keep = Vec::new();
        for k in keeps {
            match find(k) {
                Some(i) => keep.push(i),
                None => errors.push(format!("--keep {k}: the file has no column {k:?}")),
            }
        }
        if errors.is_empty() {
            Ok(Mapping {
                op,
                targets,
                keep,
                shadowed,
            })
        } else {
            Err(errors)
        }
    }

    pub fn field_of(&self, column: usize) -> Option<&'static str> {
        match self.targets.get(column) {
            Some(Target::Field(f)) => Some(f),
            _ => None,
        }
    }

    fn has(&self, field: &str) -> bool {
        self.targets
            .iter()
            .any(|t| matches!(t, Target::Field(f) if *f == field))
    }

    /// What each operation field is made from when no column gives it (said before sending).
    pub fn derivations(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.op {
            Operation::EmailFind => {
                if !self.has("fullname") && self.has("first_name") && self.has("last_name") {
                    out.push("fullname: first_name + last_name".to_string());
                }
                if !self.has("company_domain") && self.has("domain") {
                    out.push("company_domain: domain".to_string());
                }
            }
            Operation::Enrich | Operation::PhoneFind => {
                if self.has("fullname") {
                    out.push(
                        "first_name + last_name: split from fullname (first word, then the rest) on rows that have neither"
                            .to_string(),
                    );
                }
            }
            Operation::EmailVerify | Operation::ReverseEmail => {}
        }
        out
    }

    /// The mapping as the CLI prints it before anything is sent: column → field, the columns
    /// kept aside, what is derived.
    pub fn describe(&self, headers: &[String]) -> String {
        let width = headers
            .iter()
            .enumerate()
            .filter(|(i, _)| self.field_of(*i).is_some())
            .map(|(_, h)| h.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = format!("columns → {} fields:\n", self.op.as_str());
        for (i, h) in headers.iter().enumerate() {
            if let Some(f) = self.field_of(i) {
                let pad = width.saturating_sub(h.chars().count());
                out.push_str(&format!("  {h}{} → {f}\n", " ".repeat(pad)));
            }
        }
        if self.targets.iter().all(|t| *t == Target::Aside) {
            out.push_str("  (none: name the columns with --map \"Column=field\")\n");
        }
        for d in self.derivations() {
            out.push_str(&format!("  derived: {d}\n"));
        }
        let aside: Vec<String> = headers
            .iter()
            .enumerate()
            .filter(|(i, _)| self.field_of(*i).is_none())
            .map(|(i, h)| {
                let mut s = format!("{h:?}");
                if let Some((_, f)) = self.shadowed.iter().find(|(c, _)| *c == i) {
                    s.push_str(&format!(" (also {f}; --map to use it instead)"));
                }
                if self.keep.contains(&i) {
                    s.push_str(" (sent as custom: --keep)");
                }
                s
            })
            .collect();
        if !aside.is_empty() {
            out.push_str(&format!(
                "kept aside (not sent; joined back onto their rows in the results): {}\n",
                aside.join(", ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(h: &str) -> Vec<String> {
        h.split(',').map(str::to_string).collect()
    }

    #[test]
    fn crm_export_headers_find_their_fields_whatever_the_case_spacing_or_punctuation() {
        for (op, header, field) in [
            (Operation::Enrich, "Company", "company_name"),
            (Operation::Enrich, "Company Name", "company_name"),
            (Operation::Enrich, "Account Name", "company_name"),
            (Operation::Enrich, "Website", "domain"),
            (Operation::Enrich, "Company Website", "domain"),
            (Operation::Enrich, "Company Domain", "domain"),
            (Operation::Enrich, "company_domain", "domain"),
            (Operation::Enrich, "Domain", "domain"),
            (Operation::Enrich, "URL", "domain"),
            (Operation::EmailFind, "Website", "company_domain"),
            (Operation::EmailFind, "Company Domain", "company_domain"),
            (Operation::Enrich, "LinkedIn", "linkedin_url"),
            (Operation::Enrich, "LinkedIn URL", "linkedin_url"),
            (Operation::Enrich, "Person Linkedin Url", "linkedin_url"),
            (Operation::Enrich, "LINKEDIN-URL", "linkedin_url"),
            (Operation::Enrich, "Full Name", "fullname"),
            (Operation::EmailFind, "Name", "fullname"),
            (Operation::EmailFind, "First Name", "first_name"),
            (Operation::EmailFind, " last_name ", "last_name"),
            (Operation::EmailVerify, "E-mail", "email"),
            (Operation::EmailVerify, "Email Address", "email"),
            (Operation::ReverseEmail, "Work Email", "email"),
        ] {
            assert_eq!(
                synonym_field(op, header).map(|(f, _)| f),
                Some(field),
                "{header} for {op}"
            );
        }
        // A field the operation does not read is no field of it.
        assert_eq!(synonym_field(Operation::EmailFind, "LinkedIn URL"), None);
        assert_eq!(synonym_field(Operation::Enrich, "Email"), None);
        assert_eq!(synonym_field(Operation::Enrich, "Job Title"), None);
    }

    #[test]
    fn the_best_named_column_wins_map_wins_over_all_and_the_rest_is_kept_aside() {
        let h = headers("First Name,Last Name,Website,Company Domain,Company,Owner,Record ID");
        let m = Mapping::new(Operation::Enrich, &h, &[], &[]).unwrap();
        assert_eq!(
            m.field_of(2),
            None,
            "Company Domain names domain better than Website"
        );
        assert_eq!(m.field_of(3), Some("domain"));
        assert_eq!(m.field_of(4), Some("company_name"));
        assert_eq!(m.shadowed, vec![(2, "domain")]);
        let text = m.describe(&h);
        assert!(text.contains("Company Domain → domain"), "{text}");
        assert!(text.contains("\"Website\" (also domain; --map"), "{text}");
        assert!(text.contains("\"Owner\", \"Record ID\""), "{text}");

        let maps = [("website".to_string(), "domain".to_string())];
        let m = Mapping::new(Operation::Enrich, &h, &maps, &["Record ID".into()]).unwrap();
        assert_eq!((m.field_of(2), m.field_of(3)), (Some("domain"), None));
        assert_eq!(m.keep, vec![6]);

        let bad = [("Owner".to_string(), "phone".to_string())];
        let e = Mapping::new(Operation::Enrich, &h, &bad, &["Nope".into()]).unwrap_err();
        assert!(e[0].contains("phone is no field of enrich"), "{e:?}");
        assert!(e[1].contains("no column \"Nope\""), "{e:?}");

        // Enrow email_find: fullname is made from first + last, and says so.
        let m = Mapping::new(Operation::EmailFind, &h, &[], &[]).unwrap();
        assert_eq!(
            (m.field_of(0), m.field_of(1)),
            (Some("first_name"), Some("last_name"))
        );
        assert!(
            m.describe(&h)
                .contains("derived: fullname: first_name + last_name")
        );
        let m = Mapping::new(Operation::Enrich, &headers("Name,Company"), &[], &[]).unwrap();
        assert!(
            m.describe(&headers("Name,Company"))
                .contains("split from fullname")
        );
    }
}
