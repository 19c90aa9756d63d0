//! The registers staff decide: takedown cases (`/console/takedowns`, as
//! `GET /admin/v1/takedowns` and `POST /admin/v1/takedowns/{id}/{action|reject}`) and
//! child reports (`/console/child-reports`, as `GET /admin/v1/child-reports` and
//! `POST /admin/v1/child-reports/{id}/{confirm|reject}`). The lists open sealed contact
//! details, so they are read with a reason and audited by the service; each decision is
//! audited by the service too. After a decision the list is shown again, read with the
//! list's reason (the hidden `reason` field).

use super::{page_staff, reason_error, Chrome, ConsoleStaff, ADMIN_OR_COMPLIANCE};
use crate::auth::Ctx;
use crate::error::{ApiError, ServiceError};
use crate::web::FormBody;
use crate::web::{error_page, render, when, Form, Next};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;
use uuid::Uuid;

/// Which register a page is about.
#[derive(Clone, Copy)]
pub enum Register {
    Takedowns,
    ChildReports,
}

impl Register {
    fn path(self) -> &'static str {
        match self {
            Register::Takedowns => "/console/takedowns",
            Register::ChildReports => "/console/child-reports",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Register::Takedowns => "Takedown cases",
            Register::ChildReports => "Child reports",
        }
    }
    fn section(self) -> &'static str {
        match self {
            Register::Takedowns => "takedowns",
            Register::ChildReports => "child-reports",
        }
    }
    /// The decision other than `reject`.
    fn yes(self) -> &'static str {
        match self {
            Register::Takedowns => "action",
            Register::ChildReports => "confirm",
        }
    }
    fn next(self) -> Next {
        Next {
            href: self.path(),
            label: "Back to the register",
        }
    }
}

pub struct CaseRow {
    pub id: Uuid,
    pub status: String,
    /// The task (takedowns) or account (child reports) concerned, if any matched.
    pub concerns: String,
    pub filed: String,
    pub contact: String,
    pub details: String,
    pub notified: String,
}

#[derive(Template)]
#[template(path = "console/cases.html")]
struct CasesPage {
    chrome: Chrome,
    path: &'static str,
    takedowns: bool,
    yes: &'static str,
    shown: bool,
    reason: String,
    notice: String,
    cases: Vec<CaseRow>,
}

fn empty_page(staff: &ConsoleStaff, reg: Register) -> CasesPage {
    CasesPage {
        chrome: staff.chrome(reg.title(), reg.section()),
        path: reg.path(),
        takedowns: matches!(reg, Register::Takedowns),
        yes: reg.yes(),
        shown: false,
        reason: String::new(),
        notice: String::new(),
        cases: Vec::new(),
    }
}

async fn read(
    app: &Core,
    staff: &ConsoleStaff,
    reg: Register,
    form: &Form,
    notice: String,
    ctx: &Ctx,
) -> Result<CasesPage, ApiError> {
    let reason = form.get("reason").unwrap_or_default().trim().to_string();
    let me = staff.staff.account_id;
    let cases = match reg {
        Register::Takedowns => app
            .legal()
            .takedowns(me, None, Some(&reason), ctx)
            .await
            .map_err(|e| reason_error(e.into()))?
            .into_iter()
            .map(|t| CaseRow {
                id: t.case_id,
                status: t.status,
                concerns: t.task_id.map(|t| format!("task {t}")).unwrap_or_default(),
                filed: when(t.filed_at),
                contact: t.claimant_contact.unwrap_or_default(),
                details: t.grounds.unwrap_or_default(),
                notified: t.notified.join(", "),
            })
            .collect(),
        Register::ChildReports => app
            .legal()
            .child_reports(me, Some(&reason), ctx)
            .await
            .map_err(|e| reason_error(e.into()))?
            .into_iter()
            .map(|r| CaseRow {
                id: r.report_id,
                status: r.status,
                concerns: r.account_id.map(|a| a.to_string()).unwrap_or_default(),
                filed: when(r.filed_at),
                contact: r.reporter_contact.unwrap_or_default(),
                details: r.details.unwrap_or_default(),
                notified: String::new(),
            })
            .collect(),
    };
    Ok(CasesPage {
        shown: true,
        reason,
        notice,
        cases,
        ..empty_page(staff, reg)
    })
}

pub async fn form(app: web::Data<Core>, req: HttpRequest, reg: Register) -> HttpResponse {
    match page_staff(&app, &req, ADMIN_OR_COMPLIANCE).await {
        Ok(staff) => render(StatusCode::OK, &empty_page(&staff, reg)),
        Err(resp) => resp,
    }
}

pub async fn list(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
    reg: Register,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_OR_COMPLIANCE, reg.next());
    match read(&app, &staff, reg, &form, String::new(), &ctx).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&e, reg.next()),
    }
}

/// `POST …/{id}/{decision}`: `note` (why; required), and the list's `reason`.
pub async fn decide(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: FormBody,
    reg: Register,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_OR_COMPLIANCE, reg.next());
    let (id, decision) = path.into_inner();
    let done: Result<String, ApiError> = async {
        let not_found = || ApiError::Service(ServiceError::NotFound("no such case".into()));
        let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
        let yes = match decision.as_str() {
            d if d == reg.yes() => true,
            "reject" => false,
            _ => {
                return Err(ApiError::Service(ServiceError::NotFound(format!(
                    "the decision must be {} or reject",
                    reg.yes()
                ))))
            }
        };
        super::check_reason(form.get("reason").unwrap_or_default())?;
        let note = form.get("note").unwrap_or_default();
        let me = staff.staff.account_id;
        let status = match reg {
            Register::Takedowns => {
                app.legal()
                    .decide_takedown(me, id, yes, note, &ctx)
                    .await?
                    .status
            }
            Register::ChildReports => {
                app.legal()
                    .decide_child_report(me, id, yes, note, &ctx)
                    .await?
                    .status
            }
        };
        Ok::<_, ApiError>(format!("Case {id} is now {status}."))
    }
    .await;
    let notice = match done {
        Ok(n) => n,
        Err(e) => return error_page(&e, reg.next()),
    };
    match read(&app, &staff, reg, &form, notice, &ctx).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&e, reg.next()),
    }
}
