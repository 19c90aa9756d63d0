//! Sign-in through HTTP: magic links (single use, scanner-safe, expiring, no enumeration,
//! rate-limited), sessions (HttpOnly cookie, CSRF, logout), profile correction and email
//! change, and Google OpenID Connect against a local issuer.

use crate::support;

use reqwest::Method;
use serde_json::{json, Value};
use support::oidc::GoogleUser;
use support::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magic_link_signs_up_once_and_is_single_use() {
    let h = Harness::start().await;
    let token = h.magic_link_token("Ada@Example.com").await;
    let mail = h.smtp.all().pop().unwrap();
    assert!(
        mail.contains("To: ada@example.com") || mail.to_lowercase().contains("to: ada@example.com")
    );
    assert_eq!(token.len(), 43, "32 random bytes, base64url");

    // The emailed link opens a page; fetching it (as a mail scanner would) burns nothing.
    let browser = h.browser();
    for _ in 0..2 {
        let page = browser
            .get(h.url(&format!("/v1/auth/magic-link/confirm?token={token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let bound = page
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with("journey_link_"))
            .expect("link binding cookie");
        assert!(bound.contains("HttpOnly"), "{bound}");
        let html = page.text().await.unwrap();
        assert!(html.contains("method=\"post\"") && html.contains(&token));
    }

    // The page's form post, from the browser that opened it, consumes it: account created,
    // session started.
    let r = h.consume_form(&browser, &token).await;
    assert_eq!(r.status(), 200);
    let session =
        support::set_cookie_header(r.headers(), "journey_session").expect("session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    let csrf = support::set_cookie_header(r.headers(), "journey_csrf").expect("csrf cookie");
    assert!(
        !csrf.contains("HttpOnly"),
        "the CSRF cookie is readable by the page"
    );
    let me: Value = browser
        .get(h.url("/v1/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["sign_in_methods"], json!(["magic_link"]));
    let account_id = me["account_id"].as_str().unwrap().to_string();

    // Single use: a second consume fails and changes nothing.
    let again = h.consume_json(&h.browser(), &token).await;
    assert_eq!(again.status(), 400);
    let body: Value = again.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["msg"],
        "this sign-in link has already been used"
    );
    let page = h
        .browser()
        .get(h.url(&format!("/v1/auth/magic-link/confirm?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);

    // The same address later signs into the same account.
    let s2 = h.sign_in("ada@example.com").await;
    assert_eq!(s2.account_id.to_string(), account_id);
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_accounts")
        .fetch_one(&h.app.db.any)
        .await
        .unwrap();
    assert_eq!(accounts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_site_cannot_sign_a_browser_into_its_account() {
    // Login CSRF: an attacker requests a link for their own address and makes a victim's
    // browser post it. The form post must come from the browser that opened the link.
    let h = Harness::start().await;
    let token = h.magic_link_token("attacker@example.com").await;
    let victim = h.browser();
    let r = h.consume_form(&victim, &token).await;
    assert!(support::cookie_value(r.headers(), "journey_session").is_none());
    // The victim is told why, and what the real owner of a link would do.
    let page = html_page(r, 403).await;
    assert!(page.contains("Open the link in this browser"), "{page}");
    assert!(page.contains("Your link still works"), "{page}");
    // JSON smuggled as text/plain (what a cross-site form can send) is refused too.
    let r = victim
        .post(h.url("/v1/auth/magic-link/consume"))
        .header("content-type", "text/plain")
        .body(format!("{{\"token\":\"{token}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Neither attempt burnt the link: its owner can still use it.
    let r = h.consume_json(&h.browser(), &token).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_open_links_in_one_browser_each_work() {
    let h = Harness::start().await;
    let first = h.magic_link_token("two.links@example.com").await;
    let second = h.magic_link_token("two.links@example.com").await;
    let browser = h.browser();
    for t in [&first, &second] {
        let page = browser
            .get(h.url(&format!("/v1/auth/magic-link/confirm?token={t}")))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
    }
    // The first page's button still works after the second page was opened.
    let r = h.consume_form(&browser, &first).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magic_links_expire_after_fifteen_minutes() {
    let h = Harness::start().await;
    let token = h.magic_link_token("late@example.com").await;
    h.clock
        .advance(chrono::Duration::minutes(15) + chrono::Duration::seconds(1));
    let r = h.consume_json(&h.browser(), &token).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["msg"], "this sign-in link has expired");
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_accounts")
        .fetch_one(&h.app.db.any)
        .await
        .unwrap();
    assert_eq!(accounts, 0, "no account from an expired link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magic_link_requests_do_not_enumerate_and_validate_input() {
    let h = Harness::start().await;
    h.sign_in("known@example.com").await;
    let c = h.browser();
    let known = c
        .post(h.url("/v1/auth/magic-link"))
        .json(&json!({"email": "known@example.com"}))
        .send()
        .await
        .unwrap();
    let unknown = c
        .post(h.url("/v1/auth/magic-link"))
        .json(&json!({"email": "stranger@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(known.status(), 202);
    assert_eq!(unknown.status(), 202);
    assert_eq!(known.text().await.unwrap(), unknown.text().await.unwrap());

    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&h.app.db.any)
        .await
        .unwrap();
    for bad in [
        json!({"email": "not-an-email"}),
        json!({"email": ""}),
        json!({"mail": "a@b.co"}),
        json!({"email": 5}),
        json!("x"),
    ] {
        let r = c
            .post(h.url("/v1/auth/magic-link"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert!(body["errors"][0]["msg"].as_str().is_some(), "{bad}: {body}");
    }
    let r = c
        .post(h.url("/v1/auth/magic-link"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&h.app.db.any)
        .await
        .unwrap();
    assert_eq!(events_before, events_after, "bad input changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magic_link_requests_are_rate_limited_per_email_and_per_ip() {
    let h = Harness::start_with(|c| {
        c.magic_link_per_email_per_hour = 3;
        c.magic_link_per_ip_per_hour = 5;
    })
    .await;
    let c = h.browser();
    let send = |email: &'static str| {
        c.post(h.url("/v1/auth/magic-link"))
            .json(&json!({ "email": email }))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(send("busy@example.com").await.unwrap().status(), 202);
    }
    let limited = send("busy@example.com").await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(h.smtp.count(), 3, "no mail for the limited request");
    // Per IP: every request from the address counts, refused ones included (4 so far), so
    // one more address passes and then this IP is out of budget for any address.
    assert_eq!(send("one@example.com").await.unwrap().status(), 202);
    assert_eq!(send("two@example.com").await.unwrap().status(), 429);
    assert_eq!(h.smtp.count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_require_csrf_for_changes_and_end_on_logout() {
    let h = Harness::start().await;
    let s = h.sign_in("grace@example.com").await;
    assert_eq!(
        h.browser()
            .get(h.url("/v1/me"))
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "no cookie, no profile"
    );

    // A cookie-authenticated change without the CSRF header is refused and changes nothing.
    let r = s
        .client
        .patch(h.url("/v1/me"))
        .json(&json!({"name": "Mallory"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = s
        .client
        .patch(h.url("/v1/me"))
        .header("x-csrf-token", "0".repeat(64))
        .json(&json!({"name": "Mallory"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let me: Value = s.get(&h, "/v1/me").await.json().await.unwrap();
    assert_eq!(me["name"], Value::Null);

    // With it, the name is corrected.
    let r = s
        .write(&h, Method::PATCH, "/v1/me")
        .json(&json!({"name": "Grace Hopper"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["name"], "Grace Hopper");
    for bad in [
        json!({}),
        json!({"name": ""}),
        json!({"name": "x".repeat(201)}),
        json!({"nickname": "g"}),
        json!({"email": "nope"}),
    ] {
        let r = s
            .write(&h, Method::PATCH, "/v1/me")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }

    let r = s
        .write(&h, Method::POST, "/v1/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The old cookie no longer works, even if replayed.
    let replay = h
        .browser()
        .get(h.url("/v1/me"))
        .header("cookie", format!("journey_session={}", s.session_token))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire() {
    let h = Harness::start_with(|c| c.session_ttl_secs = 3600).await;
    let s = h.sign_in("brief@example.com").await;
    assert_eq!(s.get(&h, "/v1/me").await.status(), 200);
    h.clock.advance(chrono::Duration::hours(1));
    assert_eq!(s.get(&h, "/v1/me").await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_change_takes_effect_only_after_the_new_address_confirms() {
    let h = Harness::start().await;
    let s = h.sign_in("old@example.com").await;
    let before = h.smtp.count();
    let r = s
        .write(&h, Method::PATCH, "/v1/me")
        .json(&json!({"email": "New@Example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let me: Value = r.json().await.unwrap();
    assert_eq!(
        me["email"], "old@example.com",
        "nothing changes before confirmation"
    );
    let mail = h.smtp.wait_for(before + 1).await;
    assert!(mail.to_lowercase().contains("to: new@example.com"));
    let token = support::token_from_mail(&mail);

    let r = h.consume_json(&h.browser(), &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["email_changed"], true);
    let me: Value = s.get(&h, "/v1/me").await.json().await.unwrap();
    assert_eq!(me["email"], "new@example.com");

    // The new address signs into this account; the old one no longer does.
    assert_eq!(h.sign_in("new@example.com").await.account_id, s.account_id);
    assert_ne!(h.sign_in("old@example.com").await.account_id, s.account_id);

    // Another account's address cannot be taken.
    let other = h.sign_in("taken@example.com").await;
    let r = s
        .write(&h, Method::PATCH, "/v1/me")
        .json(&json!({"email": "taken@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "no enumeration at request time");
    let token = support::token_from_mail(&h.smtp.all().pop().unwrap());
    let r = h.consume_json(&h.browser(), &token).await;
    assert_eq!(r.status(), 409);
    let me: Value = s.get(&h, "/v1/me").await.json().await.unwrap();
    assert_eq!(me["email"], "new@example.com");
    let theirs: Value = other.get(&h, "/v1/me").await.json().await.unwrap();
    assert_eq!(theirs["email"], "taken@example.com");
}

/// Runs the browser side of Google sign-in against the fake issuer.
async fn google(
    h: &Harness,
    user: &GoogleUser<'_>,
    tamper: impl FnOnce(&mut Value),
) -> reqwest::Response {
    let browser = h.browser();
    let start = browser
        .get(h.url("/v1/auth/google/start?country=FR&age_confirmed=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    let loc = url::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["client_id"], "test-client-id");
    assert!(q["scope"].contains("openid"));
    let mut claims = h.oidc.claims(user, &q["nonce"]);
    tamper(&mut claims);
    let code = h.oidc.authorize(&q["code_challenge"], claims);
    browser
        .get(h.url(&format!(
            "/v1/auth/google/callback?code={code}&state={}",
            q["state"]
        )))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_sign_in_creates_account_with_profile() {
    let h = Harness::start().await;
    let user = GoogleUser {
        sub: "g-123",
        email: "lin@example.com",
        email_verified: true,
        name: Some("Lin Example"),
        picture: Some("https://example.com/lin.png"),
    };
    let r = google(&h, &user, |_| {}).await;
    assert_eq!(r.status(), 200);
    let cookie = support::cookie_value(r.headers(), "journey_session").unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["created"], true);
    let me: Value = h
        .browser()
        .get(h.url("/v1/me"))
        .header("cookie", format!("journey_session={cookie}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "lin@example.com");
    assert_eq!(me["name"], "Lin Example");
    assert_eq!(me["picture"], "https://example.com/lin.png");
    let methods = me["sign_in_methods"].as_array().unwrap();
    assert!(methods.contains(&json!("google")) && methods.contains(&json!("magic_link")));

    // Signing in again finds the same account by Google subject.
    let again: Value = google(&h, &user, |_| {}).await.json().await.unwrap();
    assert_eq!(again["created"], false);
    assert_eq!(again["account_id"], body["account_id"]);
    // And the verified email links: a magic link for it reaches the same account.
    assert_eq!(
        h.sign_in("lin@example.com").await.account_id.to_string(),
        body["account_id"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_links_an_existing_email_account_when_verified() {
    let h = Harness::start().await;
    let existing = h.sign_in("sam@example.com").await;
    let verified = GoogleUser {
        sub: "g-verified",
        email: "sam@example.com",
        email_verified: true,
        name: Some("Sam"),
        picture: None,
    };
    let r: Value = google(&h, &verified, |_| {}).await.json().await.unwrap();
    assert_eq!(
        r["account_id"].as_str().unwrap(),
        existing.account_id.to_string()
    );
    assert_eq!(r["created"], false);
    let me: Value = existing.get(&h, "/v1/me").await.json().await.unwrap();
    assert_eq!(me["name"], "Sam");
}

/// The refusal of an unverified Google email: an HTML page that says so and offers an
/// emailed link to that address instead, and no session.
async fn assert_unverified_refusal(r: reqwest::Response, email: &str) {
    assert!(
        support::cookie_value(r.headers(), "journey_session").is_none(),
        "no session for an unverified email"
    );
    let page = html_page(r, 403).await;
    assert!(
        page.contains("Your Google account&#39;s email is not verified"),
        "{page}"
    );
    assert!(page.contains("Verify the address with Google"), "{page}");
    assert!(offers_a_new_link(&page), "{page}");
    assert!(
        page.contains(&format!("name=\"email\" type=\"email\" required maxlength=\"254\" autocomplete=\"email\" value=\"{email}\"")),
        "the emailed-link form is filled in with the address: {page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_sign_in_with_an_unverified_email_is_refused_and_claims_nothing() {
    let h = Harness::start().await;
    let pat = GoogleUser {
        sub: "g-pat",
        email: "pat@example.com",
        email_verified: false,
        name: Some("Not Pat"),
        picture: None,
    };
    type Tamper = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, Tamper)> = vec![
        ("false", Box::new(|_: &mut Value| {})),
        (
            "missing",
            Box::new(|c: &mut Value| {
                c.as_object_mut().unwrap().remove("email_verified");
            }),
        ),
        (
            "the string \"false\"",
            Box::new(|c: &mut Value| c["email_verified"] = json!("false")),
        ),
    ];
    for (what, tamper) in cases {
        let r = google(&h, &pat, tamper).await;
        assert_eq!(r.status(), 403, "email_verified {what}");
        assert_unverified_refusal(r, "pat@example.com").await;
    }
    // Nothing was created or claimed: no account, no identity row for the address or the
    // Google subject, and staff tools find no account under the address.
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_accounts")
        .fetch_one(&h.app.db.any)
        .await
        .unwrap();
    assert_eq!(accounts, 0);
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM identity_index")
        .fetch_one(&h.app.db.any)
        .await
        .unwrap();
    assert_eq!(claims, 0, "nothing claimed in the identity index");
    let out = h.cli(&["staff", "grant", "pat@example.com", "support"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no account for pat@example.com"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The address's owner signs up by magic link: a new account...
    let owner = h.sign_in("pat@example.com").await;
    // ...which that Google account joins once Google vouches for the address (so its subject
    // was never claimed for another account).
    let verified = GoogleUser {
        email_verified: true,
        ..pat
    };
    let r: Value = google(&h, &verified, |_| {}).await.json().await.unwrap();
    assert_eq!(r["account_id"], owner.account_id.to_string());
    assert_eq!(r["created"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_google_email_reaches_no_existing_account() {
    let h = Harness::start().await;
    // An account by that address (magic link): not signed into, not linked, not renamed.
    let existing = h.sign_in("sam@example.com").await;
    let not_sam = GoogleUser {
        sub: "g-not-sam",
        email: "sam@example.com",
        email_verified: false,
        name: Some("Not Sam"),
        picture: None,
    };
    assert_unverified_refusal(google(&h, &not_sam, |_| {}).await, "sam@example.com").await;
    let me: Value = existing.get(&h, "/v1/me").await.json().await.unwrap();
    assert_eq!(me["name"], Value::Null);
    assert_eq!(me["sign_in_methods"], json!(["magic_link"]));

    // An account already linked to the Google subject: refused too while Google does not
    // mark the address verified (it is where the account's receipts go).
    let lin = GoogleUser {
        sub: "g-lin",
        email: "lin@example.com",
        email_verified: true,
        name: None,
        picture: None,
    };
    let r = google(&h, &lin, |_| {}).await;
    assert_eq!(r.status(), 200);
    let unverified = GoogleUser {
        email_verified: false,
        ..lin
    };
    assert_unverified_refusal(google(&h, &unverified, |_| {}).await, "lin@example.com").await;
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_sessions")
        .fetch_one(&h.app.db.any)
        .await
        .unwrap();
    assert_eq!(
        sessions, 2,
        "Sam's magic-link session and Lin's first sign-in only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_tokens_are_verified() {
    let h = Harness::start().await;
    let user = GoogleUser {
        sub: "g-9",
        email: "eve@example.com",
        email_verified: true,
        name: None,
        picture: None,
    };
    type Tamper = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "wrong nonce",
            Box::new(|c: &mut Value| c["nonce"] = json!("other")),
        ),
        (
            "wrong audience",
            Box::new(|c: &mut Value| c["aud"] = json!("someone-else")),
        ),
        (
            "wrong issuer",
            Box::new(|c: &mut Value| c["iss"] = json!("https://evil.example")),
        ),
        (
            "expired",
            Box::new(|c: &mut Value| c["exp"] = json!(chrono::Utc::now().timestamp() - 3600)),
        ),
    ];
    for (what, tamper) in cases {
        let r = google(&h, &user, tamper).await;
        assert_eq!(r.status(), 400, "{what}");
    }
    // State must match the browser's own start.
    let browser = h.browser();
    browser
        .get(h.url("/v1/auth/google/start?country=FR&age_confirmed=true"))
        .send()
        .await
        .unwrap();
    let r = browser
        .get(h.url("/v1/auth/google/callback?code=x&state=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // No start at all (no state cookie).
    let r = h
        .browser()
        .get(h.url("/v1/auth/google/callback?code=x&state=y"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_accounts")
        .fetch_one(&h.app.db.any)
        .await
        .unwrap();
    assert_eq!(accounts, 0, "no rejected sign-in created an account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_last_forwarded_address_is_the_client() {
    let h = Harness::start_with(|c| {
        c.trust_forwarded_for = true;
        c.magic_link_per_ip_per_hour = 1;
    })
    .await;
    let c = h.browser();
    let send = |xff: &'static str, email: &'static str| {
        c.post(h.url("/v1/auth/magic-link"))
            .header("x-forwarded-for", xff)
            .json(&json!({ "email": email }))
            .send()
    };
    // Different real clients (last entry, appended by our proxy) have separate budgets...
    assert_eq!(
        send("203.0.113.1", "a@example.com").await.unwrap().status(),
        202
    );
    assert_eq!(
        send("203.0.113.2", "b@example.com").await.unwrap().status(),
        202
    );
    // ...and a client cannot escape its budget by forging entries to the left.
    let forged = send("198.51.100.7, 203.0.113.1", "c@example.com")
        .await
        .unwrap();
    assert_eq!(forged.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_session_cookies_are_secure_for_tls_only() {
    // The server speaks HTTP behind a TLS-terminating proxy; the default configuration
    // marks every cookie Secure so browsers send them over TLS only.
    let h = Harness::start_with(|c| {
        c.cookie_secure = journey_contexts::config::Config::default().cookie_secure
    })
    .await;
    let token = h.magic_link_token("tls@example.com").await;
    let r = h.consume_json(&h.browser(), &token).await;
    assert_eq!(r.status(), 200);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(cookies.len() >= 2, "{cookies:?}");
    for c in &cookies {
        assert!(c.contains("Secure"), "cookie without Secure: {c}");
    }
}

/// Asserts that `r` is one of the sign-in pages with `status` and returns its markup.
async fn html_page(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let page = r.text().await.unwrap();
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(!page.to_lowercase().contains("<script"), "{page}");
    page
}

/// Whether a page carries the form that emails a new sign-in link.
fn offers_a_new_link(page: &str) -> bool {
    page.contains("<form method=\"post\" action=\"/v1/auth/magic-link\">")
        && page.contains("name=\"email\"")
}

/// Opens a link's confirmation page in `browser` (which sets its binding cookie).
async fn open_link(h: &Harness, browser: &reqwest::Client, token: &str) -> reqwest::Response {
    browser
        .get(h.url(&format!("/v1/auth/magic-link/confirm?token={token}")))
        .send()
        .await
        .unwrap()
}

/// Posts a form body to `path` as a browser form does.
async fn post_form(
    h: &Harness,
    browser: &reqwest::Client,
    path: &str,
    body: &str,
) -> reqwest::Response {
    browser
        .post(h.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// A JSON error answer, exactly as the JSON API has always given it.
async fn assert_json_error(r: reqwest::Response, status: u16, msg: &str) {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({ "errors": [{ "msg": msg }] }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_link_posted_again_says_so_and_offers_a_new_one() {
    let h = Harness::start().await;
    let token = h.magic_link_token("again@example.com").await;
    let browser = h.browser();
    assert_eq!(open_link(&h, &browser, &token).await.status(), 200);
    let first = h.consume_form(&browser, &token).await;
    let page = html_page(first, 200).await;
    assert!(page.contains("You are signed in"));

    // The same form posted again (back button, double click), from this browser or another:
    // the link is used, whatever the binding cookie says.
    for (who, client) in [("same browser", &browser), ("other browser", &h.browser())] {
        let page = html_page(h.consume_form(client, &token).await, 400).await;
        assert!(page.contains("This link was already used"), "{who}: {page}");
        assert!(page.contains("Request a new one"), "{who}: {page}");
        assert!(!page.contains("in this browser"), "{who}: {page}");
        assert!(offers_a_new_link(&page), "{who}: {page}");
    }
    // So does the emailed link opened again.
    let page = html_page(open_link(&h, &h.browser(), &token).await, 400).await;
    assert!(
        page.contains("This link was already used") && offers_a_new_link(&page),
        "{page}"
    );
    // JSON clients keep their JSON error.
    assert_json_error(
        h.consume_json(&h.browser(), &token).await,
        400,
        "this sign-in link has already been used",
    )
    .await;

    // The page's form emails a new link, which signs into the same account.
    let before = h.smtp.count();
    let sent = post_form(
        &h,
        &browser,
        "/v1/auth/magic-link",
        "email=Again%40Example.com",
    )
    .await;
    let page = html_page(sent, 202).await;
    assert!(
        page.contains("Check your email") && page.contains("again@example.com"),
        "{page}"
    );
    let fresh = support::token_from_mail(&h.smtp.wait_for(before + 1).await);
    assert_eq!(open_link(&h, &browser, &fresh).await.status(), 200);
    assert_eq!(h.consume_form(&browser, &fresh).await.status(), 200);
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_accounts")
        .fetch_one(&h.app.db.any)
        .await
        .unwrap();
    assert_eq!(accounts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_garbled_links_posted_from_the_form_get_pages() {
    let h = Harness::start().await;
    let token = h.magic_link_token("slow@example.com").await;
    let browser = h.browser();
    assert_eq!(open_link(&h, &browser, &token).await.status(), 200);
    h.clock
        .advance(chrono::Duration::minutes(15) + chrono::Duration::seconds(1));
    let page = html_page(h.consume_form(&browser, &token).await, 400).await;
    assert!(page.contains("This link has expired"), "{page}");
    assert!(
        page.contains("15 minutes") && page.contains("Request a new one"),
        "{page}"
    );
    assert!(offers_a_new_link(&page), "{page}");
    assert_json_error(
        h.consume_json(&browser, &token).await,
        400,
        "this sign-in link has expired",
    )
    .await;

    let long = "a".repeat(200);
    for (what, body) in [
        (
            "unknown token",
            "token=not-a-real-token&country=FR&age_confirmed=on".to_string(),
        ),
        ("no token", "country=FR&age_confirmed=on".to_string()),
        ("empty token", "token=".to_string()),
        ("over-long token", format!("token={long}")),
    ] {
        let r = post_form(&h, &browser, "/v1/auth/magic-link/consume", &body).await;
        let page = html_page(r, 400).await;
        assert!(page.contains("This link is not valid"), "{what}: {page}");
        assert!(offers_a_new_link(&page), "{what}: {page}");
    }
    assert_json_error(
        h.consume_json(&browser, "not-a-real-token").await,
        400,
        "this sign-in link is not valid",
    )
    .await;
    assert_json_error(
        h.consume_json(&browser, &long).await,
        400,
        "this sign-in link is not valid",
    )
    .await;
    let r = browser
        .get(h.url("/v1/auth/magic-link/confirm"))
        .send()
        .await
        .unwrap();
    let page = html_page(r, 400).await;
    assert!(
        page.contains("This link is not valid") && offers_a_new_link(&page),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_sign_up_shows_the_form_again_and_creates_nothing() {
    let h = Harness::start().await;
    let token = h.magic_link_token("young@example.com").await;
    let browser = h.browser();
    let page = html_page(open_link(&h, &browser, &token).await, 200).await;
    assert!(page.contains("Create your JourneyAPI account"));
    let consume = "/v1/auth/magic-link/consume";
    let refilled = |page: &str| {
        page.contains(&format!("name=\"token\" value=\"{token}\""))
            && page.contains("action=\"/v1/auth/magic-link/consume\"")
            && page.contains("No account was created, and your link still works.")
    };

    for (what, body) in [
        ("no country", format!("token={token}&age_confirmed=on")),
        (
            "not a country code",
            format!("token={token}&country=F1&age_confirmed=on"),
        ),
    ] {
        let page = html_page(post_form(&h, &browser, consume, &body).await, 400).await;
        assert!(
            page.contains("enter your country as a two-letter code"),
            "{what}: {page}"
        );
        assert!(refilled(&page), "{what}: {page}");
        assert!(
            page.contains("age_confirmed\" required checked>"),
            "{what}: {page}"
        );
    }
    // What was typed comes back escaped.
    let page = html_page(
        post_form(
            &h,
            &browser,
            consume,
            &format!("token={token}&country=%22%3E%3Cb%3Ex"),
        )
        .await,
        400,
    )
    .await;
    assert!(
        page.contains("value=\"&quot;&gt;&lt;b&gt;x\"") && !page.contains("<b>"),
        "{page}"
    );

    let page = html_page(
        post_form(&h, &browser, consume, &format!("token={token}&country=DE")).await,
        400,
    )
    .await;
    assert!(
        page.contains("To create an account in DE you must be at least 16 years old"),
        "{page}"
    );
    assert!(
        page.contains(
            "name=\"country\" required maxlength=\"2\" autocomplete=\"country\" value=\"DE\""
        ),
        "{page}"
    );
    assert!(refilled(&page), "{page}");
    // The JSON API answers as it always has.
    let r = browser
        .post(h.url(consume))
        .json(&json!({ "token": token, "country": "DE" }))
        .send()
        .await
        .unwrap();
    assert_json_error(
        r,
        400,
        "to create an account you must confirm that you are at least 16 years old (`age_confirmed`: true); no account was created",
    )
    .await;
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_accounts")
        .fetch_one(&h.app.db.any)
        .await
        .unwrap();
    assert_eq!(accounts, 0, "no account from a refused sign-up");

    // The form shown again works once filled in.
    let r = post_form(
        &h,
        &browser,
        consume,
        &format!("token={token}&country=DE&age_confirmed=on"),
    )
    .await;
    assert!(html_page(r, 200).await.contains("You are signed in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_accounts_get_a_page_naming_whom_to_contact() {
    let h = Harness::start().await;
    // Pending deletion.
    let leaving = h.sign_in("leaving@example.com").await;
    let r = leaving
        .write(&h, Method::DELETE, "/v1/me")
        .json(&json!({ "confirm": "Delete my account" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let token = h.magic_link_token("leaving@example.com").await;
    let browser = h.browser();
    assert_eq!(open_link(&h, &browser, &token).await.status(), 200);
    let page = html_page(h.consume_form(&browser, &token).await, 403).await;
    assert!(
        page.contains("This account is scheduled for deletion"),
        "{page}"
    );
    assert!(
        page.contains("To cancel the deletion, contact support"),
        "{page}"
    );
    assert!(page.contains(&h.cfg.privacy_contact), "{page}");
    let token = h.magic_link_token("leaving@example.com").await;
    assert_json_error(
        h.consume_json(&h.browser(), &token).await,
        403,
        "this account is scheduled for deletion; contact support within the 30-day window to cancel",
    )
    .await;

    // Erased after the link was sent.
    let gone = h.sign_in("gone@example.com").await;
    let token = h.magic_link_token("gone@example.com").await;
    let browser = h.browser();
    assert_eq!(open_link(&h, &browser, &token).await.status(), 200);
    h.erase(&gone.account_id.to_string(), "test").await;
    let page = html_page(h.consume_form(&browser, &token).await, 403).await;
    assert!(page.contains("This account has been erased"), "{page}");
    assert!(page.contains(&h.cfg.privacy_contact), "{page}");
    assert_json_error(
        h.consume_json(&h.browser(), &token).await,
        403,
        "this account has been erased",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_request_form_answers_in_html_and_is_rate_limited() {
    let h = Harness::start_with(|c| c.magic_link_per_email_per_hour = 1).await;
    let browser = h.browser();
    let request = "/v1/auth/magic-link";
    let page = html_page(
        post_form(&h, &browser, request, "email=not-an-email").await,
        400,
    )
    .await;
    assert!(page.contains("Enter a valid email address"), "{page}");
    assert!(
        offers_a_new_link(&page) && page.contains("value=\"not-an-email\""),
        "{page}"
    );
    let page = html_page(
        post_form(&h, &browser, request, "email=%3Cscript%3E").await,
        400,
    )
    .await;
    assert!(page.contains("value=\"&lt;script&gt;\""), "{page}");

    let page = html_page(
        post_form(&h, &browser, request, "email=busy%40example.com").await,
        202,
    )
    .await;
    assert!(page.contains("Check your email"), "{page}");
    assert_eq!(h.smtp.count(), 1);
    let r = post_form(&h, &browser, request, "email=busy%40example.com").await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let page = html_page(r, 429).await;
    assert!(page.contains("Too many sign-in links requested"), "{page}");
    assert!(page.contains("Try again in about"), "{page}");
    assert_eq!(h.smtp.count(), 1, "no mail for the limited request");
    // JSON clients still get JSON.
    let r = browser
        .post(h.url(request))
        .json(&json!({ "email": "busy@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert!(body["errors"][0]["msg"]
        .as_str()
        .unwrap()
        .starts_with("too many requests; retry after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_the_html_answers_of_the_sign_in_pages() {
    let h = Harness::start().await;
    let doc: Value = reqwest::get(h.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let html = |path: &str, method: &str, status: &str| {
        let content = &doc["paths"][path][method]["responses"][status]["content"];
        assert!(
            content.get("text/html").is_some(),
            "{method} {path} {status} lists no HTML: {content}"
        );
        content.get("application/json").is_some()
    };
    for status in ["200", "400", "403", "409"] {
        assert!(
            html("/v1/auth/magic-link/consume", "post", status),
            "JSON kept for {status}"
        );
    }
    for status in ["202", "400", "429", "503"] {
        assert!(
            html("/v1/auth/magic-link", "post", status),
            "JSON kept for {status}"
        );
    }
    assert!(html("/v1/auth/google/callback", "get", "403"));
    for path in ["/v1/auth/magic-link", "/v1/auth/magic-link/consume"] {
        let body = &doc["paths"][path]["post"]["requestBody"]["content"];
        assert!(
            body.get("application/x-www-form-urlencoded").is_some()
                && body.get("application/json").is_some(),
            "{path}: {body}"
        );
    }
}

/// Google sign-in from the dashboard: the sign-in page's Google form (country and age for a
/// first visit) may be sent on to the issuer (its origin is in `form-action`), and the
/// callback answers a browser (`Accept: text/html`) with pages, success or failure, while
/// other clients keep getting JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_sign_in_from_a_browser_gets_pages() {
    let h = Harness::start().await;
    let sign_in = reqwest::get(h.url("/")).await.unwrap();
    let csp = sign_in.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let issuer = url::Url::parse(&h.oidc.issuer).unwrap();
    assert!(
        csp.contains(&format!(
            "form-action 'self' {}",
            issuer.origin().ascii_serialization()
        )),
        "{csp}"
    );
    let html = sign_in.text().await.unwrap();
    assert!(html.contains(r#"action="/v1/auth/google/start""#), "{html}");
    assert!(html.contains(r#"name="age_confirmed" type="checkbox" value="true""#));

    // What the form sends; then the callback as a browser asks for it.
    let run = |start: &'static str, user: GoogleUser<'static>, forge: bool| {
        let h = &h;
        async move {
            let browser = h.browser();
            let start = browser.get(h.url(start)).send().await.unwrap();
            assert_eq!(start.status(), 302);
            let loc = url::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
            let q: std::collections::HashMap<String, String> =
                loc.query_pairs().into_owned().collect();
            let code = h
                .oidc
                .authorize(&q["code_challenge"], h.oidc.claims(&user, &q["nonce"]));
            let state = if forge { "forged" } else { q["state"].as_str() };
            browser
                .get(h.url(&format!(
                    "/v1/auth/google/callback?code={code}&state={state}"
                )))
                .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
                .send()
                .await
                .unwrap()
        }
    };
    let user = |sub: &'static str, email: &'static str| GoogleUser {
        sub,
        email,
        email_verified: true,
        name: None,
        picture: None,
    };

    // A first visit without the country and age: a page that says so; nothing created.
    let r = run(
        "/v1/auth/google/start?country=&age_confirmed=false",
        user("g-1", "first@example.com"),
        false,
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r
        .headers()
        .get("set-cookie")
        .is_none_or(|c| !c.to_str().unwrap().starts_with("journey_session=")));
    let page = r.text().await.unwrap();
    assert!(page.contains("Google sign-in did not work"), "{page}");
    assert!(page.contains("country"), "{page}");

    // A forged state: a page, not JSON.
    let r = run(
        "/v1/auth/google/start?country=FR&age_confirmed=true",
        user("g-1", "first@example.com"),
        true,
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("start again"));

    // The form as a first visit fills it: signed in, with a link to the dashboard.
    let r = run(
        "/v1/auth/google/start?country=FR&age_confirmed=true",
        user("g-1", "first@example.com"),
        false,
    )
    .await;
    assert_eq!(r.status(), 200);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("journey_session=")),
        "{cookies:?}"
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("You are signed in"), "{page}");
    assert!(page.contains(r#"href="/""#));
}
