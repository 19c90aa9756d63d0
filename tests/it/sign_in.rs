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
    assert_eq!(r.status(), 403);
    assert!(support::cookie_value(r.headers(), "journey_session").is_none());
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
async fn google_links_existing_email_account_only_when_verified() {
    let h = Harness::start().await;
    let existing = h.sign_in("sam@example.com").await;
    let unverified = GoogleUser {
        sub: "g-unverified",
        email: "sam@example.com",
        email_verified: false,
        name: Some("Not Sam"),
        picture: None,
    };
    let r: Value = google(&h, &unverified, |_| {}).await.json().await.unwrap();
    assert_ne!(
        r["account_id"].as_str().unwrap(),
        existing.account_id.to_string(),
        "unverified email must not take over"
    );
    let me: Value = existing.get(&h, "/v1/me").await.json().await.unwrap();
    assert_eq!(me["name"], Value::Null);

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
        c.cookie_secure = journey_api::config::Config::default().cookie_secure
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
