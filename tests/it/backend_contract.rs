//! The event-store contract, run unchanged on SQLite and (with JOURNEY_TEST_DATABASE_URL)
//! on Postgres: append/load, optimistic concurrency, commit-order replay, the late-commit
//! case, and checkpoints across a crash between batches.

use crate::support;

use anyhow::Result;
use async_trait::async_trait;
use chrono::Utc;
use cqrs_es::DomainEvent;
use journey_commands::event_store::{EventStoreError, NewEvent, StreamAppend, StreamId};
use journey_commands::{Db, Store, StoreError};
use journey_domain::api_key::{ApiKey, ApiKeyCommand, ApiKeyEvent};
use journey_domain::meta::CommandMeta;
use journey_projections::events::read_after;
use journey_projections::{Cursor, Projection, Runner, StoredEvent};
use sqlx::{AnyConnection, Row};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use uuid::Uuid;

async fn db() -> Db {
    let dir = support::temp_dir();
    let url = support::fresh_database(&dir).await;
    let db = Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    sqlx::query(
        "CREATE TABLE test_applied (position BIGINT PRIMARY KEY, aggregate_id TEXT NOT NULL)",
    )
    .execute(&db.any)
    .await
    .unwrap();
    db
}

fn meta() -> CommandMeta {
    CommandMeta::system(Utc::now())
}

fn create(account: Uuid) -> ApiKeyCommand {
    ApiKeyCommand::Create {
        account_id: account,
        name: journey_domain::Sealed::from_parts("k".into(), "n".into(), "c".into()),
        key_hash: Uuid::new_v4().to_string(),
        prefix: "p".into(),
        last4: "abcd".into(),
        at: Utc::now(),
    }
}

/// Records every applied event in `test_applied`; the primary key on position makes a
/// second application of the same event fail loudly. Fails on `fail_at` to simulate a crash.
struct Recorder {
    fail_at: AtomicI64,
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Recorder {
            fail_at: AtomicI64::new(-1),
        })
    }
}

#[async_trait]
impl Projection for Recorder {
    fn name(&self) -> &'static str {
        "test_recorder"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["test_applied"]
    }
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        for e in events {
            if e.cursor.position == self.fail_at.load(Ordering::SeqCst) {
                anyhow::bail!("simulated crash");
            }
            sqlx::query("INSERT INTO test_applied (position, aggregate_id) VALUES ($1, $2)")
                .bind(e.cursor.position)
                .bind(&e.aggregate_id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

async fn applied(db: &Db) -> Vec<i64> {
    sqlx::query("SELECT position FROM test_applied ORDER BY position")
        .fetch_all(&db.any)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect()
}

async fn all_positions(db: &Db) -> Vec<i64> {
    sqlx::query("SELECT position FROM events ORDER BY position")
        .fetch_all(&db.any)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect()
}

/// Runs catch-up until every event is applied or an error surfaces. On Postgres the
/// visibility horizon is cluster-wide, so transactions held open by other tests (in other
/// databases) can delay it; we wait instead of asserting on one pass.
async fn catch_up_fully(runner: &Runner, db: &Db) -> Result<()> {
    let total = all_positions(db).await.len();
    for _ in 0..400 {
        runner.catch_up().await?;
        if applied(db).await.len() >= total {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    anyhow::bail!("projection did not catch up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_and_load() {
    let db = db().await;
    let store: Store<ApiKey> = Store::new(&db);
    let id = Uuid::new_v4().to_string();
    let account = Uuid::new_v4();
    store.execute(&id, create(account), &meta()).await.unwrap();
    store
        .execute(&id, ApiKeyCommand::Revoke { at: Utc::now() }, &meta())
        .await
        .unwrap();
    let (key, seq) = store.load(&id).await.unwrap();
    assert_eq!(seq, 2);
    assert_eq!(key.account_id, Some(account));
    assert!(key.revoked);
    // Business rules still hold after reload.
    let err = store
        .execute(&id, ApiKeyCommand::RecordUse { at: Utc::now() }, &meta())
        .await;
    assert!(matches!(err, Err(StoreError::Rejected(_))));
    // Metadata is stored with each event.
    let events = journey_projections::events::read_stream(&db, "api_key", &id)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].metadata["actor"], "system");
    assert!(events[0].cursor.position < events[1].cursor.position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_one_wins_and_retry_succeeds() {
    let db = db().await;
    let store: Store<ApiKey> = Store::new(&db);
    let id = Uuid::new_v4().to_string();
    store
        .execute(&id, create(Uuid::new_v4()), &meta())
        .await
        .unwrap();

    // Two writers decided on the same version and both try to append.
    let used = || {
        let event = ApiKeyEvent::ApiKeyUsed { at: Utc::now() };
        StreamAppend {
            stream: StreamId::new("api_key", &id),
            expected: 1,
            events: vec![NewEvent {
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serde_json::to_string(&event).unwrap(),
                metadata: "{}",
            }],
        }
    };
    db.event_store.append(&[used()]).await.unwrap();
    let lost = db.event_store.append(&[used()]).await;
    assert!(
        matches!(lost, Err(EventStoreError::Conflict(_))),
        "second writer must conflict"
    );

    // A retry against fresh state succeeds.
    store
        .execute_once(&id, ApiKeyCommand::RecordUse { at: Utc::now() }, &meta())
        .await
        .unwrap();
    assert_eq!(store.load(&id).await.unwrap().1, 3);

    // Under real concurrency, retries make every writer land exactly once.
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                store
                    .execute(&id, ApiKeyCommand::RecordUse { at: Utc::now() }, &meta())
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.load(&id).await.unwrap().1, 11);
}

/// Appends that fit one statement are combined with those of other callers waiting at the
/// same moment (`event_store::combine`). Each caller must still get its own answer: 200
/// concurrent appends, five writers racing on each of 40 streams from the same version
/// (exactly one wins each, the others conflict naming their stream) and 40 on new streams
/// (all land). What was stored is what the answers said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_sent_together_each_get_their_own_answer() {
    let db = Arc::new(db().await);
    let append = |stream: String, expected: usize, writer: usize| {
        let db = db.clone();
        async move {
            let payload = serde_json::json!({ "Test": { "writer": writer } }).to_string();
            let append = StreamAppend {
                stream: StreamId::new("combine_test", &stream),
                expected,
                events: vec![NewEvent {
                    event_type: "Test".into(),
                    event_version: "1".into(),
                    payload,
                    metadata: "{}",
                }],
            };
            db.event_store.append(&[append]).await
        }
    };
    let contested: Vec<String> = (0..40).map(|i| format!("contested-{i}")).collect();
    for s in &contested {
        append(s.clone(), 0, 0).await.unwrap();
    }
    let mut tasks = Vec::new();
    for writer in 1..=5 {
        for s in &contested {
            let (s, task) = (s.clone(), append(s.clone(), 1, writer));
            tasks.push((s, writer, tokio::spawn(task)));
        }
    }
    for i in 0..40 {
        let s = format!("fresh-{i}");
        tasks.push((s.clone(), 0, tokio::spawn(append(s, 0, 0))));
    }
    let mut winners = std::collections::HashMap::new();
    for (stream, writer, task) in tasks {
        match task.await.unwrap() {
            Ok(()) if writer > 0 => {
                assert!(
                    winners.insert(stream.clone(), writer).is_none(),
                    "two writers won {stream}"
                );
            }
            Ok(()) => {}
            Err(EventStoreError::Conflict(moved)) => {
                assert!(writer > 0, "an append to a new stream conflicted: {stream}");
                assert!(
                    moved.iter().any(|m| m.aggregate_id == stream),
                    "the conflict names {stream}: {moved:?}"
                );
            }
            Err(e) => panic!("{stream}: {e}"),
        }
    }
    assert_eq!(winners.len(), 40, "every contested stream has one winner");
    for (stream, writer) in &winners {
        let events = journey_projections::events::read_stream(&db, "combine_test", stream)
            .await
            .unwrap();
        assert_eq!(events.len(), 2, "{stream}");
        assert_eq!(events[1].payload["Test"]["writer"], *writer, "{stream}");
    }
    for i in 0..40 {
        let events =
            journey_projections::events::read_stream(&db, "combine_test", &format!("fresh-{i}"))
                .await
                .unwrap();
        assert_eq!(events.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_in_commit_order() {
    let db = db().await;
    let store: Store<ApiKey> = Store::new(&db);
    let ids: Vec<String> = (0..3).map(|_| Uuid::new_v4().to_string()).collect();
    let mut expected = Vec::new();
    for round in 0..3 {
        for id in &ids {
            let cmd = if round == 0 {
                create(Uuid::new_v4())
            } else {
                ApiKeyCommand::RecordUse { at: Utc::now() }
            };
            store.execute(id, cmd, &meta()).await.unwrap();
            expected.push((id.clone(), round + 1));
        }
    }
    // On Postgres the safe horizon is cluster-wide: a transaction held open elsewhere (the
    // late-commit test, in another database) delays visibility, so wait for it.
    let mut conn = db.any.acquire().await.unwrap();
    let mut events = Vec::new();
    for _ in 0..200 {
        events = read_after(&db, &mut conn, Cursor::default(), 1000)
            .await
            .unwrap();
        if events.len() == expected.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let got: Vec<(String, i64)> = events
        .iter()
        .map(|e| (e.aggregate_id.clone(), e.sequence))
        .collect();
    assert_eq!(got, expected);
    assert!(events.windows(2).all(|w| w[0].cursor < w[1].cursor));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_commit_is_applied_exactly_once() {
    if !support::is_postgres() {
        // SQLite has a single writer: positions are assigned in commit order, so no event
        // can become visible behind a higher one. The Postgres leg runs this case.
        return;
    }
    let db = db().await;
    let journey_commands::db::TypedPool::Postgres(pg) = &db.typed else {
        unreachable!()
    };
    let store: Store<ApiKey> = Store::new(&db);
    let recorder = Recorder::new();
    let runner = Runner::new(db.clone(), vec![recorder.clone()]);

    store
        .execute(&Uuid::new_v4().to_string(), create(Uuid::new_v4()), &meta())
        .await
        .unwrap();
    // Hold a transaction that takes a position now but commits later.
    let mut held = pg.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('held', 'late', 1, 'Held', '1', '{}', '{}')",
    )
    .execute(&mut *held)
    .await
    .unwrap();
    let held_position: i64 = sqlx::query("SELECT position FROM events WHERE aggregate_id = 'late'")
        .fetch_one(&mut *held)
        .await
        .unwrap()
        .get(0);
    for _ in 0..3 {
        store
            .execute(&Uuid::new_v4().to_string(), create(Uuid::new_v4()), &meta())
            .await
            .unwrap();
    }
    runner.catch_up().await.unwrap();
    let before = applied(&db).await;
    assert!(
        !before.contains(&held_position),
        "uncommitted event not applied"
    );
    assert!(
        before.iter().all(|p| *p < held_position),
        "nothing after the held position is applied while it is in flight"
    );

    held.commit().await.unwrap();
    catch_up_fully(&runner, &db).await.unwrap();
    let after = applied(&db).await;
    assert_eq!(
        after,
        all_positions(&db).await,
        "every event applied exactly once"
    );
    assert!(after.contains(&held_position));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_survives_a_crash_between_batches() {
    let db = db().await;
    let store: Store<ApiKey> = Store::new(&db);
    for _ in 0..7 {
        store
            .execute(&Uuid::new_v4().to_string(), create(Uuid::new_v4()), &meta())
            .await
            .unwrap();
    }
    let positions = all_positions(&db).await;
    let recorder = Recorder::new();
    recorder.fail_at.store(positions[4], Ordering::SeqCst);
    let crashed = Runner::with_batch_size(db.clone(), vec![recorder.clone()], 2);
    let crash = catch_up_fully(&crashed, &db).await.unwrap_err();
    assert!(
        format!("{crash:#}").contains("simulated crash"),
        "the simulated crash surfaces: {crash:#}"
    );
    // Whole batches before the failing one stay committed; the failing batch rolls back.
    // (Batch boundaries depend on visibility, so the committed prefix may be shorter.)
    let committed = applied(&db).await;
    assert!(
        !committed.is_empty() && committed.len() <= 4,
        "{committed:?}"
    );
    assert_eq!(
        committed,
        positions[..committed.len()].to_vec(),
        "a prefix in commit order"
    );
    let checkpoint = crashed.status().await.unwrap()[0].cursor.position;
    assert_eq!(
        checkpoint,
        *committed.last().unwrap(),
        "checkpoint moved with the committed rows"
    );

    // A fresh runner (the restarted process) resumes from the checkpoint.
    recorder.fail_at.store(-1, Ordering::SeqCst);
    let restarted = Runner::with_batch_size(db.clone(), vec![recorder.clone()], 2);
    catch_up_fully(&restarted, &db).await.unwrap();
    assert_eq!(applied(&db).await, positions);
    let status = restarted.status().await.unwrap();
    assert_eq!(status[0].lag, 0);
    assert_eq!(status[0].cursor.position, *positions.last().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_never_apply_an_event_twice() {
    let db = db().await;
    let store: Store<ApiKey> = Store::new(&db);
    for _ in 0..40 {
        store
            .execute(&Uuid::new_v4().to_string(), create(Uuid::new_v4()), &meta())
            .await
            .unwrap();
    }
    let recorder = Recorder::new();
    let a = Runner::with_batch_size(db.clone(), vec![recorder.clone()], 3);
    let b = Runner::with_batch_size(db.clone(), vec![recorder.clone()], 3);
    let (ra, rb) = tokio::join!(catch_up_fully(&a, &db), catch_up_fully(&b, &db));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(applied(&db).await, all_positions(&db).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_do_not_compile_queries_with_jit() {
    if !support::is_postgres() {
        return; // SQLite has no JIT; the Postgres leg runs this case.
    }
    // A long export's read was estimated past `jit_above_cost` and spent longer compiling
    // than running (docs/performance.md): every pooled connection, of both pools, turns
    // JIT off. Several connections at once, so that more than the first one is checked.
    let db = db().await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = db.any.acquire().await.unwrap();
        let jit: String = sqlx::query_scalar("SHOW jit")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(jit, "off");
        held.push(conn);
    }
    let journey_commands::db::TypedPool::Postgres(pg) = &db.typed else {
        panic!("a Postgres database has a Postgres typed pool");
    };
    let jit: String = sqlx::query_scalar("SHOW jit").fetch_one(pg).await.unwrap();
    assert_eq!(jit, "off");
}
