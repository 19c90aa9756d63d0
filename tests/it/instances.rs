//! Many instances, one system: three real `journey serve` processes on one Postgres
//! database (plus the harness's own in-process instance), one test client spreading its
//! requests over them, one of them killed with SIGKILL mid-load. The per-key rate limit
//! and the in-flight cap hold over all of them together, every accepted task is submitted
//! upstream once and finishes once, the credits add up with nothing left reserved, and the
//! periodic retention run is done by one instance at a time, once per interval, and goes
//! on after the kill. Run with the limits in Postgres, and again in Redis.
//!
//! SQLite is single-instance (one process owns the file), so on the SQLite leg these tests
//! return at once.

use crate::support;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::process::ServerProcess;
use support::Harness;

/// API requests per key per minute: a burst of 12, then one every 5 s.
const PER_KEY: u32 = 12;
/// Tasks an account may have in flight.
const IN_FLIGHT: u32 = 4;
/// midjourney imagine (config/models.toml).
const PRICE: u64 = 4;
const GRANTED: u64 = 1000;
/// Seconds between retention runs (over all instances together).
const RETENTION_EVERY: u64 = 1;

/// Four instances open up to 4 × 32 database connections: the two tests take turns, so
/// that together they stay within Postgres's default 100.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn one_system(redis_prefix: Option<String>) {
    if !support::is_postgres() {
        eprintln!(
            "instances: skipped on SQLite, which is single-instance; set JOURNEY_TEST_DATABASE_URL"
        );
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let h = Harness::start_with(|c| {
        c.api_requests_per_key_per_minute = PER_KEY;
        c.max_tasks_in_flight = IN_FLIGHT;
        c.retention_interval_secs = RETENTION_EVERY;
        c.job_lease_secs = 3;
        c.task_poll_interval_secs = 1;
        if let Some(prefix) = &redis_prefix {
            c.redis_url = Some("redis://127.0.0.1:6379".into());
            c.redis_key_prefix = prefix.clone();
        }
    })
    .await;
    let want = if redis_prefix.is_some() {
        "redis"
    } else {
        "postgres"
    };
    assert_eq!(h.app.limits.backend_name(), want);
    let a = h.api_client("limits-a@example.com", GRANTED).await;
    let b = h.api_client("limits-b@example.com", GRANTED).await;
    let mut servers: Vec<ServerProcess> = (0..3).map(|_| ServerProcess::spawn(&h, &[])).collect();
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let http = reqwest::Client::new();

    // 1. The per-key rate limit: three times the budget, spread over the three instances
    //    at once. Each instance alone would allow PER_KEY.
    let started = Instant::now();
    let calls = (0..3 * PER_KEY as usize).map(|i| {
        let req = http
            .get(format!("{}/api/v1/account", bases[i % 3]))
            .header("authorization", &a.key);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.headers().contains_key("retry-after"))
        }
    });
    let answers = futures::future::join_all(calls).await;
    let elapsed = started.elapsed();
    let accepted = answers.iter().filter(|(s, _)| *s == 200).count() as u64;
    let limited: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(
        accepted + limited.len() as u64,
        3 * PER_KEY as u64,
        "{answers:?}"
    );
    assert!(
        limited.iter().all(|(_, retry)| *retry),
        "429s say when to retry"
    );
    // GCRA: the burst, plus one per refill interval that passed meanwhile.
    let refills = elapsed.as_millis() as u64 / (60_000 / PER_KEY as u64);
    assert!(
        accepted >= PER_KEY as u64 && accepted <= PER_KEY as u64 + refills,
        "{accepted} accepted over three instances in {elapsed:?}; the limit is {PER_KEY}"
    );

    // 2. The in-flight cap: twice the cap in tasks, at once, over the three instances.
    //    The fake provider holds every task until told to finish.
    let imagine = |base: &str, n: usize| {
        let req = http
            .post(format!("{base}/api/v1/imagine"))
            .header("authorization", &b.key)
            .json(&json!({ "prompt": format!("lighthouse number {n}") }));
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let answers =
        futures::future::join_all((0..2 * IN_FLIGHT as usize).map(|i| imagine(&bases[i % 3], i)))
            .await;
    let tasks: Vec<uuid::Uuid> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, v)| v["task_id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(tasks.len(), IN_FLIGHT as usize, "{answers:?}");
    for (status, v) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 429, "{v}");
        assert!(v.to_string().contains("in flight"), "{v}");
    }
    // Wait until every task's submission is recorded (its upstream id), so the kill below
    // falls on tasks in flight upstream rather than inside a submission.
    let mut submitted = false;
    for _ in 0..400 {
        let mut recorded = 0;
        for t in &tasks {
            let task = h.app.tasks().task(&t.to_string()).await.unwrap();
            recorded += usize::from(task.upstream_id.is_some());
        }
        if recorded == tasks.len() {
            submitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(submitted, "the workers submitted the tasks upstream");

    // 3. Kill -9 one instance while its tasks are in flight (and perhaps while it holds
    //    the retention lease). Its tasks still count against the cap on the others.
    let runs_before_kill = retention_runs(&h).await.len();
    servers[0].kill();
    for i in [1, 2] {
        let (status, v) = imagine(&bases[i], 100 + i).await;
        assert_eq!(
            status, 429,
            "the cap still counts the dead instance's tasks: {v}"
        );
    }

    // 4. The provider finishes everything; the survivors (and the harness's instance) take
    //    over the dead one's work once its leases run out.
    h.mj.finish_all().await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut statuses = Vec::new();
    loop {
        statuses.clear();
        for t in &tasks {
            let task = h.app.tasks().task(&t.to_string()).await.unwrap();
            statuses.push(task.status);
        }
        let (available, reserved) = b.balance(&h).await;
        let done = statuses
            .iter()
            .all(|s| *s == Some(journey_domain::task::TaskStatus::Finished));
        if done && reserved == 0 {
            assert_eq!(
                available,
                GRANTED - PRICE * tasks.len() as u64,
                "grants minus captures, each task charged once"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks {statuses:?}, balance {:?}",
            (available, reserved)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Each accepted task went upstream exactly once (the submit carries our task id as
    // `state`), and nothing else did.
    let mut submits = std::collections::BTreeMap::<String, usize>::new();
    for call in h.mj.calls() {
        if call.path.ends_with("/submit/imagine") {
            *submits
                .entry(call.body["state"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    let expected: std::collections::BTreeMap<String, usize> =
        tasks.iter().map(|t| (t.to_string(), 1)).collect();
    assert_eq!(submits, expected, "one submission per accepted task");

    // 5. The retention run: never two at once, at most once per interval, and it went on
    //    after the kill (a run the dead instance had started is done by another).
    //    At least three runs, so that there are two gaps to check even when none had been
    //    recorded before the kill.
    let wanted = (runs_before_kill + 2).max(3);
    let deadline = Instant::now() + Duration::from_secs(30);
    while retention_runs(&h).await.len() < wanted {
        assert!(
            Instant::now() < deadline,
            "retention runs stopped after the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runs = retention_runs(&h).await;
    assert!(runs.len() >= 3, "{runs:?}");
    for pair in runs.windows(2) {
        let (earlier, later) = (&pair[0], &pair[1]);
        // The next run is claimed only once the last one was done one interval ago (both
        // instants read from the same host's clock; 50 ms for the rounding of the two).
        let gap = later.0 - earlier.1;
        assert!(
            gap >= chrono::Duration::seconds(RETENTION_EVERY as i64)
                - chrono::Duration::milliseconds(50),
            "runs {earlier:?} and {later:?} are {gap} apart; the interval is {RETENTION_EVERY} s"
        );
    }

    // Where the limiter kept its state: the database's table only when there is no Redis.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rate_limits")
        .fetch_one(&h.app.db.any)
        .await
        .unwrap();
    if redis_prefix.is_some() {
        assert_eq!(
            rows, 0,
            "with Redis configured the database holds no limits"
        );
    } else {
        assert!(rows > 0);
    }
}

/// Recorded retention runs as (started, finished), oldest first.
async fn retention_runs(
    h: &Harness,
) -> Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
    let mut runs: Vec<_> = h
        .app
        .privacy()
        .retention_runs(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let at = |k: &str| {
                serde_json::from_value::<chrono::DateTime<chrono::Utc>>(r[k].clone()).unwrap()
            };
            (at("started_at"), at("finished_at"))
        })
        .collect();
    runs.sort();
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_postgres_share_limits_and_periodic_jobs() {
    one_system(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_with_redis_share_limits_and_periodic_jobs() {
    // A prefix of its own, so that parallel tests and earlier runs share no keys.
    one_system(Some(format!(
        "journey-test-{}:",
        uuid::Uuid::new_v4().simple()
    )))
    .await;
}

/// A limiter on the harness's Postgres database (one instance's worth), with a burst of 50
/// API-key checks per hour: one refill every 72 s, so none during a test.
async fn postgres_limiter(h: &Harness, pepper: &[u8]) -> journey_commands::limits::RateLimiter {
    use journey_commands::limits::{Quota, Quotas, RateLimiter, Settings};
    let limiter = RateLimiter::connect(
        &h.app.db,
        Settings {
            quotas: Quotas {
                email: Quota::per_hour(5),
                ip: Quota::per_hour(5),
                api_key: Quota::per_hour(50),
            },
            redis_url: None,
            redis_prefix: "",
            pepper,
        },
    )
    .await
    .unwrap();
    assert_eq!(limiter.backend_name(), "postgres");
    limiter
}

/// The Postgres limiter answers the checks queued in an instance with one statement, so
/// several checks of one key share a batch: they must be answered exactly as the same
/// checks one after another would be. Three limiters (three instances' worth) on one
/// database, 300 checks of one key at once under a burst of 50 per hour (one refill every
/// 72 s, so none during the test): exactly 50 pass, and every refusal says to wait about
/// one refill. A second key in the same batches keeps its own budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_postgres_checks_of_one_key_allow_exactly_its_budget() {
    use journey_commands::limits::{Decision, KeyKind};
    if !support::is_postgres() {
        eprintln!("instances: skipped on SQLite, whose limits stay in memory");
        return;
    }
    let h = Harness::start().await;
    let pepper = uuid::Uuid::new_v4().to_string();
    let mut limiters = Vec::new();
    for _ in 0..3 {
        limiters.push(postgres_limiter(&h, pepper.as_bytes()).await);
    }
    let checks = (0..300).map(|i| {
        let l = limiters[i % 3].clone();
        let key = if i % 10 == 9 { "other-key" } else { "hot-key" };
        async move { (key, l.check(KeyKind::ApiKey, key).await) }
    });
    let answers = futures::future::join_all(checks).await;
    for key in ["hot-key", "other-key"] {
        let mine: Vec<Decision> = answers
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, d)| *d)
            .collect();
        let allowed = mine.iter().filter(|d| **d == Decision::Allowed).count();
        assert_eq!(allowed, mine.len().min(50), "{key}: {mine:?}");
        for d in &mine {
            if let Decision::Limited { retry_after } = d {
                assert!(
                    *retry_after > Duration::from_secs(60)
                        && *retry_after <= Duration::from_secs(72),
                    "{key}: a refusal waits for one refill (72 s), not {retry_after:?}"
                );
            }
        }
    }
}

/// A bucket's time does not run backwards. A check that read the database's clock before
/// another instance's check updated the same bucket (it waited for the row's lock) counts
/// from the later reading: told to wait, a refused caller waits one refill at most. Here the
/// other instance is played by moving the bucket's last reading 5 s ahead with its whole
/// budget spent; counted from its own clock, the refusal said 77 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_updated_by_a_later_clock_reading_refuses_for_one_refill_at_most() {
    use journey_commands::limits::{Decision, KeyKind};
    if !support::is_postgres() {
        eprintln!("instances: skipped on SQLite, whose limits stay in memory");
        return;
    }
    let h = Harness::start().await;
    let limiter = postgres_limiter(&h, b"a pepper of this test").await;
    let buckets = || async {
        sqlx::query_scalar::<_, String>("SELECT bucket FROM rate_limits")
            .fetch_all(&h.app.db.any)
            .await
            .unwrap()
    };
    let before = buckets().await;
    assert_eq!(
        limiter.check(KeyKind::ApiKey, "late-key").await,
        Decision::Allowed
    );
    let bucket = buckets()
        .await
        .into_iter()
        .find(|b| !before.contains(b))
        .expect("the check made a bucket");
    // One hour of budget (50 × 72 s) spent, as of a clock reading 5 s from now.
    sqlx::query(
        "UPDATE rate_limits SET now_us = now_us + 5000000, tat_us = now_us + 5000000 + 3600000000
         WHERE bucket = $1",
    )
    .bind(&bucket)
    .execute(&h.app.db.any)
    .await
    .unwrap();
    match limiter.check(KeyKind::ApiKey, "late-key").await {
        Decision::Limited { retry_after } => assert!(
            retry_after > Duration::from_secs(60) && retry_after <= Duration::from_secs(72),
            "one refill (72 s) at most, not {retry_after:?}"
        ),
        other => panic!("the budget is spent: {other:?}"),
    }
}
