//! `/console/requests`: the data-subject request worklist, soonest due first, overdue ones
//! marked, with each request's next steps as forms (verify with the code the requester
//! sent back, start, complete, reject) and a link to the subject page where the export or
//! the erasure it leads to is done. Reading the list is audited as
//! `GET /admin/v1/requests` (`requests.list`, one entry per subject listed); each step as
//! `POST /admin/v1/requests/{id}/…` (`request.verify`, `request.start`, …).

use super::{field, page_staff, reason_error, Chrome, ConsoleStaff, ADMIN_OR_COMPLIANCE, REQUESTS};
use crate::auth::Ctx;
use crate::error::{ApiError, ServiceError};
use crate::web::FormBody;
use crate::web::{error_page, render, when, Form};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;
use journey_contexts::privacy::requests::Step;
use journey_domain::meta::Actor;
use uuid::Uuid;

const STATUSES: &[&str] = &[
    "received",
    "verified",
    "in_progress",
    "completed",
    "rejected",
];

pub struct StatusOption {
    pub value: &'static str,
    pub label: String,
    pub selected: bool,
}

fn status_options(current: &str) -> Vec<StatusOption> {
    STATUSES
        .iter()
        .map(|&s| StatusOption {
            value: s,
            label: s.replace('_', " "),
            selected: s == current,
        })
        .collect()
}

pub struct RequestItem {
    pub id: String,
    pub subject: String,
    pub kind: String,
    pub channel: String,
    pub status: String,
    pub received: String,
    pub due: String,
    pub closed: String,
    pub overdue: bool,
    /// What the request leads to, done on the subject page.
    pub leads_to: &'static str,
}

#[derive(Template)]
#[template(path = "console/requests.html")]
struct WorklistPage {
    chrome: Chrome,
    shown: bool,
    reason: String,
    status: String,
    statuses: Vec<StatusOption>,
    /// What the last step did, on the page after it.
    notice: String,
    requests: Vec<RequestItem>,
}

/// `GET /console/requests`: the reason and filter form; reads nothing.
pub async fn form(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    match page_staff(&app, &req, ADMIN_OR_COMPLIANCE).await {
        Ok(staff) => render(
            StatusCode::OK,
            &WorklistPage {
                chrome: staff.chrome("Data-subject requests", "requests"),
                shown: false,
                reason: String::new(),
                status: String::new(),
                statuses: status_options(""),
                notice: String::new(),
                requests: Vec::new(),
            },
        ),
        Err(resp) => resp,
    }
}

fn leads_to(kind: &str) -> &'static str {
    match kind {
        "access" | "portability" => "export",
        "deletion" => "erasure",
        "correction" => "correction",
        _ => "",
    }
}

/// The worklist read (the calls of `GET /admin/v1/requests`), as a page.
async fn list(
    app: &Core,
    staff: &ConsoleStaff,
    form: &Form,
    notice: String,
    ctx: &Ctx,
) -> Result<WorklistPage, ApiError> {
    let status = field(form, "status");
    if let Some(s) = status {
        if !STATUSES.contains(&s) {
            return Err(super::bad(format!("unknown status {s:?}")));
        }
    }
    let reason = form.get("reason").unwrap_or_default().trim().to_string();
    let requests = app.privacy().list_requests(status, None, None).await?;
    let subjects = requests
        .iter()
        .filter_map(|r| Uuid::parse_str(&r.subject).ok());
    app.identity()
        .audit_reads(
            staff.staff.account_id,
            subjects,
            "requests.list",
            Some(&reason),
            ctx,
        )
        .await
        .map_err(|e| reason_error(e.into()))?;
    Ok(WorklistPage {
        chrome: staff.chrome("Data-subject requests", "requests"),
        shown: true,
        reason,
        status: status.unwrap_or_default().to_string(),
        statuses: status_options(status.unwrap_or_default()),
        notice,
        requests: requests
            .into_iter()
            .map(|r| RequestItem {
                leads_to: leads_to(&r.kind),
                id: r.request_id,
                subject: r.subject,
                kind: r.kind,
                channel: r.channel,
                status: r.status,
                received: when(r.received_at),
                due: when(r.due_at),
                closed: r.closed_at.map(when).unwrap_or_default(),
                overdue: r.overdue,
            })
            .collect(),
    })
}

/// `POST /console/requests`: reason and status filter; the read is recorded, then listed.
pub async fn worklist(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_OR_COMPLIANCE, REQUESTS);
    match list(&app, &staff, &form, String::new(), &ctx).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&e, REQUESTS),
    }
}

/// `POST /console/requests/{id}/{step}`: `verify` (field `code`), `start`, `complete`
/// (optional `note`) or `reject` (`note` required), each audited first as the API does;
/// then the worklist again, read with the list's reason (the hidden `reason` field).
pub async fn step(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_OR_COMPLIANCE, REQUESTS);
    let (id, step) = path.into_inner();
    let done: Result<String, ApiError> = async {
        let id = Uuid::parse_str(&id)
            .map_err(|_| ApiError::Service(ServiceError::NotFound("no such request".into())))?;
        // The list shown afterwards is a read that needs its reason: checked before the
        // step, so that a form without one changes nothing.
        super::check_reason(form.get("reason").unwrap_or_default())?;
        let note = form.get("note").unwrap_or_default().trim().to_string();
        let me = staff.staff.account_id;
        let view = match step.as_str() {
            "verify" => {
                let code = field(&form, "code")
                    .ok_or_else(|| super::bad("give the code the requester sent back"))?;
                app.privacy()
                    .audit_request_work(me, id, "request.verify", &ctx)
                    .await?;
                app.privacy()
                    .verify_request(id, code, None, Actor::Staff(me), &ctx)
                    .await?
            }
            "start" | "complete" | "reject" => {
                let (step, action) = match step.as_str() {
                    "start" => (Step::Start, "request.start"),
                    "complete" => (Step::Complete(note), "request.complete"),
                    _ => (Step::Reject(note), "request.reject"),
                };
                app.privacy()
                    .audit_request_work(me, id, action, &ctx)
                    .await?;
                app.privacy().request_step(id, step, me, &ctx).await?
            }
            other => {
                return Err(super::bad(format!(
                    "unknown step {other:?}: verify, start, complete or reject"
                )))
            }
        };
        Ok::<_, ApiError>(format!(
            "Request {} is now {}.",
            view.request_id,
            view.status.replace('_', " ")
        ))
    }
    .await;
    let notice = match done {
        Ok(n) => n,
        Err(e) => return error_page(&e, REQUESTS),
    };
    match list(&app, &staff, &form, notice, &ctx).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&e, REQUESTS),
    }
}
