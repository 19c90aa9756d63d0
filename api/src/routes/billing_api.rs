//! Money: the catalogue, the holder's billing overview, Stripe Checkout and portal, the
//! credit ledger, and Stripe's webhook.

use crate::auth::Ctx;
use crate::auth::{AdminOrCompliance, SessionAuth, Staff};
use crate::error::{ApiError, ErrorBody};
use actix_web::{web, HttpRequest, HttpResponse};
use journey_contexts::app::Core;
use journey_contexts::credits::billing::{BillingOverview, CheckoutBody, RedirectUrl};
use journey_contexts::credits::stripe_events::IgnoredEventView;
use journey_contexts::credits::LedgerPage;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/billing/catalog", web::get().to(catalog))
        .route("/v1/billing", web::get().to(overview))
        .route("/v1/billing/checkout", web::post().to(checkout))
        .route("/v1/billing/portal", web::post().to(portal))
        .route("/v1/credits/ledger", web::get().to(ledger))
        .route("/webhooks/stripe", web::post().to(stripe_webhook))
        .route(
            "/admin/v1/billing/ignored-events",
            web::get().to(ignored_events),
        );
}

#[derive(Serialize, ToSchema)]
pub struct CatalogView {
    pub currency: String,
    pub plans: Vec<PlanView>,
    pub packs: Vec<PackView>,
}

#[derive(Serialize, ToSchema)]
pub struct PlanView {
    pub id: String,
    pub name: String,
    pub monthly_price_cents: u64,
    pub monthly_credits: u64,
    /// Unused credits of a month expire this many days after they are granted; absent = never.
    pub credits_expire_after_days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct PackView {
    pub id: String,
    pub name: String,
    pub credits: u64,
    pub price_cents: u64,
    /// Unused pack credits expire this many days after purchase; absent = never.
    pub credits_expire_after_days: Option<u32>,
}

/// Plans and credit packs on sale. Accounts without a plan are on `free`.
#[utoipa::path(get, path = "/v1/billing/catalog", tag = "billing",
    responses((status = 200, body = CatalogView)))]
pub async fn catalog(app: web::Data<Core>) -> HttpResponse {
    let c = &app.catalog;
    HttpResponse::Ok().json(CatalogView {
        currency: c.currency.clone(),
        plans: c
            .plans
            .iter()
            .map(|(id, p)| PlanView {
                id: id.clone(),
                name: p.name.clone(),
                monthly_price_cents: p.monthly_price_cents,
                monthly_credits: p.monthly_credits,
                credits_expire_after_days: p.credits_expire_after_days,
            })
            .collect(),
        packs: c
            .packs
            .iter()
            .map(|(id, p)| PackView {
                id: id.clone(),
                name: p.name.clone(),
                credits: p.credits,
                price_cents: p.price_cents,
                credits_expire_after_days: p.credits_expire_after_days,
            })
            .collect(),
    })
}

/// Plan, subscription, card summary, credit balance and suspension.
#[utoipa::path(get, path = "/v1/billing", tag = "billing",
    responses((status = 200, body = BillingOverview), (status = 401, description = "Not signed in", body = ErrorBody)),
    security(("session" = [])))]
pub async fn overview(app: web::Data<Core>, auth: SessionAuth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(app.credits().billing_overview(auth.account_id).await?))
}

/// Starts a Stripe Checkout for a pack (one-time payment) or a plan (subscription).
#[utoipa::path(post, path = "/v1/billing/checkout", tag = "billing", request_body = CheckoutBody,
    responses(
        (status = 200, description = "Redirect the browser to `url`", body = RedirectUrl),
        (status = 400, description = "Neither or both of pack and plan, or an unknown one", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody),
        (status = 409, description = "Already subscribed: use the portal to change plans", body = ErrorBody),
        (status = 503, description = "Billing is not configured", body = ErrorBody)),
    security(("session" = [])))]
pub async fn checkout(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    body: web::Json<CheckoutBody>,
) -> Result<HttpResponse, ApiError> {
    let url = app
        .credits()
        .start_checkout(auth.account_id, body.into_inner(), &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(url))
}

/// A Stripe customer-portal session (change plan, cancel, update the card).
#[utoipa::path(post, path = "/v1/billing/portal", tag = "billing",
    responses(
        (status = 200, description = "Redirect the browser to `url`", body = RedirectUrl),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody),
        (status = 503, description = "Billing is not configured", body = ErrorBody)),
    security(("session" = [])))]
pub async fn portal(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(app.credits().portal_url(auth.account_id, &ctx).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    /// Entries older than this `seq` (the previous page's `next_before`).
    pub before: Option<i64>,
    /// Page size, 1..=200 (default 50).
    pub limit: Option<u32>,
}

/// The credit ledger, newest first.
#[utoipa::path(get, path = "/v1/credits/ledger", tag = "billing", params(LedgerQuery),
    responses(
        (status = 200, body = LedgerPage),
        (status = 400, description = "Bad paging parameters", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody)),
    security(("session" = [])))]
pub async fn ledger(
    app: web::Data<Core>,
    auth: SessionAuth,
    q: web::Query<LedgerQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad("limit must be between 1 and 200"));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::bad("before must be a positive ledger position"));
    }
    Ok(HttpResponse::Ok().json(
        app.credits()
            .ledger_page(auth.account_id, q.before, limit)
            .await?,
    ))
}

/// Stripe's webhook. The signature is checked over the raw body, before and apart from the
/// payload's shape; each Stripe event is applied once. A verified event of a type we handle
/// that lacks a field we need, or matches no account, answers `ignored` and is recorded for
/// staff (`GET /admin/v1/billing/ignored-events`). Non-2xx makes Stripe retry.
#[utoipa::path(post, path = "/webhooks/stripe", tag = "billing",
    request_body(content = String, content_type = "application/json", description = "A Stripe event, signed in `Stripe-Signature`"),
    responses(
        (status = 200, description = "`{\"received\":true,\"outcome\":\"applied\"|\"duplicate\"|\"ignored\"}`"),
        (status = 400, description = "Missing, malformed, bad or stale signature, or a signed payload that is not JSON or has no `id` or `type`; nothing changed", body = ErrorBody),
        (status = 409, description = "Concurrent writes kept conflicting; Stripe will redeliver", body = ErrorBody),
        (status = 500, description = "Processing failed; Stripe will redeliver", body = ErrorBody),
        (status = 503, description = "No webhook secret is configured", body = ErrorBody)))]
pub async fn stripe_webhook(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let signature = req
        .headers()
        .get("Stripe-Signature")
        .and_then(|v| v.to_str().ok());
    let outcome = app
        .credits()
        .handle_stripe_webhook(&body, signature, &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "received": true,
        "outcome": format!("{outcome:?}").to_lowercase(),
    })))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct IgnoredQuery {
    /// How many to list, 1..=500 (default 100), newest first.
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct IgnoredEvents {
    pub events: Vec<IgnoredEventView>,
    /// More are recorded than `limit` allowed: raise it to see older ones.
    pub more: bool,
}

/// Verified Stripe events we could not use (a field we need was missing, or no account
/// matched), newest first, at most `limit` (admin, compliance). Each is recorded once,
/// however often Stripe redelivered it; it holds no payment or personal data, so the read
/// is not audited.
#[utoipa::path(get, path = "/admin/v1/billing/ignored-events", tag = "admin", params(IgnoredQuery),
    responses(
        (status = 200, body = IgnoredEvents),
        (status = 400, description = "Bad `limit` or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin or compliance role", body = ErrorBody)),
    security(("session" = [])))]
pub async fn ignored_events(
    app: web::Data<Core>,
    _staff: Staff<AdminOrCompliance>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = web::Query::<IgnoredQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad("limit must be between 1 and 500"));
    }
    let (events, more) = app.credits().ignored_stripe_events(limit).await?;
    Ok(HttpResponse::Ok().json(IgnoredEvents { events, more }))
}
