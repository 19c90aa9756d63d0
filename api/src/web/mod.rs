//! The account dashboard: server-rendered HTML pages (askama templates under
//! `api/templates/`, checked at compile time) that call the same service methods as the
//! JSON API. One module per page group; this one holds what they share: the response
//! headers, the session and CSRF check for pages and forms, and the error page.
//!
//! These routes are not API operations: they are kept out of the OpenAPI document, and
//! every answer, failures included, is an HTML page (never JSON).

/// The signed-in holder behind a page view (`page_session`); signed out goes to the
/// sign-in page, a failure is the error page with `$next` as the way on.
macro_rules! page_holder {
    ($app:expr, $req:expr, $next:expr) => {
        match $crate::web::page_session(&$app, &$req).await {
            Ok(Some(s)) => s,
            Ok(None) => return $crate::web::see_other("/"),
            Err(e) => return $crate::web::error_page(&e, $next),
        }
    };
}

/// The holder behind a posted form (`form_session`: session and CSRF token), or the error
/// page with `$next` as the way on.
macro_rules! form_holder {
    ($app:expr, $req:expr, $form:expr, $next:expr) => {
        match $crate::web::form_session(&$app, &$req, &$form).await {
            Ok(s) => s,
            Err(e) => return $crate::web::error_page(&e, $next),
        }
    };
}

mod assets;
mod billing;
mod console;
pub(crate) mod holder;
mod home;
mod keys;
mod privacy;

use crate::auth::{resolve_session, SessionAuth, SESSION_COOKIE};
use crate::error::{ApiError, ServiceError};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;

/// What every page's frame (`base.html`) shows: the title, which navigation entry is
/// current, and, when signed in, the CSRF token for the sign-out form.
pub struct Chrome {
    pub title: String,
    pub section: &'static str,
    pub csrf: Option<String>,
}

impl Chrome {
    fn signed_out(title: &str) -> Chrome {
        Chrome {
            title: title.to_string(),
            section: "",
            csrf: None,
        }
    }

    fn signed_in(app: &Core, s: &SessionAuth, title: &str, section: &'static str) -> Chrome {
        Chrome {
            title: title.to_string(),
            section,
            csrf: Some(app.identity().csrf_token(&s.token)),
        }
    }
}

/// The pages' Content-Security-Policy: our own style sheet, no script at all, images
/// from us or over HTTPS (task results are upstream URLs), forms only to us, never framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' https:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The policy of the few pages that load our own script (`/assets/app.js`, the new API
/// key's copy button): `CSP` plus `script-src 'self'`, so still no inline script and
/// nothing from another origin.
pub const CSP_WITH_SCRIPT: &str = "default-src 'none'; style-src 'self'; img-src 'self' https:; \
                                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
                                   script-src 'self'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    console::routes(cfg);
    // Each path answers its own methods; any other method gets an HTML 405 page (the
    // app's default service would answer JSON 404, as for unknown API paths).
    cfg.service(
        web::resource("/")
            .route(web::get().to(home::home))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/logout")
            .route(web::post().to(home::logout))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/keys")
            .route(web::get().to(keys::list))
            .route(web::post().to(keys::create))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/keys/{id}/revoke")
            .route(web::get().to(keys::confirm_revoke))
            .route(web::post().to(keys::revoke))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/assets/app.css")
            .route(web::get().to(assets::stylesheet))
            .default_service(web::to(method_not_allowed)),
    );
    billing::routes(cfg);
    privacy::routes(cfg);
    holder::routes(cfg);
}

/// An HTML page. Never cached (pages show personal data, one shows a raw key), never
/// framed, sends no referrer, runs no script.
fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(body)
}

/// Renders a template; a rendering failure (a bug) is logged and answered with a plain
/// 500 page.
fn render(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "page template failed to render");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><html lang=\"en\"><title>Error</title><h1>Something went wrong</h1></html>"
                    .into(),
            )
        }
    }
}

/// A page a use case built (200), or its failure as the error page.
fn page_or_error(page: Result<impl Template, ApiError>, next: Next) -> HttpResponse {
    match page {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&e, next),
    }
}

/// After a form's one service call: `303` to `to` when it succeeded, else the error page.
fn see_other_or_error<T, E: Into<ApiError>>(
    done: Result<T, E>,
    to: impl Into<String>,
    next: Next,
) -> HttpResponse {
    match done {
        Ok(_) => see_other(to),
        Err(e) => error_page(&e.into(), next),
    }
}

/// `303 See Other` to a page of ours (after a form post, or to the sign-in page). Paths
/// built at run time hold ids only, never personal data.
fn see_other(to: impl Into<String>) -> HttpResponse {
    let to: String = to.into();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    message: String,
    next_href: &'static str,
    next_label: &'static str,
}

/// Where an error page sends the reader next.
pub struct Next {
    pub href: &'static str,
    pub label: &'static str,
}

pub const HOME: Next = Next {
    href: "/",
    label: "Go to the overview",
};
pub const KEYS: Next = Next {
    href: "/keys",
    label: "Back to API keys",
};

/// A failure as a page, with the status the JSON API would give it. Server faults never
/// show their cause (it is logged); refusals say what was wrong. A signed-out visitor, or
/// a form whose CSRF token does not match (a stale page, or another site posting), gets
/// its own wording.
fn error_page(e: &ApiError, next: Next) -> HttpResponse {
    let status = actix_web::ResponseError::status_code(e);
    let (title, message) = match e {
        ApiError::Service(ServiceError::SignInRequired) => (
            "Please sign in".to_string(),
            "You are not signed in, or your session has ended. Sign in again to continue."
                .to_string(),
        ),
        _ if status.is_server_error() => {
            if let ApiError::Service(ServiceError::Internal(err)) = e {
                tracing::error!(error = %format!("{err:#}"), "internal error");
            }
            let msg = match e {
                ApiError::Service(ServiceError::Unavailable(m)) => {
                    crate::routes::pages::sentence(m)
                }
                _ => "Something went wrong on our side. Nothing was lost; try again in a moment."
                    .to_string(),
            };
            ("This did not work".to_string(), msg)
        }
        _ => (
            match status {
                StatusCode::NOT_FOUND => "Not found".to_string(),
                StatusCode::TOO_MANY_REQUESTS => "Too many requests".to_string(),
                _ => "This could not be done".to_string(),
            },
            crate::routes::pages::sentence(&e.to_string()),
        ),
    };
    let next = if matches!(e, ApiError::Service(ServiceError::SignInRequired)) {
        Next {
            href: "/",
            label: "Sign in",
        }
    } else {
        next
    };
    let mut resp = render(
        status,
        &ErrorPage {
            chrome: Chrome::signed_out(&title),
            message,
            next_href: next.href,
            next_label: next.label,
        },
    );
    if let ApiError::Service(ServiceError::TooManyRequests(wait)) = e {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(wait.as_secs().max(1)),
        );
    }
    resp
}

/// The session behind a page view (GET: no CSRF check). `None` when signed out or the
/// session has ended; other failures (database down) are errors.
async fn page_session(app: &Core, req: &HttpRequest) -> Result<Option<SessionAuth>, ApiError> {
    let token = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string());
    if token.is_none() {
        return Ok(None);
    }
    match resolve_session(app, token, false, None).await {
        Ok(s) => Ok(Some(s)),
        Err(ApiError::Service(ServiceError::SignInRequired)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A page form's body, read up to `JSON_LIMIT` (what the JSON API takes for the same use
/// cases, so a policy text too long for one is too long for the other). Beyond it the
/// answer is the HTML 413 page, not actix's plain-text one.
pub struct FormBody(web::Bytes);

impl std::ops::Deref for FormBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A failure met before a page's handler runs (an extractor's), answered as a page.
#[derive(Debug)]
struct PageFailure(ApiError);

impl std::fmt::Display for PageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl actix_web::ResponseError for PageFailure {
    fn status_code(&self) -> StatusCode {
        actix_web::ResponseError::status_code(&self.0)
    }
    fn error_response(&self) -> HttpResponse {
        error_page(&self.0, HOME)
    }
}

impl actix_web::FromRequest for FormBody {
    type Error = actix_web::Error;
    type Future = futures::future::LocalBoxFuture<'static, Result<FormBody, actix_web::Error>>;

    fn from_request(_: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        use futures::StreamExt;
        let mut payload = payload.take();
        Box::pin(async move {
            let limit = crate::error::JSON_LIMIT;
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk?;
                if body.len() + chunk.len() > limit {
                    return Err(PageFailure(ApiError::PayloadTooLarge(limit)).into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(FormBody(body.freeze()))
        })
    }
}

/// A posted form (`application/x-www-form-urlencoded`), read field by field.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Form {
        Form(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The session behind a form post: the session cookie, and the CSRF token from the form's
/// hidden `csrf` field checked as the JSON API checks the `x-csrf-token` header.
async fn form_session(app: &Core, req: &HttpRequest, form: &Form) -> Result<SessionAuth, ApiError> {
    let token = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string());
    resolve_session(app, token, true, form.get("csrf").map(str::to_string))
        .await
        .map_err(|e| match e {
            // The header wording of the JSON API means nothing to a person at a form.
            ApiError::Service(ServiceError::Forbidden(_)) => {
                ApiError::Service(ServiceError::Forbidden(
                    "this form has expired or did not come from this site: reload the page and send it again"
                        .into(),
                ))
            }
            other => other,
        })
}

/// Any method a page does not answer.
async fn method_not_allowed() -> HttpResponse {
    render(
        StatusCode::METHOD_NOT_ALLOWED,
        &ErrorPage {
            chrome: Chrome::signed_out("Not allowed here"),
            message: "This page does not answer that kind of request.".into(),
            next_href: HOME.href,
            next_label: HOME.label,
        },
    )
}

/// "2026-11-29 18:20 UTC"
fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}
