//! The usage log and task list for account holders, the per-key rate limit and the
//! in-flight limit, and the privacy promises about prompts and usage (90 days, erasure).

use crate::support;

use serde_json::{json, Value};
use support::api::last_upstream;
use support::{scan, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_request_is_in_the_usage_log_and_tasks_are_listed() {
    let h = Harness::start().await;
    let c = h.api_client("logged@example.com", 12).await;
    let other = h.api_client("stranger@example.com", 4).await;
    let t1 = c.create(&h, "imagine", json!({ "prompt": "one" })).await;
    let t2 = c
        .create(&h, "imagine", json!({ "prompt": "two #submit=24" }))
        .await;
    let (status, _) = c
        .post(&h, "imagine", json!({ "model": "nope", "prompt": "x" }))
        .await;
    assert_eq!(status, 400);
    c.account(&h).await;
    other
        .create(&h, "imagine", json!({ "prompt": "not yours" }))
        .await;
    h.mj.finish(&h.mj.upstream_ids()[0]).await;
    c.wait_for(&h, t1, "finished").await;

    let r = c.session.get(&h, "/v1/usage").await;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    let entries = page["entries"].as_array().unwrap();
    // Newest first: wait_for's fetches, account, the 400, the two imagines.
    let imagines: Vec<&Value> = entries
        .iter()
        .filter(|e| e["endpoint"] == "/api/v1/imagine")
        .collect();
    assert_eq!(imagines.len(), 3, "{page}");
    assert_eq!(imagines[0]["status"], 400);
    assert_eq!(imagines[0]["credits"], 0);
    assert_eq!(imagines[1]["task_id"], t2.to_string());
    assert_eq!(imagines[1]["credits"], 4);
    assert_eq!(imagines[2]["task_id"], t1.to_string());
    assert!(entries.iter().any(|e| e["endpoint"] == "/api/v1/account"));
    assert!(entries.iter().any(|e| e["endpoint"] == "/api/v1/fetch"));
    assert!(!entries.iter().any(|e| e["task_id"]
        .as_str()
        .is_some_and(|t| t != t1.to_string() && t != t2.to_string())));
    let day = &page["days"][0];
    assert_eq!(day["requests"].as_i64().unwrap(), entries.len() as i64);
    assert_eq!(day["credits"], 8);

    // Paging: 2 at a time walks the same entries.
    let mut seen = 0;
    let mut before = String::new();
    loop {
        let v: Value = c
            .session
            .get(&h, &format!("/v1/usage?limit=2{before}"))
            .await
            .json()
            .await
            .unwrap();
        seen += v["entries"].as_array().unwrap().len();
        match v["next_before"].as_i64() {
            Some(b) => before = format!("&before={b}"),
            None => break,
        }
    }
    assert!(seen >= entries.len());
    for bad in [
        "/v1/usage?from=yesterday",
        "/v1/usage?limit=0",
        "/v1/usage?from=2026-11-25&to=2026-11-24",
    ] {
        assert_eq!(c.session.get(&h, bad).await.status(), 400, "{bad}");
    }

    let tasks: Value = c.session.get(&h, "/v1/tasks").await.json().await.unwrap();
    let list = tasks["tasks"].as_array().unwrap();
    assert_eq!(list.len(), 2, "only the holder's tasks: {tasks}");
    let failed: Value = c
        .session
        .get(&h, "/v1/tasks?status=failed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(failed["tasks"][0]["task_id"], t2.to_string());
    assert_eq!(failed["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(
        c.session.get(&h, "/v1/tasks?status=weird").await.status(),
        400
    );
    assert_eq!(
        c.session.get(&h, "/v1/tasks?before=garbage").await.status(),
        400
    );
    // One task per page walks both, newest first, without skipping either.
    let first: Value = c
        .session
        .get(&h, "/v1/tasks?limit=1")
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["next_before"].as_str().unwrap().to_string();
    let second: Value = c
        .session
        .get(&h, &format!("/v1/tasks?limit=1&before={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["tasks"][0]["task_id"], t2.to_string());
    assert_eq!(second["tasks"][0]["task_id"], t1.to_string());
    assert!(second["next_before"].is_null());
    assert_eq!(c.account(&h).await["total_images"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_rate_limited_and_accounts_have_a_tasks_in_flight_limit() {
    let h = Harness::start_with(|c| {
        c.api_requests_per_key_per_minute = 5;
        c.max_tasks_in_flight = 2;
    })
    .await;
    let c = h.api_client("busy@example.com", 40).await;
    c.create(&h, "imagine", json!({ "prompt": "a" })).await;
    c.create(&h, "imagine", json!({ "prompt": "b" })).await;
    let (status, v) = c.post(&h, "imagine", json!({ "prompt": "c" })).await;
    assert_eq!(status, 429, "{v}");
    assert!(v["errors"][0]["msg"]
        .as_str()
        .unwrap()
        .contains("in flight"));
    assert_eq!(
        c.balance(&h).await,
        (32, 8),
        "the refused task charged nothing"
    );
    let ids = h.mj.upstream_ids();
    assert_eq!(ids.len(), 2);
    // Two more requests use up the key's 5 per minute; the next is refused with Retry-After.
    c.post(&h, "fetch", json!({ "task_id": uuid::Uuid::new_v4() }))
        .await;
    c.post(&h, "fetch", json!({ "task_id": uuid::Uuid::new_v4() }))
        .await;
    let r = reqwest::Client::new()
        .get(h.url("/api/v1/account"))
        .header("authorization", &c.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Another key of the same account has its own budget; the in-flight limit is the
    // account's, and frees up when a task ends.
    let other_key = c.session.create_key(&h, "second").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    h.mj.finish(&ids[0]).await;
    let mut accepted = false;
    for _ in 0..40 {
        let r = reqwest::Client::new()
            .post(h.url("/api/v1/imagine"))
            .header("authorization", &other_key)
            .json(&json!({ "prompt": "d" }))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            accepted = true;
            break;
        }
        assert_eq!(r.status(), 429);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(accepted, "a slot freed when the first task finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_and_usage_are_sealed_exported_and_expire_after_90_days() {
    let h = Harness::start().await;
    let c = h.api_client("private@example.com", 20).await;
    let prompt = "a portrait of Wilhelmina Okonkwo-Baptiste";
    let hook = "https://hooks.example.org/wilhelmina-secret-path";
    let t = c
        .create(
            &h,
            "imagine",
            json!({ "prompt": prompt, "webhook_url": hook }),
        )
        .await;
    h.mj.finish(&last_upstream(&h)).await;
    let done = c.wait_for(&h, t, "finished").await;
    let grid = done["original_image_url"].as_str().unwrap().to_string();
    // Stored only sealed: no table holds the prompt, the webhook URL or the result.
    let found = scan::find_plaintext(&h.database_url, &[prompt, hook, &grid]).await;
    assert!(found.is_empty(), "{found:?}");

    // The export carries the task with its prompt and the request log.
    let staff = h.sign_in("dpo@example.com").await;
    h.cli_ok(&["staff", "grant", "dpo@example.com", "compliance"]);
    let out = h.data_dir.join("export.json");
    h.cli_ok(&[
        "export",
        "--subject",
        &c.account_id.to_string(),
        "--by",
        &staff.account_id.to_string(),
        "--reason",
        "access request",
        "--out",
        out.to_str().unwrap(),
    ]);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    // The export no longer claims that no task data exists while it lists the tasks.
    assert!(
        !doc.to_string().contains("no task or prompt data"),
        "{}",
        doc["not_held"]
    );
    assert!(doc["not_held"]["prompts_older_than_90_days"].is_string());
    let tasks = doc["sections"]["tasks"].to_string();
    assert!(
        tasks.contains(prompt) && tasks.contains(&grid) && tasks.contains(hook),
        "{tasks}"
    );
    assert!(!tasks.contains("notify_token_hash\":\"") || tasks.contains("[withheld]"));
    assert!(doc["sections"]["api_requests"].as_array().unwrap().len() >= 2);

    // 91 days later the retention run destroys the day's prompt and usage keys.
    let as_of = (chrono::Utc::now() + chrono::Duration::days(92)).to_rfc3339();
    let report: Value =
        serde_json::from_str(&h.cli_ok(&["retention", "run", "--simulate", "--as-of", &as_of]))
            .unwrap();
    assert!(
        report["keys_destroyed"]["prompts"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(
        report["log_rows_deleted"].as_u64().unwrap() >= 2,
        "{report}"
    );
    let after = c.fetch(&h, t).await;
    assert_eq!(after["status"], "finished");
    assert!(after.get("original_image_url").is_none(), "{after}");
    let usage: Value = c
        .session
        .get(&h, "/v1/usage?from=2020-01-01")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !usage["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["task_id"] == t.to_string()),
        "{usage}"
    );
}
