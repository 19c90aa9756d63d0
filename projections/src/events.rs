//! Reading the event store directly, in commit order, for projections and audits.

use anyhow::{Context, Result};
use journey_commands::db::{Backend, Db};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// A position in commit order. On Postgres `txid` is the writing transaction's id (events
/// are read only below the oldest in-flight transaction, in (txid, position) order, so a
/// late commit is never skipped); on SQLite it is always 0 and `position` is commit order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Cursor {
    pub txid: i64,
    pub position: i64,
}

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
    pub fn decode_known<E: DeserializeOwned>(&self) -> Result<Option<E>> {
        match serde_json::from_value::<E>(self.payload.clone()) {
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

    pub fn decode<E: DeserializeOwned>(&self) -> Result<E> {
        serde_json::from_value(self.payload.clone()).with_context(|| {
            format!(
                "cannot decode {} event {} at position {}",
                self.aggregate_type, self.event_type, self.cursor.position
            )
        })
    }
}

const COLUMNS_SQLITE: &str = "txid, position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, committed_at";
const COLUMNS_PG: &str = "txid::text::bigint, position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text, metadata::text, committed_at";

fn columns(db: &Db) -> &'static str {
    match db.backend {
        Backend::Sqlite => COLUMNS_SQLITE,
        Backend::Postgres => COLUMNS_PG,
    }
}

fn row_to_event(row: &AnyRow) -> Result<StoredEvent> {
    let payload: String = row.try_get(7)?;
    let metadata: String = row.try_get(8)?;
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
        payload: serde_json::from_str(&payload)?,
        metadata: serde_json::from_str(&metadata)?,
        committed_at: row.try_get(9)?,
    })
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
    let upto = upto.unwrap_or(Cursor {
        txid: i64::MAX,
        position: i64::MAX,
    });
    let sql = match db.backend {
        Backend::Sqlite => format!(
            "SELECT {COLUMNS_SQLITE} FROM events
             WHERE position > $1 AND $2 >= 0 AND position <= $3 AND $4 >= 0
             ORDER BY position LIMIT $5"
        ),
        Backend::Postgres => format!(
            "SELECT {COLUMNS_PG} FROM events
             WHERE (txid, position) > ($2::text::xid8, $1)
               AND (txid, position) <= ($4::text::xid8, $3)
               AND txid < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY txid, position LIMIT $5"
        ),
    };
    let rows = sqlx::query(&sql)
        .bind(after.position)
        .bind(after.txid)
        .bind(upto.position)
        .bind(upto.txid)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(row_to_event).collect()
}

/// Whether committed events wait behind the Postgres horizon (a transaction older than
/// theirs is still running), so the runner must look again soon. Always false on SQLite.
pub async fn held_back(db: &Db) -> Result<bool> {
    if db.backend == Backend::Sqlite {
        return Ok(false);
    }
    Ok(sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM events WHERE txid >= pg_snapshot_xmin(pg_current_snapshot()))",
    )
    .fetch_one(&db.any)
    .await?
    .try_get(0)?)
}

/// Number of committed events after `after` (projection lag).
pub async fn count_after(db: &Db, after: Cursor) -> Result<i64> {
    let sql = db.pick(
        "SELECT count(*) FROM events WHERE position > $1 AND $2 >= 0",
        "SELECT count(*) FROM events WHERE (txid, position) > ($2::text::xid8, $1)",
    );
    let n: i64 = sqlx::query(sql)
        .bind(after.position)
        .bind(after.txid)
        .fetch_one(&db.any)
        .await?
        .try_get(0)?;
    Ok(n)
}

/// One stream's events in sequence order.
pub async fn read_stream(
    db: &Db,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>> {
    let sql = format!(
        "SELECT {} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
        columns(db)
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_all(&db.any)
        .await?;
    rows.iter().map(row_to_event).collect()
}

/// Ids of the streams of one aggregate type, newest first, at most `limit` (registers that
/// are small enough to list by loading each aggregate).
pub async fn stream_ids(db: &Db, aggregate_type: &str, limit: i64) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT aggregate_id FROM events WHERE aggregate_type = $1 AND sequence = 1
         ORDER BY position DESC LIMIT $2",
    )
    .bind(aggregate_type)
    .bind(limit)
    .fetch_all(&db.any)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Cursor of a stream's newest event, used to wait until projections have applied it.
pub async fn stream_head(
    db: &Db,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<Cursor>> {
    let sql = db.pick(
        "SELECT txid, position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
        "SELECT txid::text::bigint, position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
    );
    let row = sqlx::query(sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&db.any)
        .await?;
    Ok(match row {
        Some(r) => Some(Cursor {
            txid: r.try_get(0)?,
            position: r.try_get(1)?,
        }),
        None => None,
    })
}

pub async fn total_events(db: &Db) -> Result<i64> {
    Ok(sqlx::query("SELECT count(*) FROM events")
        .fetch_one(&db.any)
        .await?
        .try_get(0)?)
}

/// Events of every stream of a data subject (`subject_streams`), in position order.
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
        .map(row_to_event)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use journey_domain::session::SessionEvent;

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
