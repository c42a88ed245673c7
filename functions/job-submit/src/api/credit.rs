//! The credit check of `POST /jobs`: the worst case of the job's first step
//! ([`relay_shared::credits::estimate`]) against its provider account's balance, when this
//! deployment can read it ([`CreditCheck`]). A job whose estimate exceeds the balance is
//! refused (402 `credits_insufficient`, both figures in the body) before anything of it is
//! written or started.
//!
//! A balance is read at most once per [`BALANCE_MAX_AGE`] per account, whatever the number of
//! API instances: the figure is kept in the jobs table ([`BalanceCache`]), and a stale or missing
//! one is read again by the one request that claims the read (a conditional write); the others
//! wait up to [`BALANCE_WAIT`] for its figure, then go unchecked. A FullEnrich read takes a slot
//! of the account's shared schedule first, like every FullEnrich request (60 a minute per
//! account). A balance that cannot be read (no key, an error, a timeout, no slot in reach) lets
//! the job in: the providers' own 402 still stops it later.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use relay_shared::Provider;
use relay_shared::jobs::Operation;
use relay_shared::now_ms;
use relay_shared::queue::Queue;
use relay_shared::store::Slot;
use serde_json::{Value, json};

use super::{Api, ApiStore};
use crate::ApiError;

/// How long a balance read is used before it is read again.
pub const BALANCE_MAX_AGE: Duration = Duration::from_secs(60);
/// How long one balance read may take, its rate slot's wait included.
pub const BALANCE_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request that did not claim a stale balance's read waits for the figure of the
/// request that did.
pub const BALANCE_WAIT: Duration = Duration::from_secs(2);

/// Reads a provider account's balance.
pub trait Balances: Send + Sync + 'static {
    /// The account's balance in credits; `Ok(None)` when this deployment cannot read it (no
    /// key for that provider). An error's text never holds a key.
    fn balance(&self, provider: Provider) -> BoxFuture<'_, Result<Option<f64>, String>>;
}

/// How `POST /jobs` checks credits: who reads the balances, and at what pace.
#[derive(Clone)]
pub struct CreditCheck {
    pub balances: Arc<dyn Balances>,
    /// FullEnrich's shared schedule: one request per this interval (the workers' pace).
    pub fullenrich_interval: Duration,
    pub max_age: Duration,
    pub read_timeout: Duration,
    pub wait: Duration,
}

impl CreditCheck {
    pub fn new(balances: Arc<dyn Balances>, fullenrich_interval: Duration) -> CreditCheck {
        CreditCheck {
            balances,
            fullenrich_interval,
            max_age: BALANCE_MAX_AGE,
            read_timeout: BALANCE_READ_TIMEOUT,
            wait: BALANCE_WAIT,
        }
    }
}

/// A figure in one provider's credits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Credits {
    pub provider: Provider,
    pub credits: f64,
}

impl Credits {
    pub fn json(&self) -> Value {
        json!({"provider": self.provider, "credits": self.credits})
    }
}

/// What a job's first step may cost, and what its account holds (`None`: not known).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affordability {
    pub estimate: Credits,
    pub balance: Option<Credits>,
}

impl Affordability {
    /// Refused: a balance known and below the worst case.
    pub fn refused(&self) -> bool {
        self.balance
            .is_some_and(|b| self.estimate.credits > b.credits)
    }

    /// The 402 of a refused job: both figures, in the error's body.
    pub fn error(&self) -> ApiError {
        let balance = self.balance.map_or(0.0, |b| b.credits);
        ApiError::new(
            402,
            "credits_insufficient",
            format!(
                "this job may cost up to {} {} credits and the account has {balance}; add credits or send fewer contacts",
                self.estimate.credits, self.estimate.provider
            ),
        )
        .field("contacts")
        .with_body("estimate", self.estimate.json())
        .with_body("balance", self.balance_json())
    }

    pub fn balance_json(&self) -> Value {
        self.balance.map_or(Value::Null, |b| b.json())
    }
}

impl<J: ApiStore, Q: Queue> Api<J, Q> {
    /// The worst case of a job's first step (`provider`, `operation`, `options`, `contacts`
    /// contacts) and, when this deployment reads balances, its account's.
    pub(crate) async fn first_step_credits(
        &self,
        provider: Provider,
        operation: Operation,
        options: &Value,
        contacts: u64,
    ) -> Affordability {
        let estimate = Credits {
            provider,
            credits: relay_shared::credits::estimate(operation, options, contacts),
        };
        let balance = match &self.credit_check {
            Some(check) => self.balance(check, provider).await,
            None => None,
        };
        Affordability {
            estimate,
            balance: balance.map(|credits| Credits { provider, credits }),
        }
    }

    /// `Err(402)` when a job's first step may cost more than its account holds.
    pub(crate) async fn afford(
        &self,
        provider: Provider,
        operation: Operation,
        options: &Value,
        contacts: u64,
    ) -> Result<(), ApiError> {
        let a = self
            .first_step_credits(provider, operation, options, contacts)
            .await;
        if a.refused() { Err(a.error()) } else { Ok(()) }
    }

    /// The account's balance: the one read within `max_age`, or a new read if this request
    /// claims it, or the claimer's figure if it comes within `wait`; `None` otherwise.
    async fn balance(&self, check: &CreditCheck, provider: Provider) -> Option<f64> {
        let max_age = check.max_age.as_millis() as u64;
        let cached = self.jobs.cached_balance(provider).await;
        if let Some(figure) = cached
            .as_ref()
            .ok()
            .and_then(|c| c.fresh(now_ms(), max_age))
        {
            return Some(figure);
        }
        match self.jobs.claim_balance_read(provider, max_age).await {
            Ok(true) => self.read_balance(check, provider).await,
            Ok(false) => {
                let until = tokio::time::Instant::now() + check.wait;
                while tokio::time::Instant::now() < until {
                    tokio::time::sleep(check.wait / 8).await;
                    let cached = self.jobs.cached_balance(provider).await;
                    if let Some(f) = cached.ok().and_then(|c| c.fresh(now_ms(), max_age)) {
                        return Some(f);
                    }
                }
                tracing::info!(
                    provider = provider.as_str(),
                    "balance being read elsewhere; not checked"
                );
                None
            }
            Err(e) => {
                tracing::warn!(provider = provider.as_str(), error = %e, "balance not claimed; not checked");
                None
            }
        }
    }

    /// Reads the account's balance (a FullEnrich read in a slot of its schedule), within
    /// `read_timeout`, and keeps it for the other requests.
    async fn read_balance(&self, check: &CreditCheck, provider: Provider) -> Option<f64> {
        let read = async {
            if provider == Provider::Fullenrich {
                let interval = check.fullenrich_interval.as_millis() as u64;
                let max_wait = check.read_timeout.as_millis() as u64;
                match self.jobs.take_slot("fullenrich", interval, max_wait).await {
                    Ok(Slot::At(at)) => {
                        let wait = at.saturating_sub(now_ms());
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    Ok(Slot::Busy { .. }) => return Err("no rate slot in reach".to_string()),
                    Err(e) => return Err(format!("rate slot: {e}")),
                }
            }
            check.balances.balance(provider).await
        };
        let figure = match tokio::time::timeout(check.read_timeout, read).await {
            Ok(Ok(figure)) => figure?,
            Ok(Err(e)) => {
                tracing::warn!(provider = provider.as_str(), error = %e, "balance unreadable; not checked");
                return None;
            }
            Err(_) => {
                tracing::warn!(
                    provider = provider.as_str(),
                    "balance read timed out; not checked"
                );
                return None;
            }
        };
        if let Err(e) = self.jobs.record_balance(provider, figure).await {
            tracing::warn!(provider = provider.as_str(), error = %e, "balance not kept");
        }
        Some(figure)
    }
}
