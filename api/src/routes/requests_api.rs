//! Data-subject requests: the holder's own (`/v1/me/requests`) and staff's worklist and
//! steps (`/admin/v1/requests`).

use crate::auth::Ctx;
use crate::auth::{AdminOrCompliance, SessionAuth, Staff};
use crate::error::{ApiError, ErrorBody};
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use journey_contexts::app::Core;
use journey_contexts::privacy::requests::{RequestRow, RequestView, Step};
use journey_domain::meta::Actor;
use journey_domain::requests::{Channel, RequestType};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/me/requests", web::post().to(submit))
        .route("/v1/me/requests", web::get().to(mine))
        .route("/v1/me/requests/{id}/verify", web::post().to(verify_mine))
        .route("/v1/me/requests/{id}/code", web::post().to(resend_mine))
        .route("/admin/v1/requests", web::post().to(record))
        .route("/admin/v1/requests", web::get().to(worklist))
        .route(
            "/admin/v1/requests/{id}/verify",
            web::post().to(verify_staff),
        )
        .route("/admin/v1/requests/{id}/code", web::post().to(resend_staff))
        .route("/admin/v1/requests/{id}/{step}", web::post().to(step));
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// access, correction, deletion, portability, restriction or objection.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: RequestType,
}

/// Submits a privacy request; a verification code goes to your email.
#[utoipa::path(post, path = "/v1/me/requests", tag = "privacy", request_body = SubmitBody,
    responses(
        (status = 201, body = RequestView),
        (status = 400, description = "Unknown request type", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody)),
    security(("session" = [])))]
pub async fn submit(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    body: web::Json<SubmitBody>,
) -> Result<HttpResponse, ApiError> {
    let v = app
        .privacy()
        .submit_request(
            auth.account_id,
            body.kind,
            Channel::Account,
            Actor::Account(auth.account_id),
            &ctx,
        )
        .await?;
    Ok(HttpResponse::Created().json(v))
}

#[derive(Serialize, ToSchema)]
pub struct RequestList {
    pub requests: Vec<RequestRow>,
}

/// Your privacy requests and their state.
#[utoipa::path(get, path = "/v1/me/requests", tag = "privacy",
    responses((status = 200, body = RequestList), (status = 401, description = "Not signed in", body = ErrorBody)),
    security(("session" = [])))]
pub async fn mine(app: web::Data<Core>, auth: SessionAuth) -> Result<HttpResponse, ApiError> {
    let requests = app
        .privacy()
        .list_requests(None, None, Some(auth.account_id))
        .await?;
    Ok(HttpResponse::Ok().json(RequestList { requests }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    pub code: String,
}

/// Verifies your request with the emailed code (10 minutes, 3 attempts).
#[utoipa::path(post, path = "/v1/me/requests/{id}/verify", tag = "privacy",
    params(("id" = Uuid, Path, description = "Request id")), request_body = CodeBody,
    responses(
        (status = 200, body = RequestView),
        (status = 400, description = "Wrong or expired code", body = ErrorBody),
        (status = 404, description = "No such request of yours", body = ErrorBody),
        (status = 409, description = "Already verified or closed", body = ErrorBody)),
    security(("session" = [])))]
pub async fn verify_mine(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    id: web::Path<Uuid>,
    body: web::Json<CodeBody>,
) -> Result<HttpResponse, ApiError> {
    let v = app
        .privacy()
        .verify_request(
            id.into_inner(),
            &body.code,
            Some(auth.account_id),
            Actor::Account(auth.account_id),
            &ctx,
        )
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// Sends a new verification code (the old one stops working).
#[utoipa::path(post, path = "/v1/me/requests/{id}/code", tag = "privacy",
    params(("id" = Uuid, Path, description = "Request id")),
    responses(
        (status = 200, body = RequestView),
        (status = 404, description = "No such request of yours", body = ErrorBody),
        (status = 409, description = "Already verified or closed", body = ErrorBody)),
    security(("session" = [])))]
pub async fn resend_mine(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let v = app
        .privacy()
        .resend_code(
            id.into_inner(),
            Some(auth.account_id),
            Actor::Account(auth.account_id),
            &ctx,
        )
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    /// The account's email address, as given in the request.
    pub email: String,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: RequestType,
}

/// Records a request that arrived by email; the code goes to the account's address.
/// Audited (`request.record`, the account as subject).
#[utoipa::path(post, path = "/admin/v1/requests", tag = "admin", request_body = RecordBody,
    responses(
        (status = 201, body = RequestView),
        (status = 400, description = "Bad email or type", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 404, description = "No account for that email", body = ErrorBody)),
    security(("session" = [])))]
pub async fn record(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    body: web::Json<RecordBody>,
) -> Result<HttpResponse, ApiError> {
    let subject = app.identity().account_by_email(&body.email).await?;
    let reason = format!("emailed {:?} request", body.kind).to_lowercase();
    app.identity()
        .audit_read(
            staff.account_id,
            Some(subject),
            "request.record",
            Some(&reason),
            &ctx,
        )
        .await?;
    let v = app
        .privacy()
        .submit_request(
            subject,
            body.kind,
            Channel::Email,
            Actor::Staff(staff.account_id),
            &ctx,
        )
        .await?;
    Ok(HttpResponse::Created().json(v))
}

/// Verifies an emailed request with the code the requester sent back. Audited
/// (`request.verify`, the request id as the reason).
#[utoipa::path(post, path = "/admin/v1/requests/{id}/verify", tag = "admin",
    params(("id" = Uuid, Path, description = "Request id")), request_body = CodeBody,
    responses(
        (status = 200, body = RequestView),
        (status = 400, description = "Wrong or expired code", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody)),
    security(("session" = [])))]
pub async fn verify_staff(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    id: web::Path<Uuid>,
    body: web::Json<CodeBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    app.privacy()
        .audit_request_work(staff.account_id, id, "request.verify", &ctx)
        .await?;
    let v = app
        .privacy()
        .verify_request(id, &body.code, None, Actor::Staff(staff.account_id), &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// Sends the requester a new code (e.g. the emailed requester's code expired). Audited
/// (`request.code`, the request id as the reason).
#[utoipa::path(post, path = "/admin/v1/requests/{id}/code", tag = "admin",
    params(("id" = Uuid, Path, description = "Request id")),
    responses(
        (status = 200, body = RequestView),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "Already verified or closed", body = ErrorBody)),
    security(("session" = [])))]
pub async fn resend_staff(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    app.privacy()
        .audit_request_work(staff.account_id, id, "request.code", &ctx)
        .await?;
    let v = app
        .privacy()
        .resend_code(id, None, Actor::Staff(staff.account_id), &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    /// Required to reject; optional note when completing.
    pub reason: Option<String>,
}

/// Moves a verified request on: `start`, `complete` or `reject` (with a reason). Audited
/// (`request.start`, `request.complete` or `request.reject`, the request id as the reason).
#[utoipa::path(post, path = "/admin/v1/requests/{id}/{step}", tag = "admin",
    params(("id" = Uuid, Path, description = "Request id"), ("step" = String, Path, description = "start, complete or reject")),
    request_body = StepBody,
    responses(
        (status = 200, body = RequestView),
        (status = 400, description = "Unknown step or missing reason", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "Not possible in the request's state", body = ErrorBody)),
    security(("session" = [])))]
pub async fn step(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    path: web::Path<(Uuid, String)>,
    body: Option<web::Json<StepBody>>,
) -> Result<HttpResponse, ApiError> {
    let (id, step) = path.into_inner();
    let reason = body.and_then(|b| b.into_inner().reason).unwrap_or_default();
    let step = match step.as_str() {
        "start" => Step::Start,
        "complete" => Step::Complete(reason),
        "reject" => Step::Reject(reason),
        other => {
            return Err(ApiError::bad(format!(
                "unknown step {other:?}: start, complete or reject"
            )))
        }
    };
    let action = match step {
        Step::Start => "request.start",
        Step::Complete(_) => "request.complete",
        Step::Reject(_) => "request.reject",
    };
    app.privacy()
        .audit_request_work(staff.account_id, id, action, &ctx)
        .await?;
    let v = app
        .privacy()
        .request_step(id, step, staff.account_id, &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WorklistQuery {
    /// Why you are reading the list; recorded in the audit trail.
    pub reason: Option<String>,
    /// received, verified, in_progress, completed or rejected.
    pub status: Option<String>,
    /// RFC 3339: only requests due before this instant.
    pub due_before: Option<DateTime<Utc>>,
}

/// The request worklist, soonest due first, overdue ones flagged. Audited: one entry per
/// subject listed (`requests.list`; one with no subject when the list is empty).
#[utoipa::path(get, path = "/admin/v1/requests", tag = "admin", params(WorklistQuery),
    responses(
        (status = 200, body = RequestList),
        (status = 400, description = "Missing reason or bad filter", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody)),
    security(("session" = [])))]
pub async fn worklist(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    q: web::Query<WorklistQuery>,
) -> Result<HttpResponse, ApiError> {
    let status = q.status.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = status {
        if ![
            "received",
            "verified",
            "in_progress",
            "completed",
            "rejected",
        ]
        .contains(&s)
        {
            return Err(ApiError::bad(format!("unknown status {s:?}")));
        }
    }
    let requests = app
        .privacy()
        .list_requests(status, q.due_before, None)
        .await?;
    let subjects = requests
        .iter()
        .filter_map(|r| Uuid::parse_str(&r.subject).ok());
    app.identity()
        .audit_reads(
            staff.account_id,
            subjects,
            "requests.list",
            q.reason.as_deref(),
            &ctx,
        )
        .await?;
    Ok(HttpResponse::Ok().json(RequestList { requests }))
}
