//! The account dashboard's pages over plain HTTP: their security headers, the CSRF token
//! every form carries, HTML (never JSON) for every failure, and their absence from the
//! OpenAPI document. The browser flow itself is in `browser.rs`.

use crate::support::{self, Harness};
use reqwest::header::HeaderMap;
use reqwest::Method;

fn assert_page_headers(headers: &HeaderMap) {
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert!(h("content-type").unwrap().starts_with("text/html"));
    assert_eq!(h("cache-control").as_deref(), Some("no-store"));
    assert_eq!(h("x-frame-options").as_deref(), Some("DENY"));
    let csp = h("content-security-policy").expect("CSP");
    for directive in [
        "default-src 'none'",
        "style-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("script-src"),
        "{csp}"
    );
}

/// The hidden CSRF field of a page's form.
fn csrf_field(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    html[start..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_html_with_strict_headers_and_forms_need_the_csrf_token() {
    let h = Harness::start().await;

    // Signed out: `/` is the sign-in page, `/keys` sends there.
    let visitor = h.browser();
    let r = visitor.get(h.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_page_headers(r.headers());
    let html = r.text().await.unwrap();
    assert!(
        html.contains("action=\"/v1/auth/magic-link\"") && html.contains("<label for=\"email\">")
    );
    assert!(
        html.contains("action=\"/v1/auth/google/start\""),
        "Google is configured here"
    );
    assert!(!html.contains("<script") && !html.contains("style="));
    let r = visitor.get(h.url("/keys")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    // A form post without a session: an HTML page, not JSON.
    let r = visitor
        .post(h.url("/keys"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=x&csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_page_headers(r.headers());

    // The style sheet is ours, from this origin.
    let r = visitor.get(h.url("/assets/app.css")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(r.text().await.unwrap().contains(":focus-visible"));

    // Signed in: the overview, and every form carries the session's CSRF token.
    let s = h.sign_in("grace@example.com").await;
    let r = s.get(&h, "/").await;
    assert_eq!(r.status(), 200);
    assert_page_headers(r.headers());
    let html = r.text().await.unwrap();
    assert!(html.contains("<h1>Overview</h1>") && html.contains("grace@example.com"));
    assert_eq!(csrf_field(&html), s.csrf);
    let r = s.get(&h, "/keys").await;
    assert_page_headers(r.headers());
    let html = r.text().await.unwrap();
    assert_eq!(
        html.matches("name=\"csrf\"").count(),
        2,
        "sign-out and create forms"
    );

    // A form post without the token, or with another one, is refused and changes nothing.
    for body in ["name=laptop", "name=laptop&csrf=0000"] {
        let r = s
            .client
            .post(h.url("/keys"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{body}");
        assert_page_headers(r.headers());
        assert!(r.text().await.unwrap().contains("reload the page"));
    }
    // A body past the 64 KiB the JSON API takes: the HTML 413 page, nothing created.
    let r = s
        .client
        .post(h.url("/keys"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}&name={}", s.csrf, "k".repeat(70 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_page_headers(r.headers());
    assert!(r.text().await.unwrap().contains("<h1>"));
    let keys: serde_json::Value = s.get(&h, "/v1/api-keys").await.json().await.unwrap();
    assert_eq!(keys["api_keys"].as_array().unwrap().len(), 0);

    // With the token: created, shown once on a page that is not cached.
    let r = s
        .client
        .post(h.url("/keys"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name=laptop&csrf={}", s.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // This page alone may run our own script (the copy button): `script-src 'self'`.
    let mut headers = r.headers().clone();
    let csp = headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.ends_with("; script-src 'self'"), "{csp}");
    headers.insert(
        "content-security-policy",
        csp.trim_end_matches("; script-src 'self'").parse().unwrap(),
    );
    assert_page_headers(&headers);
    let keys: serde_json::Value = s.get(&h, "/v1/api-keys").await.json().await.unwrap();
    let id = keys["api_keys"][0]["id"].as_str().unwrap().to_string();

    // Revoking needs the token too; the confirmation page changes nothing.
    let r = s.get(&h, &format!("/keys/{id}/revoke")).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("laptop"));
    let r = s
        .client
        .post(h.url(&format!("/keys/{id}/revoke")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let keys: serde_json::Value = s.get(&h, "/v1/api-keys").await.json().await.unwrap();
    assert_eq!(
        keys["api_keys"].as_array().unwrap().len(),
        1,
        "still active"
    );

    // Another account's key, or no key at all: a 404 page.
    let other = h.sign_in("mallory@example.com").await;
    let r = other.get(&h, &format!("/keys/{id}/revoke")).await;
    assert_eq!(r.status(), 404);
    assert_page_headers(r.headers());
    let r = other
        .client
        .post(h.url(&format!("/keys/{id}/revoke")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}", other.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_page_headers(r.headers());
    let keys: serde_json::Value = s.get(&h, "/v1/api-keys").await.json().await.unwrap();
    assert_eq!(
        keys["api_keys"].as_array().unwrap().len(),
        1,
        "still active"
    );

    // A method a page does not answer: an HTML 405 page.
    let r = s.write(&h, Method::DELETE, "/keys").send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_page_headers(r.headers());

    // Sign-out needs the token; then the session is over.
    let r = s
        .client
        .post(h.url("/logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(s.get(&h, "/v1/me").await.status(), 200, "still signed in");
    let r = s
        .client
        .post(h.url("/logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}", s.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    assert!(support::set_cookie_header(r.headers(), "journey_session").is_some());
    assert_eq!(s.get(&h, "/v1/me").await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_stay_out_of_the_openapi_document_and_sign_in_leads_to_them() {
    let h = Harness::start().await;
    let doc: serde_json::Value = reqwest::get(h.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for page in [
        "/",
        "/keys",
        "/keys/{id}/revoke",
        "/logout",
        "/assets/app.css",
    ] {
        assert!(
            !paths.contains_key(page),
            "{page} is a page, not an API operation"
        );
    }

    // After the emailed link, the "signed in" page links to the dashboard.
    let token = h.magic_link_token("lin@example.com").await;
    let browser = h.browser();
    browser
        .get(h.url(&format!("/v1/auth/magic-link/confirm?token={token}")))
        .send()
        .await
        .unwrap();
    let r = h.consume_form(&browser, &token).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("You are signed in") && html.contains("<a href=\"/\">"));
    // The sign-in flow's pages load the same style sheet under the same policy.
    assert!(html.contains("href=\"/assets/app.css\""));
}
