//! `callback_url`: https, a public host, checked at submit (literals) and again at connect time.

/// The longest `callback_url` taken.
pub const MAX_CALLBACK_URL_CHARS: usize = 2048;

/// Which callback URLs a deployment takes: https to a public host always; plain http to a
/// loopback address only where the operator allows it (the local stack).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallbackPolicy {
    pub allow_loopback: bool,
}

/// A callback URL the relay may POST to: https, a host name or a public address, no
/// credentials. Private, loopback and link-local addresses are refused (the relay runs inside a
/// cloud network; a callback must not reach it), loopback http only under the policy.
pub fn validate_callback_url(u: &str, policy: CallbackPolicy) -> Result<String, String> {
    use std::net::IpAddr;
    if u.chars().count() > MAX_CALLBACK_URL_CHARS {
        return Err(format!(
            "must be at most {MAX_CALLBACK_URL_CHARS} characters"
        ));
    }
    let url = reqwest::Url::parse(u).map_err(|_| "must be an absolute https URL".to_string())?;
    let ip = match url.host() {
        Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        Some(url::Host::Domain(_)) => None,
        None => return Err("must be an absolute https URL".into()),
    };
    // A host name's trailing dot (`localhost.`) names the same host.
    let host = url
        .host_str()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase());
    let loopback = ip.is_some_and(|ip| ip.is_loopback()) || host.as_deref() == Some("localhost");
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials (user:password@)".into());
    }
    if loopback && policy.allow_loopback {
        return if matches!(url.scheme(), "http" | "https") {
            Ok(url.to_string())
        } else {
            Err("must be an http or https URL".into())
        };
    }
    if url.scheme() != "https" {
        return Err("must be an https URL".into());
    }
    let private = loopback
        || host.as_deref().is_some_and(|h| h.ends_with(".localhost"))
        || ip.is_some_and(|ip| !is_public_address(ip));
    if private {
        return Err(
            "must point to a public host (not a private, loopback or link-local address)".into(),
        );
    }
    Ok(url.to_string())
}

/// Whether the relay may call `ip`: not private, loopback, link-local (e.g. `169.254.169.254`),
/// carrier-grade NAT, unspecified, broadcast or documentation. Checked on a callback URL's
/// literal address at submit, and on every address its host name resolves to at connect time
/// ([`crate::callback`]).
pub fn is_public_address(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let private = match ip {
        IpAddr::V4(a) => {
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_documentation()
                // 100.64.0.0/10, carrier-grade NAT
                || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link-local
                || (a.segments()[0] & 0xfe00) == 0xfc00
                || (a.segments()[0] & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped().is_some()
        }
    };
    !private
}
