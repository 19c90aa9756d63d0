//! The compliance console (`/console`) over plain HTTP: holders get a 403 page, each staff
//! role sees only its pages, every form needs the CSRF token, a subject's timeline is
//! audited before it opens (no reason, nothing shown and nothing recorded), bad input
//! gets an HTML 4xx page and changes nothing, the audit trail exports as CSV, and a
//! request is worked to completion. The browser flow is in `browser_console.rs`.

use crate::support::{Harness, Session};
use journey_contexts::identity::staff::AuditFilter;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

fn assert_page(headers: &HeaderMap) {
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert!(h("content-type").unwrap().starts_with("text/html"));
    assert_eq!(h("cache-control").as_deref(), Some("no-store"));
    assert_eq!(h("x-frame-options").as_deref(), Some("DENY"));
    assert!(h("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
}

/// A form post as a browser sends it; (status, headers, body).
async fn post_form(
    h: &Harness,
    s: &Session,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let r = s
        .client
        .post(h.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

async fn get_page(h: &Harness, s: &Session, path: &str) -> (u16, String) {
    let r = s.get(h, path).await;
    let status = r.status().as_u16();
    if status != 303 {
        assert_page(r.headers());
    }
    (status, r.text().await.unwrap())
}

/// The audit trail as the JSON API gives it, filtered by actor.
async fn trail(h: &Harness, reader: &Session, actor: &Session) -> Vec<Value> {
    let v: Value = reader
        .get(
            h,
            &format!(
                "/admin/v1/audit?reason=test%20check&actor={}",
                actor.account_id
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    v["entries"].as_array().unwrap().clone()
}

fn actions(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_are_refused_and_each_role_sees_only_its_pages() {
    let h = Harness::start().await;

    // Signed out: to the sign-in page.
    let r = h.browser().get(h.url("/console")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");

    // A holder: a 403 page (HTML, not JSON) on every console page and form.
    let holder = h.sign_in("holder@example.com").await;
    for path in ["/console", "/console/audit", "/console/requests"] {
        let (status, html) = get_page(&h, &holder, path).await;
        assert_eq!(status, 403, "{path}");
        assert!(html.contains("no staff role"), "{path}: {html}");
        assert!(!html.contains("Find a subject"));
    }
    let (status, headers, _) = post_form(
        &h,
        &holder,
        "/console/find",
        &[("csrf", &holder.csrf), ("email", "holder@example.com")],
    )
    .await;
    assert_eq!(status, 403);
    assert_page(&headers);

    // Support: the console's home only; no subject, audit or request pages.
    let support = h.sign_in("helper@example.com").await;
    h.cli_ok(&["staff", "grant", "helper@example.com", "support"]);
    let (status, html) = get_page(&h, &support, "/console").await;
    assert_eq!(status, 200);
    assert!(!html.contains("href=\"/console/audit\""), "{html}");
    assert!(!html.contains("href=\"/console/requests\""));
    assert!(!html.contains("Find a subject"));
    assert!(!html.contains("<script") && !html.contains("style="));
    for path in [
        "/console/audit",
        "/console/requests",
        &format!("/console/subjects/{}", holder.account_id),
    ] {
        let (status, html) = get_page(&h, &support, path).await;
        assert_eq!(status, 403, "{path}");
        assert!(html.contains("admin, compliance"), "{html}");
    }
    let (status, _, _) = post_form(
        &h,
        &support,
        &format!("/console/subjects/{}/timeline", holder.account_id),
        &[("csrf", &support.csrf), ("reason", "curious")],
    )
    .await;
    assert_eq!(status, 403, "support cannot open a timeline");

    // Compliance: every page, and the navigation shows them.
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let (status, html) = get_page(&h, &officer, "/console").await;
    assert_eq!(status, 200);
    assert!(html.contains("<h1>Compliance console</h1>"));
    assert!(
        html.contains("href=\"/console/audit\"") && html.contains("href=\"/console/requests\"")
    );
    assert!(html.contains("Find a subject"));
    for path in ["/console/audit", "/console/requests"] {
        let (status, html) = get_page(&h, &officer, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(html.contains("aria-current=\"page\""));
    }
    // Another method on a console path: an HTML 405 page.
    let r = officer
        .write(&h, Method::DELETE, "/console/audit")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_page(r.headers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_is_found_by_email_and_its_timeline_is_audited_before_it_opens() {
    let h = Harness::start().await;
    let holder = h.sign_in("subject@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);

    // Forms need the CSRF token: refused, nothing read or recorded.
    for csrf in ["", "wrong"] {
        let (status, headers, html) = post_form(
            &h,
            &officer,
            "/console/find",
            &[("csrf", csrf), ("email", "subject@example.com")],
        )
        .await;
        assert_eq!(status, 403);
        assert_page(&headers);
        assert!(html.contains("reload the page"));
        let (status, _, html) = post_form(
            &h,
            &officer,
            &format!("/console/subjects/{}/timeline", holder.account_id),
            &[("csrf", csrf), ("reason", "DSR-1")],
        )
        .await;
        assert_eq!(status, 403);
        assert!(!html.contains("subject@example.com"));
    }

    // A lookup by email needs a reason (it says whether the address holds an account).
    let (status, _, html) = post_form(
        &h,
        &officer,
        "/console/find",
        &[("csrf", &officer.csrf), ("email", "Subject@Example.com")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(html.contains("Give a reason"), "{html}");
    // Found by email (in the POST body): to the subject's page, whose URL holds the id only;
    // the lookup is in the audit trail with its reason and subject.
    let (status, headers, _) = post_form(
        &h,
        &officer,
        "/console/find",
        &[
            ("csrf", &officer.csrf),
            ("email", "Subject@Example.com"),
            ("reason", "ticket 77"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let finds = h
        .app
        .identity()
        .audit_trail(&AuditFilter {
            subject: Some(holder.account_id),
            action: Some("subject.find".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(finds.len(), 1, "{finds:?}");
    assert!(format!("{finds:?}").contains("ticket 77"), "{finds:?}");
    let location = headers["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("/console/subjects/{}", holder.account_id));
    // Or by id.
    let (status, headers, _) = post_form(
        &h,
        &officer,
        "/console/find",
        &[
            ("csrf", &officer.csrf),
            ("id", &holder.account_id.to_string()),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"].to_str().unwrap(), location);
    // Unknown address, bad id: HTML 4xx pages.
    let (status, headers, html) = post_form(
        &h,
        &officer,
        "/console/find",
        &[
            ("csrf", &officer.csrf),
            ("email", "nobody@example.com"),
            ("reason", "ticket 78"),
        ],
    )
    .await;
    assert_eq!(status, 404);
    assert_page(&headers);
    assert!(html.contains("No account"), "{html}");
    let (status, _, _) = post_form(
        &h,
        &officer,
        "/console/find",
        &[("csrf", &officer.csrf), ("id", "not-a-uuid")],
    )
    .await;
    assert_eq!(status, 400);

    // The subject page asks for a reason and shows none of the subject's data.
    let (status, html) = get_page(&h, &officer, &location).await;
    assert_eq!(status, 200);
    assert!(html.contains("<label for=\"reason\">Reason</label>"));
    assert!(!html.contains("subject@example.com"));
    assert!(trail(&h, &officer, &officer)
        .await
        .iter()
        .all(|e| e["action"] != "subject.events"));

    // No reason, or a bad date: a 400 page, nothing shown, nothing recorded.
    let timeline = format!("{location}/timeline");
    for fields in [
        vec![("reason", "")],
        vec![("reason", "DSR-2"), ("from", "29/11/2026")],
        vec![
            ("reason", "DSR-2"),
            ("from", "2026-11-29"),
            ("to", "2026-11-01"),
        ],
        vec![("reason", "DSR-2"), ("after", "-4")],
    ] {
        let mut f = vec![("csrf", officer.csrf.as_str())];
        f.extend(fields.iter().copied());
        let (status, headers, html) = post_form(&h, &officer, &timeline, &f).await;
        assert_eq!(status, 400, "{fields:?}: {html}");
        assert_page(&headers);
        assert!(!html.contains("subject@example.com"), "{fields:?}");
    }
    let before = trail(&h, &officer, &officer).await;
    assert!(
        actions(&before).iter().all(|a| a != "subject.events"),
        "{before:?}"
    );

    // With a reason: recorded, then shown with sealed fields opened.
    let (status, headers, html) = post_form(
        &h,
        &officer,
        &timeline,
        &[("csrf", &officer.csrf), ("reason", "DSR-3 access request")],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert_page(&headers);
    assert!(html.contains("<h1>Subject timeline</h1>"));
    assert!(html.contains("AccountRegistered") && html.contains("subject@example.com"));
    assert!(
        html.contains("<option value=\"session\""),
        "categories offered"
    );
    let after = trail(&h, &officer, &officer).await;
    let read = after
        .iter()
        .find(|e| e["action"] == "subject.events")
        .expect("the read is recorded");
    assert_eq!(read["subject"], holder.account_id.to_string());
    assert_eq!(read["reason"], "DSR-3 access request");

    // Filtered by category: only that category's events.
    let (status, _, html) = post_form(
        &h,
        &officer,
        &timeline,
        &[
            ("csrf", &officer.csrf),
            ("reason", "DSR-3 access request"),
            ("category", "session"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("SessionStarted") && !html.contains("AccountRegistered"));
    // A date window with nothing in it: the empty state.
    let (status, _, html) = post_form(
        &h,
        &officer,
        &timeline,
        &[
            ("csrf", &officer.csrf),
            ("reason", "DSR-3 access request"),
            ("to", "2001-01-01"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"no-events\""));

    // After erasure the timeline still opens, with the erased values shown as erased.
    h.erase(&holder.account_id.to_string(), "DSR-4 erasure")
        .await;
    let (status, _, html) = post_form(
        &h,
        &officer,
        &timeline,
        &[("csrf", &officer.csrf), ("reason", "DSR-4 check erasure")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("<span class=\"erased\">[erased]</span>"));
    assert!(!html.contains("subject@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_filters_and_exports_as_csv() {
    let h = Harness::start().await;
    let holder = h.sign_in("watched@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let timeline = format!("/console/subjects/{}/timeline", holder.account_id);
    for reason in ["DSR-9, \"quoted\"", "=HYPERLINK(\"x\")"] {
        let (status, _, _) = post_form(
            &h,
            &officer,
            &timeline,
            &[("csrf", &officer.csrf), ("reason", reason)],
        )
        .await;
        assert_eq!(status, 200);
    }

    // The page: no reason, nothing listed and nothing recorded.
    let (status, _, html) = post_form(
        &h,
        &officer,
        "/console/audit",
        &[("csrf", &officer.csrf), ("reason", "")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(!html.contains("audit-entries"));
    for bad in [("actor", "bob"), ("from", "yesterday")] {
        let (status, headers, _) = post_form(
            &h,
            &officer,
            "/console/audit",
            &[("csrf", &officer.csrf), ("reason", "review"), bad],
        )
        .await;
        assert_eq!(status, 400, "{bad:?}");
        assert_page(&headers);
    }
    assert_eq!(
        actions(&trail(&h, &officer, &officer).await),
        ["subject.events", "subject.events", "audit.list"],
        "only the two reads and this check"
    );

    // Filtered by subject and action.
    let (status, _, html) = post_form(
        &h,
        &officer,
        "/console/audit",
        &[
            ("csrf", &officer.csrf),
            ("reason", "quarterly review"),
            ("subject", &holder.account_id.to_string()),
            ("action", "subject.events"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(html.matches("<code>subject.events</code>").count(), 2);
    assert!(!html.contains("<code>audit.list</code>"));
    let (_, _, html) = post_form(
        &h,
        &officer,
        "/console/audit",
        &[
            ("csrf", &officer.csrf),
            ("reason", "quarterly review"),
            ("action", "no.such.action"),
        ],
    )
    .await;
    assert!(html.contains("id=\"no-entries\""));

    // CSV: a download, recorded first, fields quoted, formulas defused.
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("csrf", officer.csrf.as_str()),
            ("reason", "regulator asked"),
            ("actor", &officer.account_id.to_string()),
        ])
        .finish();
    let r = officer
        .client
        .post(h.url("/console/audit/export"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert_eq!(r.headers()["cache-control"], "no-store");
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "position,at,actor,subject,action,reason");
    assert!(csv.contains(&format!(
        "{},{},subject.events,\"DSR-9, \"\"quoted\"\"\"",
        officer.account_id, holder.account_id
    )));
    assert!(
        csv.contains(",subject.events,\"'=HYPERLINK(\"\"x\"\")\""),
        "{csv}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .contains(",audit.export,regulator asked"),
        "the export records itself first: {csv}"
    );
    // Without the token: refused.
    let (status, _, _) = post_form(
        &h,
        &officer,
        "/console/audit/export",
        &[("reason", "regulator asked")],
    )
    .await;
    assert_eq!(status, 403);
}

/// The six-digit code in the newest mail.
async fn code_from_mail(h: &Harness, count: usize) -> String {
    let mail = h.smtp.wait_for(count).await;
    let at = mail.find("Verification code: ").expect("code in mail") + "Verification code: ".len();
    mail[at..at + 6].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_worked_from_the_worklist() {
    let h = Harness::start().await;
    let holder = h.sign_in("asker@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let mails = h.smtp.count();
    let r = holder
        .write(&h, Method::POST, "/v1/me/requests")
        .json(&json!({ "type": "access" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let req: Value = r.json().await.unwrap();
    let id = req["request_id"].as_str().unwrap().to_string();
    let code = code_from_mail(&h, mails + 1).await;

    // Listed with a reason (recorded per subject), its step offered.
    let (status, _, html) = post_form(
        &h,
        &officer,
        "/console/requests",
        &[("csrf", &officer.csrf), ("reason", "daily worklist")],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&format!("id=\"request-{id}\"")));
    assert!(html.contains(&format!("action=\"/console/requests/{id}/verify\"")));
    assert!(!html.contains("Overdue"));
    assert!(html.contains("leads to the"), "access leads to the export");
    let entries = trail(&h, &officer, &officer).await;
    assert!(entries
        .iter()
        .any(|e| e["action"] == "requests.list" && e["subject"] == holder.account_id.to_string()));

    let step = |s: &'static str| format!("/console/requests/{id}/{s}");
    // Bad input: an HTML 4xx page, and the request is unchanged.
    for (path, fields, want) in [
        (
            step("verify"),
            vec![("reason", "daily worklist"), ("code", "")],
            400,
        ),
        (step("start"), vec![("reason", "daily worklist")], 409),
        (step("teleport"), vec![("reason", "daily worklist")], 400),
        (step("start"), vec![("reason", "")], 400),
        (
            "/console/requests/not-an-id/start".to_string(),
            vec![("reason", "daily worklist")],
            404,
        ),
    ] {
        let mut f = vec![("csrf", officer.csrf.as_str())];
        f.extend(fields.iter().copied());
        let (status, headers, html) = post_form(&h, &officer, &path, &f).await;
        assert_eq!(status, want, "{path} {fields:?}: {html}");
        assert_page(&headers);
    }
    let mine: Value = holder
        .get(&h, "/v1/me/requests")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["requests"][0]["status"], "received");
    // Without the token: refused.
    let (status, _, _) = post_form(
        &h,
        &officer,
        &step("verify"),
        &[("reason", "daily worklist"), ("code", &code)],
    )
    .await;
    assert_eq!(status, 403);

    // Verify, start, complete: each a form, each answered with the worklist again.
    for (s, fields, now) in [
        ("verify", vec![("code", code.as_str())], "verified"),
        ("start", vec![], "in progress"),
        ("complete", vec![("note", "export sent")], "completed"),
    ] {
        let mut f = vec![
            ("csrf", officer.csrf.as_str()),
            ("reason", "daily worklist"),
        ];
        f.extend(fields.iter().copied());
        let (status, _, html) = post_form(&h, &officer, &step(s), &f).await;
        assert_eq!(status, 200, "{s}: {html}");
        assert!(
            html.contains(&format!("Request {id} is now {now}.")),
            "{s}: {html}"
        );
    }
    let mine: Value = holder
        .get(&h, "/v1/me/requests")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["requests"][0]["status"], "completed");
    let acts = actions(&trail(&h, &officer, &officer).await);
    for a in ["request.verify", "request.start", "request.complete"] {
        assert!(acts.iter().any(|x| x == a), "{a}: {acts:?}");
    }

    // Another request, left open past its due date: highlighted as overdue.
    let r = holder
        .write(&h, Method::POST, "/v1/me/requests")
        .json(&json!({ "type": "deletion" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    h.clock.advance(chrono::Duration::days(31));
    // Sessions last 30 days: sign in again.
    let officer = h.sign_in("officer@example.com").await;
    let (_, _, html) = post_form(
        &h,
        &officer,
        "/console/requests",
        &[
            ("csrf", &officer.csrf),
            ("reason", "daily worklist"),
            ("status", "received"),
        ],
    )
    .await;
    assert!(html.contains("class=\"request overdue\""), "{html}");
    assert!(html.contains("Overdue"));
    assert!(!html.contains(&format!("id=\"request-{id}\"")), "filtered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breach_register_records_notifies_and_tracks_the_72_hour_clock() {
    let h = Harness::start().await;
    let a = h.sign_in("victim-a@example.com").await;
    let b = h.sign_in("victim-b@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let (status, html) = get_page(&h, &officer, "/console/breaches").await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"no-breaches\""));
    assert!(
        html.contains("aria-current=\"page\">Breaches</a>"),
        "{html}"
    );

    let discovered = (chrono::Utc::now() - chrono::Duration::hours(80))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let accounts = format!("{}\n{}", a.account_id, b.account_id);
    let good: Vec<(&str, &str)> = vec![
        ("discovered_at", &discovered),
        ("description", "A backup bucket was readable for 2 hours."),
        ("category", "account"),
        ("category", "usage"),
        ("affected", "accounts"),
        ("accounts", &accounts),
    ];
    // Bad input: an HTML 400 page, nothing recorded. Without the token: 403.
    for (drop, extra) in [
        ("category", None),
        ("discovered_at", Some(("discovered_at", "yesterday"))),
        ("accounts", Some(("accounts", "not-an-id"))),
        ("affected", None),
    ] {
        let mut f: Vec<(&str, &str)> = vec![("csrf", &officer.csrf)];
        f.extend(good.iter().copied().filter(|(k, _)| *k != drop));
        f.extend(extra);
        let (status, headers, html) = post_form(&h, &officer, "/console/breaches", &f).await;
        assert_eq!(status, 400, "without {drop}: {html}");
        assert_page(&headers);
    }
    let (status, _, _) = post_form(&h, &officer, "/console/breaches", &good).await;
    assert_eq!(status, 403);
    let (_, html) = get_page(&h, &officer, "/console/breaches").await;
    assert!(html.contains("id=\"no-breaches\""), "nothing recorded");

    let mut f: Vec<(&str, &str)> = vec![("csrf", &officer.csrf)];
    f.extend(good.iter().copied());
    let (status, headers, _) = post_form(&h, &officer, "/console/breaches", &f).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/breaches");
    let (_, html) = get_page(&h, &officer, "/console/breaches").await;
    assert!(html.contains("Regulator deadline passed"), "80 h > 72 h");
    assert!(html.contains("overdue by 8 h"), "{html}");
    assert!(html.contains("2 (listed accounts); 0 told") || html.contains("; 0 told"));
    let start = html.find("id=\"breach-").unwrap() + "id=\"breach-".len();
    let id = html[start..start + 36].to_string();

    // Notify the holders: each emailed once.
    let mails = h.smtp.count();
    let (status, _, _) = post_form(
        &h,
        &officer,
        &format!("/console/breaches/{id}/notify-holders"),
        &[("csrf", &officer.csrf)],
    )
    .await;
    assert_eq!(status, 303);
    h.smtp.wait_for(mails + 2).await;
    // The regulator: a reference is needed, then marked once.
    let regulator = format!("/console/breaches/{id}/regulator-notified");
    let (status, _, _) = post_form(
        &h,
        &officer,
        &regulator,
        &[("csrf", &officer.csrf), ("reference", " ")],
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = post_form(
        &h,
        &officer,
        &regulator,
        &[("csrf", &officer.csrf), ("reference", "CNIL-2026-0042")],
    )
    .await;
    assert_eq!(status, 303);
    let (status, _, _) = post_form(
        &h,
        &officer,
        &regulator,
        &[("csrf", &officer.csrf), ("reference", "again")],
    )
    .await;
    assert_eq!(status, 409);
    let (_, html) = get_page(&h, &officer, "/console/breaches").await;
    assert!(html.contains("CNIL-2026-0042") && html.contains("regulator notified"));
    assert!(html.contains("2 told"));
    assert!(!html.contains("notify-holders\""), "everyone told");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_previews_and_staff_roles_are_for_their_roles() {
    let h = Harness::start().await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let boss = h.sign_in("boss@example.com").await;
    h.cli_ok(&["staff", "grant", "boss@example.com", "admin"]);
    let newcomer = h.sign_in("newcomer@example.com").await;

    // Retention: the runs and a dry-run preview.
    let (status, html) = get_page(&h, &officer, "/console/retention").await;
    assert_eq!(status, 200);
    assert!(html.contains("Preview a run"));
    let (status, _, html) = post_form(
        &h,
        &officer,
        "/console/retention/preview",
        &[("csrf", &officer.csrf), ("as_of", "")],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"preview\"") && html.contains("Dry run as of"));
    let (status, _, _) = post_form(
        &h,
        &officer,
        "/console/retention/preview",
        &[("csrf", &officer.csrf), ("as_of", "soon")],
    )
    .await;
    assert_eq!(status, 400);

    // Staff roles: admin only, and only the admin's navigation shows it.
    let (_, html) = get_page(&h, &officer, "/console").await;
    assert!(!html.contains("href=\"/console/staff\""));
    assert!(
        html.contains("href=\"/console/breaches\"") && html.contains("href=\"/console/retention\"")
    );
    let (status, _) = get_page(&h, &officer, "/console/staff").await;
    assert_eq!(status, 403);
    let (status, _, _) = post_form(
        &h,
        &officer,
        "/console/staff",
        &[
            ("csrf", &officer.csrf),
            ("email", "newcomer@example.com"),
            ("role", "admin"),
            ("change", "grant"),
        ],
    )
    .await;
    assert_eq!(status, 403, "compliance cannot grant roles");
    let (status, html) = get_page(&h, &boss, "/console").await;
    assert_eq!(status, 200);
    assert!(html.contains("href=\"/console/staff\""));
    let (status, html) = get_page(&h, &boss, "/console/staff").await;
    assert_eq!(status, 200);
    assert!(html.contains(&officer.account_id.to_string()));
    assert!(!html.contains(&newcomer.account_id.to_string()));

    // Bad input changes nothing.
    for (email, role, change, want) in [
        ("newcomer@example.com", "superuser", "grant", 400),
        ("newcomer@example.com", "support", "promote", 400),
        ("nobody@example.com", "support", "grant", 404),
    ] {
        let (status, headers, _) = post_form(
            &h,
            &boss,
            "/console/staff",
            &[
                ("csrf", &boss.csrf),
                ("email", email),
                ("role", role),
                ("change", change),
            ],
        )
        .await;
        assert_eq!(status, want, "{email} {role} {change}");
        assert_page(&headers);
    }
    let (status, _) = get_page(&h, &newcomer, "/console").await;
    assert_eq!(status, 403, "still a holder");

    // Granted: the console opens for them at once, with support's pages only; revoked: gone.
    let (status, headers, _) = post_form(
        &h,
        &boss,
        "/console/staff",
        &[
            ("csrf", &boss.csrf),
            ("email", "newcomer@example.com"),
            ("role", "support"),
            ("change", "grant"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/staff");
    let (_, html) = get_page(&h, &boss, "/console/staff").await;
    assert!(html.contains(&newcomer.account_id.to_string()));
    let (status, html) = get_page(&h, &newcomer, "/console").await;
    assert_eq!(status, 200);
    assert!(
        !html.contains("href=\"/console/breaches\"") && !html.contains("href=\"/console/staff\"")
    );
    let (status, _) = get_page(&h, &newcomer, "/console/breaches").await;
    assert_eq!(status, 403);
    post_form(
        &h,
        &boss,
        "/console/staff",
        &[
            ("csrf", &boss.csrf),
            ("email", "newcomer@example.com"),
            ("role", "support"),
            ("change", "revoke"),
        ],
    )
    .await;
    let (status, _) = get_page(&h, &newcomer, "/console").await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_reports_and_takedowns_are_decided_from_their_registers() {
    let h = Harness::start().await;
    let kid = h.sign_in("kid@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
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

    // The list opens the reporter's details only with a reason.
    let (status, html) = get_page(&h, &officer, "/console/child-reports").await;
    assert_eq!(status, 200);
    assert!(!html.contains("parent@example.net"));
    let (status, _, html) = post_form(
        &h,
        &officer,
        "/console/child-reports",
        &[("csrf", &officer.csrf), ("reason", "")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(!html.contains("parent@example.net"));
    let (status, _, html) = post_form(
        &h,
        &officer,
        "/console/child-reports",
        &[("csrf", &officer.csrf), ("reason", "weekly review")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("parent@example.net") && html.contains(&kid.account_id.to_string()));

    // A decision needs a why; another word than confirm/reject is not a decision.
    let base = format!("/console/child-reports/{report}");
    for (path, note, want) in [
        (format!("{base}/confirm"), "", 400),
        (format!("{base}/ban"), "age 11", 404),
    ] {
        let (status, headers, _) = post_form(
            &h,
            &officer,
            &path,
            &[
                ("csrf", &officer.csrf),
                ("reason", "weekly review"),
                ("note", note),
            ],
        )
        .await;
        assert_eq!(status, want, "{path}");
        assert_page(&headers);
    }
    assert_eq!(kid.get(&h, "/v1/me").await.status(), 200, "still there");
    let (status, _, html) = post_form(
        &h,
        &officer,
        &format!("{base}/confirm"),
        &[
            ("csrf", &officer.csrf),
            ("reason", "weekly review"),
            ("note", "the holder confirmed the age"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&format!("Case {report} is now confirmed.")));
    assert_ne!(kid.get(&h, "/v1/me").await.status(), 200, "erased");

    // A takedown that matched no task can only be rejected.
    let r = reqwest::Client::new()
        .post(h.url("/v1/legal/takedown"))
        .json(&json!({ "claimant_email": "legal@brand.example", "claimant_name": "Brand Legal", "image_url": "https://cdn.example/none.png", "grounds": "our trademark" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let case = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _, html) = post_form(
        &h,
        &officer,
        "/console/takedowns",
        &[("csrf", &officer.csrf), ("reason", "takedown desk")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("legal@brand.example") && html.contains("none matched"));
    let (status, _, _) = post_form(
        &h,
        &officer,
        &format!("/console/takedowns/{case}/action"),
        &[
            ("csrf", &officer.csrf),
            ("reason", "takedown desk"),
            ("note", "infringing"),
        ],
    )
    .await;
    assert_eq!(status, 409, "no task to take down");
    let (status, _, html) = post_form(
        &h,
        &officer,
        &format!("/console/takedowns/{case}/reject"),
        &[
            ("csrf", &officer.csrf),
            ("reason", "takedown desk"),
            ("note", "no such image"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&format!("Case {case} is now rejected.")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_reads_answers_and_closes_tickets() {
    let h = Harness::start().await;
    let holder = h.sign_in("stuck@example.com").await;
    let helper = h.sign_in("helper@example.com").await;
    h.cli_ok(&["staff", "grant", "helper@example.com", "support"]);
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let r = holder
        .write(&h, Method::POST, "/v1/support/tickets")
        .json(&json!({ "subject": "Key refused", "message": "My key gets 401 since Monday." }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["ticket_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Compliance does not work tickets; support's navigation shows them.
    let (status, _) = get_page(&h, &officer, "/console/tickets").await;
    assert_eq!(status, 403);
    let (_, html) = get_page(&h, &helper, "/console").await;
    assert!(html.contains("href=\"/console/tickets\""));

    // The list and the ticket are read with a reason, audited.
    let (status, _, html) = post_form(
        &h,
        &helper,
        "/console/tickets",
        &[("csrf", &helper.csrf), ("reason", "")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(!html.contains("Key refused"));
    let (status, _, html) = post_form(
        &h,
        &helper,
        "/console/tickets",
        &[
            ("csrf", &helper.csrf),
            ("reason", "support queue"),
            ("status", "open"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Key refused") && html.contains(&format!("action=\"/console/tickets/{id}\""))
    );
    let (status, _, html) = post_form(
        &h,
        &helper,
        &format!("/console/tickets/{id}"),
        &[("csrf", &helper.csrf), ("reason", "support queue")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("My key gets 401 since Monday."));
    let acts = actions(&trail(&h, &officer, &helper).await);
    assert_eq!(acts, ["tickets.list", "ticket.read"], "{acts:?}");

    // Reply (an empty one is refused), then close.
    let (status, _, _) = post_form(
        &h,
        &helper,
        &format!("/console/tickets/{id}/reply"),
        &[
            ("csrf", &helper.csrf),
            ("reason", "support queue"),
            ("message", " "),
        ],
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, html) = post_form(
        &h,
        &helper,
        &format!("/console/tickets/{id}/reply"),
        &[
            ("csrf", &helper.csrf),
            ("reason", "support queue"),
            ("message", "Your key was revoked; create a new one."),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Your reply was sent.") && html.contains("create a new one"));
    let (status, _, html) = post_form(
        &h,
        &helper,
        &format!("/console/tickets/{id}/close"),
        &[("csrf", &helper.csrf), ("reason", "support queue")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("The ticket is closed.") && !html.contains("id=\"reply-form\""));
    let mine: Value = holder
        .get(&h, &format!("/v1/support/tickets/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["status"], "closed");
    assert_eq!(mine["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_versions_are_published_with_the_30_day_notice_rule() {
    let h = Harness::start().await;
    let _holder = h.sign_in("reader@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let (status, html) = get_page(&h, &officer, "/console/policies").await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"no-policies\""));

    let soon = (chrono::Utc::now() + chrono::Duration::days(10))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let later = (chrono::Utc::now() + chrono::Duration::days(31))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    // A material change within 30 days, or no document: refused, nothing published.
    for fields in [
        vec![
            ("version", "2027-a"),
            ("url", "https://example.com/p"),
            ("effective_at", soon.as_str()),
            ("material", "yes"),
        ],
        vec![("version", "2027-a"), ("effective_at", later.as_str())],
        vec![
            ("version", "2027-a"),
            ("url", "https://example.com/p"),
            ("effective_at", "next month"),
        ],
    ] {
        let mut f = vec![("csrf", officer.csrf.as_str())];
        f.extend(fields.iter().copied());
        let (status, headers, html) = post_form(&h, &officer, "/console/policies", &f).await;
        assert_eq!(status, 400, "{fields:?}: {html}");
        assert_page(&headers);
    }
    let (_, html) = get_page(&h, &officer, "/console/policies").await;
    assert!(html.contains("id=\"no-policies\""));

    let mails = h.smtp.count();
    let (status, headers, _) = post_form(
        &h,
        &officer,
        "/console/policies",
        &[
            ("csrf", &officer.csrf),
            ("version", "2027-a"),
            ("url", "https://example.com/p"),
            ("effective_at", &later),
            ("material", "yes"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/policies");
    let (_, html) = get_page(&h, &officer, "/console/policies").await;
    assert!(html.contains("<code>2027-a</code>") && html.contains("upcoming"));
    h.smtp.wait_for(mails + 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deletion_queue_and_erasure_certificates() {
    let h = Harness::start().await;
    let leaving = h.sign_in("leaving@example.com").await;
    let erased = h.sign_in("erased@example.com").await;
    let helper = h.sign_in("helper@example.com").await;
    h.cli_ok(&["staff", "grant", "helper@example.com", "support"]);
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    let r = leaving
        .write(&h, Method::DELETE, "/v1/me")
        .json(&json!({ "confirm": "delete my account" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    h.erase(&erased.account_id.to_string(), "DSR-7 erasure")
        .await;

    // Compliance: the queue (audited per account listed) and the certificates.
    let (status, _, html) = post_form(
        &h,
        &officer,
        "/console/erasure",
        &[("csrf", &officer.csrf), ("reason", "")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(!html.contains(&leaving.account_id.to_string()));
    let (status, _, html) = post_form(
        &h,
        &officer,
        "/console/erasure",
        &[("csrf", &officer.csrf), ("reason", "monthly check")],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&format!("id=\"deletion-{}\"", leaving.account_id)));
    assert!(html.contains(&erased.account_id.to_string()) && html.contains("DSR-7 erasure"));
    let entries = trail(&h, &officer, &officer).await;
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "deletions.list"
                && e["subject"] == leaving.account_id.to_string())
    );

    // Support: the queue without the certificates; cancels with a why.
    let (status, _, html) = post_form(
        &h,
        &helper,
        "/console/erasure",
        &[("csrf", &helper.csrf), ("reason", "ticket 12")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("aria-current=\"page\">Erasure</a>"),
        "in support's navigation"
    );
    assert!(!html.contains("Erasure certificates"));
    let cancel = format!("/console/erasure/{}/cancel", leaving.account_id);
    let (status, _, _) = post_form(
        &h,
        &helper,
        &cancel,
        &[
            ("csrf", &helper.csrf),
            ("reason", "ticket 12"),
            ("note", ""),
        ],
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, html) = post_form(
        &h,
        &helper,
        &cancel,
        &[
            ("csrf", &helper.csrf),
            ("reason", "ticket 12"),
            ("note", "ticket 12: the holder changed their mind"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("is cancelled.") && html.contains("id=\"no-deletions\""));
    let (status, _, _) = post_form(
        &h,
        &helper,
        &cancel,
        &[
            ("csrf", &helper.csrf),
            ("reason", "ticket 12"),
            ("note", "again"),
        ],
    )
    .await;
    assert!(
        (400..500).contains(&status),
        "nothing left to cancel: {status}"
    );
}
