//! The JourneyAPI-compatible client API (`/api/v1/*`, API-key auth).

use crate::auth::ApiKeyAuth;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/account", web::get().to(account));
}

#[derive(Serialize, ToSchema)]
pub struct AccountInfo {
    pub email: String,
    pub credits: i64,
    pub total_images: i64,
    pub plan: String,
}

/// Account summary for the key's owner: available credits and the plan in force.
#[utoipa::path(get, path = "/api/v1/account", tag = "client-api",
    responses(
        (status = 200, body = AccountInfo),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 500, description = "Server fault; body `{}`")),
    security(("api_key" = [])))]
pub async fn account(app: web::Data<AppState>, auth: ApiKeyAuth) -> Result<HttpResponse, ApiError> {
    let me = app.me(auth.account_id).await.map_err(|e| match e {
        ApiError::SignInRequired => ApiError::BadApiKey,
        other => other,
    })?;
    let balance = app.balance(auth.account_id).await?;
    Ok(HttpResponse::Ok().json(AccountInfo {
        email: me.email,
        credits: balance.available as i64,
        total_images: 0,
        plan: app.plan_of(auth.account_id).await?,
    }))
}
