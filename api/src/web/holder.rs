//! The holder's activity pages: `/usage` (requests and credits per day as a chart, the
//! 90-day usage log), `/tasks` (tasks with their result thumbnails, one task's page) and
//! `/support` (tickets: open, read, reply, close, delete). Also what the sign-in flow's
//! pages share with the dashboard (the `base.html` frame) and the one script of our own,
//! `/assets/app.js` (the new key's copy button).
//!
//! Each page calls the use case its JSON twin calls (`GET /v1/usage`, `GET /v1/tasks`,
//! `/v1/support/tickets…`); nothing here decides a rule.

mod chart;
mod support;
mod tasks;
mod usage;

use super::{method_not_allowed, Chrome, Next};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

pub const USAGE: Next = Next {
    href: "/usage",
    label: "Back to usage",
};
pub const TASKS: Next = Next {
    href: "/tasks",
    label: "Back to tasks",
};
pub const SUPPORT: Next = Next {
    href: "/support",
    label: "Back to support",
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    let page = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    cfg.service(page("/usage").route(web::get().to(usage::page)))
        .service(page("/usage/chart.svg").route(web::get().to(usage::chart)))
        .service(page("/tasks").route(web::get().to(tasks::list)))
        .service(page("/tasks/{id}").route(web::get().to(tasks::one)))
        .service(
            page("/support")
                .route(web::get().to(support::list))
                .route(web::post().to(support::open)),
        )
        .service(page("/support/{id}").route(web::get().to(support::one)))
        .service(page("/support/{id}/reply").route(web::post().to(support::reply)))
        .service(page("/support/{id}/close").route(web::post().to(support::close)))
        .service(
            page("/support/{id}/delete")
                .route(web::get().to(support::confirm_delete))
                .route(web::post().to(support::delete)),
        )
        .service(page("/assets/app.js").route(web::get().to(script)));
}

/// One query-string parameter of a page (`?before=…`); an empty value is no value.
fn query(req: &HttpRequest, name: &str) -> Option<String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.into_owned())
}

const APP_JS: &str = include_str!("../../assets/app.js");

/// `GET /assets/app.js`: progressive touches only (the pages work without it). Loaded
/// only by pages whose CSP allows our own script (`allow_script`).
async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(APP_JS)
}

/// Lets a page run `/assets/app.js` (and nothing else: no inline script, no other origin).
pub(super) fn allow_script(resp: &mut HttpResponse) {
    resp.headers_mut().insert(
        header::HeaderName::from_static("content-security-policy"),
        header::HeaderValue::from_static(super::CSP_WITH_SCRIPT),
    );
}

#[derive(Template)]
#[template(path = "framed.html")]
struct Framed<'a> {
    chrome: Chrome,
    /// Markup built by `routes::pages::Body`, which escapes every dynamic string.
    body: &'a str,
}

/// The sign-in flow's pages (`routes::pages`) in the dashboard's frame: `base.html`'s
/// header, skip link, heading and style sheet. `None` if the template fails (a bug).
pub(crate) fn framed(title: &str, body: &str) -> Option<String> {
    Framed {
        chrome: Chrome::signed_out(title),
        body,
    }
    .render()
    .map_err(|e| tracing::error!(error = %e, "page frame failed to render"))
    .ok()
}
