//! A subject: `/console/subjects/{id}` (the reason and filter form; shows nothing of the
//! subject's data), `POST …/timeline` (the history with sealed fields opened, audited as
//! `subject.events` before it is read, as `GET /admin/v1/subjects/{id}/events`) and
//! `POST …/export` (the subject's export document, as `GET /admin/v1/subjects/{id}/export`).

use super::{
    date_field, day, field, position_field, reason_error, Chrome, ADMIN_OR_COMPLIANCE, CONSOLE,
};
use crate::auth::Ctx;
use crate::error::{ApiError, ServiceError};
use crate::web::page_or_error;
use crate::web::FormBody;
use crate::web::{error_page, render, when, Form};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;
use journey_contexts::identity::staff_views::HistoryFilter;
use journey_contexts::privacy::export_jobs::ExportFormat;
use uuid::Uuid;

/// Events per timeline page.
const PAGE: u32 = 50;

fn subject_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| {
        ApiError::Service(ServiceError::NotFound(
            "no such subject: the address must end in an account id".into(),
        ))
    })
}

#[derive(Template)]
#[template(path = "console/subject.html")]
struct SubjectPage {
    chrome: Chrome,
    id: Uuid,
}

/// `GET /console/subjects/{id}`: asks for the reason (and filters) first.
pub async fn subject(
    app: web::Data<Core>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let staff = staff_page!(app, req, ADMIN_OR_COMPLIANCE);
    match subject_id(&id) {
        Ok(id) => render(
            StatusCode::OK,
            &SubjectPage {
                chrome: staff.chrome("Subject", "home"),
                id,
            },
        ),
        Err(e) => error_page(&e, CONSOLE),
    }
}

/// A piece of an event's JSON: text, or a value whose key was destroyed.
pub struct Piece {
    pub text: String,
    pub erased: bool,
}

/// Pretty JSON cut around every `"[erased]"`, so the page can mark erased values.
fn pieces(v: &serde_json::Value) -> Vec<Piece> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("\"[erased]\"") {
        out.push(Piece {
            text: rest[..i].to_string(),
            erased: false,
        });
        out.push(Piece {
            text: "erased".into(),
            erased: true,
        });
        rest = &rest[i + "\"[erased]\"".len()..];
    }
    out.push(Piece {
        text: rest.to_string(),
        erased: false,
    });
    out
}

pub struct EventRow {
    pub position: i64,
    pub at: String,
    pub category: String,
    pub stream: String,
    pub event_type: String,
    pub actor: String,
    pub payload: Vec<Piece>,
    pub metadata: Vec<Piece>,
    pub has_erased: bool,
}

#[derive(Template)]
#[template(path = "console/timeline.html")]
struct TimelinePage {
    chrome: Chrome,
    id: Uuid,
    reason: String,
    category: String,
    categories: Vec<String>,
    from: String,
    to: String,
    /// The position this page starts after (0: the first page).
    after: i64,
    next_after: Option<i64>,
    events: Vec<EventRow>,
}

/// The event's payload without its one-key wrapper (`{"AccountRegistered": {...}}`).
fn inner(payload: serde_json::Value) -> serde_json::Value {
    match payload {
        serde_json::Value::Object(mut m) if m.len() == 1 => {
            let (_, v) = m.iter_mut().next().expect("one entry");
            v.take()
        }
        other => other,
    }
}

/// `POST /console/subjects/{id}/timeline`: reason, category, from, to, after.
pub async fn timeline(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    id: web::Path<String>,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_OR_COMPLIANCE, CONSOLE);
    let page: Result<TimelinePage, ApiError> = async {
        let subject = subject_id(&id)?;
        let filter = HistoryFilter {
            category: field(&form, "category").map(str::to_string),
            from: date_field(&form, "from", "start date", false)?,
            to: date_field(&form, "to", "end date", true)?,
        };
        let after = position_field(&form, "after")?;
        let reason = form.get("reason").unwrap_or_default().trim().to_string();
        let t = app
            .identity()
            .subject_timeline(
                &staff.staff,
                subject,
                Some(&reason),
                &filter,
                after,
                PAGE,
                &ctx,
            )
            .await
            .map_err(|e| reason_error(e.into()))?;
        Ok::<_, ApiError>(TimelinePage {
            chrome: staff.chrome("Subject timeline", "home"),
            id: subject,
            reason,
            category: filter.category.clone().unwrap_or_default(),
            categories: t.categories,
            from: day(filter.from),
            to: day(filter.to),
            after,
            next_after: t.page.next_after,
            events: t
                .page
                .events
                .into_iter()
                .map(|e| {
                    let actor = e
                        .metadata
                        .get("actor")
                        .and_then(|a| a.as_str())
                        .unwrap_or("")
                        .to_string();
                    let payload = pieces(&inner(e.payload));
                    let metadata = pieces(&e.metadata);
                    EventRow {
                        position: e.position,
                        at: when(e.committed_at),
                        category: e.aggregate_type,
                        stream: e.aggregate_id,
                        event_type: e.event_type,
                        actor,
                        has_erased: payload.iter().chain(metadata.iter()).any(|p| p.erased),
                        payload,
                        metadata,
                    }
                })
                .collect(),
        })
    }
    .await;
    page_or_error(page, CONSOLE)
}

/// `POST /console/subjects/{id}/export`: reason, format (json or html). The same calls as
/// `GET /admin/v1/subjects/{id}/export`: audited (`subject.export`), then built; answered
/// as a download.
pub async fn export(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    id: web::Path<String>,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_OR_COMPLIANCE, CONSOLE);
    let done: Result<HttpResponse, ApiError> = async {
        let subject = subject_id(&id)?;
        let format = match field(&form, "format") {
            None => ExportFormat::Json,
            Some(f) => ExportFormat::parse(f)
                .ok_or_else(|| super::bad("the format must be json or html"))?,
        };
        app.identity()
            .audit_read(
                staff.staff.account_id,
                Some(subject),
                "subject.export",
                form.get("reason").map(str::trim),
                &ctx,
            )
            .await
            .map_err(|e| reason_error(e.into()))?;
        let text = app
            .privacy()
            .export_document(subject, format, |_, _| {})
            .await?;
        Ok::<_, ApiError>(
            HttpResponse::Ok()
                .content_type(format.content_type())
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header(("X-Content-Type-Options", "nosniff"))
                // As the holder's download: an HTML copy opened in place runs nothing.
                .insert_header(("Content-Security-Policy", "default-src 'none'; sandbox"))
                .insert_header((
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"subject-{subject}.{}\"",
                        format.as_str()
                    ),
                ))
                .body(text),
        )
    }
    .await;
    done.unwrap_or_else(|e| error_page(&e, CONSOLE))
}
