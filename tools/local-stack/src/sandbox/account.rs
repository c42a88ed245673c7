//! Both accounts' credit balances and the GETs that read them: FullEnrich `GET /account/credits`
//! → `{"balance": N}` (providers.md §2.1), Enrow `GET /account/info` → `{"credits": N,
//! "webhooks": [...]}` (§3.1), each with its provider's auth (401 otherwise) and rate limit
//! (FullEnrich's 60 a minute covers every endpoint; Enrow's GETs are free).
//!
//! A balance goes down by what is spent: FullEnrich pays each hit as its batch runs; Enrow
//! reserves a start's worst case up front (402 when the balance does not cover it) and refunds
//! the misses when the search ends (§3.5).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use relay_shared::Provider;
use serde_json::json;

use super::{Inner, admit_get};

/// What an account with no balance set (`None`: it never runs out) reports before it spends.
pub const UNLIMITED: f64 = 1_000_000.0;

/// One account's credits: what is left (`None`: never runs out) and what it has spent.
#[derive(Debug, Clone, Default)]
pub(super) struct Balance {
    left: Option<f64>,
    spent: f64,
}

impl Balance {
    pub fn new(left: Option<f64>) -> Self {
        Balance { left, spent: 0.0 }
    }

    pub fn set(&mut self, left: Option<f64>) {
        self.left = left;
    }

    /// Takes `cost` when the balance covers it; `false` (and nothing taken) otherwise.
    pub fn take(&mut self, cost: f64) -> bool {
        match &mut self.left {
            Some(left) if *left < cost => return false,
            Some(left) => *left -= cost,
            None => {}
        }
        self.spent += cost;
        true
    }

    /// Gives back credits taken and not used (Enrow's refunds of misses).
    pub fn refund(&mut self, credits: f64) {
        if let Some(left) = &mut self.left {
            *left += credits;
        }
        self.spent -= credits;
    }

    /// The figure the balance GET answers with.
    pub fn reported(&self) -> f64 {
        self.left.unwrap_or(UNLIMITED - self.spent)
    }
}

/// Both accounts.
#[derive(Debug, Clone, Default)]
pub(super) struct Balances {
    pub fullenrich: Balance,
    pub enrow: Balance,
}

impl Balances {
    pub fn of(&mut self, provider: Provider) -> &mut Balance {
        match provider {
            Provider::Fullenrich => &mut self.fullenrich,
            Provider::Enrow => &mut self.enrow,
        }
    }
}

/// `GET /account/credits` (FullEnrich).
pub(super) async fn fullenrich_credits(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let config = inner.config.lock().unwrap().clone();
    if let Err(refused) = admit_get(&inner, &config, true, uri.path(), &headers) {
        return refused;
    }
    inner.counters.balance_gets.fetch_add(1, Ordering::Relaxed);
    let balance = inner.credits.lock().unwrap().fullenrich.reported();
    (StatusCode::OK, json!({ "balance": balance }).to_string()).into_response()
}

/// `GET /account/info` (Enrow): the credits and the dashboard webhook, if one is set.
pub(super) async fn enrow_info(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let config = inner.config.lock().unwrap().clone();
    if let Err(refused) = admit_get(&inner, &config, false, uri.path(), &headers) {
        return refused;
    }
    inner.counters.balance_gets.fetch_add(1, Ordering::Relaxed);
    let credits = inner.credits.lock().unwrap().enrow.reported();
    let body = json!({ "credits": credits, "webhooks": config.enrow_global_webhook.iter().collect::<Vec<_>>() });
    (StatusCode::OK, body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_balance_covers_what_it_can_and_refunds_come_back() {
        let mut b = Balance::new(Some(10.0));
        assert!(b.take(4.0));
        assert!(!b.take(7.0), "not covered: nothing taken");
        assert_eq!(b.reported(), 6.0);
        b.refund(3.0);
        assert_eq!(b.reported(), 9.0);
        let mut unlimited = Balance::new(None);
        assert!(unlimited.take(2.5));
        assert_eq!(unlimited.reported(), UNLIMITED - 2.5, "it still goes down");
        unlimited.refund(0.5);
        assert_eq!(unlimited.reported(), UNLIMITED - 2.0);
    }
}
