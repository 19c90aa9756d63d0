//! `/console/retention`: the recorded retention runs (as `GET /admin/v1/retention/runs`)
//! and a dry-run preview (`privacy().retention_run` in `RunMode::DryRun`, as
//! `journey retention run --dry-run`): what a run at a given day would purge, destroy and
//! compact, changing nothing.

use super::{date_field, Chrome, ADMIN_OR_COMPLIANCE, RETENTION};
use crate::auth::Ctx;
use crate::error::ApiError;
use crate::web::page_or_error;
use crate::web::FormBody;
use crate::web::{error_page, render, when, Form};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;
use journey_contexts::privacy::retention::RunMode;
use serde_json::Value;

/// How many recorded runs the page lists.
const RUNS: i64 = 50;

pub struct RunRow {
    pub as_of: String,
    pub mode: &'static str,
    pub accounts_purged: u64,
    pub keys_destroyed: String,
    pub events_tombstoned: u64,
    pub log_rows_deleted: u64,
    pub requests_reminded: u64,
    pub started: String,
}

#[derive(Template)]
#[template(path = "console/retention.html")]
struct RetentionPage {
    chrome: Chrome,
    preview: Option<RunRow>,
    runs: Vec<RunRow>,
}

fn time(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(|t| serde_json::from_value::<chrono::DateTime<chrono::Utc>>(t.clone()).ok())
        .map(when)
        .unwrap_or_default()
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// One report (`RunReport` as JSON) as a row.
fn row(v: &Value) -> RunRow {
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let keys = v
        .get("keys_destroyed")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, n)| format!("{k}: {}", n.as_u64().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "none".into());
    RunRow {
        as_of: time(v, "as_of"),
        mode: if flag("dry_run") {
            "dry run"
        } else if flag("simulated") {
            "simulated"
        } else {
            "applied"
        },
        accounts_purged: count(v, "accounts_purged"),
        keys_destroyed: keys,
        events_tombstoned: count(v, "events_tombstoned"),
        log_rows_deleted: count(v, "log_rows_deleted"),
        requests_reminded: count(v, "requests_reminded"),
        started: time(v, "started_at"),
    }
}

async fn page(
    app: &Core,
    staff: &super::ConsoleStaff,
    preview: Option<RunRow>,
) -> Result<RetentionPage, ApiError> {
    let runs = app.privacy().retention_runs(RUNS).await?;
    Ok(RetentionPage {
        chrome: staff.chrome("Retention", "retention"),
        preview,
        runs: runs.iter().map(row).collect(),
    })
}

pub async fn list(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let staff = staff_page!(app, req, ADMIN_OR_COMPLIANCE);
    match page(&app, &staff, None).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&e, RETENTION),
    }
}

/// `POST /console/retention/preview` (`as_of`, a day; today when empty): a dry run.
pub async fn preview(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_OR_COMPLIANCE, RETENTION);
    let done: Result<RetentionPage, ApiError> = async {
        let as_of = date_field(&form, "as_of", "day", true)?.unwrap_or(ctx.at);
        let report = app
            .privacy()
            .retention_run(as_of, RunMode::DryRun, &ctx)
            .await?;
        let v = serde_json::to_value(&report).map_err(|e| {
            ApiError::Service(journey_contexts::error::ServiceError::Internal(e.into()))
        })?;
        page(&app, &staff, Some(row(&v))).await
    }
    .await;
    page_or_error(done, RETENTION)
}
