//! The dashboard's billing page and privacy centre over plain HTTP: each form needs the
//! session's CSRF token, bad input is an HTML 4xx page that changes nothing, another
//! account's data is never shown, and every change goes through the same use case as the
//! JSON API (checked through that API). The browser flows are in `browser_privacy.rs`.

use crate::support::stripe::{self, FakeStripe};
use crate::support::{self, last_checkout, Harness, Session};
use reqwest::header::HeaderMap;
use serde_json::Value;

fn assert_page(headers: &HeaderMap) {
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert!(h("content-type").unwrap().starts_with("text/html"));
    assert_eq!(h("cache-control").as_deref(), Some("no-store"));
    assert_eq!(h("x-frame-options").as_deref(), Some("DENY"));
    let csp = h("content-security-policy").expect("CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("form-action 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("script-src") && !csp.contains("unsafe-inline"));
}

/// Posts a form (urlencoded pairs) with the browser's cookies.
pub async fn post_form(
    h: &Harness,
    client: &reqwest::Client,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    client
        .post(h.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn page(h: &Harness, s: &Session, path: &str) -> String {
    let r = s.get(h, path).await;
    assert_eq!(r.status(), 200, "{path}");
    assert_page(r.headers());
    let html = r.text().await.unwrap();
    assert!(!html.contains("<script") && !html.contains("style="));
    html
}

/// The text of the element with `id="<id>"` (up to its closing tag).
fn by_id(html: &str, id: &str) -> String {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in page"));
    let start = at + html[at..].find('>').unwrap() + 1;
    let end = start + html[start..].find("</").unwrap();
    html[start..end].trim().to_string()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

/// Stripe's `checkout.session.completed` for the last Checkout Session our server created
/// for `account` (as Stripe sends once the customer has paid).
pub fn completed_last_checkout(h: &Harness, account: &str) -> String {
    let (req, metadata) = last_checkout(&h.stripe);
    let session_id = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    let customer = FakeStripe::form_value(&req, "customer").expect("customer on session");
    let amount = FakeStripe::form_value(&req, "line_items[0][price_data][unit_amount]")
        .unwrap()
        .parse()
        .unwrap();
    let object = stripe::checkout_session_completed(
        &session_id,
        "payment",
        account,
        &customer,
        Some(&format!("pi_{}", uuid::Uuid::new_v4().simple())),
        None,
        amount,
        metadata,
    );
    stripe::event(
        &format!("evt_{}", uuid::Uuid::new_v4().simple()),
        "checkout.session.completed",
        h.now_ts(),
        object,
    )
}

fn checkouts(h: &Harness) -> usize {
    h.stripe
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/checkout/sessions")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_page_buys_through_checkout_and_shows_the_ledger() {
    let h = Harness::start().await;

    // Signed out: the pages send to sign-in, forms are refused with a page.
    let visitor = h.browser();
    for path in ["/billing", "/privacy"] {
        let r = visitor.get(h.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(location(&r), "/");
    }
    let r = post_form(&h, &visitor, "/billing/checkout", &[("pack", "small")]).await;
    assert_eq!(r.status(), 401);
    assert_page(r.headers());

    let s = h.sign_in("payer@example.com").await;
    let html = page(&h, &s, "/billing").await;
    assert!(html.contains("<h1>Billing</h1>") && html.contains("aria-current=\"page\">Billing"));
    assert_eq!(by_id(&html, "credits-available"), "0");
    assert_eq!(by_id(&html, "plan"), "free");
    assert!(html.contains("id=\"buy-small\"") && html.contains("id=\"subscribe-starter\""));
    assert!(html.contains("id=\"no-ledger\""), "empty state");
    // The page's forms may be answered with a redirect to Stripe's hosted pages.
    let r = s.get(&h, "/billing").await;
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("https://checkout.stripe.com"), "{csp}");

    // No CSRF token, a wrong one, an unknown pack, both a pack and a plan: an HTML page,
    // and no Checkout Session at Stripe.
    for (fields, status) in [
        (vec![("pack", "small")], 403),
        (vec![("pack", "small"), ("csrf", "nope")], 403),
        (vec![("pack", "gold-bars"), ("csrf", s.csrf.as_str())], 400),
        (
            vec![
                ("pack", "small"),
                ("plan", "starter"),
                ("csrf", s.csrf.as_str()),
            ],
            400,
        ),
        (vec![("csrf", s.csrf.as_str())], 400),
    ] {
        let r = post_form(&h, &s.client, "/billing/checkout", &fields).await;
        assert_eq!(r.status(), status, "{fields:?}");
        assert_page(r.headers());
        let html = r.text().await.unwrap();
        assert!(html.contains("href=\"/billing\""), "a way back: {html}");
    }
    assert_eq!(checkouts(&h), 0, "nothing reached Stripe");

    // With the token: 303 to the Checkout page, which returns to the dashboard.
    let r = post_form(
        &h,
        &s.client,
        "/billing/checkout",
        &[("pack", "small"), ("csrf", s.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("https://checkout.stripe.com/"));
    let (req, _) = last_checkout(&h.stripe);
    assert!(FakeStripe::form_value(&req, "success_url")
        .unwrap()
        .ends_with("/billing?checkout=success"));
    assert!(FakeStripe::form_value(&req, "cancel_url")
        .unwrap()
        .ends_with("/billing?checkout=cancelled"));

    // Stripe confirms the payment: the credits and the ledger entry show.
    let event = completed_last_checkout(&h, &s.account_id.to_string());
    assert_eq!(h.deliver(&event).await.status(), 200);
    let html = page(&h, &s, "/billing?checkout=success").await;
    assert!(html.contains("id=\"checkout-notice\""));
    assert_eq!(by_id(&html, "credits-available"), "500");
    let ledger = by_id(&html, "ledger");
    assert!(
        html.contains("<td>grant</td>") && html.contains("purchase"),
        "{ledger}"
    );

    // The portal: 303 to Stripe's portal.
    let r = post_form(&h, &s.client, "/billing/portal", &[("csrf", "bad")]).await;
    assert_eq!(r.status(), 403);
    let r = post_form(
        &h,
        &s.client,
        "/billing/portal",
        &[("csrf", s.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("https://billing.stripe.com/"));

    // Bad paging: an HTML 400 page; the last page's "older" link ends the list.
    for q in ["abc", "0", "-4"] {
        let r = s.get(&h, &format!("/billing?before={q}")).await;
        assert_eq!(r.status(), 400, "{q}");
        assert_page(r.headers());
    }
    let html = page(&h, &s, "/billing?before=1").await;
    assert!(html.contains("No older entries"));

    // Another account sees its own (empty) billing, never this one's.
    let other = h.sign_in("other@example.com").await;
    let html = page(&h, &other, "/billing").await;
    assert_eq!(by_id(&html, "credits-available"), "0");
    assert!(html.contains("id=\"no-ledger\"") && !html.contains("payer@example.com"));

    // The JSON API says the same.
    let b: Value = s.get(&h, "/v1/billing").await.json().await.unwrap();
    assert_eq!(b["balance"]["available"], 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consents_objection_and_restriction_are_forms_with_csrf() {
    let h = Harness::start().await;
    let s = h.sign_in("chooser@example.com").await;
    let consents = |s: &Session| {
        let h = &h;
        let client = s.client.clone();
        async move {
            client
                .get(h.url("/v1/me/consents"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let html = page(&h, &s, "/privacy").await;
    assert!(html.contains("<h1>Privacy</h1>"));
    for form in [
        "/privacy/consents",
        "/privacy/objection",
        "/privacy/restriction",
        "/privacy/export",
        "/privacy/requests",
    ] {
        assert!(html.contains(&format!("action=\"{form}\"")), "{form}");
    }
    assert!(html.contains(&format!("name=\"csrf\" value=\"{}\"", s.csrf)));
    assert!(
        html.contains("id=\"subprocessor-list\""),
        "sub-processors listed"
    );
    assert!(html.contains("Stripe"), "the registry names Stripe");
    assert!(html.contains("id=\"no-requests\""));

    // Refused: no token, a wrong token, a malformed box value. Nothing changes.
    for fields in [
        vec![("marketing_email", "on")],
        vec![("marketing_email", "on"), ("csrf", "wrong")],
        vec![("marketing_email", "yes"), ("csrf", s.csrf.as_str())],
    ] {
        let r = post_form(&h, &s.client, "/privacy/consents", &fields).await;
        assert!(r.status() == 403 || r.status() == 400, "{fields:?}");
        assert_page(r.headers());
        assert!(r.text().await.unwrap().contains("href=\"/privacy\""));
    }
    let c = consents(&s).await;
    assert_eq!(c["marketing_email"], false);
    assert_eq!(c["history"].as_array().unwrap().len(), 0);

    // Saved: marketing ticked, analytics not.
    let r = post_form(
        &h,
        &s.client,
        "/privacy/consents",
        &[("marketing_email", "on"), ("csrf", s.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/privacy?saved=consents#consents");
    let c = consents(&s).await;
    assert_eq!(c["marketing_email"], true);
    assert_eq!(c["analytics_cookies"], false);
    let html = page(&h, &s, "/privacy?saved=consents").await;
    assert!(html.contains("id=\"consents-saved\""));
    assert!(html.contains("name=\"marketing_email\" checked"));
    assert!(html.contains("Consent to marketing email given"));

    // Objection and restriction, each once the token matches.
    let r = post_form(&h, &s.client, "/privacy/objection", &[]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(consents(&s).await["marketing_objection"], false);
    let r = post_form(
        &h,
        &s.client,
        "/privacy/objection",
        &[("csrf", s.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 303);
    let c = consents(&s).await;
    assert_eq!(c["marketing_objection"], true);
    assert_eq!(c["marketing_email"], false, "objection withdraws consent");
    let r = post_form(&h, &s.client, "/privacy/restriction", &[("csrf", "x")]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(consents(&s).await["restricted"], false);
    let r = post_form(
        &h,
        &s.client,
        "/privacy/restriction",
        &[("csrf", s.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(consents(&s).await["restricted"], true);
    let html = page(&h, &s, "/privacy").await;
    assert!(html.contains("id=\"restriction-state\"") && html.contains("id=\"objection-state\""));

    // Another account's centre shows its own state only.
    let other = h.sign_in("neighbour@example.com").await;
    let html = page(&h, &other, "/privacy").await;
    assert!(!html.contains("id=\"restriction-state\"") && !html.contains("Consent to marketing"));
    assert_eq!(consents(&other).await["restricted"], false);

    // A method the page does not answer: an HTML 405.
    let r = s.client.delete(h.url("/privacy")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_page(r.headers());
}

async fn export_jobs(h: &Harness) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) FROM export_jobs")
        .fetch_one(&h.app.db.any)
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_progress_page_and_download_for_the_owner_only() {
    let h = Harness::start().await;
    let s = h.sign_in("exporter@example.com").await;

    for fields in [
        vec![("format", "html")],
        vec![("format", "xml"), ("csrf", s.csrf.as_str())],
    ] {
        let r = post_form(&h, &s.client, "/privacy/export", &fields).await;
        assert!(r.status() == 403 || r.status() == 400, "{fields:?}");
        assert_page(r.headers());
    }
    assert_eq!(export_jobs(&h).await, 0, "no job started");

    let r = post_form(
        &h,
        &s.client,
        "/privacy/export",
        &[("format", "html"), ("csrf", s.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 303);
    let job_page = location(&r);
    assert!(job_page.starts_with("/privacy/exports/"), "{job_page}");
    // Pending: the page reloads itself (the Refresh header, no script); then the link.
    let mut href = None;
    for _ in 0..100 {
        let r = s.get(&h, &job_page).await;
        assert_eq!(r.status(), 200);
        assert_page(r.headers());
        let refresh = r.headers().get("refresh").is_some();
        let html = r.text().await.unwrap();
        if html.contains("id=\"download\"") {
            assert!(!refresh, "a ready page stays put");
            assert!(html.contains("<h1>Your data is ready</h1>"));
            let marker = "id=\"download\" href=\"";
            let at = html.find(marker).unwrap() + marker.len();
            href = Some(
                html[at..]
                    .split('"')
                    .next()
                    .unwrap()
                    .replace("&amp;", "&")
                    .replace("&#38;", "&"),
            );
            break;
        }
        assert!(refresh && html.contains("<h1>Preparing your data</h1>"));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let href = href.expect("the export became ready");
    assert!(href.starts_with(&format!("{job_page}/download?")), "{href}");

    let r = s.get(&h, &href).await;
    assert_eq!(r.status(), 200, "{href}");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let doc = r.text().await.unwrap();
    assert!(doc.contains("exporter@example.com"), "the holder's data");

    // A tampered link, or one without its signature: an HTML refusal.
    let r = s.get(&h, &href.replace("sig=", "sig=0")).await;
    assert_eq!(r.status(), 403);
    assert_page(r.headers());
    let r = s.get(&h, &format!("{job_page}/download")).await;
    assert_eq!(r.status(), 400);
    assert_page(r.headers());

    // Another account: neither the job page nor the download.
    let other = h.sign_in("snoop@example.com").await;
    let r = other.get(&h, &job_page).await;
    assert_eq!(r.status(), 404);
    assert_page(r.headers());
    let r = other.get(&h, &href).await;
    assert_eq!(r.status(), 403);
    assert_page(r.headers());
    assert!(!r.text().await.unwrap().contains("exporter@example.com"));
    let r = other.get(&h, "/privacy/exports/not-a-uuid").await;
    assert_eq!(r.status(), 404);
    // Signed out: a page asking to sign in.
    let r = h.browser().get(h.url(&href)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_page(r.headers());
}

/// The six-digit code in the newest of `count` mails.
async fn code_from_mail(h: &Harness, count: usize) -> String {
    let mail = h.smtp.wait_for(count).await;
    let at = mail.find("Verification code: ").expect("code in mail") + "Verification code: ".len();
    mail[at..at + 6].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_submitted_and_verified_by_code_on_pages() {
    let h = Harness::start().await;
    let s = h.sign_in("asker@example.com").await;
    let mine = |s: &Session| {
        let client = s.client.clone();
        let url = h.url("/v1/me/requests");
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["requests"]
                .as_array()
                .unwrap()
                .clone()
        }
    };

    for fields in [
        vec![("type", "access")],
        vec![("type", "everything"), ("csrf", s.csrf.as_str())],
        vec![("csrf", s.csrf.as_str())],
    ] {
        let r = post_form(&h, &s.client, "/privacy/requests", &fields).await;
        assert!(r.status() == 403 || r.status() == 400, "{fields:?}");
        assert_page(r.headers());
    }
    assert!(mine(&s).await.is_empty(), "nothing recorded");

    let mails = h.smtp.count();
    let r = post_form(
        &h,
        &s.client,
        "/privacy/requests",
        &[("type", "access"), ("csrf", s.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 303);
    let req_page = location(&r);
    let code = code_from_mail(&h, mails + 1).await;
    let html = page(&h, &s, &req_page).await;
    assert!(html.contains("<h1>Confirm your request</h1>") && html.contains("id=\"code\""));
    assert_eq!(by_id(&html, "request-status"), "received");

    // A wrong code: the same page again, 400, with what went wrong; still unverified.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = post_form(
        &h,
        &s.client,
        &format!("{req_page}/verify"),
        &[("code", wrong), ("csrf", s.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_page(r.headers());
    assert!(r.text().await.unwrap().contains("id=\"code-error\""));
    assert_eq!(mine(&s).await[0]["status"], "received");
    // Without the token, even the right code is refused.
    let r = post_form(
        &h,
        &s.client,
        &format!("{req_page}/verify"),
        &[("code", code.as_str())],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(mine(&s).await[0]["status"], "received");

    // Another account cannot see or verify it.
    let other = h.sign_in("nosy@example.com").await;
    assert_eq!(other.get(&h, &req_page).await.status(), 404);
    let r = post_form(
        &h,
        &other.client,
        &format!("{req_page}/verify"),
        &[("code", code.as_str()), ("csrf", other.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_page(r.headers());
    assert!(page(&h, &other, "/privacy")
        .await
        .contains("id=\"no-requests\""));

    // The right code.
    let r = post_form(
        &h,
        &s.client,
        &format!("{req_page}/verify"),
        &[("code", code.as_str()), ("csrf", s.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 303);
    let html = page(&h, &s, &req_page).await;
    assert_eq!(by_id(&html, "request-status"), "verified");
    assert!(!html.contains("id=\"code\""));
    let listed = mine(&s).await;
    assert_eq!(listed[0]["status"], "verified");
    let html = page(&h, &s, "/privacy").await;
    assert!(html.contains("id=\"request-list\"") && html.contains(&format!("href=\"{req_page}\"")));
    let due = chrono::DateTime::parse_from_rfc3339(listed[0]["due_at"].as_str().unwrap())
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    assert!(html.contains(&due), "due date {due} shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_account_needs_the_typed_confirmation() {
    let h = Harness::start().await;
    let s = h.sign_in("leaver@example.com").await;
    let key = s.create_key(&h, "k").await;
    let html = page(&h, &s, "/privacy/delete").await;
    assert!(html.contains("<h1>Delete your account</h1>"));
    assert!(html.contains("<strong>delete my account</strong>") && html.contains("30 days"));

    for (fields, status) in [
        (vec![("confirm", "delete my account")], 403),
        (vec![("confirm", "delete my account"), ("csrf", "x")], 403),
        (vec![("confirm", "DELETE"), ("csrf", s.csrf.as_str())], 400),
        (vec![("csrf", s.csrf.as_str())], 400),
    ] {
        let r = post_form(&h, &s.client, "/privacy/delete", &fields).await;
        assert_eq!(r.status(), status, "{fields:?}");
        assert_page(r.headers());
        let html = r.text().await.unwrap();
        if status == 400 {
            assert!(
                html.contains("Nothing was deleted") && html.contains("href=\"/privacy/delete\"")
            );
        }
    }
    assert_eq!(s.get(&h, "/v1/me").await.status(), 200, "still there");

    let r = post_form(
        &h,
        &s.client,
        "/privacy/delete",
        &[("confirm", "delete my account"), ("csrf", s.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_page(r.headers());
    assert!(support::set_cookie_header(r.headers(), "journey_session").is_some());
    let html = r.text().await.unwrap();
    assert!(html.contains("<h1>Your account is scheduled for deletion</h1>"));
    assert!(html.contains("id=\"purge-after\""));
    // Signed out, key revoked, as `DELETE /v1/me` does.
    assert_eq!(s.get(&h, "/v1/me").await.status(), 401);
    let r = reqwest::Client::new()
        .get(h.url("/api/v1/account"))
        .bearer_auth(key["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = s.get(&h, "/privacy").await;
    assert_eq!(r.status(), 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_stay_out_of_the_openapi_document() {
    let h = Harness::start().await;
    let doc: Value = reqwest::get(h.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths
            .keys()
            .all(|p| !p.starts_with("/billing") && !p.starts_with("/privacy")),
        "pages are not API operations"
    );
    // The JSON API's Checkout still returns to the JSON API.
    let s = h.sign_in("json@example.com").await;
    let r = s
        .write(&h, reqwest::Method::POST, "/v1/billing/checkout")
        .json(&serde_json::json!({ "pack": "small" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (req, _) = last_checkout(&h.stripe);
    assert!(FakeStripe::form_value(&req, "success_url")
        .unwrap()
        .ends_with("/v1/billing?checkout=success"));
}
