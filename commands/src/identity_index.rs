//! Write-side uniqueness guard: at most one account per email and per Google subject.
//! Only HMACs under the server pepper are stored. A claim may point to an account whose
//! first sign-in has not completed yet ("pending"): the account id is allocated when the
//! first magic link is requested, so every link for one address seals under one subject.

use crate::db::Db;
use anyhow::Result;
use sqlx::Row;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    Email,
    Google,
}

impl IdentityKind {
    fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Email => "email",
            IdentityKind::Google => "google",
        }
    }
}

#[derive(Clone)]
pub struct IdentityIndex {
    db: Db,
}

impl IdentityIndex {
    pub fn new(db: Db) -> Self {
        IdentityIndex { db }
    }

    pub async fn find(&self, kind: IdentityKind, hash: &str) -> Result<Option<Uuid>> {
        let row =
            sqlx::query("SELECT account_id FROM identity_index WHERE kind = $1 AND hash = $2")
                .bind(kind.as_str())
                .bind(hash)
                .fetch_optional(&self.db.any)
                .await?;
        Ok(match row {
            Some(r) => Some(Uuid::parse_str(&r.try_get::<String, _>(0)?)?),
            None => None,
        })
    }

    /// Claims `hash` for `account_id` unless already claimed; returns the owner either way.
    pub async fn claim(
        &self,
        kind: IdentityKind,
        hash: &str,
        account_id: Uuid,
        at_ms: i64,
    ) -> Result<Uuid> {
        sqlx::query(
            "INSERT INTO identity_index (kind, hash, account_id, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (kind, hash) DO NOTHING",
        )
        .bind(kind.as_str())
        .bind(hash)
        .bind(account_id.to_string())
        .bind(at_ms)
        .execute(&self.db.any)
        .await?;
        Ok(self.find(kind, hash).await?.unwrap_or(account_id))
    }

    pub async fn release(&self, kind: IdentityKind, hash: &str, account_id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM identity_index WHERE kind = $1 AND hash = $2 AND account_id = $3")
            .bind(kind.as_str())
            .bind(hash)
            .bind(account_id.to_string())
            .execute(&self.db.any)
            .await?;
        Ok(())
    }

    /// Moves a claim from one account to another, only if `from` still holds it.
    pub async fn reassign(
        &self,
        kind: IdentityKind,
        hash: &str,
        from: Uuid,
        to: Uuid,
    ) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE identity_index SET account_id = $1 WHERE kind = $2 AND hash = $3 AND account_id = $4",
        )
        .bind(to.to_string())
        .bind(kind.as_str())
        .bind(hash)
        .bind(from.to_string())
        .execute(&self.db.any)
        .await?
        .rows_affected()
            == 1)
    }

    /// Drops every claim of an account (erasure).
    pub async fn forget_account(&self, account_id: Uuid) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM identity_index WHERE account_id = $1")
                .bind(account_id.to_string())
                .execute(&self.db.any)
                .await?
                .rows_affected(),
        )
    }
}
