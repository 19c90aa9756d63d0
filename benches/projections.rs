//! Projection rebuild speed, on Postgres. Prints figures; asserts nothing about speed.
//!
//!   cargo bench --bench projections
//!
//! Writes REBUILD_EVENTS (default 1M) credit-ledger events (`CreditsReserved`) over 1,000
//! accounts with SQL, then rebuilds, one at a time:
//! - `credit_entries`, which writes one ledger row per event (read, decode, insert);
//! - `accounts`, which reads and decodes every event and applies none of these (the floor:
//!   reading the store in commit order);
//!
//! then times Postgres copying the rebuilt rows into an empty copy of the table in one
//! statement, the ceiling of any rebuild that writes them, and prints the ratio.
//!
//! Environment: JOURNEY_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test),
//! REBUILD_EVENTS.

mod common;

use std::time::Instant;

#[tokio::main]
async fn main() {
    let events: i64 = common::env_or("REBUILD_EVENTS", 1_000_000);
    let app = common::fresh_app(false).await;
    let accounts = 1_000i64;
    let per = (events / accounts).max(1);
    // One statement for all accounts: account `a` gets sequences 1..=per.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'credit_ledger', md5('acct' || a::text)::uuid::text, g, 'CreditsReserved', '1',
                json_build_object('CreditsReserved', json_build_object(
                    'task_id', md5(a::text || '/' || g::text)::uuid, 'amount', 1,
                    'allocations', '[]'::json, 'at', '2026-01-01T00:00:00Z')),
                json_build_object('actor', 'system', 'request_id', 'bench',
                    'at', '2026-01-01T00:00:00+00:00')
         FROM generate_series(1, $1::bigint) a, generate_series(1, $2::bigint) g",
    )
    .bind(accounts)
    .bind(per)
    .execute(&app.db.any)
    .await
    .unwrap();
    for sql in ["VACUUM ANALYZE", "CHECKPOINT"] {
        sqlx::query(sql).execute(&app.db.any).await.unwrap();
    }
    // Every projection starts at the head, so a rebuild replays only its own projection
    // (behind ones would otherwise ride along in the same batches).
    // (The names are the projections' own static identifiers.)
    let names: Vec<String> = app
        .runner
        .names()
        .iter()
        .map(|n| format!("('{n}')"))
        .collect();
    sqlx::query(&format!(
        "INSERT INTO projection_checkpoints (name, txid, position, updated_at)
         SELECT n, (SELECT max(txid::text::bigint) FROM events), (SELECT max(position) FROM events), 0
         FROM (VALUES {}) AS v(n)
         ON CONFLICT (name) DO UPDATE SET txid = EXCLUDED.txid, position = EXCLUDED.position",
        names.join(", ")
    ))
    .execute(&app.db.any)
    .await
    .unwrap();
    let total = accounts * per;
    println!("projection rebuild over {total} events ({accounts} ledgers of {per})");
    let mut ledger_rate = 0.0;
    for name in ["credit_entries", "accounts"] {
        let t = Instant::now();
        let applied = app.runner.rebuild(name, |_, _| {}).await.unwrap();
        let secs = t.elapsed().as_secs_f64();
        let rate = total as f64 / secs;
        if name == "credit_entries" {
            ledger_rate = rate;
        }
        println!(
            "  rebuild {name:<15} {secs:>6.2} s  {rate:>9.0} events/s read  ({applied} applied)"
        );
    }
    // What Postgres itself does with the same rows: the rebuilt ledger rows copied in one
    // INSERT … SELECT into an empty table like rm_credit_entries (same primary key, same
    // ON CONFLICT DO NOTHING): the ceiling of any rebuild that writes them.
    for sql in [
        "CREATE TABLE bench_entries_copy (LIKE rm_credit_entries INCLUDING ALL)",
        "CHECKPOINT",
    ] {
        sqlx::query(sql).execute(&app.db.any).await.unwrap();
    }
    let t = Instant::now();
    let rows = sqlx::query(
        "INSERT INTO bench_entries_copy SELECT * FROM rm_credit_entries ON CONFLICT DO NOTHING",
    )
    .execute(&app.db.any)
    .await
    .unwrap()
    .rows_affected();
    let secs = t.elapsed().as_secs_f64();
    let alone = rows as f64 / secs;
    println!(
        "  Postgres alone: one INSERT … SELECT of the same {rows} rows {secs:>6.2} s  {alone:>9.0} rows/s; the credit_entries rebuild at {:.2}× that",
        ledger_rate / alone
    );
    app.db.close().await;
}
