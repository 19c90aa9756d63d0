//! Staff roles and the audit trail: `/admin/v1/*` needs a role, and every staff read of a
//! subject's data is recorded (who, whose, what, why, when) before it is returned.

use crate::support;

use reqwest::Method;
use serde_json::{json, Value};
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
    let (status, body) = get(&h, &staff, &events).await;
    assert_eq!(status, 403, "support sees tickets, not histories: {body}");
    let (status, body) = get(&h, &staff, "/admin/v1/audit?reason=curious").await;
    assert_eq!(status, 403, "support may not read the audit trail: {body}");

    assert_eq!(
        roles(&h.cli_ok(&["staff", "grant", "helper@example.com", "compliance"])),
        ["compliance", "support"]
    );
    assert_eq!(get(&h, &staff, &events).await.0, 200);
    assert_eq!(
        roles(&h.cli_ok(&["staff", "revoke", "HELPER@example.com", "compliance"])),
        ["support"]
    );
    assert_eq!(get(&h, &staff, &events).await.0, 403, "revoked at once");
    assert!(roles(&h.cli_ok(&["staff", "revoke", "helper@example.com", "support"])).is_empty());

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
    h.erase(&holder.account_id.to_string(), "test erasure")
        .await;

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

async fn post(h: &Harness, s: &Session, path: &str, body: Value) -> (u16, Value) {
    let r = s
        .write(h, reqwest::Method::POST, path)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The audit trail, read by `officer` (that read is itself recorded), as
/// (actor, subject, action, reason) rows.
async fn trail(
    h: &Harness,
    officer: &Session,
    filter: &str,
) -> Vec<(Value, Value, String, String)> {
    let (status, page) = get(
        h,
        officer,
        &format!("/admin/v1/audit?reason=check&limit=500{filter}"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].clone(),
                e["subject"].clone(),
                e["action"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The subject's export (staff route), as `officer`: its `accessed_by_staff` entries as
/// (staff, action, reason).
async fn accessed_by_staff(
    h: &Harness,
    officer: &Session,
    subject: uuid::Uuid,
) -> Vec<(String, String, String)> {
    let (status, doc) = get(
        h,
        officer,
        &format!("/admin/v1/subjects/{subject}/export?reason=access%20request"),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    doc["accessed_by_staff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["staff"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reads_and_changes_name_a_staff_member_and_a_reason_and_are_audited() {
    let h = Harness::start().await;
    let holder = h.sign_in("cli-subject@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    let agent = h.sign_in("agent@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    h.cli_ok(&["staff", "grant", "agent@example.com", "support"]);
    let subject = holder.account_id.to_string();
    let (by_officer, by_agent) = (officer.account_id.to_string(), agent.account_id.to_string());
    let stream = format!("account/{subject}");

    // Refused without --by or --reason, by an account without a role, and (for a
    // subject's history or erasure) by support.
    for (args, why) in [
        (vec!["events", "--stream", &stream, "--reason", "x"], "--by"),
        (
            vec!["events", "--stream", &stream, "--by", &by_officer],
            "--reason",
        ),
        (
            vec!["erase", "--subject", &subject, "--reason", "x"],
            "--by",
        ),
        (
            vec!["erase", "--subject", &subject, "--by", &by_officer],
            "--reason",
        ),
        (
            vec![
                "credits",
                "grant",
                "--account",
                &subject,
                "--amount",
                "5",
                "--reason",
                "x",
            ],
            "--by",
        ),
        (
            vec![
                "events", "--stream", &stream, "--by", &subject, "--reason", "x",
            ],
            "no staff role",
        ),
        (
            vec![
                "events", "--stream", &stream, "--by", &by_agent, "--reason", "x",
            ],
            "admin, compliance",
        ),
        (
            vec![
                "erase",
                "--subject",
                &subject,
                "--by",
                &by_agent,
                "--reason",
                "x",
            ],
            "admin, compliance",
        ),
    ] {
        let out = h.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    }
    assert!(
        trail(&h, &officer, &format!("&subject={subject}"))
            .await
            .iter()
            .all(|e| e.2 == "audit.list"),
        "a refused command records nothing"
    );

    // Done properly, each is recorded before it prints or changes anything.
    let out = h.cli_ok(&[
        "events",
        "--stream",
        &stream,
        "--by",
        &by_officer,
        "--reason",
        "DSR-3 history",
    ]);
    assert!(out.contains("AccountRegistered"));
    h.cli_ok(&[
        "credits",
        "grant",
        "--account",
        &subject,
        "--amount",
        "5",
        "--reason",
        "ticket 88 goodwill",
        "--by",
        &by_agent,
    ]);
    // The holder asks to delete the account, then asks support to cancel.
    let r = holder
        .write(&h, reqwest::Method::DELETE, "/v1/me")
        .json(&serde_json::json!({ "confirm": "delete my account" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    h.cli_ok(&[
        "deletion",
        "cancel",
        "--subject",
        &subject,
        "--reason",
        "ticket 90",
        "--by",
        &by_agent,
    ]);
    let seen = accessed_by_staff(&h, &officer, holder.account_id).await;
    for want in [
        (&by_officer, "stream.events", "DSR-3 history"),
        (&by_agent, "credits.grant", "ticket 88 goodwill"),
        (&by_agent, "deletion.cancel", "ticket 90"),
        (&by_officer, "subject.export", "access request"),
    ] {
        assert!(
            seen.iter()
                .any(|(s, a, r)| (s, a.as_str(), r.as_str()) == want),
            "{want:?} not in the export's accessed_by_staff: {seen:?}"
        );
    }

    // A stream that belongs to no subject is recorded without one.
    let r = reqwest::Client::new()
        .post(h.url("/v1/legal/child-report"))
        .json(&serde_json::json!({ "account_email": "nobody@example.com", "reporter_contact": "x@example.net", "details": "d" }))
        .send()
        .await
        .unwrap();
    let report = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    h.cli_ok(&[
        "events",
        "--stream",
        &format!("child_report/{report}"),
        "--by",
        &by_officer,
        "--reason",
        "report triage",
    ]);

    h.cli_ok(&[
        "erase",
        "--subject",
        &subject,
        "--by",
        &by_officer,
        "--reason",
        "DSR-4 erasure",
    ]);
    let entries = trail(&h, &officer, "").await;
    let actions: Vec<(Value, &str, &str)> = entries
        .iter()
        .filter(|e| e.2 != "audit.list")
        .map(|e| (e.1.clone(), e.2.as_str(), e.3.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            (
                Value::from(subject.clone()),
                "stream.events",
                "DSR-3 history"
            ),
            (
                Value::from(subject.clone()),
                "credits.grant",
                "ticket 88 goodwill"
            ),
            (Value::from(subject.clone()), "deletion.cancel", "ticket 90"),
            (
                Value::from(subject.clone()),
                "subject.export",
                "access request"
            ),
            (Value::Null, "stream.events", "report triage"),
            (
                Value::from(subject.clone()),
                "subject.erase",
                "DSR-4 erasure"
            ),
        ],
        "{entries:?}"
    );
    let erase = entries.iter().find(|e| e.2 == "subject.erase").unwrap();
    assert_eq!(erase.0, by_officer.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_works_tickets_and_sees_nothing_else_about_a_subject() {
    let h = Harness::start().await;
    let holder = h.sign_in("asker@example.com").await;
    let agent = h.sign_in("agent@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "agent@example.com", "support"]);
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let id = holder.account_id;
    for path in [
        format!("/admin/v1/subjects/{id}/events?reason=ticket"),
        format!("/admin/v1/subjects/{id}/export?reason=ticket"),
        format!("/admin/v1/subjects/{id}/policy?reason=ticket"),
        "/admin/v1/requests?reason=ticket".to_string(),
        "/admin/v1/child-reports?reason=ticket".to_string(),
        "/admin/v1/takedowns?reason=ticket".to_string(),
        "/admin/v1/audit?reason=ticket".to_string(),
    ] {
        let (status, body) = get(&h, &agent, &path).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, body) = post(
        &h,
        &agent,
        &format!("/admin/v1/subjects/{id}/correction"),
        serde_json::json!({ "name": "X", "reason": "ticket" }),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Nothing was recorded for those refusals.
    assert!(trail(&h, &officer, &format!("&actor={}", agent.account_id))
        .await
        .is_empty());

    // Tickets: list, read, reply, close.
    let (status, t) = post(
        &h,
        &holder,
        "/v1/support/tickets",
        serde_json::json!({ "subject": "Invoice", "message": "Where is my invoice?" }),
    )
    .await;
    assert_eq!(status, 201, "{t}");
    let ticket = t["ticket_id"].as_str().unwrap().to_string();
    let (status, list) = get(&h, &agent, "/admin/v1/tickets?reason=queue").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["tickets"][0]["subject"], "Invoice");
    let (status, v) = get(
        &h,
        &agent,
        &format!("/admin/v1/tickets/{ticket}?reason=queue"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(
        &h,
        &agent,
        &format!("/admin/v1/tickets/{ticket}/messages"),
        serde_json::json!({ "message": "Sent again." }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(
        &h,
        &agent,
        &format!("/admin/v1/tickets/{ticket}/close"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 200, "{v}");

    let entries = trail(&h, &officer, &format!("&actor={}", agent.account_id)).await;
    let holder_id = Value::from(id.to_string());
    let by_ticket = format!("ticket {ticket}");
    let got: Vec<(&Value, &str, &str)> = entries
        .iter()
        .map(|e| (&e.1, e.2.as_str(), e.3.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (&holder_id, "tickets.list", "queue"),
            (&holder_id, "ticket.read", "queue"),
            (&holder_id, "ticket.reply", by_ticket.as_str()),
            (&holder_id, "ticket.close", by_ticket.as_str()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_reads_record_every_subject_listed() {
    let h = Harness::start().await;
    let ann = h.sign_in("ann@example.com").await;
    let bob = h.sign_in("bob@example.com").await;
    let agent = h.sign_in("agent@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "agent@example.com", "support"]);
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let (a, b) = (
        Value::from(ann.account_id.to_string()),
        Value::from(bob.account_id.to_string()),
    );

    // An empty list still records that it was read, with no subject.
    let (status, list) = get(&h, &agent, "/admin/v1/tickets?reason=empty%20queue").await;
    assert_eq!(status, 200, "{list}");
    assert!(list["tickets"].as_array().unwrap().is_empty());

    // Ann opens two tickets, Bob one: the list records each holder once.
    for (s, subject) in [(&ann, "one"), (&ann, "two"), (&bob, "three")] {
        let (status, _) = post(
            &h,
            s,
            "/v1/support/tickets",
            serde_json::json!({ "subject": subject, "message": "help" }),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, list) = get(&h, &agent, "/admin/v1/tickets?reason=morning%20queue").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["tickets"].as_array().unwrap().len(), 3);

    // The request worklist, the child-report register.
    let (status, v) = post(
        &h,
        &bob,
        "/v1/me/requests",
        serde_json::json!({ "type": "access" }),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (status, list) = get(&h, &officer, "/admin/v1/requests?reason=weekly%20worklist").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["requests"].as_array().unwrap().len(), 1);
    let r = reqwest::Client::new()
        .post(h.url("/v1/legal/child-report"))
        .json(&serde_json::json!({ "account_email": "ann@example.com", "reporter_contact": "parent@example.net", "details": "she is 12" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (status, list) = get(
        &h,
        &officer,
        "/admin/v1/child-reports?reason=report%20review",
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["reports"][0]["reporter_contact"], "parent@example.net");

    let lists: Vec<(Value, String, String)> = trail(&h, &officer, "")
        .await
        .into_iter()
        .filter(|e| e.2.ends_with(".list") && e.2 != "audit.list")
        .map(|e| (e.1, e.2, e.3))
        .collect();
    let row =
        |s: &Value, action: &str, reason: &str| (s.clone(), action.to_string(), reason.to_string());
    // Tickets are listed newest first, so Bob's comes first.
    assert_eq!(
        lists,
        [
            row(&Value::Null, "tickets.list", "empty queue"),
            row(&b, "tickets.list", "morning queue"),
            row(&a, "tickets.list", "morning queue"),
            row(&b, "requests.list", "weekly worklist"),
            row(&a, "child_reports.list", "report review"),
        ]
    );

    // Each holder sees the list reads in their own export.
    let seen = accessed_by_staff(&h, &officer, ann.account_id).await;
    let agent_id = agent.account_id.to_string();
    let officer_id = officer.account_id.to_string();
    for want in [
        (&agent_id, "tickets.list", "morning queue"),
        (&officer_id, "child_reports.list", "report review"),
    ] {
        assert!(
            seen.iter()
                .any(|(s, a, r)| (s, a.as_str(), r.as_str()) == want),
            "{want:?} not in Ann's export: {seen:?}"
        );
    }
    assert!(
        !seen.iter().any(|(_, a, _)| a == "requests.list"),
        "Bob's request is not Ann's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_routes_authorise_before_they_read_the_request() {
    let h = Harness::start().await;
    let holder = h.sign_in("nosy-holder@example.com").await;
    let desk = h.sign_in("desk@example.com").await;
    h.cli_ok(&["staff", "grant", "desk@example.com", "support"]);
    let id = holder.account_id;
    // Bodies that would fail validation, ids that are not ids, queries that do not parse:
    // a holder learns nothing about the expected input, only that this is not theirs.
    let writes = [
        (
            "/admin/v1/policies".to_string(),
            json!({ "nonsense": true }),
        ),
        ("/admin/v1/breaches".to_string(), json!({ "affected": 7 })),
        ("/admin/v1/requests".to_string(), json!({})),
        (
            format!("/admin/v1/subjects/{id}/correction"),
            json!({ "name": 1 }),
        ),
        (format!("/admin/v1/subjects/{id}/restriction"), json!([])),
        (format!("/admin/v1/subjects/{id}/objection"), json!("x")),
        (
            format!("/admin/v1/subjects/{id}/restriction/lift"),
            json!({ "why": 1 }),
        ),
        (
            "/admin/v1/subjects/not-a-uuid/objection".to_string(),
            json!({}),
        ),
        (
            "/admin/v1/child-reports/not-a-uuid/confirm".to_string(),
            json!({}),
        ),
    ];
    for (who, session) in [("holder", &holder), ("support", &desk)] {
        for (path, body) in &writes {
            let r = session
                .write(&h, Method::POST, path)
                .json(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{who} {path}");
        }
        let (status, _) = get(&h, session, "/admin/v1/audit?limit=banana").await;
        assert_eq!(status, 403, "{who}: query");
    }
    // The holder is refused on the support routes too; support itself gets its own 400s.
    let r = holder
        .write(&h, Method::POST, "/admin/v1/tickets/not-a-uuid/messages")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = desk
        .write(&h, Method::POST, "/admin/v1/tickets/not-a-uuid/messages")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
