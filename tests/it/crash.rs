//! Crashes injected between every two steps of accepting a task (`JOURNEY_FAULT`: the real
//! server process aborts there, as `kill -9` would). Whatever the instant, the client's
//! retry with the same Idempotency-Key gets one task, charged once, and no credits stay
//! reserved for a task that does not exist or never ends.

use crate::support;
use serde_json::json;
use support::process::ServerProcess;
use support::Harness;

/// midjourney imagine (config/models.toml).
const PRICE: u64 = 4;

/// Where the crash falls, and what the retry should find.
#[derive(Clone, Copy, PartialEq, Debug)]
enum After {
    /// Nothing was committed: the retry creates the task.
    Nothing,
    /// The task was committed but never (known to be) submitted: the retry answers with
    /// it, and the worker fails it after the submit grace and releases its credits.
    Committed,
}

const POINTS: [(&str, After); 4] = [
    ("accept.sealed", After::Nothing),
    ("accept.before_commit", After::Nothing),
    ("accept.committed", After::Committed),
    ("submit.accepted", After::Committed),
];

async fn crash_then_retry(point: &str, after: After) {
    let h = Harness::start().await;
    let c = h.api_client("crash@example.com", 100).await;
    let body = json!({ "prompt": "a lighthouse in a storm" });
    let key = [("idempotency-key", "crash-retry-1")];

    let mut dying = ServerProcess::spawn(&h, &[("JOURNEY_FAULT", point)]);
    let r = reqwest::Client::new()
        .post(dying.url("/api/v1/imagine"))
        .header("authorization", &c.key)
        .header("idempotency-key", key[0].1)
        .json(&body)
        .send()
        .await;
    assert!(
        r.is_err(),
        "{point}: the server should have died mid-request"
    );
    assert!(dying.wait_crashed().await, "{point}: aborted");

    // The client retries with the same key against the surviving instance.
    let (status, first) = c.post_with(&h, "imagine", &body, &key).await;
    assert_eq!(status, 200, "{point}: {first}");
    let task: uuid::Uuid = first["task_id"].as_str().unwrap().parse().unwrap();
    let (status, again) = c.post_with(&h, "imagine", &body, &key).await;
    assert_eq!(status, 200, "{point}: {again}");
    assert_eq!(
        again["task_id"], first["task_id"],
        "{point}: same key, same task"
    );
    assert_eq!(
        c.balance(&h).await,
        (100 - PRICE, PRICE),
        "{point}: one task reserved once"
    );

    match after {
        After::Nothing => {
            h.mj.finish_all().await;
            c.wait_for(&h, task, "finished").await;
            c.wait_balance(&h, (100 - PRICE, 0)).await;
        }
        After::Committed => {
            // Past the submit grace (request timeout + 30 s) the worker gives up on it.
            h.clock.advance(chrono::Duration::seconds(120));
            h.app.tasks().wake_worker();
            let failed = c.wait_for(&h, task, "failed").await;
            assert!(failed["error"].as_str().is_some(), "{failed}");
            c.wait_balance(&h, (100, 0)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_of_accepting_a_task_leaves_one_task_charged_once() {
    for (point, after) in POINTS {
        crash_then_retry(point, after).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_on_two_instances_make_one_task() {
    let h = Harness::start().await;
    let c = h.api_client("same-key@example.com", 100).await;
    let (_second, base2) = h.second_instance().await;
    let body = json!({ "prompt": "one lighthouse only" });
    let calls = (0..16).map(|i| {
        let url = if i % 2 == 0 {
            h.url("/api/v1/imagine")
        } else {
            format!("{base2}/api/v1/imagine")
        };
        let (key, body) = (c.key.clone(), body.clone());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("authorization", key)
                .header("idempotency-key", "same-key-16")
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    });
    let answers = futures::future::join_all(calls).await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, v)| {
            assert_eq!(*status, 200, "{v}");
            v["task_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one task: {ids:?}");
    assert_eq!(c.balance(&h).await, (100 - PRICE, PRICE), "charged once");
}

/// Where the test reads a task's work row: who holds its lease.
async fn lease_owner(h: &Harness, task: uuid::Uuid) -> Option<String> {
    sqlx::query_scalar::<_, Option<String>>("SELECT lease_owner FROM task_work WHERE task_id = $1")
        .bind(task.to_string())
        .fetch_optional(&h.app.db.any)
        .await
        .unwrap()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_takes_over_a_dead_instances_work_after_the_lease() {
    // This instance's worker sleeps unless woken; the work happens in the child process.
    let h = Harness::start_with(|c| c.task_worker_tick_ms = 3_600_000).await;
    let c = h.api_client("takeover@example.com", 100).await;
    let sink = support::hooksink::HookSink::start().await;
    let mut dying = ServerProcess::spawn(
        &h,
        &[
            ("JOURNEY_FAULT", "webhook.sent"),
            ("JOURNEY_TASK_WORKER_TICK_MS", "50"),
        ],
    );
    let r = reqwest::Client::new()
        .post(dying.url("/api/v1/imagine"))
        .header("authorization", &c.key)
        .json(&json!({ "prompt": "a relay race", "webhook_url": sink.url }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let task: uuid::Uuid = r.json::<serde_json::Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The provider finishes; the child sends the webhook and dies before recording it.
    h.mj.finish_all().await;
    assert!(dying.wait_crashed().await);
    let first = sink.deliveries();
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].header("x-webhook-delivery"),
        Some(task.to_string().as_str())
    );

    // Within the lease nobody else may touch the row...
    assert_eq!(
        h.app.tasks().work_once().await.unwrap(),
        0,
        "the dead instance's lease holds"
    );
    assert!(lease_owner(&h, task).await.is_some());
    // ...and once it has run out (15 s), the next instance takes the work over: the
    // webhook goes out again (at least once) with the same delivery id.
    h.clock.advance(chrono::Duration::seconds(16));
    assert_eq!(h.app.tasks().work_once().await.unwrap(), 1);
    let both = sink.wait_for(2, std::time::Duration::from_secs(10)).await;
    assert_eq!(both.len(), 2);
    assert_eq!(
        both[1].header("x-webhook-delivery"),
        Some(task.to_string().as_str())
    );
    assert_eq!(both[1].body, first[0].body, "the same notification");
    c.wait_balance(&h, (100 - PRICE, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_instance_keeps_its_lease_by_heartbeat() {
    let h = Harness::start().await;
    let (_other, _) = h.second_instance().await;
    let c = h.api_client("heartbeat@example.com", 100).await;
    // flux-pro runs in a worker; the fake answers `#images=slow` only after 30 s.
    let task = c
        .create(
            &h,
            "imagine",
            json!({ "prompt": "#images=slow a slow one", "model": "flux-pro" }),
        )
        .await;
    let mut holder = None;
    for _ in 0..200 {
        holder = lease_owner(&h, task).await;
        if holder.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let holder = holder.expect("a worker claimed the task");
    // 24 s pass while the job runs: more than the 15 s lease, but the worker renews it
    // every 5 s, so the other instance never takes the task.
    h.clock.advance(chrono::Duration::seconds(8));
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    h.clock.advance(chrono::Duration::seconds(10));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        lease_owner(&h, task).await.as_deref(),
        Some(holder.as_str())
    );
    assert_eq!(c.fetch(&h, task).await["status"], "starting");
}
