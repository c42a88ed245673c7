//! Provider payloads, parsed tolerantly (providers.md §4): every field optional, unknown fields
//! ignored, open enums, ids and indexes as strings, credits as `f64`, raw records kept.

pub mod client;
pub mod enrow;
pub mod fullenrich;
pub mod submit;

/// Which webhook route a delivery came in on. FullEnrich's two webhooks get distinct routes and
/// are never told apart by body (providers.md §2.7); Enrow names its event in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Hook {
    /// FullEnrich `webhook_url`: the whole batch, once it is terminal.
    Batch,
    /// FullEnrich `webhook_events.contact_finished`: one contact.
    Contact,
    /// Enrow `settings.webhook`: every Enrow event.
    Event,
    /// Enrow's dashboard ("global") webhook: every Enrow event of the account, with no job in
    /// its URL; the job is the one a chunk of which knows the event's id.
    Global,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The hooks a provider has, by their URL segment (the global hook's route has no job:
    /// `/webhooks/{provider}/global/{token}`).
    pub fn parse_for(provider: crate::Provider, s: &str) -> Option<Hook> {
        use crate::Provider::*;
        match (provider, s) {
            (Fullenrich, "batch") => Some(Hook::Batch),
            (Fullenrich, "contact") => Some(Hook::Contact),
            (Enrow, "event") => Some(Hook::Event),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
