//! Shared test harness: a real server on loopback, fakes of the outside services that
//! speak their real protocols (SMTP, OpenID Connect), the plaintext scanner, and helpers
//! to drive the HTTP API and the `journey` binary.
#![allow(dead_code)]

pub mod api;
pub mod browser;
pub mod hooksink;
pub mod images;
pub mod mjproxy;
pub mod oidc;
pub mod process;
pub mod scan;
pub mod smtp;
pub mod stripe;

use journey_commands::clock::OffsetClock;
use journey_contexts::app::{App, Core};
use journey_contexts::config::Config;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use uuid::Uuid;

pub const MASTER_KEY: &str = "00112233445566778899aabbccddeeff0f1e2d3c4b5a69788796a5b4c3d2e1f0";
pub const PEPPER: &str = "test-pepper-0123456789abcdef0123456789abcdef";
pub const MJ_KEY: &str = "mj-test-key-7f3a";
pub const IMAGES_KEY: &str = "sk-images-test-key-91c2";
/// The admin the harness signs up (on first use) to run staff CLI commands as `--by`.
pub const OPERATOR_EMAIL: &str = "operator@example.com";

/// Which backend this run uses: Postgres when `JOURNEY_TEST_DATABASE_URL` is set.
pub fn postgres_url() -> Option<String> {
    std::env::var("JOURNEY_TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
}

pub fn is_postgres() -> bool {
    postgres_url().is_some()
}

/// A fresh, empty database for one test: a new SQLite file, or a new Postgres database.
pub async fn fresh_database(dir: &std::path::Path) -> String {
    match postgres_url() {
        Some(base) => {
            let name = format!("journey_t_{}", Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&base)
                .await
                .expect("Postgres reachable");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .expect("create test database");
            admin.close().await;
            let mut u = url::Url::parse(&base).expect("postgres url");
            u.set_path(&format!("/{name}"));
            u.to_string()
        }
        None => format!("sqlite://{}", dir.join("journey.db").display()),
    }
}

pub fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("journey-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Harness {
    pub base: String,
    pub app: App,
    pub clock: Arc<OffsetClock>,
    pub smtp: smtp::SmtpSink,
    pub oidc: oidc::FakeIssuer,
    pub stripe: stripe::FakeStripe,
    pub mj: mjproxy::FakeMj,
    pub images: images::FakeImages,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub cfg: Config,
    server: actix_web::dev::ServerHandle,
    operator: tokio::sync::OnceCell<Uuid>,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Harness {
        let data_dir = temp_dir();
        let database_url = fresh_database(&data_dir).await;
        let smtp = smtp::SmtpSink::start().await;
        let oidc = oidc::FakeIssuer::start("test-client-id").await;
        let stripe = stripe::FakeStripe::start().await;
        let mj = mjproxy::FakeMj::start(mjproxy::Auth::Bearer(MJ_KEY.into())).await;
        let images = images::FakeImages::start(IMAGES_KEY).await;
        let mut providers = Config::default().providers;
        for (name, url, key) in [
            ("midjourney", &mj.url, MJ_KEY),
            ("images", &images.url, IMAGES_KEY),
        ] {
            let p = providers.get_mut(name).expect("default provider");
            p.base_url = url.clone();
            p.api_key = Some(key.into());
        }
        let mut cfg = Config {
            bind: "127.0.0.1:0".into(),
            data_dir: data_dir.clone(),
            database_url: Some(database_url.clone()),
            master_key: Some(MASTER_KEY.into()),
            pepper: Some(PEPPER.into()),
            smtp_url: Some(format!("smtp://127.0.0.1:{}", smtp.port)),
            google_issuer: oidc.issuer.clone(),
            google_client_id: "test-client-id".into(),
            google_client_secret: "test-client-secret".into(),
            cookie_secure: false,
            magic_link_per_email_per_hour: 50,
            magic_link_per_ip_per_hour: 1000,
            stripe_secret_key: Some(stripe::SECRET_KEY.into()),
            stripe_webhook_secret: Some(stripe::WEBHOOK_SECRET.into()),
            stripe_api_base: Some(stripe.base.clone()),
            providers,
            // The fakes and sinks live on loopback; SSRF tests turn this off.
            allow_private_webhooks: true,
            task_worker_tick_ms: 50,
            ..Config::default()
        };
        tweak(&mut cfg);
        let clock = Arc::new(OffsetClock::default());
        let app = Core::build(cfg.clone(), Some(clock.clone()))
            .await
            .expect("app builds");
        let running = journey_api::server::start(app.clone(), "127.0.0.1:0")
            .await
            .expect("server starts");
        let base = format!("{}://{}", running.scheme, running.addr);
        Harness {
            base,
            app,
            clock,
            smtp,
            oidc,
            stripe,
            mj,
            images,
            database_url,
            data_dir,
            cfg,
            server: running.handle,
            operator: tokio::sync::OnceCell::new(),
        }
    }

    /// Another server instance on the same database and clock (its own worker, caches
    /// and leases), as when several instances run behind a load balancer.
    pub async fn second_instance(&self) -> (App, String) {
        let app = Core::build(self.cfg.clone(), Some(self.clock.clone()))
            .await
            .expect("second instance builds");
        let running = journey_api::server::start(app.clone(), "127.0.0.1:0")
            .await
            .expect("second instance starts");
        (app, format!("{}://{}", running.scheme, running.addr))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A client with its own cookie jar (one browser).
    pub fn browser(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Requests a magic link for `email` and returns the token from the delivered mail.
    pub async fn magic_link_token(&self, email: &str) -> String {
        let before = self.smtp.count();
        let r = self
            .browser()
            .post(self.url("/v1/auth/magic-link"))
            .json(&serde_json::json!({ "email": email }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "magic link request accepted");
        let mail = self.smtp.wait_for(before + 1).await;
        token_from_mail(&mail)
    }

    /// Signs `email` in by magic link; returns the signed-in browser.
    pub async fn sign_in(&self, email: &str) -> Session {
        let token = self.magic_link_token(email).await;
        let client = self.browser();
        let r = self.consume_json(&client, &token).await;
        assert_eq!(r.status(), 200, "consume succeeds");
        let session_cookie = cookie_value(r.headers(), "journey_session").expect("session cookie");
        let body: Value = r.json().await.unwrap();
        Session {
            client,
            csrf: body["csrf_token"].as_str().unwrap().to_string(),
            account_id: body["account_id"].as_str().unwrap().parse().unwrap(),
            session_token: session_cookie,
        }
    }

    /// Consumes a magic link as an API client would (JSON body).
    pub async fn consume_json(&self, client: &reqwest::Client, token: &str) -> reqwest::Response {
        client
            .post(self.url("/v1/auth/magic-link/consume"))
            // Sign-ups need the age confirmation; sign-ins ignore it.
            .json(&serde_json::json!({ "token": token, "country": "FR", "age_confirmed": true }))
            .send()
            .await
            .unwrap()
    }

    /// Consumes a magic link as the confirmation page's form does.
    pub async fn consume_form(&self, client: &reqwest::Client, token: &str) -> reqwest::Response {
        client
            .post(self.url("/v1/auth/magic-link/consume"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}&country=FR&age_confirmed=on"))
            .send()
            .await
            .unwrap()
    }

    /// Runs the `journey` binary against this harness's database and secrets.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_command(args)
            .output()
            .expect("journey binary runs")
    }

    /// The `journey` command `cli` runs, to add variables or spawn it.
    pub fn cli_command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_journey"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("JOURNEY_DATABASE_URL", &self.database_url)
            .env("JOURNEY_DATA_DIR", &self.data_dir)
            .env("JOURNEY_MASTER_KEY", MASTER_KEY)
            .env("JOURNEY_PEPPER", PEPPER)
            .env(
                "JOURNEY_SMTP_URL",
                format!("smtp://127.0.0.1:{}", self.smtp.port),
            )
            .env("JOURNEY_LOG", "warn");
        cmd
    }

    /// Runs the `journey` binary, asserts it succeeded (showing its stderr if not) and
    /// returns its standard output.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "journey {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// The account id of an admin (`OPERATOR_EMAIL`) for staff CLI commands, signed up
    /// and granted the role on first use: call it before counting accounts or mails, or
    /// before stopping the server, when that matters.
    pub async fn operator(&self) -> Uuid {
        *self
            .operator
            .get_or_init(|| async {
                let s = self.sign_in(OPERATOR_EMAIL).await;
                self.cli_ok(&["staff", "grant", OPERATOR_EMAIL, "admin"]);
                s.account_id
            })
            .await
    }

    /// `journey events --stream STREAM` as the operator (audited); its standard output.
    pub async fn stream_events(&self, stream: &str) -> String {
        let by = self.operator().await.to_string();
        self.cli_ok(&[
            "events",
            "--stream",
            stream,
            "--by",
            &by,
            "--reason",
            "test inspection",
        ])
    }

    /// `journey erase --subject SUBJECT --reason REASON` as the operator; its standard output.
    pub async fn erase(&self, subject: &str, reason: &str) -> String {
        let by = self.operator().await.to_string();
        self.cli_ok(&[
            "erase",
            "--subject",
            subject,
            "--reason",
            reason,
            "--by",
            &by,
        ])
    }

    /// Now, by the app's clock, in Unix seconds (Stripe's timestamps).
    pub fn now_ts(&self) -> i64 {
        journey_commands::Clock::now(self.clock.as_ref()).timestamp()
    }

    /// Delivers a Stripe event to the webhook, signed now (by the app's clock) with the
    /// configured secret.
    pub async fn deliver(&self, event: &str) -> reqwest::Response {
        let ts = journey_commands::Clock::now(self.clock.as_ref()).timestamp();
        self.deliver_signed(event, &stripe::sign(event, stripe::WEBHOOK_SECRET, ts))
            .await
    }

    pub async fn deliver_signed(&self, event: &str, signature: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url("/webhooks/stripe"))
            .header("content-type", "application/json")
            .header("Stripe-Signature", signature)
            .body(event.to_string())
            .send()
            .await
            .unwrap()
    }

    /// Stops the HTTP server and its projection runner; the database stays for CLI use.
    pub async fn stop_server(&self) {
        self.server.stop(true).await;
    }
}

pub struct Session {
    pub client: reqwest::Client,
    pub csrf: String,
    pub account_id: Uuid,
    pub session_token: String,
}

impl Session {
    pub async fn get(&self, h: &Harness, path: &str) -> reqwest::Response {
        self.client.get(h.url(path)).send().await.unwrap()
    }

    /// A state-changing request with the CSRF header.
    pub fn write(
        &self,
        h: &Harness,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, h.url(path))
            .header("x-csrf-token", &self.csrf)
    }

    pub async fn create_key(&self, h: &Harness, name: &str) -> Value {
        let r = self
            .write(h, reqwest::Method::POST, "/v1/api-keys")
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }
}

pub fn token_from_mail(mail: &str) -> String {
    // Quoted-printable may fold long lines; undo soft breaks first.
    let unfolded = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let start = unfolded.find("token=").expect("mail carries a link") + "token=".len();
    unfolded[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let (k, rest) = c.split_once('=')?;
            (k == name).then(|| rest.split(';').next().unwrap_or_default().to_string())
        })
}

pub fn set_cookie_header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// The metadata our server put on the last Checkout Session it created.
pub fn last_checkout(fake: &stripe::FakeStripe) -> (stripe::Recorded, Value) {
    let r = fake
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/v1/checkout/sessions")
        .expect("a checkout session was created");
    let mut meta = serde_json::Map::new();
    for (k, v) in &r.form {
        if let Some(key) = k
            .strip_prefix("metadata[")
            .and_then(|k| k.strip_suffix(']'))
        {
            meta.insert(key.to_string(), serde_json::json!(v));
        }
    }
    (r, Value::Object(meta))
}

pub struct Bought {
    pub customer: String,
    pub payment_intent: String,
    pub event: String,
}

/// Starts a pack checkout through our API and returns the matching signed-to-be
/// `checkout.session.completed` event (as Stripe would send once the customer paid).
pub async fn pack_checkout(h: &Harness, s: &Session, pack: &str) -> Bought {
    let r = s
        .write(h, reqwest::Method::POST, "/v1/billing/checkout")
        .json(&serde_json::json!({ "pack": pack }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let url = r.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.starts_with("https://checkout.stripe.com/"), "{url}");
    let (req, metadata) = last_checkout(&h.stripe);
    let session_id = url.rsplit('/').next().unwrap().to_string();
    let customer = stripe::FakeStripe::form_value(&req, "customer").expect("customer on session");
    let payment_intent = format!("pi_{}", uuid::Uuid::new_v4().simple());
    let amount = stripe::FakeStripe::form_value(&req, "line_items[0][price_data][unit_amount]")
        .unwrap()
        .parse()
        .unwrap();
    let object = stripe::checkout_session_completed(
        &session_id,
        "payment",
        &s.account_id.to_string(),
        &customer,
        Some(&payment_intent),
        None,
        amount,
        metadata,
    );
    let event = stripe::event(
        &format!("evt_{}", uuid::Uuid::new_v4().simple()),
        "checkout.session.completed",
        h.now_ts(),
        object,
    );
    Bought {
        customer,
        payment_intent,
        event,
    }
}

/// Buys a pack end to end: checkout through our API, then Stripe's signed completion.
pub async fn buy_pack(h: &Harness, s: &Session, pack: &str) -> Bought {
    let bought = pack_checkout(h, s, pack).await;
    assert_eq!(h.deliver(&bought.event).await.status(), 200);
    bought
}
