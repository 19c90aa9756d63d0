//! Aggregate stores over either backend. `Repo` delegates to sqlite-es or postgres-es so
//! that one `CqrsFramework` type serves both. We use the plain event-store mode: cqrs-es
//! 0.5's snapshot modes apply new events twice to saved snapshots.

use crate::db::{Db, TypedPool};
use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventStore};
use journey_domain::meta::CommandMeta;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;

pub enum Repo {
    Sqlite(SqliteEventRepository),
    Postgres(PostgresEventRepository),
}

impl Repo {
    pub fn new(db: &Db) -> Repo {
        match &db.typed {
            TypedPool::Sqlite(p) => Repo::Sqlite(SqliteEventRepository::new(p.clone())),
            TypedPool::Postgres(p) => Repo::Postgres(PostgresEventRepository::new(p.clone())),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $r:ident => $call:expr) => {
        match $self {
            Repo::Sqlite($r) => $call.await,
            Repo::Postgres($r) => $call.await,
        }
    };
}

impl PersistedEventRepository for Repo {
    async fn get_events<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        delegate!(self, r => r.get_events::<A>(id))
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        delegate!(self, r => r.get_last_events::<A>(id, last_sequence))
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        delegate!(self, r => r.get_snapshot::<A>(id))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        delegate!(self, r => r.persist::<A>(events, snapshot_update))?;
        metrics::counter!("journey_events_appended_total", "aggregate" => A::TYPE)
            .increment(events.len() as u64);
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        delegate!(self, r => r.stream_events::<A>(id))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        delegate!(self, r => r.stream_all_events::<A>())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError<E: std::error::Error> {
    /// The aggregate refused the command (a business rule).
    #[error("{0}")]
    Rejected(E),
    /// Concurrent writers kept winning; the caller may retry later.
    #[error("too many concurrent changes, try again")]
    Conflict,
    #[error("event store: {0}")]
    Storage(String),
}

impl<E: std::error::Error> From<AggregateError<E>> for StoreError<E> {
    fn from(e: AggregateError<E>) -> Self {
        match e {
            AggregateError::UserError(e) => StoreError::Rejected(e),
            AggregateError::AggregateConflict => StoreError::Conflict,
            other => StoreError::Storage(other.to_string()),
        }
    }
}

/// How many times a command is re-run against fresh state after losing an optimistic-lock
/// race. Re-running is safe: the aggregate re-validates against the winner's events.
const CONFLICT_ATTEMPTS: u32 = 12;

/// Jittered exponential backoff so that contending writers spread out instead of
/// colliding again in lock step (2 ms after the first loss, then 4, 8 ... capped at 50 ms,
/// each times a random 0.5–1.5).
async fn backoff(attempt: u32) {
    use rand::Rng;
    let base = (1u64 << attempt.min(6)).min(50) as f64;
    let jitter: f64 = rand::thread_rng().gen_range(0.5..1.5);
    tokio::time::sleep(std::time::Duration::from_micros(
        (base * jitter * 1000.0) as u64,
    ))
    .await;
}

/// Commands for one aggregate id run one at a time within this process (striped locks),
/// so contention there costs a wait instead of optimistic-lock retries; writers in other
/// processes are still serialized by the optimistic lock.
const LOCK_STRIPES: usize = 128;

pub struct Store<A: Aggregate> {
    cqrs: CqrsFramework<A, PersistedEventStore<Repo, A>>,
    loader: PersistedEventStore<Repo, A>,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl<A> Store<A>
where
    A: Aggregate<Services = ()>,
    A::Command: Clone,
{
    pub fn new(db: &Db) -> Self {
        Store {
            cqrs: CqrsFramework::new(
                PersistedEventStore::new_event_store(Repo::new(db)),
                vec![],
                (),
            ),
            loader: PersistedEventStore::new_event_store(Repo::new(db)),
            stripes: (0..LOCK_STRIPES).map(|_| Default::default()).collect(),
        }
    }

    fn stripe(&self, id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(id);
        &self.stripes[(h as usize) % LOCK_STRIPES]
    }

    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<(), StoreError<A::Error>> {
        let _turn = self.stripe(id).lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .cqrs
                .execute_with_metadata(id, command.clone(), meta.to_map())
                .await
            {
                Err(AggregateError::AggregateConflict) if attempt < CONFLICT_ATTEMPTS => {
                    backoff(attempt).await;
                    continue;
                }
                other => return other.map_err(StoreError::from),
            }
        }
    }

    /// Like `execute`, but a lost race is reported instead of retried (tests, strict callers).
    pub async fn execute_once(
        &self,
        id: &str,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<(), StoreError<A::Error>> {
        self.cqrs
            .execute_with_metadata(id, command, meta.to_map())
            .await
            .map_err(StoreError::from)
    }

    /// Current state by full replay of the stream (read-your-own-write).
    pub async fn load(&self, id: &str) -> Result<(A, usize), StoreError<A::Error>> {
        let ctx = self.loader.load_aggregate(id).await?;
        Ok((ctx.aggregate, ctx.current_sequence))
    }
}
