//! One database handle for both backends. cqrs-es needs typed pools; our own SQL (read
//! models, vault, checkpoints) runs through sqlx's `Any` driver with `$n` placeholders,
//! which both SQLite and Postgres accept, so most statements are written once.

use crate::event_store::{EventStoreBackend, PostgresEventStore, SqliteEventStore};
use anyhow::{bail, Context, Result};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AnyPool, Executor, PgPool, SqlitePool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub enum TypedPool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Clone)]
pub struct Db {
    pub backend: Backend,
    pub typed: TypedPool,
    pub any: AnyPool,
    /// The event store (see `event_store`): every read and append of events goes through it.
    pub event_store: Arc<dyn EventStoreBackend>,
    /// Raised after every commit that appended events through this handle.
    pub appends: Appends,
}

/// The Postgres channel on which a process that appended events but runs no projection
/// runner (a CLI command) tells the servers' runners to look (`Db::close`).
pub const EVENTS_CHANNEL: &str = "journey_events";

/// A counter of commits that appended events in this process: the projection runner
/// waits on it instead of polling. Raised by `Store` and `UnitOfWork` after they commit.
#[derive(Clone)]
pub struct Appends(std::sync::Arc<tokio::sync::watch::Sender<u64>>);

impl Default for Appends {
    fn default() -> Self {
        Appends(std::sync::Arc::new(tokio::sync::watch::channel(0).0))
    }
}

impl Appends {
    /// Events were committed.
    pub fn raise(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }

    /// Whether anything was appended through this handle since it was opened.
    pub fn any(&self) -> bool {
        *self.0.borrow() != 0
    }
}

/// Run on every new Postgres connection of both pools (`turn_jit_off`). Postgres compiles a
/// query with LLVM when its estimated cost passes `jit_above_cost` (100,000 by default): a
/// 100k-event export's read was estimated at 718,000 and spent 1.3 s of CPU compiling
/// (`EXPLAIN ANALYZE`: "JIT: Inlining 412 ms, Optimization 582 ms, Emission 291 ms"), its
/// first row waiting 0.43 s for it. Our statements are short or stream their rows; none was
/// seen to gain from JIT (docs/performance.md).
const NO_JIT: &str = "SET jit = off";

/// The pools' `after_connect` hook (the typed and the `Any` pool: one function for both).
fn turn_jit_off<'c, C>(
    conn: &'c mut C,
    _: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'c, Result<(), sqlx::Error>>
where
    C: Send,
    for<'e> &'e mut C: Executor<'e>,
{
    Box::pin(async move { conn.execute(NO_JIT).await.map(|_| ()) })
}

impl Db {
    /// Connects to `sqlite://PATH` (created if missing) or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("bad sqlite url {url}"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10));
            let typed = SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(opts)
                .await
                .with_context(|| format!("cannot open {url}"))?;
            // WAL is persistent, so the Any pool (opened after) inherits it.
            let any = AnyPoolOptions::new()
                .max_connections(8)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(conn)
                            .await
                            .map(|_| ())
                    })
                })
                .connect(url)
                .await?;
            Ok(Db {
                backend: Backend::Sqlite,
                typed: TypedPool::Sqlite(typed),
                event_store: Arc::new(SqliteEventStore::new(any.clone())),
                any,
                appends: Appends::default(),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let typed = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(turn_jit_off)
                .connect(url)
                .await
                .with_context(|| "cannot connect to Postgres".to_string())?;
            let any = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(turn_jit_off)
                .connect(url)
                .await?;
            Ok(Db {
                backend: Backend::Postgres,
                typed: TypedPool::Postgres(typed),
                event_store: Arc::new(PostgresEventStore::new(any.clone())),
                any,
                appends: Appends::default(),
            })
        } else {
            bail!("database url must start with sqlite: or postgres:")
        }
    }

    /// The same database with another event-store backend (one that keeps its events
    /// elsewhere; its SQL tables — read models, write-side rows — stay in this database).
    pub fn with_event_store(mut self, event_store: Arc<dyn EventStoreBackend>) -> Db {
        self.event_store = event_store;
        self
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    pub async fn migrate(&self) -> Result<()> {
        match &self.typed {
            TypedPool::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            TypedPool::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    /// Number of embedded migrations not yet applied (0 = schema is current).
    pub async fn pending_migrations(&self) -> Result<usize> {
        let applied: Vec<(i64,)> =
            match sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success = true")
                .fetch_all(&self.any)
                .await
            {
                Ok(rows) => rows,
                Err(_) => return Ok(self.migrator().iter().count()),
            };
        Ok(self
            .migrator()
            .iter()
            .filter(|m| !applied.iter().any(|(v,)| *v == m.version))
            .count())
    }

    /// Picks the statement text for this backend where the dialects differ.
    pub fn pick<'a>(&self, sqlite: &'a str, postgres: &'a str) -> &'a str {
        match self.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        }
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.any).await?;
        Ok(())
    }

    /// Closes the pools. On Postgres, a handle that appended events first sends a
    /// `NOTIFY` on `EVENTS_CHANNEL`, so that running servers apply what a CLI command wrote
    /// without waiting for their safety poll (a server's own runner applies its own writes).
    pub async fn close(&self) {
        if self.backend == Backend::Postgres && self.appends.any() {
            let notify = format!("NOTIFY {EVENTS_CHANNEL}");
            if let Err(e) = sqlx::query(&notify).execute(&self.any).await {
                tracing::debug!(error = %e, "could not notify projection runners");
            }
        }
        self.any.close().await;
        match &self.typed {
            TypedPool::Sqlite(p) => p.close().await,
            TypedPool::Postgres(p) => p.close().await,
        }
    }
}
