//! The projection runner. Each projection owns read-model tables and a checkpoint row; a
//! batch of events and the checkpoint move together in one transaction, so every event is
//! applied exactly once across crashes and across several server instances (Postgres
//! serializes runners on the checkpoint row with `FOR UPDATE`; SQLite has one writer).

use crate::events::{count_after, read_after, stream_head, Cursor, StoredEvent};
use anyhow::{Context, Result};
use async_trait::async_trait;
use journey_commands::db::Db;
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name, used for the checkpoint and the CLI.
    fn name(&self) -> &'static str;
    /// Tables this projection owns; a rebuild empties them.
    fn tables(&self) -> &'static [&'static str];
    /// Applies one event inside the batch transaction. Unknown event types must be ignored.
    async fn apply(&self, conn: &mut AnyConnection, event: &StoredEvent) -> Result<()>;
}

#[derive(Debug, Clone, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub cursor: Cursor,
    /// Committed events not yet applied.
    pub lag: i64,
}

pub struct Runner {
    db: Db,
    projections: Vec<Arc<dyn Projection>>,
    wake: Notify,
    progress: watch::Sender<u64>,
    batch_size: i64,
    /// Whether `run` is active in this process; if not, waiters apply events themselves.
    background: AtomicBool,
}

impl Runner {
    pub fn new(db: Db, projections: Vec<Arc<dyn Projection>>) -> Arc<Self> {
        Self::with_batch_size(db, projections, 500)
    }

    /// A runner applying at most `batch_size` events per transaction (tests use small batches).
    pub fn with_batch_size(
        db: Db,
        projections: Vec<Arc<dyn Projection>>,
        batch_size: i64,
    ) -> Arc<Self> {
        Arc::new(Runner {
            db,
            projections,
            wake: Notify::new(),
            progress: watch::channel(0).0,
            batch_size,
            background: AtomicBool::new(false),
        })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.projections.iter().map(|p| p.name()).collect()
    }

    fn find(&self, name: &str) -> Result<&Arc<dyn Projection>> {
        self.projections
            .iter()
            .find(|p| p.name() == name)
            .with_context(|| {
                format!(
                    "unknown projection {name:?} (known: {})",
                    self.names().join(", ")
                )
            })
    }

    /// Asks the background loop to catch up now (called after every command).
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Applies at most one batch to `p`; returns how many events it applied.
    pub async fn run_batch(&self, p: &dyn Projection) -> Result<usize> {
        let mut tx = self.db.any.begin().await?;
        // Write first: on SQLite this takes the write lock up front (no lock upgrade
        // deadlock); on Postgres it makes sure the row exists before we lock it.
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, txid, position, updated_at) VALUES ($1, 0, 0, 0)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(p.name())
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(self.db.pick(
            "SELECT txid, position FROM projection_checkpoints WHERE name = $1",
            "SELECT txid, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
        ))
        .bind(p.name())
        .fetch_one(&mut *tx)
        .await?;
        let from = Cursor {
            txid: row.try_get(0)?,
            position: row.try_get(1)?,
        };
        let events = read_after(&self.db, &mut tx, from, self.batch_size).await?;
        let Some(last) = events.last().map(|e| e.cursor) else {
            tx.rollback().await?;
            return Ok(0);
        };
        for e in &events {
            p.apply(&mut tx, e).await.with_context(|| {
                format!(
                    "projection {} failed on event at position {}",
                    p.name(),
                    e.cursor.position
                )
            })?;
        }
        sqlx::query(
            "UPDATE projection_checkpoints SET txid = $1, position = $2, updated_at = $3 WHERE name = $4",
        )
        .bind(last.txid)
        .bind(last.position)
        .bind(chrono::Utc::now().timestamp_millis())
        .bind(p.name())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(events.len())
    }

    /// Catches every projection up to the visible head; returns events applied.
    pub async fn catch_up(&self) -> Result<usize> {
        let mut total = 0;
        for p in &self.projections {
            loop {
                let n = self.run_batch(p.as_ref()).await?;
                total += n;
                if n == 0 {
                    break;
                }
            }
        }
        if total > 0 {
            self.progress.send_modify(|v| *v += 1);
        }
        Ok(total)
    }

    /// Background loop: catch up on every nudge, and poll as a safety net (other
    /// instances and the CLI append events this process is not told about).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        self.background.store(true, Ordering::SeqCst);
        loop {
            if let Err(e) = self.catch_up().await {
                tracing::error!(error = %format!("{e:#}"), "projection runner failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => {
                    self.background.store(false, Ordering::SeqCst);
                    return;
                }
            }
        }
    }

    pub async fn status(&self) -> Result<Vec<ProjectionStatus>> {
        let mut out = Vec::new();
        for p in &self.projections {
            let cursor = self.checkpoint(p.name()).await?;
            let lag = count_after(&self.db, cursor).await?;
            metrics::gauge!("journey_projection_lag_events", "projection" => p.name())
                .set(lag as f64);
            out.push(ProjectionStatus {
                name: p.name().to_string(),
                cursor,
                lag,
            });
        }
        Ok(out)
    }

    async fn checkpoint(&self, name: &str) -> Result<Cursor> {
        let row = sqlx::query("SELECT txid, position FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.db.any)
            .await?;
        Ok(match row {
            Some(r) => Cursor {
                txid: r.try_get(0)?,
                position: r.try_get(1)?,
            },
            None => Cursor::default(),
        })
    }

    /// Empties a projection's tables and replays it from the first event, reporting
    /// `(applied, total)` after each batch.
    pub async fn rebuild(&self, name: &str, mut progress: impl FnMut(u64, u64)) -> Result<u64> {
        let p = self.find(name)?.clone();
        let total = crate::events::total_events(&self.db).await? as u64;
        let mut tx = self.db.any.begin().await?;
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, txid, position, updated_at) VALUES ($1, 0, 0, 0)
             ON CONFLICT (name) DO UPDATE SET txid = 0, position = 0, updated_at = 0",
        )
        .bind(p.name())
        .execute(&mut *tx)
        .await?;
        for t in p.tables() {
            sqlx::query(&format!("DELETE FROM {t}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let mut done = 0u64;
        progress(0, total);
        loop {
            let n = self.run_batch(p.as_ref()).await? as u64;
            if n == 0 {
                break;
            }
            done += n;
            progress(done, total.max(done));
        }
        Ok(done)
    }

    /// Waits until every projection has applied the newest event of a stream, so the
    /// request that wrote it can be followed by reads that see it. Gives up after
    /// `timeout` (the write itself is durable either way).
    pub async fn wait_for_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        timeout: Duration,
    ) -> Result<bool> {
        let Some(target) = stream_head(&self.db, aggregate_type, aggregate_id).await? else {
            return Ok(true);
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut progress = self.progress.subscribe();
        loop {
            if self.background.load(Ordering::SeqCst) {
                self.nudge();
            } else {
                // No background loop (a CLI command): apply the events ourselves.
                self.catch_up().await?;
            }
            let mut all = true;
            for p in &self.projections {
                if self.checkpoint(p.name()).await? < target {
                    all = false;
                    break;
                }
            }
            if all {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            // Wake on local progress, or re-check soon (another instance may be applying).
            let _ = tokio::time::timeout(Duration::from_millis(25), progress.changed()).await;
        }
    }
}
