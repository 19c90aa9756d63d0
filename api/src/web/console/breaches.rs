//! `/console/breaches`: the breach register with its 72-hour clock (as
//! `GET /admin/v1/breaches`, not audited: it shows how many holders were affected, not
//! who), recording a breach (`POST /admin/v1/breaches`), notifying the affected holders
//! (`…/notify-holders`, audited per holder by the service) and marking the regulator
//! notified (`…/regulator-notified`).

use super::{field, Chrome, ADMIN_OR_COMPLIANCE, BREACHES};
use crate::auth::Ctx;
use crate::error::{ApiError, ServiceError};
use crate::web::see_other_or_error;
use crate::web::FormBody;
use crate::web::{error_page, render, when, Form};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, NaiveDateTime, Utc};
use journey_contexts::app::Core;
use journey_contexts::legal::breaches::{Affected, RecordBreach};
use uuid::Uuid;

pub struct BreachRow {
    pub id: Uuid,
    pub description: String,
    pub categories: String,
    pub selection: String,
    pub affected: usize,
    pub holders_notified: usize,
    pub discovered: String,
    pub deadline: String,
    /// "41 h left", "overdue by 8 h", or when the regulator was told.
    pub clock: String,
    pub overdue: bool,
    pub regulator: Option<String>,
}

#[derive(Template)]
#[template(path = "console/breaches.html")]
struct BreachesPage {
    chrome: Chrome,
    breaches: Vec<BreachRow>,
    categories: &'static [&'static str],
}

const CATEGORIES: &[&str] = &["account", "usage", "prompts", "billing", "support"];

/// Whole hours from `now` to `deadline`, in words.
fn clock(now: DateTime<Utc>, deadline: DateTime<Utc>) -> String {
    let mins = (deadline - now).num_minutes();
    if mins >= 0 {
        format!("{} h {} min left", mins / 60, mins % 60)
    } else {
        let late = -mins;
        format!("overdue by {} h {} min", late / 60, late % 60)
    }
}

pub async fn list(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let staff = staff_page!(app, req, ADMIN_OR_COMPLIANCE);
    let now = app.clock.now();
    match app.legal().breaches().await {
        Ok(list) => render(
            StatusCode::OK,
            &BreachesPage {
                chrome: staff.chrome("Breach register", "breaches"),
                categories: CATEGORIES,
                breaches: list
                    .into_iter()
                    .map(|b| BreachRow {
                        id: b.breach_id,
                        description: b.description,
                        categories: b.categories.join(", "),
                        selection: b.selection,
                        affected: b.affected,
                        holders_notified: b.holders_notified,
                        discovered: when(b.discovered_at),
                        deadline: when(b.deadline_at),
                        clock: match b.regulator_notified_at {
                            Some(t) => format!("regulator notified {}", when(t)),
                            None => clock(now, b.deadline_at),
                        },
                        overdue: b.overdue,
                        regulator: b.regulator_reference,
                    })
                    .collect(),
            },
        ),
        Err(e) => error_page(&e.into(), BREACHES),
    }
}

/// `YYYY-MM-DDTHH:MM` (a `datetime-local` input), read as UTC.
fn instant(v: &str, label: &str) -> Result<DateTime<Utc>, ApiError> {
    NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S"))
        .map(|t| t.and_utc())
        .map_err(|_| {
            super::bad(format!(
                "the {label} must be a date and time such as 2026-11-29T14:30"
            ))
        })
}

/// The record form as the API's `RecordBreach`.
fn record_of(form: &Form) -> Result<RecordBreach, ApiError> {
    let discovered_at = instant(
        field(form, "discovered_at")
            .ok_or_else(|| super::bad("give when the breach was discovered"))?,
        "discovery time",
    )?;
    let categories = form
        .0
        .iter()
        .filter(|(k, _)| k == "category")
        .map(|(_, v)| v.clone())
        .collect();
    let affected = match field(form, "affected") {
        Some("all") => Affected::AllAccounts(true),
        Some("accounts") => Affected::Accounts(
            form.get("accounts")
                .unwrap_or_default()
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    Uuid::parse_str(s).map_err(|_| {
                        super::bad(format!("{s:?} is not an account id (one UUID per line)"))
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        Some("created") => Affected::CreatedBetween {
            from: instant(
                field(form, "created_from")
                    .ok_or_else(|| super::bad("give the start of the sign-up window"))?,
                "start of the window",
            )?,
            to: instant(
                field(form, "created_to")
                    .ok_or_else(|| super::bad("give the end of the sign-up window"))?,
                "end of the window",
            )?,
        },
        _ => return Err(super::bad("choose who was affected")),
    };
    Ok(RecordBreach {
        discovered_at,
        description: form.get("description").unwrap_or_default().to_string(),
        categories,
        affected,
    })
}

/// `POST /console/breaches`: records a breach, then back to the register.
pub async fn record(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_OR_COMPLIANCE, BREACHES);
    let done: Result<(), ApiError> = async {
        let r = record_of(&form)?;
        app.legal()
            .record_breach(staff.staff.account_id, r, &ctx)
            .await?;
        Ok(())
    }
    .await;
    see_other_or_error(done, "/console/breaches", BREACHES)
}

/// `POST /console/breaches/{id}/{action}`: `notify-holders` or `regulator-notified`
/// (with `reference`).
pub async fn act(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_OR_COMPLIANCE, BREACHES);
    let (id, action) = path.into_inner();
    let me = staff.staff.account_id;
    let done: Result<(), ApiError> = async {
        let id = Uuid::parse_str(&id)
            .map_err(|_| ApiError::Service(ServiceError::NotFound("no such breach".into())))?;
        match action.as_str() {
            "notify-holders" => {
                app.legal().notify_breach_subjects(me, id, &ctx).await?;
            }
            "regulator-notified" => {
                app.legal()
                    .mark_regulator_notified(
                        me,
                        id,
                        form.get("reference").unwrap_or_default(),
                        &ctx,
                    )
                    .await?;
            }
            other => {
                return Err(ApiError::Service(ServiceError::NotFound(format!(
                    "no breach action {other:?}"
                ))))
            }
        }
        Ok(())
    }
    .await;
    see_other_or_error(done, "/console/breaches", BREACHES)
}
