//! Customer webhooks: delivery of the `/fetch` object, retries with backoff (each attempt
//! an event), and the address guard that refuses internal destinations.

use crate::support;

use serde_json::{json, Value};
use std::time::Duration;
use support::api::last_upstream;
use support::hooksink::HookSink;
use support::Harness;

async fn task_events(h: &Harness, task: uuid::Uuid) -> Vec<Value> {
    h.stream_events(&format!("task/{task}"))
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn attempts(h: &Harness, task: uuid::Uuid) -> Vec<Value> {
    task_events(h, task)
        .await
        .into_iter()
        .filter_map(|e| e["payload"].get("WebhookAttempted").cloned())
        .collect()
}

async fn wait_attempts(h: &Harness, task: uuid::Uuid, n: usize) -> Vec<Value> {
    for _ in 0..60 {
        let a = attempts(h, task).await;
        if a.len() >= n {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "fewer than {n} webhook attempts: {:?}",
        attempts(h, task).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_carry_the_fetch_object_and_retry_with_backoff() {
    let h = Harness::start().await;
    let sink = HookSink::start().await;
    sink.set_replies(vec![500, 503, 404]);
    let c = h.api_client("hooked@example.com", 8).await;
    let task = c
        .create(
            &h,
            "imagine",
            json!({ "prompt": "a kite", "webhook_url": format!("{}/hooks/journey?x=1", sink.url), "webhook_secret": "s3cret" }),
        )
        .await;
    h.mj.finish(&last_upstream(&h)).await;
    let first = sink.wait_for(1, Duration::from_secs(10)).await;
    let fetched = c.fetch(&h, task).await;
    assert_eq!(
        first[0].body, fetched,
        "the webhook body is the /fetch object"
    );
    assert_eq!(first[0].header("x-webhook-secret"), Some("s3cret"));
    assert_eq!(first[0].path, "/hooks/journey?x=1");

    // Attempt 1 failed (500): the next is due a minute later, not before.
    let a = wait_attempts(&h, task, 1).await;
    assert_eq!(a[0]["status"], 500);
    assert_eq!(a[0]["delivered"], false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.deliveries().len(), 1);
    h.clock.advance(chrono::Duration::seconds(61));
    sink.wait_for(2, Duration::from_secs(10)).await;
    h.clock.advance(chrono::Duration::seconds(181));
    sink.wait_for(3, Duration::from_secs(10)).await;
    h.clock.advance(chrono::Duration::seconds(541));
    let all = sink.wait_for(4, Duration::from_secs(10)).await;
    assert!(all.iter().all(|d| d.body == fetched));
    let a = wait_attempts(&h, task, 4).await;
    let statuses: Vec<&Value> = a.iter().map(|x| &x["status"]).collect();
    assert_eq!(
        statuses,
        [&json!(500), &json!(503), &json!(404), &json!(200)]
    );
    assert_eq!(a[3]["delivered"], true);
    assert!(a[3]["next_attempt_at"].is_null());
    // Delivered: nothing more goes out, however long we wait.
    h.clock.advance(chrono::Duration::hours(3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.deliveries().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_webhook_is_tried_six_times_over_an_hour_then_abandoned() {
    let h = Harness::start().await;
    let sink = HookSink::start().await;
    sink.set_replies(vec![500; 10]);
    let c = h.api_client("patient@example.com", 4).await;
    let task = c
        .create(
            &h,
            "imagine",
            json!({ "prompt": "x #end=failure", "webhook_url": sink.url }),
        )
        .await;
    h.mj.finish(&last_upstream(&h)).await;
    let mut waited = 0;
    for n in 1..=6 {
        sink.wait_for(n, Duration::from_secs(10)).await;
        wait_attempts(&h, task, n).await;
        h.clock.advance(chrono::Duration::seconds(1801));
        waited += 1801;
    }
    let a = attempts(&h, task).await;
    assert_eq!(a.len(), 6);
    assert!(
        a[5]["next_attempt_at"].is_null(),
        "abandoned after the sixth"
    );
    // The failed task's object went out each time.
    assert!(sink
        .deliveries()
        .iter()
        .all(|d| d.body["status"] == "failed"));
    h.clock.advance(chrono::Duration::hours(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.deliveries().len(), 6);
    assert!(waited >= 3600);
    // Every attempt carried the same delivery id (the task id) and its number.
    let d = sink.deliveries();
    assert!(d
        .iter()
        .all(|d| d.header("x-webhook-delivery") == Some(task.to_string().as_str())));
    assert_eq!(d[5].header("x-webhook-attempt"), Some("6"));
    // The holder sees that the webhook was given up on, and why.
    let list: Value = c.session.get(&h, "/v1/tasks").await.json().await.unwrap();
    let row = &list["tasks"][0];
    assert!(row.is_object(), "{list}");
    assert_eq!(row["task_id"], task.to_string());
    assert_eq!(row["webhook"]["state"], "undeliverable", "{row}");
    assert_eq!(row["webhook"]["attempts"], 6);
    assert_eq!(row["webhook"]["last_error"], "HTTP 500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_destinations_are_refused_unless_allowed() {
    let h = Harness::start_with(|c| c.allow_private_webhooks = false).await;
    let sink = HookSink::start().await;
    let c = h.api_client("ssrf@example.com", 20).await;
    // Literal internal addresses are refused when the task is created: nothing charged.
    for url in [
        sink.url.clone(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.7/hook".to_string(),
        "http://[::1]:9/hook".to_string(),
    ] {
        let (status, v) = c
            .post(&h, "imagine", json!({ "prompt": "x", "webhook_url": url }))
            .await;
        assert_eq!(status, 400, "{url}: {v}");
        assert!(v["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("webhook_url"));
    }
    // Image inputs too: the server never fetches an internal URL for a client.
    let port = sink.url.rsplit(':').next().unwrap().to_string();
    for body in [
        json!({ "image_urls": [format!("http://localhost:{port}/a.png"), format!("http://localhost:{port}/b.png")] }),
    ] {
        let (status, v) = c.post(&h, "blend", body).await;
        assert_eq!(status, 400, "{v}");
        assert!(
            v["errors"][0]["msg"].as_str().unwrap().contains("refused"),
            "{v}"
        );
    }
    let (status, v) = c
        .post(
            &h,
            "describe",
            json!({ "image_url": format!("http://127.0.0.1:{port}/d.png") }),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    // A host name is resolved when the task is created: one that resolves to loopback is
    // refused then too, before anything is charged (the connection re-checks it).
    let (status, v) = c
        .post(
            &h,
            "imagine",
            json!({ "prompt": "x", "webhook_url": format!("http://localhost:{port}/hook") }),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("webhook_url"),
        "{v}"
    );
    assert!(sink.deliveries().is_empty());
    assert_eq!(c.balance(&h).await, (20, 0), "nothing charged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_process_a_task_twice() {
    let h = Harness::start_with(|c| c.max_tasks_in_flight = 100).await;
    let (_second, second_url) = h.second_instance().await;
    let sink = HookSink::start().await;
    h.mj.set_notify(false);
    let c = h.api_client("scaled@example.com", 200).await;
    let mut tasks = Vec::new();
    for n in 0..30 {
        // Half the tasks enter through each instance.
        let base = if n % 2 == 0 {
            h.base.clone()
        } else {
            second_url.clone()
        };
        let r = reqwest::Client::new()
            .post(format!("{base}/api/v1/imagine"))
            .header("authorization", &c.key)
            .json(&json!({ "prompt": format!("shared {n}"), "webhook_url": sink.url }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        tasks.push(v["task_id"].as_str().unwrap().to_string());
    }
    h.mj.finish_all().await;
    // Only polling can find the results; both instances' workers compete for them.
    h.clock.advance(chrono::Duration::seconds(16));
    let got = sink.wait_for(30, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = sink.deliveries();
    assert_eq!(got_after.len(), 30, "one delivery per task, not more");
    let mut ids: Vec<String> = got
        .iter()
        .map(|d| d.body["task_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30);
    for t in &tasks {
        assert_eq!(attempts(&h, t.parse().unwrap()).await.len(), 1, "task {t}");
    }
    c.wait_balance(&h, (200 - 30 * 4, 0)).await;
}
