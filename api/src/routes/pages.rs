//! Server-rendered HTML for the browser side of sign-in: the magic-link confirmation page,
//! what its form post and the link-request form answer, and the Google callback's refusal.
//!
//! Hand-written markup rather than a template crate (maud, askama): these are a dozen short
//! pages with a handful of dynamic strings, and a proc-macro dependency for them is not worth
//! its weight. Escaping is structural instead: a `Body` takes markup only as `&'static str`
//! (text written here) and everything else (`text`, `field`, `hidden`) goes through `escape`.
//! Pages carry no script and nothing from another site (their CSP says so); they are shown
//! in the web pages' frame (`crate::web`, `base.html`) with their style sheet
//! (`/assets/app.css`).

use crate::error::ApiError;
use crate::error::ServiceError;
use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;

pub const REQUEST_LINK_ACTION: &str = "/v1/auth/magic-link";
pub const CONSUME_ACTION: &str = "/v1/auth/magic-link/consume";

/// Escapes text for HTML content and double-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page body under construction. Markup comes only from literals in this crate; every
/// other string is escaped on the way in.
#[derive(Default)]
pub struct Body(String);

impl Body {
    pub fn new() -> Body {
        Body::default()
    }

    /// Markup written here (tags, fixed wording).
    pub fn markup(mut self, m: &'static str) -> Body {
        self.0.push_str(m);
        self
    }

    /// Any text, escaped.
    pub fn text(mut self, t: &str) -> Body {
        self.0.push_str(&escape(t));
        self
    }

    /// A paragraph of text, escaped.
    pub fn p(self, t: &str) -> Body {
        self.markup("<p>").text(t).markup("</p>")
    }

    /// `<input type="hidden" name=… value=…>`, value escaped.
    pub fn hidden(self, name: &'static str, value: &str) -> Body {
        self.markup("<input type=\"hidden\" name=\"")
            .markup(name)
            .markup("\" value=\"")
            .text(value)
            .markup("\">")
    }

    /// A labelled text input; `attrs` are fixed attributes, `value` is escaped.
    pub fn field(
        self,
        label: &'static str,
        name: &'static str,
        attrs: &'static str,
        value: &str,
    ) -> Body {
        self.markup("<p><label>")
            .markup(label)
            .markup(" <input name=\"")
            .markup(name)
            .markup("\" ")
            .markup(attrs)
            .markup(" value=\"")
            .text(value)
            .markup("\"></label></p>")
    }

    /// The form that emails a new sign-in link (`POST /v1/auth/magic-link`, form-encoded).
    pub fn request_link_form(self, email: &str) -> Body {
        self.markup("<form method=\"post\" action=\"")
            .markup(REQUEST_LINK_ACTION)
            .markup("\">")
            .field(
                "Email address",
                "email",
                "type=\"email\" required maxlength=\"254\" autocomplete=\"email\"",
                email,
            )
            .markup("<button type=\"submit\">Email me a sign-in link</button></form>")
    }
}

/// An HTML response in the dashboard's frame (`base.html`: header, skip link, heading).
/// Never cached, never framed, sends no referrer (confirmation URLs carry the token), loads
/// only our style sheet and runs nothing.
pub fn page(status: StatusCode, title: &str, body: Body) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header((
            "Content-Security-Policy",
            crate::web::CSP,
        ))
        // The dashboard's frame (`base.html`); the bare page only if that fails (a bug).
        .body(crate::web::holder::framed(title, &body.0).unwrap_or_else(|| {
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
                 <title>{title}</title><link rel=\"stylesheet\" href=\"/assets/app.css\"></head><body><main><h1>{title}</h1>{}</main></body></html>",
                body.0,
                title = escape(title)
            )
        }))
}

/// Whole minutes, rounded up, at least 1.
pub fn minutes(secs: u64) -> u64 {
    secs.div_ceil(60).max(1)
}

/// A failure the JSON API would answer with `e`, as a page: its status, its message, and
/// `next` (what to do now). 5xx never show their cause; it is logged here instead.
pub fn error_page(e: &ApiError, title: &str, next: Body) -> HttpResponse {
    let status = actix_web::ResponseError::status_code(e);
    if status.is_server_error() {
        if let ApiError::Service(ServiceError::Internal(err)) = e {
            tracing::error!(error = %format!("{err:#}"), "internal error");
        }
        let msg = match e {
            ApiError::Service(ServiceError::Unavailable(m)) => sentence(m),
            _ => "Something went wrong on our side. Nothing was lost; try again in a moment."
                .to_string(),
        };
        return page(status, title, Body::new().p(&msg).join(next));
    }
    let mut resp = page(
        status,
        title,
        Body::new().p(&sentence(&e.to_string())).join(next),
    );
    if let ApiError::Service(ServiceError::TooManyRequests(wait)) = e {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(wait.as_secs().max(1)),
        );
    }
    resp
}

impl Body {
    /// Appends another body.
    pub fn join(mut self, other: Body) -> Body {
        self.0.push_str(&other.0);
        self
    }
}

/// "a message" → "A message."
pub fn sentence(msg: &str) -> String {
    let mut c = msg.chars();
    let mut out: String = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_dynamic_is_escaped() {
        let evil = "\"><script>alert('x')</script>&";
        let body = Body::new()
            .p(evil)
            .hidden("token", evil)
            .field("Country", "country", "maxlength=\"2\"", evil)
            .request_link_form(evil);
        assert!(!body.0.contains("<script>") && !body.0.contains(evil));
        assert!(body
            .0
            .contains("&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"));
    }

    #[test]
    fn sentences() {
        assert_eq!(sentence("this link expired"), "This link expired.");
        assert_eq!(sentence("done."), "Done.");
    }

    #[test]
    fn minutes_round_up() {
        assert_eq!(minutes(900), 15);
        assert_eq!(minutes(61), 2);
        assert_eq!(minutes(0), 1);
    }
}
