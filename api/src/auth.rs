//! Request authentication: session cookies (account holders) and API keys (API clients),
//! plus the request context (id, client IP, time) every handler needs.

use crate::error::ApiError;
use crate::identity::Ctx;
use crate::state::App;
use actix_web::dev::Payload;
use actix_web::http::{header, Method};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures::future::LocalBoxFuture;
use journey_commands::secrets::ct_eq;
use uuid::Uuid;

pub const SESSION_COOKIE: &str = "journey_session";
pub const CSRF_COOKIE: &str = "journey_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The request id assigned by the middleware.
#[derive(Clone)]
pub struct RequestId(pub String);

fn app(req: &HttpRequest) -> App {
    req.app_data::<web::Data<crate::state::AppState>>()
        .expect("app state registered")
        .clone()
        .into_inner()
}

pub fn client_ip(req: &HttpRequest, trust_forwarded_for: bool) -> Option<String> {
    if trust_forwarded_for {
        // A proxy may append to the header or add its own line: the last line is ours.
        let last_line = req.headers().get_all("x-forwarded-for").last();
        if let Some(v) = last_line.and_then(|v| v.to_str().ok()) {
            // The rightmost entry is the one our (trusted) proxy appended; entries to its
            // left come from the client and may be forged.
            if let Some(last) = v.rsplit(',').next() {
                let last = last.trim();
                if last.parse::<std::net::IpAddr>().is_ok() {
                    return Some(last.to_string());
                }
            }
        }
    }
    req.peer_addr().map(|a| a.ip().to_string())
}

impl FromRequest for Ctx {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Ctx, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let app = app(req);
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        std::future::ready(Ok(Ctx {
            request_id,
            ip: client_ip(req, app.cfg.trust_forwarded_for),
            at: app.clock.now(),
        }))
    }
}

/// A signed-in account holder. State-changing methods also require the CSRF header.
pub struct SessionAuth {
    pub account_id: Uuid,
    pub token: String,
}

impl FromRequest for SessionAuth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<SessionAuth, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let app = app(req);
        let token = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string());
        let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        let csrf = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Box::pin(async move {
            let token = token.ok_or(ApiError::SignInRequired)?;
            let account_id = app
                .session_account(&token, app.clock.now())
                .await?
                .ok_or(ApiError::SignInRequired)?;
            if unsafe_method {
                let expected = app.csrf_token(&token);
                match csrf {
                    Some(got) if ct_eq(&got, &expected) => {}
                    _ => {
                        return Err(ApiError::Forbidden(format!(
                            "missing or wrong {CSRF_HEADER} header (copy it from the {CSRF_COOKIE} cookie)"
                        )))
                    }
                }
            }
            // Continued use after a policy version takes effect is its acceptance.
            app.note_policy_use(account_id, "session").await?;
            Ok(SessionAuth { account_id, token })
        })
    }
}

/// An API client authenticated by `Authorization: <key>` or `Authorization: Bearer <key>`.
pub struct ApiKeyAuth {
    pub key_id: Uuid,
    pub account_id: Uuid,
}

impl FromRequest for ApiKeyAuth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<ApiKeyAuth, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let app = app(req);
        let raw = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let v = v.trim();
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
                    .unwrap_or(v)
                    .trim()
                    .to_string()
            });
        let ctx = Ctx::from_request(req, payload).into_inner();
        let req = req.clone();
        Box::pin(async move {
            let raw = raw.ok_or(ApiError::BadApiKey)?;
            let ctx = ctx?;
            let (key_id, account_id) = app.authenticate_api_key(&raw, &ctx).await?;
            // From here the request is the account's: the usage log records it, whatever
            // its outcome (a rate-limited request included).
            req.extensions_mut()
                .insert(crate::usage::ApiUsage { account_id, key_id });
            app.limits
                .api_key(&key_id.to_string())
                .map_err(ApiError::TooManyRequests)?;
            app.note_policy_use(account_id, "api_key").await?;
            Ok(ApiKeyAuth { key_id, account_id })
        })
    }
}

/// A signed-in staff member: a session (with CSRF for changes) whose account holds at
/// least one staff role. Handlers narrow the roles with `require`.
pub struct StaffAuth {
    pub account_id: Uuid,
    pub roles: std::collections::BTreeSet<journey_domain::staff::Role>,
}

impl StaffAuth {
    pub fn require(&self, any_of: &[journey_domain::staff::Role]) -> Result<(), ApiError> {
        if any_of.iter().any(|r| self.roles.contains(r)) {
            return Ok(());
        }
        let names: Vec<&str> = any_of.iter().map(|r| r.as_str()).collect();
        Err(ApiError::Forbidden(format!(
            "this needs one of the staff roles: {}",
            names.join(", ")
        )))
    }
}

impl FromRequest for StaffAuth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<StaffAuth, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let app = app(req);
        let session = SessionAuth::from_request(req, payload);
        Box::pin(async move {
            let session = session.await?;
            let staff = app.staff_member(session.account_id).await?;
            if staff.roles.is_empty() {
                return Err(ApiError::Forbidden("a staff role is required".into()));
            }
            Ok(StaffAuth {
                account_id: session.account_id,
                roles: staff.roles,
            })
        })
    }
}
