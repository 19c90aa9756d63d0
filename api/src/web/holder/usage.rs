//! `/usage`: requests and credits per day over the 90 days the usage log is kept (a chart,
//! `/usage/chart.svg`, with the same figures as a table), and the log itself, newest
//! first, a page at a time. The same use case as `GET /v1/usage`.

use super::chart::{self, Day};
use super::{query, USAGE};
use crate::error::ApiError;
use crate::web::{error_page, render, when, Chrome};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, Duration, Utc};
use journey_contexts::app::Core;
use journey_contexts::tasks::usage::UsagePage;
use uuid::Uuid;

/// The usage log is kept 90 days (privacy policy); the page shows all of it.
const WINDOW_DAYS: i64 = 90;
/// Log entries per page.
const PER_PAGE: u32 = 50;

pub struct EntryRow {
    pub at: String,
    pub endpoint: String,
    pub status: u16,
    pub credits: i64,
    pub task_id: Option<String>,
}

pub struct DayRow {
    pub day: String,
    pub requests: i64,
    pub credits: i64,
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePageView {
    chrome: Chrome,
    width: u32,
    height: u32,
    total_requests: i64,
    total_credits: i64,
    /// Days with any request, newest first.
    days: Vec<DayRow>,
    entries: Vec<EntryRow>,
    /// Not on the first page: a link back to the newest entries.
    paged: bool,
    next_before: Option<i64>,
}

/// The 90-day window ending now (the end is exclusive, hence the extra second).
fn window(app: &Core) -> (DateTime<Utc>, DateTime<Utc>) {
    let now = app.clock.now();
    (
        now - Duration::days(WINDOW_DAYS),
        now + Duration::seconds(1),
    )
}

async fn usage(
    app: &Core,
    account: Uuid,
    before: Option<i64>,
    limit: u32,
) -> Result<UsagePage, ApiError> {
    let (from, to) = window(app);
    Ok(app
        .tasks()
        .usage_page(account, from, to, before, limit)
        .await?)
}

/// `GET /usage[?before=<cursor>]`.
pub async fn page(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let s = page_holder!(app, req, USAGE);
    let before = match query(&req, "before").map(|b| b.parse::<i64>()) {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(_)) => {
            return error_page(
                &ApiError::bad("before must be a cursor from the previous page's link"),
                USAGE,
            )
        }
    };
    let page = match usage(&app, s.account_id, before, PER_PAGE).await {
        Ok(p) => p,
        Err(e) => return error_page(&e, USAGE),
    };
    render(
        StatusCode::OK,
        &UsagePageView {
            chrome: Chrome::signed_in(&app, &s, "Usage", "usage"),
            width: chart::WIDTH,
            height: chart::HEIGHT,
            total_requests: page.days.iter().map(|d| d.requests).sum(),
            total_credits: page.days.iter().map(|d| d.credits).sum(),
            days: page
                .days
                .iter()
                .rev()
                .map(|d| DayRow {
                    day: d.day.clone(),
                    requests: d.requests,
                    credits: d.credits,
                })
                .collect(),
            entries: page
                .entries
                .into_iter()
                .map(|e| EntryRow {
                    at: when(e.at),
                    endpoint: e.endpoint,
                    status: e.status,
                    credits: e.credits,
                    task_id: e.task_id,
                })
                .collect(),
            paged: before.is_some(),
            next_before: page.next_before,
        },
    )
}

/// `GET /usage/chart.svg`: the page's chart. Personal (it is this holder's activity), so
/// never cached; served as SVG that runs nothing even when opened on its own.
pub async fn chart(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let s = page_holder!(app, req, USAGE);
    // The per-day totals cover the whole window whatever the page size.
    let page = match usage(&app, s.account_id, None, 1).await {
        Ok(p) => p,
        Err(e) => return error_page(&e, USAGE),
    };
    let today = app.clock.now().date_naive();
    let days: Vec<Day> = (0..WINDOW_DAYS)
        .rev()
        .map(|back| {
            let day = today - Duration::days(back);
            let key = day.format("%Y-%m-%d").to_string();
            let total = page.days.iter().find(|d| d.day == key);
            Day {
                day,
                requests: total.map_or(0, |t| t.requests),
                credits: total.map_or(0, |t| t.credits),
            }
        })
        .collect();
    match chart::svg(&days) {
        Ok(svg) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "image/svg+xml"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .insert_header((
                "Content-Security-Policy",
                "default-src 'none'; frame-ancestors 'none'",
            ))
            .body(svg),
        Err(e) => {
            tracing::error!(error = %e, "usage chart failed to render");
            HttpResponse::InternalServerError()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }
    }
}
