//! Request authentication: session cookies (account holders) and API keys (API clients),
//! plus the request context (id, client IP, time) every handler needs.

use crate::error::ApiError;
use crate::error::ServiceError;
use actix_web::dev::Payload;
use actix_web::http::{header, Method};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures::future::LocalBoxFuture;
use journey_commands::secrets::ct_eq;
use journey_contexts::app::App;
use uuid::Uuid;

pub const SESSION_COOKIE: &str = "journey_session";
pub const CSRF_COOKIE: &str = "journey_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The request id assigned by the middleware.
#[derive(Clone)]
pub struct RequestId(pub String);

fn app(req: &HttpRequest) -> App {
    req.app_data::<web::Data<journey_contexts::app::Core>>()
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

/// The request context (id, client IP, time, the request's sealed IP) as an extractor:
/// the use cases' `Ctx`, which it dereferences to.
pub struct Ctx(pub journey_contexts::identity::Ctx);

impl std::ops::Deref for Ctx {
    type Target = journey_contexts::identity::Ctx;
    fn deref(&self) -> &journey_contexts::identity::Ctx {
        &self.0
    }
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
        std::future::ready(Ok(Ctx(journey_contexts::identity::Ctx {
            request_id,
            ip: client_ip(req, app.cfg.trust_forwarded_for),
            at: app.clock.now(),
            sealed_ip: request_sealed_ip(req),
        })))
    }
}

/// The request's shared sealed-IP cell (created by the first `Ctx` of the request).
pub fn request_sealed_ip(req: &HttpRequest) -> journey_contexts::identity::SealedIp {
    let mut ext = req.extensions_mut();
    if let Some(cell) = ext.get::<journey_contexts::identity::SealedIp>() {
        return cell.clone();
    }
    let cell = journey_contexts::identity::SealedIp::default();
    ext.insert(cell.clone());
    cell
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
        Box::pin(async move { resolve_session(&app, token, unsafe_method, csrf).await })
    }
}

/// The session check shared by the JSON API (`SessionAuth`: CSRF token from the
/// `x-csrf-token` header) and the web pages (`crate::web`: CSRF token from the form's
/// hidden field). `check_csrf` is set for state-changing requests; `csrf` is the token sent.
pub async fn resolve_session(
    app: &journey_contexts::app::Core,
    token: Option<String>,
    check_csrf: bool,
    csrf: Option<String>,
) -> Result<SessionAuth, ApiError> {
    let token = token.ok_or(ApiError::Service(ServiceError::SignInRequired))?;
    let account_id = app
        .identity()
        .session_account(&token, app.clock.now())
        .await?
        .ok_or(ApiError::Service(ServiceError::SignInRequired))?;
    if check_csrf {
        let expected = app.identity().csrf_token(&token);
        match csrf {
            Some(got) if ct_eq(&got, &expected) => {}
            _ => {
                return Err(ApiError::Service(ServiceError::Forbidden(format!(
                    "missing or wrong {CSRF_HEADER} header (copy it from the {CSRF_COOKIE} cookie)"
                ))))
            }
        }
    }
    // Continued use after a policy version takes effect is its acceptance.
    app.legal().note_policy_use(account_id, "session").await?;
    Ok(SessionAuth { account_id, token })
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
            let raw = raw.ok_or(ApiError::Service(ServiceError::BadApiKey))?;
            let ctx = ctx?;
            let (key_id, account_id) = app.identity().authenticate_api_key(&raw, &ctx).await?;
            // From here the request is the account's: the usage log records it, whatever
            // its outcome (a rate-limited request included).
            req.extensions_mut()
                .insert(journey_contexts::tasks::usage::ApiUsage { account_id, key_id });
            app.limits
                .api_key(&key_id.to_string())
                .await
                .map_err(|wait| ApiError::Service(ServiceError::TooManyRequests(wait)))?;
            app.legal().note_policy_use(account_id, "api_key").await?;
            Ok(ApiKeyAuth { key_id, account_id })
        })
    }
}

pub use journey_contexts::identity::staff::StaffAuth;

/// Resolves the request's staff member: a session (with CSRF for changes) whose account
/// holds at least one staff role. (Not an extractor of its own: `Staff<R>` is.)
fn resolve_staff(
    req: &HttpRequest,
    payload: &mut Payload,
) -> LocalBoxFuture<'static, Result<StaffAuth, ApiError>> {
    // Resolved already by `staff_gate` for `/admin/v1/*`.
    if let Some(staff) = req.extensions().get::<StaffAuth>().cloned() {
        return Box::pin(std::future::ready(Ok(staff)));
    }
    let app = app(req);
    let session = SessionAuth::from_request(req, payload);
    Box::pin(async move {
        let session = session.await?;
        let staff = app.identity().staff_member(session.account_id).await?;
        if staff.roles.is_empty() {
            return Err(ApiError::Service(ServiceError::Forbidden(
                "a staff role is required".into(),
            )));
        }
        Ok(StaffAuth {
            account_id: session.account_id,
            roles: staff.roles,
        })
    })
}

/// Authorisation before parsing: every `/admin/v1/*` request is authenticated as staff
/// (session, CSRF on changes, at least one role) before anything of it — path, query or
/// body — is read, so a holder gets 401/403 whatever they send. The route's own role set
/// (`Staff<R>`) is checked next, first among its extractors.
pub async fn staff_gate(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    if req.path().starts_with("/admin/v1/") {
        let http = req.request().clone();
        let resolved = resolve_staff(&http, &mut Payload::None).await;
        match resolved {
            Ok(staff) => {
                req.extensions_mut().insert(staff);
            }
            Err(e) => {
                return Ok(req.into_response(actix_web::ResponseError::error_response(&e)));
            }
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The roles a staff route allows.
pub trait RoleSet {
    const ROLES: &'static [journey_domain::staff::Role];
}

/// Subjects' data, privacy operations and the registers: admin and compliance.
pub struct AdminOrCompliance;
impl RoleSet for AdminOrCompliance {
    const ROLES: &'static [journey_domain::staff::Role] = &[
        journey_domain::staff::Role::Admin,
        journey_domain::staff::Role::Compliance,
    ];
}

/// Support tickets: support and admin.
pub struct SupportOrAdmin;
impl RoleSet for SupportOrAdmin {
    const ROLES: &'static [journey_domain::staff::Role] = &[
        journey_domain::staff::Role::Support,
        journey_domain::staff::Role::Admin,
    ];
}

/// A staff member holding one of `R`'s roles. As an extractor it resolves at once (the
/// gate authenticated the request), so placed before the path, query and body extractors
/// its 403 comes before any of them is parsed.
pub struct Staff<R: RoleSet> {
    staff: StaffAuth,
    _roles: std::marker::PhantomData<R>,
}

impl<R: RoleSet> std::ops::Deref for Staff<R> {
    type Target = StaffAuth;
    fn deref(&self) -> &StaffAuth {
        &self.staff
    }
}

impl<R: RoleSet> FromRequest for Staff<R> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Staff<R>, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let staff = resolve_staff(req, payload);
        Box::pin(async move {
            let staff = staff.await?;
            staff.require(R::ROLES)?;
            Ok(Staff {
                staff,
                _roles: std::marker::PhantomData,
            })
        })
    }
}
