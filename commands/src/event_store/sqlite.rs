//! The embedded backend: the `events` table in a SQLite file. SQLite has one writer at a
//! time, so positions (assigned by a trigger at insert) are handed out in commit order and
//! the safe horizon is simply the newest committed event.

use super::combine::Combiner;
use super::sql::{self, Dialect, SqlTransaction};
use super::{
    Cursor, EventStoreBackend, EventStoreError, EventTransaction, StoredEvent, StreamAppend,
    StreamId,
};
use async_trait::async_trait;
use sqlx::{AnyConnection, AnyPool};

static SQLITE: Dialect = Dialect {
    columns: "txid, position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, committed_at",
    json: "",
    // txid is always 0 on SQLite; `$2 >= 0` and `$4 >= 0` only consume the bound txids so
    // that both dialects take the same parameters.
    read_range: "SELECT txid, position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, committed_at
                 FROM events
                 WHERE position > $1 AND $2 >= 0 AND position <= $3 AND $4 >= 0
                 ORDER BY position LIMIT $5",
    count_after: "SELECT count(*) FROM events WHERE position > $1 AND $2 >= 0",
    head: "SELECT txid, position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
           ORDER BY sequence DESC LIMIT 1",
};

pub struct SqliteEventStore {
    pool: AnyPool,
    combiner: Combiner,
}

impl SqliteEventStore {
    /// The store in the database `pool` is connected to (migrated by `Db::migrate`).
    pub fn new(pool: AnyPool) -> SqliteEventStore {
        SqliteEventStore {
            combiner: Combiner::new(pool.clone(), &SQLITE),
            pool,
        }
    }
}

#[async_trait]
impl EventStoreBackend for SqliteEventStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn load(
        &self,
        stream: &StreamId,
        after: usize,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        sql::load(&self.pool, &SQLITE, stream, after).await
    }

    async fn version(&self, stream: &StreamId) -> Result<usize, EventStoreError> {
        sql::version(&self.pool, stream).await
    }

    async fn write(&self, appends: &[StreamAppend<'_>]) -> Result<(), EventStoreError> {
        sql::write(self, &self.combiner, appends).await
    }

    async fn begin(&self) -> Result<Box<dyn EventTransaction>, EventStoreError> {
        Ok(Box::new(SqlTransaction {
            tx: self.pool.begin().await?,
            dialect: &SQLITE,
        }))
    }

    async fn read_range(
        &self,
        conn: &mut AnyConnection,
        after: Cursor,
        upto: Option<Cursor>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        sql::read_range(conn, &SQLITE, after, upto, limit).await
    }

    async fn held_back(&self) -> Result<bool, EventStoreError> {
        // One writer: nothing committed can wait behind an uncommitted position.
        Ok(false)
    }

    async fn count_after(&self, after: Cursor) -> Result<i64, EventStoreError> {
        sql::count_after(&self.pool, &SQLITE, after).await
    }

    async fn total(&self) -> Result<i64, EventStoreError> {
        sql::total(&self.pool).await
    }

    async fn head(&self, stream: &StreamId) -> Result<Option<Cursor>, EventStoreError> {
        sql::head(&self.pool, &SQLITE, stream).await
    }

    async fn stream_ids(
        &self,
        aggregate_type: &str,
        limit: i64,
    ) -> Result<Vec<String>, EventStoreError> {
        sql::stream_ids(&self.pool, aggregate_type, limit).await
    }
}
