//! Operations: health, readiness, metrics, the OpenAPI document, request ids, the CLI's
//! config and migrate commands, and the real binary serving on the embedded default.

use crate::support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use support::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_request_ids() {
    let h = Harness::start().await;
    let c = reqwest::Client::new();
    let r = c.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("x-request-id").is_some(),
        "generated request id echoed"
    );
    let r = c
        .get(h.url("/readyz"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-abc-123");
    assert_eq!(r.status(), 200);
    let ready: Value = r.json().await.unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["database"], true);
    assert_eq!(ready["pending_migrations"], 0);
    assert_eq!(ready["projection_lag"], 0);

    let r = c.get(h.url("/no/such/thing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["msg"],
        "no such endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_projections_lag_beyond_the_bound() {
    let h = Harness::start_with(|c| c.projection_lag_bound = 0).await;
    // Events appended behind the runner's back (as another instance would) count as lag
    // until applied; with a bound of 0 the first unapplied event makes us unready.
    let store: journey_commands::Store<journey_domain::api_key::ApiKey> =
        journey_commands::Store::new(&h.app.db);
    let meta = journey_domain::meta::CommandMeta::system(chrono::Utc::now());
    let mut saw_unready = false;
    for _ in 0..20 {
        for _ in 0..50 {
            let id = uuid::Uuid::new_v4();
            store
                .execute(
                    &id.to_string(),
                    journey_domain::api_key::ApiKeyCommand::Create {
                        account_id: id,
                        name: journey_domain::Sealed::from_parts(
                            "k".into(),
                            "n".into(),
                            "c".into(),
                        ),
                        key_hash: id.to_string(),
                        prefix: "p".into(),
                        last4: "l".into(),
                        at: chrono::Utc::now(),
                    },
                    &meta,
                )
                .await
                .unwrap();
        }
        let r = reqwest::get(h.url("/readyz")).await.unwrap();
        if r.status() == 503 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["ready"], false);
            assert!(body["projection_lag"].as_i64().unwrap() > 0);
            saw_unready = true;
            break;
        }
    }
    assert!(saw_unready, "lag was never observed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_requests_latency_events_and_lag() {
    let h = Harness::start().await;
    h.sign_in("metrics@example.com").await;
    reqwest::get(h.url("/healthz")).await.unwrap();
    let text = reqwest::get(h.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "journey_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}",
        "journey_http_requests_total{method=\"POST\",route=\"/v1/auth/magic-link\",status=\"202\"}",
        "journey_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/auth/magic-link/consume\",le=\"0.1\"}",
        "journey_events_appended_total{aggregate=\"account\"}",
        "journey_events_appended_total{aggregate=\"session\"}",
        "journey_projection_lag_events{projection=\"accounts\"}",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // Routes are patterns, so tokens in paths or queries never become label values.
    assert!(!text.contains("token="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_endpoint_with_its_errors() {
    let h = Harness::start().await;
    let doc: Value = reqwest::get(h.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/v1/auth/magic-link", "post"),
        ("/v1/auth/magic-link/confirm", "get"),
        ("/v1/auth/magic-link/consume", "post"),
        ("/v1/auth/google/start", "get"),
        ("/v1/auth/google/callback", "get"),
        ("/v1/auth/logout", "post"),
        ("/v1/me", "get"),
        ("/v1/me", "patch"),
        ("/v1/api-keys", "post"),
        ("/v1/api-keys", "get"),
        ("/v1/api-keys/{id}", "delete"),
        ("/api/v1/account", "get"),
        ("/api/v1/fetch", "post"),
        ("/api/v1/fetch-many", "post"),
        ("/api/v1/imagine", "post"),
        ("/api/v1/upscale-1x", "post"),
        ("/api/v1/upscale-alt", "post"),
        ("/api/v1/upscale-2x-4x", "post"),
        ("/api/v1/variations", "post"),
        ("/api/v1/reroll", "post"),
        ("/api/v1/pan", "post"),
        ("/api/v1/blend", "post"),
        ("/api/v1/describe", "post"),
        ("/api/v1/faceswap", "post"),
        ("/api/v1/imagine-video", "post"),
        ("/api/v1/extend-video", "post"),
        ("/api/v1/inpaint", "post"),
        ("/api/v1/outpaint", "post"),
        ("/webhooks/upstream/{provider}/{token}", "post"),
        ("/v1/usage", "get"),
        ("/v1/tasks", "get"),
        ("/v1/legal/privacy-policy", "get"),
        ("/v1/legal/subprocessors", "get"),
        ("/v1/legal/age-requirement", "get"),
        ("/v1/legal/child-report", "post"),
        ("/v1/legal/takedown", "post"),
        ("/v1/me/policy", "get"),
        ("/admin/v1/policies", "post"),
        ("/admin/v1/subjects/{id}/policy", "get"),
        ("/admin/v1/child-reports", "get"),
        ("/admin/v1/child-reports/{id}/{decision}", "post"),
        ("/admin/v1/breaches", "post"),
        ("/admin/v1/breaches", "get"),
        ("/admin/v1/breaches/{id}/notify-holders", "post"),
        ("/admin/v1/breaches/{id}/regulator-notified", "post"),
        ("/admin/v1/takedowns", "get"),
        ("/admin/v1/takedowns/{id}/{decision}", "post"),
        ("/v1/support/tickets", "post"),
        ("/v1/support/tickets", "get"),
        ("/v1/support/tickets/{id}", "get"),
        ("/v1/support/tickets/{id}", "delete"),
        ("/v1/support/tickets/{id}/messages", "post"),
        ("/v1/support/tickets/{id}/close", "post"),
        ("/admin/v1/tickets", "get"),
        ("/admin/v1/tickets/{id}", "get"),
        ("/admin/v1/tickets/{id}/messages", "post"),
        ("/admin/v1/tickets/{id}/close", "post"),
        ("/admin/v1/subjects/{id}/correction", "post"),
        ("/v1/billing/catalog", "get"),
        ("/v1/billing", "get"),
        ("/v1/billing/checkout", "post"),
        ("/v1/billing/portal", "post"),
        ("/v1/credits/ledger", "get"),
        ("/webhooks/stripe", "post"),
        ("/admin/v1/billing/ignored-events", "get"),
        ("/admin/v1/subjects/{id}/events", "get"),
        ("/admin/v1/audit", "get"),
        ("/v1/me/consents", "get"),
        ("/v1/me/consents", "put"),
        ("/v1/me/objection", "post"),
        ("/v1/me/restriction", "post"),
        ("/admin/v1/subjects/{id}/restriction/lift", "post"),
        ("/v1/me/export", "post"),
        ("/v1/me/exports/{id}", "get"),
        ("/v1/me/exports/{id}/download", "get"),
        ("/admin/v1/subjects/{id}/export", "get"),
        ("/v1/me", "delete"),
        ("/admin/v1/retention/runs", "get"),
        ("/v1/me/requests", "post"),
        ("/v1/me/requests", "get"),
        ("/v1/me/requests/{id}/verify", "post"),
        ("/v1/me/requests/{id}/code", "post"),
        ("/admin/v1/requests", "post"),
        ("/admin/v1/requests", "get"),
        ("/admin/v1/requests/{id}/verify", "post"),
        ("/admin/v1/requests/{id}/{step}", "post"),
        ("/admin/v1/requests/{id}/code", "post"),
        ("/admin/v1/subjects/{id}/restriction", "post"),
        ("/admin/v1/subjects/{id}/objection", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ];
    for (path, method) in expected {
        let op = &paths.get(path).unwrap_or_else(|| panic!("{path} missing"))[method];
        assert!(op.is_object(), "{method} {path} missing");
        if ![
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/v1/billing/catalog",
            "/v1/legal/subprocessors",
        ]
        .contains(&path)
        {
            let codes: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
            assert!(
                codes
                    .iter()
                    .any(|c| c.starts_with('4') || c.starts_with('5')),
                "{method} {path} documents no error: {codes:?}"
            );
        }
    }
    assert_eq!(
        paths
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum::<usize>(),
        expected.len(),
        "every documented operation is expected"
    );
    let schemes = &doc["components"]["securitySchemes"];
    assert!(schemes["api_key"].is_object() && schemes["session"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_config_masks_secrets_and_migrate_reports() {
    let h = Harness::start().await;
    let text = h.cli_ok(&["config"]);
    assert!(
        !text.contains(support::MASTER_KEY) && !text.contains(support::PEPPER),
        "{text}"
    );
    assert!(text.contains("master_key = \"********\""));
    assert!(text.contains("bind = \"127.0.0.1:8080\""));
    let stdout = h.cli_ok(&["migrate"]);
    assert!(stdout.contains("pending: 0"));
    let by = uuid::Uuid::new_v4().to_string();
    let out = h.cli(&[
        "events", "--stream", "nonsense", "--by", &by, "--reason", "x",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TYPE/ID"));
}

#[test]
fn binary_serves_on_the_embedded_default_and_stops_on_sigterm() {
    let dir = support::temp_dir().join("fresh");
    let mut child = Command::new(env!("CARGO_BIN_EXE_journey"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .current_dir(support::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("JOURNEY_DATA_DIR", &dir)
        .env("JOURNEY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with("JourneyAPI listening on http://127.0.0.1:"),
        "{first}"
    );
    let addr = first
        .split("http://")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    assert!(
        dir.join("journey.db").exists()
            && dir.join("master.key").exists()
            && dir.join("pepper.key").exists()
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful exit: {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l == "JourneyAPI stopped"), "{rest:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("generated a new master key"),
        "the generated key is announced: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_requires_configured_secrets() {
    // Several instances share a Postgres database, so they must share the master key and
    // pepper; generating them per instance would make data unreadable across instances.
    let cfg = journey_contexts::config::Config {
        data_dir: support::temp_dir(),
        database_url: Some("postgres://127.0.0.1:1/never_reached".into()),
        ..Default::default()
    };
    let err = journey_contexts::app::Core::build(cfg, None)
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("JOURNEY_MASTER_KEY and JOURNEY_PEPPER must be configured"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_pepper_is_refused() {
    let dir = support::temp_dir();
    let cfg = journey_contexts::config::Config {
        database_url: Some(support::fresh_database(&dir).await),
        data_dir: dir,
        master_key: Some(support::MASTER_KEY.into()),
        pepper: Some(String::new()),
        ..Default::default()
    };
    let err = journey_contexts::app::Core::build(cfg, None)
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("JOURNEY_PEPPER must be at least 16 characters"));
}
