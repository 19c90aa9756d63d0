//! A fake OpenAI-compatible images API on loopback: `POST /v1/images/generations` (JSON)
//! and `POST /v1/images/edits` (multipart/form-data with an `image` file part), answered in
//! OpenAI's shape (`{"created":..,"data":[{"url":..}]}`, or `b64_json` when the prompt holds
//! `#b64`), with Bearer-key auth and OpenAI's error shape.
//!
//! Prompt directives script failures: `#images=500`, `#images=400` (safety rejection),
//! `#images=malformed` (truncated JSON) and `#images=slow` (answers after [`SLOW`]).
//! Every API call is recorded, multipart bodies parsed into fields and the image part;
//! the returned `/files/...` URLs serve a tiny PNG.
#![allow(dead_code)]

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long `#images=slow` waits before answering.
pub const SLOW: Duration = Duration::from_secs(30);

/// A 1×1 transparent PNG: the `b64_json` payload and the body of every `/files/...` URL.
pub const TINY_PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAAC0lEQVR4nGNgAAIAAAUAAXpeqz8AAAAASUVORK5CYII=";

/// One API request the fake received (downloads of `/files/...` are in
/// [`FakeImages::downloads`] instead).
#[derive(Clone, Debug)]
pub struct ImagesCall {
    pub method: String,
    pub path: String,
    /// Header names are lower-case.
    pub headers: Vec<(String, String)>,
    /// The JSON body; `Null` for multipart (or anything not JSON).
    pub json: Value,
    /// Multipart text fields (parts without a filename), in order.
    pub fields: Vec<(String, String)>,
    /// The names of all multipart parts, files included, in order.
    pub parts: Vec<String>,
    /// Byte length of the first `image` (or `image[]`) part.
    pub image_len: Option<usize>,
    /// Content-Type of that part, if it had one.
    pub image_type: Option<String>,
}

impl ImagesCall {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first multipart text field called `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    key: String,
    base: String,
    calls: Vec<ImagesCall>,
    downloads: Vec<String>,
}

type Shared = web::Data<Arc<Mutex<State>>>;

/// A running fake images API; its base URL for an OpenAI client is `url` + `/v1`.
#[derive(Clone)]
pub struct FakeImages {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeImages {
    /// Starts the server on an ephemeral loopback port, accepting `Authorization: Bearer <key>`.
    pub async fn start(key: &str) -> FakeImages {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            key: key.to_string(),
            base: url.clone(),
            calls: Vec::new(),
            downloads: Vec::new(),
        }));
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
        FakeImages { url, state }
    }

    /// Every API request received so far, in order (rejected ones included).
    pub fn calls(&self) -> Vec<ImagesCall> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The paths of `/files/...` downloads, in order.
    pub fn downloads(&self) -> Vec<String> {
        self.state.lock().unwrap().downloads.clone()
    }
}

/// OpenAI's error shape.
fn error(status: u16, message: &str, kind: Option<&str>) -> HttpResponse {
    let mut err = json!({ "message": message });
    if let Some(kind) = kind {
        err["type"] = json!(kind);
    }
    HttpResponse::build(StatusCode::from_u16(status).unwrap()).json(json!({ "error": err }))
}

async fn handle(req: HttpRequest, body: web::Bytes, state: Shared) -> HttpResponse {
    let method = req.method().as_str().to_string();
    let path = req.path().to_string();
    if method == "GET" && path.starts_with("/files/") {
        state.lock().unwrap().downloads.push(path);
        return HttpResponse::Ok()
            .content_type("image/png")
            .body(STANDARD.decode(TINY_PNG_B64).unwrap());
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let parts = boundary(&content_type).and_then(|b| parse_multipart(&body, &b));
    let mut call = ImagesCall {
        method: method.clone(),
        path: path.clone(),
        headers,
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        fields: Vec::new(),
        parts: Vec::new(),
        image_len: None,
        image_type: None,
    };
    for part in parts.iter().flatten() {
        call.parts.push(part.name.clone());
        if matches!(part.name.as_str(), "image" | "image[]") && call.image_len.is_none() {
            call.image_len = Some(part.data.len());
            call.image_type = part.content_type.clone();
        } else if part.filename.is_none() {
            let value = String::from_utf8_lossy(&part.data).into_owned();
            call.fields.push((part.name.clone(), value));
        }
    }
    let (authorized, base) = {
        let mut s = state.lock().unwrap();
        s.calls.push(call.clone());
        let expected = format!("Bearer {}", s.key);
        (
            call.header("authorization") == Some(&expected),
            s.base.clone(),
        )
    };
    if !authorized {
        let kind = Some("invalid_request_error");
        return error(401, "Incorrect API key provided", kind);
    }
    let (prompt, n) = match (method.as_str(), path.as_str()) {
        ("POST", "/v1/images/generations") => {
            if call.json.is_null() {
                let msg = "We could not parse the JSON body of your request.";
                return error(400, msg, Some("invalid_request_error"));
            }
            let n = match &call.json["n"] {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            };
            (call.json["prompt"].as_str().map(str::to_string), n)
        }
        ("POST", "/v1/images/edits") => {
            if parts.is_none() {
                let msg = "Invalid multipart/form-data body.";
                return error(400, msg, Some("invalid_request_error"));
            }
            if call.image_len.is_none() {
                let msg = "Missing required parameter: 'image'.";
                return error(400, msg, Some("invalid_request_error"));
            }
            let n = call.field("n").and_then(|n| n.trim().parse().ok());
            (call.field("prompt").map(str::to_string), n)
        }
        _ => {
            let msg = format!("Invalid URL ({method} {path})");
            return error(404, &msg, Some("invalid_request_error"));
        }
    };
    let Some(prompt) = prompt.filter(|p| !p.trim().is_empty()) else {
        let msg = "Missing required parameter: 'prompt'.";
        return error(400, msg, Some("invalid_request_error"));
    };
    let directive = prompt
        .split_whitespace()
        .find_map(|w| w.strip_prefix("#images="));
    match directive {
        Some("500") => return error(500, "upstream exploded", None),
        Some("400") => {
            let msg = "Your request was rejected as a result of our safety system.";
            return error(400, msg, None);
        }
        Some("malformed") => {
            return HttpResponse::Ok()
                .content_type("application/json")
                .body("{\"data\":[")
        }
        Some("slow") => tokio::time::sleep(SLOW).await,
        _ => {}
    }
    let n = n.unwrap_or(1).clamp(1, 10);
    let b64 = prompt.split_whitespace().any(|w| w == "#b64");
    let data: Vec<Value> = (0..n)
        .map(|_| {
            if b64 {
                json!({ "b64_json": TINY_PNG_B64 })
            } else {
                let file = uuid::Uuid::new_v4();
                json!({ "url": format!("{base}/files/{file}.png") })
            }
        })
        .collect();
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    HttpResponse::Ok().json(json!({ "created": created, "data": data }))
}

struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

/// The boundary of a `multipart/form-data` Content-Type.
fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim().eq_ignore_ascii_case("boundary") && !v.is_empty()).then(|| v.to_string())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Splits a multipart body (RFC 7578) into its parts; None if it is not well formed.
fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}").into_bytes();
    let next_delimiter = [b"\r\n".as_slice(), &delimiter].concat();
    let mut pos = find(body, &delimiter, 0)? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        let rest = body.get(pos..)?;
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        // Transport padding (spaces/tabs) may follow a delimiter before its CRLF.
        let pad = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if !rest[pad..].starts_with(b"\r\n") {
            return None;
        }
        let head_start = pos + pad + 2;
        let (head, data_start) = if body[head_start..].starts_with(b"\r\n") {
            ("", head_start + 2)
        } else {
            let head_end = find(body, b"\r\n\r\n", head_start)?;
            let head = std::str::from_utf8(&body[head_start..head_end]).ok()?;
            (head, head_end + 4)
        };
        let data_end = find(body, &next_delimiter, data_start)?;
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: body[data_start..data_end].to_vec(),
        };
        for line in head.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim();
            if key.eq_ignore_ascii_case("content-type") {
                part.content_type = Some(value.trim().to_string());
            } else if key.eq_ignore_ascii_case("content-disposition") {
                for param in value.split(';').skip(1) {
                    let Some((k, v)) = param.trim().split_once('=') else {
                        continue;
                    };
                    let v = v.trim().trim_matches('"').to_string();
                    match k.trim().to_ascii_lowercase().as_str() {
                        "name" => part.name = v,
                        "filename" => part.filename = Some(v),
                        _ => {}
                    }
                }
            }
        }
        parts.push(part);
        pos = data_end + next_delimiter.len();
    }
}
