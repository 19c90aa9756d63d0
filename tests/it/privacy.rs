//! Personal data is stored only sealed, and erasure (crypto-shredding) makes every copy
//! unreadable while streams still load; read models forget the subject, also on rebuild.

use crate::support;

use journey_domain::Opened;
use reqwest::Method;
use serde_json::{json, Value};
use support::oidc::GoogleUser;
use support::scan::{find_plaintext, rows_as_text};
use support::Harness;

const READ_MODELS: [&str; 3] = ["rm_accounts", "rm_sessions", "rm_api_keys"];

/// Google sign-in for `user`; returns (account id, session cookie value).
async fn google_sign_in(h: &Harness, user: &GoogleUser<'_>) -> (String, String) {
    let browser = h.browser();
    let start = browser
        .get(h.url("/v1/auth/google/start?country=FR&age_confirmed=true"))
        .send()
        .await
        .unwrap();
    let loc = url::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = loc.query_pairs().into_owned().collect();
    let code = h
        .oidc
        .authorize(&q["code_challenge"], h.oidc.claims(user, &q["nonce"]));
    let r = browser
        .get(h.url(&format!(
            "/v1/auth/google/callback?code={code}&state={}",
            q["state"]
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = support::cookie_value(r.headers(), "journey_session").unwrap();
    let body: Value = r.json().await.unwrap();
    (body["account_id"].as_str().unwrap().to_string(), cookie)
}

const RIA: GoogleUser<'static> = GoogleUser {
    sub: "google-sub-ria-4711",
    email: "ria.private@example.com",
    email_verified: true,
    name: Some("Ria Privata"),
    picture: Some("https://pictures.example.com/ria-4711.png"),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_stores_personal_data_only_sealed() {
    let h = Harness::start().await;
    let s = h.sign_in("plain.text@example.com").await;
    s.write(&h, Method::PATCH, "/v1/me")
        .json(&json!({"name": "Plain Textname"}))
        .send()
        .await
        .unwrap();
    let (ria, _) = google_sign_in(&h, &RIA).await;
    let needles = [
        "plain.text@example.com",
        "Plain Textname",
        RIA.email,
        RIA.sub,
        "Ria Privata",
        "pictures.example.com/ria-4711",
        "127.0.0.1",
    ];
    let hits = find_plaintext(&h.database_url, &needles).await;
    assert!(
        hits.is_empty(),
        "plaintext personal data in the database: {hits:?}"
    );

    // The values are there, sealed: the CLI shows the stream with sealed envelopes.
    let text = h.stream_events(&format!("account/{ria}")).await;
    assert!(text.contains("AccountRegistered") && text.contains("GoogleLinked"));
    assert!(text.contains("\"sealed\":\"v1\""));
    assert!(!text.contains(RIA.email) && !text.contains("Ria Privata"));
    // IPs in metadata are sealed too.
    assert!(text.contains("client_ip"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_forgets_the_subject_everywhere_and_streams_still_load() {
    let h = Harness::start().await;
    // The subject: signed up by magic link, linked Google, holds a key and a session.
    let s = h.sign_in(RIA.email).await;
    let key = s.create_key(&h, "ria-key").await;
    let key = key["key"].as_str().unwrap().to_string();
    let (linked, google_cookie) = google_sign_in(&h, &RIA).await;
    assert_eq!(linked, s.account_id.to_string());
    // A bystander who must be untouched.
    let other = h.sign_in("bystander@example.com").await;
    let other_key = other.create_key(&h, "other").await["key"]
        .as_str()
        .unwrap()
        .to_string();

    let subject = s.account_id.to_string();
    let stdout = h.erase(&subject, "data subject request").await;
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert!(report["keys_destroyed"].as_u64().unwrap() >= 2, "{report}");
    assert_eq!(report["api_keys_revoked"], 1);
    assert_eq!(report["sessions_ended"], 2);

    // No plaintext of the subject anywhere.
    let hits = find_plaintext(
        &h.database_url,
        &[RIA.email, RIA.sub, "Ria Privata", "ria-4711.png"],
    )
    .await;
    assert!(hits.is_empty(), "{hits:?}");
    // Access is gone at once.
    assert_eq!(s.get(&h, "/v1/me").await.status(), 401);
    let r = h
        .browser()
        .get(h.url("/v1/me"))
        .header("cookie", format!("journey_session={google_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = reqwest::Client::new()
        .get(h.url("/api/v1/account"))
        .header("authorization", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Read models forgot the subject.
    for t in READ_MODELS {
        let rows = rows_as_text(&h.database_url, t).await;
        assert!(
            !rows.iter().any(|r| r.contains(&subject)),
            "{t} still holds the subject"
        );
    }
    // Streams still load, as erased, without error.
    let account = h.app.identity().account_state(&subject).await.unwrap();
    assert_eq!(
        account.status,
        journey_domain::account::AccountStatus::Erased
    );
    assert_eq!(
        h.app
            .vault
            .open(account.email.as_ref().unwrap())
            .await
            .unwrap(),
        Opened::Erased
    );
    let stdout = h.stream_events(&format!("account/{subject}")).await;
    assert!(stdout.contains("AccountErased"));
    let opened = h
        .app
        .vault
        .open_json(&serde_json::from_str::<Value>(stdout.lines().next().unwrap()).unwrap())
        .await
        .unwrap();
    assert_eq!(opened["payload"]["AccountRegistered"]["email"], "[erased]");

    // Rebuilding every projection does not bring the subject back.
    for p in ["accounts", "sessions", "api_keys"] {
        h.cli_ok(&["projections", "rebuild", p]);
    }
    for t in READ_MODELS {
        assert!(
            !rows_as_text(&h.database_url, t)
                .await
                .iter()
                .any(|r| r.contains(&subject)),
            "{t} after rebuild"
        );
    }
    // A session that raced the erasure (started after it) does not authenticate
    // (it may leave an id-only rm_sessions row; the account aggregate refuses it).
    let token = "raced-session-token";
    let start = journey_domain::session::SessionCommand::Start {
        account_id: s.account_id,
        method: journey_domain::account::SignInMethod::MagicLink,
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
        at: chrono::Utc::now(),
    };
    let meta = journey_domain::meta::CommandMeta::system(chrono::Utc::now());
    let session_id = journey_commands::secrets::token_hash(token);
    // A store of our own: the identity context keeps its stores to itself.
    journey_commands::Store::<journey_domain::session::Session>::new(&h.app.db)
        .execute(&session_id, start, &meta)
        .await
        .unwrap();
    let r = h
        .browser()
        .get(h.url("/v1/me"))
        .header("cookie", format!("journey_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The bystander is untouched.
    assert_eq!(other.get(&h, "/v1/me").await.status(), 200);
    let r = reqwest::Client::new()
        .get(h.url("/api/v1/account"))
        .header("authorization", &other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The erased address may sign up again, as a new account.
    assert_ne!(h.sign_in(RIA.email).await.account_id, s.account_id);
    // Erasing an unknown subject is a clear error.
    let by = h.operator().await.to_string();
    let out = h.cli(&[
        "erase",
        "--subject",
        &uuid::Uuid::new_v4().to_string(),
        "--reason",
        "test erasure",
        "--by",
        &by,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such account"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_from_zero_yields_the_same_rows_as_live_catch_up() {
    let h = Harness::start().await;
    let a = h.sign_in("one@example.com").await;
    let b = h.sign_in("two@example.com").await;
    let k1 = a.create_key(&h, "a1").await;
    a.create_key(&h, "a2").await;
    b.create_key(&h, "b1").await;
    a.write(
        &h,
        Method::DELETE,
        &format!("/v1/api-keys/{}", k1["id"].as_str().unwrap()),
    )
    .send()
    .await
    .unwrap();
    b.write(&h, Method::POST, "/v1/auth/logout")
        .send()
        .await
        .unwrap();
    google_sign_in(&h, &RIA).await;

    let live: Vec<Vec<String>> =
        futures::future::join_all(READ_MODELS.map(|t| rows_as_text(&h.database_url, t))).await;
    assert!(live.iter().all(|rows| !rows.is_empty()));
    for p in ["accounts", "sessions", "api_keys"] {
        let stdout = h.cli_ok(&["projections", "rebuild", p]);
        assert!(stdout.contains(&format!("rebuilt {p}")));
    }
    let rebuilt: Vec<Vec<String>> =
        futures::future::join_all(READ_MODELS.map(|t| rows_as_text(&h.database_url, t))).await;
    assert_eq!(live, rebuilt);

    let status = h.cli_ok(&["projections", "status"]);
    for p in ["accounts", "sessions", "api_keys"] {
        let line = status
            .lines()
            .find(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("{status}"));
        assert!(
            line.trim_end().ends_with(" 0"),
            "lag 0 after rebuild: {line}"
        );
    }
    let out = h.cli(&["projections", "rebuild", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown projection"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_erasure_works_with_no_server_running() {
    let h = Harness::start().await;
    let s = h.sign_in("offline@example.com").await;
    s.create_key(&h, "offline-key").await;
    // The staff member running the CLI signs up while the server still runs.
    h.operator().await;
    h.stop_server().await;
    let subject = s.account_id.to_string();
    h.erase(&subject, "test erasure").await;
    // The CLI applied the erasure to the read models itself.
    for t in READ_MODELS {
        let rows = rows_as_text(&h.database_url, t).await;
        assert!(!rows.iter().any(|r| r.contains(&subject)), "{t}");
    }
    let hits = find_plaintext(&h.database_url, &["offline@example.com", "offline-key"]).await;
    assert!(hits.is_empty(), "{hits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_that_never_completed_can_be_erased() {
    let h = Harness::start().await;
    // A link is requested (email sealed under a pre-allocated account id) but never used.
    h.magic_link_token("never.used@example.com").await;
    let subject: String = sqlx::query_scalar("SELECT account_id FROM identity_index")
        .fetch_one(&h.app.db.any)
        .await
        .unwrap();
    let stdout = h.erase(&subject, "request by email").await;
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert!(report["keys_destroyed"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["identity_claims_dropped"], 1);
    // The link's stream still loads; its email reads as erased.
    let link: String = sqlx::query_scalar(
        "SELECT aggregate_id FROM subject_streams WHERE aggregate_type = 'magic_link' AND subject = $1",
    )
    .bind(&subject)
    .fetch_one(&h.app.db.any)
    .await
    .unwrap();
    // A store of our own: the identity context keeps its stores to itself.
    let links = journey_commands::Store::<journey_domain::magic_link::MagicLink>::new(&h.app.db);
    let (loaded, _) = links.load(&link).await.unwrap();
    let email = h
        .app
        .vault
        .open(loaded.email.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(email, Opened::Erased);
    // Nothing new sealed for the erased subject can be read: this server (which did not
    // run the erasure, the CLI did) either refuses to seal or — within the minute its
    // cache may still hold the key — seals under the destroyed key, which opens as erased.
    let sealed = h
        .app
        .vault
        .seal(
            &subject,
            journey_domain::DataCategory::Usage,
            chrono::Utc::now(),
            &"x".to_string(),
        )
        .await;
    match sealed {
        Err(journey_commands::VaultError::SubjectErased) => {}
        Ok(v) => assert_eq!(h.app.vault.open(&v).await.unwrap(), Opened::Erased),
        Err(e) => panic!("{e}"),
    }
    // A process without a cached key (the next CLI run, or this server a minute later)
    // refuses outright.
    let fresh = journey_commands::Vault::new(
        h.app.db.clone(),
        journey_commands::vault::MasterKey::parse(support::MASTER_KEY).unwrap(),
    );
    let sealed = fresh
        .seal(
            &subject,
            journey_domain::DataCategory::Usage,
            chrono::Utc::now(),
            &"x".to_string(),
        )
        .await;
    assert!(matches!(
        sealed,
        Err(journey_commands::VaultError::SubjectErased)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_periodic_key_that_raced_an_erasure_is_not_used() {
    let h = Harness::start().await;
    let s = h.sign_in("racer@example.com").await;
    let subject = s.account_id.to_string();
    h.erase(&subject, "test erasure").await;
    // Simulate a sealer whose new daily key landed after the erasure destroyed keys.
    // (Next week: today's usage key exists already, destroyed by the erasure.)
    let usage = journey_domain::DataCategory::Usage;
    let next_week = chrono::Utc::now() + chrono::Duration::days(7);
    let period = journey_domain::retention::period_label(usage, next_week);
    sqlx::query(
        "INSERT INTO data_keys (key_id, subject, category, period, wrapped, created_at)
         VALUES ($1, $2, 'usage', $3, $4, 0)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(&subject)
    .bind(&period)
    .bind(vec![0u8; 60])
    .execute(&h.app.db.any)
    .await
    .unwrap();
    let ip = "203.0.113.9".to_string();
    let sealed = h.app.vault.seal(&subject, usage, next_week, &ip).await;
    assert!(matches!(
        sealed,
        Err(journey_commands::VaultError::SubjectErased)
    ));
}
