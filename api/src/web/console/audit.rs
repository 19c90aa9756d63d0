//! `/console/audit`: the audit trail of staff reads, with filters (actor, subject, action,
//! dates), paged, and exported as CSV. Reading it is audited as `GET /admin/v1/audit` is
//! (`audit.list`, with the subject filter as the subject); the export as `audit.export`.

use super::{
    date_field, day, field, page_staff, position_field, reason_error, uuid_field, Chrome,
    ConsoleStaff, ADMIN_OR_COMPLIANCE, AUDIT,
};
use crate::auth::Ctx;
use crate::error::ApiError;
use crate::web::page_or_error;
use crate::web::FormBody;
use crate::web::{error_page, render, when, Form};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;
use journey_contexts::identity::staff::AuditFilter;

/// Entries per page.
const PAGE: u32 = 100;
/// Entries per read while exporting (the API's page limit).
const EXPORT_BATCH: u32 = 500;

pub struct EntryRow {
    pub position: i64,
    pub at: String,
    pub actor: String,
    pub subject: String,
    pub action: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Chrome,
    /// Whether the trail was read (else only the form is shown).
    shown: bool,
    reason: String,
    actor: String,
    subject: String,
    action: String,
    from: String,
    to: String,
    after: i64,
    next_after: Option<i64>,
    entries: Vec<EntryRow>,
}

impl AuditPage {
    fn empty(staff: &ConsoleStaff) -> AuditPage {
        AuditPage {
            chrome: staff.chrome("Audit trail", "audit"),
            shown: false,
            reason: String::new(),
            actor: String::new(),
            subject: String::new(),
            action: String::new(),
            from: String::new(),
            to: String::new(),
            after: 0,
            next_after: None,
            entries: Vec::new(),
        }
    }
}

/// `GET /console/audit`: the filter form; reads nothing.
pub async fn form(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    match page_staff(&app, &req, ADMIN_OR_COMPLIANCE).await {
        Ok(staff) => render(StatusCode::OK, &AuditPage::empty(&staff)),
        Err(resp) => resp,
    }
}

/// The filters of a posted form, checked as `GET /admin/v1/audit` checks its query.
fn filter(form: &Form, limit: u32) -> Result<AuditFilter, ApiError> {
    let action = field(form, "action").map(str::to_string);
    if action.as_ref().is_some_and(|a| a.chars().count() > 100) {
        return Err(super::bad("the action is at most 100 characters"));
    }
    let f = AuditFilter {
        actor: uuid_field(form, "actor", "staff member")?,
        subject: uuid_field(form, "subject", "subject")?,
        action,
        from: date_field(form, "from", "start date", false)?,
        to: date_field(form, "to", "end date", true)?,
        after: Some(position_field(form, "after")?),
        limit,
    };
    if let (Some(a), Some(b)) = (f.from, f.to) {
        if a > b {
            return Err(super::bad("the start date is after the end date"));
        }
    }
    Ok(f)
}

/// `POST /console/audit`: reason and filters; the read is recorded, then listed.
pub async fn trail(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_OR_COMPLIANCE, AUDIT);
    let page: Result<AuditPage, ApiError> = async {
        let f = filter(&form, PAGE)?;
        let reason = form.get("reason").unwrap_or_default().trim().to_string();
        app.identity()
            .audit_read(
                staff.staff.account_id,
                f.subject,
                "audit.list",
                Some(&reason),
                &ctx,
            )
            .await
            .map_err(|e| reason_error(e.into()))?;
        let entries = app.identity().audit_trail(&f).await?;
        let next_after = if entries.len() == PAGE as usize {
            entries.last().map(|e| e.position)
        } else {
            None
        };
        Ok::<_, ApiError>(AuditPage {
            chrome: staff.chrome("Audit trail", "audit"),
            shown: true,
            reason,
            actor: f.actor.map(|a| a.to_string()).unwrap_or_default(),
            subject: f.subject.map(|s| s.to_string()).unwrap_or_default(),
            action: f.action.clone().unwrap_or_default(),
            from: day(f.from),
            to: day(f.to),
            after: f.after.unwrap_or(0),
            next_after,
            entries: entries
                .into_iter()
                .map(|e| EntryRow {
                    position: e.position,
                    at: when(e.at),
                    actor: e.actor,
                    subject: e.subject.unwrap_or_default(),
                    action: e.action,
                    reason: e.reason,
                })
                .collect(),
        })
    }
    .await;
    page_or_error(page, AUDIT)
}

/// One CSV field (RFC 4180 quoting). A value a spreadsheet would run as a formula
/// (`=`, `+`, `-`, `@`, tab, CR first) is prefixed with `'`: reasons are free text.
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// `POST /console/audit/export`: the whole filtered trail as `text/csv`, recorded first
/// (`audit.export`).
pub async fn export_csv(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_OR_COMPLIANCE, AUDIT);
    let csv: Result<String, ApiError> = async {
        let mut f = filter(&form, EXPORT_BATCH)?;
        f.after = Some(0);
        app.identity()
            .audit_read(
                staff.staff.account_id,
                f.subject,
                "audit.export",
                form.get("reason").map(str::trim),
                &ctx,
            )
            .await
            .map_err(|e| reason_error(e.into()))?;
        let mut out = String::from("position,at,actor,subject,action,reason\r\n");
        loop {
            let batch = app.identity().audit_trail(&f).await?;
            for e in &batch {
                let line = [
                    e.position.to_string(),
                    e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    e.actor.clone(),
                    e.subject.clone().unwrap_or_default(),
                    e.action.clone(),
                    e.reason.clone(),
                ]
                .iter()
                .map(|v| csv_field(v))
                .collect::<Vec<_>>()
                .join(",");
                out.push_str(&line);
                out.push_str("\r\n");
            }
            if batch.len() < EXPORT_BATCH as usize {
                break;
            }
            f.after = batch.last().map(|e| e.position);
        }
        Ok::<_, ApiError>(out)
    }
    .await;
    match csv {
        Ok(body) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
            .insert_header((
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit-trail.csv\"",
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(body),
        Err(e) => error_page(&e, AUDIT),
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
    }
}
