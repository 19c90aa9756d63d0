//! The projection runner. Each projection owns read-model tables and a checkpoint row. A
//! batch is one transaction for every projection: it locks all their checkpoint rows, reads
//! the events once, applies each event to every projection whose checkpoint is behind it,
//! and moves the checkpoints in one statement. So every event is applied exactly once per
//! projection across crashes and across several runners (several instances, or the CLI
//! beside a server): Postgres serializes them on the checkpoint rows (`FOR UPDATE`, taken
//! in name order), SQLite has one writer (the batch's first statement is a write).
//!
//! Projections normally stand at one checkpoint. One that is behind (being rebuilt, or new)
//! is fed in the same batch from its own read, which stops where the others stand; once it
//! gets there it moves on with them.
//!
//! The background loop sleeps until something was appended: in this process (`Db::appends`,
//! raised after every commit, and `nudge`), or, on Postgres, by a process without a runner
//! (a `NOTIFY` on `EVENTS_CHANNEL` when a CLI command closes its database). A wake-up waits
//! `COALESCE` before reading, so a burst of commands makes one batch. A slow safety poll
//! remains; on Postgres the loop also looks again soon while committed events wait behind
//! an older transaction that is still running (the commit-order rule, `events::read_range`).

use crate::events::{count_after, held_back, read_range, stream_head, Cursor, StoredEvent};
use anyhow::{Context, Result};
use async_trait::async_trait;
use journey_commands::db::{Backend, Db, TypedPool, EVENTS_CHANNEL};
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use std::collections::BTreeMap;
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
    /// Applies events (in commit order, all after this projection's checkpoint) inside the
    /// batch transaction. Unknown event types must be ignored.
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()>;
}

#[derive(Debug, Clone, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub cursor: Cursor,
    /// Committed events not yet applied.
    pub lag: i64,
}

/// After a wake-up, the loop waits this long before reading, so that the commands of a
/// burst are applied in one batch.
const COALESCE: Duration = Duration::from_millis(1);
/// The safety poll: events appended by a process that did not tell us (another instance's
/// CLI whose notification was lost, or any writer on SQLite, which has no notifications).
const SAFETY_POLL_SQLITE: Duration = Duration::from_secs(1);
const SAFETY_POLL_POSTGRES: Duration = Duration::from_secs(5);
/// While committed events wait behind an older running transaction (Postgres), the loop
/// looks again after this, doubling up to `HELD_BACK_MAX`.
const HELD_BACK_FIRST: Duration = Duration::from_millis(2);
const HELD_BACK_MAX: Duration = Duration::from_millis(100);

/// What one batch did.
#[derive(Debug, Default)]
pub struct Batch {
    /// Distinct events read.
    pub read: usize,
    /// Events applied, per projection (in the runner's order).
    pub applied: Vec<usize>,
    /// Which projections were behind the others when the batch began.
    pub behind: Vec<bool>,
    /// Events read after the common checkpoint (0 when none are left below the horizon).
    pub ahead: usize,
}

pub struct Runner {
    db: Db,
    projections: Vec<Arc<dyn Projection>>,
    /// Names in lock order (sorted), with each one's index in `projections`.
    lock_order: Vec<(&'static str, usize)>,
    wake: Notify,
    progress: watch::Sender<u64>,
    batch_size: i64,
    /// Whether `run` is active in this process; if not, waiters apply events themselves.
    background: AtomicBool,
}

/// `$from, $from+1, …` for `n` values.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Runner {
    pub fn new(db: Db, projections: Vec<Arc<dyn Projection>>) -> Arc<Self> {
        Self::with_batch_size(db, projections, 1000)
    }

    /// A runner applying at most `batch_size` events per read (tests use small batches).
    pub fn with_batch_size(
        db: Db,
        projections: Vec<Arc<dyn Projection>>,
        batch_size: i64,
    ) -> Arc<Self> {
        let mut lock_order: Vec<(&'static str, usize)> = projections
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name(), i))
            .collect();
        lock_order.sort();
        Arc::new(Runner {
            db,
            projections,
            lock_order,
            wake: Notify::new(),
            progress: watch::channel(0).0,
            batch_size,
            background: AtomicBool::new(false),
        })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.projections.iter().map(|p| p.name()).collect()
    }

    fn index_of(&self, name: &str) -> Result<usize> {
        self.projections
            .iter()
            .position(|p| p.name() == name)
            .with_context(|| {
                format!(
                    "unknown projection {name:?} (known: {})",
                    self.names().join(", ")
                )
            })
    }

    /// Asks the background loop to catch up now. Commits through `Store` and `UnitOfWork`
    /// wake it by themselves; this is for other writers.
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Locks every projection's checkpoint row (creating missing ones at the start) and
    /// returns the checkpoints in the runner's order.
    async fn lock_checkpoints(&self, tx: &mut AnyConnection) -> Result<Vec<Cursor>> {
        let n = self.projections.len();
        let list = placeholders(1, n);
        // SQLite: a write first takes the write lock up front (no lock-upgrade deadlock).
        // Postgres: row locks in name order, so that runners never wait on each other in a
        // circle.
        let lock = match self.db.backend {
            Backend::Sqlite => format!(
                "UPDATE projection_checkpoints SET updated_at = updated_at WHERE name IN ({list})
                 RETURNING name, txid, position"
            ),
            Backend::Postgres => format!(
                "SELECT name, txid, position FROM projection_checkpoints WHERE name IN ({list})
                 ORDER BY name FOR UPDATE"
            ),
        };
        for attempt in 0..2 {
            let mut q = sqlx::query(&lock);
            for (name, _) in &self.lock_order {
                q = q.bind(*name);
            }
            let rows = q.fetch_all(&mut *tx).await?;
            if rows.len() == n || attempt == 1 {
                let mut at: BTreeMap<String, Cursor> = BTreeMap::new();
                for r in rows {
                    at.insert(
                        r.try_get(0)?,
                        Cursor {
                            txid: r.try_get(1)?,
                            position: r.try_get(2)?,
                        },
                    );
                }
                return self
                    .projections
                    .iter()
                    .map(|p| {
                        at.get(p.name())
                            .copied()
                            .with_context(|| format!("no checkpoint row for {}", p.name()))
                    })
                    .collect();
            }
            // First batch of a new projection (or of a new database): create the rows.
            let values = (0..n)
                .map(|i| format!("(${}, 0, 0, 0)", i + 1))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO projection_checkpoints (name, txid, position, updated_at)
                 VALUES {values} ON CONFLICT (name) DO NOTHING"
            );
            let mut q = sqlx::query(&sql);
            for (name, _) in &self.lock_order {
                q = q.bind(*name);
            }
            q.execute(&mut *tx).await?;
        }
        unreachable!("the second attempt returns")
    }

    /// One batch for every projection, in one transaction; see the module comment.
    pub async fn run_batch(&self) -> Result<Batch> {
        let mut tx = self.db.any.begin().await?;
        let mut at = self.lock_checkpoints(&mut tx).await?;
        let n = self.projections.len();
        let lead = at.iter().copied().max().unwrap_or_default();
        let low = at.iter().copied().min().unwrap_or_default();
        let mut batch = Batch {
            applied: vec![0; n],
            behind: at.iter().map(|c| *c < lead).collect(),
            ..Batch::default()
        };
        let start = at.clone();
        // Projections behind the others: one read up to where the others stand.
        if low < lead {
            let events = read_range(&self.db, &mut tx, low, Some(lead), self.batch_size).await?;
            self.apply(&mut tx, &events, &mut at, &mut batch.applied)
                .await?;
            batch.read += events.len();
        }
        // Every projection that stands at the common checkpoint (now including those that
        // just reached it): the events after it, below the horizon.
        let events = read_range(&self.db, &mut tx, lead, None, self.batch_size).await?;
        self.apply(&mut tx, &events, &mut at, &mut batch.applied)
            .await?;
        batch.read += events.len();
        batch.ahead = events.len();
        if batch.read == 0 {
            tx.rollback().await?;
            return Ok(batch);
        }
        self.commit_batch(tx, &start, &at).await?;
        Ok(batch)
    }

    /// Moves the checkpoints that changed from `start` to `at` (one statement per distinct
    /// new checkpoint: one, unless some projection is still catching up), commits the
    /// batch and tells waiters.
    async fn commit_batch(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        start: &[Cursor],
        at: &[Cursor],
    ) -> Result<()> {
        let mut moved: BTreeMap<Cursor, Vec<&'static str>> = BTreeMap::new();
        for (i, p) in self.projections.iter().enumerate() {
            if at[i] != start[i] {
                moved.entry(at[i]).or_default().push(p.name());
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        for (cursor, names) in moved {
            let sql = format!(
                "UPDATE projection_checkpoints SET txid = $1, position = $2, updated_at = $3
                 WHERE name IN ({})",
                placeholders(4, names.len())
            );
            let mut q = sqlx::query(&sql)
                .bind(cursor.txid)
                .bind(cursor.position)
                .bind(now);
            for name in names {
                q = q.bind(name);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.progress.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Applies `events` to every projection whose checkpoint (in `at`) is behind them, and
    /// moves `at` past what each one applied.
    async fn apply(
        &self,
        tx: &mut AnyConnection,
        events: &[StoredEvent],
        at: &mut [Cursor],
        applied: &mut [usize],
    ) -> Result<()> {
        let Some(last) = events.last().map(|e| e.cursor) else {
            return Ok(());
        };
        for (i, p) in self.projections.iter().enumerate() {
            let from = events.partition_point(|e| e.cursor <= at[i]);
            let run = &events[from..];
            if run.is_empty() {
                continue;
            }
            p.apply(tx, run).await.with_context(|| {
                format!(
                    "projection {} failed on events at positions {}..={}",
                    p.name(),
                    run[0].cursor.position,
                    last.position
                )
            })?;
            applied[i] += run.len();
            at[i] = last;
        }
        Ok(())
    }

    /// Catches every projection up to the visible head; returns the events read.
    pub async fn catch_up(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let batch = self.run_batch().await?;
            total += batch.read;
            if batch.read == 0 {
                return Ok(total);
            }
        }
    }

    /// Background loop: see the module comment.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        self.background.store(true, Ordering::SeqCst);
        let listener = self.clone().listen();
        let mut appended = self.db.appends.subscribe();
        let safety_poll = match self.db.backend {
            Backend::Sqlite => SAFETY_POLL_SQLITE,
            Backend::Postgres => SAFETY_POLL_POSTGRES,
        };
        let mut held: Option<Duration> = None;
        loop {
            match self.catch_up().await {
                Ok(_) => {
                    held = match held_back(&self.db).await {
                        Ok(true) => {
                            Some(held.map_or(HELD_BACK_FIRST, |d| (d * 2).min(HELD_BACK_MAX)))
                        }
                        Ok(false) => None,
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "horizon check failed");
                            None
                        }
                    };
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "projection runner failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            let woken = tokio::select! {
                _ = self.wake.notified() => true,
                r = appended.changed() => {
                    if r.is_err() {
                        // The database handle is gone: only nudges and polls remain.
                        appended = self.db.appends.subscribe();
                    }
                    true
                }
                _ = tokio::time::sleep(held.unwrap_or(safety_poll)) => false,
                _ = shutdown.changed() => break,
            };
            if woken {
                tokio::time::sleep(COALESCE).await;
            }
        }
        if let Some(l) = listener {
            l.abort();
        }
        self.background.store(false, Ordering::SeqCst);
    }

    /// On Postgres: a task that wakes the loop on every `NOTIFY` on `EVENTS_CHANNEL`.
    fn listen(self: Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let TypedPool::Postgres(pg) = &self.db.typed else {
            return None;
        };
        let pg = pg.clone();
        Some(tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&pg).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for appended events; polling");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(EVENTS_CHANNEL).await {
                    tracing::warn!(error = %e, "cannot listen for appended events; polling");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
                loop {
                    match listener.recv().await {
                        Ok(_) => self.wake.notify_one(),
                        Err(e) => {
                            // Notifications may have been missed while disconnected.
                            tracing::warn!(error = %e, "lost the event notification channel");
                            self.wake.notify_one();
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        }))
    }

    /// Every projection's checkpoint, in the runner's order (the start for a missing row).
    async fn checkpoints(&self) -> Result<Vec<Cursor>> {
        let sql = format!(
            "SELECT name, txid, position FROM projection_checkpoints WHERE name IN ({})",
            placeholders(1, self.projections.len())
        );
        let mut q = sqlx::query(&sql);
        for p in &self.projections {
            q = q.bind(p.name());
        }
        let mut at: BTreeMap<String, Cursor> = BTreeMap::new();
        for r in q.fetch_all(&self.db.any).await? {
            at.insert(
                r.try_get(0)?,
                Cursor {
                    txid: r.try_get(1)?,
                    position: r.try_get(2)?,
                },
            );
        }
        Ok(self
            .projections
            .iter()
            .map(|p| at.get(p.name()).copied().unwrap_or_default())
            .collect())
    }

    pub async fn status(&self) -> Result<Vec<ProjectionStatus>> {
        let mut out = Vec::new();
        for (p, cursor) in self.projections.iter().zip(self.checkpoints().await?) {
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

    /// Empties a projection's tables and replays it from the first event, reporting
    /// `(applied, total)` after each batch. The other projections go on meanwhile (in the
    /// same batches); the rebuilt one catches up from its own reads and then rejoins them.
    pub async fn rebuild(&self, name: &str, mut progress: impl FnMut(u64, u64)) -> Result<u64> {
        let i = self.index_of(name)?;
        let p = self.projections[i].clone();
        let total = crate::events::total_events(&self.db).await? as u64;
        let mut tx = self.db.any.begin().await?;
        self.lock_checkpoints(&mut tx).await?;
        sqlx::query(
            "UPDATE projection_checkpoints SET txid = 0, position = 0, updated_at = 0 WHERE name = $1",
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
        progress(0, total);
        let mut done = self.rebuild_below_lead(i, total, &mut progress).await?;
        loop {
            let batch = self.run_batch().await?;
            done += batch.applied[i] as u64;
            progress(done, total.max(done));
            // Rejoined (and at the head), or nothing left to read.
            if batch.read == 0 || (!batch.behind[i] && batch.ahead < self.batch_size as usize) {
                break;
            }
        }
        Ok(done)
    }

    /// A rebuild's first part, on Postgres: the events up to where the other projections
    /// stand have been applied by them, so they are committed and final (`read_range`'s
    /// horizon), and can be read ahead on a connection of their own while the batch before
    /// is applied: reading and decoding (half of a rebuild's time) overlaps applying. Each
    /// batch is still one transaction that locks the checkpoints and moves this one's; if
    /// another runner moved it meanwhile (it feeds projections that are behind too), this
    /// stops and `run_batch` goes on from wherever the checkpoint stands. Returns the
    /// events applied. SQLite (one process, one writer) goes straight to `run_batch`.
    async fn rebuild_below_lead(
        &self,
        i: usize,
        total: u64,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<u64> {
        if self.db.backend != Backend::Postgres {
            return Ok(0);
        }
        let at = self.checkpoints().await?;
        let lead = at
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, c)| *c)
            .max();
        let Some(lead) = lead.filter(|lead| *lead > at[i]) else {
            return Ok(0);
        };
        // One batch waits while one is applied and the next is read.
        let (ahead, mut batches) = tokio::sync::mpsc::channel::<Result<Vec<StoredEvent>>>(1);
        let (db, size, start) = (self.db.clone(), self.batch_size, at[i]);
        tokio::spawn(async move {
            let mut conn = match db.any.acquire().await {
                Ok(c) => c,
                Err(e) => {
                    let _ = ahead.send(Err(e.into())).await;
                    return;
                }
            };
            let mut after = start;
            loop {
                let read = read_range(&db, &mut conn, after, Some(lead), size).await;
                let last = read.as_ref().ok().and_then(|e| e.last().map(|e| e.cursor));
                if matches!(&read, Ok(e) if e.is_empty()) || ahead.send(read).await.is_err() {
                    return;
                }
                match last {
                    Some(last) => after = last,
                    None => return, // the error was sent
                }
            }
        });
        let (mut expected, mut done) = (start, 0u64);
        while let Some(events) = batches.recv().await {
            let events = events?;
            let mut tx = self.db.any.begin().await?;
            let mut at = self.lock_checkpoints(&mut tx).await?;
            if at[i] != expected {
                tx.rollback().await?;
                break;
            }
            // The others stand at or past these events, so only this projection (and any
            // other one as far behind) applies them.
            let before = at.clone();
            let mut applied = vec![0; self.projections.len()];
            self.apply(&mut tx, &events, &mut at, &mut applied).await?;
            self.commit_batch(tx, &before, &at).await?;
            expected = at[i];
            done += applied[i] as u64;
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
            if self.checkpoints().await?.iter().all(|c| *c >= target) {
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
