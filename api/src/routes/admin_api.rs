//! The staff API (`/admin/v1/*`): a staff role is required (403 otherwise), and every read
//! of a subject's data is audited — who, whose, what, why, when — before it is returned.

use crate::auth::Ctx;
use crate::auth::{AdminOrCompliance, Staff};
use crate::error::ServiceError;
use crate::error::{ApiError, ErrorBody};
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use journey_contexts::app::Core;
use journey_contexts::identity::staff::{AuditEntry, AuditFilter};
use journey_contexts::identity::staff_views::EventPage;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/admin/v1/subjects/{id}/events",
        web::get().to(subject_events),
    )
    .route("/admin/v1/audit", web::get().to(audit))
    .route(
        "/admin/v1/subjects/{id}/correction",
        web::post().to(correct_subject),
    );
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectionBody {
    /// The corrected display name.
    pub name: Option<String>,
    /// A corrected email address: a confirmation link goes to it, and the change applies
    /// when the holder uses it (as with their own change).
    pub email: Option<String>,
    /// Why (e.g. the correction request's id); recorded.
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct CorrectionOutcome {
    pub name_corrected: bool,
    pub email_confirmation_sent: bool,
}

/// Corrects a holder's data on their request (admin, compliance; audited): the name at
/// once, an email address once the new address confirms.
#[utoipa::path(post, path = "/admin/v1/subjects/{id}/correction", tag = "admin",
    params(("id" = Uuid, Path, description = "The subject's account id")),
    request_body = CorrectionBody,
    responses(
        (status = 200, body = CorrectionOutcome),
        (status = 400, description = "No reason, nothing to correct, or an invalid value", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 404, description = "No active account", body = ErrorBody),
        (status = 409, description = "The new email belongs to another account", body = ErrorBody)),
    security(("session" = [])))]
pub async fn correct_subject(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    id: web::Path<Uuid>,
    body: web::Json<CorrectionBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if body.name.is_none() && body.email.is_none() {
        return Err(ApiError::bad("give name, email or both"));
    }
    journey_contexts::error::require_reason(&body.reason)?;
    if !app.identity().account_is_active(id).await? {
        return Err(ApiError::Service(ServiceError::NotFound(format!(
            "no active account {id}"
        ))));
    }
    app.identity()
        .audit_read(
            staff.account_id,
            Some(id),
            "subject.correction",
            Some(&body.reason),
            &ctx,
        )
        .await?;
    if let Some(name) = &body.name {
        app.identity()
            .correct_name(
                id,
                name,
                journey_domain::meta::Actor::Staff(staff.account_id),
                &ctx,
            )
            .await?;
    }
    if let Some(email) = &body.email {
        app.identity().request_email_change(id, email, &ctx).await?;
    }
    Ok(HttpResponse::Ok().json(CorrectionOutcome {
        name_corrected: body.name.is_some(),
        email_confirmation_sent: body.email.is_some(),
    }))
}

fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad("limit must be between 1 and 500"));
    }
    Ok(limit)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Why you are reading this (a ticket or request id); recorded in the audit trail.
    pub reason: Option<String>,
    /// Events after this position (the previous page's `next_after`).
    pub after: Option<i64>,
    /// 1..=500, default 100.
    pub limit: Option<u32>,
}

/// A subject's whole history, opened; erased fields read `"[erased]"` (admin, compliance;
/// not support, who sees only tickets). Audited.
#[utoipa::path(get, path = "/admin/v1/subjects/{id}/events", tag = "admin",
    params(("id" = Uuid, Path, description = "The subject's account id"), EventsQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 400, description = "Missing reason or bad paging", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody)),
    security(("session" = [])))]
pub async fn subject_events(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    id: web::Path<Uuid>,
    q: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(q.limit)?;
    let page = app
        .identity()
        .subject_history(
            &staff,
            id.into_inner(),
            q.reason.as_deref(),
            q.after.unwrap_or(0),
            limit,
            &ctx,
        )
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Why you are reading the trail; itself recorded.
    pub reason: Option<String>,
    /// Staff member's account id.
    pub actor: Option<Uuid>,
    pub subject: Option<Uuid>,
    /// RFC 3339.
    pub from: Option<DateTime<Utc>>,
    /// RFC 3339.
    pub to: Option<DateTime<Utc>>,
    /// Entries after this position.
    pub after: Option<i64>,
    /// 1..=500, default 100.
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
}

/// The audit trail of staff reads (admin and compliance only). Reading it is audited too.
#[utoipa::path(get, path = "/admin/v1/audit", tag = "admin", params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, description = "Missing reason or bad filters", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody)),
    security(("session" = [])))]
pub async fn audit(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<AdminOrCompliance>,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let filter = AuditFilter {
        actor: q.actor,
        subject: q.subject,
        action: None,
        from: q.from,
        to: q.to,
        after: q.after,
        limit: page_limit(q.limit)?,
    };
    if let (Some(f), Some(t)) = (filter.from, filter.to) {
        if f > t {
            return Err(ApiError::bad("`from` is after `to`"));
        }
    }
    app.identity()
        .audit_read(
            staff.account_id,
            filter.subject,
            "audit.list",
            q.reason.as_deref(),
            &ctx,
        )
        .await?;
    let entries = app.identity().audit_trail(&filter).await?;
    Ok(HttpResponse::Ok().json(AuditPage { entries }))
}
