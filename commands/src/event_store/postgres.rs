//! The production backend: the `events` table in Postgres. Positions come from a sequence,
//! allocated when a row is inserted, so a transaction can commit a lower position after
//! another has committed a higher one. Every row records its writing transaction
//! (`txid`, a column default), and readers order by (txid, position) and read only below
//! `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction still running: no
//! transaction below it can commit any more, so nothing returned can be preceded later.

use super::combine::Combiner;
use super::sql::{self, Dialect, SqlTransaction};
use super::{
    Cursor, EventStoreBackend, EventStoreError, EventTransaction, StoredEvent, StreamAppend,
    StreamId,
};
use async_trait::async_trait;
use sqlx::{AnyConnection, AnyPool};

static POSTGRES: Dialect = Dialect {
    // `read_range` orders by the table's columns (`events.txid`), not the output column of
    // the same name (`txid::text::bigint AS txid`, which an unqualified `ORDER BY txid`
    // would pick): only the columns' order is the index's, so the scan stops after
    // `LIMIT` rows. Ordered by the output column, every read sorted all events up to
    // `upto`, which made a projection rebuild quadratic (37 ms against 0.7 ms per batch of
    // 1,000 at 150,000 of 200,000 events).
    // The Any driver has no xid8 or json types: read them as bigint and text.
    columns: "txid::text::bigint, position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text, metadata::text, committed_at",
    json: "::json",
    read_range: "SELECT txid::text::bigint, position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text, metadata::text, committed_at
                 FROM events
                 WHERE (txid, position) > ($2::text::xid8, $1)
                   AND (txid, position) <= ($4::text::xid8, $3)
                   AND txid < pg_snapshot_xmin(pg_current_snapshot())
                 ORDER BY events.txid, events.position LIMIT $5",
    count_after: "SELECT count(*) FROM events WHERE (txid, position) > ($2::text::xid8, $1)",
    head: "SELECT txid::text::bigint, position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
           ORDER BY sequence DESC LIMIT 1",
};

pub struct PostgresEventStore {
    pool: AnyPool,
    combiner: Combiner,
}

impl PostgresEventStore {
    /// The store in the database `pool` is connected to (migrated by `Db::migrate`).
    pub fn new(pool: AnyPool) -> PostgresEventStore {
        PostgresEventStore {
            combiner: Combiner::new(pool.clone(), &POSTGRES),
            pool,
        }
    }
}

#[async_trait]
impl EventStoreBackend for PostgresEventStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn load(
        &self,
        stream: &StreamId,
        after: usize,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        sql::load(&self.pool, &POSTGRES, stream, after).await
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
            dialect: &POSTGRES,
        }))
    }

    async fn read_range(
        &self,
        conn: &mut AnyConnection,
        after: Cursor,
        upto: Option<Cursor>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        sql::read_range(conn, &POSTGRES, after, upto, limit).await
    }

    async fn held_back(&self) -> Result<bool, EventStoreError> {
        // The newest txid (one probe of the txid index) against the horizon. An
        // `EXISTS (… WHERE txid >= xmin)` was planned as a sequential scan that, in the
        // usual case of nothing held back, read every event.
        Ok(sqlx::query_scalar(
            "SELECT COALESCE((SELECT max(txid) FROM events) >= pg_snapshot_xmin(pg_current_snapshot()), false)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn count_after(&self, after: Cursor) -> Result<i64, EventStoreError> {
        sql::count_after(&self.pool, &POSTGRES, after).await
    }

    async fn total(&self) -> Result<i64, EventStoreError> {
        sql::total(&self.pool).await
    }

    async fn head(&self, stream: &StreamId) -> Result<Option<Cursor>, EventStoreError> {
        sql::head(&self.pool, &POSTGRES, stream).await
    }

    async fn stream_ids(
        &self,
        aggregate_type: &str,
        limit: i64,
    ) -> Result<Vec<String>, EventStoreError> {
        sql::stream_ids(&self.pool, aggregate_type, limit).await
    }
}
