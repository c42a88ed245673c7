//! The webhook routes, both ways: [`webhook_urls`] builds the URLs a chunk's start gives its
//! provider (job-submit-worker), and [`parse_route`] reads them back when a delivery comes in
//! (webhook-ingest).
//!
//! ```text
//! POST /webhooks/fullenrich/{job_id}/batch/{token}     FullEnrich webhook_url
//! POST /webhooks/fullenrich/{job_id}/contact/{token}   FullEnrich webhook_events.contact_finished
//! POST /webhooks/enrow/{job_id}/event/{token}          Enrow settings.webhook
//! POST /webhooks/enrow/global/{token}                  Enrow's dashboard (global) webhook
//! ```

use crate::auth::WebhookSecret;
use crate::providers::Hook;
use crate::providers::submit::WebhookUrls;
use crate::{JobId, Provider};

/// The webhook URLs of one job (the token opens only this job's routes).
pub fn webhook_urls(
    base: &str,
    secret: &WebhookSecret,
    provider: Provider,
    job_id: &str,
) -> WebhookUrls {
    let token = secret.token(provider, job_id);
    let url = |hook: &str| {
        format!(
            "{base}/webhooks/{}/{job_id}/{hook}/{token}",
            provider.as_str()
        )
    };
    match provider {
        Provider::Fullenrich => WebhookUrls {
            main: url("batch"),
            contact: Some(url("contact")),
        },
        Provider::Enrow => WebhookUrls {
            main: url("event"),
            contact: None,
        },
    }
}

/// A parsed webhook route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub provider: Provider,
    /// Empty on the global route.
    pub job_id: &'a str,
    pub hook: Hook,
    pub token: Option<&'a str>,
}

/// Parses `…/webhooks/{provider}/{job_id}/{hook}[/{token}]`, and Enrow's global
/// `…/webhooks/enrow/global/{token}`. Anything before `webhooks` (a stage name, a local router
/// prefix) is ignored.
pub fn parse_route(path: &str) -> Option<Route<'_>> {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    segments.by_ref().find(|s| *s == "webhooks")?;
    let provider: Provider = segments.next()?.parse().ok()?;
    let rest: Vec<&str> = segments.collect();
    if let (Provider::Enrow, ["global", token]) = (provider, rest.as_slice()) {
        return Some(Route {
            provider,
            job_id: "",
            hook: Hook::Global,
            token: Some(token),
        });
    }
    let mut segments = rest.into_iter();
    let job_id = segments.next().filter(|j| JobId::is_valid(j))?;
    let hook = Hook::parse_for(provider, segments.next()?)?;
    let token = segments.next();
    if segments.next().is_some() {
        return None;
    }
    Some(Route {
        provider,
        job_id,
        hook,
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = parse_route("/webhooks/fullenrich/job_1/batch/tok").unwrap();
        assert_eq!(r.provider, Provider::Fullenrich);
        assert_eq!(r.job_id, "job_1");
        assert_eq!(r.hook, Hook::Batch);
        assert_eq!(r.token, Some("tok"));
        let r = parse_route("/prod/webhooks/enrow/j/event/t").unwrap();
        assert_eq!((r.provider, r.hook), (Provider::Enrow, Hook::Event));
        assert_eq!(parse_route("/webhooks/enrow/j/event").unwrap().token, None);
        assert!(parse_route("/webhooks/enrow/j/batch/t").is_none());
        assert!(parse_route("/webhooks/other/j/event/t").is_none());
        assert!(parse_route("/webhooks/enrow/j%2F..%2F/event/t").is_none());
        assert!(parse_route("/webhooks/enrow/j/event/t/extra").is_none());
        assert!(parse_route("/jobs/j").is_none());
        let g = parse_route("/prod/webhooks/enrow/global/tok").unwrap();
        assert_eq!(
            (g.provider, g.hook, g.job_id),
            (Provider::Enrow, Hook::Global, "")
        );
        assert_eq!(g.token, Some("tok"));
        assert!(parse_route("/webhooks/fullenrich/global/tok").is_none());
        assert!(parse_route("/webhooks/enrow/global/tok/extra").is_none());
        assert!(parse_route("/webhooks/enrow/global").is_none());
        // A job may still be called `global`: its own route has a hook segment.
        let j = parse_route("/webhooks/enrow/global/event/tok").unwrap();
        assert_eq!((j.job_id, j.hook), ("global", Hook::Event));
    }

    #[test]
    fn the_urls_a_start_gives_parse_back_to_their_job_hook_and_token() {
        let secret = WebhookSecret::new("routes-secret");
        for (provider, hooks) in [
            (Provider::Fullenrich, vec![Hook::Batch, Hook::Contact]),
            (Provider::Enrow, vec![Hook::Event]),
        ] {
            let urls = webhook_urls("https://relay.example/prod", &secret, provider, "job_7");
            let all: Vec<&String> = std::iter::once(&urls.main).chain(&urls.contact).collect();
            assert_eq!(all.len(), hooks.len());
            for (url, hook) in all.into_iter().zip(hooks) {
                let r = parse_route(url).unwrap();
                assert_eq!((r.provider, r.job_id, r.hook), (provider, "job_7", hook));
                assert!(secret.verify(provider, "job_7", r.token.unwrap()));
            }
        }
    }
}
