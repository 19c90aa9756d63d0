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

/// CPU time in seconds, read from /proc: where a benchmark's load went, so that a figure
/// can be read as a cost per operation (on a shared 2-core machine, throughput is CPU).
#[derive(Clone, Debug, Default)]
pub struct CpuTimes {
    /// This process (server, load generator and fakes, when they run in-process).
    pub this_process: f64,
    /// This process's threads by name (exited threads are only in `this_process`).
    pub threads: std::collections::BTreeMap<String, f64>,
    /// Children of this process that exited and were waited for (pgbench, psql).
    pub children: f64,
    /// Every `postgres` process, with what the postmaster reaped from exited backends.
    pub postgres: f64,
    /// `postgres` by role: client backends, WAL writer, autovacuum, exited processes…
    pub postgres_roles: std::collections::BTreeMap<String, f64>,
    /// The machine, all cores: busy and idle.
    pub busy: f64,
    pub idle: f64,
}

impl CpuTimes {
    pub fn now() -> CpuTimes {
        let tick = clock_tick();
        let mut t = CpuTimes::default();
        if let Some(f) = stat_fields("/proc/self/stat") {
            t.this_process = (f[11] + f[12]) / tick;
            t.children = (f[13] + f[14]) / tick;
        }
        for task in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = task.path();
            let labelled = task
                .file_name()
                .to_str()
                .and_then(|tid| tid.parse().ok())
                .and_then(|tid: u32| THREAD_LABELS.lock().unwrap().get(&tid).cloned());
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            // "actix-server worker 3" and "actix-server worker 12" are one group.
            let group = labelled.unwrap_or_else(|| {
                name.trim()
                    .trim_end_matches(|c: char| c.is_ascii_digit())
                    .trim()
                    .to_string()
            });
            if let Some(f) = stat_fields(path.join("stat")) {
                *t.threads.entry(group).or_default() += (f[11] + f[12]) / tick;
            }
        }
        for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let path = p.path();
            let is_pid = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
            if is_pid
                && std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == "postgres")
            {
                if let Some(f) = stat_fields(path.join("stat")) {
                    let own = (f[11] + f[12]) / tick;
                    let reaped = (f[13] + f[14]) / tick;
                    t.postgres += own + reaped;
                    let role = postgres_role(&path);
                    *t.postgres_roles.entry(role).or_default() += own;
                    if reaped > 0.0 {
                        *t.postgres_roles
                            .entry("exited processes".into())
                            .or_default() += reaped;
                    }
                }
            }
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
            let cpu: Vec<f64> = stat
                .lines()
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            if cpu.len() >= 8 {
                // user nice system idle iowait irq softirq steal
                t.idle = (cpu[3] + cpu[4]) / tick;
                t.busy = (cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + cpu[7]) / tick;
            }
        }
        t
    }

    /// What was spent between `before` and `self`.
    pub fn since(&self, before: &CpuTimes) -> CpuTimes {
        CpuTimes {
            this_process: self.this_process - before.this_process,
            threads: self
                .threads
                .iter()
                .map(|(k, v)| (k.clone(), v - before.threads.get(k).copied().unwrap_or(0.0)))
                .collect(),
            children: self.children - before.children,
            postgres: self.postgres - before.postgres,
            postgres_roles: self
                .postgres_roles
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v - before.postgres_roles.get(k).copied().unwrap_or(0.0),
                    )
                })
                .collect(),
            busy: self.busy - before.busy,
            idle: self.idle - before.idle,
        }
    }
}

/// What a `postgres` process does, from the title it sets (`postgres: walwriter`,
/// `postgres: <user> <database> <address> <state>` for a client's backend).
fn postgres_role(proc_dir: &std::path::Path) -> String {
    let cmdline = std::fs::read_to_string(proc_dir.join("cmdline")).unwrap_or_default();
    match cmdline.strip_prefix("postgres: ") {
        None => "postmaster".into(),
        Some(title) if title.contains(" 127.0.0.1(") || title.contains(" [local]") => {
            "client backends".into()
        }
        Some(title) => title.trim_end_matches('\0').trim().to_string(),
    }
}

/// Threads counted under a label of their own rather than their name (`label_threads`).
static THREAD_LABELS: std::sync::Mutex<std::collections::BTreeMap<u32, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// This process's thread ids.
pub fn thread_ids() -> std::collections::BTreeSet<u32> {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .collect()
}

/// Counts the threads started since `before` (taken with `thread_ids`) as `label`: actix
/// names every server's workers alike, so an in-process fake's are told apart this way.
pub fn label_threads(before: &std::collections::BTreeSet<u32>, label: &str) {
    let mut labels = THREAD_LABELS.lock().unwrap();
    for tid in thread_ids().difference(before) {
        labels.entry(*tid).or_insert_with(|| label.to_string());
    }
}

/// The fields of a /proc stat file after the command name (field 3, the state, is [0]).
fn stat_fields(path: impl AsRef<std::path::Path>) -> Option<Vec<f64>> {
    let text = std::fs::read_to_string(path).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(
        rest.split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect(),
    )
    .filter(|f: &Vec<f64>| f.len() > 14)
}

/// Clock ticks per second of /proc's CPU times.
fn clock_tick() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}
