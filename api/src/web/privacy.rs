//! `/privacy`: the holder's privacy centre. Consents, objection to marketing and
//! restriction of processing (as `/v1/me/consents`, `/v1/me/objection`,
//! `/v1/me/restriction`); "download my data" with a progress page and the download (as
//! `/v1/me/export` and `/v1/me/exports/*`); account deletion with a typed confirmation (as
//! `DELETE /v1/me`); data-subject requests with their code step (as `/v1/me/requests*`);
//! the policy versions notified and accepted (as `/v1/me/policy`) and the sub-processor
//! registry (as `/v1/legal/subprocessors`).

use super::{
    error_page, page_session, render, see_other, see_other_or_error, when, Chrome, Form, Next,
};
use crate::auth::{Ctx, SessionAuth, CSRF_COOKIE, SESSION_COOKIE};
use crate::error::{ApiError, ServiceError};
use crate::routes::expired;
use crate::web::FormBody;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;
use journey_contexts::privacy::consents::ConsentUpdate;
use journey_contexts::privacy::export_jobs::{self, ExportFormat};
use journey_contexts::privacy::requests::RequestRow;
use journey_contexts::privacy::retention::{CONFIRMATION, DELETION_WINDOW_DAYS};
use journey_domain::meta::Actor;
use journey_domain::requests::{Channel, RequestType};
use uuid::Uuid;

pub const PRIVACY: Next = Next {
    href: "/privacy",
    label: "Back to the privacy centre",
};

/// While an export is being built its page reloads itself this often (seconds), by the
/// `Refresh` header: no script needed.
const EXPORT_REFRESH_SECS: u32 = 2;

/// The request types a holder can submit, with their labels.
const REQUEST_TYPES: [(&str, &str); 6] = [
    ("access", "Access: a copy of the data held about me"),
    ("correction", "Correction of inaccurate data"),
    ("deletion", "Deletion of my data"),
    (
        "portability",
        "Portability: my data in a machine-readable form",
    ),
    ("restriction", "Restriction of processing"),
    ("objection", "Objection to processing"),
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    let na = || web::to(super::method_not_allowed);
    cfg.service(
        web::resource("/privacy")
            .route(web::get().to(centre))
            .default_service(na()),
    )
    .service(
        web::resource("/privacy/consents")
            .route(web::post().to(consents))
            .default_service(na()),
    )
    .service(
        web::resource("/privacy/objection")
            .route(web::post().to(objection))
            .default_service(na()),
    )
    .service(
        web::resource("/privacy/restriction")
            .route(web::post().to(restriction))
            .default_service(na()),
    )
    .service(
        web::resource("/privacy/export")
            .route(web::post().to(start_export))
            .default_service(na()),
    )
    .service(
        web::resource("/privacy/exports/{id}")
            .route(web::get().to(export_page))
            .default_service(na()),
    )
    .service(
        web::resource("/privacy/exports/{id}/download")
            .route(web::get().to(download))
            .default_service(na()),
    )
    .service(
        web::resource("/privacy/delete")
            .route(web::get().to(confirm_delete))
            .route(web::post().to(delete))
            .default_service(na()),
    )
    .service(
        web::resource("/privacy/requests")
            .route(web::post().to(submit_request))
            .default_service(na()),
    )
    .service(
        web::resource("/privacy/requests/{id}")
            .route(web::get().to(request_page))
            .default_service(na()),
    )
    .service(
        web::resource("/privacy/requests/{id}/verify")
            .route(web::post().to(verify_request))
            .default_service(na()),
    )
    .service(
        web::resource("/privacy/requests/{id}/code")
            .route(web::post().to(resend_code))
            .default_service(na()),
    );
}

fn not_found(what: &str) -> ApiError {
    ApiError::Service(ServiceError::NotFound(format!("no such {what} of yours")))
}

pub struct HistoryRow {
    pub at: String,
    pub change: String,
    pub source: String,
    pub policy_version: String,
}

pub struct RequestItem {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub received: String,
    pub due: String,
    pub closed: String,
    pub overdue: bool,
}

impl RequestItem {
    fn of(r: RequestRow) -> RequestItem {
        RequestItem {
            id: r.request_id,
            kind: r.kind,
            status: r.status.replace('_', " "),
            received: when(r.received_at),
            due: when(r.due_at),
            closed: r.closed_at.map(when).unwrap_or_default(),
            overdue: r.overdue,
        }
    }
}

pub struct PolicyRow {
    pub version: String,
    pub notified: String,
    pub accepted: String,
}

pub struct SubprocessorRow {
    pub name: String,
    pub purpose: String,
    pub data: String,
    pub location: String,
    pub safeguard: String,
}

#[derive(Template)]
#[template(path = "privacy.html")]
struct CentrePage {
    chrome: Chrome,
    csrf: String,
    /// The consents form was just saved.
    saved: bool,
    analytics: bool,
    marketing: bool,
    objected: bool,
    restricted: bool,
    policy_version: String,
    history: Vec<HistoryRow>,
    requests: Vec<RequestItem>,
    request_types: Vec<(&'static str, &'static str)>,
    policies: Vec<PolicyRow>,
    subprocessors: Vec<SubprocessorRow>,
}

/// `GET /privacy`: the same reads as `GET /v1/me/consents`, `GET /v1/me/requests`,
/// `GET /v1/me/policy` and `GET /v1/legal/subprocessors`.
pub async fn centre(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let s = page_holder!(app, req, PRIVACY);
    let saved = req.query_string() == "saved=consents";
    match build_centre(&app, &s, saved).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&e, super::HOME),
    }
}

async fn build_centre(app: &Core, s: &SessionAuth, saved: bool) -> Result<CentrePage, ApiError> {
    let c = app.privacy().consents_view(s.account_id).await?;
    let requests = app
        .privacy()
        .list_requests(None, None, Some(s.account_id))
        .await?;
    let policies = app.legal().policy_acks_of(s.account_id).await?;
    Ok(CentrePage {
        chrome: Chrome::signed_in(app, s, "Privacy", "privacy"),
        csrf: app.identity().csrf_token(&s.token),
        saved,
        analytics: c.analytics_cookies,
        marketing: c.marketing_email,
        objected: c.marketing_objection,
        restricted: c.restricted,
        policy_version: c.policy_version,
        history: c
            .history
            .into_iter()
            .rev()
            .map(|h| HistoryRow {
                at: when(h.at),
                change: describe_change(&h.event, h.purpose.as_deref()),
                source: match h.source.as_deref() {
                    Some("holder") => "you".into(),
                    Some("staff") => "our privacy team".into(),
                    other => other.unwrap_or_default().to_string(),
                },
                policy_version: h.policy_version.unwrap_or_default(),
            })
            .collect(),
        requests: requests.into_iter().map(RequestItem::of).collect(),
        request_types: REQUEST_TYPES.to_vec(),
        policies: policies
            .into_iter()
            .map(|p| PolicyRow {
                version: p.version,
                notified: p.notified_at.map(when).unwrap_or_else(|| "not yet".into()),
                accepted: p.accepted_at.map(when).unwrap_or_else(|| "not yet".into()),
            })
            .collect(),
        subprocessors: app
            .cfg
            .subprocessors
            .values()
            .map(|sp| SubprocessorRow {
                name: sp.name.clone(),
                purpose: sp.purpose.clone(),
                data: sp.data_categories.join(", "),
                location: sp.location.clone(),
                safeguard: sp.transfer_safeguard.clone(),
            })
            .collect(),
    })
}

fn purpose_label(p: Option<&str>) -> &'static str {
    match p {
        Some("analytics_cookies") => "analytics",
        Some("marketing_email") => "marketing email",
        Some("necessary") => "necessary processing",
        _ => "processing",
    }
}

fn describe_change(event: &str, purpose: Option<&str>) -> String {
    match event {
        "ConsentGiven" => format!("Consent to {} given", purpose_label(purpose)),
        "ConsentWithdrawn" => format!("Consent to {} withdrawn", purpose_label(purpose)),
        "MarketingObjected" => "Objection to direct marketing recorded".into(),
        "ProcessingRestricted" => "Processing restricted".into(),
        "RestrictionLifted" => "Restriction of processing lifted".into(),
        other => other.to_string(),
    }
}

/// A checkbox's value: ticked (`on`) or not sent. Anything else is a malformed form.
fn checkbox(form: &Form, name: &str) -> Result<bool, ApiError> {
    match form.get(name) {
        None => Ok(false),
        Some("on") => Ok(true),
        Some(_) => Err(ApiError::bad(format!(
            "the {} box must be ticked or left empty",
            name.replace('_', " ")
        ))),
    }
}

/// `POST /privacy/consents`: both optional purposes as the boxes stand (an unticked box
/// withdraws), through the same use case as `PUT /v1/me/consents`.
pub async fn consents(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, PRIVACY);
    let update = match (
        checkbox(&form, "analytics_cookies"),
        checkbox(&form, "marketing_email"),
    ) {
        (Ok(a), Ok(m)) => ConsentUpdate {
            analytics_cookies: Some(a),
            marketing_email: Some(m),
            necessary: None,
        },
        (Err(e), _) | (_, Err(e)) => return error_page(&e, PRIVACY),
    };
    see_other_or_error(
        app.privacy()
            .update_consents(s.account_id, update, &ctx)
            .await,
        "/privacy?saved=consents#consents",
        PRIVACY,
    )
}

/// `POST /privacy/objection`: as `POST /v1/me/objection`.
pub async fn objection(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, PRIVACY);
    see_other_or_error(
        app.privacy().object_to_marketing(s.account_id, &ctx).await,
        "/privacy#objection",
        PRIVACY,
    )
}

/// `POST /privacy/restriction`: as `POST /v1/me/restriction`.
pub async fn restriction(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, PRIVACY);
    see_other_or_error(
        app.privacy().restrict_processing(s.account_id, &ctx).await,
        "/privacy#restriction",
        PRIVACY,
    )
}

/// `POST /privacy/export` (`format`: `json` or `html`): starts an export as
/// `POST /v1/me/export` does and shows its progress page.
pub async fn start_export(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, PRIVACY);
    let Some(format) = ExportFormat::parse(form.get("format").unwrap_or("json")) else {
        return error_page(&ApiError::bad("format must be json or html"), PRIVACY);
    };
    match export_jobs::start(&app, s.account_id, format, &ctx).await {
        Ok(job) => see_other(format!("/privacy/exports/{}", job.job_id)),
        Err(e) => error_page(&e.into(), PRIVACY),
    }
}

#[derive(Template)]
#[template(path = "privacy_export.html")]
struct ExportPage {
    chrome: Chrome,
    job_id: Uuid,
    status: String,
    format: &'static str,
    /// Our own download path (with the signed link's parameters), when ready.
    download: Option<String>,
    expires: String,
    refresh_secs: u32,
}

/// The export job `id` names, if it is the holder's (another account's job and a
/// malformed id are "not found" alike).
fn job_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| not_found("export"))
}

/// `GET /privacy/exports/{id}`: pending (the page reloads itself), ready (the download
/// link) or failed. As `GET /v1/me/exports/{id}`.
pub async fn export_page(
    app: web::Data<Core>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let s = page_holder!(app, req, PRIVACY);
    let job = match job_id(&id) {
        Ok(j) => j,
        Err(e) => return error_page(&e, PRIVACY),
    };
    let job = match export_jobs::status(&app, s.account_id, job).await {
        Ok(j) => j,
        Err(e) => return error_page(&e.into(), PRIVACY),
    };
    // The use case signs a link to the JSON API's download; the page serves the same
    // document through its own path, with the same signature, so failures stay pages.
    let download = job.download_url.as_deref().and_then(|u| {
        let query = u.split_once('?')?.1;
        Some(format!("/privacy/exports/{}/download?{query}", job.job_id))
    });
    let title = match job.status.as_str() {
        "ready" if download.is_some() => "Your data is ready",
        "ready" => "This download has expired",
        "failed" => "The export failed",
        _ => "Preparing your data",
    };
    let pending = job.status == "pending";
    let mut resp = render(
        StatusCode::OK,
        &ExportPage {
            chrome: Chrome::signed_in(&app, &s, title, "privacy"),
            job_id: job.job_id,
            status: job.status,
            format: job.format.as_str(),
            download,
            expires: job.expires_at.map(when).unwrap_or_default(),
            refresh_secs: EXPORT_REFRESH_SECS,
        },
    );
    if pending {
        resp.headers_mut().insert(
            header::HeaderName::from_static("refresh"),
            header::HeaderValue::from(EXPORT_REFRESH_SECS),
        );
    }
    resp
}

/// `GET /privacy/exports/{id}/download?expires=…&sig=…`: the ready document, through the
/// same use case (and signature check) as `GET /v1/me/exports/{id}/download`.
pub async fn download(
    app: web::Data<Core>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let s = match page_session(&app, &req).await {
        Ok(Some(s)) => s,
        Ok(None) => return error_page(&ApiError::Service(ServiceError::SignInRequired), PRIVACY),
        Err(e) => return error_page(&e, PRIVACY),
    };
    let job = match job_id(&id) {
        Ok(j) => j,
        Err(e) => return error_page(&e, PRIVACY),
    };
    let q = Form::parse(req.query_string().as_bytes());
    let (Some(expires), Some(sig)) = (
        q.get("expires").and_then(|e| e.parse::<i64>().ok()),
        q.get("sig"),
    ) else {
        return error_page(
            &ApiError::bad("this download link is incomplete; open it from the export page"),
            PRIVACY,
        );
    };
    match export_jobs::download(&app, s.account_id, job, expires, sig).await {
        Ok((format, text)) => HttpResponse::Ok()
            .content_type(format.content_type())
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"journeyapi-export-{job}.{}\"",
                    format.as_str()
                ),
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            // Should the document be opened rather than saved, it runs nothing.
            .insert_header(("Content-Security-Policy", "default-src 'none'; sandbox"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(text),
        Err(e) => error_page(&e.into(), PRIVACY),
    }
}

#[derive(Template)]
#[template(path = "privacy_delete.html")]
struct DeletePage {
    chrome: Chrome,
    csrf: String,
    email: String,
    phrase: &'static str,
    window_days: i64,
}

/// `GET /privacy/delete`: what deletion does, and the typed confirmation. Changes nothing.
pub async fn confirm_delete(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let s = page_holder!(app, req, PRIVACY);
    match app.identity().me(s.account_id).await {
        Ok(me) => render(
            StatusCode::OK,
            &DeletePage {
                chrome: Chrome::signed_in(&app, &s, "Delete your account", "privacy"),
                csrf: app.identity().csrf_token(&s.token),
                email: me.email,
                phrase: CONFIRMATION,
                window_days: DELETION_WINDOW_DAYS,
            },
        ),
        Err(e) => error_page(&e.into(), PRIVACY),
    }
}

#[derive(Template)]
#[template(path = "privacy_deleted.html")]
struct DeletedPage {
    chrome: Chrome,
    purge_after: String,
    window_days: i64,
    api_keys_revoked: usize,
}

const DELETE_AGAIN: Next = Next {
    href: "/privacy/delete",
    label: "Back to the confirmation",
};

/// `POST /privacy/delete` (`confirm`): as `DELETE /v1/me`. The account is disabled at
/// once, which ends this session too: the answer is a signed-out page saying when the
/// data will be purged, and both cookies are cleared.
pub async fn delete(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, PRIVACY);
    match app
        .privacy()
        .request_deletion(s.account_id, form.get("confirm"), &ctx)
        .await
    {
        Ok(done) => {
            let mut resp = render(
                StatusCode::OK,
                &DeletedPage {
                    chrome: Chrome::signed_out("Your account is scheduled for deletion"),
                    purge_after: when(done.purge_after),
                    window_days: DELETION_WINDOW_DAYS,
                    api_keys_revoked: done.api_keys_revoked,
                },
            );
            let secure = app.cfg.cookie_secure;
            let _ = resp.add_cookie(&expired(SESSION_COOKIE, secure));
            let _ = resp.add_cookie(&expired(CSRF_COOKIE, secure));
            resp
        }
        // The use case's wording is for API clients (`{"confirm": ...}`); say it for a form.
        Err(ServiceError::BadRequest(_)) => error_page(
            &ApiError::bad(format!(
                "the confirmation did not match: type “{CONFIRMATION}” exactly. Nothing was deleted"
            )),
            DELETE_AGAIN,
        ),
        Err(e @ ServiceError::Conflict(_)) => error_page(&e.into(), super::billing::BILLING),
        Err(e) => error_page(&e.into(), DELETE_AGAIN),
    }
}

/// `POST /privacy/requests` (`type`): as `POST /v1/me/requests`; then the code step.
pub async fn submit_request(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, PRIVACY);
    let kind: RequestType =
        match serde_json::from_value(serde_json::json!(form.get("type").unwrap_or_default())) {
            Ok(k) => k,
            Err(_) => {
                return error_page(
                    &ApiError::bad("choose one of the listed request types"),
                    PRIVACY,
                )
            }
        };
    match app
        .privacy()
        .submit_request(
            s.account_id,
            kind,
            Channel::Account,
            Actor::Account(s.account_id),
            &ctx,
        )
        .await
    {
        Ok(v) => see_other(format!("/privacy/requests/{}", v.request_id)),
        Err(e) => error_page(&e.into(), PRIVACY),
    }
}

#[derive(Template)]
#[template(path = "privacy_request.html")]
struct RequestPage {
    chrome: Chrome,
    csrf: String,
    r: RequestItem,
    /// Waiting for the emailed code.
    awaiting_code: bool,
    /// What went wrong with the last code sent, if anything.
    error: String,
    /// A new code was just sent.
    resent: bool,
}

/// One of the holder's requests, from the same list as `GET /v1/me/requests`.
async fn own_request(app: &Core, s: &SessionAuth, id: &str) -> Result<RequestRow, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| not_found("request"))?;
    app.privacy()
        .list_requests(None, None, Some(s.account_id))
        .await?
        .into_iter()
        .find(|r| r.request_id == id.to_string())
        .ok_or_else(|| not_found("request"))
}

async fn show_request(
    app: &Core,
    s: &SessionAuth,
    id: &str,
    status: StatusCode,
    error: String,
    resent: bool,
) -> HttpResponse {
    match own_request(app, s, id).await {
        Ok(r) => {
            let awaiting_code = r.status == "received";
            let title = if awaiting_code {
                "Confirm your request"
            } else {
                "Your privacy request"
            };
            render(
                status,
                &RequestPage {
                    chrome: Chrome::signed_in(app, s, title, "privacy"),
                    csrf: app.identity().csrf_token(&s.token),
                    r: RequestItem::of(r),
                    awaiting_code,
                    error,
                    resent,
                },
            )
        }
        Err(e) => error_page(&e, PRIVACY),
    }
}

/// `GET /privacy/requests/{id}`: its state and due date; while unverified, the code form.
pub async fn request_page(
    app: web::Data<Core>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let s = page_holder!(app, req, PRIVACY);
    let resent = req.query_string() == "code=sent";
    show_request(&app, &s, &id, StatusCode::OK, String::new(), resent).await
}

/// `POST /privacy/requests/{id}/verify` (`code`): as `POST /v1/me/requests/{id}/verify`.
/// A wrong or expired code shows the request page again with what went wrong (400).
pub async fn verify_request(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    id: web::Path<String>,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, PRIVACY);
    let request = match Uuid::parse_str(&id) {
        Ok(r) => r,
        Err(_) => return error_page(&not_found("request"), PRIVACY),
    };
    match app
        .privacy()
        .verify_request(
            request,
            form.get("code").unwrap_or_default(),
            Some(s.account_id),
            Actor::Account(s.account_id),
            &ctx,
        )
        .await
    {
        Ok(_) => see_other(format!("/privacy/requests/{request}")),
        Err(ServiceError::BadRequest(msg)) => {
            show_request(
                &app,
                &s,
                &id,
                StatusCode::BAD_REQUEST,
                crate::routes::pages::sentence(&msg),
                false,
            )
            .await
        }
        Err(e) => error_page(&e.into(), PRIVACY),
    }
}

/// `POST /privacy/requests/{id}/code`: a new code, as `POST /v1/me/requests/{id}/code`.
pub async fn resend_code(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    id: web::Path<String>,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, PRIVACY);
    let request = match Uuid::parse_str(&id) {
        Ok(r) => r,
        Err(_) => return error_page(&not_found("request"), PRIVACY),
    };
    see_other_or_error(
        app.privacy()
            .resend_code(
                request,
                Some(s.account_id),
                Actor::Account(s.account_id),
                &ctx,
            )
            .await,
        format!("/privacy/requests/{request}?code=sent"),
        PRIVACY,
    )
}
