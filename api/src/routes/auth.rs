//! Sign-in: magic links (confirmation page + POST, so mail scanners cannot burn a link),
//! Google OpenID Connect, and logout.

use super::{cookie, expired};
use crate::auth::{SessionAuth, CSRF_COOKIE, SESSION_COOKIE};
use crate::error::{ApiError, ErrorBody};
use crate::identity::{AgeInput, Ctx, SignedIn};
use crate::state::AppState;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use journey_commands::secrets::{self, ct_eq, hmac_hex};
use journey_domain::magic_link::LinkPurpose;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

const OIDC_COOKIE: &str = "journey_oidc";
/// Binds a magic link to the browser that opened its confirmation page: one cookie per link
/// (`journey_link_<id>`), so several open links do not displace each other. SameSite=Lax
/// keeps it off cross-site POSTs, so another site cannot sign a visitor into its account.
const LINK_COOKIE_PREFIX: &str = "journey_link_";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/auth/magic-link", web::post().to(request_magic_link))
        .route("/v1/auth/magic-link/confirm", web::get().to(confirm_page))
        .route("/v1/auth/magic-link/consume", web::post().to(consume))
        .route("/v1/auth/google/start", web::get().to(google_start))
        .route("/v1/auth/google/callback", web::get().to(google_callback))
        .route("/v1/auth/logout", web::post().to(logout));
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MagicLinkRequest {
    pub email: String,
}

/// Sends a single-use sign-in link. Always 202 for a valid address, whether or not an
/// account exists (no account enumeration).
#[utoipa::path(post, path = "/v1/auth/magic-link", tag = "auth", request_body = MagicLinkRequest,
    responses(
        (status = 202, description = "If the address can receive mail, a link is on its way"),
        (status = 400, description = "Not a valid email address", body = ErrorBody),
        (status = 429, description = "Too many links requested for this address or from this IP", body = ErrorBody),
        (status = 503, description = "Email could not be sent", body = ErrorBody)))]
pub async fn request_magic_link(
    app: web::Data<AppState>,
    ctx: Ctx,
    body: web::Json<MagicLinkRequest>,
) -> Result<HttpResponse, ApiError> {
    app.request_magic_link(&body.email, &ctx).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({})))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct TokenQuery {
    pub token: Option<String>,
}

fn html(status: actix_web::http::StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Frame-Options", "DENY"))
        .body(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
        ))
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}

/// The page the emailed link opens. It changes nothing: the token is consumed only by the
/// POST its button sends.
#[utoipa::path(get, path = "/v1/auth/magic-link/confirm", tag = "auth", params(TokenQuery),
    responses(
        (status = 200, description = "HTML page with a button that signs in", content_type = "text/html"),
        (status = 400, description = "HTML page: link unknown, used or expired", content_type = "text/html")))]
pub async fn confirm_page(app: web::Data<AppState>, q: web::Query<TokenQuery>) -> HttpResponse {
    let mut page = confirm_page_body(&app, &q).await;
    if page.status().is_success() {
        let token = q.token.as_deref().unwrap_or_default();
        let _ = page.add_cookie(&link_cookie(&app, token, app.cfg.magic_link_ttl_secs));
    }
    page
}

fn link_binding(app: &AppState, token: &str) -> String {
    hmac_hex(&app.pepper, "magic-link-browser", token)
}

/// The binding cookie for one link: its name derives from the binding, its value is the
/// binding (an HMAC of the token under the pepper; the token itself is never in a cookie).
fn link_cookie(app: &AppState, token: &str, max_age_secs: i64) -> Cookie<'static> {
    let binding = link_binding(app, token);
    Cookie::build(format!("{LINK_COOKIE_PREFIX}{}", &binding[..16]), binding)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(app.cfg.cookie_secure)
        .path("/v1/auth/magic-link")
        .max_age(actix_web::cookie::time::Duration::seconds(max_age_secs))
        .finish()
}

async fn confirm_page_body(app: &AppState, q: &TokenQuery) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some(token) = q
        .token
        .as_deref()
        .filter(|t| !t.is_empty() && t.len() <= 128)
    else {
        return html(
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "<p>This link is incomplete.</p>",
        );
    };
    match app.check_magic_link(token, app.clock.now()).await {
        Ok(purpose) => {
            let sign_up = match purpose {
                LinkPurpose::SignIn { account_id } => {
                    app.is_new_account(account_id).await.unwrap_or(false)
                }
                LinkPurpose::ChangeEmail { .. } => false,
            };
            let (title, button) = match purpose {
                LinkPurpose::SignIn { .. } if sign_up => {
                    ("Create your JourneyAPI account", "Create account")
                }
                LinkPurpose::SignIn { .. } => ("Sign in to JourneyAPI", "Sign in"),
                LinkPurpose::ChangeEmail { .. } => ("Confirm your new email address", "Confirm"),
            };
            // Children's privacy (policy section 9): a new account needs the age confirmation.
            let age_fields = if sign_up {
                format!(
                    "<p><label>Country (two-letter code) <input name=\"country\" required maxlength=\"2\"></label></p>\
                     <p><label><input type=\"checkbox\" name=\"age_confirmed\" required> I am at least 13 years old \
                     (16 if I live in {})</label></p>",
                    escape(&app.cfg.age_16_countries.join(", "))
                )
            } else {
                String::new()
            };
            html(
                StatusCode::OK,
                title,
                &format!(
                    "<form method=\"post\" action=\"/v1/auth/magic-link/consume\"><input type=\"hidden\" name=\"token\" value=\"{}\">{age_fields}<button type=\"submit\">{button}</button></form>",
                    escape(token)
                ),
            )
        }
        Err(e) => html(
            StatusCode::BAD_REQUEST,
            "Link not valid",
            &format!("<p>{}. Request a new link.</p>", escape(&e.to_string())),
        ),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct ConsumeRequest {
    pub token: String,
    /// Sign-up only: the holder's country (ISO 3166 alpha-2); it sets the minimum age.
    pub country: Option<String>,
    /// Sign-up only: "I am at least 13 (16 in the configured countries) years old".
    #[serde(default)]
    pub age_confirmed: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SignInResponse {
    pub account_id: Uuid,
    /// True when this sign-in created the account.
    pub created: bool,
    /// Send this as `x-csrf-token` on state-changing `/v1` requests (also in the `journey_csrf` cookie).
    pub csrf_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct EmailChangedResponse {
    pub email_changed: bool,
}

fn signed_in_response(app: &AppState, s: SignedIn, as_html: bool) -> HttpResponse {
    let csrf = app.csrf_token(&s.session_token);
    let secure = app.cfg.cookie_secure;
    let ttl = app.cfg.session_ttl_secs;
    let mut resp = HttpResponse::Ok();
    resp.cookie(cookie(SESSION_COOKIE, s.session_token, ttl, true, secure))
        .cookie(cookie(CSRF_COOKIE, csrf.clone(), ttl, false, secure))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if as_html {
        let mut r = html(
            actix_web::http::StatusCode::OK,
            "You are signed in",
            "<p>You can close this page.</p>",
        );
        for c in resp.finish().cookies() {
            let _ = r.add_cookie(&c);
        }
        return r;
    }
    resp.json(SignInResponse {
        account_id: s.account_id,
        created: s.created,
        csrf_token: csrf,
    })
}

/// Consumes a magic link: signs in (creating the account on first use) or confirms an
/// email change. Accepts the confirmation page's form post or JSON.
#[utoipa::path(post, path = "/v1/auth/magic-link/consume", tag = "auth", request_body = ConsumeRequest,
    responses(
        (status = 200, description = "Signed in; session and CSRF cookies set (or email change confirmed)", body = SignInResponse),
        (status = 400, description = "Link unknown, used or expired, unsupported content type, or a sign-up without `country` and `age_confirmed: true` (no account is created)", body = ErrorBody),
        (status = 403, description = "Account erased, or a form post from a browser that did not open the link", body = ErrorBody),
        (status = 409, description = "New email belongs to another account", body = ErrorBody)))]
pub async fn consume(
    app: web::Data<AppState>,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let is_form = content_type.starts_with("application/x-www-form-urlencoded");
    let parsed: ConsumeRequest = if is_form {
        serde_urlencoded_token(&body)?
    } else if content_type.starts_with("application/json") {
        // JSON cannot be sent cross-site without a CORS preflight, which we never grant.
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?
    } else {
        return Err(ApiError::bad(
            "send the token as application/json or as the confirmation page's form",
        ));
    };
    if parsed.token.is_empty() || parsed.token.len() > 128 {
        return Err(ApiError::bad("this sign-in link is not valid"));
    }
    if is_form {
        let expected = link_cookie(&app, &parsed.token, 0);
        let bound = req.cookie(expected.name()).map(|c| c.value().to_string());
        if !bound.is_some_and(|b| ct_eq(&b, expected.value())) {
            return Err(ApiError::Forbidden(
                "open the link from your email in this browser, then press the button".into(),
            ));
        }
    }
    let age = AgeInput {
        country: parsed.country.clone(),
        age_confirmed: parsed.age_confirmed,
    };
    let mut resp = match app.consume_magic_link(&parsed.token, &age, &ctx).await? {
        Some(signed_in) => signed_in_response(&app, signed_in, is_form),
        None if is_form => html(
            actix_web::http::StatusCode::OK,
            "Email address confirmed",
            "<p>Your new address is now active.</p>",
        ),
        None => HttpResponse::Ok().json(EmailChangedResponse {
            email_changed: true,
        }),
    };
    if is_form {
        // The link is spent: drop its binding cookie.
        let _ = resp.add_cookie(&link_cookie(&app, &parsed.token, 0));
    }
    Ok(resp)
}

fn serde_urlencoded_token(body: &[u8]) -> Result<ConsumeRequest, ApiError> {
    let field = |name: &str| {
        url::form_urlencoded::parse(body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let token = field("token").ok_or_else(|| ApiError::bad("token is required"))?;
    Ok(ConsumeRequest {
        token,
        country: field("country").filter(|c| !c.is_empty()),
        age_confirmed: field("age_confirmed").is_some_and(|v| v == "on" || v == "true"),
    })
}

#[derive(Serialize, Deserialize)]
struct OidcState {
    state: String,
    nonce: String,
    verifier: String,
    exp: i64,
    /// The age confirmation given at the start, used if this sign-in creates an account.
    #[serde(default)]
    age: AgeInput,
}

/// Google sign-in creating an account needs the same age confirmation as a magic link.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct GoogleStartQuery {
    /// Sign-up only: ISO 3166 alpha-2 country.
    pub country: Option<String>,
    /// Sign-up only: `true` confirms the minimum age for that country.
    #[serde(default)]
    pub age_confirmed: bool,
}

fn cookie_cipher(app: &AppState) -> Aes256Gcm {
    let key = hex::decode(hmac_hex(&app.pepper, "oidc-cookie-key", "v1")).expect("hex");
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key))
}

fn seal_state(app: &AppState, s: &OidcState) -> String {
    let nonce = secrets::random_bytes(12);
    let ct = cookie_cipher(app)
        .encrypt(
            Nonce::from_slice(&nonce),
            serde_json::to_vec(s).expect("json").as_slice(),
        )
        .expect("encrypt");
    URL_SAFE_NO_PAD.encode([nonce, ct].concat())
}

fn open_state(app: &AppState, v: &str) -> Option<OidcState> {
    let raw = URL_SAFE_NO_PAD.decode(v).ok()?;
    if raw.len() < 12 {
        return None;
    }
    let (nonce, ct) = raw.split_at(12);
    let plain = cookie_cipher(app)
        .decrypt(Nonce::from_slice(nonce), ct)
        .ok()?;
    serde_json::from_slice(&plain).ok()
}

/// Starts Google sign-in: redirects to Google with state, nonce and PKCE (S256). The
/// verifier travels in an encrypted, HttpOnly cookie bound to this browser.
#[utoipa::path(get, path = "/v1/auth/google/start", tag = "auth", params(GoogleStartQuery),
    responses(
        (status = 302, description = "Redirect to Google"),
        (status = 503, description = "Google sign-in is not configured or unreachable", body = ErrorBody)))]
pub async fn google_start(
    app: web::Data<AppState>,
    q: web::Query<GoogleStartQuery>,
) -> Result<HttpResponse, ApiError> {
    if !app.oidc.configured() {
        return Err(ApiError::Unavailable(
            "Google sign-in is not configured".into(),
        ));
    }
    let st = OidcState {
        state: secrets::new_token(),
        nonce: secrets::new_token(),
        verifier: secrets::new_token(),
        exp: app.clock.now().timestamp() + 600,
        age: AgeInput {
            country: q.country.clone(),
            age_confirmed: q.age_confirmed,
        },
    };
    let url = app
        .oidc
        .authorization_url(&st.state, &st.nonce, &st.verifier)
        .await
        .map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "OIDC discovery failed");
            ApiError::Unavailable("Google sign-in is unavailable right now".into())
        })?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(cookie(
            OIDC_COOKIE,
            seal_state(&app, &st),
            600,
            true,
            app.cfg.cookie_secure,
        ))
        .finish())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// Google redirects here. Verifies state, exchanges the code (with the PKCE verifier) and
/// verifies the ID token (signature, issuer, audience, expiry, nonce), then signs in.
#[utoipa::path(get, path = "/v1/auth/google/callback", tag = "auth", params(CallbackQuery),
    responses(
        (status = 200, description = "Signed in; session and CSRF cookies set", body = SignInResponse),
        (status = 400, description = "State mismatch, denied consent or invalid token", body = ErrorBody),
        (status = 403, description = "Account erased", body = ErrorBody)))]
pub async fn google_callback(
    app: web::Data<AppState>,
    ctx: Ctx,
    req: HttpRequest,
    q: web::Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    if let Some(err) = &q.error {
        return Err(ApiError::bad(format!(
            "Google sign-in was not completed: {}",
            err.chars().take(100).collect::<String>()
        )));
    }
    let st = req
        .cookie(OIDC_COOKIE)
        .and_then(|c| open_state(&app, c.value()))
        .ok_or_else(|| ApiError::bad("sign-in session missing or expired; start again"))?;
    if st.exp < app.clock.now().timestamp() {
        return Err(ApiError::bad("sign-in session expired; start again"));
    }
    match &q.state {
        Some(s) if ct_eq(s, &st.state) => {}
        _ => return Err(ApiError::bad("state mismatch; start again")),
    }
    let code = q
        .code
        .as_deref()
        .ok_or_else(|| ApiError::bad("code is required"))?;
    let claims = app
        .oidc
        .exchange(code, &st.verifier, &st.nonce)
        .await
        .map_err(|e| {
            tracing::warn!(error = %format!("{e:#}"), "Google sign-in rejected");
            ApiError::bad("Google sign-in could not be verified")
        })?;
    let signed_in = app.google_sign_in(claims, &st.age, &ctx).await?;
    let mut resp = signed_in_response(&app, signed_in, false);
    let _ = resp.add_cookie(&expired(OIDC_COOKIE, app.cfg.cookie_secure));
    Ok(resp)
}

/// Ends the current session and clears its cookies.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody)),
    security(("session" = [])))]
pub async fn logout(
    app: web::Data<AppState>,
    ctx: Ctx,
    auth: SessionAuth,
) -> Result<HttpResponse, ApiError> {
    app.logout(&auth.token, auth.account_id, &ctx).await?;
    let secure = app.cfg.cookie_secure;
    Ok(HttpResponse::NoContent()
        .cookie(expired(SESSION_COOKIE, secure))
        .cookie(expired(CSRF_COOKIE, secure))
        .finish())
}
