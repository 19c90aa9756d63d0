//! Access and portability export: every kind of data the subject has, opened; the
//! self-service job and its signed, expiring, account-bound link; staff and CLI exports.

use crate::support;

use journey_contexts::privacy::export_jobs::ExportFormat;
use reqwest::Method;
use serde_json::{json, Value};
use support::{stripe, Harness, Session};

/// Gives `s` one of every kind of data this version holds.
async fn rich_subject(h: &Harness, s: &Session, officer: &Session) {
    let r = s
        .write(h, Method::PATCH, "/v1/me")
        .json(&json!({ "name": "Ada Exporter" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let key = s.create_key(h, "laptop key").await;
    let raw = key["key"].as_str().unwrap();
    let r = reqwest::Client::new()
        .get(h.url("/api/v1/account"))
        .header("Authorization", raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .write(h, Method::PUT, "/v1/me/consents")
        .json(&json!({ "marketing_email": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A paid pack and a card on file, through Stripe.
    let bought = support::buy_pack(h, s, "small").await;
    let card = stripe::event(
        "evt_export_pm",
        "payment_method.attached",
        h.now_ts(),
        stripe::payment_method("pm_export", &bought.customer, "mastercard", "4444", "DE"),
    );
    assert_eq!(h.deliver(&card).await.status(), 200);
    let ctx =
        journey_contexts::identity::Ctx::system(journey_commands::Clock::now(h.clock.as_ref()));
    h.app
        .credits()
        .reserve_credits(
            s.account_id,
            uuid::Uuid::new_v4(),
            7,
            journey_domain::meta::Actor::System,
            &ctx,
        )
        .await
        .unwrap();
    let r = s
        .write(h, Method::POST, "/v1/me/requests")
        .json(&json!({ "type": "portability" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = officer
        .get(
            h,
            &format!(
                "/admin/v1/subjects/{}/events?reason=ticket-99",
                s.account_id
            ),
        )
        .await;
    assert_eq!(r.status(), 200);
}

async fn ready_job(h: &Harness, s: &Session, body: Value) -> Value {
    let r = s
        .write(h, Method::POST, "/v1/me/export")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    let status_path = format!("/v1/me/exports/{}", job["job_id"].as_str().unwrap());
    for _ in 0..100 {
        let job: Value = s.get(h, &status_path).await.json().await.unwrap();
        match job["status"].as_str().unwrap() {
            "ready" => return job,
            "pending" => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            other => panic!("export {other}: {job}"),
        }
    }
    panic!("export never became ready");
}

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn path_of(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    format!("{}?{}", u.path(), u.query().unwrap())
}

fn events_in<'a>(doc: &'a Value, section: &str) -> Vec<&'a str> {
    doc["sections"][section]
        .as_array()
        .unwrap_or_else(|| panic!("section {section}"))
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_service_export_holds_every_kind_of_data() {
    let h = Harness::start().await;
    let s = h.sign_in("exporter@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    rich_subject(&h, &s, &officer).await;

    let job = ready_job(&h, &s, json!({})).await;
    let url = job["download_url"].as_str().unwrap();
    let r = s.get(&h, &path_of(url)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let doc: Value = r.json().await.unwrap();

    assert_eq!(
        (&doc["format"], &doc["version"]),
        (&json!("journeyapi.subject-export"), &json!(1))
    );
    assert_eq!(doc["summary"]["profile"]["email"], "exporter@example.com");
    assert_eq!(doc["summary"]["profile"]["name"], "Ada Exporter");
    assert_eq!(doc["summary"]["credits"]["available"], 493);
    assert!(events_in(&doc, "profile").contains(&"NameCorrected"));
    let registered = &doc["sections"]["profile"][0]["data"];
    assert_eq!(
        registered["email"], "exporter@example.com",
        "sealed fields are opened"
    );
    assert!(events_in(&doc, "sign_in_links").contains(&"MagicLinkConsumed"));
    assert!(events_in(&doc, "sessions").contains(&"SessionStarted"));
    let keys = &doc["sections"]["api_keys"];
    assert_eq!(keys[0]["data"]["name"], "laptop key");
    assert!(events_in(&doc, "api_keys").contains(&"ApiKeyUsed"));
    assert!(events_in(&doc, "consents").contains(&"ConsentGiven"));
    let ledger = events_in(&doc, "credit_ledger");
    assert!(ledger.contains(&"CreditsGranted") && ledger.contains(&"CreditsReserved"));
    let billing = &doc["sections"]["billing"];
    let text = billing.to_string();
    assert!(
        text.contains("\"last4\":\"4444\"") && text.contains("\"amount_cents\":600"),
        "{text}"
    );
    assert!(events_in(&doc, "requests").contains(&"RequestReceived"));
    let requests = doc["sections"]["requests"].to_string();
    let text = doc.to_string();
    assert!(
        text.contains("\"code_hash\":\"[withheld]\"")
            && text.contains("\"key_hash\":\"[withheld]\""),
        "secret-derived values are withheld: {requests}"
    );
    let session_stream = sha256_hex(&s.session_token);
    assert!(
        !text.contains(&session_stream),
        "streams named by token hashes are withheld"
    );
    assert!(doc["sections"]["unmapped"].as_array().unwrap().is_empty());
    let usage = doc["usage_log"].as_array().unwrap();
    assert!(
        usage.iter().any(|u| u["client_ip"] == "127.0.0.1"),
        "request metadata, opened"
    );
    let staff = doc["accessed_by_staff"].as_array().unwrap();
    assert_eq!(staff.len(), 1);
    assert_eq!(
        (&staff[0]["staff"], &staff[0]["reason"]),
        (&json!(officer.account_id.to_string()), &json!("ticket-99"))
    );
    assert!(
        !doc.to_string().contains("\"sealed\":\"v1\""),
        "nothing left sealed"
    );

    // HTML rendering of the same data.
    let job = ready_job(&h, &s, json!({ "format": "html" })).await;
    let r = s
        .get(&h, &path_of(job["download_url"].as_str().unwrap()))
        .await;
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = r.text().await.unwrap();
    assert!(html.contains("Your JourneyAPI data") && html.contains("exporter@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_links_are_signed_expiring_and_bound_to_the_account() {
    let h = Harness::start().await;
    let s = h.sign_in("linked@example.com").await;
    let other = h.sign_in("other@example.com").await;
    let job = ready_job(&h, &s, json!({})).await;
    let path = path_of(job["download_url"].as_str().unwrap());

    let r = other.get(&h, &path).await;
    assert_eq!(r.status(), 403, "another account's session");
    let r = other
        .get(
            &h,
            &format!("/v1/me/exports/{}", job["job_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(r.status(), 404, "another account cannot see the job");
    let r = reqwest::get(h.url(&path)).await.unwrap();
    assert_eq!(r.status(), 401, "no session");
    let tampered = path.replace("sig=", "sig=0");
    assert_eq!(s.get(&h, &tampered).await.status(), 403);
    assert_eq!(
        s.get(&h, path.split('?').next().unwrap()).await.status(),
        400
    );
    let r = s
        .write(&h, Method::POST, "/v1/me/export")
        .json(&json!({ "format": "pdf" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    assert_eq!(s.get(&h, &path).await.status(), 200);
    h.clock.advance(chrono::Duration::minutes(61));
    let r = s.get(&h, &path).await;
    assert_eq!(r.status(), 403);
    let msg: Value = r.json().await.unwrap();
    assert!(msg["errors"][0]["msg"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_and_cli_exports() {
    let h = Harness::start().await;
    let s = h.sign_in("requested@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    let support = h.sign_in("support@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    h.cli_ok(&["staff", "grant", "support@example.com", "support"]);
    let path = format!("/admin/v1/subjects/{}/export", s.account_id);
    assert_eq!(
        officer.get(&h, &path).await.status(),
        400,
        "a reason is required"
    );
    assert_eq!(
        support.get(&h, &format!("{path}?reason=x")).await.status(),
        403
    );
    let r = officer
        .get(
            &h,
            &format!("{path}?reason=emailed%20access%20request%2042"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["summary"]["profile"]["email"], "requested@example.com");
    let trail: Value = officer
        .get(
            &h,
            &format!("/admin/v1/audit?reason=check&subject={}", s.account_id),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "subject.export"));

    let by = officer.account_id.to_string();
    let out = h.data_dir.join("subject.html");
    let denied = h.cli(&[
        "export",
        "--by",
        &s.account_id.to_string(),
        "--reason",
        "curious",
        "--subject",
        &s.account_id.to_string(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        !denied.status.success(),
        "the CLI export needs a staff member"
    );
    assert!(String::from_utf8_lossy(&denied.stderr).contains("no staff role"));
    h.cli_ok(&[
        "export",
        "--by",
        &by,
        "--reason",
        "emailed access request 42",
        "--subject",
        &s.account_id.to_string(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        "html",
    ]);
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("requested@example.com"));
    let out = h.data_dir.join("subject.json");
    h.cli_ok(&[
        "export",
        "--by",
        &by,
        "--reason",
        "emailed access request 42",
        "--subject",
        &s.account_id.to_string(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(doc["version"], 1);
    // `--out -` is standard output: the document alone, and no file named "-".
    let piped = h
        .cli_command(&[
            "export",
            "--by",
            &by,
            "--reason",
            "emailed access request 42",
            "--subject",
            &s.account_id.to_string(),
            "--out",
            "-",
        ])
        .current_dir(&h.data_dir)
        .output()
        .unwrap();
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    let streamed: Value = serde_json::from_slice(&piped.stdout).expect("stdout is the document");
    assert_eq!(streamed["subject"], doc["subject"]);
    assert!(!h.data_dir.join("-").exists(), "no file named -");
    let unknown = uuid::Uuid::new_v4().to_string();
    let fail = h.cli(&[
        "export",
        "--by",
        &by,
        "--reason",
        "emailed access request 42",
        "--subject",
        &unknown,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!fail.status.success());
    assert!(String::from_utf8_lossy(&fail.stderr).contains("no data held"));
    let trail: Value = officer
        .get(
            &h,
            &format!("/admin/v1/audit?reason=check&subject={}", s.account_id),
        )
        .await
        .json()
        .await
        .unwrap();
    let exports = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "subject.export" && e["reason"] == "emailed access request 42")
        .count();
    assert_eq!(
        exports, 4,
        "HTTP and the three CLI exports (file, html, stdout) are audited: {trail}"
    );
}

/// The CLI writes the JSON export as it reads it (one entry in memory at a time); the file
/// is the document the HTTP paths build in memory, laid out as serde_json pretty-prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamed_cli_export_is_the_document_built_in_memory() {
    let h = Harness::start().await;
    let s = h.sign_in("streamed@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    rich_subject(&h, &s, &officer).await;
    let out = h.data_dir.join("streamed.json");
    h.cli_ok(&[
        "export",
        "--by",
        &officer.account_id.to_string(),
        "--reason",
        "emailed access request 43",
        "--subject",
        &s.account_id.to_string(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut streamed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(text, serde_json::to_string_pretty(&streamed).unwrap());
    // Built after the CLI's read, so that both hold its audit entry.
    let built = h
        .app
        .privacy()
        .build_export(s.account_id, |_, _| {})
        .await
        .unwrap();
    for section in [
        "profile",
        "api_keys",
        "billing",
        "credit_ledger",
        "consents",
        "requests",
    ] {
        assert!(
            !built["sections"][section].as_array().unwrap().is_empty(),
            "{section}"
        );
    }
    streamed["generated_at"] = built["generated_at"].clone();
    assert_eq!(streamed, built);
    // The HTTP paths' JSON is written the same way, its parts kept in memory.
    let sent = h
        .app
        .privacy()
        .export_document(s.account_id, ExportFormat::Json, |_, _| {})
        .await
        .unwrap();
    let mut sent_doc: Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(sent, serde_json::to_string_pretty(&sent_doc).unwrap());
    sent_doc["generated_at"] = built["generated_at"].clone();
    assert_eq!(sent_doc, built);
    // The usage log lists the subject's events in commit order, across all its streams
    // (the export's read sorts positions only and fetches rows in that order).
    let in_store: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE (aggregate_type, aggregate_id) IN
             (SELECT aggregate_type, aggregate_id FROM subject_streams WHERE subject = $1)
         ORDER BY position",
    )
    .bind(s.account_id.to_string())
    .fetch_all(&h.app.db.any)
    .await
    .unwrap();
    let (in_export, streams): (Vec<&str>, std::collections::HashSet<&str>) = built["usage_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let stream = u["stream"].as_str().unwrap();
            (
                u["event"].as_str().unwrap(),
                stream.split('/').next().unwrap(),
            )
        })
        .unzip();
    assert!(
        streams.len() >= 5,
        "a history over many streams: {streams:?}"
    );
    assert_eq!(
        in_export,
        in_store.iter().map(String::as_str).collect::<Vec<_>>()
    );
}
