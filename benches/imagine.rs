//! `POST /api/v1/imagine` throughput and latency on Postgres, over HTTP, with a fake
//! midjourney-proxy on loopback answering every submission at once; beside it, pgbench's
//! plain single-row INSERT throughput on the same server, measured in the same run.
//! Prints figures, with the CPU each imagine and each pgbench transaction cost and who spent
//! it (from /proc); asserts nothing about speed.
//!
//!   cargo bench --bench imagine
//!
//! Environment: JOURNEY_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test),
//! BENCH_SECONDS (per concurrency level, default 10), BENCH_CLIENTS (default "1,16,64"),
//! BENCH_DB_COUNTERS=0 to skip the per-imagine database counters (each reading waits 11 s).
//! Each client is its own account with its own API key, as distinct customers would be.

mod common;

use actix_web::{web, App as Web, HttpResponse, HttpServer};
use journey_contexts::app::App;
use journey_contexts::identity::Ctx;
use journey_domain::credits::{CreditCommand, GrantSource};
use journey_domain::meta::CommandMeta;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A midjourney-proxy that accepts every imagine at once (code 1, a fresh id).
async fn fake_proxy() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let next = Arc::new(AtomicU64::new(1));
    let server = HttpServer::new(move || {
        let next = next.clone();
        Web::new()
            .route(
                "/mj/submit/imagine",
                web::post().to(move || {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    async move {
                        HttpResponse::Ok().json(serde_json::json!({
                            "code": 1, "description": "Submit success", "result": id.to_string()
                        }))
                    }
                }),
            )
            .route(
                "/mj/task/list-by-condition",
                web::post().to(|| async { HttpResponse::Ok().json(serde_json::json!([])) }),
            )
    })
    .workers(2)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    url
}

async fn client_key(app: &App) -> String {
    let account = common::register(app).await;
    let meta = CommandMeta::system(app.clock.now());
    // Funded on a store of the benchmark's own (the credits context keeps its stores to
    // itself); the app's ledger state reads the grant on its first reservation.
    journey_commands::Store::<journey_domain::credits::CreditLedger>::new(&app.db)
        .execute(
            &account.to_string(),
            CreditCommand::Grant {
                grant_id: Uuid::new_v4(),
                source: GrantSource::Promotion,
                amount: 100_000_000,
                expires_at: None,
                idempotency_key: None,
                purchase_ref: None,
                note: None,
                at: meta.at,
            },
            &meta,
        )
        .await
        .unwrap();
    let ctx = Ctx::system(app.clock.now());
    app.identity()
        .create_api_key(account, "bench", &ctx)
        .await
        .unwrap()
        .key
}

struct Figures {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    requests: usize,
}

async fn run(base: String, keys: Vec<String>, seconds: u64) -> Figures {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks = keys.into_iter().map(|key| {
        let (http, url) = (http.clone(), format!("{base}/api/v1/imagine"));
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header("authorization", &key)
                    .json(&serde_json::json!({ "prompt": format!("bench {n}") }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                lat.push(t.elapsed());
                n += 1;
            }
            lat
        })
    });
    // Spawn every client before awaiting any (the iterator is lazy).
    let tasks: Vec<_> = tasks.collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let q = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Figures {
        per_sec: all.len() as f64 / elapsed,
        p50: q(0.50),
        p99: q(0.99),
        requests: all.len(),
    }
}

/// The database's own counters (`pg_stat_database`): transactions, tuples fetched and
/// inserted; and per table (`pg_stat_user_tables`) the rows read by sequential scans and
/// fetched by index scans, to say where the tuples go. Backends flush them when idle, at
/// most every 10 s (PGSTAT_IDLE_INTERVAL), so a reading waits that long after the load
/// stops.
struct Counters {
    transactions: i64,
    fetched: i64,
    inserted: i64,
    /// table → (sequential scans, rows they read, rows fetched through indexes)
    tables: std::collections::BTreeMap<String, (i64, i64, i64)>,
}

async fn db_counters(url: &str) -> Option<Counters> {
    tokio::time::sleep(Duration::from_secs(11)).await;
    let pool = sqlx::PgPool::connect(url).await.ok()?;
    let row: (i64, i64, i64) = sqlx::query_as(
        "SELECT xact_commit + xact_rollback, tup_fetched, tup_inserted
         FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&pool)
    .await
    .ok()?;
    let tables: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT relname::text, COALESCE(seq_scan, 0), COALESCE(seq_tup_read, 0),
                COALESCE(idx_tup_fetch, 0)
         FROM pg_stat_user_tables",
    )
    .fetch_all(&pool)
    .await
    .ok()?;
    pool.close().await;
    Some(Counters {
        transactions: row.0,
        fetched: row.1,
        inserted: row.2,
        tables: tables
            .into_iter()
            .map(|(t, scans, seq, idx)| (t, (scans, seq, idx)))
            .collect(),
    })
}

/// The tables that read the most rows per accepted imagine over a run, most first.
fn table_reads(b: &Counters, a: &Counters, n: f64) -> String {
    let mut rows: Vec<(String, f64, f64, i64)> = a
        .tables
        .iter()
        .map(|(t, after)| {
            let before = b.tables.get(t).copied().unwrap_or_default();
            (
                t.clone(),
                (after.2 - before.2) as f64 / n,
                (after.1 - before.1) as f64 / n,
                after.0 - before.0,
            )
        })
        .filter(|(_, idx, seq, _)| idx + seq >= 0.05)
        .collect();
    rows.sort_by(|x, y| (y.1 + y.2).total_cmp(&(x.1 + x.2)));
    rows.iter()
        .take(8)
        .map(|(t, idx, seq, scans)| {
            format!("{t} {idx:.1} by index + {seq:.1} by {scans} seq scans")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::main]
async fn main() {
    let seconds = common::env_or("BENCH_SECONDS", 10u64);
    let levels: Vec<usize> = std::env::var("BENCH_CLIENTS")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    // Where the CPU goes is printed per part (see `print_cpu`): the fake upstream's and the
    // server's threads are labelled as they start, and the clients run on a runtime of
    // their own; what is left on this runtime is the application's background work.
    let threads = common::thread_ids();
    let proxy = fake_proxy().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    common::label_threads(&threads, "fake upstream");
    let clients_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load-generator")
        .enable_all()
        .build()
        .unwrap();
    let app = common::fresh_app_with(false, |c| {
        let p = c.providers.get_mut("midjourney").expect("default provider");
        p.base_url = proxy.clone();
        p.api_key = Some("bench-key".into());
        c.max_tasks_in_flight = 1_000_000;
        c.api_requests_per_key_per_minute = 10_000_000;
        c.task_poll_interval_secs = 3600;
        // BENCH_REDIS_URL keeps the shared rate limits in Redis (as a multi-instance
        // deployment may) instead of the Postgres table: one transaction less per request.
        if let Ok(url) = std::env::var("BENCH_REDIS_URL") {
            c.redis_url = Some(url);
            c.redis_key_prefix = format!("bench-{}:", uuid::Uuid::new_v4().simple());
        }
    })
    .await;
    let url = app.cfg.database_url();
    let threads = common::thread_ids();
    let running = journey_api::server::start(app.clone(), "127.0.0.1:0")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    common::label_threads(&threads, "server");
    let base = format!("http://{}", running.addr);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "imagine over HTTP on Postgres, fake midjourney-proxy on loopback; {cores} cores; {seconds} s per level; rate limits in {}",
        app.limits.backend_name()
    );
    let most = *levels.iter().max().unwrap_or(&1);
    let mut keys = Vec::new();
    for _ in 0..most {
        keys.push(client_key(&app).await);
    }
    let counters = std::env::var("BENCH_DB_COUNTERS").map_or(true, |v| v != "0");
    for &clients in &levels {
        let before = if counters {
            db_counters(&url).await
        } else {
            None
        };
        let cpu_before = common::CpuTimes::now();
        let f = clients_rt
            .spawn(run(base.clone(), keys[..clients].to_vec(), seconds))
            .await
            .unwrap();
        let cpu_run = common::CpuTimes::now().since(&cpu_before);
        let rss = rss_mb();
        let after = if counters {
            db_counters(&url).await
        } else {
            None
        };
        // Costs include the projections' and the worker's catching up after the load,
        // which the counters' wait leaves time for; the busy share is the run's own.
        let cpu = common::CpuTimes::now().since(&cpu_before);
        let pg_before = common::CpuTimes::now();
        let pg = common::pgbench(&url, clients, seconds);
        let pg_cpu = common::CpuTimes::now().since(&pg_before);
        println!(
            "{clients:>3} clients: {:>7.1} imagine/s  p50 {:>6.1} ms  p99 {:>6.1} ms  ({} requests) | pgbench single-row INSERT: {} | ratio {}",
            f.per_sec,
            f.p50.as_secs_f64() * 1000.0,
            f.p99.as_secs_f64() * 1000.0,
            f.requests,
            pg.map(|t| format!("{t:.0} tx/s"))
                .unwrap_or_else(|| "unavailable (pgbench or psql missing)".into()),
            pg.map(|t| format!("{:.3}x", f.per_sec / t))
                .unwrap_or_else(|| "-".into()),
        );
        if let (Some(b), Some(a)) = (before, after) {
            let n = f.requests.max(1) as f64;
            println!(
                "     per accepted imagine: {:.1} transactions, {:.0} tuples fetched, {:.1} rows inserted (pg_stat_database, the run's database; background work included) | server RSS {}",
                (a.transactions - b.transactions) as f64 / n,
                (a.fetched - b.fetched) as f64 / n,
                (a.inserted - b.inserted) as f64 / n,
                rss.map(|m| format!("{m:.0} MB")).unwrap_or_else(|| "-".into()),
            );
            println!(
                "     rows read per accepted imagine, by table: {}",
                table_reads(&b, &a, n)
            );
        }
        print_cpu(
            &cpu,
            &cpu_run,
            f.requests,
            &pg_cpu,
            pg.map(|t| t * seconds as f64),
        );
    }
    running.handle.stop(true).await;
    app.db.close().await;
    clients_rt.shutdown_background();
}

/// Where the CPU went, per accepted imagine and per pgbench transaction. On this machine
/// both runs keep the cores busy, so the throughput ratio is close to the inverse ratio of
/// the machine's CPU per operation: this line says what an imagine costs, and who pays.
fn print_cpu(
    cpu: &common::CpuTimes,
    run: &common::CpuTimes,
    imagines: usize,
    pg: &common::CpuTimes,
    pg_tx: Option<f64>,
) {
    let us = |secs: f64, n: f64| secs * 1e6 / n.max(1.0);
    let n = imagines as f64;
    // The largest parts first, in µs per operation.
    let parts = |by: &std::collections::BTreeMap<String, f64>, n: f64| {
        let mut by: Vec<_> = by.iter().filter(|(_, s)| **s * 1e6 / n >= 1.0).collect();
        by.sort_by(|a, b| b.1.total_cmp(a.1));
        by.iter()
            .take(5)
            .map(|(name, s)| format!("{name} {:.0}", us(**s, n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let threads = parts(&cpu.threads, n);
    let busy = |c: &common::CpuTimes| 100.0 * c.busy / (c.busy + c.idle).max(1e-9);
    println!(
        "     CPU per accepted imagine: machine {:.0} µs ({:.0} % busy); this process {:.0} µs [{threads}]; postgres {:.0} µs [{}]",
        us(cpu.busy, n),
        busy(run),
        us(cpu.this_process, n),
        us(cpu.postgres, n),
        parts(&cpu.postgres_roles, n),
    );
    if let Some(tx) = pg_tx {
        println!(
            "     CPU per pgbench transaction: machine {:.0} µs ({:.0} % busy); pgbench {:.0} µs; postgres {:.0} µs [{}] | an imagine costs {:.1}x the machine's and {:.1}x Postgres's CPU of one",
            us(pg.busy, tx),
            busy(pg),
            us(pg.children, tx),
            us(pg.postgres, tx),
            parts(&pg.postgres_roles, tx),
            (cpu.busy / n) / (pg.busy / tx).max(1e-12),
            (cpu.postgres / n) / (pg.postgres / tx).max(1e-12),
        );
    }
}

/// This process's resident set (the server runs in-process), from /proc.
fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
