//! The compliance console in a real browser (headless Chromium): a holder signs up and
//! submits an access request; a compliance officer signs in, finds that holder by email,
//! opens their timeline with a reason, sees the read in the audit trail, and works the
//! request to completion. Screenshots as in `browser.rs` (docs/screenshots/ only with
//! `JOURNEY_SCREENSHOTS=1`).

use crate::support::browser::{click, fill, page, screenshot, sign_up, text, Driver};
use crate::support::Harness;
use fantoccini::{Client, Locator};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// Waits until the element `css` finds contains `want`, and returns its text.
async fn wait_text(c: &Client, css: &str, want: &str) -> String {
    let mut seen = String::new();
    for _ in 0..200 {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            seen = e.text().await.unwrap_or_default();
            if seen.contains(want) {
                return seen;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {want:?} in {css}, saw {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_find_a_subject_read_the_timeline_and_work_a_request_in_chromium() {
    let h = Harness::start().await;
    let driver = Driver::start().await;
    let c = driver.browser().await;

    // The holder signs up in the browser and asks for their data (over the JSON API).
    sign_up(&c, &h, "dana@example.com", h.smtp.count()).await;
    let holder = h.sign_in("dana@example.com").await;
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
    let mail = h.smtp.wait_for(mails + 1).await;
    let at = mail.find("Verification code: ").unwrap() + "Verification code: ".len();
    let code = mail[at..at + 6].to_string();
    click(&c, "form[action='/logout'] button").await;
    page(&c, "Sign in to JourneyAPI").await;

    // A holder is refused the console.
    // (Checked before the officer signs up, in this browser.)
    sign_up(&c, &h, "officer@example.com", h.smtp.count()).await;
    c.goto(&h.url("/console")).await.unwrap();
    let html = page(&c, "This could not be done").await;
    assert!(html.contains("no staff role"));
    h.cli_ok(&["staff", "grant", "officer@example.com", "compliance"]);

    // Find the holder by email.
    c.goto(&h.url("/console")).await.unwrap();
    page(&c, "Compliance console").await;
    fill(&c, "#find-email-address", "dana@example.com").await;
    fill(&c, "#find-email-reason", "DSR access request").await;
    screenshot(&c, "console-find").await;
    click(&c, "#find-email button[type=submit]").await;
    let html = page(&c, "Subject").await;
    assert!(html.contains(&holder.account_id.to_string()));
    assert!(
        !html.contains("dana@example.com"),
        "nothing before the reason"
    );
    assert!(!c.current_url().await.unwrap().as_str().contains("dana"));

    // The timeline, with a reason.
    fill(&c, "#reason", "DSR access request").await;
    click(&c, "#timeline-form button[type=submit]").await;
    let html = page(&c, "Subject timeline").await;
    assert!(html.contains("AccountRegistered") && html.contains("dana@example.com"));
    screenshot(&c, "console-timeline").await;

    // The read is in the audit trail.
    c.find(Locator::LinkText("Audit trail"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page(&c, "Audit trail").await;
    fill(&c, "#reason", "weekly review").await;
    fill(&c, "#subject", &holder.account_id.to_string()).await;
    click(&c, "#audit-form button[type=submit]").await;
    let entries = wait_text(&c, "#audit-entries", "DSR access request").await;
    assert!(entries.contains("subject.events"), "{entries}");
    screenshot(&c, "console-audit").await;

    // The request, worked to completion from the worklist.
    c.find(Locator::LinkText("Requests"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page(&c, "Data-subject requests").await;
    fill(&c, "#reason", "daily worklist").await;
    click(&c, "#worklist-form button[type=submit]").await;
    wait_text(&c, &format!("#request-{id}"), "received").await;
    fill(&c, &format!("#code-{id}"), &code).await;
    click(
        &c,
        &format!("form[action='/console/requests/{id}/verify'] button"),
    )
    .await;
    wait_text(&c, "#notice", "is now verified").await;
    click(
        &c,
        &format!("form[action='/console/requests/{id}/start'] button"),
    )
    .await;
    wait_text(&c, "#notice", "is now in progress").await;
    screenshot(&c, "console-requests").await;
    fill(&c, &format!("#note-{id}"), "export sent by email").await;
    click(
        &c,
        &format!("form[action='/console/requests/{id}/complete'] button"),
    )
    .await;
    wait_text(&c, "#notice", "is now completed").await;
    assert!(text(&c, &format!("#request-{id}"))
        .await
        .contains("completed"));

    let mine: Value = holder
        .get(&h, "/v1/me/requests")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["requests"][0]["status"], "completed");
    c.close().await.unwrap();
}
