//! Driving headless Chromium from the tests: chromedriver on a free port, a browser
//! session, and the small steps every browser test repeats (wait for a page, fill, click,
//! screenshot, sign up). Screenshots go to docs/screenshots/ (the README shows them) when
//! `JOURNEY_SCREENSHOTS=1`, otherwise to a temporary folder, so that an ordinary test run
//! leaves the tree clean.
//!
//! Needs `chromium` and `chromedriver` on the PATH (`.ci/run` installs Debian's
//! `chromium` and `chromium-driver` when missing); `JOURNEY_CHROMEDRIVER` and
//! `JOURNEY_CHROMIUM` name other binaries.

use super::Harness;
use fantoccini::{Client, ClientBuilder, Locator};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// chromedriver, on a free loopback port, killed when dropped.
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub async fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bin = std::env::var("JOURNEY_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {bin} (install Debian's chromium and chromium-driver): {e}")
            });
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Ready once its status endpoint answers (it starts in well under a second).
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await {
                if r.status().is_success() {
                    return driver;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver did not start on port {port}");
    }

    pub async fn browser(&self) -> Client {
        let chromium = std::env::var("JOURNEY_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let chromium = which(&chromium).unwrap_or(PathBuf::from(chromium));
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1024,768"]
            }
        });
        let caps = caps.as_object().unwrap().clone();
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("chromedriver opens a Chromium session")
    }
}

/// A program on the PATH, as chromedriver wants an absolute binary path.
fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Waits for the page whose `<h1>` reads `heading` (a form post or link has been
/// followed), and returns its source.
pub async fn page(c: &Client, heading: &str) -> String {
    let mut seen = String::new();
    for _ in 0..200 {
        if let Ok(h1) = c.find(Locator::Css("h1")).await {
            seen = h1.text().await.unwrap_or_default();
            if seen == heading {
                return c.source().await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "expected the page {heading:?}, still on {seen:?} at {}",
        c.current_url().await.unwrap()
    );
}

/// Saves the current page as `<name>.png` (see the module comment for where).
pub async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let dir = if std::env::var("JOURNEY_SCREENSHOTS").as_deref() == Ok("1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
    } else {
        std::env::temp_dir().join("journey-screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Types `keys` into the element `css` finds.
pub async fn fill(c: &Client, css: &str, keys: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(keys)
        .await
        .unwrap();
}

/// Clicks the element `css` finds.
pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

pub async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Signs `email` up in the browser by the emailed link (the sign-up step: country FR,
/// age confirmed) and opens the dashboard's overview. The harness's mailbox must hold
/// `mails_before` messages before the link is sent.
pub async fn sign_up(c: &Client, h: &Harness, email: &str, mails_before: usize) {
    c.goto(&h.url("/")).await.unwrap();
    page(c, "Sign in to JourneyAPI").await;
    fill(c, "#email", email).await;
    click(c, "form button[type=submit]").await;
    page(c, "Check your email").await;
    let token = super::token_from_mail(&h.smtp.wait_for(mails_before + 1).await);
    c.goto(&h.url(&format!("/v1/auth/magic-link/confirm?token={token}")))
        .await
        .unwrap();
    page(c, "Create your JourneyAPI account").await;
    fill(c, "input[name=country]", "FR").await;
    click(c, "input[name=age_confirmed]").await;
    click(c, "form button[type=submit]").await;
    page(c, "You are signed in").await;
    c.goto(&h.url("/")).await.unwrap();
    page(c, "Overview").await;
}
