//! The holder's privacy controls: consents, objection to direct marketing, restriction of
//! processing; and the staff action that lifts a restriction.

use crate::auth::{SessionAuth, StaffAuth};
use crate::consents::{ConsentUpdate, ConsentsView};
use crate::error::{ApiError, ErrorBody};
use crate::identity::Ctx;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use journey_domain::staff::Role;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/me/consents", web::get().to(get_consents))
        .route("/v1/me/consents", web::put().to(put_consents))
        .route("/v1/me/objection", web::post().to(object))
        .route("/v1/me/restriction", web::post().to(restrict))
        .route(
            "/admin/v1/subjects/{id}/restriction/lift",
            web::post().to(lift_restriction),
        );
}

/// Consents by purpose, objection, restriction, and their history.
#[utoipa::path(get, path = "/v1/me/consents", tag = "privacy",
    responses((status = 200, body = ConsentsView), (status = 401, description = "Not signed in", body = ErrorBody)),
    security(("session" = [])))]
pub async fn get_consents(
    app: web::Data<AppState>,
    auth: SessionAuth,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(app.consents_view(auth.account_id).await?))
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
    app: web::Data<AppState>,
    ctx: Ctx,
    auth: SessionAuth,
    body: web::Json<ConsentUpdate>,
) -> Result<HttpResponse, ApiError> {
    let view = app
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
    app: web::Data<AppState>,
    ctx: Ctx,
    auth: SessionAuth,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(app.object_to_marketing(auth.account_id, &ctx).await?))
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
    app: web::Data<AppState>,
    ctx: Ctx,
    auth: SessionAuth,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(app.restrict_processing(auth.account_id, &ctx).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftBody {
    /// Why the restriction ends (e.g. the accuracy dispute was resolved); recorded.
    pub reason: String,
}

/// Lifts a subject's restriction of processing (admin or compliance). Audited.
#[utoipa::path(post, path = "/admin/v1/subjects/{id}/restriction/lift", tag = "admin",
    params(("id" = Uuid, Path, description = "The subject's account id")),
    request_body = LiftBody,
    responses(
        (status = 200, body = ConsentsView),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody),
        (status = 409, description = "Processing is not restricted", body = ErrorBody)),
    security(("session" = [])))]
pub async fn lift_restriction(
    app: web::Data<AppState>,
    ctx: Ctx,
    staff: StaffAuth,
    id: web::Path<Uuid>,
    body: web::Json<LiftBody>,
) -> Result<HttpResponse, ApiError> {
    staff.require(&[Role::Admin, Role::Compliance])?;
    let view = app
        .lift_restriction(staff.account_id, id.into_inner(), &body.reason, &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(view))
}
