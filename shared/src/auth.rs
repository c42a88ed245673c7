//! Who may get in: per-job webhook tokens, FullEnrich `X-Signature-SHA1`, the jobs API bearer token.
//!
//! Every comparison of a secret is constant-time: `hmac`'s `verify_slice` for MACs, `subtle` for
//! the bearer token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Provider;

type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<Sha1>;

/// The key behind every webhook URL token (`WEBHOOK_SECRET`), and during a rotation the previous
/// one (`WEBHOOK_SECRET_PREVIOUS`): new URLs are signed with the current key, and URLs handed out
/// under the previous one keep working. Debug never prints either.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>, Option<Vec<u8>>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        WebhookSecret(secret.into(), None)
    }

    /// The same secret, also accepting tokens made under `previous` (a rotation in progress).
    pub fn with_previous(mut self, previous: Option<impl Into<Vec<u8>>>) -> Self {
        self.1 = previous.map(Into::into).filter(|p: &Vec<u8>| !p.is_empty());
        self
    }

    fn mac(&self, provider: Provider, job_id: &str) -> HmacSha256 {
        Self::mac_with(&self.0, provider, job_id)
    }

    fn mac_with(key: &[u8], provider: Provider, job_id: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        // Domain-separated and length-unambiguous: version, provider, job.
        mac.update(b"enrich-relay/webhook/v1\0");
        mac.update(provider.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(job_id.as_bytes());
        mac
    }

    /// The token for one job's webhook URLs: HMAC-SHA256 over (provider, job id), base64url.
    pub fn token(&self, provider: Provider, job_id: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(provider, job_id).finalize().into_bytes())
    }

    /// True only for the token of exactly this provider and job, under the current key or the
    /// previous one; constant-time per key.
    pub fn verify(&self, provider: Provider, job_id: &str, token: &str) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(token.as_bytes()) else {
            return false;
        };
        std::iter::once(&self.0).chain(self.1.as_ref()).any(|key| {
            Self::mac_with(key, provider, job_id)
                .verify_slice(&given)
                .is_ok()
        })
    }
}

impl WebhookSecret {
    fn global_mac(key: &[u8], provider: Provider) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        // Its own domain: no job's token is ever a global token, nor the reverse.
        mac.update(b"enrich-relay/webhook-global/v1\0");
        mac.update(provider.as_str().as_bytes());
        mac
    }

    /// The token of the deployment's one global webhook URL for `provider` (Enrow's dashboard
    /// webhook, which needs no job in its URL): HMAC-SHA256 over the provider, base64url.
    pub fn global_token(&self, provider: Provider) -> String {
        URL_SAFE_NO_PAD.encode(Self::global_mac(&self.0, provider).finalize().into_bytes())
    }

    /// True only for the global token of this provider, under the current key or the previous
    /// one; constant-time per key.
    pub fn verify_global(&self, provider: Provider, token: &str) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(token.as_bytes()) else {
            return false;
        };
        std::iter::once(&self.0)
            .chain(self.1.as_ref())
            .any(|key| Self::global_mac(key, provider).verify_slice(&given).is_ok())
    }
}

/// The path of the global webhook of `provider` (Enrow's dashboard webhook), under the public
/// base URL: `/webhooks/enrow/global/{token}`.
pub fn global_webhook_path(secret: &WebhookSecret, provider: Provider) -> String {
    format!(
        "/webhooks/{}/global/{}",
        provider.as_str(),
        secret.global_token(provider)
    )
}

/// Outcome of checking FullEnrich's `X-Signature-SHA1` (providers.md §2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// The header matched an HMAC-SHA1 of the raw body under one of the keys.
    Valid,
    /// No header was sent.
    Absent,
    /// A header was sent and matched no key (or was not 40 hex digits).
    Invalid,
}

/// Checks `X-Signature-SHA1`: lowercase (or uppercase) hex of HMAC-SHA1(api key, raw body).
/// `keys` are tried in order (current, then previous during a rotation); constant-time per key.
pub fn check_fullenrich_signature(
    keys: &[impl AsRef<[u8]>],
    body: &[u8],
    header: Option<&str>,
) -> SignatureCheck {
    let Some(header) = header else {
        return SignatureCheck::Absent;
    };
    let header = header.trim();
    let header = header.strip_prefix("sha1=").unwrap_or(header);
    let Ok(given) = hex::decode(header) else {
        return SignatureCheck::Invalid;
    };
    if given.len() != 20 {
        return SignatureCheck::Invalid;
    }
    for key in keys {
        let Ok(mut mac) = HmacSha1::new_from_slice(key.as_ref()) else {
            continue;
        };
        mac.update(body);
        if mac.verify_slice(&given).is_ok() {
            return SignatureCheck::Valid;
        }
    }
    SignatureCheck::Invalid
}

/// The signature FullEnrich sends for `body` under `key` (used by the sandbox and tests).
pub fn fullenrich_signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The jobs API token (`RELAY_API_TOKEN`). Compared through SHA-256 digests so neither the
/// content nor the length of the expected token leaks through timing.
#[derive(Clone)]
pub struct BearerToken([u8; 32]);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    pub fn new(token: &str) -> Self {
        BearerToken(Sha256::digest(token.as_bytes()).into())
    }

    /// Checks an `Authorization` header value: `Bearer <token>` (scheme case-insensitive).
    pub fn verify_header(&self, header: Option<&str>) -> bool {
        let Some((scheme, token)) = header.and_then(|h| h.trim().split_once(' ')) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let given: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        given.ct_eq(&self.0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_opens_only_its_own_job_and_provider() {
        let secret = WebhookSecret::new("s3cret");
        let t = secret.token(Provider::Enrow, "job_1");
        assert!(secret.verify(Provider::Enrow, "job_1", &t));
        assert!(!secret.verify(Provider::Enrow, "job_2", &t));
        assert!(!secret.verify(Provider::Fullenrich, "job_1", &t));
        assert!(!WebhookSecret::new("other").verify(Provider::Enrow, "job_1", &t));
        assert!(!secret.verify(Provider::Enrow, "job_1", ""));
        assert!(!secret.verify(Provider::Enrow, "job_1", "not base64 !"));
        // A truncated token is not accepted.
        assert!(!secret.verify(Provider::Enrow, "job_1", &t[..t.len() - 2]));
    }

    #[test]
    fn a_rotated_secret_keeps_old_urls_working_and_signs_new_ones_with_the_new_key() {
        let old = WebhookSecret::new("old-secret");
        let old_token = old.token(Provider::Fullenrich, "job_1");
        let rotated = WebhookSecret::new("new-secret").with_previous(Some("old-secret"));
        assert!(rotated.verify(Provider::Fullenrich, "job_1", &old_token));
        let new_token = rotated.token(Provider::Fullenrich, "job_1");
        assert_ne!(new_token, old_token);
        assert!(rotated.verify(Provider::Fullenrich, "job_1", &new_token));
        assert!(!old.verify(Provider::Fullenrich, "job_1", &new_token));
        // Still scoped: the old key's token for one job opens no other job.
        assert!(!rotated.verify(Provider::Fullenrich, "job_2", &old_token));
        // Once the rotation ends (no previous), old URLs stop working.
        let done = WebhookSecret::new("new-secret").with_previous(None::<String>);
        assert!(!done.verify(Provider::Fullenrich, "job_1", &old_token));
        assert_eq!(format!("{rotated:?}"), "WebhookSecret(..)");
    }

    #[test]
    fn the_global_token_opens_only_the_global_route_of_its_provider() {
        let secret = WebhookSecret::new("s3cret");
        let g = secret.global_token(Provider::Enrow);
        assert!(secret.verify_global(Provider::Enrow, &g));
        assert!(!secret.verify_global(Provider::Fullenrich, &g));
        assert!(!WebhookSecret::new("other").verify_global(Provider::Enrow, &g));
        assert!(!secret.verify_global(Provider::Enrow, &g[..g.len() - 2]));
        assert!(!secret.verify_global(Provider::Enrow, ""));
        // Domain-separated from the per-job tokens, both ways, whatever the job id.
        assert!(!secret.verify(Provider::Enrow, "enrow", &g));
        assert!(!secret.verify(Provider::Enrow, "", &g));
        assert!(!secret.verify_global(Provider::Enrow, &secret.token(Provider::Enrow, "")));
        // A rotation keeps the old global URL working until it ends.
        let rotated = WebhookSecret::new("new").with_previous(Some("s3cret"));
        assert!(rotated.verify_global(Provider::Enrow, &g));
        assert_eq!(
            global_webhook_path(&secret, Provider::Enrow),
            format!("/webhooks/enrow/global/{g}")
        );
    }

    #[test]
    fn fullenrich_signature_matches_python_hexdigest() {
        // hmac.new(b"key", b"The quick brown fox jumps over the lazy dog", sha1).hexdigest()
        let sig = fullenrich_signature(b"key", b"The quick brown fox jumps over the lazy dog");
        assert_eq!(sig, "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9");
        let keys = ["key"];
        let body = b"The quick brown fox jumps over the lazy dog";
        assert_eq!(
            check_fullenrich_signature(&keys, body, Some(&sig)),
            SignatureCheck::Valid
        );
        assert_eq!(
            check_fullenrich_signature(&keys, body, Some(&sig.to_uppercase())),
            SignatureCheck::Valid
        );
        assert_eq!(
            check_fullenrich_signature(&keys, b"tampered", Some(&sig)),
            SignatureCheck::Invalid
        );
        assert_eq!(
            check_fullenrich_signature(&keys, body, Some("zz")),
            SignatureCheck::Invalid
        );
        assert_eq!(
            check_fullenrich_signature(&keys, body, None),
            SignatureCheck::Absent
        );
        // Rotation: the previous key still verifies.
        assert_eq!(
            check_fullenrich_signature(&["new", "key"], body, Some(&sig)),
            SignatureCheck::Valid
        );
    }

    #[test]
    fn bearer_token() {
        let t = BearerToken::new("dev-token");
        assert!(t.verify_header(Some("Bearer dev-token")));
        assert!(t.verify_header(Some("bearer dev-token")));
        assert!(!t.verify_header(Some("Bearer dev-token2")));
        assert!(!t.verify_header(Some("Basic dev-token")));
        assert!(!t.verify_header(Some("dev-token")));
        assert!(!t.verify_header(None));
    }
}
