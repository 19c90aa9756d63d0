//! The event store behind one trait. Everything the system needs from an event store —
//! load a stream, append to several streams atomically with an optimistic check per stream,
//! read every event in commit order up to a safe horizon, and the few stream queries that
//! erasure, retention, export and the projection runner use — is a method of
//! [`EventStoreBackend`]. `Store`, `UnitOfWork`, the usage log and the projection runner call
//! only this trait, so a third backend (KurrentDB, say) is one new implementation chosen in
//! `Db::connect`, with no change to any bounded context.
//!
//! Two implementations share the `events` table that our migrations create:
//! [`SqliteEventStore`] (one writer, so position order is commit order) and
//! [`PostgresEventStore`] (positions come from a sequence, so reads stop below the oldest
//! running transaction, see `read_range`). Both pass the contract suite in
//! `tests/it/event_store.rs`, which any new backend must pass too.
//!
//! The trait is used as `Arc<dyn EventStoreBackend>` (held by `Db`): a dynamic call costs
//! nothing next to a database round trip, and the callers stay free of a type parameter.

mod combine;
mod postgres;
mod sql;
mod sqlite;

pub use postgres::PostgresEventStore;
/// Decodes an `events` row selected in the backends' column order (`txid, position,
/// aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata`);
/// for readers that join the store with tables of their own (`read_subject`).
pub use sql::decode as decode_row;
pub use sqlite::SqliteEventStore;

use anyhow::Context as _;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sqlx::AnyConnection;

/// One stream: an aggregate type and an aggregate id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    pub aggregate_type: String,
    pub aggregate_id: String,
}

impl StreamId {
    pub fn new(aggregate_type: impl Into<String>, aggregate_id: impl Into<String>) -> StreamId {
        StreamId {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.aggregate_type, self.aggregate_id)
    }
}

/// An event to append. Payload and metadata are JSON text: the caller serializes once, and
/// every backend stores exactly what it was given.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub event_type: String,
    pub event_version: String,
    /// The event as JSON text.
    pub payload: String,
    /// The metadata map as JSON text (shared by the events of one command).
    pub metadata: &'a str,
}

/// The events to append to one stream, after the version the caller decided on.
#[derive(Debug, Clone)]
pub struct StreamAppend<'a> {
    pub stream: StreamId,
    /// The stream's version (its last sequence, 0 for a new stream) that the events were
    /// decided on; the first event gets `expected + 1`. A stream that has moved past it
    /// fails the whole append with `Conflict`. Callers pass a version they loaded: a
    /// version beyond the stream's head is a caller bug that backends need not detect.
    pub expected: usize,
    pub events: Vec<NewEvent<'a>>,
}

/// A position in commit order. On Postgres `txid` is the writing transaction's id (events
/// are read only below the oldest in-flight transaction, in (txid, position) order, so a
/// late commit is never skipped); on SQLite it is always 0 and `position` is commit order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Cursor {
    pub txid: i64,
    pub position: i64,
}

impl Cursor {
    /// Beyond every event.
    pub const END: Cursor = Cursor {
        txid: i64::MAX,
        position: i64::MAX,
    };
}

/// An event as stored, with its place in the global order.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub cursor: Cursor,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub committed_at: i64,
}

impl StoredEvent {
    /// Names the event in an error: type, stream and position.
    pub fn what(&self) -> String {
        format!(
            "{} event {} at position {}",
            self.aggregate_type, self.event_type, self.cursor.position
        )
    }

    /// Decodes the payload; `None` for an event type this version does not know (written by
    /// a newer instance), so a projection skips it instead of stalling the runner.
    pub fn decode_known<E: DeserializeOwned>(&self) -> anyhow::Result<Option<E>> {
        // Deserialized from the borrowed tree: a clone of it per event was a rebuild's
        // largest allocation.
        match E::deserialize(&self.payload) {
            Ok(e) => Ok(Some(e)),
            Err(err) if self.unknown_top_level_variant(&err) => {
                tracing::warn!(
                    aggregate = %self.aggregate_type,
                    event_type = %self.event_type,
                    position = self.cursor.position,
                    "skipping event type unknown to this version"
                );
                Ok(None)
            }
            Err(err) => Err(anyhow::Error::new(err).context(format!(
                "cannot decode {} event {} at position {}",
                self.aggregate_type, self.event_type, self.cursor.position
            ))),
        }
    }

    /// True when the error is about the event's own variant (the payload's single key), not
    /// about an unknown value nested inside a known event, which must fail loudly.
    fn unknown_top_level_variant(&self, err: &serde_json::Error) -> bool {
        let Some(name) = self.payload.as_object().and_then(|m| m.keys().next()) else {
            return false;
        };
        err.to_string()
            .starts_with(&format!("unknown variant `{name}`"))
    }

    pub fn decode<E: DeserializeOwned>(&self) -> anyhow::Result<E> {
        E::deserialize(&self.payload).with_context(|| {
            format!(
                "cannot decode {} event {} at position {}",
                self.aggregate_type, self.event_type, self.cursor.position
            )
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    /// These streams had moved past the expected version (another writer appended first):
    /// nothing of the append was written.
    #[error("streams moved past the expected version: {}", list(.0))]
    Conflict(Vec<StreamId>),
    /// A stored row that cannot be read back (corrupt JSON, say).
    #[error("unreadable event: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// Errors of backends that are not SQL databases.
    #[error("event store: {0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// `EventStoreBackend::write` in one transaction of `backend` (`begin`, `append`,
/// `commit`): the default, and the SQL backends' way for an append larger than a statement.
async fn write_in_transaction(
    backend: &(impl EventStoreBackend + ?Sized),
    appends: &[StreamAppend<'_>],
) -> Result<(), EventStoreError> {
    let mut tx = backend.begin().await?;
    tx.append(appends).await?;
    tx.commit().await
}

fn list(streams: &[StreamId]) -> String {
    streams
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl EventStoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, EventStoreError::Conflict(_))
    }
}

/// One transaction on the event store: appends to any number of streams, committed
/// together or not at all.
///
/// **Write-side rows.** A unit of work also writes rows that must commit with its events
/// (an idempotency claim, a work row). Those tables live in the SQL database, so the
/// transaction exposes its SQL connection (`sql`) and the rows are ordinary statements in
/// the same transaction. We chose that over a fixed set of typed write-side operations on
/// the trait because the write-side tables belong to their bounded contexts (which own their
/// repositories and their SQL), and the event store should not have to know them. A backend
/// whose events live outside the SQL database (KurrentDB) would still open a SQL
/// transaction here for those rows and keep its appends atomic with them, e.g. by staging
/// them in an outbox table inside that transaction and forwarding them after commit.
#[async_trait]
pub trait EventTransaction: Send {
    /// Appends every stream's events after its expected version. On `Conflict` nothing of
    /// this transaction will commit (the caller drops it and decides again).
    async fn append(&mut self, appends: &[StreamAppend<'_>]) -> Result<(), EventStoreError>;

    /// The SQL connection of this transaction, for the write-side rows that belong with
    /// the events (see the trait documentation).
    fn sql(&mut self) -> &mut AnyConnection;

    async fn commit(self: Box<Self>) -> Result<(), EventStoreError>;
}

/// Every operation the system needs from an event store. See the module documentation.
#[async_trait]
pub trait EventStoreBackend: Send + Sync + 'static {
    /// A short name for logs and docs ("sqlite", "postgres").
    fn name(&self) -> &'static str;

    /// A stream's events with a sequence above `after` (0: the whole stream), in sequence
    /// order. The last one's sequence is the stream's version.
    async fn load(
        &self,
        stream: &StreamId,
        after: usize,
    ) -> Result<Vec<StoredEvent>, EventStoreError>;

    /// The stream's version: its last sequence, 0 when it has no events.
    async fn version(&self, stream: &StreamId) -> Result<usize, EventStoreError>;

    /// Opens a transaction (see `EventTransaction`).
    async fn begin(&self) -> Result<Box<dyn EventTransaction>, EventStoreError>;

    /// Appends to several streams in one transaction. On a conflict, reports every stream
    /// of the append that had moved past its expected version.
    async fn append(&self, appends: &[StreamAppend<'_>]) -> Result<(), EventStoreError> {
        match self.write(appends).await {
            Err(EventStoreError::Conflict(first)) => Err(EventStoreError::Conflict(
                self.moved(appends).await.unwrap_or(first),
            )),
            done => done,
        }
    }

    /// `append`'s write, all or nothing, without narrowing a conflict down: in one
    /// transaction. A backend may do it more cheaply (the SQL backends send an append that
    /// fits one statement on its own). On `Conflict` the transaction is over when this
    /// returns (dropped: rolled back), so that `moved` reads committed versions.
    async fn write(&self, appends: &[StreamAppend<'_>]) -> Result<(), EventStoreError> {
        write_in_transaction(self, appends).await
    }

    /// The streams of `appends` whose version is no longer the expected one (after a
    /// conflict: which streams another writer moved). `None` if none has moved any more.
    async fn moved(&self, appends: &[StreamAppend<'_>]) -> Option<Vec<StreamId>> {
        let mut moved = Vec::new();
        for a in appends {
            match self.version(&a.stream).await {
                Ok(v) if v != a.expected => moved.push(a.stream.clone()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        (!moved.is_empty()).then_some(moved)
    }

    /// The events after `after` and up to `upto` (inclusive), in commit order, at most
    /// `limit`, and only those that can no longer be preceded by a later commit (the safe
    /// horizon): reading on from the last one returned never skips an event. SQL backends
    /// read on `conn`, the caller's transaction (the projection batch that also moves the
    /// checkpoints); other backends may ignore it.
    async fn read_range(
        &self,
        conn: &mut AnyConnection,
        after: Cursor,
        upto: Option<Cursor>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, EventStoreError>;

    /// Whether committed events wait behind the safe horizon (a reader should look again
    /// soon rather than sleep). Always false where commit order is position order.
    async fn held_back(&self) -> Result<bool, EventStoreError>;

    /// Number of committed events after `after` (a projection's lag).
    async fn count_after(&self, after: Cursor) -> Result<i64, EventStoreError>;

    /// Number of events in the store.
    async fn total(&self) -> Result<i64, EventStoreError>;

    /// The cursor of a stream's newest event, to wait until readers have applied it.
    async fn head(&self, stream: &StreamId) -> Result<Option<Cursor>, EventStoreError>;

    /// Ids of the streams of one aggregate type, newest first (by their first event), at
    /// most `limit`.
    async fn stream_ids(
        &self,
        aggregate_type: &str,
        limit: i64,
    ) -> Result<Vec<String>, EventStoreError>;
}
