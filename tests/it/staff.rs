//! Staff roles and the audit trail: `/admin/v1/*` needs a role, and every staff read of a
//! subject's data is recorded (who, whose, what, why, when) before it is returned.

use crate::support;

use serde_json::Value;
use support::{Harness, Session};

async fn get(h: &Harness, s: &Session, path: &str) -> (u16, Value) {
    let r = s.get(h, path).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn roles(out: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_a_staff_role() {
    let h = Harness::start().await;
    let holder = h.sign_in("holder@example.com").await;
    let staff = h.sign_in("helper@example.com").await;
    let events = format!(
        "/admin/v1/subjects/{}/events?reason=ticket-1",
        holder.account_id
    );

    let anonymous = reqwest::get(h.url(&events)).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let (status, body) = get(&h, &staff, &events).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["errors"][0]["msg"]
        .as_str()
        .unwrap()
        .contains("staff role"));
    let (status, _) = get(&h, &holder, "/admin/v1/audit?reason=x").await;
    assert_eq!(status, 403, "holders cannot read the audit trail");

    assert_eq!(
        roles(&h.cli_ok(&["staff", "grant", "helper@example.com", "support"])),
        ["support"]
    );
    assert_eq!(get(&h, &staff, &events).await.0, 200);
    let (status, body) = get(&h, &staff, "/admin/v1/audit?reason=curious").await;
    assert_eq!(status, 403, "support may not read the audit trail: {body}");

    assert!(roles(&h.cli_ok(&["staff", "revoke", "HELPER@example.com", "support"])).is_empty());
    assert_eq!(get(&h, &staff, &events).await.0, 403, "revoked at once");

    for (args, why) in [
        (
            ["staff", "grant", "helper@example.com", "superuser"],
            "unknown role",
        ),
        (
            ["staff", "grant", "nobody@example.com", "admin"],
            "no account",
        ),
        (
            ["staff", "grant", "not-an-email", "admin"],
            "not a valid email",
        ),
    ] {
        let out = h.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_staff_read_is_audited_with_who_whose_what_why_when() {
    let h = Harness::start().await;
    let holder = h.sign_in("audited@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let base = format!("/admin/v1/subjects/{}/events", holder.account_id);

    // No reason, no data, and nothing recorded.
    let (status, body) = get(&h, &officer, &base).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.get("events").is_none());

    let (status, page) = get(
        &h,
        &officer,
        &format!("{base}?reason=DSR-17%20access%20request"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    let registered = events
        .iter()
        .find(|e| e["event_type"] == "AccountRegistered")
        .expect("the account's history");
    assert_eq!(
        registered["payload"]["AccountRegistered"]["email"],
        "audited@example.com"
    );
    assert!(
        events.iter().any(|e| e["aggregate_type"] == "session"),
        "sessions are the subject's too"
    );

    let trail_path = format!(
        "/admin/v1/audit?reason=quarterly%20review&actor={}",
        officer.account_id
    );
    let (status, trail) = get(&h, &officer, &trail_path).await;
    assert_eq!(status, 200, "{trail}");
    let entries = trail["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // The failed read recorded nothing; reading the trail is recorded before it is listed.
    assert_eq!(actions, ["subject.events", "audit.list"], "{trail}");
    let e = &entries[0];
    assert_eq!(e["actor"], officer.account_id.to_string());
    assert_eq!(e["subject"], holder.account_id.to_string());
    assert_eq!(e["action"], "subject.events");
    assert_eq!(e["reason"], "DSR-17 access request");
    assert!(e["at"].is_string());

    // Reading the trail was itself recorded; filters narrow it.
    let (_, trail) = get(
        &h,
        &officer,
        &format!("{trail_path}&subject={}", holder.account_id),
    )
    .await;
    assert_eq!(trail["entries"].as_array().unwrap().len(), 2, "{trail}");
    let (_, trail) = get(&h, &officer, "/admin/v1/audit?reason=again").await;
    let actions: Vec<&str> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["subject.events", "audit.list", "audit.list", "audit.list"]
    );
    for bad in [
        "limit=0",
        "from=yesterday",
        "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "who=me",
    ] {
        let (status, _) = get(&h, &officer, &format!("/admin/v1/audit?reason=x&{bad}")).await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_see_erased_fields_as_erased_and_page_through_history() {
    let h = Harness::start().await;
    let holder = h.sign_in("gone@example.com").await;
    holder.create_key(&h, "laptop").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "admin"]);
    h.cli_ok(&["erase", "--subject", &holder.account_id.to_string()]);

    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let path = format!(
            "/admin/v1/subjects/{}/events?reason=erasure%20check&limit=2&after={after}",
            holder.account_id
        );
        let (status, page) = get(&h, &officer, &path).await;
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 2);
        seen.extend(events.iter().cloned());
        match page["next_after"].as_i64() {
            Some(a) => after = a,
            None => break,
        }
    }
    let text = serde_json::to_string(&seen).unwrap();
    assert!(
        !text.contains("gone@example.com") && !text.contains("laptop"),
        "{text}"
    );
    let registered = seen
        .iter()
        .find(|e| e["event_type"] == "AccountRegistered")
        .unwrap();
    assert_eq!(
        registered["payload"]["AccountRegistered"]["email"],
        "[erased]"
    );
    assert!(seen.iter().any(|e| e["event_type"] == "AccountErased"));
    assert!(seen.iter().any(|e| e["event_type"] == "ApiKeyCreated"));
    let positions: Vec<i64> = seen
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "in order, no repeats"
    );
}
