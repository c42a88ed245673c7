//! Orphans: events of a provider's global webhook (Enrow's dashboard webhook) for a search no
//! chunk knows, kept [`ORPHAN_RETENTION_DAYS`] days for the user to see (`GET /orphans`), never
//! parked in the DLQ, never fetched; and the look-up that finds a provider id's job when the
//! event's URL names none.
//!
//! Items (jobs table): `pk = ORPHANS`, `sk = <received_at_ms:013>#<delivery_id>`, so one query
//! reads them newest first. A provider id's job comes from the sparse `provider_ids` index over
//! the links (`PID#<id>` items carry `gpid = <id>`; the job's head says whose id it is). An
//! orphan holds what the provider
//! sent: contact data, never logged, shown only through the authenticated API.

use super::DynamoJobStore;
use super::attrs::unavailable;
use super::attrs::{Item, get_n, get_s, n, s};
use super::items::expired;
use crate::Provider;
use crate::ids::{JobId, ProviderId};
use crate::jobs::JobMeta;
use crate::store::Jobs;
use crate::store::{ORPHAN_RETENTION_DAYS, Orphan, OrphanStore, OrphansCursor, StoreError};

pub(super) const ORPHANS_PK: &str = "ORPHANS";

fn orphan_item(o: &Orphan) -> Item {
    let mut item = Item::from([
        ("pk".to_string(), s(ORPHANS_PK)),
        ("sk".to_string(), s(o.sort_key())),
        ("provider".to_string(), s(o.provider.as_str())),
        ("provider_id".to_string(), s(&o.provider_id)),
        ("event".to_string(), s(&o.event)),
        ("received_at".to_string(), n(o.received_at_ms)),
        ("delivery_id".to_string(), s(&o.delivery_id)),
        (
            "expires_at".to_string(),
            n(crate::now_ms() / 1000 + ORPHAN_RETENTION_DAYS * 86_400),
        ),
    ]);
    if let Some(c) = o.credits {
        item.insert("credits".into(), n(c));
    }
    item
}

fn parse_orphan(item: &Item) -> Result<Orphan, StoreError> {
    let text = |k: &str| {
        get_s(item, k)
            .map(str::to_string)
            .ok_or_else(|| StoreError::Data(format!("orphan without {k}")))
    };
    Ok(Orphan {
        provider: text("provider")?
            .parse()
            .map_err(|_| StoreError::Data("orphan of an unknown provider".into()))?,
        provider_id: ProviderId::new(text("provider_id")?),
        event: text("event")?,
        received_at_ms: get_n(item, "received_at").unwrap_or(0),
        delivery_id: text("delivery_id")?,
        credits: get_n(item, "credits"),
    })
}

impl OrphanStore for DynamoJobStore {
    async fn job_of_provider_id(
        &self,
        provider: Provider,
        provider_id: &ProviderId,
    ) -> Result<Option<JobId>, StoreError> {
        let head = self.job_head_of_provider_id(provider, provider_id).await?;
        Ok(head.map(|meta| meta.job_id))
    }

    async fn job_head_of_provider_id(
        &self,
        provider: Provider,
        provider_id: &ProviderId,
    ) -> Result<Option<JobMeta>, StoreError> {
        // Keys only; ids are unique per provider, so a page of a few holds every job that could
        // have it (another provider's equal id at most).
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("provider_ids")
            .key_condition_expression("gpid = :g")
            .expression_attribute_values(":g", s(provider_id))
            .limit(10)
            .send()
            .await
            .map_err(unavailable)?;
        for item in page.items() {
            let Some(job_id) = get_s(item, "pk")
                .and_then(|pk| pk.strip_prefix("JOB#"))
                .map(JobId::new)
            else {
                continue;
            };
            if let Some(meta) = self.job_head(&job_id).await?
                && meta.provider == provider
            {
                return Ok(Some(meta));
            }
        }
        Ok(None)
    }

    async fn put_orphan(&self, orphan: &Orphan) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(orphan_item(orphan)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn list_orphans(
        &self,
        limit: usize,
        cursor: Option<&OrphansCursor>,
    ) -> Result<(Vec<Orphan>, Option<OrphansCursor>), StoreError> {
        let start = cursor.map(|c| {
            Item::from([
                ("pk".to_string(), s(ORPHANS_PK)),
                ("sk".to_string(), s(&c.0)),
            ])
        });
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", s(ORPHANS_PK))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 100) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(unavailable)?;
        let orphans = page
            .items()
            .iter()
            .filter(|i| !expired(i))
            .map(parse_orphan)
            .collect::<Result<_, _>>()?;
        let next = page
            .last_evaluated_key
            .as_ref()
            .and_then(|k| Some(OrphansCursor(get_s(k, "sk")?.to_string())));
        Ok((orphans, next))
    }
}
