//! Sign-in: magic links (confirmation page + POST, so mail scanners cannot burn a link),
//! Google OpenID Connect, and logout.

use super::pages::{self, page, Body};
use super::{cookie, expired};
use crate::auth::Ctx;
use crate::auth::{SessionAuth, CSRF_COOKIE, SESSION_COOKIE};
use crate::error::ServiceError;
use crate::error::{ApiError, ErrorBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::guard::{self, GuardContext};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use journey_commands::secrets::normalize_email;
use journey_commands::secrets::{self, ct_eq, hmac_hex};
use journey_contexts::app::Core;
use journey_contexts::identity::{AgeInput, ConsumeError, SignUpRefusal, SignedIn};
use journey_domain::magic_link::{LinkPurpose, MagicLinkError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

const OIDC_COOKIE: &str = "journey_oidc";
/// Binds a magic link to the browser that opened its confirmation page: one cookie per link
/// (`journey_link_<id>`), so several open links do not displace each other. SameSite=Lax
/// keeps it off cross-site POSTs, so another site cannot sign a visitor into its account.
const LINK_COOKIE_PREFIX: &str = "journey_link_";

pub fn routes(cfg: &mut web::ServiceConfig) {
    // A browser form (the pages below offer one) gets HTML; anything else is the JSON API.
    cfg.service(
        web::resource("/v1/auth/magic-link")
            .route(
                web::post()
                    .guard(guard::fn_guard(form_guard))
                    .to(request_magic_link_form),
            )
            .route(web::post().to(request_magic_link)),
    )
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
/// account exists (no account enumeration). A form-encoded body (`email=…`, the form on the
/// sign-in pages) gets the same answers as HTML pages.
#[utoipa::path(post, path = "/v1/auth/magic-link", tag = "auth",
    request_body(content((MagicLinkRequest = "application/json"), (MagicLinkRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 202, description = "If the address can receive mail, a link is on its way (`{}`, or an HTML page for a form post)",
            content(("application/json"), (String = "text/html"))),
        (status = 400, description = "Not a valid email address (for a form post: HTML page with the form again)",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 429, description = "Too many links requested for this address or from this IP; `Retry-After` says when to try again",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 503, description = "Email could not be sent",
            content((ErrorBody = "application/json"), (String = "text/html")))))]
pub async fn request_magic_link(
    app: web::Data<Core>,
    ctx: Ctx,
    body: web::Json<MagicLinkRequest>,
) -> Result<HttpResponse, ApiError> {
    app.identity().request_magic_link(&body.email, &ctx).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({})))
}

/// Whether a request carries a browser form (`application/x-www-form-urlencoded`).
fn is_form(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

fn form_guard(ctx: &GuardContext<'_>) -> bool {
    is_form(&ctx.head().headers)
}

/// One field of a form-encoded body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `POST /v1/auth/magic-link` from a browser form: the same use case, answered in HTML.
/// (Documented with `request_magic_link`, which shares its path.)
pub async fn request_magic_link_form(
    app: web::Data<Core>,
    ctx: Ctx,
    body: web::Bytes,
) -> HttpResponse {
    let raw = form_field(&body, "email").unwrap_or_default();
    let shown = normalize_email(&raw).unwrap_or_else(|| raw.trim().to_string());
    match app.identity().request_magic_link(&raw, &ctx).await {
        Ok(()) => page(
            StatusCode::ACCEPTED,
            "Check your email",
            Body::new()
                .markup("<p>If ")
                .text(&shown)
                .markup(" can receive mail, a sign-in link is on its way.</p>")
                .p(&format!(
                    "Open it within {} minutes and press the button on the page it opens. \
                     It works once. If nothing arrives, check your spam folder, then ask again.",
                    pages::minutes(app.cfg.magic_link_ttl_secs.max(0) as u64)
                )),
        ),
        Err(ServiceError::BadRequest(_)) => page(
            StatusCode::BAD_REQUEST,
            "Enter a valid email address",
            Body::new()
                .p("That is not an email address a sign-in link can be sent to. Check it and try again.")
                .request_link_form(&raw),
        ),
        Err(ServiceError::TooManyRequests(wait)) => {
            let mut resp = page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-in links requested",
                Body::new()
                    .p(&format!(
                        "Too many links were requested for this address or from your network. \
                         Try again in about {} minutes. A link already sent still works until it expires.",
                        pages::minutes(wait.as_secs())
                    )),
            );
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(wait.as_secs().max(1)),
            );
            resp
        }
        Err(e) => pages::error_page(
            &e.into(),
            "No sign-in link was sent",
            Body::new().p("Try again in a few minutes.").request_link_form(&raw),
        ),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct TokenQuery {
    pub token: Option<String>,
}

/// The page the emailed link opens. It changes nothing: the token is consumed only by the
/// POST its button sends.
#[utoipa::path(get, path = "/v1/auth/magic-link/confirm", tag = "auth", params(TokenQuery),
    responses(
        (status = 200, description = "HTML page with a button that signs in", content_type = "text/html"),
        (status = 400, description = "HTML page: link unknown, already used or expired, with a form to request a new one", content_type = "text/html")))]
pub async fn confirm_page(app: web::Data<Core>, q: web::Query<TokenQuery>) -> HttpResponse {
    let mut page = confirm_page_body(&app, &q).await;
    if page.status().is_success() {
        let token = q.token.as_deref().unwrap_or_default();
        let _ = page.add_cookie(&link_cookie(&app, token, app.cfg.magic_link_ttl_secs));
    }
    page
}

fn link_binding(app: &Core, token: &str) -> String {
    hmac_hex(&app.pepper, "magic-link-browser", token)
}

/// The binding cookie for one link: its name derives from the binding, its value is the
/// binding (an HMAC of the token under the pepper; the token itself is never in a cookie).
fn link_cookie(app: &Core, token: &str, max_age_secs: i64) -> Cookie<'static> {
    let binding = link_binding(app, token);
    Cookie::build(format!("{LINK_COOKIE_PREFIX}{}", &binding[..16]), binding)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(app.cfg.cookie_secure)
        .path("/v1/auth/magic-link")
        .max_age(actix_web::cookie::time::Duration::seconds(max_age_secs))
        .finish()
}

/// A token of a plausible length (else it cannot name a link).
fn usable_token(token: Option<&str>) -> Option<&str> {
    token.filter(|t| !t.is_empty() && t.len() <= 128)
}

async fn confirm_page_body(app: &Core, q: &TokenQuery) -> HttpResponse {
    let Some(token) = usable_token(q.token.as_deref()) else {
        return link_refused(app, &MagicLinkError::Unknown, None);
    };
    let status = match app
        .identity()
        .magic_link_status(token, app.clock.now())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            return pages::error_page(&e.into(), "This link cannot be checked now", Body::new())
        }
    };
    match status.usable {
        Ok(purpose) => {
            let kind = confirm_kind(app, purpose).await;
            page(
                StatusCode::OK,
                kind.title(),
                confirm_form(app, token, kind, "", false),
            )
        }
        Err(e) => link_refused(app, &e, status.purpose),
    }
}

/// What the confirmation form does.
#[derive(Clone, Copy, PartialEq)]
enum Confirm {
    SignUp,
    SignIn,
    ChangeEmail,
}

impl Confirm {
    fn title(self) -> &'static str {
        match self {
            Confirm::SignUp => "Create your JourneyAPI account",
            Confirm::SignIn => "Sign in to JourneyAPI",
            Confirm::ChangeEmail => "Confirm your new email address",
        }
    }
}

async fn confirm_kind(app: &Core, purpose: LinkPurpose) -> Confirm {
    match purpose {
        LinkPurpose::SignIn { account_id } => {
            if app
                .identity()
                .is_new_account(account_id)
                .await
                .unwrap_or(false)
            {
                Confirm::SignUp
            } else {
                Confirm::SignIn
            }
        }
        LinkPurpose::ChangeEmail { .. } => Confirm::ChangeEmail,
    }
}

/// The confirmation form: the token, the age fields for a new account (children's privacy,
/// policy section 9), the button. `country` and `age_confirmed` refill a refused sign-up.
fn confirm_form(
    app: &Core,
    token: &str,
    kind: Confirm,
    country: &str,
    age_confirmed: bool,
) -> Body {
    let mut form = Body::new()
        .markup("<form method=\"post\" action=\"")
        .markup(pages::CONSUME_ACTION)
        .markup("\">")
        .hidden("token", token);
    if kind == Confirm::SignUp {
        form = form
            .field(
                "Country (two-letter code)",
                "country",
                "required maxlength=\"2\" autocomplete=\"country\"",
                country,
            )
            .markup(if age_confirmed {
                "<p><label><input type=\"checkbox\" name=\"age_confirmed\" required checked> "
            } else {
                "<p><label><input type=\"checkbox\" name=\"age_confirmed\" required> "
            })
            .text(&format!(
                "I am at least 13 years old (16 if I live in {})",
                app.cfg.age_16_countries.join(", ")
            ))
            .markup("</label></p>");
    }
    form.markup(match kind {
        Confirm::SignUp => "<button type=\"submit\">Create account</button></form>",
        Confirm::SignIn => "<button type=\"submit\">Sign in</button></form>",
        Confirm::ChangeEmail => "<button type=\"submit\">Confirm</button></form>",
    })
}

/// 400: the link is unknown, already used or expired; what to do instead.
fn link_refused(app: &Core, e: &MagicLinkError, purpose: Option<LinkPurpose>) -> HttpResponse {
    let (title, what) = match e {
        MagicLinkError::AlreadyUsed => (
            "This link was already used",
            "Each link works only once, and this one has been used. If you pressed its button a \
             moment ago, you may already be signed in."
                .to_string(),
        ),
        MagicLinkError::Expired => (
            "This link has expired",
            format!(
                "Links work for {} minutes after they are sent, and this one is older.",
                pages::minutes(app.cfg.magic_link_ttl_secs.max(0) as u64)
            ),
        ),
        MagicLinkError::Unknown | MagicLinkError::AlreadyIssued => (
            "This link is not valid",
            "The link is incomplete or was changed on its way (some mail programs break long \
             links). Open it again from your email, copying the whole address if needed."
                .to_string(),
        ),
    };
    let next = match purpose {
        Some(LinkPurpose::ChangeEmail { .. }) => {
            "To change your email address, sign in and ask for the change again; a new link \
             goes to the new address. To sign in, request a new sign-in link:"
        }
        _ => "Request a new one: enter your email address and we will send a new sign-in link.",
    };
    page(
        StatusCode::BAD_REQUEST,
        title,
        Body::new().p(&what).p(next).request_link_form(""),
    )
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

fn signed_in_response(app: &Core, s: SignedIn, as_html: bool) -> HttpResponse {
    let csrf = app.identity().csrf_token(&s.session_token);
    let secure = app.cfg.cookie_secure;
    let ttl = app.cfg.session_ttl_secs;
    let mut resp = HttpResponse::Ok();
    resp.cookie(cookie(SESSION_COOKIE, s.session_token, ttl, true, secure))
        .cookie(cookie(CSRF_COOKIE, csrf.clone(), ttl, false, secure))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if as_html {
        let mut r = page(
            StatusCode::OK,
            "You are signed in",
            Body::new().markup("<p><a href=\"/\">Go to your dashboard</a></p>"),
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
/// email change. Accepts JSON, or the confirmation page's form post, which gets HTML pages
/// (success or failure: what happened and what to do next).
#[utoipa::path(post, path = "/v1/auth/magic-link/consume", tag = "auth",
    request_body(content((ConsumeRequest = "application/json"), (ConsumeRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Signed in; session and CSRF cookies set (or email change confirmed). A form post gets an HTML page",
            content((SignInResponse = "application/json"), (String = "text/html"))),
        (status = 400, description = "Link unknown, already used or expired, unsupported content type, or a sign-up without `country` and `age_confirmed: true` (no account is created, the link still works). A form post gets an HTML page saying which, with a form to request a new link, or the sign-up form again",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "Account erased or pending deletion, or a form post from a browser that did not open the (still usable) link. A form post gets an HTML page",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 409, description = "New email belongs to another account. A form post gets an HTML page",
            content((ErrorBody = "application/json"), (String = "text/html")))))]
pub async fn consume(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if is_form(req.headers()) {
        return Ok(consume_form(&app, &ctx, &req, &body).await);
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let parsed: ConsumeRequest = if content_type.starts_with("application/json") {
        // JSON cannot be sent cross-site without a CORS preflight, which we never grant.
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?
    } else {
        return Err(ApiError::bad(
            "send the token as application/json or as the confirmation page's form",
        ));
    };
    if usable_token(Some(&parsed.token)).is_none() {
        return Err(ApiError::bad("this sign-in link is not valid"));
    }
    let age = AgeInput {
        country: parsed.country.clone(),
        age_confirmed: parsed.age_confirmed,
    };
    Ok(
        match app
            .identity()
            .consume_magic_link(&parsed.token, &age, &ctx)
            .await?
        {
            Some(signed_in) => signed_in_response(&app, signed_in, false),
            None => HttpResponse::Ok().json(EmailChangedResponse {
                email_changed: true,
            }),
        },
    )
}

/// The confirmation page's form post. Checks run in this order, so each refusal names its
/// real cause: the link itself (unknown, used, expired: whichever browser posts it), then the
/// browser binding (only a usable link can be "opened in another browser"), then the
/// consume (sign-up terms, account state). Every answer is an HTML page.
async fn consume_form(app: &Core, ctx: &Ctx, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    let token = form_field(body, "token");
    let Some(token) = usable_token(token.as_deref()) else {
        return link_refused(app, &MagicLinkError::Unknown, None);
    };
    let country = form_field(body, "country").filter(|c| !c.is_empty());
    let age = AgeInput {
        country: country.clone(),
        age_confirmed: form_field(body, "age_confirmed").is_some_and(|v| v == "on" || v == "true"),
    };
    let status = match app.identity().magic_link_status(token, ctx.at).await {
        Ok(s) => s,
        Err(e) => return consume_failed(&e.into(), None),
    };
    let purpose = match status.usable {
        Ok(p) => p,
        Err(e) => return spent(app, token, link_refused(app, &e, status.purpose)),
    };
    let expected = link_cookie(app, token, 0);
    let bound = req.cookie(expected.name()).map(|c| c.value().to_string());
    if !bound.is_some_and(|b| ct_eq(&b, expected.value())) {
        return wrong_browser();
    }
    // The binding cookie is dropped once the link is spent; where it may still work (or the
    // outcome is unknown) it stays, so a retry is not mistaken for another browser.
    match app.identity().consume_magic_link(token, &age, ctx).await {
        Ok(Some(signed_in)) => spent(app, token, signed_in_response(app, signed_in, true)),
        Ok(None) => spent(
            app,
            token,
            page(
                StatusCode::OK,
                "Email address confirmed",
                Body::new().p("Your new address is now active."),
            ),
        ),
        // Another post of the same form got there first.
        Err(ConsumeError::Link(e)) => spent(app, token, link_refused(app, &e, Some(purpose))),
        Err(ConsumeError::SignUp(refusal)) => {
            sign_up_refused(app, token, &refusal, country.as_deref(), &age)
        }
        Err(ConsumeError::PendingDeletion) => spent(
            app,
            token,
            account_closed(
                app,
                "This account is scheduled for deletion",
                "It was closed at its holder's request and is deleted when its 30-day window \
                 ends; until then nobody can sign in to it.",
                "To cancel the deletion, contact support before the window ends:",
            ),
        ),
        Err(ConsumeError::Erased) => account_closed(
            app,
            "This account has been erased",
            "Its data was deleted and it can no longer be signed in to.",
            "If you think this is a mistake, contact us:",
        ),
        Err(ConsumeError::Other(e)) => consume_failed(&e.into(), Some(purpose)),
    }
}

/// The link cannot be used again (or was just used): drop its binding cookie.
fn spent(app: &Core, token: &str, mut resp: HttpResponse) -> HttpResponse {
    let _ = resp.add_cookie(&link_cookie(app, token, 0));
    resp
}

/// 403: a usable link posted without its binding cookie.
fn wrong_browser() -> HttpResponse {
    page(
        StatusCode::FORBIDDEN,
        "Open the link in this browser",
        Body::new()
            .p("This button was pressed in a browser that did not open the link from your email, \
                or that does not keep this site's cookies. A sign-in link only works in the browser \
                that opened it, so that another site cannot sign you into an account that is not yours.")
            .p("Your link still works: open it from your email in the browser you want to use \
                (with cookies allowed for this site) and press the button there. Or request a new link:")
            .request_link_form(""),
    )
}

/// 400: a sign-up without a valid country or the age confirmation, with the form again.
fn sign_up_refused(
    app: &Core,
    token: &str,
    refusal: &SignUpRefusal,
    country: Option<&str>,
    age: &AgeInput,
) -> HttpResponse {
    let what = match refusal {
        SignUpRefusal::Country => "To create an account, enter your country as a two-letter code \
                                   (for example FR, DE or US)."
            .to_string(),
        SignUpRefusal::Age {
            country,
            minimum_age,
        } => format!(
            "To create an account in {country} you must be at least {minimum_age} years old. \
             If you are, tick the box to confirm it."
        ),
    };
    page(
        StatusCode::BAD_REQUEST,
        Confirm::SignUp.title(),
        Body::new()
            .p(&what)
            .p("No account was created, and your link still works.")
            .join(confirm_form(
                app,
                token,
                Confirm::SignUp,
                country.unwrap_or_default(),
                age.age_confirmed,
            )),
    )
}

/// 403: the account behind the link is erased or pending deletion.
fn account_closed(app: &Core, title: &str, what: &str, next: &str) -> HttpResponse {
    page(
        StatusCode::FORBIDDEN,
        title,
        Body::new()
            .p(what)
            .markup("<p>")
            .text(next)
            .markup(" ")
            .text(&app.cfg.privacy_contact)
            .markup("</p>"),
    )
}

/// Any other failure, with the JSON API's status and message.
fn consume_failed(e: &ApiError, purpose: Option<LinkPurpose>) -> HttpResponse {
    match purpose {
        Some(LinkPurpose::ChangeEmail { .. }) => pages::error_page(
            e,
            "Your email address was not changed",
            Body::new().p(
                "To try again, sign in and ask for the change again; a new link goes to the new address.",
            ),
        ),
        _ => pages::error_page(
            e,
            "You are not signed in",
            Body::new()
                .p("Request a new link to try again:")
                .request_link_form(""),
        ),
    }
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

fn cookie_cipher(app: &Core) -> Aes256Gcm {
    let key = hex::decode(hmac_hex(&app.pepper, "oidc-cookie-key", "v1")).expect("hex");
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key))
}

fn seal_state(app: &Core, s: &OidcState) -> String {
    let nonce = secrets::random_bytes(12);
    let ct = cookie_cipher(app)
        .encrypt(
            Nonce::from_slice(&nonce),
            serde_json::to_vec(s).expect("json").as_slice(),
        )
        .expect("encrypt");
    URL_SAFE_NO_PAD.encode([nonce, ct].concat())
}

fn open_state(app: &Core, v: &str) -> Option<OidcState> {
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
    app: web::Data<Core>,
    q: web::Query<GoogleStartQuery>,
) -> Result<HttpResponse, ApiError> {
    if !app.oidc.configured() {
        return Err(ApiError::Service(ServiceError::Unavailable(
            "Google sign-in is not configured".into(),
        )));
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
            ApiError::Service(ServiceError::Unavailable(
                "Google sign-in is unavailable right now".into(),
            ))
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
        (status = 200, description = "Signed in; session and CSRF cookies set. A browser (`Accept: text/html`) gets an HTML page linking to the dashboard",
            content((SignInResponse = "application/json"), (String = "text/html"))),
        (status = 400, description = "State mismatch, denied consent, invalid token, or a sign-up without `country` and `age_confirmed`. A browser (`Accept: text/html`) gets an HTML page",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "Account erased or pending deletion (JSON; a browser gets an HTML page); or Google does not mark the account's email verified (`email_verified` false or missing): an HTML page that says so and offers an emailed sign-in link instead. Nothing is created, linked or claimed, also for an account already linked to that Google account",
            content((ErrorBody = "application/json"), (String = "text/html")))))]
pub async fn google_callback(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    q: web::Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    // Google sends the person's browser here; a browser asks for HTML (`Accept:
    // text/html`) and gets pages, any other client the JSON it always got.
    let browser = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    match google_callback_steps(&app, &ctx, &req, &q, browser).await {
        Err(e) if browser => {
            let status = actix_web::ResponseError::status_code(&e);
            let mut resp = page(
                status,
                "Google sign-in did not work",
                Body::new()
                    .markup("<p>")
                    .text(&crate::routes::pages::sentence(&e.to_string()))
                    .markup("</p><p><a href=\"/\">Back to sign in</a></p>"),
            );
            let _ = resp.add_cookie(&expired(OIDC_COOKIE, app.cfg.cookie_secure));
            Ok(resp)
        }
        other => other,
    }
}

async fn google_callback_steps(
    app: &Core,
    ctx: &Ctx,
    req: &HttpRequest,
    q: &CallbackQuery,
    browser: bool,
) -> Result<HttpResponse, ApiError> {
    if let Some(err) = &q.error {
        return Err(ApiError::bad(format!(
            "Google sign-in was not completed: {}",
            err.chars().take(100).collect::<String>()
        )));
    }
    let st = req
        .cookie(OIDC_COOKIE)
        .and_then(|c| open_state(app, c.value()))
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
    if !claims.email_verified {
        tracing::info!("Google sign-in refused: email not verified by Google");
        let mut resp = google_email_unverified(claims.email.as_deref().unwrap_or_default());
        let _ = resp.add_cookie(&expired(OIDC_COOKIE, app.cfg.cookie_secure));
        return Ok(resp);
    }
    let signed_in = app.identity().google_sign_in(claims, &st.age, ctx).await?;
    let mut resp = signed_in_response(app, signed_in, browser);
    let _ = resp.add_cookie(&expired(OIDC_COOKIE, app.cfg.cookie_secure));
    Ok(resp)
}

/// 403: Google does not vouch for the address, so it cannot become (or reach) an account.
/// (`google_sign_in` refuses it too; this is the browser's explanation.)
fn google_email_unverified(email: &str) -> HttpResponse {
    let shown = normalize_email(email).unwrap_or_default();
    let mut body = Body::new().markup("<p>Google has not confirmed that ");
    body = if shown.is_empty() {
        body.markup("the email address of the Google account you used")
    } else {
        body.text(&shown)
    };
    page(
        StatusCode::FORBIDDEN,
        "Your Google account's email is not verified",
        body.markup(
            " belongs to the Google account you signed in with, so JourneyAPI cannot use it: \
             receipts and notices for your account would go to that address. \
             Nothing was created or changed.</p><p>What you can do:</p><ul>\
             <li>Verify the address with Google (in your Google account settings), \
             then sign in with Google again.</li>\
             <li>Or sign in with a link sent by email to an address you can read:</li></ul>",
        )
        .request_link_form(&shown),
    )
}

/// Ends the current session and clears its cookies.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody)),
    security(("session" = [])))]
pub async fn logout(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
) -> Result<HttpResponse, ApiError> {
    app.identity()
        .logout(&auth.token, auth.account_id, &ctx)
        .await?;
    let secure = app.cfg.cookie_secure;
    Ok(HttpResponse::NoContent()
        .cookie(expired(SESSION_COOKIE, secure))
        .cookie(expired(CSRF_COOKIE, secure))
        .finish())
}
