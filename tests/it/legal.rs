//! The policy's remaining duties end to end: policy versions and notices, acceptance by
//! use, the age confirmation at sign-up, child reports, the breach register, takedowns,
//! support correspondence and the sub-processor registry.

use crate::support;

use serde_json::{json, Value};
use std::time::Duration;
use support::hooksink::HookSink;
use support::{scan, Harness, Session};

async fn staff(h: &Harness, email: &str, role: &str) -> Session {
    let s = h.sign_in(email).await;
    h.cli_ok(&["staff", "grant", email, role]);
    s
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

async fn get(h: &Harness, s: &Session, path: &str) -> (u16, Value) {
    let r = s.get(h, path).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn days(n: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(n)).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_material_change_needs_30_days_and_every_holder_is_told_once() {
    let h = Harness::start().await;
    let dpo = staff(&h, "dpo@example.com", "compliance").await;
    let holders = [
        h.sign_in("ann@example.com").await,
        h.sign_in("bob@example.com").await,
        h.sign_in("cat@example.com").await,
    ];
    let publish = |version: &str, d: i64, material: bool| json!({ "version": version, "url": "https://journeyapi.co/privacy/v2", "effective_at": days(d), "material": material });
    // 29 days is too soon for a material change; nothing is published or sent.
    let mails = h.smtp.count();
    let (status, v) = post(&h, &dpo, "/admin/v1/policies", publish("2027-01", 29, true)).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["errors"][0]["msg"].as_str().unwrap().contains("30 days"));
    let (_, page) = get(&h, &dpo, "/v1/legal/privacy-policy").await;
    assert!(page["upcoming"].as_array().unwrap().is_empty());
    // A holder without a staff role cannot publish.
    let (status, _) = post(
        &h,
        &holders[0],
        "/admin/v1/policies",
        publish("x", 40, false),
    )
    .await;
    assert_eq!(status, 403);

    let (status, v) = post(&h, &dpo, "/admin/v1/policies", publish("2027-01", 31, true)).await;
    assert_eq!(status, 201, "{v}");
    // Every account open now (the three holders, and the staff member) gets one notice.
    h.smtp.wait_for(mails + 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notices: Vec<String> = h.smtp.all()[mails..].to_vec();
    assert_eq!(notices.len(), 4, "{notices:?}");
    for who in [
        "ann@example.com",
        "bob@example.com",
        "cat@example.com",
        "dpo@example.com",
    ] {
        assert_eq!(
            notices.iter().filter(|m| m.contains(who)).count(),
            1,
            "{who}"
        );
    }
    assert!(notices[0].contains("2027-01"));
    // Publishing again is refused; resuming the notices sends nobody a second one.
    let (status, _) = post(&h, &dpo, "/admin/v1/policies", publish("2027-01", 40, true)).await;
    assert_eq!(status, 409);
    let out = h.cli_ok(&["policy", "notify", "--version", "2027-01"]);
    assert!(out.contains("0 notices sent"), "{out}");
    assert_eq!(h.smtp.count(), mails + 4);
    // Staff can prove who was told, when (an audited read).
    let (status, rec) = get(
        &h,
        &dpo,
        &format!(
            "/admin/v1/subjects/{}/policy?reason=regulator%20question",
            holders[1].account_id
        ),
    )
    .await;
    assert_eq!(status, 200, "{rec}");
    assert!(rec["versions"][0]["notified_at"].is_string());
    assert!(rec["versions"][0]["accepted_at"].is_null());

    // Upcoming now; in force after its date, when the first request records acceptance.
    let (_, page) = get(&h, &holders[0], "/v1/legal/privacy-policy").await;
    assert_eq!(page["upcoming"][0]["version"], "2027-01");
    assert!(page["current"].is_null());
    assert!(page["privacy_contact"].as_str().unwrap().contains('@'));
    assert!(page["supervisory_authority"]["name"].is_string());
    h.clock.advance(chrono::Duration::days(32));
    let ann = h.sign_in("ann@example.com").await; // sessions last 30 days
    let (_, page) = get(&h, &ann, "/v1/legal/privacy-policy").await;
    assert_eq!(page["current"]["version"], "2027-01");
    let (_, mine) = get(&h, &ann, "/v1/me/policy").await;
    assert!(mine["versions"][0]["accepted_at"].is_string(), "{mine}");
    // Consent changes record the version in force.
    let r = ann
        .write(&h, reqwest::Method::PUT, "/v1/me/consents")
        .json(&json!({ "marketing_email": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, consents) = get(&h, &ann, "/v1/me/consents").await;
    assert!(consents.to_string().contains("2027-01"), "{consents}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_needs_an_age_confirmation_and_a_refusal_creates_nothing() {
    let h = Harness::start().await;
    let token = h.magic_link_token("young@example.com").await;
    for body in [
        json!({ "token": token }),
        json!({ "token": token, "country": "DE", "age_confirmed": false }),
        json!({ "token": token, "country": "Germany", "age_confirmed": true }),
    ] {
        let r = h
            .browser()
            .post(h.url("/v1/auth/magic-link/consume"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["errors"][0]["msg"].as_str().unwrap().contains("age")
                || v["errors"][0]["msg"].as_str().unwrap().contains("country")
        );
    }
    // No account was registered: nothing in the accounts read model.
    assert!(scan::rows_as_text(&h.database_url, "rm_accounts")
        .await
        .is_empty());
    // Germany needs 16; the confirmation and the policy in force are recorded.
    let (_, req) = (
        (),
        reqwest::Client::new()
            .get(h.url("/v1/legal/age-requirement?country=de"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
    );
    assert_eq!(req["minimum_age"], 16);
    let r = h
        .browser()
        .post(h.url("/v1/auth/magic-link/consume"))
        .json(&json!({ "token": token, "country": "de", "age_confirmed": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let events = h
        .stream_events(&format!("account/{}", v["account_id"].as_str().unwrap()))
        .await;
    let terms: Value = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event_type"] == "SignUpTermsAccepted")
        .expect("terms recorded");
    let t = &terms["payload"]["SignUpTermsAccepted"]["terms"];
    assert_eq!(t["minimum_age"], 16);
    assert_eq!(t["country"], "DE");
    assert_eq!(t["policy_version"], "2026-03-26");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_child_report_erases_the_account_at_once() {
    let h = Harness::start().await;
    let child = h.api_client("kid@example.com", 0).await;
    let officer = staff(&h, "officer@example.com", "compliance").await;
    let r = reqwest::Client::new()
        .post(h.url("/v1/legal/child-report"))
        .json(&json!({ "account_email": "kid@example.com", "reporter_contact": "parent@example.net", "details": "my son is 11" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let report = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // An unknown address gets the same answer (no account enumeration).
    let r = reqwest::Client::new()
        .post(h.url("/v1/legal/child-report"))
        .json(&json!({ "account_email": "nobody@example.com", "reporter_contact": "x@example.net", "details": "d" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (status, list) = get(&h, &officer, "/admin/v1/child-reports?reason=review").await;
    assert_eq!(status, 200);
    let entry = list["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["report_id"] == report)
        .unwrap()
        .clone();
    assert_eq!(entry["account_id"], child.account_id.to_string());
    assert_eq!(entry["status"], "open");
    assert_eq!(entry["details"], "my son is 11");
    assert_eq!(entry["reporter_contact"], "parent@example.net");

    let (status, v) = post(
        &h,
        &officer,
        &format!("/admin/v1/child-reports/{report}/confirm"),
        json!({ "reason": "age confirmed with the parent" }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "confirmed");
    // Erased now, not in 30 days: the key is refused, the address is gone everywhere,
    // and an erasure certificate names the report.
    let r = reqwest::Client::new()
        .get(h.url("/api/v1/account"))
        .header("authorization", &child.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(scan::find_plaintext(&h.database_url, &["kid@example.com"])
        .await
        .is_empty());
    let events = h
        .stream_events(&format!("account/{}", child.account_id))
        .await;
    assert!(
        events.contains("ErasureCertified") && events.contains(&report),
        "{events}"
    );
    let (status, _) = post(
        &h,
        &officer,
        &format!("/admin/v1/child-reports/{report}/reject"),
        json!({ "reason": "twice" }),
    )
    .await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breach_register_tracks_deadlines_and_notifications() {
    let h = Harness::start().await;
    let officer = staff(&h, "officer@example.com", "compliance").await;
    let a = h.sign_in("victim-a@example.com").await;
    let b = h.sign_in("victim-b@example.com").await;
    let discovered = (chrono::Utc::now() - chrono::Duration::hours(80)).to_rfc3339();
    let (status, v) = post(
        &h,
        &officer,
        "/admin/v1/breaches",
        json!({
            "discovered_at": discovered,
            "description": "A backup bucket was readable without authentication for 2 hours.",
            "categories": ["account", "usage"],
            "affected": { "accounts": [a.account_id, b.account_id] }
        }),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["breach_id"].as_str().unwrap().to_string();
    assert_eq!(v["affected"], 2);
    // Discovered 80 hours ago: the 72-hour deadline has passed.
    assert_eq!(v["overdue"], true);
    let (_, list) = get(&h, &officer, "/admin/v1/breaches").await;
    assert_eq!(list["breaches"][0]["overdue"], true);

    let mails = h.smtp.count();
    let (status, v) = post(
        &h,
        &officer,
        &format!("/admin/v1/breaches/{id}/notify-holders"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["holders_notified"], 2);
    let sent = &h.smtp.all()[mails..];
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter().any(|m| m.contains("victim-a@example.com"))
            && sent.iter().any(|m| m.contains("victim-b@example.com"))
    );
    // Again: nobody is told twice.
    post(
        &h,
        &officer,
        &format!("/admin/v1/breaches/{id}/notify-holders"),
        json!({}),
    )
    .await;
    assert_eq!(h.smtp.count(), mails + 2);
    // Writing to each holder was recorded once, under the breach, before it was done.
    let (_, trail) = get(
        &h,
        &officer,
        &format!("/admin/v1/audit?reason=check&subject={}", a.account_id),
    )
    .await;
    let notified: Vec<&Value> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "breach.notify_holders")
        .collect();
    assert_eq!(notified.len(), 1, "{trail}");
    assert_eq!(notified[0]["reason"], format!("breach {id}"));

    let (status, v) = post(
        &h,
        &officer,
        &format!("/admin/v1/breaches/{id}/regulator-notified"),
        json!({ "reference": "DPA case 2026-1187" }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["overdue"], false);
    assert_eq!(v["regulator_reference"], "DPA case 2026-1187");
    let (status, _) = post(
        &h,
        &officer,
        &format!("/admin/v1/breaches/{id}/regulator-notified"),
        json!({ "reference": "again" }),
    )
    .await;
    assert_eq!(status, 409);
    // A fresh breach is within its deadline; bad input changes nothing.
    let (status, v) = post(
        &h,
        &officer,
        "/admin/v1/breaches",
        json!({
            "discovered_at": chrono::Utc::now().to_rfc3339(), "description": "lost laptop",
            "categories": ["billing"], "affected": { "all_accounts": true }
        }),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(v["overdue"], false);
    assert!(v["affected"].as_u64().unwrap() >= 3);
    for bad in [
        json!({ "discovered_at": discovered, "description": "", "categories": ["account"], "affected": { "all_accounts": true } }),
        json!({ "discovered_at": discovered, "description": "x", "categories": ["secrets"], "affected": { "all_accounts": true } }),
        json!({ "discovered_at": days(1), "description": "x", "categories": ["account"], "affected": { "all_accounts": true } }),
    ] {
        let (status, _) = post(&h, &officer, "/admin/v1/breaches", bad).await;
        assert_eq!(status, 400);
    }
    let (_, list) = get(&h, &officer, "/admin/v1/breaches").await;
    assert_eq!(list["breaches"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actioned_takedown_removes_results_everywhere() {
    let h = Harness::start().await;
    let officer = staff(&h, "officer@example.com", "compliance").await;
    let sink = HookSink::start().await;
    sink.set_replies(vec![500]);
    let c = h.api_client("artist@example.com", 20).await;
    let task = c
        .create(
            &h,
            "imagine",
            json!({ "prompt": "a famous logo", "webhook_url": sink.url }),
        )
        .await;
    let other = c.create(&h, "imagine", json!({ "prompt": "a tree" })).await;
    h.mj.finish_all().await;
    let done = c.wait_for(&h, task, "finished").await;
    c.wait_for(&h, other, "finished").await;
    sink.wait_for(1, Duration::from_secs(10)).await; // the first attempt failed (500)
    let image = done["image_urls"][2].as_str().unwrap().to_string();

    let claim = reqwest::Client::new()
        .post(h.url("/v1/legal/takedown"))
        .json(&json!({ "claimant_email": "legal@brand.example", "claimant_name": "Brand Legal", "image_url": image, "grounds": "our registered trademark" }))
        .send()
        .await
        .unwrap();
    assert_eq!(claim.status(), 202);
    let case = claim.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, list) = get(
        &h,
        &officer,
        "/admin/v1/takedowns?reason=weekly&status=open",
    )
    .await;
    assert_eq!(
        list["cases"][0]["task_id"],
        task.to_string(),
        "the image URL found its task"
    );
    assert_eq!(list["cases"][0]["grounds"], "our registered trademark");
    let mails = h.smtp.count();
    let (status, v) = post(
        &h,
        &officer,
        &format!("/admin/v1/takedowns/{case}/action"),
        json!({ "reason": "trademark infringement" }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["notified"], json!(["claimant", "holder"]));
    let sent = &h.smtp.all()[mails..];
    assert!(sent.iter().any(|m| m.contains("legal@brand.example")));
    assert!(sent.iter().any(|m| m.contains("artist@example.com")));

    // fetch and fetch-many no longer show the results; the other task is untouched.
    let f = c.fetch(&h, task).await;
    for k in ["original_image_url", "image_urls", "image_url"] {
        assert!(f.get(k).is_none(), "{k} still in {f}");
    }
    assert_eq!(f["status"], "finished");
    let (_, many) = c
        .post(&h, "fetch-many", json!({ "task_ids": [task, other] }))
        .await;
    let text = many.to_string();
    assert!(!text.contains(&image) && !text.contains(done["original_image_url"].as_str().unwrap()));
    assert!(
        text.contains("grid.png"),
        "the other task keeps its results: {text}"
    );
    // The webhook not yet delivered goes out without them.
    h.clock.advance(chrono::Duration::seconds(61));
    let deliveries = sink.wait_for(2, Duration::from_secs(10)).await;
    assert!(
        deliveries[0].body["original_image_url"].is_string(),
        "the first attempt predates the takedown"
    );
    assert!(
        deliveries[1].body.get("original_image_url").is_none(),
        "{}",
        deliveries[1].body
    );
    // Nor does the export.
    let out = h.data_dir.join("export.json");
    h.cli_ok(&[
        "export",
        "--subject",
        &c.account_id.to_string(),
        "--by",
        &officer.account_id.to_string(),
        "--reason",
        "access",
        "--out",
        out.to_str().unwrap(),
    ]);
    let doc = std::fs::read_to_string(&out).unwrap();
    assert!(!doc.contains(&image), "the export still holds the image");
    assert!(doc.contains("[taken down]"));
    // The holder sees that staff listed the case against their task, and decided it.
    let accessed: Value = serde_json::from_str::<Value>(&doc).unwrap()["accessed_by_staff"].clone();
    for (action, reason) in [
        ("takedowns.list", "weekly"),
        ("takedown.action", "trademark infringement"),
    ] {
        assert!(
            accessed
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == action
                    && e["reason"] == reason
                    && e["staff"] == officer.account_id.to_string()),
            "{action} not in {accessed}"
        );
    }
    let (status, _) = post(
        &h,
        &officer,
        &format!("/admin/v1/takedowns/{case}/reject"),
        json!({ "reason": "changed mind" }),
    )
    .await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_tickets_are_sealed_kept_three_years_and_erasable() {
    let h = Harness::start().await;
    let holder = h.sign_in("asker@example.com").await;
    let agent = staff(&h, "agent@example.com", "support").await;
    let (status, t) = post(&h, &holder, "/v1/support/tickets", json!({ "subject": "Refund for order 7741", "message": "I was charged twice, my card ends 4242 — Rosalind Featherstonehaugh" })).await;
    assert_eq!(status, 201, "{t}");
    let id = t["ticket_id"].as_str().unwrap().to_string();
    let (status, _) = post(
        &h,
        &holder,
        "/v1/support/tickets",
        json!({ "subject": "", "message": "x" }),
    )
    .await;
    assert_eq!(status, 400);
    // Sealed: no table holds the text.
    assert!(scan::find_plaintext(
        &h.database_url,
        &["Rosalind Featherstonehaugh", "Refund for order 7741"]
    )
    .await
    .is_empty());
    // Support staff read (audited) and answer; another holder sees nothing.
    let (status, _) = get(&h, &agent, &format!("/admin/v1/tickets/{id}")).await;
    assert_eq!(status, 400, "a reason is required");
    let (status, v) = get(&h, &agent, &format!("/admin/v1/tickets/{id}?reason=queue")).await;
    assert_eq!(status, 200);
    assert!(v["messages"][0]["body"]
        .as_str()
        .unwrap()
        .contains("charged twice"));
    let (status, _) = post(
        &h,
        &agent,
        &format!("/admin/v1/tickets/{id}/messages"),
        json!({ "message": "Refunded the duplicate." }),
    )
    .await;
    assert_eq!(status, 200);
    let stranger = h.sign_in("nosy@example.com").await;
    let (status, _) = get(&h, &stranger, &format!("/v1/support/tickets/{id}")).await;
    assert_eq!(status, 404);
    let (_, mine) = get(&h, &holder, &format!("/v1/support/tickets/{id}")).await;
    assert_eq!(mine["messages"].as_array().unwrap().len(), 2);
    assert_eq!(mine["messages"][1]["from"], "staff");
    let (status, _) = post(
        &h,
        &holder,
        &format!("/v1/support/tickets/{id}/close"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &h,
        &holder,
        &format!("/v1/support/tickets/{id}/messages"),
        json!({ "message": "one more" }),
    )
    .await;
    assert_eq!(status, 409);

    // A second ticket the holder deletes: gone at once.
    let (_, t2) = post(
        &h,
        &holder,
        "/v1/support/tickets",
        json!({ "subject": "Address change", "message": "I moved to 12 Quillfeather Row" }),
    )
    .await;
    let id2 = t2["ticket_id"].as_str().unwrap().to_string();
    let r = holder
        .write(
            &h,
            reqwest::Method::DELETE,
            &format!("/v1/support/tickets/{id2}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, gone) = get(&h, &holder, &format!("/v1/support/tickets/{id2}")).await;
    assert_eq!(gone["status"], "deleted");
    assert_eq!(gone["messages"][0]["body"], "[erased]");
    // Replies to a deleted ticket, from the holder or staff, are refused as such (the
    // account itself is alive).
    for (who, path) in [
        (&holder, format!("/v1/support/tickets/{id2}/messages")),
        (&agent, format!("/admin/v1/tickets/{id2}/messages")),
    ] {
        let (status, v) = post(&h, who, &path, json!({ "message": "hello?" })).await;
        assert_eq!(status, 409, "{path}: {v}");
        assert_eq!(
            v["errors"][0]["msg"], "the ticket's correspondence was deleted",
            "{v}"
        );
    }
    assert_eq!(get(&h, &holder, "/v1/me").await.0, 200);

    // The export includes the correspondence.
    let out = h.data_dir.join("export.json");
    let dpo = staff(&h, "dpo@example.com", "compliance").await;
    h.cli_ok(&[
        "export",
        "--subject",
        &holder.account_id.to_string(),
        "--by",
        &dpo.account_id.to_string(),
        "--reason",
        "access",
        "--out",
        out.to_str().unwrap(),
    ]);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(doc["sections"]["support"]
        .to_string()
        .contains("charged twice"));

    // Kept 3 years after closing: a retention run at 2 years keeps it, at 3 years+ not.
    let run = |d: i64| {
        let as_of = days(d);
        serde_json::from_str::<Value>(&h.cli_ok(&[
            "retention",
            "run",
            "--simulate",
            "--as-of",
            &as_of,
        ]))
        .unwrap()
    };
    let r = run(2 * 365);
    assert!(r["keys_destroyed"].get("support").is_none(), "{r}");
    let (_, still) = get(&h, &holder, &format!("/v1/support/tickets/{id}")).await;
    assert!(still["messages"][0]["body"]
        .as_str()
        .unwrap()
        .contains("charged twice"));
    let r = run(3 * 365 + 2);
    assert_eq!(r["keys_destroyed"]["support"], 1, "{r}");
    let events = h.cli_ok(&[
        "events",
        "--stream",
        &format!("ticket/{id}"),
        "--by",
        &dpo.account_id.to_string(),
        "--reason",
        "retention check",
    ]);
    let first = events
        .lines()
        .find(|l| l.contains("TicketMessagePosted"))
        .unwrap()
        .to_string();
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        v["payload"]["TicketMessagePosted"]["body"]["c"], "",
        "compacted into a tombstone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_takes_support_correspondence_with_it() {
    let h = Harness::start().await;
    let holder = h.sign_in("leaver@example.com").await;
    let agent = staff(&h, "agent@example.com", "support").await;
    let (status, t) = post(
        &h,
        &holder,
        "/v1/support/tickets",
        json!({ "subject": "Help", "message": "My phone is +44 7700 900123" }),
    )
    .await;
    assert_eq!(status, 201);
    let id = t["ticket_id"].as_str().unwrap().to_string();
    h.erase(&holder.account_id.to_string(), "test erasure")
        .await;
    // The ticket's key went with the account's: staff now see it erased.
    let (status, v) = get(&h, &agent, &format!("/admin/v1/tickets/{id}?reason=queue")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["messages"][0]["body"], "[erased]");
    assert_eq!(v["subject"], "[erased]");
    h.cli_ok(&["retention", "run"]);
    assert!(
        scan::find_plaintext(&h.database_url, &["+44 7700 900123", "leaver@example.com"])
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subprocessor_registry_is_public_and_complete() {
    let h = Harness::start().await;
    let v: Value = reqwest::Client::new()
        .get(h.url("/v1/legal/subprocessors"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names = v["subprocessors"].to_string();
    for needle in ["Stripe", "BLTCY", "Email", "Hosting"] {
        assert!(names.contains(needle), "{needle} missing: {names}");
    }
    assert!(v["subprocessors"][0]["transfer_safeguard"].is_string());
    // A provider without a registry entry stops start-up with a clear message.
    let mut cfg = h.cfg.clone();
    let p = cfg.providers["images"].clone();
    cfg.providers.insert("newcorp".into(), p);
    let err = journey_contexts::app::Core::build(cfg, None)
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("newcorp") && msg.contains("sub-processor registry"),
        "{msg}"
    );
}
