//! Reading the event store directly, in commit order, for projections and audits.
//! Everything but `read_subject` goes through the event-store backend trait
//! (`journey_commands::event_store`).

use anyhow::Result;
use journey_commands::db::{Backend, Db};
pub use journey_commands::event_store::{Cursor, StoredEvent, StreamId};
use sqlx::AnyConnection;

const COLUMNS_SQLITE: &str = "txid, position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, committed_at";
const COLUMNS_PG: &str = "txid::text::bigint, position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text, metadata::text, committed_at";

fn columns(db: &Db) -> &'static str {
    match db.backend {
        Backend::Sqlite => COLUMNS_SQLITE,
        Backend::Postgres => COLUMNS_PG,
    }
}

/// The next events after `after` that are safe to apply (see `Cursor`).
pub async fn read_after(
    db: &Db,
    conn: &mut AnyConnection,
    after: Cursor,
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    read_range(db, conn, after, None, limit).await
}

/// Like `read_after`, but only up to `upto` (inclusive) when given: a projection that fell
/// behind catches up to where the others stand, and no further, in its own read.
pub async fn read_range(
    db: &Db,
    conn: &mut AnyConnection,
    after: Cursor,
    upto: Option<Cursor>,
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    Ok(db.event_store.read_range(conn, after, upto, limit).await?)
}

/// Whether committed events wait behind the Postgres horizon (a transaction older than
/// theirs is still running), so the runner must look again soon. Always false on SQLite.
pub async fn held_back(db: &Db) -> Result<bool> {
    Ok(db.event_store.held_back().await?)
}

/// Number of committed events after `after` (projection lag).
pub async fn count_after(db: &Db, after: Cursor) -> Result<i64> {
    Ok(db.event_store.count_after(after).await?)
}

/// One stream's events in sequence order.
pub async fn read_stream(
    db: &Db,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>> {
    Ok(db
        .event_store
        .load(&StreamId::new(aggregate_type, aggregate_id), 0)
        .await?)
}

/// Ids of the streams of one aggregate type, newest first, at most `limit` (registers that
/// are small enough to list by loading each aggregate).
pub async fn stream_ids(db: &Db, aggregate_type: &str, limit: i64) -> Result<Vec<String>> {
    Ok(db.event_store.stream_ids(aggregate_type, limit).await?)
}

/// Cursor of a stream's newest event, used to wait until projections have applied it.
pub async fn stream_head(
    db: &Db,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<Cursor>> {
    Ok(db
        .event_store
        .head(&StreamId::new(aggregate_type, aggregate_id))
        .await?)
}

pub async fn total_events(db: &Db) -> Result<i64> {
    Ok(db.event_store.total().await?)
}

/// Events of every stream of a data subject (`subject_streams`), in position order.
///
/// Still SQL beside the backend trait: it joins the privacy context's `subject_streams`
/// table, which lives in the SQL database. A backend keeping events elsewhere would offer
/// it as a read of a list of streams.
pub async fn read_subject(
    db: &Db,
    subject: &str,
    after_position: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    // The inner query is fenced (`OFFSET 0`) so that it is planned on its own: through
    // subject_streams and the events primary key. Unfenced, Postgres may walk the global
    // position index and filter, which reads the whole store for one subject.
    let fence = match db.backend {
        Backend::Sqlite => "LIMIT -1 OFFSET 0",
        Backend::Postgres => "OFFSET 0",
    };
    let sql = format!(
        "SELECT {} FROM (
             SELECT * FROM events
             WHERE (aggregate_type, aggregate_id) IN
                   (SELECT aggregate_type, aggregate_id FROM subject_streams WHERE subject = $1)
               AND position > $2
             {fence}) events
         ORDER BY position LIMIT $3",
        columns(db)
    );
    sqlx::query(&sql)
        .bind(subject)
        .bind(after_position)
        .bind(limit)
        .fetch_all(&db.any)
        .await?
        .iter()
        .map(|row| journey_commands::event_store::decode_row(row).map_err(anyhow::Error::from))
        .collect()
}

/// `read_subject` narrowed to one aggregate type (`""` for all) and a commit-time window
/// (ms since the epoch, both ends included), for the console's timeline filters.
pub async fn read_subject_filtered(
    db: &Db,
    subject: &str,
    aggregate_type: &str,
    committed_from_ms: i64,
    committed_to_ms: i64,
    after_position: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    // Fenced as in `read_subject`.
    let fence = match db.backend {
        Backend::Sqlite => "LIMIT -1 OFFSET 0",
        Backend::Postgres => "OFFSET 0",
    };
    let sql = format!(
        "SELECT {} FROM (
             SELECT * FROM events
             WHERE (aggregate_type, aggregate_id) IN
                   (SELECT aggregate_type, aggregate_id FROM subject_streams
                     WHERE subject = $1 AND ($2 = '' OR aggregate_type = $2))
               AND position > $3 AND committed_at >= $4 AND committed_at <= $5
             {fence}) events
         ORDER BY position LIMIT $6",
        columns(db)
    );
    sqlx::query(&sql)
        .bind(subject)
        .bind(aggregate_type)
        .bind(after_position)
        .bind(committed_from_ms)
        .bind(committed_to_ms)
        .bind(limit)
        .fetch_all(&db.any)
        .await?
        .iter()
        .map(|row| journey_commands::event_store::decode_row(row).map_err(anyhow::Error::from))
        .collect()
}

/// The query of `subject_events` (build it once, keep it while the stream lives).
pub fn subject_events_sql(db: &Db) -> String {
    let subject_streams = "(aggregate_type, aggregate_id) IN
             (SELECT aggregate_type, aggregate_id FROM subject_streams WHERE subject = $1)";
    match db.backend {
        // Fenced like `read_subject`: planned through subject_streams and the primary key.
        Backend::Sqlite => format!(
            "SELECT {COLUMNS_SQLITE} FROM (
                 SELECT * FROM events WHERE {subject_streams} LIMIT -1 OFFSET 0) events
             ORDER BY position"
        ),
        // Only the positions are sorted; each row is then fetched by the position index in
        // that order (the fenced LATERAL keeps it a nested loop, so the rows stream out
        // already ordered). Sorting whole rows, payloads included, spilled a 100k-event
        // subject to disk (a 50 MB external merge at the default `work_mem`) and sent
        // nothing until it ended; joined without the fence, Postgres chose to hash-join a
        // sequential scan of the whole store.
        Backend::Postgres => format!(
            "SELECT {COLUMNS_PG} FROM (
                 SELECT position AS at FROM events WHERE {subject_streams}
                 ORDER BY position OFFSET 0) ordered,
             LATERAL (SELECT * FROM events WHERE events.position = ordered.at OFFSET 0) events
             ORDER BY ordered.at"
        ),
    }
}

/// Every event of a subject (`subject_streams`), in position order, as one query (`sql`,
/// from `subject_events_sql`) whose rows are decoded as the caller consumes them: memory
/// stays bounded by what the caller keeps.
///
/// Paging with `read_subject` cannot bound a page's scan by position (the subquery walks
/// each stream by its primary key), so each page re-reads the subject's whole history:
/// quadratic for long histories (the export and compaction of issue 12). This reads it once
/// and sorts it once. It holds one pooled connection until the stream is dropped. The rows
/// come from the backend's own pool (`Db::typed`), not the Any driver's, which would convert
/// each of them first. (Decoding on a task of its own, handed over in chunks, was tried
/// twice and was slower: docs/performance.md.)
pub fn subject_events<'a>(
    db: &'a Db,
    sql: &'a str,
    subject: &'a str,
) -> futures::stream::BoxStream<'a, Result<StoredEvent>> {
    use futures::StreamExt;
    use journey_commands::db::TypedPool;
    use journey_commands::event_store::decode_row;
    match &db.typed {
        TypedPool::Postgres(pool) => sqlx::query(sql)
            .bind(subject)
            .fetch(pool)
            .map(|row| Ok(decode_row(&row?)?))
            .boxed(),
        TypedPool::Sqlite(pool) => sqlx::query(sql)
            .bind(subject)
            .fetch(pool)
            .map(|row| Ok(decode_row(&row?)?))
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use journey_domain::session::SessionEvent;
    use serde_json::Value;

    fn event(payload: Value) -> StoredEvent {
        StoredEvent {
            cursor: Cursor::default(),
            aggregate_type: "session".into(),
            aggregate_id: "s".into(),
            sequence: 1,
            event_type: "x".into(),
            event_version: "1".into(),
            payload,
            metadata: Value::Null,
            committed_at: 0,
        }
    }

    #[test]
    fn unknown_event_types_are_skipped_but_malformed_known_ones_fail() {
        let future = event(serde_json::json!({"SessionRenamed": {"to": "x"}}));
        assert!(future.decode_known::<SessionEvent>().unwrap().is_none());
        let broken = event(serde_json::json!({"SessionEnded": {"reason": 5}}));
        assert!(broken.decode_known::<SessionEvent>().is_err());
        // An unknown value inside a known event is corruption, not a newer event type.
        let nested = event(serde_json::json!(
            {"SessionEnded": {"reason": "teleported", "at": "2026-11-24T00:00:00Z"}}
        ));
        assert!(nested.decode_known::<SessionEvent>().is_err());
        let ok = event(serde_json::json!(
            {"SessionEnded": {"reason": "logout", "at": "2026-11-24T00:00:00Z"}}
        ));
        assert!(ok.decode_known::<SessionEvent>().unwrap().is_some());
    }
}
