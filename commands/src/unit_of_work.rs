//! One transaction for one use case: events appended to several streams (each with its
//! own optimistic check on the stream's sequence) and the write-side rows that belong with
//! them, committed together or not at all. A crash at any instant before `commit` leaves
//! nothing behind; after it, everything.
//!
//! Events come from `Store::decide`, which runs the aggregate's rules on its in-memory state
//! and holds the aggregate's stripe lock until the commit is over. They are appended through
//! the event-store backend's transaction (`event_store::EventTransaction`), whose SQL
//! connection (`tx`) carries the write-side rows.
//!
//! Appends are held until `commit` and then sent together, one statement for every
//! stream of the unit (each stream keeps its own optimistic check): accepting a task
//! appends to the ledger and to the task, and each statement is a round trip that costs
//! the database more CPU than the row it carries (docs/performance.md). A stream that
//! moved therefore fails the unit at `commit` rather than at `append`; either way nothing
//! of the unit is written.

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
    /// The appends, sent by `commit` (owned: the decided events are serialized here).
    pending: Vec<PendingAppend>,
}

/// One stream's events, serialized, waiting for `commit`.
struct PendingAppend {
    stream: StreamId,
    expected: usize,
    /// (event type, event version, payload JSON)
    events: Vec<(String, String, String)>,
    metadata: String,
}

impl UnitOfWork {
    pub async fn begin(db: &Db) -> Result<UnitOfWork, UnitError> {
        Ok(UnitOfWork {
            tx: db.event_store.begin().await?,
            appends: db.appends.clone(),
            pending: Vec::new(),
        })
    }

    /// Appends a decided aggregate's events after the sequence it was decided on (sent at
    /// `commit`). A stream that moved in the meantime fails the whole unit with `Conflict`.
    pub fn append<A>(&mut self, decided: &Decided<'_, A>, meta: &CommandMeta)
    where
        A: Aggregate<Services = ()> + Clone,
        A::Command: Clone,
    {
        if decided.events().is_empty() {
            return;
        }
        self.pending.push(PendingAppend {
            stream: StreamId::new(A::TYPE, decided.id()),
            expected: decided.base(),
            events: decided
                .events()
                .iter()
                .map(|event| {
                    let payload = serde_json::to_string(event).expect("events serialize");
                    (event.event_type(), event.event_version(), payload)
                })
                .collect(),
            metadata: serde_json::to_string(&meta.to_map()).expect("metadata serializes"),
        });
    }

    /// The transaction, for the write-side rows that belong with the events.
    pub fn tx(&mut self) -> &mut sqlx::AnyConnection {
        self.tx.sql()
    }

    pub async fn commit(mut self) -> Result<(), UnitError> {
        let (metadata, streams): (Vec<String>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|p| (p.metadata, (p.stream, p.expected, p.events)))
            .unzip();
        let appends: Vec<StreamAppend<'_>> = streams
            .into_iter()
            .zip(&metadata)
            .map(|((stream, expected, events), metadata)| StreamAppend {
                stream,
                expected,
                events: events
                    .into_iter()
                    .map(|(event_type, event_version, payload)| NewEvent {
                        event_type,
                        event_version,
                        payload,
                        metadata,
                    })
                    .collect(),
            })
            .collect();
        let appended = !appends.is_empty();
        if appended {
            self.tx.append(&appends).await?;
        }
        self.tx.commit().await?;
        if appended {
            // Wakes this process's projection runner (see `Db::appends`).
            self.appends.raise();
        }
        Ok(())
    }
}
