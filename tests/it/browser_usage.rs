//! The holder's activity pages in headless Chromium: a new holder creates a key (and
//! copies it with the copy button), runs an imagine with it over the client API, then
//! finds the task with its thumbnails on /tasks and the request with the chart on /usage;
//! opens a support ticket, replies and closes it. Screenshots: usage, tasks, support
//! (see `support::browser` for where they go).

use crate::support::browser::{click, fill, page, screenshot, sign_up, text, Driver};
use crate::support::Harness;
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use std::time::Duration;

use crate::support::api::last_upstream;

async fn nav(c: &Client, label: &str) {
    c.find(Locator::LinkText(label))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn client_api(h: &Harness, key: &str, endpoint: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(h.url(&format!("/api/v1/{endpoint}")))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{endpoint}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_sees_tasks_usage_and_support_in_chromium() {
    let h = Harness::start().await;
    let driver = Driver::start().await;
    let c = driver.browser().await;
    sign_up(&c, &h, "ivy@example.com", 0).await;
    let account = h
        .app
        .identity()
        .account_by_email("ivy@example.com")
        .await
        .unwrap();
    h.grant_credits(account, 10).await;

    // A key, copied with the copy button (our script, the only one).
    nav(&c, "API keys").await;
    page(&c, "API keys").await;
    fill(&c, "#key-name", "studio").await;
    click(&c, "main form button[type=submit]").await;
    page(&c, "Your new API key").await;
    let key = c
        .find(Locator::Css("#new-key"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .expect("the raw key");
    let button = c.find(Locator::Css("#copy-key")).await.unwrap();
    assert!(
        button.is_displayed().await.unwrap(),
        "shown when the script runs"
    );
    button.click().await.unwrap();
    let mut said = String::new();
    for _ in 0..100 {
        said = text(&c, "#copy-status").await;
        if !said.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        said.starts_with("Copied") || said.starts_with("Could not copy"),
        "{said:?}"
    );

    // An imagine with that key over the client API, finished by the provider.
    let created = client_api(
        &h,
        &key,
        "imagine",
        json!({ "prompt": "a paper boat on a pond" }),
    )
    .await;
    let task = created["task_id"].as_str().unwrap().to_string();
    h.mj.finish(&last_upstream(&h)).await;
    let mut done = Value::Null;
    for _ in 0..200 {
        done = client_api(&h, &key, "fetch", json!({ "task_id": task })).await;
        if done["status"] == "finished" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(done["status"], "finished", "{done}");
    let thumb = done["image_urls"][0].as_str().unwrap().to_string();

    // The task list is a read model: wait until it has caught up with the finished task.
    for _ in 0..200 {
        let listed = h
            .app
            .tasks()
            .task_page(account, Some("finished"), None, 5)
            .await;
        if listed.unwrap().tasks.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // /tasks: the task, its prompt and its thumbnails (the upstream URLs).
    nav(&c, "Tasks").await;
    let html = page(&c, "Tasks").await;
    assert!(html.contains("a paper boat on a pond") && html.contains(&task));
    let img = c.find(Locator::Css("#tasks .thumbs img")).await.unwrap();
    assert_eq!(
        img.attr("src").await.unwrap().as_deref(),
        Some(thumb.as_str())
    );
    assert_eq!(img.attr("loading").await.unwrap().as_deref(), Some("lazy"));
    screenshot(&c, "tasks").await;
    click(&c, "#tasks .task-title a").await;
    let html = page(&c, "Task").await;
    assert!(html.contains("a paper boat on a pond"));
    assert_eq!(text(&c, "#task-status").await, "finished (100%)");

    // /usage: the request in the log and the chart drawn (an image the browser loaded).
    nav(&c, "Usage").await;
    let html = page(&c, "Usage").await;
    assert!(html.contains("/api/v1/imagine"));
    assert_eq!(text(&c, "#total-credits").await, "4");
    let mut width = Value::Null;
    for _ in 0..100 {
        width = c
            .execute(
                "return document.getElementById('usage-chart').naturalWidth;",
                vec![],
            )
            .await
            .unwrap();
        if width.as_u64().unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        width,
        json!(720),
        "the SVG chart loads under the page's CSP"
    );
    screenshot(&c, "usage").await;

    // Support: open a ticket, reply, close it.
    nav(&c, "Support").await;
    let html = page(&c, "Support").await;
    assert!(html.contains("You have no support tickets"));
    fill(&c, "#subject", "Invoice for November").await;
    fill(&c, "#message", "Could you send the invoice for November?").await;
    click(&c, "#open-ticket button[type=submit]").await;
    page(&c, "Invoice for November").await;
    fill(&c, "#reply-message", "It should name my company, Ivy Ltd.").await;
    click(&c, "#reply button[type=submit]").await;
    let mut messages = 0;
    for _ in 0..100 {
        messages = c
            .find_all(Locator::Css("#messages li"))
            .await
            .map_or(0, |m| m.len());
        if messages == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(messages, 2);
    screenshot(&c, "support").await;
    click(&c, "#close button[type=submit]").await;
    let mut status = String::new();
    for _ in 0..100 {
        // The page is replaced under us: a read may meet the old one's element.
        if let Ok(e) = c.find(Locator::Css("#ticket-status")).await {
            status = e.text().await.unwrap_or_default();
            if status == "closed" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "closed");
    for _ in 0..200 {
        if h.app.legal().tickets(account, None).await.unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    nav(&c, "Support").await;
    page(&c, "Support").await;
    let row = text(&c, "#tickets tbody tr").await;
    assert!(
        row.contains("Invoice for November") && row.contains("closed"),
        "{row}"
    );

    c.close().await.unwrap();
}
