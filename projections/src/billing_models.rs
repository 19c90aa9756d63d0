//! Read models for billing and credits. Like the identity read models, each deletes the
//! subject's rows on `AccountErased`; the events themselves (sealed under billing keys)
//! are what the law makes us keep.

use crate::events::StoredEvent;
use crate::runner::Projection;
use anyhow::{Context, Result};
use async_trait::async_trait;
use cqrs_es::Aggregate;
use journey_domain::billing::{BillingAccount, BillingEvent};
use journey_domain::credits::{CreditEvent, CreditLedger};
use sqlx::{AnyConnection, Row};

use crate::read_models::ms;

async fn forget(conn: &mut AnyConnection, table: &str, account: &str) -> Result<()> {
    sqlx::query(&format!("DELETE FROM {table} WHERE account_id = $1"))
        .bind(account)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `rm_billing`: customer, plan and suspension per account, for authentication and staff.
pub struct Billing;

#[async_trait]
impl Projection for Billing {
    fn name(&self) -> &'static str {
        "billing"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_billing"]
    }
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        for e in events {
            self.apply_one(conn, e).await.with_context(|| e.what())?;
        }
        Ok(())
    }
}

impl Billing {
    async fn apply_one(&self, conn: &mut AnyConnection, e: &StoredEvent) -> Result<()> {
        if let Some(account) = crate::read_models::erased_account(e) {
            return forget(conn, "rm_billing", account).await;
        }
        if e.aggregate_type != BillingAccount::TYPE {
            return Ok(());
        }
        let Some(event) = e.decode_known::<BillingEvent>()? else {
            return Ok(());
        };
        let id = e.aggregate_id.as_str();
        sqlx::query(
            "INSERT INTO rm_billing (account_id, updated_at) VALUES ($1, $2)
             ON CONFLICT (account_id) DO NOTHING",
        )
        .bind(id)
        .bind(e.committed_at)
        .execute(&mut *conn)
        .await?;
        let at = e.committed_at;
        let q = match event {
            BillingEvent::StripeCustomerLinked { customer_id, .. } => sqlx::query(
                "UPDATE rm_billing SET customer_id = $1, updated_at = $2 WHERE account_id = $3",
            )
            .bind(customer_id),
            BillingEvent::SubscriptionChanged { state, .. } => sqlx::query(
                "UPDATE rm_billing SET plan = $1, status = $2, period_end = $3,
                 cancel_at_period_end = $4, ended = 0, updated_at = $5 WHERE account_id = $6",
            )
            .bind(state.plan)
            .bind(state.status.as_str())
            .bind(state.current_period_end.map(ms))
            .bind(i64::from(state.cancel_at_period_end)),
            BillingEvent::SubscriptionEnded { paid_until, .. } => sqlx::query(
                "UPDATE rm_billing SET status = 'canceled', period_end = $1,
                 cancel_at_period_end = 0, ended = 1, updated_at = $2 WHERE account_id = $3",
            )
            .bind(paid_until.map(ms)),
            BillingEvent::AccountSuspended { .. } => sqlx::query(
                "UPDATE rm_billing SET suspended = 1, updated_at = $1 WHERE account_id = $2",
            ),
            BillingEvent::SuspensionLifted { .. } => sqlx::query(
                "UPDATE rm_billing SET suspended = 0, updated_at = $1 WHERE account_id = $2",
            ),
            BillingEvent::BillingRecorded { .. }
            | BillingEvent::PaymentMethodUpdated { .. }
            | BillingEvent::StripeEventProcessed { .. } => return Ok(()),
        };
        q.bind(at).bind(id).execute(&mut *conn).await?;
        Ok(())
    }
}

/// `rm_credit_entries`: the ledger history shown to the holder, with a running balance.
pub struct CreditEntries;

#[async_trait]
impl Projection for CreditEntries {
    fn name(&self) -> &'static str {
        "credit_entries"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_credit_entries"]
    }
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        for e in events {
            self.apply_one(conn, e).await.with_context(|| e.what())?;
        }
        Ok(())
    }
}

impl CreditEntries {
    async fn apply_one(&self, conn: &mut AnyConnection, e: &StoredEvent) -> Result<()> {
        if let Some(account) = crate::read_models::erased_account(e) {
            return forget(conn, "rm_credit_entries", account).await;
        }
        if e.aggregate_type != CreditLedger::TYPE {
            return Ok(());
        }
        let Some(event) = e.decode_known::<CreditEvent>()? else {
            return Ok(());
        };
        let (kind, task, grant, source, expires, at) = match &event {
            CreditEvent::CreditsGranted {
                grant_id,
                source,
                expires_at,
                at,
                ..
            } => (
                "grant",
                None,
                Some(grant_id),
                Some(source.as_str()),
                *expires_at,
                at,
            ),
            CreditEvent::CreditsReserved { task_id, at, .. } => {
                ("reserve", Some(task_id), None, None, None, at)
            }
            CreditEvent::ReservationCaptured { task_id, at, .. } => {
                ("capture", Some(task_id), None, None, None, at)
            }
            CreditEvent::ReservationReleased { task_id, at, .. } => {
                ("release", Some(task_id), None, None, None, at)
            }
            CreditEvent::CreditsExpired { grant_id, at, .. } => {
                ("expire", None, Some(grant_id), None, None, at)
            }
            CreditEvent::CreditsClawedBack { grant_id, at, .. } => {
                ("claw_back", None, Some(grant_id), None, None, at)
            }
            CreditEvent::PurchaseRefunded { .. } => return Ok(()),
        };
        let id = e.aggregate_id.as_str();
        let previous: i64 = sqlx::query(
            "SELECT balance_after FROM rm_credit_entries WHERE account_id = $1
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get::<i64, _>(0))
        .transpose()?
        .unwrap_or(0);
        let delta = event.delta();
        sqlx::query(
            "INSERT INTO rm_credit_entries
             (account_id, seq, kind, amount, balance_after, task_id, grant_id, source, expires_at, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (account_id, seq) DO NOTHING",
        )
        .bind(id)
        .bind(e.sequence)
        .bind(kind)
        .bind(delta)
        .bind(previous + delta)
        .bind(task.map(|t| t.to_string()))
        .bind(grant.map(|g| g.to_string()))
        .bind(source)
        .bind(expires.map(ms))
        .bind(ms(*at))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
