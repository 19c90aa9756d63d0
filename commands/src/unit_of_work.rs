//! One transaction for one use case: events appended to several streams (each with its
//! own optimistic check on the stream's sequence) and the write-side rows that belong with
//! them, committed together or not at all. A crash at any instant before `commit` leaves
//! nothing behind; after it, everything.
//!
//! Events come from `Store::decide`, which runs the aggregate's rules on its in-memory state
//! and holds the aggregate's stripe lock until the commit is over. They are appended through
//! the event-store backend's transaction (`event_store::EventTransaction`), whose SQL
//! connection (`tx`) carries the write-side rows.

use crate::db::{Appends, Db};
use crate::event_store::{EventStoreError, EventTransaction, NewEvent, StreamAppend, StreamId};
use crate::store::Decided;
use cqrs_es::{Aggregate, DomainEvent};
use journey_domain::meta::CommandMeta;

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

impl From<EventStoreError> for UnitError {
    fn from(e: EventStoreError) -> UnitError {
        match e {
            EventStoreError::Conflict(_) => UnitError::Conflict,
            EventStoreError::Sql(e) => UnitError::of(e),
            // `Storage` carries a sqlx error (callers map it like any database failure);
            // other failures travel inside one as an I/O error with their message.
            other => UnitError::Storage(sqlx::Error::Io(std::io::Error::other(other.to_string()))),
        }
    }
}

pub struct UnitOfWork {
    tx: Box<dyn EventTransaction>,
    appends: Appends,
    /// Whether `append` wrote any event (then `commit` wakes the projection runner).
    appended: bool,
}

impl UnitOfWork {
    pub async fn begin(db: &Db) -> Result<UnitOfWork, UnitError> {
        Ok(UnitOfWork {
            tx: db.event_store.begin().await?,
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
        let append = StreamAppend {
            stream: StreamId::new(A::TYPE, decided.id()),
            expected: decided.base(),
            events: decided
                .events()
                .iter()
                .map(|event| NewEvent {
                    event_type: event.event_type(),
                    event_version: event.event_version(),
                    payload: serde_json::to_string(event).expect("events serialize"),
                    metadata: &metadata,
                })
                .collect(),
        };
        self.tx.append(std::slice::from_ref(&append)).await?;
        self.appended = true;
        Ok(())
    }

    /// The transaction, for the write-side rows that belong with the events.
    pub fn tx(&mut self) -> &mut sqlx::AnyConnection {
        self.tx.sql()
    }

    pub async fn commit(self) -> Result<(), UnitError> {
        self.tx.commit().await?;
        if self.appended {
            // Wakes this process's projection runner (see `Db::appends`).
            self.appends.raise();
        }
        Ok(())
    }
}
