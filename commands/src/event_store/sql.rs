//! What the two SQL backends share: the `events` table's shape, the batched INSERT (whose
//! primary key on (type, id, sequence) is the optimistic check), reading rows back, and the
//! transaction type. The statements that differ per dialect come from `Dialect`, defined in
//! `sqlite.rs` and `postgres.rs`.

use super::combine::Combiner;
use super::{
    Cursor, EventStoreBackend, EventStoreError, EventTransaction, StoredEvent, StreamAppend,
    StreamId,
};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AnyPool, Row, Transaction};

/// The statements that differ between the SQL dialects.
pub(super) struct Dialect {
    /// The columns of a `StoredEvent`, in `decode`'s order, read as plain types.
    pub columns: &'static str,
    /// Cast of a bound JSON text to the payload/metadata column type.
    pub json: &'static str,
    /// `read_range`: binds after.position, after.txid, upto.position, upto.txid, limit.
    pub read_range: &'static str,
    /// `count_after`: binds after.position, after.txid.
    pub count_after: &'static str,
    /// `head`: binds type, id; returns (txid, position).
    pub head: &'static str,
}

/// Rows per INSERT: SQLite allows 32,766 bound values, Postgres 65,535; 7 values a row.
pub(super) const ROWS_PER_STATEMENT: usize = 500;

/// One `events` row (in the column order every read here selects) as a `StoredEvent`.
/// Generic over the row type: most reads go through the Any driver, while a long read (an
/// export's) takes the backend's own rows, which skips the Any driver's conversion of every
/// row and its column descriptions (8 % of an export's CPU in a profile).
pub fn decode<R>(row: &R) -> Result<StoredEvent, EventStoreError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let payload: &str = row.try_get(7)?;
    let metadata: &str = row.try_get(8)?;
    let json = |text: &str| {
        serde_json::from_str(text).map_err(|e| EventStoreError::Corrupt(e.to_string()))
    };
    Ok(StoredEvent {
        cursor: Cursor {
            txid: row.try_get(0)?,
            position: row.try_get(1)?,
        },
        aggregate_type: row.try_get(2)?,
        aggregate_id: row.try_get(3)?,
        sequence: row.try_get(4)?,
        event_type: row.try_get(5)?,
        event_version: row.try_get(6)?,
        payload: json(payload)?,
        metadata: json(metadata)?,
        committed_at: row.try_get(9)?,
    })
}

fn decode_all(rows: Vec<AnyRow>) -> Result<Vec<StoredEvent>, EventStoreError> {
    rows.iter().map(decode).collect()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// One `events` row to insert.
pub(super) struct EventRow<'a> {
    pub stream: &'a StreamId,
    pub sequence: usize,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a str,
    pub metadata: &'a str,
}

/// The rows of `appends`, each stream's events numbered on from its expected version.
pub(super) fn rows_of<'a>(appends: &'a [StreamAppend<'_>]) -> Vec<EventRow<'a>> {
    appends
        .iter()
        .flat_map(|a| {
            a.events.iter().enumerate().map(move |(i, e)| EventRow {
                stream: &a.stream,
                sequence: a.expected + i + 1,
                event_type: &e.event_type,
                event_version: &e.event_version,
                payload: &e.payload,
                metadata: e.metadata,
            })
        })
        .collect()
}

/// Appends the rows of every stream inside `conn`'s transaction (see `insert_rows`).
pub(super) async fn insert(
    conn: &mut AnyConnection,
    dialect: &Dialect,
    appends: &[StreamAppend<'_>],
) -> Result<(), EventStoreError> {
    insert_rows(conn, dialect, &rows_of(appends)).await
}

/// Inserts `rows` on `conn`, up to `ROWS_PER_STATEMENT` per statement (one round trip for
/// a group commit's batch, a usage-log batch over many streams, or the appends of many
/// callers combined, see `combine`). A row whose (type, id, sequence) exists means its
/// stream moved past the expected version: `Conflict`, naming the streams of the failed
/// statement (the caller narrows it down, see `EventStoreBackend::append`).
pub(super) async fn insert_rows(
    conn: &mut AnyConnection,
    dialect: &Dialect,
    rows: &[EventRow<'_>],
) -> Result<(), EventStoreError> {
    let json = dialect.json;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ",
        );
        for i in 0..chunk.len() {
            let n = i * 7;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}{json}, ${}{json})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7
            ));
        }
        let mut q = sqlx::query(&sql);
        for row in chunk {
            q = q
                .bind(row.stream.aggregate_type.as_str())
                .bind(row.stream.aggregate_id.as_str())
                .bind(row.sequence as i64)
                .bind(row.event_type)
                .bind(row.event_version)
                .bind(row.payload)
                .bind(row.metadata);
        }
        if let Err(e) = q.execute(&mut *conn).await {
            if is_unique_violation(&e) {
                let mut streams: Vec<StreamId> =
                    chunk.iter().map(|row| row.stream.clone()).collect();
                streams.dedup();
                return Err(EventStoreError::Conflict(streams));
            }
            return Err(e.into());
        }
    }
    Ok(())
}

/// `EventStoreBackend::write` for the SQL backends. An append that fits one statement (a
/// group commit's batch, a usage-log flush: up to `ROWS_PER_STATEMENT` rows) goes through
/// the backend's `Combiner`: sent in autocommit, alone or with the appends of other callers
/// waiting at the same moment. Larger appends take several statements, in one transaction.
pub(super) async fn write(
    backend: &(impl EventStoreBackend + ?Sized),
    combiner: &Combiner,
    appends: &[StreamAppend<'_>],
) -> Result<(), EventStoreError> {
    let rows = rows_of(appends);
    if rows.len() <= ROWS_PER_STATEMENT {
        return combiner.write(&rows).await;
    }
    super::write_in_transaction(backend, appends).await
}

pub(super) async fn load(
    pool: &AnyPool,
    dialect: &Dialect,
    stream: &StreamId,
    after: usize,
) -> Result<Vec<StoredEvent>, EventStoreError> {
    let sql = format!(
        "SELECT {} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
         ORDER BY sequence",
        dialect.columns
    );
    let rows = sqlx::query(&sql)
        .bind(stream.aggregate_type.as_str())
        .bind(stream.aggregate_id.as_str())
        .bind(after as i64)
        .fetch_all(pool)
        .await?;
    decode_all(rows)
}

pub(super) async fn version(pool: &AnyPool, stream: &StreamId) -> Result<usize, EventStoreError> {
    let v: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(sequence), 0) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(stream.aggregate_type.as_str())
    .bind(stream.aggregate_id.as_str())
    .fetch_one(pool)
    .await?;
    Ok(v as usize)
}

pub(super) async fn read_range(
    conn: &mut AnyConnection,
    dialect: &Dialect,
    after: Cursor,
    upto: Option<Cursor>,
    limit: i64,
) -> Result<Vec<StoredEvent>, EventStoreError> {
    let upto = upto.unwrap_or(Cursor::END);
    let rows = sqlx::query(dialect.read_range)
        .bind(after.position)
        .bind(after.txid)
        .bind(upto.position)
        .bind(upto.txid)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    decode_all(rows)
}

pub(super) async fn count_after(
    pool: &AnyPool,
    dialect: &Dialect,
    after: Cursor,
) -> Result<i64, EventStoreError> {
    Ok(sqlx::query_scalar(dialect.count_after)
        .bind(after.position)
        .bind(after.txid)
        .fetch_one(pool)
        .await?)
}

pub(super) async fn total(pool: &AnyPool) -> Result<i64, EventStoreError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?)
}

pub(super) async fn head(
    pool: &AnyPool,
    dialect: &Dialect,
    stream: &StreamId,
) -> Result<Option<Cursor>, EventStoreError> {
    let row = sqlx::query(dialect.head)
        .bind(stream.aggregate_type.as_str())
        .bind(stream.aggregate_id.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        Some(r) => Some(Cursor {
            txid: r.try_get(0)?,
            position: r.try_get(1)?,
        }),
        None => None,
    })
}

pub(super) async fn stream_ids(
    pool: &AnyPool,
    aggregate_type: &str,
    limit: i64,
) -> Result<Vec<String>, EventStoreError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT aggregate_id FROM events WHERE aggregate_type = $1 AND sequence = 1
         ORDER BY position DESC LIMIT $2",
    )
    .bind(aggregate_type)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// A transaction of either SQL backend: events and write-side rows share it.
pub(super) struct SqlTransaction {
    pub tx: Transaction<'static, Any>,
    pub dialect: &'static Dialect,
}

#[async_trait]
impl EventTransaction for SqlTransaction {
    async fn append(&mut self, appends: &[StreamAppend<'_>]) -> Result<(), EventStoreError> {
        insert(&mut self.tx, self.dialect, appends).await
    }

    fn sql(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    async fn commit(self: Box<Self>) -> Result<(), EventStoreError> {
        let this = *self;
        this.tx.commit().await.map_err(|e| {
            // Postgres may report a unique violation only at commit (deferred checks);
            // treat it as the conflict it is.
            if is_unique_violation(&e) {
                EventStoreError::Conflict(Vec::new())
            } else {
                e.into()
            }
        })
    }
}
