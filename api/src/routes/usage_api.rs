//! The account holder's view of their API use: `GET /v1/usage` and `GET /v1/tasks`.

use crate::auth::SessionAuth;
use crate::error::{ApiError, ErrorBody};
use actix_web::{web, HttpResponse};
use chrono::Duration;
use journey_contexts::app::Core;
use journey_contexts::tasks::usage::{parse_instant, TaskPage, UsagePage};
use serde::Deserialize;
use utoipa::IntoParams;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/usage", web::get().to(usage))
        .route("/v1/tasks", web::get().to(tasks));
}

const MAX_LIMIT: u32 = 200;

fn limit(l: Option<u32>) -> Result<u32, ApiError> {
    match l.unwrap_or(50) {
        0 => Err(ApiError::bad("limit must be at least 1")),
        l if l > MAX_LIMIT => Err(ApiError::bad(format!("limit must be at most {MAX_LIMIT}"))),
        l => Ok(l),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Start (inclusive): a date or RFC 3339 time; default 30 days ago.
    pub from: Option<String>,
    /// End (exclusive); default now.
    pub to: Option<String>,
    /// Cursor from the previous page's `next_before`.
    pub before: Option<i64>,
    /// Entries per page, 1..=200 (default 50).
    pub limit: Option<u32>,
}

/// Recorded client-API requests (newest first) with per-day totals. Kept 90 days.
#[utoipa::path(get, path = "/v1/usage", tag = "account", params(UsageQuery),
    responses((status = 200, body = UsagePage),
        (status = 400, description = "Bad from, to or limit", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody)),
    security(("session" = [])))]
pub async fn usage(
    app: web::Data<Core>,
    auth: SessionAuth,
    q: web::Query<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    let now = app.clock.now();
    let to =
        q.to.as_deref()
            .map(|v| parse_instant("to", v))
            .transpose()?
            .unwrap_or(now + Duration::seconds(1));
    let from = q
        .from
        .as_deref()
        .map(|v| parse_instant("from", v))
        .transpose()?
        .unwrap_or(now - Duration::days(30));
    if from >= to {
        return Err(ApiError::bad("from must be before to"));
    }
    let page = app
        .tasks()
        .usage_page(auth.account_id, from, to, q.before, limit(q.limit)?)
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TasksQuery {
    /// Only tasks in this status.
    pub status: Option<String>,
    /// Cursor from the previous page's `next_before`.
    pub before: Option<String>,
    pub limit: Option<u32>,
}

/// The holder's tasks, newest first (task list kept 90 days).
#[utoipa::path(get, path = "/v1/tasks", tag = "account", params(TasksQuery),
    responses((status = 200, body = TaskPage),
        (status = 400, description = "Unknown status or bad limit", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody)),
    security(("session" = [])))]
pub async fn tasks(
    app: web::Data<Core>,
    auth: SessionAuth,
    q: web::Query<TasksQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = app
        .tasks()
        .task_page(
            auth.account_id,
            q.status.as_deref(),
            q.before.as_deref(),
            limit(q.limit)?,
        )
        .await?;
    Ok(HttpResponse::Ok().json(page))
}
