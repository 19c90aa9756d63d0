//! Consent, objection and restriction of processing, and the processing they gate.

use crate::support;

use reqwest::Method;
use serde_json::{json, Value};
use support::{Harness, Session};

async fn put(h: &Harness, s: &Session, body: Value) -> (u16, Value) {
    let r = s
        .write(h, Method::PUT, "/v1/me/consents")
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn post(h: &Harness, s: &Session, path: &str) -> Value {
    let r = s.write(h, Method::POST, path).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consents_start_off_and_every_change_is_recorded() {
    let h = Harness::start().await;
    let s = h.sign_in("consenting@example.com").await;
    let v: Value = s.get(&h, "/v1/me/consents").await.json().await.unwrap();
    assert_eq!(
        (
            &v["necessary"],
            &v["analytics_cookies"],
            &v["marketing_email"],
            &v["restricted"]
        ),
        (&json!(true), &json!(false), &json!(false), &json!(false))
    );
    assert!(v["history"].as_array().unwrap().is_empty());

    let (status, v) = put(
        &h,
        &s,
        json!({ "analytics_cookies": true, "marketing_email": true }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["analytics_cookies"], &v["marketing_email"]),
        (&json!(true), &json!(true))
    );
    let (_, v) = put(&h, &s, json!({ "analytics_cookies": false })).await;
    let history = v["history"].as_array().unwrap();
    let summary: Vec<(&str, &str)> = history
        .iter()
        .map(|c| (c["event"].as_str().unwrap(), c["purpose"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("ConsentGiven", "analytics_cookies"),
            ("ConsentGiven", "marketing_email"),
            ("ConsentWithdrawn", "analytics_cookies")
        ]
    );
    for c in history {
        assert_eq!(c["source"], "holder");
        assert_eq!(c["policy_version"], "2026-03-26");
        assert!(c["at"].is_string());
    }

    for bad in [
        json!({}),
        json!({ "necessary": false }),
        json!({ "ads": true }),
        json!({ "marketing_email": "yes" }),
    ] {
        let (status, body) = put(&h, &s, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let r = s
        .client
        .put(h.url("/v1/me/consents"))
        .json(&json!({ "marketing_email": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "CSRF header required");
    let v: Value = s.get(&h, "/v1/me/consents").await.json().await.unwrap();
    assert_eq!(
        v["history"].as_array().unwrap().len(),
        3,
        "refused changes changed nothing"
    );
    assert_eq!(v["marketing_email"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objection_withdraws_marketing_and_restriction_stops_analytics_and_marketing() {
    let h = Harness::start().await;
    let open = h.sign_in("open@example.com").await;
    let restricted = h.sign_in("restricted@example.com").await;
    let objector = h.sign_in("objector@example.com").await;
    let officer = h.sign_in("officer@example.com").await;
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);
    for s in [&open, &restricted, &objector] {
        let (status, _) = put(
            &h,
            s,
            json!({ "analytics_cookies": true, "marketing_email": true }),
        )
        .await;
        assert_eq!(status, 200);
    }
    let v = post(&h, &objector, "/v1/me/objection").await;
    assert_eq!(
        (&v["marketing_email"], &v["marketing_objection"]),
        (&json!(false), &json!(true))
    );
    let events: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events[events.len() - 2..],
        ["ConsentWithdrawn", "MarketingObjected"]
    );
    let v = post(&h, &restricted, "/v1/me/restriction").await;
    assert_eq!(v["restricted"], true);

    // The holder's own requests still work while restricted.
    assert_eq!(restricted.get(&h, "/v1/me").await.status(), 200);
    let key = restricted.create_key(&h, "still mine").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let r = reqwest::Client::new()
        .get(h.url("/api/v1/account"))
        .header("Authorization", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Marketing reaches only the account that consented, did not object, is not restricted.
    let body = h.data_dir.join("campaign.txt");
    std::fs::write(&body, "New models are live.").unwrap();
    let body = body.to_str().unwrap();
    let before = h.smtp.count();
    let report: Value = serde_json::from_str(
        h.cli_ok(&["marketing", "--subject", "What's new", "--body-file", body])
            .trim(),
    )
    .unwrap();
    assert_eq!(
        (&report["eligible"], &report["sent"]),
        (&json!(1), &json!(1))
    );
    let mail = h.smtp.wait_for(before + 1).await;
    assert!(mail.contains("open@example.com"), "{mail}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(h.smtp.count(), before + 1);

    // Analytics covers the consenting, unrestricted accounts (objecting to marketing does
    // not withdraw analytics).
    let out = h.data_dir.join("analytics.jsonl");
    h.cli_ok(&["analytics", "--out", out.to_str().unwrap()]);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["account_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ids.sort();
    let mut want = vec![open.account_id.to_string(), objector.account_id.to_string()];
    want.sort();
    assert_eq!(ids, want);
    assert!(!text.contains("@example.com"), "pseudonymous");

    // Only staff lift a restriction, with a reason; then the account is processed again.
    let lift = format!(
        "/admin/v1/subjects/{}/restriction/lift",
        restricted.account_id
    );
    let r = restricted
        .write(&h, Method::POST, &lift)
        .json(&json!({ "reason": "mine" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = officer
        .write(&h, Method::POST, &lift)
        .json(&json!({ "reason": " " }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = officer
        .write(&h, Method::POST, &lift)
        .json(&json!({ "reason": "accuracy dispute resolved" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = officer
        .write(&h, Method::POST, &lift)
        .json(&json!({ "reason": "again" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let report: Value = serde_json::from_str(
        h.cli_ok(&[
            "marketing",
            "--subject",
            "x",
            "--body-file",
            body,
            "--dry-run",
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(
        (&report["eligible"], &report["sent"]),
        (&json!(2), &json!(0))
    );
}
