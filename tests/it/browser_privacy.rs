//! Billing and the privacy centre in a real browser (headless Chromium through
//! chromedriver, as in `browser.rs`): sign up, buy a credit pack through Stripe Checkout
//! (the Stripe fake records the session; the test then delivers Stripe's signed
//! confirmation, as Stripe would) and see the credits; change a consent; request an
//! export and download it; confirm a privacy request with the emailed code; delete the
//! account with the typed confirmation and find yourself signed out. Screenshots as in
//! `browser.rs` (docs/screenshots/ only with `JOURNEY_SCREENSHOTS=1`).

use crate::support::browser::{click, fill, page, screenshot, sign_up, text, Driver};
use crate::support::Harness;
use crate::web_privacy::completed_last_checkout;
use fantoccini::{Client, Locator};
use std::time::Duration;

async fn nav(c: &Client, link: &str, heading: &str) -> String {
    c.find(Locator::LinkText(link))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page(c, heading).await
}

fn checkouts(h: &Harness) -> usize {
    h.stripe
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/checkout/sessions")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_and_privacy_centre_in_chromium() {
    let h = Harness::start().await;
    let driver = Driver::start().await;
    let c = driver.browser().await;
    let email = "pat@example.com";
    sign_up(&c, &h, email, 0).await;

    // Billing: the offer, an empty ledger; buy a pack through Checkout.
    let html = nav(&c, "Billing", "Billing").await;
    assert!(html.contains("No credit movements yet"), "empty state");
    assert_eq!(text(&c, "#credits-available").await, "0");
    screenshot(&c, "billing").await;
    click(&c, "#buy-small").await;
    // Our server made the Checkout Session and sent the browser to Stripe's page (which
    // the test machine cannot load: the redirect is what matters).
    for _ in 0..200 {
        if checkouts(&h) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(checkouts(&h), 1, "a Checkout Session was created");
    let mut left = String::new();
    for _ in 0..100 {
        left = c.current_url().await.unwrap().to_string();
        if !left.starts_with(&h.base) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        left.starts_with("https://checkout.stripe.com/"),
        "the browser went to Stripe Checkout: {left}"
    );
    // Stripe tells us the customer paid; Checkout returns the browser to /billing.
    let paid = completed_last_checkout(&h, &signed_up_account(&h, email).await);
    assert_eq!(h.deliver(&paid).await.status(), 200);
    c.goto(&h.url("/billing?checkout=success")).await.unwrap();
    let html = page(&c, "Billing").await;
    assert!(html.contains("id=\"checkout-notice\""));
    assert_eq!(text(&c, "#credits-available").await, "500");
    assert!(text(&c, "#ledger tbody tr").await.contains("grant"));
    screenshot(&c, "billing-paid").await;
    nav(&c, "Overview", "Overview").await;
    assert_eq!(text(&c, "#credits-available").await, "500");

    // Privacy: tick marketing email, save, see it kept.
    let html = nav(&c, "Privacy", "Privacy").await;
    assert!(html.contains("You have made no requests"));
    screenshot(&c, "privacy").await;
    // Readable on a phone: the same page at 360 px.
    c.set_window_size(360, 740).await.unwrap();
    screenshot(&c, "privacy-360px").await;
    c.set_window_size(1024, 768).await.unwrap();
    let marketing = || async { c.find(Locator::Css("#marketing_email")).await.unwrap() };
    assert!(!marketing().await.is_selected().await.unwrap());
    click(&c, "#marketing_email").await;
    click(&c, "#save-consents").await;
    let html = page(&c, "Privacy").await;
    assert!(html.contains("id=\"consents-saved\""));
    assert!(marketing().await.is_selected().await.unwrap(), "saved");
    assert!(text(&c, "#consent-history tbody tr")
        .await
        .contains("Consent to marketing email given"));

    // The progress page reloads itself while an export is pending (the `Refresh` header:
    // no script). A job held pending here, then failed, shows the page following it.
    let account = signed_up_account(&h, email).await;
    let held = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO export_jobs (job_id, account_id, format, status, created_at)
         VALUES ($1, $2, 'json', 'pending', $3)",
    )
    .bind(&held)
    .bind(&account)
    .bind(h.now_ts() * 1000)
    .execute(&h.app.db.any)
    .await
    .unwrap();
    c.goto(&h.url(&format!("/privacy/exports/{held}")))
        .await
        .unwrap();
    page(&c, "Preparing your data").await;
    screenshot(&c, "export-progress").await;
    sqlx::query("UPDATE export_jobs SET status = 'failed' WHERE job_id = $1")
        .bind(&held)
        .execute(&h.app.db.any)
        .await
        .unwrap();
    page(&c, "The export failed").await;
    c.goto(&h.url("/privacy#export")).await.unwrap();
    page(&c, "Privacy").await;

    // Download my data (HTML): the progress page, then the link.
    click(&c, "#format-html").await;
    click(&c, "#start-export").await;
    page(&c, "Your data is ready").await;
    screenshot(&c, "export").await;
    let href = c
        .find(Locator::Css("#download"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .expect("download link");
    let session = c.get_named_cookie("journey_session").await.unwrap();
    let r = reqwest::Client::new()
        .get(h.url(&href))
        .header("cookie", format!("journey_session={}", session.value()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains(email), "the holder's data");

    // A privacy request, confirmed with the emailed code.
    c.goto(&h.url("/privacy#requests")).await.unwrap();
    page(&c, "Privacy").await;
    let mails = h.smtp.count();
    c.find(Locator::Css("#request-type option[value=portability]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&c, "#submit-request").await;
    page(&c, "Confirm your request").await;
    let mail = h.smtp.wait_for(mails + 1).await;
    let at = mail.find("Verification code: ").expect("code") + "Verification code: ".len();
    fill(&c, "#code", &mail[at..at + 6]).await;
    screenshot(&c, "privacy-request").await;
    click(&c, "#verify").await;
    page(&c, "Your privacy request").await;
    assert_eq!(text(&c, "#request-status").await, "verified");

    // Delete the account: a wrong phrase deletes nothing; the right one signs out.
    c.goto(&h.url("/privacy")).await.unwrap();
    page(&c, "Privacy").await;
    click(&c, "#delete-link").await;
    page(&c, "Delete your account").await;
    screenshot(&c, "delete-account").await;
    fill(&c, "#confirm", "DELETE").await;
    click(&c, "#confirm-delete").await;
    let html = page(&c, "This could not be done").await;
    assert!(html.contains("Nothing was deleted"));
    click(&c, "main a.button").await;
    page(&c, "Delete your account").await;
    fill(&c, "#confirm", "delete my account").await;
    click(&c, "#confirm-delete").await;
    page(&c, "Your account is scheduled for deletion").await;
    assert!(!text(&c, "#purge-after").await.is_empty());
    screenshot(&c, "account-deleted").await;
    c.goto(&h.url("/privacy")).await.unwrap();
    page(&c, "Sign in to JourneyAPI").await;

    c.close().await.unwrap();
}

/// The account id of the holder signed up as `email` (through the identity index, as
/// staff would find it).
async fn signed_up_account(h: &Harness, email: &str) -> String {
    h.app
        .identity()
        .account_by_email(email)
        .await
        .unwrap()
        .to_string()
}
