//! The account dashboard in a real browser: Debian's headless Chromium driven through
//! chromedriver (WebDriver, `fantoccini`). Sign up by the emailed link, see the overview,
//! create an API key (shown once), use it, revoke it. Each page visited is saved as a
//! screenshot: to docs/screenshots/ (the README shows them) when `JOURNEY_SCREENSHOTS=1`,
//! otherwise to a temporary folder, so that an ordinary test run leaves the tree clean.
//!
//! Needs `chromium` and `chromedriver` on the PATH (`.ci/run` installs Debian's
//! `chromium` and `chromium-driver` when missing); `JOURNEY_CHROMEDRIVER` and
//! `JOURNEY_CHROMIUM` name other binaries.

use crate::support::browser::{click, fill, page, screenshot, text, Driver};
use crate::support::{self, Harness};
use fantoccini::Locator;

async fn api_account(h: &Harness, key: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .get(h.url("/api/v1/account"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_create_use_and_revoke_a_key_in_chromium() {
    let h = Harness::start().await;
    let driver = Driver::start().await;
    let c = driver.browser().await;

    // Signed out, `/` is the sign-in page.
    c.goto(&h.url("/")).await.unwrap();
    page(&c, "Sign in to JourneyAPI").await;
    screenshot(&c, "sign-in").await;
    fill(&c, "#email", "ada@example.com").await;
    click(&c, "form button[type=submit]").await;
    page(&c, "Check your email").await;
    screenshot(&c, "check-email").await;

    // The emailed link, opened in the same browser: the sign-up step (country and age).
    let token = support::token_from_mail(&h.smtp.wait_for(1).await);
    c.goto(&h.url(&format!("/v1/auth/magic-link/confirm?token={token}")))
        .await
        .unwrap();
    page(&c, "Create your JourneyAPI account").await;
    fill(&c, "input[name=country]", "FR").await;
    click(&c, "input[name=age_confirmed]").await;
    screenshot(&c, "sign-up").await;
    click(&c, "form button[type=submit]").await;
    page(&c, "You are signed in").await;
    c.find(Locator::LinkText("Go to your dashboard"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The overview of a new account.
    let html = page(&c, "Overview").await;
    assert!(html.contains("ada@example.com"));
    assert_eq!(text(&c, "#credits-available").await, "0");
    assert_eq!(text(&c, "#credits-reserved").await, "0");
    assert_eq!(text(&c, "#total-images").await, "0");
    assert!(html.contains("No tasks yet"), "empty state shown");
    screenshot(&c, "overview").await;
    // Readable on a phone: same page at 360 px.
    c.set_window_size(360, 740).await.unwrap();
    screenshot(&c, "overview-360px").await;
    c.set_window_size(1024, 768).await.unwrap();

    // Create a key: shown once.
    c.find(Locator::LinkText("API keys"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let html = page(&c, "API keys").await;
    assert!(html.contains("You have no API keys"), "empty state shown");
    fill(&c, "#key-name", "laptop").await;
    click(&c, "main form button[type=submit]").await;
    let html = page(&c, "Your new API key").await;
    assert!(html.contains("only time the key is shown"));
    let key = c
        .find(Locator::Css("#new-key"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .expect("the raw key");
    assert!(key.len() > 20, "{key}");
    screenshot(&c, "key-created").await;

    // The key works against the client API.
    assert_eq!(api_account(&h, &key).await, 200);

    // The list shows it as prefix…last4 only, never the raw key.
    c.goto(&h.url("/keys")).await.unwrap();
    let html = page(&c, "API keys").await;
    assert!(!html.contains(&key), "the raw key is shown once only");
    let row = text(&c, "#keys tbody tr").await;
    assert!(row.contains("laptop"), "{row}");
    assert!(row.contains(&key[key.len() - 4..]), "{row}");
    screenshot(&c, "keys").await;

    // Revoke, after the confirmation page.
    click(&c, "#keys tbody tr a").await;
    page(&c, "Revoke this API key?").await;
    screenshot(&c, "revoke").await;
    click(&c, "main form button[type=submit]").await;
    let html = page(&c, "API keys").await;
    assert!(html.contains("You have no API keys"));
    assert_eq!(api_account(&h, &key).await, 401);

    // Sign out: back to the sign-in page, and the dashboard is closed.
    click(&c, "header form button[type=submit]").await;
    page(&c, "Sign in to JourneyAPI").await;
    c.goto(&h.url("/keys")).await.unwrap();
    page(&c, "Sign in to JourneyAPI").await;

    c.close().await.unwrap();
}

/// Google sign-in in the browser: the sign-in page's Google form (country and age for a
/// first visit) goes to the issuer (the fake consents at once for the user it was told is
/// signed in there) and back to the callback, which shows the "signed in" page; the
/// dashboard then opens on the new account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_with_google_in_chromium() {
    let h = Harness::start().await;
    h.oidc.sign_in_as(
        &support::oidc::GoogleUser {
            sub: "google-ada",
            email: "ada.g@example.com",
            email_verified: true,
            name: Some("Ada"),
            picture: None,
        },
        &h.url("/"),
    );
    let driver = Driver::start().await;
    let c = driver.browser().await;
    c.goto(&h.url("/")).await.unwrap();
    page(&c, "Sign in to JourneyAPI").await;
    fill(&c, "#google-country", "DE").await;
    click(&c, "#google-age").await;
    click(&c, "#google button[type=submit]").await;
    page(&c, "You are signed in").await;
    c.find(Locator::LinkText("Go to your dashboard"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let html = page(&c, "Overview").await;
    assert!(html.contains("ada.g@example.com"), "{html}");
    c.close().await.unwrap();
}
