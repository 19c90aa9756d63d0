//! Deletion with its 30-day window, the erasure certificate, and the retention run
//! (`journey retention run --as-of`): usage expires after 90 days, billing stays.

use crate::support;

use reqwest::Method;
use serde_json::{json, Value};
use support::{scan, Harness};

fn days_from_now(d: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(d)).to_rfc3339()
}

/// A retention run dated `as_of` (in the future: `--simulate`, unless a dry run).
fn run(h: &Harness, as_of: &str, extra: &[&str]) -> Value {
    let mut args = vec!["retention", "run", "--as-of", as_of];
    if !extra.contains(&"--dry-run") {
        args.push("--simulate");
    }
    args.extend_from_slice(extra);
    serde_json::from_str(&h.cli_ok(&args)).unwrap()
}

async fn stream(h: &Harness, s: &str) -> String {
    h.stream_events(s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_disables_at_once_and_purges_after_thirty_days() {
    let h = Harness::start().await;
    let s = h.sign_in("leaving@example.com").await;
    let key = s.create_key(&h, "old laptop").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    support::buy_pack(&h, &s, "small").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);

    for (body, why) in [
        (json!({}), "missing"),
        (json!({ "confirm": "yes" }), "wrong"),
    ] {
        let r = s
            .write(&h, Method::DELETE, "/v1/me")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{why}");
    }
    let r = s
        .client
        .delete(h.url("/v1/me"))
        .json(&json!({ "confirm": "delete my account" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "CSRF header required");
    assert_eq!(
        s.get(&h, "/v1/me").await.status(),
        200,
        "nothing changed yet"
    );

    let mails = h.smtp.count();
    let r = s
        .write(&h, Method::DELETE, "/v1/me")
        .json(&json!({ "confirm": "Delete my account" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let done: Value = r.json().await.unwrap();
    assert_eq!(
        (&done["status"], &done["api_keys_revoked"]),
        (&json!("pending_deletion"), &json!(1))
    );
    let notice = h.smtp.wait_for(mails + 1).await;
    assert!(
        notice.contains("leaving@example.com") && notice.contains("will be deleted"),
        "{notice}"
    );

    // Disabled at once: session, key and new sign-ins refused.
    assert_eq!(s.get(&h, "/v1/me").await.status(), 401);
    let r = reqwest::Client::new()
        .get(h.url("/api/v1/account"))
        .header("Authorization", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let token = h.magic_link_token("leaving@example.com").await;
    let r = h.consume_json(&h.browser(), &token).await;
    assert_eq!(r.status(), 403);
    let msg: Value = r.json().await.unwrap();
    assert!(msg["errors"][0]["msg"]
        .as_str()
        .unwrap()
        .contains("scheduled for deletion"));

    let account = format!("account/{}", s.account_id);
    let registered: Value =
        serde_json::from_str(stream(&h, &account).await.lines().next().unwrap()).unwrap();
    let email_ct = registered["payload"]["AccountRegistered"]["email"]["c"]
        .as_str()
        .unwrap()
        .to_string();

    // Inside the window nothing is purged.
    let report = run(&h, &days_from_now(29), &[]);
    assert_eq!(report["accounts_purged"], 0);
    assert!(stream(&h, &account).await.contains(&email_ct));

    let mails = h.smtp.count();
    let report = run(&h, &days_from_now(31), &[]);
    assert_eq!(report["accounts_purged"], 1, "{report}");
    assert!(report["events_tombstoned"].as_u64().unwrap() > 0);
    let confirmation = h.smtp.wait_for(mails + 1).await;
    assert!(
        confirmation.contains("leaving@example.com") && confirmation.contains("has been deleted")
    );

    let events = stream(&h, &account).await;
    assert!(
        !events.contains(&email_ct),
        "the sealed email is compacted into a tombstone"
    );
    let cert: Value = serde_json::from_str(
        events
            .lines()
            .find(|l| l.contains("ErasureCertified"))
            .unwrap(),
    )
    .unwrap();
    let cert = &cert["payload"]["ErasureCertified"]["certificate"];
    assert_eq!(cert["requested_by"], format!("account:{}", s.account_id));
    assert!(cert["categories"]
        .as_array()
        .unwrap()
        .contains(&json!("account")));
    assert!(cert["keys_destroyed"].as_u64().unwrap() >= 2);
    assert!(!events.contains("leaving@example.com"));
    assert!(
        scan::find_plaintext(&h.database_url, &["leaving@example.com", "old laptop"])
            .await
            .is_empty()
    );

    // Billing records stay, still readable, apart from the identity.
    let billing = stream(&h, &format!("billing/{}", s.account_id)).await;
    let record: Value = serde_json::from_str(
        billing
            .lines()
            .find(|l| l.contains("BillingRecorded"))
            .unwrap(),
    )
    .unwrap();
    let opened = h
        .app
        .vault
        .open_json(&record["payload"]["BillingRecorded"]["detail"])
        .await
        .unwrap();
    assert_eq!(opened["amount_cents"], 600);

    let r = officer.get(&h, "/admin/v1/retention/runs").await;
    assert_eq!(r.status(), 200);
    let runs: Value = r.json().await.unwrap();
    let purged: Vec<i64> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["accounts_purged"].as_i64().unwrap())
        .collect();
    assert_eq!(purged, [1, 0], "newest first");
    assert_eq!(s.get(&h, "/admin/v1/retention/runs").await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_can_cancel_a_deletion_within_the_window() {
    let h = Harness::start().await;
    let s = h.sign_in("regret@example.com").await;
    let staff = h.sign_in("support@example.com").await;
    h.cli_ok(&["staff", "grant", "support@example.com", "support"]);
    let r = s
        .write(&h, Method::DELETE, "/v1/me")
        .json(&json!({ "confirm": "delete my account" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let subject = s.account_id.to_string();
    let by = staff.account_id.to_string();
    h.cli_ok(&[
        "deletion",
        "cancel",
        "--subject",
        &subject,
        "--reason",
        "holder called within 30 days",
        "--by",
        &by,
    ]);
    let again = h.cli(&[
        "deletion",
        "cancel",
        "--subject",
        &subject,
        "--reason",
        "twice",
        "--by",
        &by,
    ]);
    assert!(!again.status.success(), "nothing pending any more");
    let back = h.sign_in("regret@example.com").await;
    assert_eq!(back.account_id, s.account_id);
    assert_eq!(back.get(&h, "/v1/me").await.status(), 200);
    let report = run(&h, &days_from_now(31), &[]);
    assert_eq!(report["accounts_purged"], 0);
    assert_eq!(back.get(&h, "/v1/me").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_run_91_days_later_removes_usage_and_keeps_billing() {
    let h = Harness::start().await;
    let s = h.sign_in("longterm@example.com").await;
    s.create_key(&h, "ci key").await;
    support::buy_pack(&h, &s, "small").await;
    let subject = s.account_id.to_string();
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let by = officer.account_id.to_string();
    let export = |h: &Harness| {
        let out = h
            .data_dir
            .join(format!("export-{}.json", uuid::Uuid::new_v4()));
        h.cli_ok(&[
            "export",
            "--by",
            &by,
            "--reason",
            "retention check",
            "--subject",
            &subject,
            "--out",
            out.to_str().unwrap(),
        ]);
        serde_json::from_str::<Value>(&std::fs::read_to_string(out).unwrap()).unwrap()
    };
    let ips = |doc: &Value| -> Vec<Value> {
        doc["usage_log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["client_ip"].clone())
            .filter(|ip| !ip.is_null())
            .collect()
    };
    let before = export(&h);
    assert!(
        ips(&before).iter().any(|ip| ip == "127.0.0.1"),
        "usage data exists"
    );

    let dry = run(&h, &days_from_now(91), &["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert!(
        dry["keys_destroyed"]["usage"].as_u64().unwrap() >= 1,
        "{dry}"
    );
    assert!(
        ips(&export(&h)).iter().any(|ip| ip == "127.0.0.1"),
        "a dry run changes nothing"
    );

    let early = run(&h, &days_from_now(80), &[]);
    assert!(
        early["keys_destroyed"].get("usage").is_none(),
        "not before the term: {early}"
    );

    let report = run(&h, &days_from_now(91), &[]);
    assert!(
        report["keys_destroyed"]["usage"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(report["events_tombstoned"].as_u64().unwrap() >= 1);
    assert!(report["keys_destroyed"].get("billing").is_none());
    let after = export(&h);
    let after_ips = ips(&after);
    assert!(
        !after_ips.is_empty() && after_ips.iter().all(|ip| ip == "[erased]"),
        "{after_ips:?}"
    );
    assert_eq!(
        after["summary"]["profile"]["email"], "longterm@example.com",
        "account data stays while open"
    );
    assert!(
        after["sections"]["billing"]
            .to_string()
            .contains("\"amount_cents\":600"),
        "billing stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_that_stopped_half_way_is_finished_by_the_next_run() {
    let h = Harness::start().await;
    let s = h.sign_in("halfway@example.com").await;
    let r = s
        .write(&h, Method::DELETE, "/v1/me")
        .json(&json!({ "confirm": "delete my account" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The erasure ran, then the process stopped before the certificate.
    let ctx =
        journey_contexts::identity::Ctx::system(journey_commands::Clock::now(h.clock.as_ref()));
    h.app
        .identity()
        .erase_account(
            s.account_id,
            "interrupted purge",
            journey_domain::meta::Actor::System,
            &ctx,
        )
        .await
        .unwrap();
    let account = format!("account/{}", s.account_id);
    assert!(!stream(&h, &account).await.contains("ErasureCertified"));
    let report = run(&h, &days_from_now(31), &[]);
    assert_eq!(report["accounts_purged"], 1, "{report}");
    assert!(stream(&h, &account).await.contains("ErasureCertified"));
    let again = run(&h, &days_from_now(32), &[]);
    assert_eq!(again["accounts_purged"], 0, "finished once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_records_are_kept_seven_years_then_destroyed() {
    let h = Harness::start().await;
    let s = h.sign_in("ledger@example.com").await;
    support::buy_pack(&h, &s, "small").await;
    let record = || async {
        let billing = stream(&h, &format!("billing/{}", s.account_id)).await;
        let line = billing
            .lines()
            .find(|l| l.contains("BillingRecorded"))
            .unwrap()
            .to_string();
        let record: Value = serde_json::from_str(&line).unwrap();
        h.app
            .vault
            .open_json(&record["payload"]["BillingRecorded"]["detail"])
            .await
            .unwrap()
    };
    // Six years on (after a run that purges usage and prompts) the record still opens.
    let six = (chrono::Utc::now() + chrono::Duration::days(6 * 365)).to_rfc3339();
    let report = run(&h, &six, &[]);
    assert!(
        report["keys_destroyed"].get("billing").is_none(),
        "{report}"
    );
    assert_eq!(record().await["amount_cents"], 600);
    // Past the term (the year's end plus 7×365+2 days) the billing key is destroyed and the
    // record reads as erased.
    let eight = (chrono::Utc::now() + chrono::Duration::days(8 * 365 + 3)).to_rfc3339();
    let report = run(&h, &eight, &[]);
    assert!(
        report["keys_destroyed"]["billing"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert_eq!(record().await, json!("[erased]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_dated_in_the_future_is_refused_and_a_simulated_one_locks_nobody_out() {
    let h = Harness::start().await;
    // Used today: the sign-in sealed the address under today's usage key, the task its
    // prompt under today's prompts key.
    let c = h.api_client("today@example.com", 10).await;
    c.create(&h, "imagine", json!({ "prompt": "a harbour at dawn" }))
        .await;
    let as_of = days_from_now(91);
    let out = h.cli(&["retention", "run", "--as-of", &as_of]);
    assert!(!out.status.success(), "a future --as-of is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in the future") && err.contains("--simulate"),
        "{err}"
    );

    // A simulated run destroys today's keys as if 91 days had passed...
    let report = run(&h, &as_of, &[]);
    assert_eq!(report["simulated"], true);
    assert!(
        report["keys_destroyed"]["usage"].as_u64().unwrap() >= 1,
        "{report}"
    );
    // ...and still nobody is locked out: sign-in, the session and the API key all work,
    // and new data is sealed under a successor key of the day.
    let again = h.sign_in("today@example.com").await;
    assert_eq!(again.get(&h, "/v1/me").await.status(), 200);
    assert_eq!(c.session.get(&h, "/v1/me").await.status(), 200);
    assert!(c.account(&h).await["credits"].is_number());
    let t = c
        .create(&h, "imagine", json!({ "prompt": "a harbour at dusk" }))
        .await;
    h.mj.finish_all().await;
    c.wait_for(&h, t, "finished").await;
}

/// The run trims the task list and the usage log by recording a cut-off that the `tasks`
/// and `usage` projections apply, so rebuilding them gives the rows live catch-up left:
/// the trimmed rows do not come back, and the rows after the cut-off stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_after_a_trimming_run_equals_live() {
    let h = Harness::start().await;
    let c = h.api_client("trimmed@example.com", 12).await;
    let old = c.create(&h, "imagine", json!({ "prompt": "old" })).await;
    h.mj.finish(&support::api::last_upstream(&h)).await;
    c.wait_for(&h, old, "finished").await;
    // Ten days on (the server's clock), a second task: after the run's cut-off.
    let cutoff = chrono::Utc::now() + chrono::Duration::days(1);
    h.clock.advance(chrono::Duration::days(10));
    let new = c.create(&h, "imagine", json!({ "prompt": "new" })).await;
    h.mj.finish(&support::api::last_upstream(&h)).await;
    c.wait_for(&h, new, "finished").await;

    run(&h, &(cutoff + chrono::Duration::days(90)).to_rfc3339(), &[]);
    // Live: wait until every projection has applied every event (on Postgres the runner
    // may be held back behind an older transaction of the cluster for a while).
    let mut settled = false;
    for _ in 0..300 {
        let status = h.cli_ok(&["projections", "status"]);
        if status.lines().skip(1).all(|l| l.trim_end().ends_with(" 0")) {
            settled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(settled, "the projections never caught up");
    let tables = ["rm_tasks", "rm_image_totals", "rm_usage"];
    let live: Vec<Vec<String>> =
        futures::future::join_all(tables.map(|t| scan::rows_as_text(&h.database_url, t))).await;
    let tasks = live[0].join("\n");
    assert!(
        !tasks.contains(&old.to_string()) && tasks.contains(&new.to_string()),
        "{tasks}"
    );
    let usage = live[2].join("\n");
    assert!(
        !usage.contains(&old.to_string()) && usage.contains(&new.to_string()),
        "{usage}"
    );
    for p in ["tasks", "usage"] {
        let stdout = h.cli_ok(&["projections", "rebuild", p]);
        assert!(stdout.contains(&format!("rebuilt {p}")), "{stdout}");
    }
    let rebuilt: Vec<Vec<String>> =
        futures::future::join_all(tables.map(|t| scan::rows_as_text(&h.database_url, t))).await;
    assert_eq!(live, rebuilt);
}

/// Compaction reads and rewrites a subject's events in batches (`REWRITE_BATCH` rows per
/// statement): a subject with more events than two batches has every one of them rewritten
/// into exactly the tombstone the per-event rewrite produced (same key id, no nonce, no
/// ciphertext, every other field as it was), and nothing else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_over_several_batches_tombstones_every_event() {
    use journey_commands::event_rewrite::REWRITE_BATCH;
    use journey_domain::usage::{ApiRequest, UsageEvent};
    let h = Harness::start().await;
    let s = h.sign_in("busy@example.com").await;
    let subject = s.account_id.to_string();
    let now = chrono::Utc::now();
    // A usage stream the server never writes (its writer suffix is ours), with events
    // whose client IP is sealed under the subject's usage key of today.
    let stream = format!(
        "{}:bulk",
        journey_domain::usage::stream_id(s.account_id, now)
    );
    let n = 2 * REWRITE_BATCH + 7;
    let db = &h.app.db;
    let insert = db.pick(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('usage', $1, $2, 'ApiRequestRecorded', '1', $3, $4)",
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('usage', $1, $2, 'ApiRequestRecorded', '1', $3::json, $4::json)",
    );
    let mut originals = Vec::new();
    let mut tx = db.any.begin().await.unwrap();
    for i in 0..n {
        let ip = h
            .app
            .vault
            .seal(
                &subject,
                journey_domain::DataCategory::Usage,
                now,
                &format!("203.0.113.{}", i % 250),
            )
            .await
            .unwrap();
        let event = UsageEvent::ApiRequestRecorded(Box::new(ApiRequest {
            key_id: uuid::Uuid::new_v4(),
            endpoint: "/api/v1/account".into(),
            status: 200,
            credits: 0,
            task_id: None,
            client_ip: Some(ip),
            at: now,
        }));
        let payload = serde_json::to_value(&event).unwrap();
        let metadata = json!({ "actor": "system", "request_id": format!("bulk-{i}") });
        sqlx::query(insert)
            .bind(&stream)
            .bind(i as i64 + 1)
            .bind(payload.to_string())
            .bind(metadata.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
        originals.push(payload);
    }
    tx.commit().await.unwrap();

    let report = run(&h, &days_from_now(92), &[]);
    assert!(
        report["events_tombstoned"].as_u64().unwrap() >= n as u64,
        "{report}"
    );
    let rows: Vec<(i64, String)> = sqlx::query_as(db.pick(
        "SELECT sequence, payload FROM events WHERE aggregate_id = $1 ORDER BY sequence",
        "SELECT sequence, payload::text FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    ))
    .bind(&stream)
    .fetch_all(&db.any)
    .await
    .unwrap();
    assert_eq!(rows.len(), n);
    for ((seq, text), original) in rows.iter().zip(&originals) {
        let mut want = original.clone();
        let env = &mut want["ApiRequestRecorded"]["client_ip"];
        env["n"] = json!("");
        env["c"] = json!("");
        let got: Value = serde_json::from_str(text).unwrap();
        assert_eq!(got, want, "event {seq}");
    }
}
