//! What every request meets: refused characters in any text field (400 naming the field,
//! nothing changed, on both backends), JSON bodies for every error actix answers itself
//! (413 over the limit, 405 for a wrong method, 404), and an OpenAPI document that lists
//! those answers and the rules a generated client needs.

use crate::support;
use reqwest::Method;
use serde_json::{json, Value};
use support::Harness;

async fn expect_error(r: reqwest::Response, status: u16, needle: &str) -> Value {
    assert_eq!(r.status(), status, "{needle}");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ct.starts_with("application/json"), "{needle}: {ct}");
    let v: Value = r.json().await.unwrap();
    let msg = v["errors"][0]["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "{needle} not in {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_in_every_text_field() {
    let h = Harness::start().await;
    let admin = h.sign_in("admin@example.com").await;
    h.cli_ok(&["staff", "grant", "admin@example.com", "admin"]);
    // NUL in a JSON body and in query strings: 400 naming the field on both backends
    // (Postgres used to answer 500).
    let r = admin
        .write(&h, Method::POST, "/admin/v1/policies")
        .json(&json!({ "version": "2027-01-01", "effective_at": "2027-02-01T00:00:00Z", "summary": "x", "text": "a\u{0}b", "material": false }))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "text contains").await;
    for path in [
        "/admin/v1/audit?reason=a%00b",
        "/admin/v1/tickets?reason=a%00b",
    ] {
        let r = admin.get(&h, path).await;
        expect_error(r, 400, "reason contains").await;
    }
    // Direction overrides in a ticket subject, deep in a body too.
    let r = admin
        .write(&h, Method::POST, "/v1/support/tickets")
        .json(&json!({ "subject": "refund \u{202e}dnufer", "message": "hi" }))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "subject contains").await;
    let r = admin
        .write(&h, Method::PUT, "/v1/me/consents")
        .json(&json!({ "purposes": [{ "nested": "x\u{7}" }] }))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "purposes[0].nested contains").await;
    // Invisible characters in names shown on one line.
    let r = admin
        .write(&h, Method::POST, "/v1/api-keys")
        .json(&json!({ "name": "laptop\u{200b}" }))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "name contains").await;
    let r = admin
        .write(&h, Method::PATCH, "/v1/me")
        .json(&json!({ "name": "Ada\nLovelace" }))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "name contains").await;
    // A form post too.
    let r = reqwest::Client::new()
        .post(h.url("/v1/auth/magic-link/consume"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=abc%00&country=FR")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A person posted it: the answer is a page that says what to do.
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r
        .text()
        .await
        .unwrap()
        .to_lowercase()
        .contains("token contains"));
    // Nothing was changed: no key, no ticket, no policy.
    let keys: Value = admin.get(&h, "/v1/api-keys").await.json().await.unwrap();
    assert_eq!(
        keys["keys"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "{keys}"
    );
    let tickets: Value = admin
        .get(&h, "/v1/support/tickets")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        tickets["tickets"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "{tickets}"
    );
    // Emoji sequences and ordinary text pass.
    let r = admin
        .write(&h, Method::POST, "/v1/api-keys")
        .json(&json!({ "name": "Über laptop 👨‍👩‍👧" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_and_listed_in_the_document() {
    let h = Harness::start().await;
    let c = h.api_client("errors@example.com", 0).await;
    let http = reqwest::Client::new();
    // Bodies over the limit: 413 JSON, on the client API, sign-in and the provider hook.
    let huge = vec![b'a'; 8 * 1024 * 1024 + 10];
    let r = http
        .post(h.url("/api/v1/imagine"))
        .header("authorization", &c.key)
        .header("content-type", "application/json")
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "larger than").await;
    let r = http
        .post(h.url("/v1/auth/magic-link/consume"))
        .header("content-type", "application/json")
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    expect_error(r, 413, "").await;
    // A browser form over its limit gets a page, not JSON.
    let r = http
        .post(h.url("/v1/auth/magic-link/consume"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", "a".repeat(300 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let r = http
        .post(h.url("/webhooks/upstream/midjourney/abc"))
        .header("content-type", "application/json")
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "").await;
    // A wrong method on an existing path: 405 with Allow; an unknown path: 404.
    let r = http.get(h.url("/api/v1/imagine")).send().await.unwrap();
    assert_eq!(r.status(), 405, "{:?}", r.headers());
    assert_eq!(
        r.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    expect_error(r, 405, "allowed: POST").await;
    let r = c
        .session
        .write(
            &h,
            Method::GET,
            &format!("/v1/api-keys/{}", uuid::Uuid::new_v4()),
        )
        .send()
        .await
        .unwrap();
    expect_error(r, 405, "DELETE").await;
    expect_error(
        http.get(h.url("/nowhere")).send().await.unwrap(),
        404,
        "no such endpoint",
    )
    .await;
    // A malformed id in a path: 400, and documented.
    let r = c
        .session
        .write(&h, Method::DELETE, "/v1/api-keys/not-a-uuid")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "must be a UUID").await;

    let doc: Value = http
        .get(h.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let codes = op["responses"].as_object().unwrap();
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            if op.get("requestBody").is_some() {
                assert!(
                    codes.contains_key("400") && codes.contains_key("413"),
                    "{method} {path}"
                );
            }
            if params
                .iter()
                .any(|p| p["in"] == "path" || p["in"] == "query")
            {
                assert!(codes.contains_key("400"), "{method} {path}");
            }
            if path.starts_with("/admin/v1/") {
                assert!(
                    codes.contains_key("401") && codes.contains_key("403"),
                    "{method} {path}: staff only"
                );
            }
            if path.starts_with("/api/v1/") {
                assert!(
                    codes.contains_key("403"),
                    "{method} {path}: suspended accounts"
                );
            }
        }
    }
    let op = &doc["paths"]["/api/v1/imagine"]["post"];
    assert!(op["responses"]["409"].is_object());
    assert!(doc["paths"]["/v1/support/tickets/{id}"]["delete"]["responses"]["409"].is_object());
    // The rules a generated client validates with.
    let schemas = &doc["components"]["schemas"];
    let imagine = properties(&schemas["ImagineRequest"]);
    assert_eq!(imagine["prompt"]["maxLength"], 4000);
    let models = imagine["model"]["enum"].as_array().unwrap();
    assert_eq!(models.len(), 30, "the loaded catalogue: {models:?}");
    assert!(models.contains(&json!("flux-pro")));
    let ids = &schemas["FetchManyRequest"]["properties"]["task_ids"];
    assert_eq!(
        (ids["minItems"].clone(), ids["maxItems"].clone()),
        (json!(2), json!(20))
    );
    assert_eq!(ids["items"]["format"], "uuid");
    assert_eq!(
        schemas["FetchRequest"]["properties"]["task_id"]["format"],
        "uuid"
    );
    assert!(imagine["aspect_ratio"].to_string().contains("AspectRatio"));
    assert!(schemas["AspectRatio"]["enum"]
        .as_array()
        .unwrap()
        .contains(&json!("16:9")));
}

/// A schema's own properties (`flatten`ed structs are an `allOf` of parts).
fn properties(schema: &Value) -> &Value {
    if schema["properties"].is_object() {
        return &schema["properties"];
    }
    schema["allOf"]
        .as_array()
        .and_then(|parts| parts.iter().find(|p| p["properties"]["prompt"].is_object()))
        .map(|p| &p["properties"])
        .unwrap_or_else(|| panic!("no properties in {schema}"))
}
