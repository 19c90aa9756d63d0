//! What the benchmarks share: a fresh database and an application built on it.
// Each bench compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use journey_contexts::app::{App, Core};
use journey_contexts::config::Config;
use journey_domain::account::{AccountCommand, SignInMethod};
use journey_domain::meta::CommandMeta;
use journey_domain::DataCategory;
use std::process::Command;
use uuid::Uuid;

/// The server binary's allocator (api/src/main.rs), so that what is measured is what runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A number from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The application on a fresh database: a new `journey_bench_<uuid>` database on the
/// Postgres server of `JOURNEY_BENCH_DATABASE_URL` (default the local `test` one), or a
/// new SQLite file when that variable is `sqlite` and `sqlite_allowed`.
pub async fn fresh_app(sqlite_allowed: bool) -> App {
    fresh_app_with(sqlite_allowed, |_| {}).await
}

/// `fresh_app` with configuration changes.
pub async fn fresh_app_with(sqlite_allowed: bool, tweak: impl FnOnce(&mut Config)) -> App {
    let base = std::env::var("JOURNEY_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let dir = std::env::temp_dir().join(format!("journey-bench-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = if base == "sqlite" {
        assert!(sqlite_allowed, "this benchmark runs on Postgres only");
        format!("sqlite://{}", dir.join("bench.db").display())
    } else {
        let name = format!("journey_bench_{}", Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&base)
            .await
            .expect("Postgres reachable");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        let mut u = url::Url::parse(&base).unwrap();
        u.set_path(&format!("/{name}"));
        u.to_string()
    };
    let mut cfg = Config {
        data_dir: dir,
        database_url: Some(url),
        master_key: Some("00112233445566778899aabbccddeeff0f1e2d3c4b5a69788796a5b4c3d2e1f0".into()),
        pepper: Some("bench-pepper-0123456789abcdef".into()),
        retention_interval_secs: 0,
        ..Config::default()
    };
    tweak(&mut cfg);
    Core::build(cfg, None).await.expect("app builds")
}

/// A registered account (real commands, so every projection sees it).
pub async fn register(app: &App) -> Uuid {
    let id = Uuid::new_v4();
    let now = app.clock.now();
    let email = app
        .vault
        .seal(
            &id.to_string(),
            DataCategory::Account,
            now,
            &format!("{id}@example.com"),
        )
        .await
        .unwrap();
    let meta = CommandMeta::system(now);
    // The benchmark registers accounts directly (no email round trip), on a store of its own.
    journey_commands::Store::<journey_domain::account::Account>::new(&app.db)
        .execute(
            &id.to_string(),
            AccountCommand::Register {
                email,
                method: SignInMethod::MagicLink,
                google: None,
                terms: None,
                at: now,
            },
            &meta,
        )
        .await
        .unwrap();
    app.runner.catch_up().await.unwrap();
    id
}

/// pgbench: single-row INSERTs into a one-column table, `clients` connections.
pub fn pgbench(url: &str, clients: usize, seconds: u64) -> Option<f64> {
    let script =
        std::env::temp_dir().join(format!("journey-bench-{}.sql", Uuid::new_v4().simple()));
    std::fs::write(&script, "INSERT INTO bench_rows (v) VALUES (:client_id);\n").ok()?;
    let psql = |sql: &str| Command::new("psql").args([url, "-qc", sql]).status().ok();
    psql("SET client_min_messages = warning; CREATE TABLE IF NOT EXISTS bench_rows (id bigserial PRIMARY KEY, v bigint)")?;
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-f",
            script.to_str()?,
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
            "-T",
            &seconds.to_string(),
            url,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps"))?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok();
    let _ = std::fs::remove_file(script);
    tps
}
