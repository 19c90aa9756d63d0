//! The compliance console (`/console`): server-rendered pages for staff. Staff sign in as
//! holders do (the session cookie); their roles come from the identity context, and each
//! page allows the roles its JSON counterpart under `/admin/v1/*` allows. A holder with no
//! staff role gets a 403 page. Every page calls the same service methods as the staff API,
//! so every read of a subject's data is audited the same way, before it is shown.
//!
//! Reads that the API audits take a reason; the console asks for it in a form and sends
//! it (with the filters) in a POST body, so that neither the reason nor an email address
//! ever appears in a URL.

/// The staff member behind a console page view holding one of `$roles`, or the page to
/// answer (sign-in, 403, error).
macro_rules! staff_page {
    ($app:expr, $req:expr, $roles:expr) => {
        match $crate::web::console::page_staff(&$app, &$req, $roles).await {
            Ok(s) => s,
            Err(resp) => return resp,
        }
    };
}

/// The staff member behind a posted console form (session, CSRF token, one of `$roles`),
/// or the page to answer.
macro_rules! staff_form {
    ($app:expr, $req:expr, $form:expr, $roles:expr, $next:expr) => {
        match $crate::web::console::form_staff(&$app, &$req, &$form, $roles, $next).await {
            Ok(s) => s,
            Err(resp) => return resp,
        }
    };
}

mod audit;
mod breaches;
mod cases;
mod erasure;
mod home;
mod policies;
mod requests;
mod retention;
mod staff;
mod tickets;
mod timeline;

use super::{error_page, form_session, page_session, see_other, Form, Next};
use crate::auth::{SessionAuth, StaffAuth};
use crate::error::{ApiError, ServiceError};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use journey_contexts::app::Core;
use journey_domain::staff::Role;

/// Subjects' data, the audit trail, requests: as `auth::AdminOrCompliance`.
const ADMIN_OR_COMPLIANCE: &[Role] = &[Role::Admin, Role::Compliance];
/// Staff roles: admin only.
const ADMIN_ONLY: &[Role] = &[Role::Admin];
/// Support tickets: as `auth::SupportOrAdmin`.
const SUPPORT_OR_ADMIN: &[Role] = &[Role::Support, Role::Admin];
/// Any staff role (the console's home).
const ANY_STAFF: &[Role] = &[Role::Admin, Role::Compliance, Role::Support];

pub const CONSOLE: Next = Next {
    href: "/console",
    label: "Back to the console",
};
pub const AUDIT: Next = Next {
    href: "/console/audit",
    label: "Back to the audit trail",
};
pub const REQUESTS: Next = Next {
    href: "/console/requests",
    label: "Back to the request worklist",
};
pub const BREACHES: Next = Next {
    href: "/console/breaches",
    label: "Back to the breach register",
};
pub const RETENTION: Next = Next {
    href: "/console/retention",
    label: "Back to retention",
};
pub const TICKETS: Next = Next {
    href: "/console/tickets",
    label: "Back to support tickets",
};
pub const POLICIES: Next = Next {
    href: "/console/policies",
    label: "Back to policy versions",
};
pub const ERASURE: Next = Next {
    href: "/console/erasure",
    label: "Back to deletion and erasure",
};
pub const STAFF: Next = Next {
    href: "/console/staff",
    label: "Back to staff roles",
};

/// One entry of the console's navigation, shown only to the roles that may open it.
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub section: &'static str,
}

const PAGES: &[(&str, &str, &str, &[Role])] = &[
    ("/console", "Console", "home", ANY_STAFF),
    (
        "/console/audit",
        "Audit trail",
        "audit",
        ADMIN_OR_COMPLIANCE,
    ),
    (
        "/console/requests",
        "Requests",
        "requests",
        ADMIN_OR_COMPLIANCE,
    ),
    (
        "/console/retention",
        "Retention",
        "retention",
        ADMIN_OR_COMPLIANCE,
    ),
    ("/console/erasure", "Erasure", "erasure", ANY_STAFF),
    (
        "/console/breaches",
        "Breaches",
        "breaches",
        ADMIN_OR_COMPLIANCE,
    ),
    (
        "/console/takedowns",
        "Takedowns",
        "takedowns",
        ADMIN_OR_COMPLIANCE,
    ),
    (
        "/console/child-reports",
        "Child reports",
        "child-reports",
        ADMIN_OR_COMPLIANCE,
    ),
    (
        "/console/policies",
        "Policies",
        "policies",
        ADMIN_OR_COMPLIANCE,
    ),
    ("/console/tickets", "Tickets", "tickets", SUPPORT_OR_ADMIN),
    ("/console/staff", "Staff roles", "staff", ADMIN_ONLY),
];

/// What every console page's frame (`console/base.html`) shows.
pub struct Chrome {
    pub title: String,
    pub section: &'static str,
    pub csrf: String,
    pub nav: Vec<NavItem>,
    /// The staff member's roles, e.g. "admin, compliance".
    pub roles: String,
}

/// A signed-in staff member at a console page.
pub struct ConsoleStaff {
    pub staff: StaffAuth,
    pub csrf: String,
}

impl ConsoleStaff {
    fn may(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.staff.roles.contains(r))
    }

    fn chrome(&self, title: &str, section: &'static str) -> Chrome {
        Chrome {
            title: title.to_string(),
            section,
            csrf: self.csrf.clone(),
            nav: PAGES
                .iter()
                .filter(|(_, _, _, roles)| self.may(roles))
                .map(|&(href, label, section, _)| NavItem {
                    href,
                    label,
                    section,
                })
                .collect(),
            roles: self
                .staff
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    let na = || web::to(super::method_not_allowed);
    cfg.service(
        web::resource("/console")
            .route(web::get().to(home::home))
            .default_service(na()),
    )
    .service(
        web::resource("/console/find")
            .route(web::post().to(home::find))
            .default_service(na()),
    )
    .service(
        web::resource("/console/subjects/{id}")
            .route(web::get().to(timeline::subject))
            .default_service(na()),
    )
    .service(
        web::resource("/console/subjects/{id}/timeline")
            .route(web::post().to(timeline::timeline))
            .default_service(na()),
    )
    .service(
        web::resource("/console/subjects/{id}/export")
            .route(web::post().to(timeline::export))
            .default_service(na()),
    )
    .service(
        web::resource("/console/audit")
            .route(web::get().to(audit::form))
            .route(web::post().to(audit::trail))
            .default_service(na()),
    )
    .service(
        web::resource("/console/audit/export")
            .route(web::post().to(audit::export_csv))
            .default_service(na()),
    )
    .service(
        web::resource("/console/requests")
            .route(web::get().to(requests::form))
            .route(web::post().to(requests::worklist))
            .default_service(na()),
    )
    .service(
        web::resource("/console/requests/{id}/{step}")
            .route(web::post().to(requests::step))
            .default_service(na()),
    )
    .service(
        web::resource("/console/retention")
            .route(web::get().to(retention::list))
            .default_service(na()),
    )
    .service(
        web::resource("/console/retention/preview")
            .route(web::post().to(retention::preview))
            .default_service(na()),
    )
    .service(
        web::resource("/console/breaches")
            .route(web::get().to(breaches::list))
            .route(web::post().to(breaches::record))
            .default_service(na()),
    )
    .service(
        web::resource("/console/breaches/{id}/{action}")
            .route(web::post().to(breaches::act))
            .default_service(na()),
    )
    .service(
        web::resource("/console/takedowns")
            .route(web::get().to(|app, req| cases::form(app, req, cases::Register::Takedowns)))
            .route(web::post().to(|app, ctx, req, body| {
                cases::list(app, ctx, req, body, cases::Register::Takedowns)
            }))
            .default_service(na()),
    )
    .service(
        web::resource("/console/takedowns/{id}/{decision}")
            .route(web::post().to(|app, ctx, req, path, body| {
                cases::decide(app, ctx, req, path, body, cases::Register::Takedowns)
            }))
            .default_service(na()),
    )
    .service(
        web::resource("/console/child-reports")
            .route(web::get().to(|app, req| cases::form(app, req, cases::Register::ChildReports)))
            .route(web::post().to(|app, ctx, req, body| {
                cases::list(app, ctx, req, body, cases::Register::ChildReports)
            }))
            .default_service(na()),
    )
    .service(
        web::resource("/console/child-reports/{id}/{decision}")
            .route(web::post().to(|app, ctx, req, path, body| {
                cases::decide(app, ctx, req, path, body, cases::Register::ChildReports)
            }))
            .default_service(na()),
    )
    .service(
        web::resource("/console/tickets")
            .route(web::get().to(tickets::form))
            .route(web::post().to(tickets::list))
            .default_service(na()),
    )
    .service(
        web::resource("/console/tickets/{id}")
            .route(web::post().to(tickets::open))
            .default_service(na()),
    )
    .service(
        web::resource("/console/tickets/{id}/{action}")
            .route(web::post().to(tickets::act))
            .default_service(na()),
    )
    .service(
        web::resource("/console/policies")
            .route(web::get().to(policies::list))
            .route(web::post().to(policies::publish))
            .default_service(na()),
    )
    .service(
        web::resource("/console/erasure")
            .route(web::get().to(erasure::form))
            .route(web::post().to(erasure::list))
            .default_service(na()),
    )
    .service(
        web::resource("/console/erasure/{id}/cancel")
            .route(web::post().to(erasure::cancel))
            .default_service(na()),
    )
    .service(
        web::resource("/console/staff")
            .route(web::get().to(staff::list))
            .route(web::post().to(staff::change))
            .default_service(na()),
    );
}

fn no_role() -> ApiError {
    ApiError::Service(ServiceError::Forbidden(
        "the console is for JourneyAPI staff: your account has no staff role".into(),
    ))
}

/// The staff member behind a session, if they hold one of `roles`.
async fn staff_of(
    app: &Core,
    session: SessionAuth,
    roles: &[Role],
) -> Result<ConsoleStaff, ApiError> {
    let member = app.identity().staff_member(session.account_id).await?;
    if member.roles.is_empty() {
        return Err(no_role());
    }
    let staff = StaffAuth {
        account_id: session.account_id,
        roles: member.roles,
    };
    staff.require(roles)?;
    Ok(ConsoleStaff {
        csrf: app.identity().csrf_token(&session.token),
        staff,
    })
}

/// The staff member at a page view (GET). Signed out: to the sign-in page; no staff role,
/// or not one of `roles`: a 403 page.
async fn page_staff(
    app: &Core,
    req: &HttpRequest,
    roles: &[Role],
) -> Result<ConsoleStaff, HttpResponse> {
    match page_session(app, req).await {
        Ok(Some(s)) => staff_of(app, s, roles)
            .await
            .map_err(|e| error_page(&e, CONSOLE)),
        Ok(None) => Err(see_other("/")),
        Err(e) => Err(error_page(&e, CONSOLE)),
    }
}

/// The staff member behind a posted form: session, CSRF token, role.
async fn form_staff(
    app: &Core,
    req: &HttpRequest,
    form: &Form,
    roles: &[Role],
    next: Next,
) -> Result<ConsoleStaff, HttpResponse> {
    let s = form_session(app, req, form)
        .await
        .map_err(|e| error_page(&e, CONSOLE))?;
    staff_of(app, s, roles)
        .await
        .map_err(|e| error_page(&e, next))
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::Service(ServiceError::bad(msg))
}

/// A form field, trimmed; `None` when absent or blank.
fn field<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.get(name).map(str::trim).filter(|v| !v.is_empty())
}

/// A date field (`YYYY-MM-DD`, as `<input type="date">` sends it): the start of that UTC
/// day, or with `end_of_day` its last millisecond.
fn date_field(
    form: &Form,
    name: &str,
    label: &str,
    end_of_day: bool,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(v) = field(form, name) else {
        return Ok(None);
    };
    let day = NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map_err(|_| bad(format!("the {label} must be a date such as 2026-11-29")))?;
    let t = if end_of_day {
        day.and_hms_milli_opt(23, 59, 59, 999)
    } else {
        day.and_hms_opt(0, 0, 0)
    }
    .expect("a valid time of day");
    Ok(Some(t.and_utc()))
}

/// An account id field.
fn uuid_field(form: &Form, name: &str, label: &str) -> Result<Option<uuid::Uuid>, ApiError> {
    field(form, name)
        .map(|v| {
            uuid::Uuid::parse_str(v).map_err(|_| {
                bad(format!(
                    "the {label} must be an account id (a UUID such as 0b0f6a64-…)"
                ))
            })
        })
        .transpose()
}

/// A position field (paging).
fn position_field(form: &Form, name: &str) -> Result<i64, ApiError> {
    match field(form, name) {
        None => Ok(0),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| bad("the page position must be a whole number")),
    }
}

/// The reason rule of every audited read (1 to `MAX_REASON_LEN` characters, trimmed),
/// checked before a form's action runs, so that an action is never done and then
/// answered with a refusal of its reason.
fn check_reason(reason: &str) -> Result<(), ApiError> {
    let n = reason.trim().chars().count();
    if n == 0 || n > journey_domain::staff::MAX_REASON_LEN {
        return Err(reason_error(bad("`reason` is required")));
    }
    Ok(())
}

/// The staff API's wording about the `reason` query parameter means little at a form.
fn reason_error(e: ApiError) -> ApiError {
    match e {
        ApiError::Service(ServiceError::BadRequest(m)) if m.contains("`reason`") => bad(
            "give a reason for this read (1 to 300 characters, e.g. a ticket or request id): it is recorded in the audit trail",
        ),
        other => other,
    }
}

/// A date for a date input's `value`.
fn day(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}
