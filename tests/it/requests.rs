//! Data-subject requests: verification by emailed one-time code, staff steps, the due-date
//! worklist with overdue flags, and reminders before a request falls due.

use crate::support;

use reqwest::Method;
use serde_json::{json, Value};
use support::{Harness, Session};

/// The six-digit code in the newest mail.
async fn code_from_mail(h: &Harness, count: usize) -> (String, String) {
    let mail = h.smtp.wait_for(count).await;
    let at = mail.find("Verification code: ").expect("code in mail") + "Verification code: ".len();
    (mail[at..at + 6].to_string(), mail)
}

async fn post(h: &Harness, s: &Session, path: &str, body: Value) -> (u16, Value) {
    let r = s
        .write(h, Method::POST, path)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_requests_are_verified_by_a_one_time_code() {
    let h = Harness::start().await;
    let s = h.sign_in("asker@example.com").await;
    let other = h.sign_in("other@example.com").await;
    let mails = h.smtp.count();
    let (status, req) = post(&h, &s, "/v1/me/requests", json!({ "type": "access" })).await;
    assert_eq!(status, 201, "{req}");
    assert_eq!(req["status"], "received");
    let due = chrono::DateTime::parse_from_rfc3339(req["due_at"].as_str().unwrap()).unwrap();
    let days = (due.with_timezone(&chrono::Utc) - journey_commands::Clock::now(h.clock.as_ref()))
        .num_hours();
    assert!(
        (719..=720).contains(&days),
        "due 30 days after receipt: {days}h"
    );
    let (code, mail) = code_from_mail(&h, mails + 1).await;
    assert!(mail.contains("asker@example.com"));
    let id = req["request_id"].as_str().unwrap().to_string();
    let verify = format!("/v1/me/requests/{id}/verify");
    assert!(
        !support::scan::find_plaintext(&h.database_url, &[&code])
            .await
            .iter()
            .any(|f| f.starts_with("events")),
        "the code is stored only hashed"
    );

    let (status, _) = post(&h, &other, &verify, json!({ "code": code })).await;
    assert_eq!(status, 404, "another account cannot touch it");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in ["2", "1", "0"] {
        let (status, body) = post(&h, &s, &verify, json!({ "code": wrong })).await;
        assert_eq!(status, 400);
        assert!(
            body["errors"][0]["msg"]
                .as_str()
                .unwrap()
                .contains(&format!("{left} attempt")),
            "{body}"
        );
    }
    let (status, body) = post(&h, &s, &verify, json!({ "code": code })).await;
    assert_eq!(status, 400, "burnt after three attempts");
    assert!(body["errors"][0]["msg"]
        .as_str()
        .unwrap()
        .contains("new one"));
    let (status, _) = post(&h, &s, &format!("/v1/me/requests/{id}/code"), json!({})).await;
    assert_eq!(status, 200);
    let (fresh, _) = code_from_mail(&h, mails + 2).await;
    h.clock.advance(chrono::Duration::minutes(11));
    let (status, _) = post(&h, &s, &verify, json!({ "code": fresh })).await;
    assert_eq!(status, 400, "ten minutes only");
    let (status, _) = post(&h, &s, &format!("/v1/me/requests/{id}/code"), json!({})).await;
    assert_eq!(status, 200);
    let (fresh, _) = code_from_mail(&h, mails + 3).await;
    let (status, body) = post(&h, &s, &verify, json!({ "code": fresh })).await;
    assert_eq!((status, &body["status"]), (200, &json!("verified")));
    let (status, _) = post(&h, &s, &verify, json!({ "code": fresh })).await;
    assert_eq!(status, 409, "already verified");

    let mine: Value = s.get(&h, "/v1/me/requests").await.json().await.unwrap();
    assert_eq!(mine["requests"].as_array().unwrap().len(), 1);
    let theirs: Value = other.get(&h, "/v1/me/requests").await.json().await.unwrap();
    assert!(theirs["requests"].as_array().unwrap().is_empty());
    for bad in [
        json!({ "type": "everything" }),
        json!({}),
        json!({ "type": "access", "x": 1 }),
    ] {
        let (status, _) = post(&h, &s, "/v1/me/requests", bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_work_emailed_requests_by_due_date_and_are_reminded() {
    let h = Harness::start().await;
    let holder = h.sign_in("emailer@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let support_staff = h.sign_in("support@example.com").await;
    h.cli_ok(&["staff", "grant", "support@example.com", "support"]);

    let (status, _) = post(
        &h,
        &support_staff,
        "/admin/v1/requests",
        json!({ "email": "emailer@example.com", "type": "deletion" }),
    )
    .await;
    assert_eq!(status, 403, "support cannot record requests");
    let (status, _) = post(
        &h,
        &officer,
        "/admin/v1/requests",
        json!({ "email": "nobody@example.com", "type": "access" }),
    )
    .await;
    assert_eq!(status, 404);
    let mails = h.smtp.count();
    let (status, first) = post(
        &h,
        &officer,
        "/admin/v1/requests",
        json!({ "email": "Emailer@Example.com", "type": "portability" }),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["subject"], holder.account_id.to_string());
    let (code, mail) = code_from_mail(&h, mails + 1).await;
    assert!(
        mail.contains("emailer@example.com"),
        "the code goes to the account, not to staff"
    );
    let id = first["request_id"].as_str().unwrap();
    let (status, _) = post(
        &h,
        &officer,
        &format!("/admin/v1/requests/{id}/start"),
        json!({}),
    )
    .await;
    assert_eq!(status, 409, "not verified yet");
    let (status, v) = post(
        &h,
        &officer,
        &format!("/admin/v1/requests/{id}/verify"),
        json!({ "code": code }),
    )
    .await;
    assert_eq!((status, &v["status"]), (200, &json!("verified")));
    h.clock.advance(chrono::Duration::hours(1));
    let (status, second) = post(
        &h,
        &holder,
        "/v1/me/requests",
        json!({ "type": "correction" }),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = post(
        &h,
        &officer,
        &format!("/admin/v1/requests/{id}/start"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &h,
        &officer,
        &format!("/admin/v1/requests/{id}/finish"),
        json!({}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, v) = post(
        &h,
        &officer,
        &format!("/admin/v1/requests/{id}/complete"),
        json!({ "reason": "export sent" }),
    )
    .await;
    assert_eq!((status, &v["status"]), (200, &json!("completed")));
    let second_id = second["request_id"].as_str().unwrap();
    let (status, _) = post(
        &h,
        &officer,
        &format!("/admin/v1/requests/{second_id}/reject"),
        json!({}),
    )
    .await;
    assert_eq!(status, 400, "a rejection needs a reason");

    // The worklist is audited, sorted by due date, and flags overdue requests.
    let list = |h: &Harness, s: &Session, q: &str| {
        let path = format!("/admin/v1/requests?reason=weekly%20review{q}");
        let s = s.client.clone();
        let url = h.url(&path);
        async move {
            s.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let all = list(&h, &officer, "").await;
    let ids: Vec<&str> = all["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id, second_id], "soonest due first");
    let open = list(&h, &officer, "&status=received").await;
    assert_eq!(open["requests"].as_array().unwrap().len(), 1);
    assert_eq!(
        officer.get(&h, "/admin/v1/requests").await.status(),
        400,
        "reason required"
    );
    assert_eq!(
        officer
            .get(&h, "/admin/v1/requests?reason=x&status=lost")
            .await
            .status(),
        400
    );
    let trail: Value = officer
        .get(&h, "/admin/v1/audit?reason=check")
        .await
        .json()
        .await
        .unwrap();
    assert!(trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "requests.list"));

    // 28 days later the open request is due within 3 days: staff are emailed, once.
    let as_of = (chrono::Utc::now() + chrono::Duration::days(28)).to_rfc3339();
    let mails = h.smtp.count();
    let report: Value =
        serde_json::from_str(&h.cli_ok(&["retention", "run", "--simulate", "--as-of", &as_of]))
            .unwrap();
    assert_eq!(report["requests_reminded"], 1, "{report}");
    let reminder = h.smtp.wait_for(mails + 1).await;
    assert!(
        reminder.contains("officer@example.com") && reminder.contains(second_id),
        "{reminder}"
    );
    let report: Value =
        serde_json::from_str(&h.cli_ok(&["retention", "run", "--simulate", "--as-of", &as_of]))
            .unwrap();
    assert_eq!(report["requests_reminded"], 0, "reminded once");

    // Past the due date the open request is overdue (sign in again: sessions last 30 days).
    h.clock.advance(chrono::Duration::days(31));
    let officer = h.sign_in("officer@example.com").await;
    let all = list(&h, &officer, "").await;
    let flags: Vec<(&str, bool)> = all["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap(),
                r["overdue"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(flags, [("completed", false), ("received", true)]);
    let due_before = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let early = list(
        &h,
        &officer,
        &format!("&due_before={}", due_before.replace('+', "%2B")),
    )
    .await;
    assert_eq!(early["requests"].as_array().unwrap().len(), 1, "{early}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_resend_codes_and_apply_objection_and_restriction_on_behalf() {
    let h = Harness::start().await;
    let holder = h.sign_in("byletter@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let mails = h.smtp.count();
    let (status, req) = post(
        &h,
        &officer,
        "/admin/v1/requests",
        json!({ "email": "byletter@example.com", "type": "objection" }),
    )
    .await;
    assert_eq!(status, 201);
    let (stale, _) = code_from_mail(&h, mails + 1).await;
    let id = req["request_id"].as_str().unwrap();
    h.clock.advance(chrono::Duration::minutes(11));
    let verify = format!("/admin/v1/requests/{id}/verify");
    let (status, _) = post(&h, &officer, &verify, json!({ "code": stale })).await;
    assert_eq!(status, 400, "the emailed code expired");
    let (status, _) = post(
        &h,
        &officer,
        &format!("/admin/v1/requests/{id}/code"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (fresh, mail) = code_from_mail(&h, mails + 2).await;
    assert!(
        mail.contains("byletter@example.com"),
        "the new code goes to the account"
    );
    let (status, v) = post(&h, &officer, &verify, json!({ "code": fresh })).await;
    assert_eq!((status, &v["status"]), (200, &json!("verified")));

    let subject = holder.account_id;
    let (status, _) = post(
        &h,
        &officer,
        &format!("/admin/v1/subjects/{subject}/objection"),
        json!({ "reason": "" }),
    )
    .await;
    assert_eq!(status, 400, "a reason is required");
    let (status, v) = post(
        &h,
        &officer,
        &format!("/admin/v1/subjects/{subject}/objection"),
        json!({ "reason": id }),
    )
    .await;
    assert_eq!((status, &v["marketing_objection"]), (200, &json!(true)));
    let (status, v) = post(
        &h,
        &officer,
        &format!("/admin/v1/subjects/{subject}/restriction"),
        json!({ "reason": id }),
    )
    .await;
    assert_eq!((status, &v["restricted"]), (200, &json!(true)));
    let (status, _) = post(
        &h,
        &holder,
        &format!("/admin/v1/subjects/{subject}/restriction"),
        json!({ "reason": "me" }),
    )
    .await;
    assert_eq!(status, 403);

    let mine: Value = holder
        .get(&h, "/v1/me/consents")
        .await
        .json()
        .await
        .unwrap();
    let history = mine["history"].as_array().unwrap();
    assert!(history.iter().all(|c| c["source"] == "staff"), "{mine}");
    let trail: Value = officer
        .get(
            &h,
            &format!("/admin/v1/audit?reason=check&subject={subject}"),
        )
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"objection.apply") && actions.contains(&"restriction.apply"),
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_correct_a_holders_data_on_request() {
    let h = Harness::start().await;
    let holder = h.sign_in("misspelt@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let path = format!("/admin/v1/subjects/{}/correction", holder.account_id);
    // Nothing to correct, or no reason: refused, nothing changes.
    let (status, _) = post(&h, &officer, &path, json!({ "reason": "DSR 12" })).await;
    assert_eq!(status, 400);
    let (status, _) = post(&h, &officer, &path, json!({ "name": "X", "reason": " " })).await;
    assert_eq!(status, 400);
    // The holder cannot use the staff tool.
    let (status, _) = post(&h, &holder, &path, json!({ "name": "X", "reason": "me" })).await;
    assert_eq!(status, 403);

    let mails = h.smtp.count();
    let (status, v) = post(
        &h,
        &officer,
        &path,
        json!({ "name": "Marguerite Okafor", "email": "corrected@example.com", "reason": "correction request 12" }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name_corrected"], true);
    // The name is corrected at once, recorded as the staff member's act; the address changes
    // only once the new one confirms.
    let me: Value = holder.get(&h, "/v1/me").await.json().await.unwrap();
    assert_eq!(me["name"], "Marguerite Okafor");
    assert_eq!(me["email"], "misspelt@example.com");
    let mail = h.smtp.wait_for(mails + 1).await;
    assert!(mail.contains("corrected@example.com"));
    let events = h
        .stream_events(&format!("account/{}", holder.account_id))
        .await;
    let corrected = events
        .lines()
        .find(|l| l.contains("NameCorrected"))
        .unwrap();
    assert!(
        corrected.contains(&format!("staff:{}", officer.account_id)),
        "{corrected}"
    );
    // The correction is in the audit trail with its reason.
    let trail: Value = officer
        .get(
            &h,
            &format!("/admin/v1/audit?reason=check&subject={}", holder.account_id),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        trail.to_string().contains("correction request 12"),
        "{trail}"
    );
}
