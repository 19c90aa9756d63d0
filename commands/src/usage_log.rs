//! The API usage log, written in batches. A usage record guards no invariant — it only
//! says that a request happened — so it does not go through an aggregate and its optimistic
//! lock: requests hand their records to a bounded buffer, and one writer per process appends
//! whatever has gathered, at most `FLUSH_EVERY` apart, in one transaction.
//!
//! Each process writes its own streams, `usage/<account>:<YYYY-MM-DD>:<writer>` (the
//! writer is random per process start), so no two writers ever contend for a stream and
//! the next sequence of each is known in memory. The records are ordinary
//! `ApiRequestRecorded` events: the usage projection, the export, retention and erasure read
//! them like any other.
//!
//! **Loss bound.** A record is durable once its batch commits: at most `FLUSH_EVERY` (5 ms)
//! after the response, plus the commit. A `kill -9` loses the records of requests answered
//! in that window (at most `CAPACITY` of them); a clean shutdown (`close`) writes them all.
//! A batch that fails to commit is retried, not dropped.

use crate::db::Db;
use crate::event_store::{EventStoreError, NewEvent, StreamAppend, StreamId};
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use journey_domain::meta::CommandMeta;
use journey_domain::usage::{ApiRequest, UsageEvent};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Longest a record waits in the buffer before its batch is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// Records buffered at most; a request waits for room rather than a record being dropped.
pub const CAPACITY: usize = 10_000;
/// Records per transaction at most.
const BATCH: usize = 1_000;

enum Message {
    Record(Box<(Uuid, ApiRequest, CommandMeta)>),
    /// Answered once everything sent before it is committed.
    Flush(oneshot::Sender<()>),
}

/// The handle requests write through. Cheap to clone.
#[derive(Clone)]
pub struct UsageLog {
    tx: mpsc::Sender<Message>,
    writer: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the usage log writer has stopped")]
pub struct Stopped;

impl UsageLog {
    /// Starts the writer on `db`; it runs until every handle is dropped, after writing what
    /// it holds.
    pub fn start(db: Db) -> (UsageLog, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let writer = Uuid::new_v4().simple().to_string()[..8].to_string();
        let handle = tokio::spawn(write_batches(db, writer.clone(), rx));
        (UsageLog { tx, writer }, handle)
    }

    /// The stream this process writes `account`'s records of the day of `at` to.
    pub fn stream_of(&self, account: Uuid, at: DateTime<Utc>) -> String {
        stream_of(account, at, &self.writer)
    }

    /// Queues one request's record (waits only when the buffer is full).
    pub async fn record(
        &self,
        account: Uuid,
        record: ApiRequest,
        meta: CommandMeta,
    ) -> Result<(), Stopped> {
        self.tx
            .send(Message::Record(Box::new((account, record, meta))))
            .await
            .map_err(|_| Stopped)
    }

    /// Waits until every record queued before this call is committed (reads of one's own
    /// usage, tests, shutdown).
    pub async fn flush(&self) -> Result<(), Stopped> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Message::Flush(done))
            .await
            .map_err(|_| Stopped)?;
        wait.await.map_err(|_| Stopped)
    }
}

/// The stream a record goes to: the account, its UTC day, and this writer.
fn stream_of(account: Uuid, at: DateTime<Utc>, writer: &str) -> String {
    format!("{}:{writer}", journey_domain::usage::stream_id(account, at))
}

async fn write_batches(db: Db, writer: String, mut rx: mpsc::Receiver<Message>) {
    // The next free sequence of each of this writer's streams.
    let mut heads: HashMap<String, usize> = HashMap::new();
    let mut pending: Vec<(Uuid, ApiRequest, CommandMeta)> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        // Block for the first message, then gather for at most FLUSH_EVERY.
        let Some(first) = rx.recv().await else {
            break;
        };
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Message::Record(r) => pending.push(*r),
                Message::Flush(done) => waiting.push(done),
            }
            if pending.len() >= BATCH || !waiting.is_empty() {
                break;
            }
            next = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => Some(m),
                _ => None,
            };
        }
        write_until_done(&db, &writer, &mut heads, &mut pending).await;
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    // Every handle is gone: write what is left.
    write_until_done(&db, &writer, &mut heads, &mut pending).await;
}

/// Writes `pending` in batches, retrying a failed commit after a pause.
async fn write_until_done(
    db: &Db,
    writer: &str,
    heads: &mut HashMap<String, usize>,
    pending: &mut Vec<(Uuid, ApiRequest, CommandMeta)>,
) {
    while !pending.is_empty() {
        let n = pending.len().min(BATCH);
        match write(db, writer, heads, &pending[..n]).await {
            Ok(()) => {
                pending.drain(..n);
            }
            Err(e) => {
                tracing::error!(error = %e, records = n, "usage log batch failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn write(
    db: &Db,
    writer: &str,
    heads: &mut HashMap<String, usize>,
    batch: &[(Uuid, ApiRequest, CommandMeta)],
) -> Result<(), EventStoreError> {
    let metadata: Vec<String> = batch
        .iter()
        .map(|(_, _, meta)| serde_json::to_string(&meta.to_map()).expect("metadata serializes"))
        .collect();
    // One append per stream, after the head this writer knows (it is the streams' only
    // writer), with the batch's records in order.
    let mut appends: Vec<StreamAppend> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for ((account, record, _), metadata) in batch.iter().zip(&metadata) {
        let stream = stream_of(*account, record.at, writer);
        let i = *index.entry(stream.clone()).or_insert_with(|| {
            appends.push(StreamAppend {
                expected: heads.get(&stream).copied().unwrap_or(0),
                stream: StreamId::new(
                    <journey_domain::usage::UsageDay as cqrs_es::Aggregate>::TYPE,
                    stream,
                ),
                events: Vec::new(),
            });
            appends.len() - 1
        });
        let event = UsageEvent::ApiRequestRecorded(Box::new(record.clone()));
        appends[i].events.push(NewEvent {
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_string(&event).expect("events serialize"),
            metadata,
        });
    }
    db.event_store.append(&appends).await?;
    db.appends.raise();
    metrics::counter!("journey_events_appended_total", "aggregate" => "usage")
        .increment(batch.len() as u64);
    for a in appends {
        heads.insert(a.stream.aggregate_id, a.expected + a.events.len());
    }
    Ok(())
}
