//! `/`: the sign-in page for visitors, the overview for signed-in holders; and sign-out.

use super::{error_page, page_session, render, see_other, when, Chrome, Form, HOME};
use crate::auth::{Ctx, CSRF_COOKIE, SESSION_COOKIE};
use crate::error::ApiError;
use crate::routes::expired;
use crate::web::FormBody;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignIn {
    chrome: Chrome,
    /// Whether Google sign-in is configured (else no link to it).
    google: bool,
}

pub struct TaskRow {
    pub task_id: String,
    pub task_type: String,
    pub model: String,
    pub status: String,
    pub credits: i64,
    pub created: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    chrome: Chrome,
    email: String,
    available: u64,
    reserved: u64,
    plan: String,
    total_images: i64,
    tasks: Vec<TaskRow>,
}

/// How many recent tasks the overview lists.
const RECENT_TASKS: u32 = 10;

pub async fn home(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    match page_session(&app, &req).await {
        Ok(Some(s)) => match overview(&app, &s).await {
            Ok(page) => render(StatusCode::OK, &page),
            Err(e) => error_page(&e, HOME),
        },
        Ok(None) => {
            let google = app.oidc.configured();
            let mut page = render(
                StatusCode::OK,
                &SignIn {
                    chrome: Chrome::signed_out("Sign in to JourneyAPI"),
                    google,
                },
            );
            if google {
                allow_google_form(&app, &mut page);
            }
            page
        }
        Err(e) => error_page(&e, HOME),
    }
}

/// The Google form posts to us and we redirect to the issuer's sign-in page. Browsers
/// apply `form-action` to that redirect too, so the sign-in page (only it) also allows the
/// issuer's origin. Google serves its authorization endpoint from the issuer's origin
/// (`https://accounts.google.com`), and so does any issuer configured in its place here.
fn allow_google_form(app: &Core, page: &mut HttpResponse) {
    let Ok(issuer) = url::Url::parse(&app.cfg.google_issuer) else {
        return;
    };
    let origin = issuer.origin().ascii_serialization();
    let csp = super::CSP.replace(
        "form-action 'self'",
        &format!("form-action 'self' {origin}"),
    );
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&csp) {
        page.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("content-security-policy"),
            v,
        );
    }
}

/// The same reads as `GET /api/v1/account`, `GET /v1/billing` and `GET /v1/tasks`.
async fn overview(app: &Core, s: &crate::auth::SessionAuth) -> Result<Overview, ApiError> {
    let me = app.identity().me(s.account_id).await?;
    let balance = app.credits().balance(s.account_id).await?;
    let plan = app.credits().plan_of(s.account_id).await?;
    let total_images = app.tasks().total_images(s.account_id).await?;
    let page = app
        .tasks()
        .task_page(s.account_id, None, None, RECENT_TASKS)
        .await?;
    Ok(Overview {
        chrome: Chrome::signed_in(app, s, "Overview", "overview"),
        email: me.email,
        available: balance.available,
        reserved: balance.reserved,
        plan,
        total_images,
        tasks: page
            .tasks
            .into_iter()
            .map(|t| TaskRow {
                task_id: t.task_id,
                task_type: t.task_type,
                model: t.model,
                status: t.status,
                credits: t.credits,
                created: when(t.created_at),
            })
            .collect(),
    })
}

/// `POST /logout` (the header's sign-out form): ends the session as `POST /v1/auth/logout`
/// does, clears both cookies and returns to the sign-in page.
pub async fn logout(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, HOME);
    if let Err(e) = app.identity().logout(&s.token, s.account_id, &ctx).await {
        return error_page(&e.into(), HOME);
    }
    let secure = app.cfg.cookie_secure;
    let mut resp = see_other("/");
    let _ = resp.add_cookie(&expired(SESSION_COOKIE, secure));
    let _ = resp.add_cookie(&expired(CSRF_COOKIE, secure));
    resp
}
