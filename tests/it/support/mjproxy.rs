//! A fake midjourney-proxy on loopback, speaking the open midjourney-proxy HTTP protocol
//! (novicezk/midjourney-proxy and its trueai-org fork): `POST /submit/{imagine,action,modal,
//! blend,describe,video}`, `POST /insight-face/swap`, `GET /task/{id}/fetch` and
//! `POST /task/list-by-condition`, under each of the prefixes `/mj`, `/mj-fast`, `/mj-relax`
//! and `/mj-turbo`, with `Authorization: Bearer` or `mj-api-secret` auth.
//!
//! Tests script outcomes with directives in the prompt (`#submit=24`, `#end=failure`, ...;
//! see [`Directives`]) or with a default for prompt-less calls ([`FakeMj::set_default`]).
//! Tasks never move by themselves: the test drives them with [`FakeMj::step`] and friends,
//! and every change is POSTed to the task's `notifyHook` as midjourney-proxy does. Finished
//! tasks point at `/img/...` and `/vid/...` URLs on the fake, which serve tiny files.
#![allow(dead_code)]

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The route prefixes the fake serves (the proxy's default and its per-speed modes).
pub const PREFIXES: &[&str] = &["/mj", "/mj-fast", "/mj-relax", "/mj-turbo"];
/// The `failReason` of tasks that end in FAILURE.
pub const FAIL_REASON: &str = "Job failed: test";
/// How long `#submit=hang` (and nothing else) makes a submit wait before answering.
pub const HANG: Duration = Duration::from_secs(30);

/// A 1×1 transparent PNG, served for every `/img/...` URL.
const TINY_PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAAC0lEQVR4nGNgAAIAAAUAAXpeqz8AAAAASUVORK5CYII=";
/// An MP4 `ftyp` box, served for every `/vid/...` URL.
const TINY_MP4: &[u8] = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp41";

/// How clients must authenticate.
#[derive(Clone, Debug)]
pub enum Auth {
    /// `Authorization: Bearer <key>`.
    Bearer(String),
    /// `mj-api-secret: <key>`.
    Secret(String),
}

/// How a submit call is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submit {
    /// Reply with this `code`: 1, 21 and 22 accept (with a new task id; 22 queues the task
    /// as NOT_START), anything else (3, 4, 9, 23, 24, ...) rejects with `result: null`.
    Code(i64),
    /// HTTP 200 with the invalid JSON body `{"code":`.
    Malformed,
    /// HTTP 500.
    Http500,
    /// Sleep [`HANG`], then answer as `Code(1)`.
    Hang,
}

/// How an accepted task ends once stepped far enough.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum End {
    /// SUCCESS, "100%", with `imageUrl` and buttons.
    #[default]
    Success,
    /// FAILURE with `failReason` [`FAIL_REASON`].
    Failure,
    /// Stays IN_PROGRESS at "45%" forever.
    Stuck,
}

/// What happens to one submit: `#submit=N|malformed|http500|hang` and
/// `#end=success|failure|stuck` in a prompt; unknown values are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Directives {
    pub submit: Submit,
    pub end: End,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            submit: Submit::Code(1),
            end: End::Success,
        }
    }
}

impl Directives {
    /// The directives written in `text`, over the defaults (`#submit=1`, `#end=success`).
    pub fn parse(text: &str) -> Directives {
        Directives::default().overlay(text)
    }

    /// `self` with whatever `text` says replacing the matching fields.
    pub fn overlay(mut self, text: &str) -> Directives {
        for word in text.split_whitespace() {
            if let Some(v) = word.strip_prefix("#submit=") {
                self.submit = match v {
                    "malformed" => Submit::Malformed,
                    "http500" => Submit::Http500,
                    "hang" => Submit::Hang,
                    n => match n.parse() {
                        Ok(code) => Submit::Code(code),
                        Err(_) => self.submit,
                    },
                };
            } else if let Some(v) = word.strip_prefix("#end=") {
                self.end = match v {
                    "success" => End::Success,
                    "failure" => End::Failure,
                    "stuck" => End::Stuck,
                    _ => self.end,
                };
            }
        }
        self
    }
}

/// How the query endpoints (`fetch`, `list-by-condition`) fail while switched on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryFailure {
    /// HTTP 500.
    Http500,
    /// HTTP 200 with an invalid JSON body.
    Malformed,
}

/// One API request the fake received (downloads of `/img` and `/vid` are in
/// [`FakeMj::downloads`] instead).
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// The full path, prefix included, e.g. `/mj-fast/submit/imagine`.
    pub path: String,
    /// Header names are lower-case.
    pub headers: Vec<(String, String)>,
    /// The JSON body, or `Null` when there was none or it was not JSON.
    pub body: Value,
}

impl Call {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Imagine,
    Action,
    Modal,
    Blend,
    Describe,
    Swap,
    Video,
}

struct Task {
    id: String,
    action: &'static str,
    status: &'static str,
    progress: u8,
    prompt: String,
    description: String,
    image_url: Option<String>,
    fail_reason: Option<String>,
    submit_time: i64,
    start_time: Option<i64>,
    finish_time: Option<i64>,
    properties: Map<String, Value>,
    buttons: Vec<Value>,
    state: Value,
    notify_hook: Option<String>,
    end: End,
    hash: String,
    prefix: String,
    snapshots: Vec<Value>,
}

struct State {
    auth: Auth,
    base: String,
    default: Directives,
    notify: bool,
    query_failure: Option<QueryFailure>,
    last_id: u64,
    order: Vec<String>,
    tasks: HashMap<String, Task>,
    calls: Vec<Call>,
    downloads: Vec<String>,
    submits: usize,
    /// Upstream ids reported as broken JSON (`FakeMj::poison`).
    poisoned: std::collections::HashSet<String>,
}

type Shared = web::Data<Arc<Mutex<State>>>;

/// A running fake midjourney-proxy. Point the app at `url` + one of [`PREFIXES`].
#[derive(Clone)]
pub struct FakeMj {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    state: Arc<Mutex<State>>,
    client: reqwest::Client,
}

impl FakeMj {
    /// Starts the server on an ephemeral loopback port.
    pub async fn start(auth: Auth) -> FakeMj {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            auth,
            base: url.clone(),
            default: Directives::default(),
            notify: true,
            query_failure: None,
            last_id: 1_732_400_000_000,
            order: Vec::new(),
            tasks: HashMap::new(),
            calls: Vec::new(),
            downloads: Vec::new(),
            submits: 0,
            poisoned: Default::default(),
        }));
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(web::to(handle))
        })
        .workers(2)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        FakeMj { url, state, client }
    }

    /// The directives for calls without a prompt (action, blend, describe, faceswap) and the
    /// base that prompt directives override.
    pub fn set_default(&self, directives: Directives) {
        self.lock().default = directives;
    }

    /// Switches delivery to `notifyHook`s on or off (on at start). Snapshots are still kept.
    pub fn set_notify(&self, on: bool) {
        self.lock().notify = on;
    }

    /// From now on task `id` is reported as broken JSON by `fetch` and inside
    /// `list-by-condition` replies.
    pub fn poison(&self, id: &str) {
        self.lock().poisoned.insert(id.to_string());
    }

    /// Makes `fetch` and `list-by-condition` fail (`Some`) or work again (`None`).
    pub fn set_query_failure(&self, mode: Option<QueryFailure>) {
        self.lock().query_failure = mode;
    }

    /// Advances task `id` one step (NOT_START → SUBMITTED → IN_PROGRESS 10% → 45% → 90% →
    /// SUCCESS/FAILURE; stuck tasks stay at 45%), then POSTs the task to its `notifyHook`.
    /// Returns whether anything changed (false for terminal, stuck and MODAL tasks).
    /// Panics if the task is unknown.
    pub async fn step(&self, id: &str) -> bool {
        let (snapshot, hook) = {
            let mut s = self.lock();
            let base = s.base.clone();
            let notify = s.notify;
            let task = s
                .tasks
                .get_mut(id)
                .unwrap_or_else(|| panic!("fake midjourney-proxy has no task {id:?}"));
            if !task.advance(&base) {
                return false;
            }
            let snapshot = task.render();
            task.snapshots.push(snapshot.clone());
            let hook = if notify {
                task.notify_hook.clone()
            } else {
                None
            };
            (snapshot, hook)
        };
        if let Some(hook) = hook {
            let _ = self.client.post(hook).json(&snapshot).send().await;
        }
        true
    }

    /// Steps every task that can still move once (hooks go out concurrently, each task's in
    /// order).
    pub async fn step_all(&self) {
        let ids = self.movable();
        self.step_ids(ids).await;
    }

    /// Steps until every task is terminal, stuck or waiting for its modal.
    pub async fn finish_all(&self) {
        loop {
            let ids = self.movable();
            if ids.is_empty() {
                return;
            }
            self.step_ids(ids).await;
        }
    }

    /// Steps task `id` until it is terminal, stuck or waiting for its modal.
    pub async fn finish(&self, id: &str) {
        while self.step(id).await {}
    }

    /// Every state task `id` reached by [`FakeMj::step`], in order, as notified (or as it
    /// would have been, with notification off). Empty for unknown ids.
    pub fn snapshots(&self, id: &str) -> Vec<Value> {
        self.lock()
            .tasks
            .get(id)
            .map(|t| t.snapshots.clone())
            .unwrap_or_default()
    }

    /// POSTs snapshot `index` of task `id` to its `notifyHook` again; returns the hook's HTTP
    /// status (None if the request failed). Panics without such a snapshot or hook.
    pub async fn replay_hook(&self, id: &str, index: usize) -> Option<u16> {
        let snapshots = self.snapshots(id);
        let snapshot = snapshots.get(index).unwrap_or_else(|| {
            panic!(
                "task {id:?} has {} snapshots, no index {index}",
                snapshots.len()
            )
        });
        let body = serde_json::to_string(snapshot).unwrap();
        self.post_hook_raw(id, &body).await
    }

    /// POSTs `body` verbatim (as `application/json`) to task `id`'s `notifyHook`; returns the
    /// hook's HTTP status (None if the request failed). Panics if the task has no hook.
    pub async fn post_hook_raw(&self, id: &str, body: &str) -> Option<u16> {
        let hook = self
            .lock()
            .tasks
            .get(id)
            .and_then(|t| t.notify_hook.clone())
            .unwrap_or_else(|| panic!("task {id:?} is unknown or has no notifyHook"));
        self.client
            .post(hook)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// Every API request received so far, in order (rejected ones included).
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The paths of `/img/...` and `/vid/...` downloads, in order.
    pub fn downloads(&self) -> Vec<String> {
        self.lock().downloads.clone()
    }

    /// The ids of every task created (accepted submits and modal-waiting actions), in order.
    pub fn upstream_ids(&self) -> Vec<String> {
        self.lock().order.clone()
    }

    /// Task `id` as `GET /task/{id}/fetch` would return it.
    pub fn task(&self, id: &str) -> Option<Value> {
        self.lock().tasks.get(id).map(Task::render)
    }

    /// The prefix (`/mj`, `/mj-fast`, ...) task `id` was submitted under.
    pub fn prefix(&self, id: &str) -> Option<String> {
        self.lock().tasks.get(id).map(|t| t.prefix.clone())
    }

    /// How many authorized submit requests (any outcome) arrived, modal and faceswap included.
    pub fn count_submits(&self) -> usize {
        self.lock().submits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn movable(&self) -> Vec<String> {
        let s = self.lock();
        s.order
            .iter()
            .filter(|id| s.tasks[id.as_str()].movable())
            .cloned()
            .collect()
    }

    async fn step_ids(&self, ids: Vec<String>) {
        futures::stream::iter(ids)
            .for_each_concurrent(32, |id| async move {
                self.step(&id).await;
            })
            .await;
    }
}

impl Auth {
    fn accepts(&self, headers: &[(String, String)]) -> bool {
        match self {
            Auth::Bearer(key) => header(headers, "authorization") == Some(&format!("Bearer {key}")),
            Auth::Secret(key) => header(headers, "mj-api-secret") == Some(key.as_str()),
        }
    }
}

impl Task {
    fn movable(&self) -> bool {
        match self.status {
            "NOT_START" | "SUBMITTED" => true,
            "IN_PROGRESS" => !(self.end == End::Stuck && self.progress >= 45),
            _ => false,
        }
    }

    fn advance(&mut self, base: &str) -> bool {
        if !self.movable() {
            return false;
        }
        match (self.status, self.progress) {
            ("NOT_START", _) => self.status = "SUBMITTED",
            ("SUBMITTED", _) => {
                self.status = "IN_PROGRESS";
                self.progress = 10;
                self.start_time = Some(now_ms());
            }
            (_, 10) => self.progress = 45,
            (_, 45) => self.progress = 90,
            _ => self.terminate(base),
        }
        true
    }

    fn terminate(&mut self, base: &str) {
        self.finish_time = Some(now_ms());
        if self.end == End::Failure {
            self.status = "FAILURE";
            self.fail_reason = Some(FAIL_REASON.to_string());
            return;
        }
        self.status = "SUCCESS";
        self.progress = 100;
        let (id, h) = (&self.id, &self.hash);
        let (file, buttons) = match self.action {
            "UPSCALE" => ("upscaled.png", upscale_buttons(h)),
            "DESCRIBE" => {
                let suggestions = DESCRIBE_SUGGESTIONS.to_string();
                self.properties
                    .insert("finalPrompt".into(), json!(suggestions));
                self.prompt = suggestions;
                ("described.png", Vec::new())
            }
            "SWAP_FACE" => ("swapped.png", Vec::new()),
            "VIDEO" => {
                let urls: Vec<String> = (1..=4)
                    .map(|n| format!("{base}/vid/{id}/{n}.mp4"))
                    .collect();
                self.properties.insert("videoUrls".into(), json!(urls));
                ("cover.png", video_buttons(h))
            }
            _ => ("grid.png", grid_buttons(h)),
        };
        self.image_url = Some(format!("{base}/img/{id}/{file}"));
        self.buttons = buttons;
    }

    fn render(&self) -> Value {
        json!({
            "id": self.id,
            "action": self.action,
            "status": self.status,
            "progress": format!("{}%", self.progress),
            "prompt": self.prompt,
            "promptEn": self.prompt,
            "description": self.description,
            "imageUrl": self.image_url,
            "failReason": self.fail_reason,
            "submitTime": self.submit_time,
            "startTime": self.start_time,
            "finishTime": self.finish_time,
            "properties": self.properties,
            "buttons": self.buttons,
            "state": self.state,
            "notifyHook": self.notify_hook,
        })
    }
}

const DESCRIBE_SUGGESTIONS: &str = "1️⃣ a cat sitting on a sunlit windowsill, soft morning light, \
    watercolor --ar 1:1\n\n2️⃣ a tabby cat curled up by a window, cozy interior, film photograph \
    --ar 1:1\n\n3️⃣ portrait of a ginger cat looking outside, warm tones, detailed fur --ar 1:1\
    \n\n4️⃣ minimalist illustration of a cat at a window, pastel palette --ar 1:1";

fn button(custom_id: String, label: &str, emoji: &str) -> Value {
    json!({ "customId": custom_id, "label": label, "emoji": emoji, "style": 2, "type": 2 })
}

fn grid_buttons(h: &str) -> Vec<Value> {
    let mut b: Vec<Value> = (1..=4)
        .map(|i| button(format!("MJ::JOB::upsample::{i}::{h}"), &format!("U{i}"), ""))
        .collect();
    b.extend((1..=4).map(|i| {
        button(
            format!("MJ::JOB::variation::{i}::{h}"),
            &format!("V{i}"),
            "",
        )
    }));
    b.push(button(format!("MJ::JOB::reroll::0::{h}::SOLO"), "", "🔄"));
    b
}

fn upscale_buttons(h: &str) -> Vec<Value> {
    let solo = |kind: &str, label: &str, emoji: &str| {
        button(format!("MJ::JOB::{kind}::1::{h}::SOLO"), label, emoji)
    };
    vec![
        solo("upsample_v6_2x_subtle", "Upscale (Subtle)", "⬆️"),
        solo("upsample_v6_2x_creative", "Upscale (Creative)", "⬆️"),
        solo("high_variation", "Vary (Strong)", "🪄"),
        solo("low_variation", "Vary (Subtle)", "🪄"),
        solo("pan_left", "", "⬅️"),
        solo("pan_right", "", "➡️"),
        solo("pan_up", "", "⬆️"),
        solo("pan_down", "", "⬇️"),
        button(format!("MJ::Inpaint::1::{h}::SOLO"), "Vary (Region)", "🖌️"),
        button(format!("MJ::CustomZoom::{h}"), "Custom Zoom", "🔍"),
        solo("upsample_v5_2x", "Upscale (2x)", ""),
        solo("upsample_v5_4x", "Upscale (4x)", ""),
    ]
}

fn video_buttons(h: &str) -> Vec<Value> {
    (1..=4)
        .map(|i| {
            button(
                format!("MJ::JOB::animate_extend::{i}::{h}"),
                &format!("Extend {i}"),
                "🎞️",
            )
        })
        .collect()
}

/// The task action a button's `customId` produces.
fn action_of(custom_id: &str) -> Option<&'static str> {
    let has = |s: &str| custom_id.contains(s);
    Some(if has("animate_extend") {
        "VIDEO"
    } else if has("::Inpaint::") {
        "INPAINT"
    } else if has("CustomZoom") {
        "OUTPAINT"
    } else if has("upsample") {
        "UPSCALE"
    } else if has("variation") {
        "VARIATION"
    } else if has("reroll") {
        "REROLL"
    } else if has("pan_") {
        "PAN"
    } else {
        return None;
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn json_reply(status: u16, body: &Value) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap()).json(body)
}

fn malformed() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body("{\"code\":")
}

fn http500() -> HttpResponse {
    HttpResponse::InternalServerError()
        .content_type("text/plain")
        .body("Internal Server Error")
}

/// `(prefix, route)` for paths under one of [`PREFIXES`].
fn split_prefix(path: &str) -> Option<(&'static str, &str)> {
    PREFIXES.iter().find_map(|p| {
        let rest = path.strip_prefix(p)?;
        rest.starts_with('/').then_some((*p, rest))
    })
}

async fn handle(req: HttpRequest, body: web::Bytes, state: Shared) -> HttpResponse {
    let method = req.method().as_str().to_string();
    let path = req.path().to_string();
    if method == "GET" && (path.starts_with("/img/") || path.starts_with("/vid/")) {
        state.lock().unwrap().downloads.push(path.clone());
        return if path.starts_with("/img/") {
            HttpResponse::Ok()
                .content_type("image/png")
                .body(STANDARD.decode(TINY_PNG_B64).unwrap())
        } else {
            HttpResponse::Ok().content_type("video/mp4").body(TINY_MP4)
        };
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let route = split_prefix(&path);
    let endpoint = match route.map(|(_, r)| r) {
        Some("/submit/imagine") => Some(Endpoint::Imagine),
        Some("/submit/action") => Some(Endpoint::Action),
        Some("/submit/modal") => Some(Endpoint::Modal),
        Some("/submit/blend") => Some(Endpoint::Blend),
        Some("/submit/describe") => Some(Endpoint::Describe),
        Some("/insight-face/swap") => Some(Endpoint::Swap),
        Some("/submit/video") => Some(Endpoint::Video),
        _ => None,
    };
    let (authorized, query_failure) = {
        let mut s = state.lock().unwrap();
        let authorized = s.auth.accepts(&headers);
        if authorized && method == "POST" && endpoint.is_some() {
            s.submits += 1;
        }
        s.calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            headers,
            body: json.clone(),
        });
        (authorized, s.query_failure)
    };
    let Some((prefix, route)) = route else {
        return json_reply(404, &json!({ "code": 404, "description": "not found" }));
    };
    if !authorized {
        return json_reply(401, &json!({ "code": 401, "description": "unauthorized" }));
    }
    if let (Some(endpoint), "POST") = (endpoint, method.as_str()) {
        let mut decision = decide(&mut state.lock().unwrap(), prefix, endpoint, &json, false);
        if let Decision::Hang = decision {
            tokio::time::sleep(HANG).await;
            decision = decide(&mut state.lock().unwrap(), prefix, endpoint, &json, true);
        }
        return match decision {
            Decision::Reply(v) => json_reply(200, &v),
            Decision::Malformed => malformed(),
            Decision::Http500 | Decision::Hang => http500(),
        };
    }
    let fetch_id = route
        .strip_prefix("/task/")
        .and_then(|r| r.strip_suffix("/fetch"));
    let is_list = method == "POST" && route == "/task/list-by-condition";
    if (method == "GET" && fetch_id.is_some()) || is_list {
        match query_failure {
            Some(QueryFailure::Http500) => return http500(),
            Some(QueryFailure::Malformed) => return malformed(),
            None => {}
        }
        let s = state.lock().unwrap();
        if let Some(id) = fetch_id.filter(|_| method == "GET") {
            if s.poisoned.contains(id) {
                return malformed();
            }
            return match s.tasks.get(id) {
                Some(t) => json_reply(200, &t.render()),
                None => json_reply(404, &json!({ "code": 404, "description": "not found" })),
            };
        }
        // A poisoned task is written as a truncated object, which makes the whole array
        // invalid JSON (as one broken entry from a real proxy would).
        let found: Vec<String> = json["ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|id| {
                let id = id.as_str()?;
                let t = s.tasks.get(id)?;
                Some(if s.poisoned.contains(id) {
                    format!("{{\"id\":\"{id}\",\"status\":\"SUCC")
                } else {
                    t.render().to_string()
                })
            })
            .collect();
        return HttpResponse::Ok()
            .content_type("application/json")
            .body(format!("[{}]", found.join(",")));
    }
    json_reply(404, &json!({ "code": 404, "description": "not found" }))
}

enum Decision {
    Reply(Value),
    Malformed,
    Http500,
    Hang,
}

fn reply(code: i64, description: &str, result: Option<&str>) -> Decision {
    Decision::Reply(json!({
        "code": code,
        "description": description,
        "result": result,
        "properties": {},
    }))
}

/// How `submit` is answered when it does not accept: `None` means go ahead.
fn refusal(submit: Submit, force_ok: bool, prompt: &str) -> Option<Decision> {
    if force_ok {
        return None;
    }
    Some(match submit {
        Submit::Code(1 | 21 | 22) => return None,
        Submit::Malformed => Decision::Malformed,
        Submit::Http500 => Decision::Http500,
        Submit::Hang => Decision::Hang,
        Submit::Code(24) => Decision::Reply(json!({
            "code": 24,
            "description": "banned prompt",
            "result": null,
            "properties": { "promptEn": prompt, "bannedWord": "test" },
        })),
        Submit::Code(code) => {
            let description = match code {
                3 => "parent not found",
                4 => "validation error",
                9 => "submit failed",
                23 => "queue full, please try again later",
                _ => "failed",
            };
            reply(code, description, None)
        }
    })
}

fn accepted_code(submit: Submit, force_ok: bool) -> i64 {
    match submit {
        Submit::Code(code @ (21 | 22)) if !force_ok => code,
        _ => 1,
    }
}

fn accepted_description(code: i64) -> &'static str {
    match code {
        21 => "Existed",
        22 => "Waiting in queue, there are 1 tasks ahead",
        _ => "Submit success",
    }
}

struct NewTask<'a> {
    action: &'static str,
    status: &'static str,
    prompt: String,
    description: String,
    body: &'a Value,
    end: End,
    prefix: &'static str,
}

impl State {
    fn create(&mut self, t: NewTask<'_>) -> String {
        self.last_id += 1;
        let id = self.last_id.to_string();
        let hash = uuid::Uuid::new_v4().simple().to_string();
        let mut properties = Map::new();
        properties.insert("finalPrompt".into(), json!(t.prompt));
        properties.insert("messageHash".into(), json!(hash));
        let task = Task {
            id: id.clone(),
            action: t.action,
            status: t.status,
            progress: 0,
            prompt: t.prompt,
            description: t.description,
            image_url: None,
            fail_reason: None,
            submit_time: now_ms(),
            start_time: None,
            finish_time: None,
            properties,
            buttons: Vec::new(),
            state: t.body.get("state").cloned().unwrap_or(Value::Null),
            notify_hook: notify_hook(t.body),
            end: t.end,
            hash,
            prefix: t.prefix.to_string(),
            snapshots: Vec::new(),
        };
        self.tasks.insert(id.clone(), task);
        self.order.push(id.clone());
        id
    }
}

fn notify_hook(body: &Value) -> Option<String> {
    body.get("notifyHook")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

fn text<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

fn filled<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    text(body, key).filter(|v| !v.trim().is_empty())
}

fn invalid(what: &str) -> Decision {
    reply(4, &format!("validation error: {what}"), None)
}

/// Validates a submit, applies its directives and creates the task; `force_ok` answers a
/// hung submit as accepted.
fn decide(
    s: &mut State,
    prefix: &'static str,
    endpoint: Endpoint,
    body: &Value,
    force_ok: bool,
) -> Decision {
    let default = s.default;
    match endpoint {
        Endpoint::Imagine | Endpoint::Video => {
            let prompt = text(body, "prompt").unwrap_or("");
            let (action, command) = if endpoint == Endpoint::Imagine {
                if prompt.trim().is_empty() {
                    return invalid("prompt can not be empty");
                }
                ("IMAGINE", "/imagine")
            } else {
                if filled(body, "imageUrl").is_none() {
                    return invalid("imageUrl can not be empty");
                }
                ("VIDEO", "/video")
            };
            let d = default.overlay(prompt);
            if let Some(r) = refusal(d.submit, force_ok, prompt) {
                return r;
            }
            let code = accepted_code(d.submit, force_ok);
            let id = s.create(NewTask {
                action,
                status: initial_status(code),
                prompt: prompt.to_string(),
                description: format!("{command} {prompt}"),
                body,
                end: d.end,
                prefix,
            });
            reply(code, accepted_description(code), Some(&id))
        }
        Endpoint::Blend | Endpoint::Describe | Endpoint::Swap => {
            let (action, description) = match endpoint {
                Endpoint::Blend => {
                    let n = body["base64Array"].as_array().map_or(0, Vec::len);
                    if !(2..=5).contains(&n) {
                        return invalid("base64Array must hold 2 to 5 images");
                    }
                    let dims = text(body, "dimensions").unwrap_or("SQUARE");
                    if !matches!(dims, "PORTRAIT" | "SQUARE" | "LANDSCAPE") {
                        return invalid("dimensions must be PORTRAIT, SQUARE or LANDSCAPE");
                    }
                    ("BLEND", format!("/blend {n} images {dims}"))
                }
                Endpoint::Describe => {
                    if filled(body, "base64").is_none() {
                        return invalid("base64 can not be empty");
                    }
                    ("DESCRIBE", "/describe image.png".to_string())
                }
                _ => {
                    if filled(body, "sourceBase64").is_none()
                        || filled(body, "targetBase64").is_none()
                    {
                        return invalid("sourceBase64 and targetBase64 can not be empty");
                    }
                    ("SWAP_FACE", "/swap".to_string())
                }
            };
            if let Some(r) = refusal(default.submit, force_ok, "") {
                return r;
            }
            let code = accepted_code(default.submit, force_ok);
            let id = s.create(NewTask {
                action,
                status: initial_status(code),
                prompt: String::new(),
                description,
                body,
                end: default.end,
                prefix,
            });
            reply(code, accepted_description(code), Some(&id))
        }
        Endpoint::Action => {
            let (Some(task_id), Some(custom_id)) =
                (filled(body, "taskId"), filled(body, "customId"))
            else {
                return invalid("taskId and customId can not be empty");
            };
            let Some(parent) = s.tasks.get(task_id) else {
                return reply(3, "parent not found", None);
            };
            if parent.status != "SUCCESS" {
                return invalid("parent task status is not SUCCESS");
            }
            if !parent.buttons.iter().any(|b| b["customId"] == custom_id) {
                return invalid("customId is not a button of the parent task");
            }
            let Some(action) = action_of(custom_id) else {
                return invalid("unsupported customId");
            };
            let prompt = parent.prompt.clone();
            if let Some(r) = refusal(default.submit, force_ok, &prompt) {
                return r;
            }
            let needs_modal = matches!(action, "INPAINT" | "OUTPAINT");
            let code = if needs_modal {
                21
            } else {
                accepted_code(default.submit, force_ok)
            };
            let id = s.create(NewTask {
                action,
                status: if needs_modal {
                    "MODAL"
                } else {
                    initial_status(code)
                },
                prompt,
                description: format!("/action {custom_id} on {task_id}"),
                body,
                end: default.end,
                prefix,
            });
            let description = if needs_modal {
                "Waiting for window confirm"
            } else {
                accepted_description(code)
            };
            reply(code, description, Some(&id))
        }
        Endpoint::Modal => {
            let Some(task_id) = filled(body, "taskId") else {
                return invalid("taskId can not be empty");
            };
            let Some(task) = s.tasks.get_mut(task_id) else {
                return reply(3, "parent not found", None);
            };
            if task.status != "MODAL" {
                return invalid("task is not waiting for a modal");
            }
            if task.action == "INPAINT" && filled(body, "maskBase64").is_none() {
                return invalid("maskBase64 can not be empty");
            }
            let prompt = text(body, "prompt");
            let d = default.overlay(prompt.unwrap_or(""));
            if let Some(r) = refusal(d.submit, force_ok, prompt.unwrap_or(&task.prompt)) {
                return r;
            }
            let code = accepted_code(d.submit, force_ok);
            task.status = initial_status(code);
            task.end = d.end;
            if let Some(p) = prompt.filter(|p| !p.trim().is_empty()) {
                task.prompt = p.to_string();
                task.properties.insert("finalPrompt".into(), json!(p));
            }
            if let Some(hook) = notify_hook(body) {
                task.notify_hook = Some(hook);
            }
            reply(code, accepted_description(code), Some(task_id))
        }
    }
}

fn initial_status(code: i64) -> &'static str {
    if code == 22 {
        "NOT_START"
    } else {
        "SUBMITTED"
    }
}
