//! Client for the open midjourney-proxy protocol (`/mj/submit/*`, `/mj/task/*`).
//!
//! Several proxy implementations speak this protocol with small differences (auth
//! header, speed-specific path prefixes, loosely typed task fields), so parsing here is
//! deliberately lenient: a task a proxy reports must never be lost because one field
//! had an unexpected shape.

use super::UpstreamError;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};
use std::fmt;
use std::time::Duration;
use url::Url;

/// How the proxy expects the API key: newer forks use a bearer token, the original
/// project a custom `mj-api-secret` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MjAuth {
    Bearer,
    MjApiSecret,
}

/// Output aspect for a blend job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Dimensions {
    Portrait,
    #[default]
    Square,
    Landscape,
}

/// A job to hand to the proxy. Image fields hold complete data URLs (see [`data_url`]).
#[derive(Debug, Clone)]
pub enum Submit {
    Imagine {
        prompt: String,
        base64_array: Vec<String>,
    },
    Action {
        task_id: String,
        custom_id: String,
    },
    Modal {
        task_id: String,
        prompt: Option<String>,
        mask_base64: Option<String>,
    },
    Blend {
        base64_array: Vec<String>,
        dimensions: Dimensions,
    },
    Describe {
        base64: String,
    },
    FaceSwap {
        source_base64: String,
        target_base64: String,
    },
    Video {
        prompt: String,
        image_url: String,
        motion: String,
    },
}

impl Submit {
    fn path(&self) -> [&'static str; 2] {
        match self {
            Submit::Imagine { .. } => ["submit", "imagine"],
            Submit::Action { .. } => ["submit", "action"],
            Submit::Modal { .. } => ["submit", "modal"],
            Submit::Blend { .. } => ["submit", "blend"],
            Submit::Describe { .. } => ["submit", "describe"],
            Submit::FaceSwap { .. } => ["insight-face", "swap"],
            Submit::Video { .. } => ["submit", "video"],
        }
    }

    fn body(&self) -> Map<String, Value> {
        let v = match self {
            Submit::Imagine {
                prompt,
                base64_array,
            } => json!({ "prompt": prompt, "base64Array": base64_array }),
            Submit::Action { task_id, custom_id } => {
                json!({ "taskId": task_id, "customId": custom_id })
            }
            Submit::Modal {
                task_id,
                prompt,
                mask_base64,
            } => {
                let mut m = json!({ "taskId": task_id });
                if let Some(p) = prompt {
                    m["prompt"] = json!(p);
                }
                if let Some(mask) = mask_base64 {
                    m["maskBase64"] = json!(mask);
                }
                m
            }
            Submit::Blend {
                base64_array,
                dimensions,
            } => json!({ "base64Array": base64_array, "dimensions": dimensions }),
            Submit::Describe { base64 } => json!({ "base64": base64 }),
            Submit::FaceSwap {
                source_base64,
                target_base64,
            } => json!({ "sourceBase64": source_base64, "targetBase64": target_base64 }),
            Submit::Video {
                prompt,
                image_url,
                motion,
            } => json!({ "prompt": prompt, "imageUrl": image_url, "motion": motion }),
        };
        match v {
            Value::Object(m) => m,
            _ => unreachable!("submit bodies are objects"),
        }
    }
}

/// The `data:<mime>;base64,<payload>` form the proxy expects for inline images.
pub fn data_url(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The proxy's answer to a submit call, as sent.
#[derive(Debug, Clone, Deserialize)]
pub struct SubmitReply {
    pub code: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// The upstream task id; proxies send it as a string or a number.
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub properties: Option<Value>,
}

/// What a submit reply means for the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    Accepted { upstream_id: String, code: i64 },
    Rejected { code: i64, message: String },
}

impl SubmitReply {
    pub fn upstream_id(&self) -> Option<String> {
        match self.result.as_ref()? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    pub fn outcome(&self) -> SubmitOutcome {
        // 1 = accepted, 21 = an identical task already exists (its id is returned),
        // 22 = accepted but queued behind others; all three leave a task to poll.
        let accepted = matches!(self.code, 1 | 21 | 22);
        match (accepted, self.upstream_id()) {
            (true, Some(upstream_id)) => SubmitOutcome::Accepted {
                upstream_id,
                code: self.code,
            },
            (true, None) => SubmitOutcome::Rejected {
                code: self.code,
                message: self.rejection("accepted without a task id"),
            },
            (false, _) => {
                let label = match self.code {
                    3 => "parent task not found",
                    4 => "validation error",
                    9 => "failure",
                    23 => "queue full",
                    24 => "banned prompt",
                    _ => "unexpected code",
                };
                SubmitOutcome::Rejected {
                    code: self.code,
                    message: self.rejection(label),
                }
            }
        }
    }

    fn rejection(&self, label: &str) -> String {
        let d = self.description.trim();
        if d.is_empty() {
            format!("upstream rejected the task ({}: {label})", self.code)
        } else {
            format!("upstream rejected the task ({}: {label}): {d}", self.code)
        }
    }
}

/// Task state as reported by the proxy; anything unrecognised maps to `Unknown` so a
/// new proxy status never breaks polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MjStatus {
    NotStart,
    Submitted,
    InProgress,
    Failure,
    Success,
    Modal,
    Cancel,
    #[default]
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MjButton {
    #[serde(default, deserialize_with = "null_default")]
    pub custom_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub label: String,
    #[serde(default, deserialize_with = "null_default")]
    pub emoji: String,
}

/// A task as the proxy reports it (fetch, list-by-condition, notifyHook callbacks).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MjTask {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub action: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub status: MjStatus,
    #[serde(default, deserialize_with = "lenient_string")]
    pub progress: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub image_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub fail_reason: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub submit_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub start_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub finish_time: Option<i64>,
    #[serde(default)]
    pub properties: Value,
    #[serde(default, deserialize_with = "lenient_buttons")]
    pub buttons: Vec<MjButton>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub prompt: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub description: Option<String>,
}

impl MjTask {
    /// Progress as a whole percentage: "45%", "45" and "45.5%" all give 45.
    pub fn percentage(&self) -> Option<u8> {
        let p = self.progress.as_deref()?.trim();
        let p = p.strip_suffix('%').unwrap_or(p).trim();
        let v: f64 = p.parse().ok()?;
        if !v.is_finite() {
            return None;
        }
        Some(v.clamp(0.0, 100.0).floor() as u8)
    }
}

/// Parses a task pushed to our notifyHook endpoint.
pub fn parse_task(body: &[u8]) -> Result<MjTask, UpstreamError> {
    let task: MjTask =
        serde_json::from_slice(body).map_err(|e| UpstreamError::Malformed(e.to_string()))?;
    if task.id.trim().is_empty() {
        return Err(UpstreamError::Malformed("task has an empty id".into()));
    }
    Ok(task)
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or number id, got {other}"
        ))),
    }
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn lenient_buttons<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<MjButton>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|b| serde_json::from_value(b).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// A configured midjourney-proxy endpoint. Cheap to clone.
#[derive(Clone)]
pub struct MjProxyClient {
    http: reqwest::Client,
    base: Url,
    prefix: &'static str,
    auth: MjAuth,
    key: String,
    timeout: Duration,
}

impl fmt::Debug for MjProxyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MjProxyClient")
            .field("base", &self.base.as_str())
            .field("prefix", &self.prefix)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl MjProxyClient {
    /// `speed` selects the proxy's mode-specific route family (`/mj-fast`, `/mj-relax`,
    /// `/mj-turbo`); `None` or an empty string uses the account default `/mj`.
    pub fn new(
        base_url: &str,
        auth: MjAuth,
        key: &str,
        speed: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, UpstreamError> {
        let prefix = match speed.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") => "mj",
            Some("fast") => "mj-fast",
            Some("relax") => "mj-relax",
            Some("turbo") => "mj-turbo",
            Some(other) => {
                return Err(UpstreamError::Transport(format!(
                    "unknown midjourney-proxy speed {other:?} (expected fast, relax or turbo)"
                )))
            }
        };
        let base = parse_base(base_url)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| UpstreamError::Transport(e.to_string()))?;
        Ok(MjProxyClient {
            http,
            base,
            prefix,
            auth,
            key: key.to_string(),
            timeout,
        })
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("base URL was validated as http(s)")
            .pop_if_empty()
            .push(self.prefix)
            .extend(segments);
        url
    }

    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, url);
        match self.auth {
            MjAuth::Bearer => rb.bearer_auth(&self.key),
            MjAuth::MjApiSecret => rb.header("mj-api-secret", &self.key),
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), UpstreamError> {
        let resp = rb
            .send()
            .await
            .map_err(|e| UpstreamError::from_reqwest(e, self.timeout))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| UpstreamError::from_reqwest(e, self.timeout))?;
        Ok((status, body.to_vec()))
    }

    /// Submits a job. `notify_hook` is the URL the proxy should call back on progress;
    /// `state` is echoed back verbatim in those callbacks.
    pub async fn submit(
        &self,
        s: &Submit,
        notify_hook: Option<&str>,
        state: Option<&str>,
    ) -> Result<SubmitReply, UpstreamError> {
        let mut body = s.body();
        if let Some(h) = notify_hook {
            body.insert("notifyHook".into(), json!(h));
        }
        if let Some(st) = state {
            body.insert("state".into(), json!(st));
        }
        let url = self.endpoint(&s.path());
        let (status, bytes) = self
            .send(self.request(reqwest::Method::POST, url).json(&body))
            .await?;
        if !(200..300).contains(&status) {
            return Err(UpstreamError::http(
                status,
                &String::from_utf8_lossy(&bytes),
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Malformed(e.to_string()))
    }

    /// The current state of one task; `None` when the proxy does not know it.
    pub async fn fetch(&self, upstream_id: &str) -> Result<Option<MjTask>, UpstreamError> {
        let url = self.endpoint(&["task", upstream_id, "fetch"]);
        let (status, bytes) = self.send(self.request(reqwest::Method::GET, url)).await?;
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(UpstreamError::http(
                status,
                &String::from_utf8_lossy(&bytes),
            ));
        }
        let text = String::from_utf8_lossy(&bytes);
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed == "null" {
            return Ok(None);
        }
        parse_task(trimmed.as_bytes()).map(Some)
    }

    /// Status of several tasks: one `list-by-condition` call, and when its reply cannot be
    /// read as a whole (one broken entry can make the whole array invalid JSON), each task
    /// fetched on its own, so that a bad entry fails only itself. Tasks that cannot be
    /// read are absent from the result (their own timeout still runs).
    pub async fn poll(&self, ids: &[String]) -> Result<Vec<MjTask>, UpstreamError> {
        match self.list_by_condition(ids).await {
            Err(UpstreamError::Malformed(e)) => {
                tracing::warn!(error = %e, "unreadable list-by-condition reply; fetching each task");
                let mut found = Vec::with_capacity(ids.len());
                for id in ids {
                    match self.fetch(id).await {
                        Ok(Some(t)) => found.push(t),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(upstream_id = %id, error = %e, "cannot read task"),
                    }
                }
                Ok(found)
            }
            other => other,
        }
    }

    /// Batch status poll. Ids the proxy does not know are simply absent from the result,
    /// and entries that cannot be parsed are skipped rather than failing the batch.
    pub async fn list_by_condition(&self, ids: &[String]) -> Result<Vec<MjTask>, UpstreamError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let url = self.endpoint(&["task", "list-by-condition"]);
        let (status, bytes) = self
            .send(
                self.request(reqwest::Method::POST, url)
                    .json(&json!({ "ids": ids })),
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(UpstreamError::http(
                status,
                &String::from_utf8_lossy(&bytes),
            ));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Malformed(e.to_string()))?;
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => Ok(items
                .into_iter()
                .filter_map(|item| match serde_json::from_value::<MjTask>(item) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping unparseable task in list-by-condition reply");
                        None
                    }
                })
                .collect()),
            other => Err(UpstreamError::Malformed(format!(
                "expected a task list, got {}",
                super::excerpt(&other.to_string())
            ))),
        }
    }
}

pub(crate) fn parse_base(base_url: &str) -> Result<Url, UpstreamError> {
    let base = Url::parse(base_url.trim()).map_err(|e| {
        UpstreamError::Transport(format!("invalid upstream base URL {base_url:?}: {e}"))
    })?;
    if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
        return Err(UpstreamError::Transport(format!(
            "upstream base URL {base_url:?} must be http or https"
        )));
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::test_http::{serve, Response};

    const T: Duration = Duration::from_secs(5);

    fn ok_reply() -> Response {
        Response::json(
            200,
            json!({"code": 1, "description": "Submitted", "result": "1712345678901234"}),
        )
    }

    fn reply(v: Value) -> SubmitReply {
        serde_json::from_value(v).unwrap()
    }

    #[tokio::test]
    async fn auth_headers() {
        let srv = serve("127.0.0.1", |_| ok_reply()).await;
        let imagine = Submit::Imagine {
            prompt: "cat".into(),
            base64_array: vec![],
        };
        let c = MjProxyClient::new(&srv.url(""), MjAuth::Bearer, "k1", None, T).unwrap();
        c.submit(&imagine, None, None).await.unwrap();
        let c = MjProxyClient::new(&srv.url(""), MjAuth::MjApiSecret, "k2", None, T).unwrap();
        c.submit(&imagine, None, None).await.unwrap();
        let reqs = srv.taken();
        assert_eq!(reqs[0].header("authorization"), Some("Bearer k1"));
        assert_eq!(reqs[0].header("mj-api-secret"), None);
        assert_eq!(reqs[1].header("mj-api-secret"), Some("k2"));
        assert_eq!(reqs[1].header("authorization"), None);
    }

    #[test]
    fn auth_config_names() {
        assert_eq!(
            serde_json::from_str::<MjAuth>("\"mj-api-secret\"").unwrap(),
            MjAuth::MjApiSecret
        );
        assert_eq!(
            serde_json::from_str::<MjAuth>("\"bearer\"").unwrap(),
            MjAuth::Bearer
        );
    }

    #[tokio::test]
    async fn speed_prefixes_apply_to_all_paths() {
        let srv = serve("127.0.0.1", |r| {
            if r.path.ends_with("/fetch") {
                Response::json(200, json!({"id": "7", "status": "SUCCESS"}))
            } else if r.path.ends_with("/list-by-condition") {
                Response::json(200, json!([]))
            } else {
                ok_reply()
            }
        })
        .await;
        let describe = Submit::Describe {
            base64: "data:image/png;base64,AA==".into(),
        };
        for (speed, prefix) in [
            (None, "/mj"),
            (Some(""), "/mj"),
            (Some("fast"), "/mj-fast"),
            (Some("relax"), "/mj-relax"),
            (Some("TURBO"), "/mj-turbo"),
        ] {
            // A trailing slash on the base must not produce a double slash.
            let c = MjProxyClient::new(&srv.url("/"), MjAuth::Bearer, "k", speed, T).unwrap();
            c.submit(&describe, None, None).await.unwrap();
            c.fetch("7").await.unwrap().unwrap();
            c.list_by_condition(&["7".into()]).await.unwrap();
            let reqs = srv.requests.lock().unwrap().drain(..).collect::<Vec<_>>();
            let paths: Vec<_> = reqs.iter().map(|r| r.path.as_str()).collect();
            assert_eq!(
                paths,
                [
                    format!("{prefix}/submit/describe"),
                    format!("{prefix}/task/7/fetch"),
                    format!("{prefix}/task/list-by-condition"),
                ]
            );
            assert_eq!(reqs[1].method, "GET");
        }
        let err = MjProxyClient::new(&srv.url(""), MjAuth::Bearer, "k", Some("slow"), T)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown midjourney-proxy speed"), "{err}");
    }

    #[tokio::test]
    async fn base_url_with_path_is_kept() {
        let srv = serve("127.0.0.1", |_| ok_reply()).await;
        let c = MjProxyClient::new(&srv.url("/proxy/api"), MjAuth::Bearer, "k", None, T).unwrap();
        c.submit(&Submit::Describe { base64: "x".into() }, None, None)
            .await
            .unwrap();
        assert_eq!(srv.taken()[0].path, "/proxy/api/mj/submit/describe");
    }

    #[tokio::test]
    async fn submit_bodies() {
        let srv = serve("127.0.0.1", |_| ok_reply()).await;
        let c = MjProxyClient::new(&srv.url(""), MjAuth::Bearer, "k", None, T).unwrap();
        let img = data_url("image/png", b"\x89PNG");
        assert_eq!(img, "data:image/png;base64,iVBORw==");
        let cases: Vec<(Submit, &str, Value)> = vec![
            (
                Submit::Imagine {
                    prompt: "a cat".into(),
                    base64_array: vec![img.clone()],
                },
                "/mj/submit/imagine",
                json!({"prompt": "a cat", "base64Array": [img]}),
            ),
            (
                Submit::Action {
                    task_id: "t1".into(),
                    custom_id: "MJ::JOB::upsample::1::abc".into(),
                },
                "/mj/submit/action",
                json!({"taskId": "t1", "customId": "MJ::JOB::upsample::1::abc"}),
            ),
            (
                Submit::Modal {
                    task_id: "t2".into(),
                    prompt: Some("more".into()),
                    mask_base64: Some(img.clone()),
                },
                "/mj/submit/modal",
                json!({"taskId": "t2", "prompt": "more", "maskBase64": img}),
            ),
            (
                Submit::Modal {
                    task_id: "t3".into(),
                    prompt: None,
                    mask_base64: None,
                },
                "/mj/submit/modal",
                json!({"taskId": "t3"}),
            ),
            (
                Submit::Blend {
                    base64_array: vec![img.clone(), img.clone()],
                    dimensions: Dimensions::Landscape,
                },
                "/mj/submit/blend",
                json!({"base64Array": [img, img], "dimensions": "LANDSCAPE"}),
            ),
            (
                Submit::Describe {
                    base64: img.clone(),
                },
                "/mj/submit/describe",
                json!({"base64": img}),
            ),
            (
                Submit::FaceSwap {
                    source_base64: "data:image/jpeg;base64,AA==".into(),
                    target_base64: img.clone(),
                },
                "/mj/insight-face/swap",
                json!({"sourceBase64": "data:image/jpeg;base64,AA==", "targetBase64": img}),
            ),
            (
                Submit::Video {
                    prompt: "pan".into(),
                    image_url: "https://cdn.example/a.png".into(),
                    motion: "low".into(),
                },
                "/mj/submit/video",
                json!({"prompt": "pan", "imageUrl": "https://cdn.example/a.png", "motion": "low"}),
            ),
        ];
        for (s, _, _) in &cases {
            c.submit(s, None, None).await.unwrap();
        }
        let reqs = srv.taken();
        for ((_, path, body), req) in cases.iter().zip(&reqs) {
            assert_eq!(req.method, "POST");
            assert_eq!(&req.path, path);
            assert_eq!(&req.json(), body, "{path}");
            assert!(req
                .header("content-type")
                .unwrap()
                .starts_with("application/json"));
        }
    }

    #[tokio::test]
    async fn notify_hook_and_state_are_added() {
        let srv = serve("127.0.0.1", |_| ok_reply()).await;
        let c = MjProxyClient::new(&srv.url(""), MjAuth::Bearer, "k", None, T).unwrap();
        let s = Submit::Imagine {
            prompt: "p".into(),
            base64_array: vec![],
        };
        let r = c
            .submit(&s, Some("https://api.example/hook"), Some("job-9"))
            .await
            .unwrap();
        assert_eq!(
            r.outcome(),
            SubmitOutcome::Accepted {
                upstream_id: "1712345678901234".into(),
                code: 1
            }
        );
        assert_eq!(
            srv.taken()[0].json(),
            json!({"prompt": "p", "base64Array": [], "notifyHook": "https://api.example/hook", "state": "job-9"})
        );
    }

    #[test]
    fn outcome_mapping() {
        for code in [1, 21, 22] {
            assert_eq!(
                reply(json!({"code": code, "result": "42"})).outcome(),
                SubmitOutcome::Accepted {
                    upstream_id: "42".into(),
                    code
                }
            );
        }
        // Numeric ids are accepted as well.
        assert_eq!(
            reply(json!({"code": 1, "result": 1712345678901234_i64})).upstream_id(),
            Some("1712345678901234".into())
        );
        let cases = [
            (23, "queue full"),
            (24, "banned prompt"),
            (3, "parent task not found"),
            (4, "validation error"),
            (9, "failure"),
            (7, "unexpected code"),
        ];
        for (code, label) in cases {
            let r = reply(json!({"code": code, "description": "nope", "result": null}));
            assert_eq!(
                r.outcome(),
                SubmitOutcome::Rejected {
                    code,
                    message: format!("upstream rejected the task ({code}: {label}): nope")
                }
            );
        }
        assert_eq!(
            reply(json!({"code": 1, "description": null})).outcome(),
            SubmitOutcome::Rejected {
                code: 1,
                message: "upstream rejected the task (1: accepted without a task id)".into()
            }
        );
        assert!(matches!(
            reply(json!({"code": 1, "result": ""})).outcome(),
            SubmitOutcome::Rejected { .. }
        ));
    }

    #[tokio::test]
    async fn rejected_code_over_the_wire() {
        let srv = serve("127.0.0.1", |_| {
            Response::json(
                200,
                json!({"code": 24, "description": "可能包含敏感词", "properties": {"promptEn": "x", "bannedWord": "y"}}),
            )
        })
        .await;
        let c = MjProxyClient::new(&srv.url(""), MjAuth::Bearer, "k", None, T).unwrap();
        let r = c
            .submit(&Submit::Describe { base64: "x".into() }, None, None)
            .await
            .unwrap();
        assert_eq!(r.properties.as_ref().unwrap()["bannedWord"], "y");
        match r.outcome() {
            SubmitOutcome::Rejected { code: 24, message } => {
                assert!(message.starts_with("upstream rejected the task (24: banned prompt)"))
            }
            o => panic!("{o:?}"),
        }
    }

    #[tokio::test]
    async fn malformed_and_http_errors() {
        let srv = serve("127.0.0.1", |r| {
            if r.path.contains("imagine") {
                Response::new(200, "<html>oops</html>")
            } else if r.path.contains("describe") {
                Response::new(500, "x".repeat(500))
            } else if r.path.contains("/task/missing/") {
                Response::new(404, "")
            } else if r.path.contains("/task/null/") {
                Response::json(200, Value::Null)
            } else if r.path.contains("/task/empty/") {
                Response::new(200, "")
            } else {
                Response::new(502, "bad gateway")
            }
        })
        .await;
        let c = MjProxyClient::new(&srv.url(""), MjAuth::Bearer, "k", None, T).unwrap();
        let e = c
            .submit(
                &Submit::Imagine {
                    prompt: "p".into(),
                    base64_array: vec![],
                },
                None,
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, UpstreamError::Malformed(_)), "{e:?}");
        let e = c
            .submit(&Submit::Describe { base64: "x".into() }, None, None)
            .await
            .unwrap_err();
        match &e {
            UpstreamError::Http { status: 500, body } => assert_eq!(body.len(), 300),
            e => panic!("{e:?}"),
        }
        assert_eq!(e.to_string(), "upstream answered HTTP 500");
        assert!(c.fetch("missing").await.unwrap().is_none());
        assert!(c.fetch("null").await.unwrap().is_none());
        assert!(c.fetch("empty").await.unwrap().is_none());
        assert!(matches!(
            c.fetch("other").await.unwrap_err(),
            UpstreamError::Http { status: 502, .. }
        ));
    }

    #[tokio::test]
    async fn transport_errors_and_timeouts() {
        // Bind then drop to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = MjProxyClient::new(
            &format!("http://127.0.0.1:{port}"),
            MjAuth::Bearer,
            "k",
            None,
            T,
        )
        .unwrap();
        let e = c.fetch("1").await.unwrap_err();
        assert!(matches!(e, UpstreamError::Transport(_)), "{e:?}");
        assert!(!e.is_timeout());
        assert!(!e.to_string().contains("127.0.0.1"), "{e}");

        let srv = serve("127.0.0.1", |_| {
            let mut r = ok_reply();
            r.delay = Some(Duration::from_secs(2));
            r
        })
        .await;
        let c = MjProxyClient::new(
            &srv.url(""),
            MjAuth::Bearer,
            "k",
            None,
            Duration::from_millis(200),
        )
        .unwrap();
        let e = c.fetch("1").await.unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
        assert_eq!(e.to_string(), "upstream unreachable: timed out after 0.2s");
    }

    fn full_task() -> Value {
        json!({
            "id": "1712345678901234",
            "action": "IMAGINE",
            "status": "IN_PROGRESS",
            "progress": "45%",
            "imageUrl": "https://cdn.example/p.png",
            "failReason": null,
            "submitTime": 1712345678000_i64,
            "startTime": "1712345679000",
            "finishTime": null,
            "properties": {"finalPrompt": "a cat --v 6", "discordInstanceId": "x"},
            "buttons": [
                {"customId": "MJ::JOB::upsample::1::abc", "label": "U1", "emoji": "", "style": 2, "type": 2},
                {"customId": "MJ::JOB::reroll::0::abc::SOLO", "emoji": "🔄"}
            ],
            "prompt": "a cat",
            "promptEn": "a cat",
            "description": "/imagine a cat",
            "state": "job-9",
            "someNewField": [1, 2, 3]
        })
    }

    #[test]
    fn parse_full_task() {
        let t = parse_task(full_task().to_string().as_bytes()).unwrap();
        assert_eq!(t.id, "1712345678901234");
        assert_eq!(t.action.as_deref(), Some("IMAGINE"));
        assert_eq!(t.status, MjStatus::InProgress);
        assert_eq!(t.percentage(), Some(45));
        assert_eq!(t.image_url.as_deref(), Some("https://cdn.example/p.png"));
        assert_eq!(t.fail_reason, None);
        assert_eq!(t.submit_time, Some(1712345678000));
        assert_eq!(t.start_time, Some(1712345679000));
        assert_eq!(t.finish_time, None);
        assert_eq!(t.properties["finalPrompt"], "a cat --v 6");
        assert_eq!(
            t.buttons,
            vec![
                MjButton {
                    custom_id: "MJ::JOB::upsample::1::abc".into(),
                    label: "U1".into(),
                    emoji: "".into()
                },
                MjButton {
                    custom_id: "MJ::JOB::reroll::0::abc::SOLO".into(),
                    label: "".into(),
                    emoji: "🔄".into()
                },
            ]
        );
        assert_eq!(t.prompt.as_deref(), Some("a cat"));
        assert_eq!(t.description.as_deref(), Some("/imagine a cat"));
        // Round-trips through our own serialisation (tasks are cached as JSON).
        let back = serde_json::to_value(&t).unwrap();
        assert_eq!(back["status"], "IN_PROGRESS");
        assert_eq!(back["imageUrl"], "https://cdn.example/p.png");
        assert_eq!(back["buttons"][0]["customId"], "MJ::JOB::upsample::1::abc");
    }

    #[test]
    fn parse_is_lenient() {
        let t = parse_task(
            br#"{"id": 99, "status": "SOMETHING_NEW", "buttons": null, "progress": 30}"#,
        )
        .unwrap();
        assert_eq!(t.id, "99");
        assert_eq!(t.status, MjStatus::Unknown);
        assert!(t.buttons.is_empty());
        assert_eq!(t.percentage(), Some(30));
        assert_eq!(t.properties, Value::Null);
        let t = parse_task(br#"{"id": "a", "status": null}"#).unwrap();
        assert_eq!(t.status, MjStatus::Unknown);
        for (s, st) in [
            ("NOT_START", MjStatus::NotStart),
            ("SUBMITTED", MjStatus::Submitted),
            ("IN_PROGRESS", MjStatus::InProgress),
            ("FAILURE", MjStatus::Failure),
            ("SUCCESS", MjStatus::Success),
            ("MODAL", MjStatus::Modal),
            ("CANCEL", MjStatus::Cancel),
        ] {
            let t = parse_task(json!({"id": "a", "status": s}).to_string().as_bytes()).unwrap();
            assert_eq!(t.status, st);
        }
        for bad in [
            &b"not json"[..],
            br#"{"status": "SUCCESS"}"#,
            br#"{"id": ""}"#,
        ] {
            assert!(matches!(parse_task(bad), Err(UpstreamError::Malformed(_))));
        }
    }

    #[test]
    fn percentage_parsing() {
        let mut t = parse_task(br#"{"id": "a"}"#).unwrap();
        for (p, want) in [
            ("45%", Some(45)),
            ("45", Some(45)),
            ("45.5%", Some(45)),
            (" 100% ", Some(100)),
            ("0%", Some(0)),
            ("150%", Some(100)),
            ("-3%", Some(0)),
            ("", None),
            ("%", None),
            ("abc", None),
            ("NaN%", None),
        ] {
            t.progress = Some(p.into());
            assert_eq!(t.percentage(), want, "{p:?}");
        }
        t.progress = None;
        assert_eq!(t.percentage(), None);
    }

    #[tokio::test]
    async fn list_by_condition_returns_known_tasks() {
        let srv = serve("127.0.0.1", |_| {
            Response::json(
                200,
                json!([
                    full_task(),
                    {"id": "2", "status": "SUCCESS", "progress": "100%"},
                    {"status": "broken entry without id"}
                ]),
            )
        })
        .await;
        let c = MjProxyClient::new(&srv.url(""), MjAuth::MjApiSecret, "k", None, T).unwrap();
        let ids = vec!["1712345678901234".to_string(), "2".into(), "3".into()];
        let tasks = c.list_by_condition(&ids).await.unwrap();
        assert_eq!(
            tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["1712345678901234", "2"]
        );
        let req = &srv.taken()[0];
        assert_eq!(req.method, "POST");
        assert_eq!(req.json(), json!({"ids": ids}));
        assert!(c.list_by_condition(&[]).await.unwrap().is_empty());
        assert_eq!(srv.taken().len(), 1, "empty id list needs no round trip");
    }
}
