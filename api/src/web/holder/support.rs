//! `/support`: the holder's support tickets: open one, list them, read one and reply,
//! close it, delete its correspondence after a confirmation page. The same use cases as
//! `/v1/support/tickets…`.

use super::SUPPORT;
use crate::auth::Ctx;
use crate::error::{ApiError, ServiceError};
use crate::web::FormBody;
use crate::web::{error_page, render, see_other, see_other_or_error, when, Chrome, Form};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;
use journey_contexts::legal::support::{NewMessage, NewTicket, TicketView};
use uuid::Uuid;

pub struct TicketRow {
    pub id: Uuid,
    pub subject: String,
    pub status: String,
    pub opened: String,
}

#[derive(Template)]
#[template(path = "support.html")]
struct SupportPage {
    chrome: Chrome,
    csrf: String,
    tickets: Vec<TicketRow>,
}

pub struct MessageRow {
    pub from: String,
    pub body: String,
    pub at: String,
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketPage {
    chrome: Chrome,
    csrf: String,
    id: Uuid,
    status: String,
    opened: String,
    closed: Option<String>,
    messages: Vec<MessageRow>,
}

#[derive(Template)]
#[template(path = "ticket_delete.html")]
struct ConfirmDelete {
    chrome: Chrome,
    csrf: String,
    id: Uuid,
    subject: String,
}

fn not_found() -> ApiError {
    ApiError::Service(ServiceError::NotFound("no such ticket of yours".into()))
}

/// A ticket id from the path; a malformed one names no ticket.
fn ticket_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| not_found())
}

/// `GET /support`.
pub async fn list(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let s = page_holder!(app, req, SUPPORT);
    match app.legal().tickets(s.account_id, None).await {
        Ok(tickets) => render(
            StatusCode::OK,
            &SupportPage {
                chrome: Chrome::signed_in(&app, &s, "Support", "support"),
                csrf: app.identity().csrf_token(&s.token),
                tickets: tickets
                    .into_iter()
                    .map(|t| TicketRow {
                        id: t.ticket_id,
                        subject: t.subject,
                        status: t.status,
                        opened: when(t.opened_at),
                    })
                    .collect(),
            },
        ),
        Err(e) => error_page(&e.into(), SUPPORT),
    }
}

/// `POST /support`: opens a ticket, then shows it.
pub async fn open(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, SUPPORT);
    let ticket = NewTicket {
        subject: form.get("subject").unwrap_or_default().to_string(),
        message: form.get("message").unwrap_or_default().to_string(),
    };
    match app.legal().open_ticket(s.account_id, ticket, &ctx).await {
        Ok(t) => see_other(format!("/support/{}", t.ticket_id)),
        Err(e) => error_page(&e.into(), SUPPORT),
    }
}

fn ticket_page(app: &Core, s: &crate::auth::SessionAuth, t: TicketView) -> HttpResponse {
    render(
        StatusCode::OK,
        &TicketPage {
            // A deleted ticket's subject is gone with its key.
            chrome: Chrome::signed_in(
                app,
                s,
                if t.status == "deleted" {
                    "Deleted ticket"
                } else {
                    &t.subject
                },
                "support",
            ),
            csrf: app.identity().csrf_token(&s.token),
            id: t.ticket_id,
            status: t.status,
            opened: when(t.opened_at),
            closed: t.closed_at.map(when),
            messages: t
                .messages
                .into_iter()
                .map(|m| MessageRow {
                    from: if m.from == "staff" {
                        "JourneyAPI support".into()
                    } else {
                        "You".into()
                    },
                    body: m.body,
                    at: when(m.at),
                })
                .collect(),
        },
    )
}

/// `GET /support/{id}`: one of the holder's tickets with its messages.
pub async fn one(app: web::Data<Core>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    let s = page_holder!(app, req, SUPPORT);
    let id = match ticket_id(&id) {
        Ok(id) => id,
        Err(e) => return error_page(&e, SUPPORT),
    };
    match app.legal().holder_ticket(s.account_id, id).await {
        Ok(t) => ticket_page(&app, &s, t),
        Err(e) => error_page(&e.into(), SUPPORT),
    }
}

/// `POST /support/{id}/reply`.
pub async fn reply(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    id: web::Path<String>,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, SUPPORT);
    let id = match ticket_id(&id) {
        Ok(id) => id,
        Err(e) => return error_page(&e, SUPPORT),
    };
    let message = NewMessage {
        message: form.get("message").unwrap_or_default().to_string(),
    };
    match app
        .legal()
        .post_ticket_message(Some(s.account_id), None, id, message, &ctx)
        .await
    {
        Ok(t) => see_other(format!("/support/{}", t.ticket_id)),
        Err(e) => error_page(&e.into(), SUPPORT),
    }
}

/// `POST /support/{id}/close`.
pub async fn close(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    id: web::Path<String>,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, SUPPORT);
    let id = match ticket_id(&id) {
        Ok(id) => id,
        Err(e) => return error_page(&e, SUPPORT),
    };
    match app
        .legal()
        .close_ticket(Some(s.account_id), None, id, &ctx)
        .await
    {
        Ok(t) => see_other(format!("/support/{}", t.ticket_id)),
        Err(e) => error_page(&e.into(), SUPPORT),
    }
}

/// `GET /support/{id}/delete`: "are you sure?" Changes nothing.
pub async fn confirm_delete(
    app: web::Data<Core>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let s = page_holder!(app, req, SUPPORT);
    let id = match ticket_id(&id) {
        Ok(id) => id,
        Err(e) => return error_page(&e, SUPPORT),
    };
    match app.legal().holder_ticket(s.account_id, id).await {
        Ok(t) => render(
            StatusCode::OK,
            &ConfirmDelete {
                chrome: Chrome::signed_in(&app, &s, "Delete this ticket?", "support"),
                csrf: app.identity().csrf_token(&s.token),
                id: t.ticket_id,
                subject: t.subject,
            },
        ),
        Err(e) => error_page(&e.into(), SUPPORT),
    }
}

/// `POST /support/{id}/delete`: deletes the correspondence at once, then back to the list.
pub async fn delete(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    id: web::Path<String>,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, SUPPORT);
    let id = match ticket_id(&id) {
        Ok(id) => id,
        Err(e) => return error_page(&e, SUPPORT),
    };
    see_other_or_error(
        app.legal().delete_ticket(s.account_id, id, &ctx).await,
        "/support",
        SUPPORT,
    )
}
