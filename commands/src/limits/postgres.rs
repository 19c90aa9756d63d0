//! The limiter in the Postgres database: one upsert per check on `rate_limits`, an
//! UNLOGGED table (its state is disposable: a crash of the database server empties it,
//! which only refills every budget, and it costs no WAL).
//!
//! The statement computes the GCRA step on the row under its lock, with the database's
//! clock, so concurrent checks from any number of instances serialise on the key's row and
//! each sees the TAT the previous one left. A refused check leaves TAT as it was (it
//! writes only `allowed` and `now_us`, which carry the answer back).

use super::{limited_after, Decision, KeyKind, LimiterBackend, Quota};
use crate::db::{Db, TypedPool};
use anyhow::{bail, Result};
use async_trait::async_trait;
use sqlx::PgPool;

pub struct Postgres {
    pool: PgPool,
}

/// The database's now in microseconds since the epoch.
const NOW_US: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

impl Postgres {
    pub fn new(db: &Db) -> Result<Postgres> {
        match &db.typed {
            TypedPool::Postgres(pool) => Ok(Postgres { pool: pool.clone() }),
            TypedPool::Sqlite(_) => bail!("the Postgres rate limiter needs a Postgres database"),
        }
    }
}

fn check_sql() -> String {
    // $1 bucket, $2 T (interval), $3 n·T (tolerance), all microseconds.
    format!(
        "WITH c AS (SELECT {NOW_US} AS now)
         INSERT INTO rate_limits AS r (bucket, tat_us, now_us, allowed)
         SELECT $1, c.now + $2, c.now, TRUE FROM c
         ON CONFLICT (bucket) DO UPDATE SET
           now_us = EXCLUDED.now_us,
           allowed = GREATEST(r.tat_us, EXCLUDED.now_us) + $2 - EXCLUDED.now_us <= $3,
           tat_us = CASE
             WHEN GREATEST(r.tat_us, EXCLUDED.now_us) + $2 - EXCLUDED.now_us <= $3
             THEN GREATEST(r.tat_us, EXCLUDED.now_us) + $2
             ELSE r.tat_us END
         RETURNING allowed, tat_us, now_us"
    )
}

#[async_trait]
impl LimiterBackend for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn check(&self, kind: KeyKind, quota: Quota, key: &str) -> Result<Decision> {
        let (allowed, tat, now): (bool, i64, i64) = sqlx::query_as(&check_sql())
            .bind(format!("{}:{key}", kind.as_str()))
            .bind(quota.interval_us())
            .bind(quota.tolerance_us())
            .fetch_one(&self.pool)
            .await?;
        Ok(if allowed {
            Decision::Allowed
        } else {
            limited_after(quota, tat, now)
        })
    }

    async fn prune(&self) -> Result<()> {
        // A TAT in the past means a full budget, the same as no row.
        sqlx::query(&format!("DELETE FROM rate_limits WHERE tat_us < {NOW_US}"))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
