//! HTTP routes. Each module registers its own paths; `openapi` collects their docs.

pub mod account_api;
pub mod admin_api;
pub mod auth;
pub mod billing_api;
pub mod client_api;
pub mod legal_api;
pub mod ops;
pub mod pages;
pub mod privacy_api;
pub mod requests_api;
pub mod support_api;
pub mod upstream_hooks;
pub mod usage_api;

use actix_web::cookie::{time, Cookie, SameSite};

/// Builds a cookie with our defaults (HttpOnly unless stated, SameSite=Lax, Path=/).
pub fn cookie(
    name: &'static str,
    value: String,
    max_age_secs: i64,
    http_only: bool,
    secure: bool,
) -> Cookie<'static> {
    Cookie::build(name, value)
        .http_only(http_only)
        .same_site(SameSite::Lax)
        .secure(secure)
        .path("/")
        .max_age(time::Duration::seconds(max_age_secs))
        .finish()
}

pub fn expired(name: &'static str, secure: bool) -> Cookie<'static> {
    cookie(name, String::new(), 0, true, secure)
}
