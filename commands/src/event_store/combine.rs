//! Appends of concurrent callers combined into one statement.
//!
//! Group commit (`Store::execute`) gathers the commands queued on one aggregate; commands on
//! many different aggregates (reservations spread over accounts, the submissions of many
//! tasks) each made a commit of their own, and on Postgres a commit costs far more than the
//! row it writes (a statement, a WAL flush, and the context switches of a round trip on
//! both ends). Here every append that fits one statement joins a queue, and up to `LANES`
//! callers at a time send whatever is queued, up to `ROWS_PER_STATEMENT` rows, as one
//! `INSERT` in autocommit. Alone, an append is its own statement and waits for nothing;
//! under load, the appends that arrive while `LANES` statements are in flight go out
//! together in the next one.
//!
//! A statement commits or fails whole. When a combined statement fails (one of its appends
//! conflicts with another writer, or anything else goes wrong), each of its appends is sent
//! again on its own, so that each caller gets its own answer: a conflict sinks no other
//! caller's append.

use super::sql::{insert_rows, Dialect, EventRow, ROWS_PER_STATEMENT};
use super::{EventStoreError, StreamId};
use sqlx::AnyPool;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Combined statements in flight at once per process. One would serialise every append of
/// the process behind one round trip and one WAL flush; a few let commits overlap (and
/// Postgres flush them together) while the rest queue and combine.
const LANES: usize = 4;

/// The appends that fit one statement, of one backend (one pool and dialect).
pub(super) struct Combiner {
    pool: AnyPool,
    dialect: &'static Dialect,
    queue: Arc<Mutex<VecDeque<Pending>>>,
    lanes: Arc<Semaphore>,
}

/// One caller's append, owned (it may be sent by another caller's statement), and where
/// its answer goes.
struct Pending {
    rows: Vec<OwnedRow>,
    answer: oneshot::Sender<Result<(), EventStoreError>>,
}

struct OwnedRow {
    stream: StreamId,
    sequence: usize,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
}

impl OwnedRow {
    fn of(row: &EventRow<'_>) -> OwnedRow {
        OwnedRow {
            stream: row.stream.clone(),
            sequence: row.sequence,
            event_type: row.event_type.to_owned(),
            event_version: row.event_version.to_owned(),
            payload: row.payload.to_owned(),
            metadata: row.metadata.to_owned(),
        }
    }

    fn row(&self) -> EventRow<'_> {
        EventRow {
            stream: &self.stream,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
        }
    }
}

impl Combiner {
    pub fn new(pool: AnyPool, dialect: &'static Dialect) -> Combiner {
        Combiner {
            pool,
            dialect,
            queue: Default::default(),
            lanes: Arc::new(Semaphore::new(LANES)),
        }
    }

    /// Writes `rows` (at most `ROWS_PER_STATEMENT`), all or nothing, and answers when
    /// they committed or failed.
    pub async fn write(&self, rows: &[EventRow<'_>]) -> Result<(), EventStoreError> {
        let (answer, mut answered) = oneshot::channel();
        self.queue.lock().expect("append queue").push_back(Pending {
            rows: rows.iter().map(OwnedRow::of).collect(),
            answer,
        });
        loop {
            let lane = self
                .lanes
                .clone()
                .acquire_owned()
                .await
                .expect("the lanes are never closed");
            if let Ok(done) = answered.try_recv() {
                return done;
            }
            let batch = self.next_batch();
            if batch.is_empty() {
                // Ours is in a statement another caller is sending.
                drop(lane);
                return answered.await.unwrap_or_else(|_| Err(abandoned()));
            }
            // Sent by a task of its own, so that every caller in the batch gets its answer
            // even if this caller's future is dropped (a client that went away).
            let (pool, dialect) = (self.pool.clone(), self.dialect);
            let _ = tokio::spawn(send(pool, dialect, batch, lane)).await;
        }
    }

    /// The oldest queued appends, as many as fit one statement (at least one).
    fn next_batch(&self) -> Vec<Pending> {
        let mut queue = self.queue.lock().expect("append queue");
        let mut rows = 0;
        let mut batch = Vec::new();
        while let Some(next) = queue.front() {
            if !batch.is_empty() && rows + next.rows.len() > ROWS_PER_STATEMENT {
                break;
            }
            rows += next.rows.len();
            batch.extend(queue.pop_front());
        }
        batch
    }
}

/// Sends `batch` as one statement and answers each of its callers; if that fails, sends
/// each append on its own (see the module documentation). Holds its lane until done.
async fn send(
    pool: AnyPool,
    dialect: &'static Dialect,
    batch: Vec<Pending>,
    _lane: OwnedSemaphorePermit,
) {
    if batch.len() > 1 {
        let rows: Vec<EventRow<'_>> = batch
            .iter()
            .flat_map(|p| p.rows.iter().map(OwnedRow::row))
            .collect();
        if insert_alone(&pool, dialect, &rows).await.is_ok() {
            for p in batch {
                let _ = p.answer.send(Ok(()));
            }
            return;
        }
    }
    for p in batch {
        let rows: Vec<EventRow<'_>> = p.rows.iter().map(OwnedRow::row).collect();
        let _ = p.answer.send(insert_alone(&pool, dialect, &rows).await);
    }
}

/// One statement in autocommit on a pooled connection.
async fn insert_alone(
    pool: &AnyPool,
    dialect: &Dialect,
    rows: &[EventRow<'_>],
) -> Result<(), EventStoreError> {
    insert_rows(&mut *pool.acquire().await?, dialect, rows).await
}

/// The answer of an append whose statement's task ended without answering (it panicked).
fn abandoned() -> EventStoreError {
    EventStoreError::Other("the statement carrying this append ended without an answer".into())
}
