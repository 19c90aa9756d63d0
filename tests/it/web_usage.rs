//! The holder's activity pages over plain HTTP: `/usage` (chart and paged log), `/tasks`
//! (paged, with thumbnails) and `/support` (tickets). Each needs a session, shows only the
//! holder's own records, and answers every bad input with an HTML page that changed
//! nothing; every form needs the CSRF token. Also the sign-up step's page (the
//! dashboard's frame, refusals as pages) and `/assets/app.js`. The browser flow is in
//! `browser_usage.rs`.

use crate::support::{self, Harness, Session};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use support::api::last_upstream;

fn assert_page(headers: &HeaderMap) {
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert!(h("content-type").unwrap().starts_with("text/html"));
    assert_eq!(h("cache-control").as_deref(), Some("no-store"));
    assert_eq!(h("x-frame-options").as_deref(), Some("DENY"));
    let csp = h("content-security-policy").expect("CSP");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(
        !csp.contains("script-src"),
        "no script on these pages: {csp}"
    );
}

/// The hidden CSRF field of a page's form.
fn csrf_field(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    html[start..].split('"').next().unwrap().to_string()
}

async fn post_form(h: &Harness, s: &Session, path: &str, body: &str) -> reqwest::Response {
    s.client
        .post(h.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn html(s: &Session, h: &Harness, path: &str, status: u16) -> String {
    let r = s.get(h, path).await;
    assert_eq!(r.status(), status, "{path}");
    assert_page(r.headers());
    r.text().await.unwrap()
}

/// Waits until the page at `path` shows every one of `needles`: lists are read models,
/// caught up after a write (on Postgres, behind any older transaction still in flight).
async fn wait_shown(h: &Harness, s: &Session, path: &str, needles: &[&str]) {
    let mut page = String::new();
    for _ in 0..200 {
        page = s.get(h, path).await.text().await.unwrap();
        if needles.iter().all(|n| page.contains(n)) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{path} never showed {needles:?}: {page}");
}

/// `href="…"` values of links whose id is `id`.
fn link(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\" href=\""))? + id.len() + 12;
    Some(html[at..].split('"').next().unwrap().replace("&amp;", "&"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_tasks_pages_show_the_holders_own_activity_a_page_at_a_time() {
    let h = Harness::start().await;

    // Signed out: every page sends to the sign-in page, the chart too.
    let visitor = h.browser();
    for path in [
        "/usage",
        "/usage/chart.svg",
        "/tasks",
        "/tasks/00000000-0000-0000-0000-000000000000",
        "/support",
        "/support/00000000-0000-0000-0000-000000000000",
    ] {
        let r = visitor.get(h.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/", "{path}");
    }

    let ann = h.api_client("ann@example.com", 20).await;
    let bob = h.api_client("bob@example.com", 8).await;

    // Empty states first.
    let page = html(&ann.session, &h, "/usage", 200).await;
    assert!(page.contains("<h1>Usage</h1>") && page.contains("id=\"no-usage\""));
    let page = html(&ann.session, &h, "/tasks", 200).await;
    assert!(page.contains("id=\"no-tasks\""));

    let t1 = ann
        .create(&h, "imagine", json!({ "prompt": "a lighthouse at dusk" }))
        .await;
    h.mj.finish(&last_upstream(&h)).await;
    let done = ann.wait_for(&h, t1, "finished").await;
    let thumb = done["image_urls"][0].as_str().unwrap().to_string();
    let t2 = ann
        .create(&h, "imagine", json!({ "prompt": "a harbour at dawn" }))
        .await;
    let secret = bob
        .create(&h, "imagine", json!({ "prompt": "bob's secret garden" }))
        .await;
    // Enough requests for a second page of the usage log (50 a page).
    for _ in 0..55 {
        ann.account(&h).await;
    }

    wait_shown(
        &h,
        &ann.session,
        "/tasks?status=finished",
        &["a lighthouse at dusk"],
    )
    .await;
    wait_shown(&h, &ann.session, "/tasks", &["a harbour at dawn"]).await;
    wait_shown(&h, &bob.session, "/tasks", &["secret garden"]).await;

    // /tasks: newest first, prompt, status, thumbnails loaded lazily; nothing of Bob's.
    let page = html(&ann.session, &h, "/tasks", 200).await;
    assert!(page.contains("<h1>Tasks</h1>"));
    let (p1, p2) = (
        page.find("a lighthouse at dusk").expect("prompt shown"),
        page.find("a harbour at dawn").expect("prompt shown"),
    );
    assert!(p2 < p1, "newest first");
    assert!(page.contains(&format!("<img src=\"{thumb}\" loading=\"lazy\"")));
    assert!(page.contains(&t1.to_string()) && page.contains("finished"));
    assert!(!page.contains(&secret.to_string()) && !page.contains("secret garden"));
    assert!(!page.contains("<script") && !page.contains("style="));

    // Paging: a page after the newest task holds only the older one.
    let tasks: Value = ann
        .session
        .get(&h, "/v1/tasks?limit=1")
        .await
        .json()
        .await
        .unwrap();
    let cursor = tasks["next_before"].as_str().unwrap();
    assert_eq!(tasks["tasks"][0]["task_id"], t2.to_string());
    let page = html(&ann.session, &h, &format!("/tasks?before={cursor}"), 200).await;
    assert!(page.contains("a lighthouse at dusk") && !page.contains("a harbour at dawn"));
    assert!(page.contains("Newest tasks"));
    // The status filter is GET /v1/tasks's.
    let page = html(&ann.session, &h, "/tasks?status=finished", 200).await;
    assert!(page.contains("a lighthouse at dusk") && !page.contains("a harbour at dawn"));
    // Bad input: an HTML 400 page.
    for q in ["status=bogus", "before=not-a-cursor"] {
        let page = html(&ann.session, &h, &format!("/tasks?{q}"), 400).await;
        assert!(page.contains("Back to tasks"), "{q}");
    }

    // One task's page; Bob's, or none, is a 404 page.
    let page = html(&ann.session, &h, &format!("/tasks/{t1}"), 200).await;
    assert!(page.contains("a lighthouse at dusk") && page.contains(&thumb));
    for path in [format!("/tasks/{secret}"), "/tasks/nope".to_string()] {
        let page = html(&ann.session, &h, &path, 404).await;
        assert!(!page.contains("secret garden"));
    }
    let page = html(&bob.session, &h, &format!("/tasks/{t1}"), 404).await;
    assert!(!page.contains("lighthouse"));

    // /usage: the totals, the chart, the log 50 at a time.
    let page = html(&ann.session, &h, "/usage", 200).await;
    assert!(page.contains("<img id=\"usage-chart\" src=\"/usage/chart.svg\""));
    assert!(page.contains("alt=\"Two bar charts"));
    assert!(page.contains("id=\"usage-days\""), "the table fallback");
    assert!(page.contains("/api/v1/account"), "the newest requests");
    assert!(!page.contains(&secret.to_string()));
    assert_eq!(
        page.matches("<td><code>/api/v1/").count(),
        50,
        "a page of the log"
    );
    let older = link(&page, "older").expect("a link to older requests");
    let page = html(&ann.session, &h, &older, 200).await;
    assert!(page.contains("(older page)") && page.contains("Newest requests"));
    assert!(
        page.contains("/api/v1/imagine"),
        "the oldest entries are here"
    );
    assert!(
        page.contains(&format!("href=\"/tasks/{t1}\"")),
        "linked to its task"
    );
    assert!(!page.contains(&secret.to_string()));
    let page = html(&ann.session, &h, "/usage?before=yesterday", 400).await;
    assert!(page.contains("Back to usage"));

    // The chart: SVG, personal so not cached, no script.
    let r = ann.session.get(&h, "/usage/chart.svg").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let svg = r.text().await.unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<rect"), "{svg}");
    assert!(svg.contains("Requests per day") && svg.contains("Credits per day"));
    assert!(!svg.to_lowercase().contains("script"));

    // Bob sees none of Ann's.
    let page = html(&bob.session, &h, "/usage", 200).await;
    assert!(!page.contains(&t1.to_string()) && !page.contains(&t2.to_string()));
    let page = html(&bob.session, &h, "/tasks", 200).await;
    assert!(page.contains("secret garden") && !page.contains("lighthouse"));

    // Pages answer only their methods.
    let r = ann
        .session
        .write(&h, Method::POST, "/usage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_page(r.headers());
}

async fn tickets(h: &Harness, s: &Session) -> Vec<Value> {
    let v: Value = s.get(h, "/v1/support/tickets").await.json().await.unwrap();
    v["tickets"].as_array().unwrap().clone()
}

async fn ticket(h: &Harness, s: &Session, id: &str) -> Value {
    s.get(h, &format!("/v1/support/tickets/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_tickets_open_reply_close_and_delete_with_the_csrf_token() {
    let h = Harness::start().await;
    let ann = h.sign_in("ann@example.com").await;
    let bob = h.sign_in("bob@example.com").await;

    let page = html(&ann, &h, "/support", 200).await;
    assert!(page.contains("<h1>Support</h1>") && page.contains("id=\"no-tickets\""));
    assert!(page.contains("<label for=\"subject\">") && page.contains("<label for=\"message\">"));
    assert_eq!(csrf_field(&page), ann.csrf);
    assert_eq!(
        page.matches("name=\"csrf\"").count(),
        2,
        "sign-out and open"
    );

    // Without the token, or with bad input: a page, and no ticket.
    for body in [
        "subject=Invoice&message=Where%3F".to_string(),
        "subject=Invoice&message=Where%3F&csrf=0000".to_string(),
    ] {
        let r = post_form(&h, &ann, "/support", &body).await;
        assert_eq!(r.status(), 403, "{body}");
        assert_page(r.headers());
    }
    for body in [
        format!("subject=&message=Where%3F&csrf={}", ann.csrf),
        format!("subject=Invoice&message=++&csrf={}", ann.csrf),
        format!("subject=Two%0Alines&message=x&csrf={}", ann.csrf),
    ] {
        let r = post_form(&h, &ann, "/support", &body).await;
        assert_eq!(r.status(), 400, "{body}");
        assert_page(r.headers());
        assert!(r.text().await.unwrap().contains("Back to support"));
    }
    assert!(tickets(&h, &ann).await.is_empty());

    // Opened: to the ticket's page.
    let r = post_form(
        &h,
        &ann,
        "/support",
        &format!(
            "subject=Invoice+question&message=Where+is+my+invoice%3F&csrf={}",
            ann.csrf
        ),
    )
    .await;
    assert_eq!(r.status(), 303);
    let at = r.headers()["location"].to_str().unwrap().to_string();
    let id = at.strip_prefix("/support/").unwrap().to_string();
    let page = html(&ann, &h, &at, 200).await;
    assert!(page.contains("<h1>Invoice question</h1>") && page.contains("Where is my invoice?"));
    assert_eq!(
        page.matches("name=\"csrf\"").count(),
        3,
        "sign-out, reply, close"
    );
    wait_shown(&h, &ann, "/support", &[&format!("href=\"/support/{id}\"")]).await;

    // Bob can neither see nor touch it.
    let page = html(&bob, &h, "/support", 200).await;
    assert!(!page.contains("Invoice question"));
    html(&bob, &h, &at, 404).await;
    html(&bob, &h, &format!("{at}/delete"), 404).await;
    for action in ["reply", "close", "delete"] {
        let r = post_form(
            &h,
            &bob,
            &format!("{at}/{action}"),
            &format!("message=mine&csrf={}", bob.csrf),
        )
        .await;
        assert_eq!(r.status(), 404, "{action}");
        assert_page(r.headers());
    }
    html(&ann, &h, "/support/not-a-ticket", 404).await;

    // Replies need the token and some text.
    let r = post_form(&h, &ann, &format!("{at}/reply"), "message=Also+VAT").await;
    assert_eq!(r.status(), 403);
    let r = post_form(
        &h,
        &ann,
        &format!("{at}/reply"),
        &format!("message=&csrf={}", ann.csrf),
    )
    .await;
    assert_eq!(r.status(), 400);
    let t = ticket(&h, &ann, &id).await;
    assert_eq!(t["messages"].as_array().unwrap().len(), 1, "{t}");
    let r = post_form(
        &h,
        &ann,
        &format!("{at}/reply"),
        &format!("message=Also+the+VAT+number.&csrf={}", ann.csrf),
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"].to_str().unwrap(), at);
    let page = html(&ann, &h, &at, 200).await;
    assert!(page.contains("Where is my invoice?") && page.contains("Also the VAT number."));

    // Closing needs the token; a closed ticket takes no reply (a 409 page).
    let r = post_form(&h, &ann, &format!("{at}/close"), "csrf=bad").await;
    assert_eq!(r.status(), 403);
    assert_eq!(ticket(&h, &ann, &id).await["status"], "open");
    let r = post_form(
        &h,
        &ann,
        &format!("{at}/close"),
        &format!("csrf={}", ann.csrf),
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(ticket(&h, &ann, &id).await["status"], "closed");
    let page = html(&ann, &h, &at, 200).await;
    assert!(page.contains("id=\"ticket-status\">closed") && !page.contains("id=\"reply\""));
    let r = post_form(
        &h,
        &ann,
        &format!("{at}/reply"),
        &format!("message=one+more&csrf={}", ann.csrf),
    )
    .await;
    assert_eq!(r.status(), 409);
    assert_page(r.headers());

    // Deleting: a confirmation page that changes nothing, then the token.
    let page = html(&ann, &h, &format!("{at}/delete"), 200).await;
    assert!(page.contains("<h1>Delete this ticket?</h1>") && page.contains("Invoice question"));
    assert_eq!(ticket(&h, &ann, &id).await["status"], "closed");
    let r = post_form(&h, &ann, &format!("{at}/delete"), "csrf=").await;
    assert_eq!(r.status(), 403);
    assert_eq!(ticket(&h, &ann, &id).await["status"], "closed");
    let r = post_form(
        &h,
        &ann,
        &format!("{at}/delete"),
        &format!("csrf={}", ann.csrf),
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/support");
    let t = ticket(&h, &ann, &id).await;
    assert_eq!(t["status"], "deleted", "{t}");
    let page = html(&ann, &h, &at, 200).await;
    assert!(page.contains("<h1>Deleted ticket</h1>"));
    assert!(!page.contains("Where is my invoice?") && !page.contains("delete-link"));

    let r = ann
        .write(&h, Method::DELETE, "/support")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_page(r.headers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_up_step_is_a_dashboard_page_and_refusals_change_nothing() {
    let h = Harness::start().await;
    let token = h.magic_link_token("newbie@example.com").await;
    let browser = h.browser();
    let r = browser
        .get(h.url(&format!("/v1/auth/magic-link/confirm?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_page(r.headers());
    let page = r.text().await.unwrap();
    // The dashboard's frame: brand, skip link, one heading, the style sheet.
    assert!(page.contains("class=\"brand\"") && page.contains("href=\"#main\""));
    assert_eq!(page.matches("<h1>").count(), 1);
    assert!(page.contains("<h1>Create your JourneyAPI account</h1>"));
    assert!(page.contains("href=\"/assets/app.css\""));
    // Every control labelled.
    assert!(page.contains("<label>Country (two-letter code) <input name=\"country\""));
    assert!(page.contains("<label><input type=\"checkbox\" name=\"age_confirmed\""));

    // No age confirmation, or a country that is not a two-letter code: an HTML 400 page
    // with the form again; no account is created and the link still works.
    for body in [
        format!("token={token}&country=FR"),
        format!("token={token}&country=France&age_confirmed=on"),
        format!("token={token}&age_confirmed=on"),
    ] {
        let r = browser
            .post(h.url("/v1/auth/magic-link/consume"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_page(r.headers());
        assert!(support::cookie_value(r.headers(), "journey_session").is_none());
        let page = r.text().await.unwrap();
        assert!(page.contains("No account was created"), "{body}");
        assert!(page.contains("class=\"brand\"") && page.contains("name=\"country\""));
    }
    let r = h.consume_form(&browser, &token).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>You are signed in</h1>") && page.contains("class=\"brand\""));
    let me: Value = browser
        .get(h.url("/v1/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["email"], "newbie@example.com",
        "created by the good post only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_script_is_ours_and_only_the_new_key_page_may_run_it() {
    let h = Harness::start().await;
    let r = reqwest::get(h.url("/assets/app.js")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let js = r.text().await.unwrap();
    assert!(js.contains("navigator.clipboard") && !js.contains("http"));

    let s = h.sign_in("keys@example.com").await;
    let r = post_form(&h, &s, "/keys", &format!("name=laptop&csrf={}", s.csrf)).await;
    assert_eq!(r.status(), 201);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"));
    assert!(!csp.contains("unsafe"), "{csp}");
    let page = r.text().await.unwrap();
    assert!(page.contains("<script src=\"/assets/app.js\" defer></script>"));
    assert_eq!(page.matches("<script").count(), 1, "no inline script");
    // Without JavaScript the button stays hidden and the key is a read-only field.
    assert!(page.contains("id=\"copy-key\"") && page.contains(" hidden>Copy key"));
    assert!(page.contains("id=\"new-key\" class=\"key\" type=\"text\" readonly"));
    // Other pages still run no script.
    let r = s.get(&h, "/keys").await;
    assert_page(r.headers());

    // These pages are not API operations.
    let doc: Value = reqwest::get(h.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        !paths
            .keys()
            .any(|p| ["/usage", "/tasks", "/support", "/assets"]
                .iter()
                .any(|page| p.starts_with(page))),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
}
