//! 500 mixed tasks with random upstream failures, rejections and timeouts, submitted by
//! 16 concurrent clients: afterwards the ledger's captures are exactly the finished tasks'
//! credits, its releases exactly the failed tasks', nothing stays reserved, and the
//! balance matches the ledger. Runs on both backends like every test.

use crate::support;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use support::Harness;
use uuid::Uuid;

const TASKS: usize = 500;
const CLIENTS: usize = 16;
const GRANTED: u64 = 2500;

/// One kind of task in the mix: (endpoint body, credits).
fn pick(rng: &mut impl Rng, n: usize) -> (Value, u64) {
    let p = |s: &str| format!("task {n} {s}");
    match rng.gen_range(0..10) {
        0..=2 => (json!({ "prompt": p("#end=success") }), 4),
        3 => (json!({ "prompt": p("#end=failure") }), 4),
        4 => (
            json!({ "prompt": p(["#submit=24", "#submit=23", "#submit=9"][rng.gen_range(0..3)]) }),
            4,
        ),
        5 => (json!({ "prompt": p("#end=stuck") }), 4),
        6 => (json!({ "prompt": p(""), "model": "nano-banana" }), 2),
        7 => (
            json!({ "prompt": p("#images=500"), "model": "seedream-4" }),
            3,
        ),
        8 => (json!({ "prompt": p(""), "model": "flux-schnell" }), 1),
        _ => (
            json!({ "prompt": p("#images=400"), "model": "flux-dev" }),
            2,
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_mixed_tasks_reconcile_with_the_ledger() {
    let h = Harness::start_with(|c| {
        c.max_tasks_in_flight = 1000;
        c.api_requests_per_key_per_minute = 100_000;
    })
    .await;
    let c = Arc::new(h.api_client("bulk@example.com", GRANTED).await);
    let h = Arc::new(h);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let plan: Vec<(Value, u64)> = (0..TASKS).map(|n| pick(&mut rng, n)).collect();
    let plan = Arc::new(plan);
    let workers = (0..CLIENTS).map(|w| {
        let (h, c, plan) = (h.clone(), c.clone(), plan.clone());
        tokio::spawn(async move {
            let mut made = Vec::new();
            for n in (w..TASKS).step_by(CLIENTS) {
                let (body, credits) = plan[n].clone();
                let (status, v) = c.post(&h, "imagine", body).await;
                assert_eq!(status, 200, "task {n}: {v}");
                made.push((
                    v["task_id"].as_str().unwrap().parse::<Uuid>().unwrap(),
                    credits,
                ));
            }
            made
        })
    });
    let mut tasks: HashMap<Uuid, u64> = HashMap::new();
    for w in workers {
        tasks.extend(w.await.unwrap());
    }
    assert_eq!(tasks.len(), TASKS);

    // Upstream runs everything (callbacks arrive), then stuck jobs time out.
    h.mj.finish_all().await;
    h.clock.advance(chrono::Duration::seconds(901));
    let ids: Vec<Uuid> = tasks.keys().copied().collect();
    let mut status: HashMap<Uuid, String> = HashMap::new();
    for _ in 0..300 {
        for chunk in ids.chunks(20) {
            let (code, v) = c.post(&h, "fetch-many", json!({ "task_ids": chunk })).await;
            assert_eq!(code, 200, "{v}");
            for t in v["tasks"].as_array().unwrap() {
                status.insert(
                    t["task_id"].as_str().unwrap().parse().unwrap(),
                    t["status"].as_str().unwrap().to_string(),
                );
            }
        }
        if status.values().all(|s| s == "finished" || s == "failed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let open: Vec<_> = status
        .iter()
        .filter(|(_, s)| *s != "finished" && *s != "failed")
        .collect();
    assert!(open.is_empty(), "tasks still open: {open:?}");
    let finished: u64 = tasks
        .iter()
        .filter(|(t, _)| status[*t] == "finished")
        .map(|(_, c)| c)
        .sum();
    let failed: u64 = tasks
        .iter()
        .filter(|(t, _)| status[*t] == "failed")
        .map(|(_, c)| c)
        .sum();
    assert!(finished > 0 && failed > 0, "the mix has both outcomes");

    // Settlement follows the task's end; wait for the last ones.
    c.wait_balance(&h, (GRANTED - finished, 0)).await;

    // The ledger itself: one reservation per task, captured iff finished, released iff failed.
    let ledger = h
        .stream_events(&format!("credit_ledger/{}", c.account_id))
        .await;
    let (mut captured, mut released, mut reserved) =
        (HashMap::new(), HashMap::new(), HashMap::new());
    for line in ledger.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        let p = &e["payload"];
        for (kind, into) in [
            ("CreditsReserved", &mut reserved),
            ("ReservationCaptured", &mut captured),
            ("ReservationReleased", &mut released),
        ] {
            if let Some(x) = p.get(kind) {
                let t: Uuid = x["task_id"].as_str().unwrap().parse().unwrap();
                assert!(
                    into.insert(t, x["amount"].as_u64().unwrap()).is_none(),
                    "{kind} twice for {t}"
                );
            }
        }
    }
    assert_eq!(reserved.len(), TASKS);
    for (t, credits) in &tasks {
        assert_eq!(reserved[t], *credits);
        match status[t].as_str() {
            "finished" => assert!(captured.contains_key(t) && !released.contains_key(t), "{t}"),
            _ => assert!(released.contains_key(t) && !captured.contains_key(t), "{t}"),
        }
    }
    assert_eq!(captured.values().sum::<u64>(), finished);
    assert_eq!(released.values().sum::<u64>(), failed);
    let account = c.account(&h).await;
    assert_eq!(account["credits"].as_u64().unwrap(), GRANTED - finished);
}
