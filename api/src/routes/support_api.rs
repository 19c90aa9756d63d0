//! Support tickets: the holder's side (`/v1/support/tickets`) and the support staff's
//! (`/admin/v1/tickets`, roles support or admin; reads and writes are audited).

use crate::auth::Ctx;
use crate::auth::{SessionAuth, Staff, SupportOrAdmin};
use crate::error::{ApiError, ErrorBody};
use actix_web::{web, HttpResponse};
use journey_contexts::app::Core;
use journey_contexts::legal::support::{NewMessage, NewTicket, TicketView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/support/tickets", web::post().to(open))
        .route("/v1/support/tickets", web::get().to(list))
        .route("/v1/support/tickets/{id}", web::get().to(get))
        .route("/v1/support/tickets/{id}", web::delete().to(delete))
        .route("/v1/support/tickets/{id}/messages", web::post().to(reply))
        .route("/v1/support/tickets/{id}/close", web::post().to(close))
        .route("/admin/v1/tickets", web::get().to(staff_list))
        .route("/admin/v1/tickets/{id}", web::get().to(staff_get))
        .route(
            "/admin/v1/tickets/{id}/messages",
            web::post().to(staff_reply),
        )
        .route("/admin/v1/tickets/{id}/close", web::post().to(staff_close));
}

#[derive(Serialize, ToSchema)]
pub struct TicketList {
    pub tickets: Vec<TicketView>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TicketQuery {
    /// `open`, `closed` or `deleted`.
    pub status: Option<String>,
    /// Staff only: why you are reading; recorded in the audit trail.
    pub reason: Option<String>,
}

/// Opens a ticket with its first message.
#[utoipa::path(post, path = "/v1/support/tickets", tag = "support", request_body = NewTicket,
    responses((status = 201, body = TicketView),
        (status = 400, description = "Empty or too long subject or message", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody)),
    security(("session" = [])))]
pub async fn open(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    body: web::Json<NewTicket>,
) -> Result<HttpResponse, ApiError> {
    let t = app
        .legal()
        .open_ticket(auth.account_id, body.into_inner(), &ctx)
        .await?;
    Ok(HttpResponse::Created().json(t))
}

/// Your tickets, newest first.
#[utoipa::path(get, path = "/v1/support/tickets", tag = "support", params(TicketQuery),
    responses((status = 200, body = TicketList),
        (status = 400, description = "Unknown status", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody)),
    security(("session" = [])))]
pub async fn list(
    app: web::Data<Core>,
    auth: SessionAuth,
    q: web::Query<TicketQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(TicketList {
        tickets: app
            .legal()
            .tickets(auth.account_id, q.status.as_deref())
            .await?,
    }))
}

/// One of your tickets with its messages.
#[utoipa::path(get, path = "/v1/support/tickets/{id}", tag = "support",
    params(("id" = Uuid, Path, description = "Ticket id")),
    responses((status = 200, body = TicketView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such ticket of yours", body = ErrorBody)),
    security(("session" = [])))]
pub async fn get(
    app: web::Data<Core>,
    auth: SessionAuth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        app.legal()
            .holder_ticket(auth.account_id, id.into_inner())
            .await?,
    ))
}

/// Deletes a ticket's correspondence at once (its key is destroyed).
#[utoipa::path(delete, path = "/v1/support/tickets/{id}", tag = "support",
    params(("id" = Uuid, Path, description = "Ticket id")),
    responses((status = 200, body = TicketView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Missing CSRF header", body = ErrorBody),
        (status = 404, description = "No such ticket of yours", body = ErrorBody),
        (status = 409, description = "The ticket's correspondence was already deleted", body = ErrorBody)),
    security(("session" = [])))]
pub async fn delete(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        app.legal()
            .delete_ticket(auth.account_id, id.into_inner(), &ctx)
            .await?,
    ))
}

/// Adds your reply.
#[utoipa::path(post, path = "/v1/support/tickets/{id}/messages", tag = "support",
    params(("id" = Uuid, Path, description = "Ticket id")), request_body = NewMessage,
    responses((status = 200, body = TicketView),
        (status = 400, description = "Empty or too long message", body = ErrorBody),
        (status = 404, description = "No such ticket of yours", body = ErrorBody),
        (status = 409, description = "Ticket closed or deleted", body = ErrorBody)),
    security(("session" = [])))]
pub async fn reply(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    id: web::Path<Uuid>,
    body: web::Json<NewMessage>,
) -> Result<HttpResponse, ApiError> {
    let v = app
        .legal()
        .post_ticket_message(
            Some(auth.account_id),
            None,
            id.into_inner(),
            body.into_inner(),
            &ctx,
        )
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// Closes your ticket (its correspondence is kept 3 years from now).
#[utoipa::path(post, path = "/v1/support/tickets/{id}/close", tag = "support",
    params(("id" = Uuid, Path, description = "Ticket id")),
    responses((status = 200, body = TicketView),
        (status = 404, description = "No such ticket of yours", body = ErrorBody),
        (status = 409, description = "Ticket deleted", body = ErrorBody)),
    security(("session" = [])))]
pub async fn close(
    app: web::Data<Core>,
    ctx: Ctx,
    auth: SessionAuth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let v = app
        .legal()
        .close_ticket(Some(auth.account_id), None, id.into_inner(), &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// Every ticket, newest first (support, admin). Audited: one entry per holder listed
/// (`tickets.list`; one with no subject when the list is empty).
#[utoipa::path(get, path = "/admin/v1/tickets", tag = "admin", params(TicketQuery),
    responses((status = 200, body = TicketList),
        (status = 400, description = "No reason or unknown status", body = ErrorBody),
        (status = 403, description = "Needs the support or admin role", body = ErrorBody)),
    security(("session" = [])))]
pub async fn staff_list(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<SupportOrAdmin>,
    q: web::Query<TicketQuery>,
) -> Result<HttpResponse, ApiError> {
    let tickets = app
        .legal()
        .staff_tickets(
            staff.account_id,
            q.status.as_deref(),
            q.reason.as_deref(),
            &ctx,
        )
        .await?;
    Ok(HttpResponse::Ok().json(TicketList { tickets }))
}

/// One ticket with its messages (support, admin). Audited.
#[utoipa::path(get, path = "/admin/v1/tickets/{id}", tag = "admin",
    params(("id" = Uuid, Path, description = "Ticket id"), TicketQuery),
    responses((status = 200, body = TicketView),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 403, description = "Needs the support or admin role", body = ErrorBody),
        (status = 404, description = "No such ticket", body = ErrorBody)),
    security(("session" = [])))]
pub async fn staff_get(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<SupportOrAdmin>,
    id: web::Path<Uuid>,
    q: web::Query<TicketQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let owner = app.legal().ticket_owner(id).await?;
    app.identity()
        .audit_read(
            staff.account_id,
            Some(owner),
            "ticket.read",
            q.reason.as_deref(),
            &ctx,
        )
        .await?;
    Ok(HttpResponse::Ok().json(app.legal().ticket_view(id, true).await?))
}

/// Answers a ticket (support, admin); the holder is emailed that there is a reply.
/// Audited (`ticket.reply`, the ticket id as the reason).
#[utoipa::path(post, path = "/admin/v1/tickets/{id}/messages", tag = "admin",
    params(("id" = Uuid, Path, description = "Ticket id")), request_body = NewMessage,
    responses((status = 200, body = TicketView),
        (status = 400, description = "Empty or too long message", body = ErrorBody),
        (status = 403, description = "Needs the support or admin role", body = ErrorBody),
        (status = 404, description = "No such ticket", body = ErrorBody),
        (status = 409, description = "Ticket closed or deleted", body = ErrorBody)),
    security(("session" = [])))]
pub async fn staff_reply(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<SupportOrAdmin>,
    id: web::Path<Uuid>,
    body: web::Json<NewMessage>,
) -> Result<HttpResponse, ApiError> {
    let v = app
        .legal()
        .post_ticket_message(
            None,
            Some(staff.account_id),
            id.into_inner(),
            body.into_inner(),
            &ctx,
        )
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// Closes a ticket (support, admin). Audited (`ticket.close`, the ticket id as the reason).
#[utoipa::path(post, path = "/admin/v1/tickets/{id}/close", tag = "admin",
    params(("id" = Uuid, Path, description = "Ticket id")),
    responses((status = 200, body = TicketView),
        (status = 403, description = "Needs the support or admin role", body = ErrorBody),
        (status = 404, description = "No such ticket", body = ErrorBody),
        (status = 409, description = "Ticket deleted", body = ErrorBody)),
    security(("session" = [])))]
pub async fn staff_close(
    app: web::Data<Core>,
    ctx: Ctx,
    staff: Staff<SupportOrAdmin>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let v = app
        .legal()
        .close_ticket(None, Some(staff.account_id), id.into_inner(), &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(v))
}
