//! Aggregate stores over any event-store backend (`Db::event_store`, see `event_store`).
//! Loads and appends go through the backend trait; the optimistic lock is the backend's
//! check of each stream's expected version. There are no snapshots (cqrs-es 0.5's snapshot
//! modes apply new events twice to saved snapshots): recent aggregate states are kept in
//! memory instead.

use crate::db::Db;
use crate::event_store::{EventStoreError, NewEvent, StoredEvent, StreamAppend, StreamId};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateError, DomainEvent};
use journey_domain::meta::CommandMeta;
use std::collections::HashMap;

/// A backend failure as cqrs-es's error (the stores' internal currency).
fn store_failed<E: std::error::Error>(e: EventStoreError) -> AggregateError<E> {
    match e {
        EventStoreError::Conflict(_) => AggregateError::AggregateConflict,
        other => AggregateError::UnexpectedError(Box::new(other)),
    }
}

/// Serializes an aggregate's events for an append.
fn serialize<'m, E: DomainEvent, X: std::error::Error>(
    events: &[E],
    metadata: &'m str,
) -> Result<Vec<NewEvent<'m>>, AggregateError<X>> {
    events
        .iter()
        .map(|event| {
            Ok(NewEvent {
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serde_json::to_string(event)
                    .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?,
                metadata,
            })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError<E: std::error::Error> {
    /// The aggregate refused the command (a business rule).
    #[error("{0}")]
    Rejected(E),
    /// Concurrent writers kept winning; the caller may retry later.
    #[error("too many concurrent changes, try again")]
    Conflict,
    #[error("event store: {0}")]
    Storage(String),
}

impl<E: std::error::Error> From<AggregateError<E>> for StoreError<E> {
    fn from(e: AggregateError<E>) -> Self {
        match e {
            AggregateError::UserError(e) => StoreError::Rejected(e),
            AggregateError::AggregateConflict => StoreError::Conflict,
            other => StoreError::Storage(other.to_string()),
        }
    }
}

/// How many times a command is re-run against fresh state after losing an optimistic-lock
/// race. Re-running is safe: the aggregate re-validates against the winner's events.
const CONFLICT_ATTEMPTS: u32 = 12;

/// Jittered exponential backoff so that contending writers spread out instead of
/// colliding again in lock step (2 ms after the first loss, then 4, 8 ... capped at 50 ms,
/// each times a random 0.5–1.5).
async fn backoff(attempt: u32) {
    use rand::Rng;
    let base = (1u64 << attempt.min(6)).min(50) as f64;
    let jitter: f64 = rand::thread_rng().gen_range(0.5..1.5);
    tokio::time::sleep(std::time::Duration::from_micros(
        (base * jitter * 1000.0) as u64,
    ))
    .await;
}

/// Commands for one aggregate id run one at a time within this process (striped locks),
/// so contention there costs a wait instead of optimistic-lock retries; writers in other
/// processes are still serialized by the optimistic lock.
const LOCK_STRIPES: usize = 128;

/// Aggregates whose state is kept in memory per store. A hit reads only the events
/// appended since (by any process), so a long stream is not replayed on every command.
const CACHE_LIMIT: usize = 10_000;

pub struct Store<A: Aggregate> {
    /// Its `event_store` does every read and append.
    db: Db,
    stripes: Vec<tokio::sync::Mutex<()>>,
    cache: std::sync::Mutex<HashMap<String, (A, usize)>>,
    /// Commands waiting for their aggregate (group commit, see `execute`).
    queues: std::sync::Mutex<HashMap<String, Vec<Queued<A>>>>,
}

/// A command waiting for its aggregate, with the channel its answer goes back on.
struct Queued<A: Aggregate> {
    command: A::Command,
    meta: CommandMeta,
    reply: tokio::sync::oneshot::Sender<Result<(), StoreError<A::Error>>>,
}

impl<A> Store<A>
where
    A: Aggregate<Services = ()> + Clone,
    A::Command: Clone,
{
    pub fn new(db: &Db) -> Self {
        Store {
            db: db.clone(),
            stripes: (0..LOCK_STRIPES).map(|_| Default::default()).collect(),
            cache: Default::default(),
            queues: Default::default(),
        }
    }

    fn stripe(&self, id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(id);
        &self.stripes[(h as usize) % LOCK_STRIPES]
    }

    fn remember(&self, id: &str, aggregate: A, sequence: usize) {
        let mut cache = self.cache.lock().expect("store cache");
        if cache.len() >= CACHE_LIMIT && !cache.contains_key(id) {
            // Crude but bounded: start over rather than track recency.
            cache.clear();
        }
        cache.insert(id.to_string(), (aggregate, sequence));
    }

    /// The aggregate's current state and sequence: the cached state plus every event
    /// committed after it (the whole stream on a miss). `take` moves the state out of the
    /// cache instead of copying it (the caller holds the id's stripe and puts it back).
    async fn state(&self, id: &str, take: bool) -> Result<(A, usize), AggregateError<A::Error>> {
        let cached = {
            let mut cache = self.cache.lock().expect("store cache");
            if take {
                cache.remove(id)
            } else {
                cache.get(id).cloned()
            }
        };
        let (mut aggregate, mut sequence) = cached.unwrap_or_default();
        let newer = self.newer(id, sequence).await?;
        let changed = !newer.is_empty();
        for e in newer {
            let event: A::Event = serde_json::from_value(e.payload)
                .map_err(|err| AggregateError::DeserializationError(Box::new(err)))?;
            aggregate.apply(event);
            sequence = e.sequence as usize;
        }
        if changed && !take {
            self.remember(id, aggregate.clone(), sequence);
        }
        Ok((aggregate, sequence))
    }

    /// The state a command runs on: the cached state as it is, without a read (the append's
    /// sequence check catches a writer in another process), or the whole stream on a miss.
    /// The flag says whether the state was read just now. Only refusals need the read: a
    /// refusal on an unread state is re-checked with `moved_since`.
    async fn for_command(&self, id: &str) -> Result<(A, usize, bool), AggregateError<A::Error>> {
        if let Some((aggregate, sequence)) = self.cache.lock().expect("store cache").remove(id) {
            return Ok((aggregate, sequence, false));
        }
        let (aggregate, sequence) = self.state(id, true).await?;
        Ok((aggregate, sequence, true))
    }

    /// The stream's events after `sequence`.
    async fn newer(
        &self,
        id: &str,
        sequence: usize,
    ) -> Result<Vec<StoredEvent>, AggregateError<A::Error>> {
        self.db
            .event_store
            .load(&StreamId::new(A::TYPE, id), sequence)
            .await
            .map_err(store_failed::<A::Error>)
    }

    /// Appends a batch's events after `sequence` in one transaction.
    async fn append(
        &self,
        id: &str,
        sequence: usize,
        events: Vec<NewEvent<'_>>,
    ) -> Result<(), AggregateError<A::Error>> {
        let appended = events.len() as u64;
        let append = StreamAppend {
            stream: StreamId::new(A::TYPE, id),
            expected: sequence,
            events,
        };
        self.db
            .event_store
            .append(std::slice::from_ref(&append))
            .await
            .map_err(store_failed::<A::Error>)?;
        // Wakes this process's projection runner (see `Db::appends`).
        self.db.appends.raise();
        metrics::counter!("journey_events_appended_total", "aggregate" => A::TYPE)
            .increment(appended);
        Ok(())
    }

    /// Whether another writer appended to the stream after `sequence`.
    async fn moved_since(
        &self,
        id: &str,
        sequence: usize,
    ) -> Result<bool, AggregateError<A::Error>> {
        Ok(self
            .db
            .event_store
            .version(&StreamId::new(A::TYPE, id))
            .await
            .map_err(store_failed::<A::Error>)?
            != sequence)
    }

    /// Handles one command against the current state and appends its events, failing with
    /// `AggregateConflict` if another writer appended first.
    ///
    /// `handle` runs on the state itself, not a copy (copying a large aggregate per command
    /// was the hot path's main cost). That is sound because aggregates change only through
    /// `EventSink::write`, which applies each event it records: an empty sink means an
    /// unchanged state, and a non-empty one is exactly the events' effect.
    async fn run(
        &self,
        id: &str,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<(), AggregateError<A::Error>> {
        let (mut aggregate, sequence) = self.state(id, true).await?;
        let sink = EventSink::default();
        let outcome = aggregate.handle(command, &(), &sink).await;
        let events = sink.collect().await;
        if let Err(e) = outcome {
            // A refusal that wrote nothing left the state as it was.
            if events.is_empty() {
                self.remember(id, aggregate, sequence);
            }
            return Err(AggregateError::UserError(e));
        }
        if events.is_empty() {
            self.remember(id, aggregate, sequence);
            return Ok(());
        }
        let appended = events.len();
        let metadata = serde_json::to_string(&meta.to_map())
            .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?;
        self.append(id, sequence, serialize::<_, A::Error>(&events, &metadata)?)
            .await?;
        self.remember(id, aggregate, sequence + appended);
        Ok(())
    }

    /// Runs a command on the aggregate and commits its events.
    ///
    /// Group commit: commands for one aggregate id queue up; whoever holds the id's turn
    /// takes every command queued so far, runs them one after another on the in-memory
    /// state and appends all their events in one transaction, then answers each caller
    /// (a refused command gets its own error and takes no part in the append). One hot
    /// aggregate therefore costs one commit per batch, not per command. A lost race with a
    /// writer in another process re-runs the whole batch against fresh state (up to
    /// `CONFLICT_ATTEMPTS` times, with backoff).
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<(), StoreError<A::Error>> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        self.queues
            .lock()
            .expect("store queues")
            .entry(id.to_string())
            .or_default()
            .push(Queued {
                command,
                meta: meta.clone(),
                reply,
            });
        let _turn = self.stripe(id).lock().await;
        // An earlier holder of the turn may have run this command with its batch.
        if let Ok(done) = answer.try_recv() {
            return done;
        }
        let batch = self
            .queues
            .lock()
            .expect("store queues")
            .remove(id)
            .unwrap_or_default();
        self.run_batch(id, batch).await;
        answer
            .await
            .unwrap_or(Err(StoreError::Storage("command dropped".into())))
    }

    /// Runs a batch of queued commands (see `execute`) and answers every one of them.
    async fn run_batch(&self, id: &str, mut batch: Vec<Queued<A>>) {
        let mut attempt = 0;
        while !batch.is_empty() {
            attempt += 1;
            match self.try_batch(id, &batch).await {
                Ok(outcomes) => {
                    let mut rest = Vec::new();
                    for (q, outcome) in batch.into_iter().zip(outcomes) {
                        match outcome {
                            Some(result) => {
                                let _ = q.reply.send(result);
                            }
                            // Not reached: a refusal before it left the state unusable.
                            None => rest.push(q),
                        }
                    }
                    batch = rest;
                }
                Err(AggregateError::AggregateConflict) if attempt < CONFLICT_ATTEMPTS => {
                    backoff(attempt).await;
                }
                Err(e) => {
                    let e = StoreError::from(e);
                    for q in batch {
                        let _ = q.reply.send(Err(match &e {
                            StoreError::Conflict => StoreError::Conflict,
                            other => StoreError::Storage(other.to_string()),
                        }));
                    }
                    return;
                }
            }
        }
    }

    /// One attempt at a batch: every command runs on the current state; the events of those
    /// accepted go out in one append. Returns each command's outcome (`None` for commands
    /// not reached because a refusal that had written events spoiled the state — they are
    /// run again next round).
    async fn try_batch(
        &self,
        id: &str,
        batch: &[Queued<A>],
    ) -> Result<Vec<Option<Result<(), StoreError<A::Error>>>>, AggregateError<A::Error>> {
        let (mut aggregate, sequence, fresh) = self.for_command(id).await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        // Each accepted command's events with its metadata, serialized after the loop.
        let mut accepted: Vec<(Vec<A::Event>, String)> = Vec::new();
        let mut spoiled = false;
        let mut refused = false;
        for q in batch {
            if spoiled {
                outcomes.push(None);
                continue;
            }
            let sink = EventSink::default();
            let outcome = aggregate.handle(q.command.clone(), &(), &sink).await;
            let events = sink.collect().await;
            match outcome {
                Err(e) => {
                    // A refusal that wrote events changed the state: stop here.
                    spoiled = !events.is_empty();
                    refused = true;
                    outcomes.push(Some(Err(StoreError::Rejected(e))));
                }
                Ok(()) => {
                    let metadata = serde_json::to_string(&q.meta.to_map())
                        .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?;
                    if !events.is_empty() {
                        accepted.push((events, metadata));
                    }
                    outcomes.push(Some(Ok(())));
                }
            }
        }
        // A refusal must not rest on a state another process has moved past (a grant
        // written by the CLI, say): then the whole batch runs again on a fresh read.
        if refused && !fresh && self.moved_since(id, sequence).await? {
            return Err(AggregateError::AggregateConflict);
        }
        let mut serialized = Vec::new();
        for (events, metadata) in &accepted {
            serialized.extend(serialize::<_, A::Error>(events, metadata)?);
        }
        let appended = serialized.len();
        if appended > 0 {
            self.append(id, sequence, serialized).await?;
        }
        if !spoiled {
            self.remember(id, aggregate, sequence + appended);
        }
        Ok(outcomes)
    }

    /// Like `execute`, but a lost race is reported instead of retried (tests, strict callers).
    pub async fn execute_once(
        &self,
        id: &str,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<(), StoreError<A::Error>> {
        self.run(id, command, meta).await.map_err(StoreError::from)
    }

    /// Current state (read-your-own-write: includes every committed event).
    pub async fn load(&self, id: &str) -> Result<(A, usize), StoreError<A::Error>> {
        Ok(self.state(id, false).await?)
    }

    /// Runs a command and keeps its events uncommitted, for a `UnitOfWork` that commits
    /// them together with other streams and rows. The id's stripe stays held until the
    /// `Decided` is committed or dropped, so no other command on this id in this process
    /// decides against the state it is about to change. A refusal is returned at once and
    /// changes nothing.
    /// `decide` for a stream that cannot exist yet (its id was just generated): nothing is
    /// read; if it did exist, the append would fail its sequence check.
    pub async fn decide_new(
        &self,
        id: &str,
        command: A::Command,
    ) -> Result<Decided<'_, A>, StoreError<A::Error>> {
        let turn = self.stripe(id).lock().await;
        let mut aggregate = A::default();
        let sink = EventSink::default();
        aggregate
            .handle(command, &(), &sink)
            .await
            .map_err(StoreError::Rejected)?;
        Ok(Decided {
            store: self,
            id: id.to_string(),
            _turn: turn,
            state: aggregate,
            base: 0,
            events: sink.collect().await,
        })
    }

    pub async fn decide(
        &self,
        id: &str,
        command: A::Command,
    ) -> Result<Decided<'_, A>, StoreError<A::Error>> {
        let turn = self.stripe(id).lock().await;
        let (mut aggregate, mut sequence, fresh) = self.for_command(id).await?;
        let sink = EventSink::default();
        let mut outcome = aggregate.handle(command.clone(), &(), &sink).await;
        let mut events = sink.collect().await;
        if outcome.is_err() && !fresh && self.moved_since(id, sequence).await? {
            // Refused on a state another process has moved past: decide again on a read.
            if events.is_empty() {
                self.remember(id, aggregate, sequence);
            }
            (aggregate, sequence) = self.state(id, true).await?;
            let sink = EventSink::default();
            outcome = aggregate.handle(command, &(), &sink).await;
            events = sink.collect().await;
        }
        if let Err(e) = outcome {
            if events.is_empty() {
                self.remember(id, aggregate, sequence);
            }
            return Err(StoreError::Rejected(e));
        }
        Ok(Decided {
            store: self,
            id: id.to_string(),
            _turn: turn,
            state: aggregate,
            base: sequence,
            events,
        })
    }
}

/// One aggregate's decided, not yet committed events (see `Store::decide`). Dropping it
/// without `committed` forgets the cached state, so the next command re-reads the stream.
pub struct Decided<'s, A: Aggregate> {
    store: &'s Store<A>,
    id: String,
    _turn: tokio::sync::MutexGuard<'s, ()>,
    state: A,
    base: usize,
    events: Vec<A::Event>,
}

impl<A> Decided<'_, A>
where
    A: Aggregate<Services = ()> + Clone,
    A::Command: Clone,
{
    /// The aggregate as it will be once these events are committed.
    pub fn state(&self) -> &A {
        &self.state
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stream's sequence before these events (the optimistic check).
    pub fn base(&self) -> usize {
        self.base
    }

    pub fn events(&self) -> &[A::Event] {
        &self.events
    }

    /// Call after the unit of work that appended these events has committed: the new
    /// state goes back into the store's cache. Returns it.
    pub fn committed(self) -> A {
        metrics::counter!("journey_events_appended_total", "aggregate" => A::TYPE)
            .increment(self.events.len() as u64);
        let sequence = self.base + self.events.len();
        self.store.remember(&self.id, self.state.clone(), sequence);
        self.state
    }
}
