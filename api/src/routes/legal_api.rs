//! Policy lifecycle and incident duties: the public legal endpoints (`/v1/legal/*`, no
//! sign-in), the holder's policy record, and the staff registers for policy versions,
//! child reports, breaches and takedowns (`/admin/v1/*`).

use crate::auth::Ctx;
use crate::auth::{AdminOrCompliance, SessionAuth, Staff};
use crate::error::ServiceError;
use crate::error::{ApiError, ErrorBody};
use crate::routes::privacy_api::ReasonBody;
use actix_web::{web, HttpResponse};
use journey_contexts::app::Core;
use journey_contexts::config::Subprocessor;
use journey_contexts::legal::breaches::{BreachView, RecordBreach, RegulatorNotice};
use journey_contexts::legal::children::{ChildReportRequest, ChildReportView};
use journey_contexts::legal::policies::{
    PolicyAckView, PolicyView, PrivacyPolicyPage, PublishPolicy,
};
use journey_contexts::legal::takedowns::{Decision, TakedownRequest, TakedownView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/legal/privacy-policy", web::get().to(privacy_policy))
        .route("/v1/legal/subprocessors", web::get().to(subprocessors))
        .route("/v1/legal/age-requirement", web::get().to(age_requirement))
        .route("/v1/legal/child-report", web::post().to(child_report))
        .route("/v1/legal/takedown", web::post().to(takedown))
        .route("/v1/me/policy", web::get().to(my_policy))
        .route("/admin/v1/policies", web::post().to(publish_policy))
        .route(
            "/admin/v1/subjects/{id}/policy",
            web::get().to(subject_policy),
        )
        .route("/admin/v1/child-reports", web::get().to(child_reports))
        .route(
            "/admin/v1/child-reports/{id}/{decision}",
            web::post().to(decide_child_report),
        )
        .route("/admin/v1/breaches", web::post().to(record_breach))
        .route("/admin/v1/breaches", web::get().to(breaches))
        .route(
            "/admin/v1/breaches/{id}/notify-holders",
            web::post().to(notify_holders),
        )
        .route(
            "/admin/v1/breaches/{id}/regulator-notified",
            web::post().to(regulator_notified),
        )
        .route("/admin/v1/takedowns", web::get().to(takedowns))
        .route(
            "/admin/v1/takedowns/{id}/{decision}",
            web::post().to(decide_takedown),
        );
}

/// A staff decision path segment: `yes` (true) or `reject` (false); anything else is no
/// such route.
fn decision_is(decision: &str, yes: &str) -> Result<bool, ApiError> {
    match decision {
        d if d == yes => Ok(true),
        "reject" => Ok(false),
        _ => Err(ApiError::Service(ServiceError::NotFound(format!(
            "decision must be {yes} or reject"
        )))),
    }
}

/// The privacy policy in force and any upcoming version, with the privacy contact and the
/// supervisory authority.
#[utoipa::path(get, path = "/v1/legal/privacy-policy", tag = "legal",
    responses((status = 200, body = PrivacyPolicyPage), (status = 500, description = "Server fault")))]
pub async fn privacy_policy(app: web::Data<Core>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(app.legal().privacy_policy_page().await?))
}

#[derive(Serialize, ToSchema)]
pub struct SubprocessorList {
    pub subprocessors: Vec<Subprocessor>,
}

/// The sub-processor registry: who processes which data, where, under which safeguard.
#[utoipa::path(get, path = "/v1/legal/subprocessors", tag = "legal",
    responses((status = 200, body = SubprocessorList)))]
pub async fn subprocessors(app: web::Data<Core>) -> HttpResponse {
    HttpResponse::Ok().json(SubprocessorList {
        subprocessors: app.cfg.subprocessors.values().cloned().collect(),
    })
}

#[derive(Deserialize, IntoParams)]
pub struct CountryQuery {
    /// ISO 3166 alpha-2.
    pub country: String,
}

#[derive(Serialize, ToSchema)]
pub struct AgeRequirement {
    pub country: String,
    pub minimum_age: u8,
}

/// The minimum age to sign up from a country (13, or 16 where the law requires it).
#[utoipa::path(get, path = "/v1/legal/age-requirement", tag = "legal", params(CountryQuery),
    responses((status = 200, body = AgeRequirement), (status = 400, description = "Not a country code", body = ErrorBody)))]
pub async fn age_requirement(
    app: web::Data<Core>,
    q: web::Query<CountryQuery>,
) -> Result<HttpResponse, ApiError> {
    let c = q.country.trim().to_ascii_uppercase();
    if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::bad("country must be a two-letter ISO code"));
    }
    Ok(HttpResponse::Ok().json(AgeRequirement {
        minimum_age: app.cfg.minimum_age(&c),
        country: c,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Filed {
    /// Quote it when you write to us about this.
    pub id: Uuid,
    pub status: String,
}

/// Report that an account belongs to a child (no sign-in). The answer does not reveal
/// whether the address has an account.
#[utoipa::path(post, path = "/v1/legal/child-report", tag = "legal", request_body = ChildReportRequest,
    responses(
        (status = 202, body = Filed),
        (status = 400, description = "Missing or invalid field", body = ErrorBody),
        (status = 429, description = "Too many reports from this address", body = ErrorBody)))]
pub async fn child_report(
    app: web::Data<Core>,
    ctx: Ctx,
    body: web::Json<ChildReportRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = app
        .legal()
        .file_child_report(body.into_inner(), &ctx)
        .await?;
    Ok(HttpResponse::Accepted().json(Filed {
        id,
        status: "received".into(),
    }))
}

/// Ask for content to be taken down (no sign-in): a task id or a result image URL, and the
/// grounds. You are emailed the outcome.
#[utoipa::path(post, path = "/v1/legal/takedown", tag = "legal", request_body = TakedownRequest,
    responses(
        (status = 202, body = Filed),
        (status = 400, description = "Missing or invalid field", body = ErrorBody),
        (status = 429, description = "Too many requests", body = ErrorBody)))]
pub async fn takedown(
    app: web::Data<Core>,
    ctx: Ctx,
    body: web::Json<TakedownRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = app.legal().file_takedown(body.into_inner(), &ctx).await?;
    Ok(HttpResponse::Accepted().json(Filed {
        id,
        status: "received".into(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct PolicyRecord {
    pub versions: Vec<PolicyAckView>,
}

/// For each published policy version: when you were notified and when you accepted it.
#[utoipa::path(get, path = "/v1/me/policy", tag = "legal",
    responses((status = 200, body = PolicyRecord), (status = 401, description = "Not signed in", body = ErrorBody)),
    security(("session" = [])))]
pub async fn my_policy(app: web::Data<Core>, auth: SessionAuth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(PolicyRecord {
        versions: app.legal().policy_acks_of(auth.account_id).await?,
    }))
}

/// Publishes a policy version (admin, compliance) and emails every holder. A material
/// change must take effect at least 30 days later.
#[utoipa::path(post, path = "/admin/v1/policies", tag = "admin", request_body = PublishPolicy,
    responses(
        (status = 201, body = PolicyView),
        (status = 400, description = "Bad version, document or date (a material change dated within 30 days)", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 409, description = "Version already published", body = ErrorBody)),
    security(("session" = [])))]
pub async fn publish_policy(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    body: web::Json<PublishPolicy>,
) -> Result<HttpResponse, ApiError> {
    let app = app.into_inner();
    let view = app
        .legal()
        .publish_policy(staff.account_id, body.into_inner(), &ctx)
        .await?;
    Ok(HttpResponse::Created().json(view))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReasonQuery {
    /// Why you are reading this; recorded in the audit trail.
    pub reason: Option<String>,
    pub status: Option<String>,
}

/// A holder's policy record (admin, compliance). Audited.
#[utoipa::path(get, path = "/admin/v1/subjects/{id}/policy", tag = "admin",
    params(("id" = Uuid, Path, description = "Account id"), ReasonQuery),
    responses((status = 200, body = PolicyRecord),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody)),
    security(("session" = [])))]
pub async fn subject_policy(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    id: web::Path<Uuid>,
    q: web::Query<ReasonQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    app.identity()
        .audit_read(
            staff.account_id,
            Some(id),
            "subject.policy",
            q.reason.as_deref(),
            &ctx,
        )
        .await?;
    Ok(HttpResponse::Ok().json(PolicyRecord {
        versions: app.legal().policy_acks_of(id).await?,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ChildReportList {
    pub reports: Vec<ChildReportView>,
}

/// Child reports, newest first (admin, compliance). Audited: one entry per reported
/// account listed (`child_reports.list`; one with no subject when none is).
#[utoipa::path(get, path = "/admin/v1/child-reports", tag = "admin", params(ReasonQuery),
    responses((status = 200, body = ChildReportList),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody)),
    security(("session" = [])))]
pub async fn child_reports(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    q: web::Query<ReasonQuery>,
) -> Result<HttpResponse, ApiError> {
    let reports = app
        .legal()
        .child_reports(staff.account_id, q.reason.as_deref(), &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(ChildReportList { reports }))
}

/// Confirms (`confirm`: the account is erased at once) or rejects (`reject`) a child
/// report (admin, compliance). Audited (`child_report.confirm` or `child_report.reject`,
/// the reported account as subject, the body's reason).
#[utoipa::path(post, path = "/admin/v1/child-reports/{id}/{decision}", tag = "admin",
    params(("id" = Uuid, Path, description = "Report id"), ("decision" = String, Path, description = "confirm or reject")),
    request_body = ReasonBody,
    responses((status = 200, body = ChildReportView),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 404, description = "No such report, or a decision other than confirm or reject", body = ErrorBody),
        (status = 409, description = "Already decided, or no account to erase", body = ErrorBody)),
    security(("session" = [])))]
pub async fn decide_child_report(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    path: web::Path<(Uuid, String)>,
    body: web::Json<ReasonBody>,
) -> Result<HttpResponse, ApiError> {
    let (id, decision) = path.into_inner();
    let confirm = decision_is(&decision, "confirm")?;
    let v = app
        .legal()
        .decide_child_report(staff.account_id, id, confirm, &body.reason, &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// Records a breach (admin, compliance); the regulator deadline runs from discovery.
#[utoipa::path(post, path = "/admin/v1/breaches", tag = "admin", request_body = RecordBreach,
    responses((status = 201, body = BreachView),
        (status = 400, description = "Bad field", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody)),
    security(("session" = [])))]
pub async fn record_breach(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    body: web::Json<RecordBreach>,
) -> Result<HttpResponse, ApiError> {
    let v = app
        .legal()
        .record_breach(staff.account_id, body.into_inner(), &ctx)
        .await?;
    Ok(HttpResponse::Created().json(v))
}

#[derive(Serialize, ToSchema)]
pub struct BreachList {
    pub breaches: Vec<BreachView>,
}

/// The breach register, newest first, with deadlines and `overdue` flags (admin,
/// compliance). Not audited: it shows how many holders were affected, not who.
#[utoipa::path(get, path = "/admin/v1/breaches", tag = "admin",
    responses((status = 200, body = BreachList),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody)),
    security(("session" = [])))]
pub async fn breaches(
    app: web::Data<Core>,
    _staff: Staff<AdminOrCompliance>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(BreachList {
        breaches: app.legal().breaches().await?,
    }))
}

/// Emails every affected holder not yet told (admin, compliance); each email is an event.
/// Audited: one entry per holder about to be told (`breach.notify_holders`).
#[utoipa::path(post, path = "/admin/v1/breaches/{id}/notify-holders", tag = "admin",
    params(("id" = Uuid, Path, description = "Breach id")),
    responses((status = 200, body = BreachView),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 404, description = "No such breach", body = ErrorBody)),
    security(("session" = [])))]
pub async fn notify_holders(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let v = app
        .legal()
        .notify_breach_subjects(staff.account_id, id.into_inner(), &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// Marks the regulator notified (admin, compliance), once.
#[utoipa::path(post, path = "/admin/v1/breaches/{id}/regulator-notified", tag = "admin",
    params(("id" = Uuid, Path, description = "Breach id")),
    request_body = RegulatorNotice,
    responses((status = 200, body = BreachView),
        (status = 400, description = "No reference", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 404, description = "No such breach", body = ErrorBody),
        (status = 409, description = "Already marked", body = ErrorBody)),
    security(("session" = [])))]
pub async fn regulator_notified(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    id: web::Path<Uuid>,
    body: web::Json<RegulatorNotice>,
) -> Result<HttpResponse, ApiError> {
    let v = app
        .legal()
        .mark_regulator_notified(staff.account_id, id.into_inner(), &body.reference, &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Serialize, ToSchema)]
pub struct TakedownList {
    pub cases: Vec<TakedownView>,
}

/// Takedown cases, newest first, optionally by `status` (admin, compliance). Audited: one
/// entry per holder whose task a listed case concerns (`takedowns.list`; one with no
/// subject when there is none).
#[utoipa::path(get, path = "/admin/v1/takedowns", tag = "admin", params(ReasonQuery),
    responses((status = 200, body = TakedownList),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody)),
    security(("session" = [])))]
pub async fn takedowns(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    q: web::Query<ReasonQuery>,
) -> Result<HttpResponse, ApiError> {
    let cases = app
        .legal()
        .takedowns(
            staff.account_id,
            q.status.as_deref(),
            q.reason.as_deref(),
            &ctx,
        )
        .await?;
    Ok(HttpResponse::Ok().json(TakedownList { cases }))
}

/// Actions (`action`: the task's results are removed everywhere) or rejects (`reject`) a
/// takedown case (admin, compliance); the claimant, and the holder when actioned, are
/// emailed. Audited (`takedown.action` or `takedown.reject`, the task's holder as subject,
/// the body's reason).
#[utoipa::path(post, path = "/admin/v1/takedowns/{id}/{decision}", tag = "admin",
    params(("id" = Uuid, Path, description = "Case id"), ("decision" = String, Path, description = "action or reject")),
    request_body = Decision,
    responses((status = 200, body = TakedownView),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 404, description = "No such case, or a decision other than action or reject", body = ErrorBody),
        (status = 409, description = "Already decided, or no task matched", body = ErrorBody)),
    security(("session" = [])))]
pub async fn decide_takedown(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    path: web::Path<(Uuid, String)>,
    body: web::Json<Decision>,
) -> Result<HttpResponse, ApiError> {
    let (id, decision) = path.into_inner();
    let action = decision_is(&decision, "action")?;
    let v = app
        .legal()
        .decide_takedown(staff.account_id, id, action, &body.reason, &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(v))
}
