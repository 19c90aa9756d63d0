//! Read models for sign-in and keys. Each handles `AccountErased` itself by deleting the
//! subject's rows, so a rebuild after an erasure ends where live catch-up ended.

use crate::events::StoredEvent;
use crate::runner::Projection;
use anyhow::{Context, Result};
use async_trait::async_trait;
use cqrs_es::Aggregate;
use journey_domain::account::{Account, AccountEvent};
use journey_domain::api_key::{ApiKey, ApiKeyEvent};
use journey_domain::session::{Session, SessionEvent};
use sqlx::AnyConnection;
use std::sync::Arc;

/// Every projection of this crate, in the order the runner feeds them.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(Accounts),
        Arc::new(Sessions),
        Arc::new(ApiKeys),
        Arc::new(crate::billing_models::Billing),
        Arc::new(crate::billing_models::CreditEntries),
        Arc::new(crate::staff_models::SubjectStreams),
        Arc::new(crate::staff_models::Staff),
        Arc::new(crate::staff_models::ConsentGates),
        Arc::new(crate::staff_models::Requests),
        Arc::new(crate::task_models::Tasks),
        Arc::new(crate::task_models::Usage),
    ]
}

/// The account id an `AccountErased` event erases, if this is one.
pub(crate) fn erased_account(e: &StoredEvent) -> Option<&str> {
    (e.aggregate_type == Account::TYPE && e.event_type == "AccountErased")
        .then_some(e.aggregate_id.as_str())
}

/// `($1, $2, …), ($k+1, …), …`: the placeholders of a multi-row `VALUES` list of `rows`
/// rows of `cols` values each (the set-based projections' inserts).
pub(crate) fn row_placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let row = (1..=cols)
                .map(|c| format!("${}", r * cols + c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({row})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn ms(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// `rm_accounts`: one row per open account (no personal data: ids, dates, flags).
pub struct Accounts;

#[async_trait]
impl Projection for Accounts {
    fn name(&self) -> &'static str {
        "accounts"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_accounts"]
    }
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        for e in events {
            self.apply_one(conn, e).await.with_context(|| e.what())?;
        }
        Ok(())
    }
}

impl Accounts {
    async fn apply_one(&self, conn: &mut AnyConnection, e: &StoredEvent) -> Result<()> {
        if e.aggregate_type != Account::TYPE {
            return Ok(());
        }
        let id = e.aggregate_id.as_str();
        let Some(event) = e.decode_known::<AccountEvent>()? else {
            return Ok(());
        };
        match event {
            AccountEvent::AccountRegistered { at, .. } => {
                sqlx::query(
                    "INSERT INTO rm_accounts (account_id, created_at, status, has_google, updated_at)
                     VALUES ($1, $2, 'active', 0, $2) ON CONFLICT (account_id) DO NOTHING",
                )
                .bind(id)
                .bind(ms(at))
                .execute(&mut *conn)
                .await?;
            }
            AccountEvent::GoogleLinked { at, .. } => {
                sqlx::query(
                    "UPDATE rm_accounts SET has_google = 1, updated_at = $1 WHERE account_id = $2",
                )
                .bind(ms(at))
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            AccountEvent::NameCorrected { at, .. } | AccountEvent::EmailChanged { at, .. } => {
                sqlx::query("UPDATE rm_accounts SET updated_at = $1 WHERE account_id = $2")
                    .bind(ms(at))
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
            AccountEvent::DeletionRequested { at, .. } => {
                sqlx::query(
                    "UPDATE rm_accounts SET status = 'pending_deletion', updated_at = $1 WHERE account_id = $2",
                )
                .bind(ms(at))
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            AccountEvent::DeletionCancelled { at, .. } => {
                sqlx::query(
                    "UPDATE rm_accounts SET status = 'active', updated_at = $1 WHERE account_id = $2",
                )
                .bind(ms(at))
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            AccountEvent::ErasureCertified { .. } | AccountEvent::SignUpTermsAccepted { .. } => {}
            AccountEvent::AccountErased { .. } => {
                sqlx::query("DELETE FROM rm_accounts WHERE account_id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
}

/// `rm_sessions`: sessions by account, so erasure and staff can end them all.
pub struct Sessions;

#[async_trait]
impl Projection for Sessions {
    fn name(&self) -> &'static str {
        "sessions"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_sessions"]
    }
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        for e in events {
            self.apply_one(conn, e).await.with_context(|| e.what())?;
        }
        Ok(())
    }
}

impl Sessions {
    async fn apply_one(&self, conn: &mut AnyConnection, e: &StoredEvent) -> Result<()> {
        if let Some(account) = erased_account(e) {
            sqlx::query("DELETE FROM rm_sessions WHERE account_id = $1")
                .bind(account)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
        if e.aggregate_type != Session::TYPE {
            return Ok(());
        }
        let Some(event) = e.decode_known::<SessionEvent>()? else {
            return Ok(());
        };
        match event {
            SessionEvent::SessionStarted {
                account_id,
                method,
                expires_at,
                at,
            } => {
                sqlx::query(
                    "INSERT INTO rm_sessions (session_id, account_id, method, started_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id) DO NOTHING",
                )
                .bind(&e.aggregate_id)
                .bind(account_id.to_string())
                .bind(serde_json::to_value(method)?.as_str().unwrap_or_default().to_string())
                .bind(ms(at))
                .bind(ms(expires_at))
                .execute(&mut *conn)
                .await?;
            }
            SessionEvent::SessionEnded { at, .. } => {
                sqlx::query("UPDATE rm_sessions SET ended_at = $1 WHERE session_id = $2")
                    .bind(ms(at))
                    .bind(&e.aggregate_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
}

/// `rm_api_keys`: key metadata and the HMAC used to authenticate API clients.
pub struct ApiKeys;

#[async_trait]
impl Projection for ApiKeys {
    fn name(&self) -> &'static str {
        "api_keys"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_api_keys"]
    }
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        for e in events {
            self.apply_one(conn, e).await.with_context(|| e.what())?;
        }
        Ok(())
    }
}

impl ApiKeys {
    async fn apply_one(&self, conn: &mut AnyConnection, e: &StoredEvent) -> Result<()> {
        if let Some(account) = erased_account(e) {
            sqlx::query("DELETE FROM rm_api_keys WHERE account_id = $1")
                .bind(account)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
        if e.aggregate_type != ApiKey::TYPE {
            return Ok(());
        }
        let Some(event) = e.decode_known::<ApiKeyEvent>()? else {
            return Ok(());
        };
        match event {
            ApiKeyEvent::ApiKeyCreated {
                account_id,
                name,
                key_hash,
                prefix,
                last4,
                at,
            } => {
                sqlx::query(
                    "INSERT INTO rm_api_keys (key_id, account_id, name, key_hash, prefix, last4, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key_id) DO NOTHING",
                )
                .bind(&e.aggregate_id)
                .bind(account_id.to_string())
                // The sealed envelope as JSON: opened only when the holder lists their keys.
                .bind(serde_json::to_string(&name)?)
                .bind(key_hash)
                .bind(prefix)
                .bind(last4)
                .bind(ms(at))
                .execute(&mut *conn)
                .await?;
            }
            ApiKeyEvent::ApiKeyUsed { at } => {
                sqlx::query("UPDATE rm_api_keys SET last_used_at = $1 WHERE key_id = $2")
                    .bind(ms(at))
                    .bind(&e.aggregate_id)
                    .execute(&mut *conn)
                    .await?;
            }
            ApiKeyEvent::ApiKeyRevoked { at } => {
                sqlx::query("UPDATE rm_api_keys SET revoked_at = $1 WHERE key_id = $2")
                    .bind(ms(at))
                    .bind(&e.aggregate_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
}
