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
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            }
            Backend::Postgres => {
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                 VALUES ($1, $2, $3, $4, $5, $6::json, $7::json)"
            }
        };
        for (i, event) in decided.events().iter().enumerate() {
            let payload = serde_json::to_string(event).expect("events serialize");
            sqlx::query(sql)
                .bind(A::TYPE)
                .bind(decided.id())
                .bind((decided.base() + i + 1) as i64)
                .bind(event.event_type())
                .bind(event.event_version())
                .bind(payload)
                .bind(&metadata)
                .execute(&mut *self.tx)
                .await
                .map_err(UnitError::of)?;
        }
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
