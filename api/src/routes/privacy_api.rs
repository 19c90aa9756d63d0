//! The holder's privacy controls: consents, objection to direct marketing, restriction of
//! processing; and the staff action that lifts a restriction.

use crate::auth::Ctx;
use crate::auth::{AdminOrCompliance, SessionAuth, Staff};
use crate::error::{ApiError, ErrorBody};
use actix_web::{web, HttpResponse};
use journey_contexts::app::Core;
use journey_contexts::privacy::consents::{ConsentUpdate, ConsentsView};
use journey_contexts::privacy::export_jobs::{self, ExportFormat, ExportJob};
use journey_contexts::privacy::retention::DeletionScheduled;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/me/consents", web::get().to(get_consents))
        .route("/v1/me/consents", web::put().to(put_consents))
        .route("/v1/me/objection", web::post().to(object))
        .route("/v1/me/restriction", web::post().to(restrict))
        .route(
            "/admin/v1/subjects/{id}/restriction/lift",
            web::post().to(lift_restriction),
        )
        .route(
            "/admin/v1/subjects/{id}/restriction",
            web::post().to(staff_restrict),
        )
        .route(
            "/admin/v1/subjects/{id}/objection",
            web::post().to(staff_object),
        );
}

async fn staff_apply(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    id: web::Path<Uuid>,
    body: web::Json<ReasonBody>,
    objection: bool,
) -> Result<HttpResponse, ApiError> {
    let view = app
        .privacy()
        .staff_apply(
            staff.account_id,
            id.into_inner(),
            objection,
            &body.reason,
            &ctx,
        )
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Restricts a subject's processing for a request that arrived another way (admin or
/// compliance; the reason, e.g. the request id, is recorded). Audited.
#[utoipa::path(post, path = "/admin/v1/subjects/{id}/restriction", tag = "admin",
    params(("id" = Uuid, Path, description = "The subject's account id")),
    request_body = ReasonBody,
    responses(
        (status = 200, body = ConsentsView),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 404, description = "No active account", body = ErrorBody)),
    security(("session" = [])))]
pub async fn staff_restrict(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    id: web::Path<Uuid>,
    body: web::Json<ReasonBody>,
) -> Result<HttpResponse, ApiError> {
    staff_apply(app, ctx, staff, id, body, false).await
}

/// Records a subject's objection to direct marketing for a request that arrived another way
/// (admin or compliance). Audited.
#[utoipa::path(post, path = "/admin/v1/subjects/{id}/objection", tag = "admin",
    params(("id" = Uuid, Path, description = "The subject's account id")),
    request_body = ReasonBody,
    responses(
        (status = 200, body = ConsentsView),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 404, description = "No active account", body = ErrorBody)),
    security(("session" = [])))]
pub async fn staff_object(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    id: web::Path<Uuid>,
    body: web::Json<ReasonBody>,
) -> Result<HttpResponse, ApiError> {
    staff_apply(app, ctx, staff, id, body, true).await
}

/// Consents by purpose, objection, restriction, and their history.
#[utoipa::path(get, path = "/v1/me/consents", tag = "privacy",
    responses((status = 200, body = ConsentsView), (status = 401, description = "Not signed in", body = ErrorBody)),
    security(("session" = [])))]
pub async fn get_consents(
    app: web::Data<Core>,
    auth: SessionAuth,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(app.privacy().consents_view(auth.account_id).await?))
}

/// Gives or withdraws consent per purpose; each change is recorded with time, source and
/// policy version.
#[utoipa::path(put, path = "/v1/me/consents", tag = "privacy", request_body = ConsentUpdate,
    responses(
        (status = 200, body = ConsentsView),
        (status = 400, description = "Nothing to change, unknown purpose, or necessary=false", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody)),
    security(("session" = [])))]
pub async fn put_consents(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    body: web::Json<ConsentUpdate>,
) -> Result<HttpResponse, ApiError> {
    let view = app
        .privacy()
        .update_consents(auth.account_id, body.into_inner(), &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Objects to direct marketing: withdraws marketing consent and records the objection.
#[utoipa::path(post, path = "/v1/me/objection", tag = "privacy",
    responses(
        (status = 200, body = ConsentsView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody)),
    security(("session" = [])))]
pub async fn object(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        app.privacy()
            .object_to_marketing(auth.account_id, &ctx)
            .await?,
    ))
}

/// Restricts processing: the data is kept but used only for the holder's own explicit
/// requests and legal duties (no analytics, no marketing) until staff lift it.
#[utoipa::path(post, path = "/v1/me/restriction", tag = "privacy",
    responses(
        (status = 200, body = ConsentsView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody)),
    security(("session" = [])))]
pub async fn restrict(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        app.privacy()
            .restrict_processing(auth.account_id, &ctx)
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why (e.g. the request id, or that the accuracy dispute was resolved); recorded.
    pub reason: String,
}

/// Lifts a subject's restriction of processing (admin or compliance). Audited.
#[utoipa::path(post, path = "/admin/v1/subjects/{id}/restriction/lift", tag = "admin",
    params(("id" = Uuid, Path, description = "The subject's account id")),
    request_body = ReasonBody,
    responses(
        (status = 200, body = ConsentsView),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 409, description = "Processing is not restricted", body = ErrorBody)),
    security(("session" = [])))]
pub async fn lift_restriction(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    id: web::Path<Uuid>,
    body: web::Json<ReasonBody>,
) -> Result<HttpResponse, ApiError> {
    let view = app
        .privacy()
        .lift_restriction(staff.account_id, id.into_inner(), &body.reason, &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

pub fn export_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/me/export", web::post().to(start_export))
        .route("/v1/me/exports/{id}", web::get().to(export_status))
        .route(
            "/v1/me/exports/{id}/download",
            web::get().to(export_download),
        )
        .route(
            "/admin/v1/subjects/{id}/export",
            web::get().to(staff_export),
        );
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ExportBody {
    /// `json` (default) or `html`.
    pub format: Option<ExportFormat>,
}

/// Starts an export of everything held about you (access and portability). Poll the job,
/// then download with the signed link it gives (valid one hour, only in your session).
#[utoipa::path(post, path = "/v1/me/export", tag = "privacy", request_body = ExportBody,
    responses(
        (status = 202, body = ExportJob),
        (status = 400, description = "Unknown format", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody)),
    security(("session" = [])))]
pub async fn start_export(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The body is optional; when present it must be valid.
    let body: ExportBody = if body.iter().all(u8::is_ascii_whitespace) {
        ExportBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?
    };
    let format = body.format.unwrap_or(ExportFormat::Json);
    let job = export_jobs::start(&app.into_inner(), auth.account_id, format, &ctx).await?;
    Ok(HttpResponse::Accepted().json(job))
}

/// An export job of yours: `pending`, `ready` (with `download_url`) or `failed`.
#[utoipa::path(get, path = "/v1/me/exports/{id}", tag = "privacy",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, body = ExportJob),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such export of yours", body = ErrorBody)),
    security(("session" = [])))]
pub async fn export_status(
    app: web::Data<Core>,
    auth: SessionAuth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let job = export_jobs::status(&app.into_inner(), auth.account_id, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(job))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DownloadQuery {
    pub expires: i64,
    pub sig: String,
}

/// Downloads a ready export through its signed link, in the session of the account it belongs to.
#[utoipa::path(get, path = "/v1/me/exports/{id}/download", tag = "privacy",
    params(("id" = Uuid, Path, description = "Job id"), DownloadQuery),
    responses(
        (status = 200, description = "The export document (JSON or HTML)"),
        (status = 400, description = "Malformed link", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Link expired or not for this account", body = ErrorBody),
        (status = 404, description = "No such export", body = ErrorBody)),
    security(("session" = [])))]
pub async fn export_download(
    app: web::Data<Core>,
    auth: SessionAuth,
    id: web::Path<Uuid>,
    q: web::Query<DownloadQuery>,
) -> Result<HttpResponse, ApiError> {
    let job = id.into_inner();
    let (format, text) =
        export_jobs::download(&app.into_inner(), auth.account_id, job, q.expires, &q.sig).await?;
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            "Content-Disposition",
            format!(
                "attachment; filename=\"journeyapi-export-{job}.{}\"",
                format.as_str()
            ),
        ))
        .insert_header(("Cache-Control", "no-store"))
        .body(text))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StaffExportQuery {
    /// Why (e.g. the request id); recorded in the audit trail.
    pub reason: Option<String>,
    /// `json` (default) or `html`.
    pub format: Option<String>,
}

/// A subject's export for a request that arrived another way (admin or compliance). Audited.
#[utoipa::path(get, path = "/admin/v1/subjects/{id}/export", tag = "admin",
    params(("id" = Uuid, Path, description = "The subject's account id"), StaffExportQuery),
    responses(
        (status = 200, description = "The export document"),
        (status = 400, description = "Missing reason or unknown format", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 404, description = "No data held about the subject", body = ErrorBody)),
    security(("session" = [])))]
pub async fn staff_export(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    id: web::Path<Uuid>,
    q: web::Query<StaffExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let format = match q.format.as_deref() {
        None => ExportFormat::Json,
        Some(f) => {
            ExportFormat::parse(f).ok_or_else(|| ApiError::bad("format must be json or html"))?
        }
    };
    let subject = id.into_inner();
    app.identity()
        .audit_read(
            staff.account_id,
            Some(subject),
            "subject.export",
            q.reason.as_deref(),
            &ctx,
        )
        .await?;
    let text = app
        .privacy()
        .export_document(subject, format, |_, _| {})
        .await?;
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header(("Cache-Control", "no-store"))
        .body(text))
}

pub fn deletion_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/me", web::delete().to(delete_me))
        .route("/admin/v1/retention/runs", web::get().to(retention_runs));
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    /// Must be exactly `delete my account`.
    pub confirm: Option<String>,
}

/// Deletes your account: disabled at once (signed out everywhere, API keys revoked), then
/// purged 30 days later. Billing records are kept, apart from your identity, up to 7
/// years. Within the 30 days only support can cancel (you can no longer sign in).
#[utoipa::path(delete, path = "/v1/me", tag = "privacy", request_body = DeleteBody,
    responses(
        (status = 202, body = DeletionScheduled),
        (status = 400, description = "Missing or wrong confirmation", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody)),
    security(("session" = [])))]
pub async fn delete_me(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    body: web::Json<DeleteBody>,
) -> Result<HttpResponse, ApiError> {
    let done = app
        .privacy()
        .request_deletion(auth.account_id, body.confirm.as_deref(), &ctx)
        .await?;
    Ok(HttpResponse::Accepted().json(done))
}

/// Recorded retention runs, newest first (admin or compliance).
#[utoipa::path(get, path = "/admin/v1/retention/runs", tag = "admin",
    responses(
        (status = 200, description = "Run reports: as_of, dry_run, accounts_purged, keys_destroyed, events_tombstoned"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody)),
    security(("session" = [])))]
pub async fn retention_runs(
    app: web::Data<Core>,
    _staff: Staff<AdminOrCompliance>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({ "runs": app.privacy().retention_runs(100).await? })))
}
