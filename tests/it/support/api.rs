//! A client-API caller for tests: an account with an API key and credits, and helpers to
//! call `/api/v1/*` and wait for tasks.
#![allow(dead_code)]

use super::{Harness, Session};
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

pub struct ApiClient {
    pub key: String,
    pub session: Session,
    pub account_id: Uuid,
    http: reqwest::Client,
}

/// Makes `email` a staff member able to grant credits (once per harness).
fn ensure_granter(h: &Harness) -> String {
    let email = "granter@example.com";
    let out = h.cli(&["staff", "grant", email, "support"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    email.to_string()
}

impl Harness {
    /// A signed-up account with one API key and `credits` granted by staff.
    pub async fn api_client(&self, email: &str, credits: u64) -> ApiClient {
        let session = self.sign_in(email).await;
        let key = session.create_key(self, "test").await["key"]
            .as_str()
            .unwrap()
            .to_string();
        if credits > 0 {
            self.grant_credits(session.account_id, credits).await;
        }
        ApiClient {
            key,
            account_id: session.account_id,
            session,
            http: reqwest::Client::new(),
        }
    }

    pub async fn grant_credits(&self, account: Uuid, credits: u64) {
        let staff = self.sign_in("granter@example.com").await;
        ensure_granter(self);
        let before = self.app.credits().balance(account).await.unwrap().available;
        self.cli_ok(&[
            "credits",
            "grant",
            "--account",
            &account.to_string(),
            "--amount",
            &credits.to_string(),
            "--reason",
            "test credits",
            "--by",
            &staff.account_id.to_string(),
        ]);
        for _ in 0..200 {
            if self.app.credits().balance(account).await.unwrap().available >= before + credits {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("credits never arrived");
    }
}

impl ApiClient {
    pub async fn post_with(
        &self,
        h: &Harness,
        endpoint: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut r = self
            .http
            .post(h.url(&format!("/api/v1/{endpoint}")))
            .header("authorization", &self.key)
            .json(body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, h: &Harness, endpoint: &str, body: Value) -> (u16, Value) {
        self.post_with(h, endpoint, &body, &[]).await
    }

    /// Posts and expects 200; returns the task id.
    pub async fn create(&self, h: &Harness, endpoint: &str, body: Value) -> Uuid {
        let (status, v) = self.post(h, endpoint, body).await;
        assert_eq!(status, 200, "{endpoint}: {v}");
        v["task_id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn fetch(&self, h: &Harness, task: Uuid) -> Value {
        let (status, v) = self
            .post(h, "fetch", serde_json::json!({ "task_id": task }))
            .await;
        assert_eq!(status, 200, "fetch: {v}");
        v
    }

    /// Polls `/fetch` until the task reaches `status` (the worker and hooks run in the
    /// background).
    pub async fn wait_for(&self, h: &Harness, task: Uuid, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..400 {
            last = self.fetch(h, task).await;
            if last["status"] == status {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("task {task} never became {status}; last: {last}");
    }

    pub async fn account(&self, h: &Harness) -> Value {
        let r = self
            .http
            .get(h.url("/api/v1/account"))
            .header("authorization", &self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Waits until (available, reserved) is `want` (settlement follows the task's end).
    pub async fn wait_balance(&self, h: &Harness, want: (u64, u64)) {
        let mut last = (0, 0);
        for _ in 0..200 {
            last = self.balance(h).await;
            if last == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("balance stayed {last:?}, wanted {want:?}");
    }

    pub async fn balance(&self, h: &Harness) -> (u64, u64) {
        let b = h.app.credits().balance(self.account_id).await.unwrap();
        (b.available, b.reserved)
    }
}

/// The fake's upstream id for the newest task it accepted.
pub fn last_upstream(h: &Harness) -> String {
    h.mj.upstream_ids()
        .last()
        .cloned()
        .expect("an upstream task")
}
