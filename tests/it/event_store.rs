//! The event-store contract: one set of tests written against `EventStoreBackend` and run
//! on every implementation — SQLite always (a temp file), Postgres too when
//! JOURNEY_TEST_DATABASE_URL is set (a fresh database per test). A new backend passes when
//! it is added to `backends` and these tests stay green.

use crate::support;

use journey_commands::db::Db;
use journey_commands::event_store::{
    Cursor, EventStoreBackend, EventStoreError, NewEvent, StoredEvent, StreamAppend, StreamId,
};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;

/// One backend under test, with the database it lives in (kept open for the test).
struct Backend {
    name: &'static str,
    db: Db,
}

impl Backend {
    fn store(&self) -> &Arc<dyn EventStoreBackend> {
        &self.db.event_store
    }
}

/// Every backend this machine can run, each on a fresh, migrated database. Add a third
/// backend here.
async fn backends() -> Vec<Backend> {
    let mut out = Vec::new();
    let dir = support::temp_dir();
    let sqlite = Db::connect(&format!("sqlite://{}", dir.join("events.db").display()))
        .await
        .unwrap();
    sqlite.migrate().await.unwrap();
    out.push(Backend {
        name: "sqlite",
        db: sqlite,
    });
    if support::is_postgres() {
        let url = support::fresh_database(&dir).await;
        let pg = Db::connect(&url).await.unwrap();
        pg.migrate().await.unwrap();
        out.push(Backend {
            name: "postgres",
            db: pg,
        });
    }
    for b in &out {
        assert_eq!(b.store().name(), b.name);
    }
    out
}

fn stream(kind: &str) -> StreamId {
    StreamId::new(kind, Uuid::new_v4().to_string())
}

fn event<'m>(n: usize, metadata: &'m str) -> NewEvent<'m> {
    NewEvent {
        event_type: "Happened".into(),
        event_version: "1.0".into(),
        payload: json!({ "Happened": { "n": n } }).to_string(),
        metadata,
    }
}

fn events<'m>(range: std::ops::Range<usize>, metadata: &'m str) -> Vec<NewEvent<'m>> {
    range.map(|n| event(n, metadata)).collect()
}

fn append<'m>(stream: &StreamId, expected: usize, events: Vec<NewEvent<'m>>) -> StreamAppend<'m> {
    StreamAppend {
        stream: stream.clone(),
        expected,
        events,
    }
}

async fn claims(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM test_claims")
        .fetch_one(&db.any)
        .await
        .unwrap()
}

fn n_of(e: &StoredEvent) -> u64 {
    e.payload["Happened"]["n"].as_u64().unwrap()
}

/// Reads on from `after` until `want` events have come back. On Postgres the safe horizon
/// is cluster-wide, so a transaction held open by another test (in another database) can
/// hold events back for a while: we read again instead of asserting on one pass.
async fn read_from(b: &Backend, mut after: Cursor, want: usize) -> Vec<StoredEvent> {
    let mut got = Vec::new();
    let mut conn = b.db.any.acquire().await.unwrap();
    for _ in 0..800 {
        let page = b
            .store()
            .read_range(&mut conn, after, None, 100)
            .await
            .unwrap();
        if let Some(last) = page.last() {
            after = last.cursor;
        }
        let empty = page.is_empty();
        got.extend(page);
        if got.len() >= want {
            return got;
        }
        if empty {
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
    panic!(
        "{}: only {} of {want} events became readable",
        b.name,
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_and_load_round_trip() {
    for b in backends().await {
        let s = stream("order");
        let meta = json!({"actor": "system"}).to_string();
        assert_eq!(b.store().version(&s).await.unwrap(), 0, "{}", b.name);
        assert!(b.store().load(&s, 0).await.unwrap().is_empty());
        b.store()
            .append(&[append(&s, 0, events(1..4, &meta))])
            .await
            .unwrap();
        b.store()
            .append(&[append(&s, 3, events(4..6, &meta))])
            .await
            .unwrap();
        assert_eq!(b.store().version(&s).await.unwrap(), 5, "{}", b.name);
        let all = b.store().load(&s, 0).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5],
            "{}",
            b.name
        );
        assert_eq!(
            all.iter().map(n_of).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        for e in &all {
            assert_eq!(e.aggregate_type, "order");
            assert_eq!(e.aggregate_id, s.aggregate_id);
            assert_eq!(e.event_type, "Happened");
            assert_eq!(e.event_version, "1.0");
            assert!(e.committed_at > 0, "{}: commit time recorded", b.name);
        }
        assert!(all.windows(2).all(|w| w[0].cursor < w[1].cursor));
        // A load after a version returns only what came later.
        let tail = b.store().load(&s, 3).await.unwrap();
        assert_eq!(
            tail.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(
            b.store().head(&s).await.unwrap(),
            Some(all.last().unwrap().cursor),
            "{}: head is the newest event",
            b.name
        );
        assert_eq!(b.store().head(&stream("order")).await.unwrap(), None);
        assert_eq!(b.store().total().await.unwrap(), 5);
        assert_eq!(b.store().count_after(all[1].cursor).await.unwrap(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_payload_round_trip() {
    for b in backends().await {
        let s = stream("profile");
        let metadata = json!({
            "actor": "account:7c0f",
            "request_id": "r-1",
            "client_ip": {"sealed": "AAECAw==", "key": "k/2026-W48"},
            "nested": {"list": [1, 2.5, null, true], "unicode": "Zoë — 東京 ✓"},
        });
        let payload =
            json!({"Renamed": {"to": "line\nbreak \"quoted\" \\ back", "n": 9007199254740991_u64}});
        let text = metadata.to_string();
        b.store()
            .append(&[append(
                &s,
                0,
                vec![NewEvent {
                    event_type: "Renamed".into(),
                    event_version: "2.1".into(),
                    payload: payload.to_string(),
                    metadata: &text,
                }],
            )])
            .await
            .unwrap();
        let loaded = b.store().load(&s, 0).await.unwrap();
        assert_eq!(loaded[0].metadata, metadata, "{}", b.name);
        assert_eq!(loaded[0].payload, payload, "{}", b.name);
        assert_eq!(loaded[0].event_version, "2.1");
        // The commit-order read returns the same values.
        let read = read_from(&b, Cursor::default(), 1).await;
        assert_eq!(read[0].metadata, metadata, "{}", b.name);
        assert_eq!(read[0].payload, payload, "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_expected_version_conflicts_and_writes_nothing() {
    for b in backends().await {
        let meta = "{}";
        let (moved, fresh, other) = (stream("a"), stream("b"), stream("c"));
        b.store()
            .append(&[append(&moved, 0, events(0..2, meta))])
            .await
            .unwrap();
        b.store()
            .append(&[append(&other, 0, events(0..1, meta))])
            .await
            .unwrap();
        // `moved` is at version 2; a writer that decided on version 1 (or 0) lost the race.
        for stale in [0, 1] {
            let err = b
                .store()
                .append(&[
                    append(&fresh, 0, events(0..3, meta)),
                    append(&moved, stale, events(0..1, meta)),
                    append(&other, 1, events(0..1, meta)),
                ])
                .await
                .unwrap_err();
            match err {
                EventStoreError::Conflict(streams) => {
                    assert_eq!(
                        streams,
                        vec![moved.clone()],
                        "{}: the moved stream is named",
                        b.name
                    )
                }
                other => panic!("{}: expected a conflict, got {other}", b.name),
            }
        }
        // Nothing of the failed appends was written, to any of their streams.
        assert_eq!(b.store().version(&fresh).await.unwrap(), 0, "{}", b.name);
        assert_eq!(b.store().version(&moved).await.unwrap(), 2, "{}", b.name);
        assert_eq!(b.store().version(&other).await.unwrap(), 1, "{}", b.name);
        assert_eq!(b.store().total().await.unwrap(), 3, "{}", b.name);
        // Decided again on the current versions, the same append goes through.
        b.store()
            .append(&[
                append(&fresh, 0, events(0..3, meta)),
                append(&moved, 2, events(0..1, meta)),
                append(&other, 1, events(0..1, meta)),
            ])
            .await
            .unwrap();
        assert_eq!(b.store().version(&moved).await.unwrap(), 3);
        assert_eq!(b.store().total().await.unwrap(), 8);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_stream_append_is_atomic_with_write_side_rows() {
    for b in backends().await {
        sqlx::query("CREATE TABLE test_claims (id TEXT PRIMARY KEY)")
            .execute(&b.db.any)
            .await
            .unwrap();
        let (x, y) = (stream("x"), stream("y"));
        let both = |n| {
            vec![
                append(&x, n, events(0..2, "{}")),
                append(&y, n, events(0..1, "{}")),
            ]
        };

        // Dropped before commit (a crash, or an error later in the use case): nothing.
        let mut tx = b.store().begin().await.unwrap();
        tx.append(&both(0)).await.unwrap();
        sqlx::query("INSERT INTO test_claims (id) VALUES ('c1')")
            .execute(tx.sql())
            .await
            .unwrap();
        drop(tx);
        assert_eq!(b.store().version(&x).await.unwrap(), 0, "{}", b.name);
        assert_eq!(b.store().version(&y).await.unwrap(), 0, "{}", b.name);
        assert_eq!(
            claims(&b.db).await,
            0,
            "{}: the row went with the events",
            b.name
        );

        // Committed: every stream and the row.
        let mut tx = b.store().begin().await.unwrap();
        tx.append(&both(0)).await.unwrap();
        sqlx::query("INSERT INTO test_claims (id) VALUES ('c1')")
            .execute(tx.sql())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(b.store().version(&x).await.unwrap(), 2, "{}", b.name);
        assert_eq!(b.store().version(&y).await.unwrap(), 1, "{}", b.name);
        assert_eq!(claims(&b.db).await, 1);
        // One transaction is one step of the global order: its events are contiguous.
        let read = read_from(&b, Cursor::default(), 3).await;
        assert_eq!(
            read.iter()
                .map(|e| (e.aggregate_type.as_str(), e.sequence))
                .collect::<Vec<_>>(),
            vec![("x", 1), ("x", 2), ("y", 1)],
            "{}",
            b.name
        );

        // A conflict on the second stream in a transaction: its first stream is not kept.
        let mut tx = b.store().begin().await.unwrap();
        tx.append(&[append(&x, 2, events(0..1, "{}"))])
            .await
            .unwrap();
        let err = tx.append(&[append(&y, 0, events(0..1, "{}"))]).await;
        assert!(
            matches!(err, Err(EventStoreError::Conflict(_))),
            "{}",
            b.name
        );
        drop(tx);
        assert_eq!(b.store().version(&x).await.unwrap(), 2, "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_order_is_commit_order() {
    for b in backends().await {
        let streams: Vec<StreamId> = (0..4).map(|_| stream("s")).collect();
        let mut expected = Vec::new();
        for round in 0..5 {
            for (i, s) in streams.iter().enumerate() {
                // Alternate single appends and two-stream appends.
                if i % 2 == 0 {
                    let next = &streams[i + 1];
                    b.store()
                        .append(&[
                            append(s, round, vec![event(round * 10 + i, "{}")]),
                            append(next, round, vec![event(round * 10 + i + 1, "{}")]),
                        ])
                        .await
                        .unwrap();
                    expected.push((s.aggregate_id.clone(), round as i64 + 1));
                    expected.push((next.aggregate_id.clone(), round as i64 + 1));
                }
            }
        }
        let read = read_from(&b, Cursor::default(), expected.len()).await;
        let got: Vec<(String, i64)> = read
            .iter()
            .map(|e| (e.aggregate_id.clone(), e.sequence))
            .collect();
        assert_eq!(got, expected, "{}", b.name);
        assert!(
            read.windows(2).all(|w| w[0].cursor < w[1].cursor),
            "{}",
            b.name
        );
        // `upto` bounds a read (inclusive), and a read resumes exactly after a cursor.
        let mut conn = b.db.any.acquire().await.unwrap();
        let upto = b
            .store()
            .read_range(&mut conn, Cursor::default(), Some(read[6].cursor), 100)
            .await
            .unwrap();
        assert_eq!(upto.len(), 7, "{}", b.name);
        let rest = b
            .store()
            .read_range(&mut conn, read[6].cursor, None, 100)
            .await
            .unwrap();
        assert_eq!(rest.len(), read.len() - 7, "{}", b.name);
        assert_eq!(rest[0].cursor, read[7].cursor);
        let limited = b
            .store()
            .read_range(&mut conn, Cursor::default(), None, 3)
            .await
            .unwrap();
        assert_eq!(limited.len(), 3);
        // Stream listing: newest first, by each stream's first event.
        let ids = b.store().stream_ids("s", 10).await.unwrap();
        let mut newest_first: Vec<String> =
            streams.iter().map(|s| s.aggregate_id.clone()).collect();
        newest_first.reverse();
        assert_eq!(ids, newest_first, "{}", b.name);
        assert_eq!(b.store().stream_ids("s", 2).await.unwrap().len(), 2);
        assert!(b.store().stream_ids("none", 10).await.unwrap().is_empty());
    }
}

/// The safe horizon: a transaction that took its positions first but commits last is not
/// skipped by a reader that read on from its last cursor in between. On Postgres the two
/// transactions really overlap (the later one commits first); SQLite has one writer, so
/// the second waits for the first and the case is trivially in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_on_never_skips_a_late_commit() {
    for b in backends().await {
        let (before, late, early) = (stream("before"), stream("late"), stream("early"));
        b.store()
            .append(&[append(&before, 0, events(0..2, "{}"))])
            .await
            .unwrap();
        // The late transaction appends (taking its positions now) and stays open.
        let mut held = b.store().begin().await.unwrap();
        held.append(&[append(&late, 0, events(0..3, "{}"))])
            .await
            .unwrap();
        // Another transaction appends after it and commits while it is open. SQLite has
        // one writer: there it waits for the write lock until `held` commits.
        let store = b.store().clone();
        let early_id = early.clone();
        let other = tokio::spawn(async move {
            store
                .append(&[append(&early_id, 0, events(0..2, "{}"))])
                .await
        });
        let overlapped = b.name != "sqlite";
        let other = if overlapped {
            other.await.unwrap().unwrap();
            None
        } else {
            Some(other)
        };
        // A reader reads whatever is safe now and remembers where it stopped.
        let mut conn = b.db.any.acquire().await.unwrap();
        let first = b
            .store()
            .read_range(&mut conn, Cursor::default(), None, 100)
            .await
            .unwrap();
        drop(conn);
        assert!(
            first.iter().all(|e| e.aggregate_type != "late"),
            "{}: uncommitted events are not read",
            b.name
        );
        if overlapped {
            assert!(
                first.iter().all(|e| e.aggregate_type != "early"),
                "{}: events committed behind an open transaction are held back",
                b.name
            );
            assert!(b.store().held_back().await.unwrap(), "{}", b.name);
        }
        held.commit().await.unwrap();
        if let Some(other) = other {
            other.await.unwrap().unwrap();
        }
        // Reading on from the reader's last cursor yields every remaining event once.
        let after = first.last().map(|e| e.cursor).unwrap_or_default();
        let rest = read_from(&b, after, 7 - first.len()).await;
        let all: Vec<&StoredEvent> = first.iter().chain(&rest).collect();
        let seen: HashSet<(String, i64)> = all
            .iter()
            .map(|e| (e.aggregate_type.clone(), e.sequence))
            .collect();
        assert_eq!(all.len(), 7, "{}: no event read twice", b.name);
        assert_eq!(seen.len(), 7, "{}", b.name);
        for s in ["before", "late", "early"] {
            assert!(
                seen.iter().any(|(t, _)| t == s),
                "{}: {s} events read",
                b.name
            );
        }
        assert!(
            all.windows(2).all(|w| w[0].cursor < w[1].cursor),
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_exactly_one_wins_per_version() {
    for b in backends().await {
        let s = stream("hot");
        for version in 0..4usize {
            let writers: Vec<_> = (0..6)
                .map(|w| {
                    let (store, s) = (b.store().clone(), s.clone());
                    tokio::spawn(async move {
                        store
                            .append(&[append(&s, version, vec![event(version * 10 + w, "{}")])])
                            .await
                    })
                })
                .collect();
            let mut won = 0;
            for w in writers {
                match w.await.unwrap() {
                    Ok(()) => won += 1,
                    Err(EventStoreError::Conflict(streams)) => assert_eq!(streams, vec![s.clone()]),
                    Err(e) => panic!("{}: {e}", b.name),
                }
            }
            assert_eq!(won, 1, "{}: one winner at version {version}", b.name);
            assert_eq!(b.store().version(&s).await.unwrap(), version + 1);
        }
        let loaded = b.store().load(&s, 0).await.unwrap();
        assert_eq!(
            loaded.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            vec![1, 2, 3, 4],
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_append_and_read_back_whole() {
    for b in backends().await {
        let meta = json!({"actor": "system"}).to_string();
        let big = stream("big");
        let many: Vec<StreamId> = (0..3).map(|_| stream("many")).collect();
        // More rows than one statement takes, in one stream and across streams.
        b.store()
            .append(&[append(&big, 0, events(0..1_234, &meta))])
            .await
            .unwrap();
        let spread: Vec<StreamAppend> = many
            .iter()
            .map(|s| append(s, 0, events(0..700, &meta)))
            .collect();
        b.store().append(&spread).await.unwrap();
        let loaded = b.store().load(&big, 0).await.unwrap();
        assert_eq!(loaded.len(), 1_234, "{}", b.name);
        assert!(loaded
            .iter()
            .enumerate()
            .all(|(i, e)| e.sequence == i as i64 + 1 && n_of(e) == i as u64));
        for s in &many {
            assert_eq!(b.store().version(s).await.unwrap(), 700, "{}", b.name);
        }
        let read = read_from(&b, Cursor::default(), 1_234 + 2_100).await;
        assert_eq!(read.len(), 3_334, "{}", b.name);
        assert!(read.windows(2).all(|w| w[0].cursor < w[1].cursor));

        // A large append whose conflict is in a later statement still writes nothing.
        let fresh = stream("fresh");
        let err = b
            .store()
            .append(&[
                append(&fresh, 0, events(0..1_100, &meta)),
                append(&big, 1_000, events(0..5, &meta)),
            ])
            .await
            .unwrap_err();
        assert!(err.is_conflict(), "{}: {err}", b.name);
        assert_eq!(b.store().version(&fresh).await.unwrap(), 0, "{}", b.name);
        assert_eq!(b.store().total().await.unwrap(), 3_334, "{}", b.name);
    }
}

/// The stored JSON is what was given, not re-encoded into something else: sealed values
/// (base64 text) and numbers survive exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_json_is_kept_exactly() {
    for b in backends().await {
        let s = stream("sealed");
        let payload: Value =
            json!({"Sealed": {"v": "q83vASNFZ4mrze8BI0VniQ==", "big": i64::MAX, "neg": -1}});
        let text = payload.to_string();
        b.store()
            .append(&[append(
                &s,
                0,
                vec![NewEvent {
                    event_type: "Sealed".into(),
                    event_version: "1".into(),
                    payload: text,
                    metadata: "{}",
                }],
            )])
            .await
            .unwrap();
        let e = &b.store().load(&s, 0).await.unwrap()[0];
        assert_eq!(e.payload, payload, "{}", b.name);
        assert_eq!(e.metadata, json!({}), "{}", b.name);
    }
}
