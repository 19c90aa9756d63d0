//! Credit reservations per second: on one hot account, and spread over many accounts.
//! Prints figures; asserts nothing about speed.
//!
//!   cargo bench --bench credit_reservations                  # Postgres (default URL below)
//!   JOURNEY_BENCH_DATABASE_URL=sqlite cargo bench --bench credit_reservations
//!
//! Options (environment): BENCH_RESERVATIONS (default 20000), BENCH_WORKERS (16),
//! BENCH_ACCOUNTS (200). On Postgres, pgbench's single-row INSERT rate at the same number of
//! clients is printed beside, and each figure as a ratio of it.
//!
//! pgbench measures a steady state (its connections open, its table in cache), so the
//! spread run is preceded by one untimed reservation per account: each ledger is loaded
//! into the store's cache, and the pool has opened its connections, as in a server that
//! has been running. (With 5,000 reservations and no warm-up, a run lasted under a second,
//! of which the 200 first loads and the connections' TLS handshakes took a good part.)

mod common;

use journey_contexts::app::App;
use journey_contexts::identity::Ctx;
use journey_domain::credits::{CreditCommand, GrantSource};
use journey_domain::meta::{Actor, CommandMeta};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

async fn fund(app: &App, account: Uuid) {
    let meta = CommandMeta::system(app.clock.now());
    // Funded on a store of the benchmark's own (the credits context keeps its stores to
    // itself); the app's ledger state reads the grant on its first reservation.
    journey_commands::Store::<journey_domain::credits::CreditLedger>::new(&app.db)
        .execute(
            &account.to_string(),
            CreditCommand::Grant {
                grant_id: Uuid::new_v4(),
                source: GrantSource::Promotion,
                amount: 1_000_000_000,
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
}

struct Figures {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// `total` reservations of 1 credit by `workers` concurrent callers; each picks its
/// account with `pick(i)`.
async fn run(
    app: &App,
    total: usize,
    workers: usize,
    pick: Arc<dyn Fn(usize) -> Uuid + Send + Sync>,
) -> Figures {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (app, next, pick) = (app.clone(), next.clone(), pick.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return lat;
                    }
                    let ctx = Ctx::system(app.clock.now());
                    let t = Instant::now();
                    app.credits()
                        .reserve_credits(pick(i), Uuid::new_v4(), 1, Actor::System, &ctx)
                        .await
                        .expect("reservation");
                    lat.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    Figures {
        per_sec: total as f64 / elapsed.as_secs_f64(),
        p50: all[all.len() / 2],
        p99: all[all.len() * 99 / 100],
    }
}

fn report(label: &str, f: &Figures) {
    println!(
        "{label:<44} {:>9.0} reservations/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
        f.per_sec,
        f.p50.as_secs_f64() * 1000.0,
        f.p99.as_secs_f64() * 1000.0
    );
}

#[tokio::main]
async fn main() {
    let total = common::env_or("BENCH_RESERVATIONS", 20000);
    let workers = common::env_or("BENCH_WORKERS", 16);
    let accounts = common::env_or("BENCH_ACCOUNTS", 200);
    let app = common::fresh_app(true).await;
    let backend = match app.db.backend {
        journey_commands::Backend::Postgres => "postgres",
        journey_commands::Backend::Sqlite => "sqlite",
    };
    println!("backend {backend}, {total} reservations per run, {workers} concurrent callers");

    let hot = Uuid::new_v4();
    fund(&app, hot).await;
    let first = run(&app, total, workers, Arc::new(move |_| hot)).await;
    report("one hot account (stream 0 → N events)", &first);
    let second = run(&app, total, workers, Arc::new(move |_| hot)).await;
    report("one hot account (stream N → 2N events)", &second);

    let ids: Vec<Uuid> = (0..accounts).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        fund(&app, *id).await;
    }
    let ids = Arc::new(ids);
    let round_robin: Arc<dyn Fn(usize) -> Uuid + Send + Sync> =
        Arc::new(move |i| ids[i % ids.len()]);
    run(&app, accounts, workers, round_robin.clone()).await;
    let spread = run(&app, total, workers, round_robin).await;
    report(&format!("{accounts} accounts, round robin"), &spread);
    if backend == "postgres" {
        let url = app.cfg.database_url();
        match common::pgbench(&url, workers, 10) {
            Some(tps) => println!(
                "pgbench single-row INSERT, {workers} clients: {tps:.0} tx/s | hot account {:.2}x, {accounts} accounts {:.2}x",
                second.per_sec / tps,
                spread.per_sec / tps
            ),
            None => println!("pgbench unavailable (pgbench or psql missing)"),
        }
    }
    app.db.close().await;
}
