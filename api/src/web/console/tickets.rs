//! `/console/tickets` (support and admin): the support tickets, as `/admin/v1/tickets`.
//! The list (`tickets.list`, per holder listed) and each ticket (`ticket.read`) are read
//! with a reason and audited before anything is shown; replying and closing call the same
//! methods as the API, then the ticket is shown again, read with the same reason.

use super::{field, page_staff, reason_error, Chrome, ConsoleStaff, SUPPORT_OR_ADMIN, TICKETS};
use crate::auth::Ctx;
use crate::error::{ApiError, ServiceError};
use crate::web::page_or_error;
use crate::web::FormBody;
use crate::web::{error_page, render, when, Form};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;
use journey_contexts::legal::support::NewMessage;
use uuid::Uuid;

const STATUSES: &[&str] = &["open", "closed", "deleted"];

pub struct TicketRow {
    pub id: Uuid,
    pub account: Uuid,
    pub status: String,
    pub subject: String,
    pub opened: String,
}

pub struct MessageRow {
    pub from: String,
    pub body: String,
    pub at: String,
}

#[derive(Template)]
#[template(path = "console/tickets.html")]
struct TicketsPage {
    chrome: Chrome,
    shown: bool,
    reason: String,
    status: String,
    tickets: Vec<TicketRow>,
}

#[derive(Template)]
#[template(path = "console/ticket.html")]
struct TicketPage {
    chrome: Chrome,
    reason: String,
    notice: String,
    ticket: TicketRow,
    closed: String,
    messages: Vec<MessageRow>,
}

pub async fn form(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    match page_staff(&app, &req, SUPPORT_OR_ADMIN).await {
        Ok(staff) => render(
            StatusCode::OK,
            &TicketsPage {
                chrome: staff.chrome("Support tickets", "tickets"),
                shown: false,
                reason: String::new(),
                status: String::new(),
                tickets: Vec::new(),
            },
        ),
        Err(resp) => resp,
    }
}

/// `POST /console/tickets`: `reason`, `status`.
pub async fn list(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, SUPPORT_OR_ADMIN, TICKETS);
    let page: Result<TicketsPage, ApiError> = async {
        let status = field(&form, "status");
        if let Some(s) = status {
            if !STATUSES.contains(&s) {
                return Err(super::bad(format!("unknown status {s:?}")));
            }
        }
        let reason = form.get("reason").unwrap_or_default().trim().to_string();
        let tickets = app
            .legal()
            .staff_tickets(staff.staff.account_id, status, Some(&reason), &ctx)
            .await
            .map_err(|e| reason_error(e.into()))?;
        Ok::<_, ApiError>(TicketsPage {
            chrome: staff.chrome("Support tickets", "tickets"),
            shown: true,
            reason,
            status: status.unwrap_or_default().to_string(),
            tickets: tickets
                .into_iter()
                .map(|t| TicketRow {
                    id: t.ticket_id,
                    account: t.account_id,
                    status: t.status,
                    subject: t.subject,
                    opened: when(t.opened_at),
                })
                .collect(),
        })
    }
    .await;
    page_or_error(page, TICKETS)
}

/// The ticket, read as `GET /admin/v1/tickets/{id}` reads it (audited `ticket.read`).
async fn read(
    app: &Core,
    staff: &ConsoleStaff,
    id: Uuid,
    form: &Form,
    notice: String,
    ctx: &Ctx,
) -> Result<TicketPage, ApiError> {
    let reason = form.get("reason").unwrap_or_default().trim().to_string();
    let owner = app.legal().ticket_owner(id).await?;
    app.identity()
        .audit_read(
            staff.staff.account_id,
            Some(owner),
            "ticket.read",
            Some(&reason),
            ctx,
        )
        .await
        .map_err(|e| reason_error(e.into()))?;
    let t = app.legal().ticket_view(id, true).await?;
    Ok(TicketPage {
        chrome: staff.chrome("Support ticket", "tickets"),
        reason,
        notice,
        closed: t.closed_at.map(when).unwrap_or_default(),
        messages: t
            .messages
            .into_iter()
            .map(|m| MessageRow {
                from: m.from,
                body: m.body,
                at: when(m.at),
            })
            .collect(),
        ticket: TicketRow {
            id: t.ticket_id,
            account: t.account_id,
            status: t.status,
            subject: t.subject,
            opened: when(t.opened_at),
        },
    })
}

fn ticket_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id)
        .map_err(|_| ApiError::Service(ServiceError::NotFound("no such ticket".into())))
}

/// `POST /console/tickets/{id}`: `reason`.
pub async fn open(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    id: web::Path<String>,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, SUPPORT_OR_ADMIN, TICKETS);
    let page = match ticket_id(&id) {
        Ok(id) => read(&app, &staff, id, &form, String::new(), &ctx).await,
        Err(e) => Err(e),
    };
    page_or_error(page, TICKETS)
}

/// `POST /console/tickets/{id}/{action}`: `reply` (`message`) or `close`; `reason` for
/// reading the ticket again afterwards.
pub async fn act(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, SUPPORT_OR_ADMIN, TICKETS);
    let (id, action) = path.into_inner();
    let me = staff.staff.account_id;
    let done: Result<(Uuid, String), ApiError> = async {
        let id = ticket_id(&id)?;
        super::check_reason(form.get("reason").unwrap_or_default())?;
        let notice = match action.as_str() {
            "reply" => {
                let message = NewMessage {
                    message: form.get("message").unwrap_or_default().to_string(),
                };
                app.legal()
                    .post_ticket_message(None, Some(me), id, message, &ctx)
                    .await?;
                "Your reply was sent.".to_string()
            }
            "close" => {
                app.legal().close_ticket(None, Some(me), id, &ctx).await?;
                "The ticket is closed.".to_string()
            }
            other => {
                return Err(ApiError::Service(ServiceError::NotFound(format!(
                    "no ticket action {other:?}"
                ))))
            }
        };
        Ok::<_, ApiError>((id, notice))
    }
    .await;
    let (id, notice) = match done {
        Ok(d) => d,
        Err(e) => return error_page(&e, TICKETS),
    };
    match read(&app, &staff, id, &form, notice, &ctx).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&e, TICKETS),
    }
}
