//! Write-side lookup from Stripe object ids (customers, subscriptions, payment intents,
//! invoices) to our account ids, so that webhooks which do not carry our account id can
//! be routed. Stripe ids are pseudonymous and the table holds nothing else; rows are kept
//! with the billing records they explain.

use crate::db::Db;
use anyhow::Result;
use sqlx::Row;
use uuid::Uuid;

#[derive(Clone)]
pub struct BillingRefs {
    db: Db,
}

impl BillingRefs {
    pub fn new(db: Db) -> Self {
        BillingRefs { db }
    }

    /// Records that `stripe_id` belongs to `account_id`; the first owner wins.
    pub async fn link(&self, stripe_id: &str, account_id: Uuid, at_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO billing_refs (stripe_id, account_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (stripe_id) DO NOTHING",
        )
        .bind(stripe_id)
        .bind(account_id.to_string())
        .bind(at_ms)
        .execute(&self.db.any)
        .await?;
        Ok(())
    }

    pub async fn find(&self, stripe_id: &str) -> Result<Option<Uuid>> {
        let row = sqlx::query("SELECT account_id FROM billing_refs WHERE stripe_id = $1")
            .bind(stripe_id)
            .fetch_optional(&self.db.any)
            .await?;
        Ok(match row {
            Some(r) => Some(Uuid::parse_str(&r.try_get::<String, _>(0)?)?),
            None => None,
        })
    }
}
