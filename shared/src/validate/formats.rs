//! The formats a contact field must have (what a provider would refuse for a whole request).

/// One DNS label as the HTML standard's email rule and hostnames take it: 1 to 63 letters, digits
/// and hyphens, not starting or ending with a hyphen.
fn is_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// A domain name a provider can look up: dot-separated labels ([`is_label`]), at least two of
/// them, at most 253 characters, and a top-level label that is not all digits (no IP addresses).
pub fn is_domain(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    s.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| is_label(l))
        && !labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

/// The HTML living standard's "valid email address" (the `input type=email` rule): a local part
/// of letters, digits and ``.!#$%&'*+/=?^_`{|}~-``, an `@`, and dot-separated labels. The relay
/// also wants a dotted domain, as an address on the internet has.
pub fn is_email(s: &str) -> bool {
    const LOCAL: &[u8] = b".!#$%&'*+/=?^_`{|}~-";
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && s.len() <= 254
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || LOCAL.contains(&b))
        && is_domain(domain)
}

/// A LinkedIn profile URL as the providers take it: `http(s)://`, a `linkedin.com` host (`www.`
/// or a country prefix allowed), and a profile path (`/in/<handle>`, `/pub/…`, or Sales
/// Navigator's `/sales/lead/…`, `/sales/people/…`).
pub fn is_linkedin_profile(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_ok = host == "linkedin.com"
        || host.strip_suffix(".linkedin.com").is_some_and(|sub| {
            sub == "www" || (sub.len() <= 3 && sub.bytes().all(|b| b.is_ascii_lowercase()))
        });
    let path = path.split(['?', '#']).next().unwrap_or("");
    let handle = ["in/", "pub/", "sales/lead/", "sales/people/"]
        .iter()
        .find_map(|p| path.strip_prefix(p));
    host_ok
        && handle.is_some_and(|h| !h.trim_end_matches('/').is_empty())
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A string's length as FullEnrich counts it (a JavaScript string's `length`: UTF-16 code units,
/// so an emoji counts 2).
pub fn fullenrich_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// A domain field's value reduced to the registrable domain a provider looks up: a website URL
/// or a host (`https://www.acme.com/about`, `http://soylent.com`, `www.acme.com`, `Acme.COM.`)
/// becomes its registrable domain by the Public Suffix List (`acme.com`; `shop.example.co.uk`
/// becomes `example.co.uk`). `Err` holds the rule when there is no such domain (spaces, an IP
/// address, a bare word, a public suffix alone).
pub fn reduce_domain(value: &str) -> Result<String, &'static str> {
    const RULE: &str = "must be a domain name like example.com (a known suffix), or a website URL such as https://www.example.com/about (sent as example.com); not an IP address, a bare word or a suffix alone";
    let v = value.trim();
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RULE);
    }
    let with_scheme = if v.contains("://") {
        v.to_string()
    } else {
        format!("http://{v}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|_| RULE)?;
    if !matches!(url.scheme(), "http" | "https") || url.password().is_some() {
        return Err(RULE);
    }
    let host = match url.host() {
        Some(url::Host::Domain(h)) => h.trim_end_matches('.').to_ascii_lowercase(),
        _ => return Err(RULE),
    };
    let domain = psl::domain(host.as_bytes()).ok_or(RULE)?;
    // A suffix the list knows (so a typo such as `acme.cmo`, or `www.acme`, is refused), or a
    // top-level domain reserved for examples and tests (RFC 2606: `.example`, `.test`).
    let tld = host.rsplit('.').next().unwrap_or_default();
    if !domain.suffix().is_known() && !matches!(tld, "example" | "test") {
        return Err(RULE);
    }
    let registrable = std::str::from_utf8(domain.as_bytes())
        .map_err(|_| RULE)?
        .to_string();
    if is_domain(&registrable) {
        Ok(registrable)
    } else {
        Err(RULE)
    }
}
