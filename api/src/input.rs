//! What every request meets before a handler: its text input is screened, and whatever
//! error answers it is JSON.
//!
//! - **Control characters.** No free-text field may carry NUL or another control character
//!   (tab, line feed and carriage return excepted), DEL, a C1 control, or a bidirectional
//!   override or isolate (U+202A–U+202E, U+2066–U+2069): they corrupt logs and emails,
//!   disguise text, and Postgres refuses NUL outright. Query parameters, JSON bodies and
//!   form bodies are checked here, once for every route, and a refusal is a 400 that names
//!   the field. Single-line names get the stricter `single_line` check where they are
//!   validated. Webhooks from Stripe and the upstream providers are not screened: they are
//!   verified and read as they are sent.
//! - **JSON errors.** actix answers some failures itself in plain text (a body over the
//!   limit: 413 "payload reached size limit"; an unreadable body). Any error response that
//!   is not already JSON or an HTML page becomes `{"errors":[{"msg": …}]}` here.
//! - **405.** A path that exists with other methods answers 405 with `Allow`, not 404
//!   (`not_found_or_method`, the app's default service).

use crate::error::ServiceError;
use crate::error::{ApiError, ErrorBody, ErrorItem};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures::StreamExt;
pub use journey_contexts::text::{is_forbidden, refusal, single_line};
use serde_json::Value;

/// The most any route accepts (the client API's inline masks); smaller routes enforce
/// their own limits after this.
pub const MAX_BODY: usize = crate::routes::client_api::BODY_LIMIT;

/// The first refused character in a JSON document, with the path of the field holding it
/// (`text`, `messages[2].body`; keys are checked too).
fn first_bad(v: &Value, path: &str) -> Option<(String, char)> {
    let bad = |s: &str| s.chars().find(|c| is_forbidden(*c));
    match v {
        Value::String(s) => bad(s).map(|c| (path.to_string(), c)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| first_bad(item, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match bad(k) {
                Some(c) => Some((here, c)),
                None => first_bad(item, &here),
            }
        }),
        _ => None,
    }
}

fn check_pairs(pairs: Vec<(String, String)>) -> Result<(), ApiError> {
    for (k, v) in pairs {
        if let Some(c) = k.chars().chain(v.chars()).find(|c| is_forbidden(*c)) {
            return Err(refusal(&k, c).into());
        }
    }
    Ok(())
}

fn screened(req: &ServiceRequest) -> bool {
    !req.path().starts_with("/webhooks/")
}

fn media_type(req: &ServiceRequest) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Screens the query string and a JSON or form body, then hands the request on with its
/// body intact. Bodies are buffered up to `MAX_BODY` (over it: 413 at once).
async fn screen_request(req: &mut ServiceRequest) -> Result<(), ApiError> {
    let query: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| ApiError::bad("the query string is not valid URL encoding"))?;
    check_pairs(query)?;
    let media = media_type(req);
    let json = media == "application/json" || media.ends_with("+json");
    let form = media == "application/x-www-form-urlencoded";
    if !json && !form {
        return Ok(());
    }
    let mut payload = req.take_payload();
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::PayloadTooLarge(MAX_BODY));
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    if json {
        // Bodies that are not JSON are left for the handler's own (400) error.
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            if let Some((field, c)) = first_bad(&v, "") {
                return Err(refusal(if field.is_empty() { "the body" } else { &field }, c).into());
            }
        }
    } else if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
        check_pairs(pairs)?;
    }
    req.set_payload(Payload::from(body));
    Ok(())
}

pub async fn screen(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let form = media_type(&req) == "application/x-www-form-urlencoded";
    if screened(&req) {
        if let Err(e) = screen_request(&mut req).await {
            let res = if form {
                refused_page(&e)
            } else {
                e.error_response()
            };
            return Ok(req.into_response(res));
        }
    }
    let res = next.call(req).await?;
    as_json_error(res, form).await
}

/// A browser form's refusal, as a page (forms are posted by people, not programs).
fn refused_page(e: &ApiError) -> HttpResponse {
    use crate::routes::pages::{error_page, Body};
    error_page(
        e,
        "The form could not be sent",
        Body::new().p("Go back, correct it and send it again."),
    )
}

/// An error response that is neither JSON nor an HTML page, rewritten as JSON (as a page
/// for a browser form's post).
async fn as_json_error<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
    form: bool,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let html = content_type.starts_with("text/html");
    let json = content_type.starts_with("application/json");
    if status.as_u16() < 400 || html || (json && !form) {
        return Ok(res.map_into_boxed_body());
    }
    let (req, res) = res.into_parts();
    let head = res.head().clone();
    let text = actix_web::body::to_bytes(res.into_body())
        .await
        .map(|b| match serde_json::from_slice::<Value>(&b) {
            Ok(v) => v["errors"][0]["msg"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            Err(_) => String::from_utf8_lossy(&b).trim().to_string(),
        })
        .unwrap_or_default();
    let msg = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    } else {
        text
    };
    if form {
        use crate::routes::pages::{page, sentence, Body};
        let body = Body::new()
            .p(&sentence(&msg))
            .p("Go back, correct it and send it again.");
        let mut out = page(status, "The form could not be sent", body);
        if let Some(v) = head.headers.get(header::RETRY_AFTER) {
            out.headers_mut().insert(header::RETRY_AFTER, v.clone());
        }
        return Ok(ServiceResponse::new(req, out));
    }
    let mut out = HttpResponse::build(status);
    for (name, value) in head.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.append_header((name.clone(), value.clone()));
        }
    }
    let out = out.json(ErrorBody {
        errors: vec![ErrorItem { msg }],
    });
    Ok(ServiceResponse::new(req, out))
}

/// The paths and methods the app serves, from the OpenAPI document (every route is in it).
fn known_routes() -> &'static [(actix_web::dev::ResourceDef, Vec<String>)] {
    static ROUTES: std::sync::OnceLock<Vec<(actix_web::dev::ResourceDef, Vec<String>)>> =
        std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        use utoipa::OpenApi;
        crate::openapi::ApiDoc::openapi()
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("PUT", item.put.is_some()),
                    ("POST", item.post.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ]
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(m, _)| m.to_string())
                .collect();
                (actix_web::dev::ResourceDef::new(path.as_str()), methods)
            })
            .collect()
    })
}

/// The app's default service: 405 (with `Allow`) when the path exists with other methods,
/// else 404.
pub async fn not_found_or_method(req: HttpRequest) -> HttpResponse {
    let path = req.path();
    let mut allowed: Vec<&str> = known_routes()
        .iter()
        .filter(|(def, _)| def.is_match(path))
        .flat_map(|(_, methods)| methods.iter().map(String::as_str))
        .collect();
    if allowed.is_empty() {
        return ApiError::Service(ServiceError::NotFound("no such endpoint".into()))
            .error_response();
    }
    allowed.sort_unstable();
    allowed.dedup();
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    let allow = allowed.join(", ");
    let mut res = ApiError::MethodNotAllowed(allow.clone()).error_response();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        res.headers_mut().insert(header::ALLOW, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_characters_are_found_with_their_field() {
        let v = serde_json::json!({"a": "ok\ttab\nnewline", "list": [{"b": "x\u{0}y"}]});
        assert_eq!(first_bad(&v, ""), Some(("list[0].b".to_string(), '\u{0}')));
        let v = serde_json::json!({"text": "abc\u{202e}cba"});
        assert_eq!(first_bad(&v, ""), Some(("text".to_string(), '\u{202e}')));
        // Emoji sequences (zero-width joiner, variation selectors, keycaps) pass.
        let v = serde_json::json!({"prompt": "👨‍👩‍👧 1️⃣ café"});
        assert_eq!(first_bad(&v, ""), None);
        assert!(single_line("name", "laptop\u{200b}").is_err());
        assert!(single_line("name", "two\nlines").is_err());
        assert!(single_line("name", "Über laptop ✓").is_ok());
    }
}
