//! API keys through HTTP: shown once, stored only as HMACs, listed as prefix…last4,
//! accepted raw or as Bearer on /api/v1, revoked at once, never visible across accounts.

use crate::support;

use reqwest::Method;
use serde_json::{json, Value};
use support::Harness;

async fn account_with(h: &Harness, auth: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(h.url("/api/v1/account"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_authenticate_the_client_api_until_revoked() {
    let h = Harness::start().await;
    let s = h.sign_in("kay@example.com").await;
    let created = s.create_key(&h, "production").await;
    let key = created["key"].as_str().unwrap().to_string();
    assert!(
        key.starts_with("japi_live_") && key.len() >= 10 + 22 + 6,
        "{key}"
    );
    assert_eq!(created["last4"], key[key.len() - 4..]);

    // Both header forms work, at once after creation.
    for auth in [key.clone(), format!("Bearer {key}")] {
        let r = account_with(&h, &auth).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body,
            json!({"email": "kay@example.com", "credits": 0, "total_images": 0, "plan": "free"})
        );
    }

    // Listing shows metadata, never the key. Last use is recorded during the request (at
    // most once a minute) but reaches the read model a moment later, so poll briefly.
    let mut list = Value::Null;
    for _ in 0..100 {
        list = s.get(&h, "/v1/api-keys").await.json().await.unwrap();
        if list["api_keys"][0]["last_used_at"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let k = &list["api_keys"][0];
    assert_eq!(k["name"], "production");
    assert_eq!(
        k["display"],
        format!(
            "{}…{}",
            created["prefix"].as_str().unwrap(),
            &key[key.len() - 4..]
        )
    );
    assert!(k["last_used_at"].is_string(), "use is recorded");
    assert!(!list.to_string().contains(&key));

    // Missing, malformed, unknown: 401 with body {}.
    let mut typo = key.clone();
    typo.replace_range(12..13, if &key[12..13] == "A" { "B" } else { "A" });
    let unknown = support::PEPPER.to_string(); // wrong shape entirely
    for auth in [
        String::new(),
        "Bearer".into(),
        typo,
        unknown,
        format!("{key}x"),
    ] {
        let r = account_with(&h, &auth).await;
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.json::<Value>().await.unwrap(), json!({}));
    }
    let r = reqwest::Client::new()
        .get(h.url("/api/v1/account"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({}));

    // Revocation is immediate.
    let id = created["id"].as_str().unwrap();
    let r = s
        .write(&h, Method::DELETE, &format!("/v1/api-keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = account_with(&h, &key).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({}));
    let list: Value = s.get(&h, "/v1/api-keys").await.json().await.unwrap();
    assert_eq!(list["api_keys"], json!([]));
    // Revoking again: 404, nothing changes.
    let r = s
        .write(&h, Method::DELETE, &format!("/v1/api-keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_cannot_see_or_touch_each_others_keys() {
    let h = Harness::start().await;
    let alice = h.sign_in("alice@example.com").await;
    let bob = h.sign_in("bob@example.com").await;
    let alice_key = alice.create_key(&h, "alice-dev").await;
    let bob_key = bob.create_key(&h, "bob-dev").await;

    let bobs: Value = bob.get(&h, "/v1/api-keys").await.json().await.unwrap();
    assert_eq!(bobs["api_keys"].as_array().unwrap().len(), 1);
    assert_eq!(bobs["api_keys"][0]["name"], "bob-dev");

    // Bob cannot revoke Alice's key: same answer as an unknown id, and the key still works.
    let id = alice_key["id"].as_str().unwrap();
    let r = bob
        .write(&h, Method::DELETE, &format!("/v1/api-keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let unknown = bob
        .write(
            &h,
            Method::DELETE,
            &format!("/v1/api-keys/{}", uuid::Uuid::new_v4()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        account_with(&h, alice_key["key"].as_str().unwrap())
            .await
            .status(),
        200
    );

    // Each key answers with its own account only.
    let a: Value = account_with(&h, alice_key["key"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let b: Value = account_with(&h, bob_key["key"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a["email"], "alice@example.com");
    assert_eq!(b["email"], "bob@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_requests_get_clear_errors_and_change_nothing() {
    let h = Harness::start().await;
    let s = h.sign_in("val@example.com").await;
    let events = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
            .fetch_one(&h.app.db.any)
            .await
            .unwrap()
    };
    let before = events().await;
    for bad in [
        json!({}),
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "x".repeat(101)}),
        json!({"name": 3}),
        json!({"name": "a", "extra": 1}),
    ] {
        let r = s
            .write(&h, Method::POST, "/v1/api-keys")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.json::<Value>().await.unwrap()["errors"][0]["msg"].is_string());
    }
    let r = s
        .write(&h, Method::DELETE, "/v1/api-keys/not-a-uuid")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Without the CSRF header a key cannot be minted.
    let r = s
        .client
        .post(h.url("/v1/api-keys"))
        .json(&json!({"name": "csrf"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Signed out: 401.
    let r = h
        .browser()
        .post(h.url("/v1/api-keys"))
        .json(&json!({"name": "anon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(events().await, before, "no event from any refused request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_secret_is_stored_anywhere() {
    let h = Harness::start().await;
    let link_token = h.magic_link_token("secret@example.com").await;
    let r = h.consume_json(&h.browser(), &link_token).await;
    let session_token = support::cookie_value(r.headers(), "journey_session").unwrap();
    let csrf = r.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let client = reqwest::Client::new();
    let key: Value = client
        .post(h.url("/v1/api-keys"))
        .header("cookie", format!("journey_session={session_token}"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "scan"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let raw = key["key"].as_str().unwrap();
    assert_eq!(account_with(&h, raw).await.status(), 200);
    let hits =
        support::scan::find_plaintext(&h.database_url, &[raw, &link_token, &session_token, &csrf])
            .await;
    assert!(hits.is_empty(), "secrets found in the database: {hits:?}");
    // The scanner itself works: the key's public prefix is stored and found.
    let prefix = key["prefix"].as_str().unwrap();
    assert!(!support::scan::find_plaintext(&h.database_url, &[prefix])
        .await
        .is_empty());
}
