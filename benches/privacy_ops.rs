//! Privacy operations at scale, on Postgres. Prints figures; asserts nothing about speed.
//!
//!   cargo bench --bench privacy_ops
//!
//! 1. export of one subject with EXPORT_EVENTS (100k) events: streamed to a file (the CLI's
//!    JSON path), the JSON document the HTTP paths send, and the in-memory `Value` the HTML
//!    rendering starts from, each with the peak RSS after it;
//! 2. erasure (purge: key destruction, read-model cleanup, tombstones, certificate) of one
//!    subject in a store of 10k and of STORE_EVENTS (1M) events;
//! 3. a retention run over RETENTION_EVENTS (1M) events whose usage keys have expired, then
//!    Postgres alone rewriting the same rows in one UPDATE (the ceiling of compaction), with
//!    the ratio.
//!
//! Bulk events are written with SQL (generate_series) so the setup takes seconds, not hours;
//! projections are fast-forwarded past them (their read models are not what is measured).
//! Environment: JOURNEY_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test),
//! EXPORT_EVENTS, STORE_EVENTS, RETENTION_EVENTS, BENCH_ONLY (export, erasure or retention).

use chrono::{Duration, Utc};
mod common;

use journey_contexts::app::App;
use journey_contexts::identity::Ctx;
use journey_contexts::privacy::export_jobs::ExportFormat;
use journey_contexts::privacy::retention::RunMode;
use journey_domain::DataCategory;
use std::time::Instant;
use uuid::Uuid;

/// `count` CreditsReserved events in `subject`'s ledger stream, each with a client IP
/// sealed under the subject's usage key for `day` in its metadata.
async fn bulk_events(
    app: &App,
    subject: Uuid,
    from_seq: i64,
    count: i64,
    day: chrono::DateTime<Utc>,
) {
    let ip = app
        .vault
        .seal(
            &subject.to_string(),
            DataCategory::Usage,
            day,
            &"198.51.100.7".to_string(),
        )
        .await
        .unwrap();
    let ip = serde_json::to_string(&ip).unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'credit_ledger', $1, g, 'CreditsReserved', '1',
                json_build_object('CreditsReserved', json_build_object(
                    'task_id', md5($1 || g::text)::uuid, 'amount', 1, 'allocations', '[]'::json,
                    'at', '2026-01-01T00:00:00Z')),
                json_build_object('actor', 'system', 'request_id', 'bench-' || g,
                    'at', '2026-01-01T00:00:00+00:00', 'client_ip', $2::text)
         FROM generate_series($3::bigint, $4::bigint) g",
    )
    .bind(subject.to_string())
    .bind(ip)
    .bind(from_seq)
    .bind(from_seq + count - 1)
    .execute(&app.db.any)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO subject_streams (subject, aggregate_type, aggregate_id, first_position)
         VALUES ($1, 'credit_ledger', $1, 0) ON CONFLICT DO NOTHING",
    )
    .bind(subject.to_string())
    .execute(&app.db.any)
    .await
    .unwrap();
}

/// Moves every projection's checkpoint to the head: the bulk events' read models are
/// not what these benchmarks measure.
async fn fast_forward(app: &App) {
    for name in app.runner.names() {
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, txid, position, updated_at)
             SELECT $1, max(txid::text::bigint), max(position), 0 FROM events
             ON CONFLICT (name) DO UPDATE SET txid = EXCLUDED.txid, position = EXCLUDED.position",
        )
        .bind(name)
        .execute(&app.db.any)
        .await
        .unwrap();
    }
}

/// Lets the database settle after a bulk load (statistics, WAL flushed), so the timed
/// part measures the operation, not the aftermath of the setup.
async fn settle(app: &App) {
    for sql in ["VACUUM ANALYZE", "CHECKPOINT"] {
        sqlx::query(sql).execute(&app.db.any).await.unwrap();
    }
}

/// This process's peak resident memory (`VmHWM` of /proc/self/status), in MB, since it
/// started or since the last `reset_peak_rss`.
fn peak_rss_mb() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or_else(|| "n/a".into(), |kb| format!("{:.0} MB", kb / 1024.0))
}

/// Resets `VmHWM` to the current RSS (Linux: `5` written to /proc/self/clear_refs), so the
/// next `peak_rss_mb` is the peak since now.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Filler: `total` events over subjects of 10,000 events each.
async fn filler(app: &App, total: i64, day: chrono::DateTime<Utc>) -> Vec<Uuid> {
    let mut subjects = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(10_000);
        let s = Uuid::new_v4();
        bulk_events(app, s, 1, n, day).await;
        subjects.push(s);
        left -= n;
    }
    subjects
}

async fn bench_export(events: i64) {
    let app = common::fresh_app(false).await;
    let subject = common::register(&app).await;
    bulk_events(&app, subject, 1, events, Utc::now()).await;
    fast_forward(&app).await;
    settle(&app).await;
    // The summary loads the subject's ledger aggregate (all 100k events, once, then
    // cached): load it first so that neither timed export pays for it, and reset the
    // peak before each export so that each peak printed is its own.
    let t = Instant::now();
    app.credits().balance(subject).await.unwrap();
    println!(
        "export warm-up: the subject's ledger aggregate ({} events) loaded for the summary → {:.2} s, peak RSS {}",
        events,
        t.elapsed().as_secs_f64(),
        peak_rss_mb()
    );
    reset_peak_rss();
    let path = std::env::temp_dir().join(format!("privacy-ops-export-{subject}.json"));
    let t = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    app.privacy()
        .write_export_json(subject, &mut out, |_, _| {})
        .await
        .unwrap();
    drop(out);
    let streamed = t.elapsed();
    let size = std::fs::metadata(&path).unwrap().len();
    std::fs::remove_file(&path).unwrap();
    let report = |what: &str, took: std::time::Duration, document: Option<usize>| {
        let document = document.map_or_else(String::new, |bytes| {
            format!(", document {:.1} MB", bytes as f64 / 1e6)
        });
        println!(
            "export {what}: subject with {} events → {:.2} s ({:.0} events/s){document}, peak RSS {}",
            events + 1,
            took.as_secs_f64(),
            (events + 1) as f64 / took.as_secs_f64(),
            peak_rss_mb()
        );
    };
    report("streamed to a file (CLI)", streamed, Some(size as usize));
    reset_peak_rss();
    let t = Instant::now();
    let text = app
        .privacy()
        .export_document(subject, ExportFormat::Json, |_, _| {})
        .await
        .unwrap();
    report(
        "as the HTTP paths send it (JSON, in memory)",
        t.elapsed(),
        Some(text.len()),
    );
    drop(text);
    reset_peak_rss();
    let t = Instant::now();
    let doc = app
        .privacy()
        .build_export(subject, |_, _| {})
        .await
        .unwrap();
    report(
        "built as a Value (what the HTML rendering starts from)",
        t.elapsed(),
        None,
    );
    drop(doc);
    app.db.close().await;
}

async fn bench_erasure(store: i64) {
    let app = common::fresh_app(false).await;
    filler(&app, store, Utc::now()).await;
    fast_forward(&app).await;
    let subject = common::register(&app).await;
    // The subject's own history: 100 ledger events with sealed IPs.
    bulk_events(&app, subject, 1, 100, Utc::now()).await;
    fast_forward(&app).await;
    // Ask for deletion now; purge when the 30-day window has ended.
    let ctx = Ctx::system(app.clock.now());
    app.privacy()
        .request_deletion(subject, Some("delete my account"), &ctx)
        .await
        .unwrap();
    app.runner.catch_up().await.unwrap();
    settle(&app).await;
    let t = Instant::now();
    let report = app
        .privacy()
        .retention_run(ctx.at + Duration::days(31), RunMode::Simulate, &ctx)
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(report.accounts_purged, 1);
    println!(
        "erasure: one subject (101 events) in a store of {store} events → {:.3} s ({} events tombstoned)",
        took.as_secs_f64(),
        report.events_tombstoned
    );
    app.db.close().await;
}

async fn bench_retention(events: i64) {
    let app = common::fresh_app(false).await;
    let day = Utc::now() - Duration::days(100);
    let subjects = filler(&app, events, day).await;
    fast_forward(&app).await;
    settle(&app).await;
    let ctx = Ctx::system(app.clock.now());
    reset_peak_rss();
    let t = Instant::now();
    let report = app
        .privacy()
        .retention_run(ctx.at, RunMode::Apply, &ctx)
        .await
        .unwrap();
    let took = t.elapsed();
    println!(
        "retention run: {events} expired events over {} subjects → {:.2} s ({:.0} events/s compacted); keys destroyed {:?}, events tombstoned {}, peak RSS {}",
        subjects.len(),
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64(),
        report.keys_destroyed,
        report.events_tombstoned,
        peak_rss_mb()
    );
    // What Postgres itself does with the same write: the tombstoned rows rewritten again,
    // each to the text it holds, in one UPDATE (a new row version and entries in the
    // events table's indexes per row, as compaction's).
    settle(&app).await;
    let t = Instant::now();
    let rewritten = sqlx::query(
        "UPDATE events SET payload = payload::text::json, metadata = metadata::text::json
         WHERE aggregate_type = 'credit_ledger'",
    )
    .execute(&app.db.any)
    .await
    .unwrap()
    .rows_affected();
    let alone = rewritten as f64 / t.elapsed().as_secs_f64();
    println!(
        "  Postgres alone: one UPDATE rewriting the same {rewritten} rows → {:.2} s ({alone:.0} rows/s); compaction at {:.2}× that",
        t.elapsed().as_secs_f64(),
        (events as f64 / took.as_secs_f64()) / alone
    );
    app.db.close().await;
}

#[tokio::main]
async fn main() {
    let export = common::env_or("EXPORT_EVENTS", 100_000);
    let store = common::env_or("STORE_EVENTS", 1_000_000);
    let retention = common::env_or("RETENTION_EVENTS", 1_000_000);
    // BENCH_ONLY=export|erasure|retention runs one part.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only == part;
    println!("backend postgres");
    if run("export") {
        bench_export(export).await;
    }
    if run("erasure") {
        bench_erasure(10_000).await;
        bench_erasure(store).await;
    }
    if run("retention") {
        bench_retention(retention).await;
    }
}
