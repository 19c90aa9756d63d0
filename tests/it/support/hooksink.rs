//! A customer's webhook receiver on loopback: accepts a request on any path, records it,
//! and answers as scripted (a sequence of statuses, a redirect, or a delay), so tests can
//! check what the app delivers to customers' webhook URLs and how it retries.
#![allow(dead_code)]

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the sink received.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub method: String,
    /// The request path with its query string, e.g. `/hooks/a?x=1`.
    pub path: String,
    /// Header names are lower-case.
    pub headers: Vec<(String, String)>,
    /// The JSON body, or `Null` if it was not JSON.
    pub body: Value,
    /// The body as received (for signature checks).
    pub raw: String,
    /// When the request arrived (before any scripted delay).
    pub at: Instant,
}

impl Delivery {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    deliveries: Vec<Delivery>,
    replies: VecDeque<u16>,
    redirect: Option<String>,
    delay: Option<Duration>,
}

type Shared = web::Data<Arc<Mutex<State>>>;

/// A running webhook receiver; give the app `url` + any path.
#[derive(Clone)]
pub struct HookSink {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl HookSink {
    /// Starts the receiver on an ephemeral loopback port; it answers 200 until scripted.
    pub async fn start() -> HookSink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(web::to(handle))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        HookSink { url, state }
    }

    /// Every request received so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().unwrap().deliveries.clone()
    }

    /// The next requests get these statuses, one each, in order; after them, 200.
    pub fn set_replies(&self, statuses: Vec<u16>) {
        self.state.lock().unwrap().replies = statuses.into();
    }

    /// While set, every request gets a 302 to this Location (scripted statuses are kept).
    pub fn set_redirect(&self, location: Option<String>) {
        self.state.lock().unwrap().redirect = location;
    }

    /// While set, every reply waits this long first.
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Waits until at least `n` requests have arrived and returns them all; panics after
    /// `timeout`, listing what did arrive.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.deliveries();
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                let listed: Vec<String> = got
                    .iter()
                    .map(|d| format!("  {} {} {}", d.method, d.path, d.raw))
                    .collect();
                panic!(
                    "hook sink: expected {n} deliveries within {timeout:?}, got {}:\n{}",
                    got.len(),
                    listed.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(req: HttpRequest, body: web::Bytes, state: Shared) -> HttpResponse {
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_string(), |p| p.as_str().to_string());
    let delivery = Delivery {
        method: req.method().as_str().to_string(),
        path,
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    let (redirect, status, delay) = {
        let mut s = state.lock().unwrap();
        s.deliveries.push(delivery);
        let redirect = s.redirect.clone();
        let status = if redirect.is_none() {
            s.replies.pop_front().unwrap_or(200)
        } else {
            302
        };
        (redirect, status, s.delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(location) = redirect {
        return HttpResponse::Found()
            .insert_header(("location", location))
            .finish();
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).finish()
}
