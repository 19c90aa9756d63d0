//! One transaction for one use case: events appended to several streams (each with its
//! own optimistic check on the stream's sequence) and the write-side rows that belong with
//! them, committed together or not at all. A crash at any instant before `commit` leaves
//! nothing behind; after it, everything.
//!
//! Events come from `Store::decide`, which runs the aggregate's rules on its in-memory state
//! and holds the aggregate's stripe lock until the commit is over. The rows are written in
//! the same `events` table shape that sqlite-es and postgres-es write (they load these
//! events like their own); position, commit time and transaction id come from the table's
//! column defaults.

use crate::db::{Appends, Backend, Db};
use crate::store::Decided;
use cqrs_es::{Aggregate, DomainEvent};
use journey_domain::meta::CommandMeta;
use sqlx::{Any, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// Another writer appended to one of the streams first (or claimed the same unique
    /// row): nothing was written; decide again against fresh state.
    #[error("a concurrent change won; try again")]
    Conflict,
    #[error("event store: {0}")]
    Storage(#[from] sqlx::Error),
}

impl UnitError {
    fn of(e: sqlx::Error) -> UnitError {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => UnitError::Conflict,
            _ => UnitError::Storage(e),
        }
    }
}

pub struct UnitOfWork {
    tx: Transaction<'static, Any>,
    backend: Backend,
    appends: Appends,
    /// Whether `append` wrote any event (then `commit` wakes the projection runner).
    appended: bool,
}

impl UnitOfWork {
    pub async fn begin(db: &Db) -> Result<UnitOfWork, UnitError> {
        Ok(UnitOfWork {
            tx: db.any.begin().await?,
            backend: db.backend,
            appends: db.appends.clone(),
            appended: false,
        })
    }

    /// Appends a decided aggregate's events after the sequence it was decided on. A stream
    /// that moved in the meantime fails the whole unit with `Conflict`.
    pub async fn append<A>(
        &mut self,
        decided: &Decided<'_, A>,
        meta: &CommandMeta,
    ) -> Result<(), UnitError>
    where
        A: Aggregate<Services = ()> + Clone,
        A::Command: Clone,
    {
        if decided.events().is_empty() {
            return Ok(());
        }
        let metadata = serde_json::to_string(&meta.to_map()).expect("metadata serializes");
        let rows: Vec<EventRow> = decided
            .events()
            .iter()
            .enumerate()
            .map(|(i, event)| EventRow {
                aggregate_type: A::TYPE,
                aggregate_id: decided.id(),
                sequence: decided.base() + i + 1,
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serde_json::to_string(event).expect("events serialize"),
                metadata: &metadata,
            })
            .collect();
        insert_events(&mut self.tx, self.backend, &rows)
            .await
            .map_err(UnitError::of)?;
        self.appended = true;
        Ok(())
    }

    /// The transaction, for the write-side rows that belong with the events.
    pub fn tx(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<(), UnitError> {
        self.tx.commit().await.map_err(UnitError::of)?;
        if self.appended {
            // Wakes this process's projection runner (see `Db::appends`).
            self.appends.raise();
        }
        Ok(())
    }
}

/// One row of the `events` table as sqlite-es and postgres-es write it.
pub struct EventRow<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: usize,
    pub event_type: String,
    pub event_version: String,
    /// The event as JSON text.
    pub payload: String,
    /// The metadata map as JSON text.
    pub metadata: &'a str,
}

/// Appends event rows inside `conn`'s transaction, up to `ROWS_PER_STATEMENT` per
/// statement (one round trip for a group commit's batch); the primary key (type, id,
/// sequence) is the optimistic check.
pub async fn insert_events(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    rows: &[EventRow<'_>],
) -> Result<(), sqlx::Error> {
    // Postgres wants the JSON columns cast; SQLite stores text.
    let json = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => "::json",
    };
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
                .bind(row.aggregate_type)
                .bind(row.aggregate_id)
                .bind(row.sequence as i64)
                .bind(&row.event_type)
                .bind(&row.event_version)
                .bind(&row.payload)
                .bind(row.metadata);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Rows per INSERT: SQLite allows 32,766 bound values, Postgres 65,535; 7 values a row.
const ROWS_PER_STATEMENT: usize = 500;

/// One event row (see `insert_events`).
pub async fn insert_event(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    row: &EventRow<'_>,
) -> Result<(), sqlx::Error> {
    insert_events(conn, backend, std::slice::from_ref(row)).await
}
