//! The account holder's own data: profile (with correction) and API keys.

use crate::auth::Ctx;
use crate::auth::SessionAuth;
use crate::error::{ApiError, ErrorBody};
use actix_web::{web, HttpResponse};
use journey_contexts::app::Core;
use journey_contexts::identity::{ApiKeyView, CreatedApiKey, Me};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/me", web::get().to(get_me))
        .route("/v1/me", web::patch().to(patch_me))
        .route("/v1/api-keys", web::post().to(create_key))
        .route("/v1/api-keys", web::get().to(list_keys))
        .route("/v1/api-keys/{id}", web::delete().to(revoke_key));
}

/// The signed-in holder's profile.
#[utoipa::path(get, path = "/v1/me", tag = "account",
    responses((status = 200, body = Me), (status = 401, description = "Not signed in", body = ErrorBody)),
    security(("session" = [])))]
pub async fn get_me(app: web::Data<Core>, auth: SessionAuth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(app.identity().me(auth.account_id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchMe {
    /// Corrects the display name.
    pub name: Option<String>,
    /// Starts an email change; it takes effect only when the new address confirms by magic link.
    pub email: Option<String>,
}

/// Corrects the profile (right to correction). 202 when an email change awaits confirmation.
#[utoipa::path(patch, path = "/v1/me", tag = "account", request_body = PatchMe,
    responses(
        (status = 200, description = "Name corrected", body = Me),
        (status = 202, description = "Confirmation link sent to the new address; nothing changed yet", body = Me),
        (status = 400, description = "Invalid name or email, or nothing to change", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody),
        (status = 429, description = "Too many confirmation links", body = ErrorBody)),
    security(("session" = [])))]
pub async fn patch_me(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    body: web::Json<PatchMe>,
) -> Result<HttpResponse, ApiError> {
    if body.name.is_none() && body.email.is_none() {
        return Err(ApiError::bad("nothing to change: send name and/or email"));
    }
    // Validate everything before changing anything.
    if let Some(name) = &body.name {
        journey_contexts::identity::display_name(name)?;
    }
    if let Some(email) = &body.email {
        if journey_commands::secrets::normalize_email(email).is_none() {
            return Err(ApiError::bad("email is not a valid address"));
        }
    }
    let mut pending = false;
    if let Some(email) = &body.email {
        app.identity()
            .request_email_change(auth.account_id, email, &ctx)
            .await?;
        pending = true;
    }
    if let Some(name) = &body.name {
        app.identity()
            .correct_name(
                auth.account_id,
                name,
                journey_domain::meta::Actor::Account(auth.account_id),
                &ctx,
            )
            .await?;
    }
    let me = app.identity().me(auth.account_id).await?;
    Ok(if pending {
        HttpResponse::Accepted().json(me)
    } else {
        HttpResponse::Ok().json(me)
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A label such as "production" (1–100 characters).
    pub name: String,
}

/// Creates an API key and returns it once. Only an HMAC of it is stored.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = CreateKey,
    responses(
        (status = 201, body = CreatedApiKey),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody)),
    security(("session" = [])))]
pub async fn create_key(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    body: web::Json<CreateKey>,
) -> Result<HttpResponse, ApiError> {
    let created = app
        .identity()
        .create_api_key(auth.account_id, &body.name, &ctx)
        .await?;
    Ok(HttpResponse::Created().json(created))
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub api_keys: Vec<ApiKeyView>,
}

/// The holder's active API keys (metadata only).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys",
    responses((status = 200, body = KeyList), (status = 401, description = "Not signed in", body = ErrorBody)),
    security(("session" = [])))]
pub async fn list_keys(app: web::Data<Core>, auth: SessionAuth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(KeyList {
        api_keys: app.identity().list_api_keys(auth.account_id).await?,
    }))
}

/// Revokes a key at once. Unknown keys and other accounts' keys answer 404 alike.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = Uuid, Path, description = "API key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody),
        (status = 404, description = "No such key on this account", body = ErrorBody)),
    security(("session" = [])))]
pub async fn revoke_key(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key_id = Uuid::parse_str(&id).map_err(|_| ApiError::bad("id must be a UUID"))?;
    app.identity()
        .revoke_api_key(auth.account_id, key_id, &ctx)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
