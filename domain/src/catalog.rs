//! What can be bought: subscription plans and one-time credit packs. Loaded from one
//! configuration file (`config/catalog.toml` is the default); accounts without an active
//! plan are on `free`.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const FREE_PLAN: &str = "free";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub name: String,
    pub monthly_price_cents: u64,
    pub monthly_credits: u64,
    /// Days after a period's grant at which its unused credits expire; absent = never.
    #[serde(default)]
    pub credits_expire_after_days: Option<u32>,
    /// The Stripe recurring Price for this plan (used at checkout and to recognise the
    /// plan on subscription events).
    pub stripe_price_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pack {
    pub name: String,
    pub credits: u64,
    pub price_cents: u64,
    /// Days after purchase at which unused pack credits expire; absent = never.
    #[serde(default)]
    pub credits_expire_after_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// ISO currency code, lower case, as Stripe spells it.
    pub currency: String,
    pub plans: BTreeMap<String, Plan>,
    pub packs: BTreeMap<String, Pack>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CatalogError {
    #[error("catalog: {0}")]
    Invalid(String),
}

impl Catalog {
    pub fn validate(&self) -> Result<(), CatalogError> {
        let bad = |m: String| Err(CatalogError::Invalid(m));
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return bad(format!(
                "currency must be a lower-case ISO code, got {:?}",
                self.currency
            ));
        }
        if self.plans.contains_key(FREE_PLAN) {
            return bad("`free` is implicit and cannot be configured".into());
        }
        for (id, p) in &self.plans {
            if p.monthly_credits == 0 || p.monthly_price_cents == 0 {
                return bad(format!("plan {id}: price and credits must be positive"));
            }
            if p.stripe_price_id.trim().is_empty() {
                return bad(format!("plan {id}: stripe_price_id is required"));
            }
        }
        for (id, p) in &self.packs {
            if p.credits == 0 || p.price_cents == 0 {
                return bad(format!("pack {id}: price and credits must be positive"));
            }
        }
        Ok(())
    }

    /// The plan whose Stripe price this is.
    pub fn plan_for_price(&self, price_id: &str) -> Option<&str> {
        self.plans
            .iter()
            .find(|(_, p)| p.stripe_price_id == price_id)
            .map(|(id, _)| id.as_str())
    }
}

/// When credits granted at `at` under an `after_days` policy expire.
pub fn expiry(at: DateTime<Utc>, after_days: Option<u32>) -> Option<DateTime<Utc>> {
    after_days.map(|d| at + Duration::days(i64::from(d)))
}
