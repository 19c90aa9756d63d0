//! `/tasks`: the holder's tasks, newest first, a page at a time, with their prompt and
//! result thumbnails (the upstream image URLs, loaded lazily by the browser); `/tasks/{id}`:
//! one task in full. The list is `GET /v1/tasks`'s use case; each row is completed with
//! the task as `/api/v1/fetch` shows it (`task_card`).

use super::{query, TASKS};
use crate::error::{ApiError, ServiceError};
use crate::web::{error_page, render, when, Chrome};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;
use journey_contexts::tasks::view::TaskCard;
use uuid::Uuid;

/// Tasks per page.
const PER_PAGE: u32 = 20;
/// The statuses a holder can filter on (`GET /v1/tasks?status=`).
const STATUSES: [&str; 6] = [
    "staged",
    "pending",
    "starting",
    "processing",
    "finished",
    "failed",
];

pub struct TaskRow {
    pub task_id: String,
    pub task_type: String,
    pub model: String,
    pub status: String,
    pub percentage: String,
    pub credits: i64,
    pub created: String,
    pub prompt: Option<String>,
    /// Up to four result images (the grid's four, or the single image).
    pub thumbnails: Vec<String>,
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage {
    chrome: Chrome,
    statuses: &'static [&'static str],
    status: String,
    tasks: Vec<TaskRow>,
    paged: bool,
    /// The next (older) page's query string, escaped by the template.
    next: Option<String>,
}

pub struct TaskDetail {
    pub task_id: String,
    pub task_type: String,
    pub model: String,
    pub status: String,
    pub percentage: String,
    pub created: String,
    pub prompt: Option<String>,
    pub original_image_url: Option<String>,
    pub image_urls: Vec<String>,
    pub image_url: Option<String>,
    pub video_urls: Vec<String>,
    pub content: Vec<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    chrome: Chrome,
    t: TaskDetail,
}

fn thumbnails(card: &TaskCard) -> Vec<String> {
    let o = &card.object;
    if !o.image_urls.is_empty() {
        return o.image_urls.iter().take(4).cloned().collect();
    }
    o.image_url
        .iter()
        .chain(o.original_image_url.iter())
        .take(1)
        .cloned()
        .collect()
}

/// `GET /tasks[?status=…][&before=<cursor>]`.
pub async fn list(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let s = page_holder!(app, req, TASKS);
    let status = query(&req, "status");
    let before = query(&req, "before");
    let page = match app
        .tasks()
        .task_page(s.account_id, status.as_deref(), before.as_deref(), PER_PAGE)
        .await
    {
        Ok(p) => p,
        Err(e) => return error_page(&e.into(), TASKS),
    };
    let mut tasks = Vec::with_capacity(page.tasks.len());
    for t in page.tasks {
        let card = match Uuid::parse_str(&t.task_id) {
            Ok(id) => match app.tasks().task_card(s.account_id, id).await {
                Ok(c) => c,
                Err(e) => return error_page(&e.into(), TASKS),
            },
            Err(_) => None,
        };
        tasks.push(TaskRow {
            thumbnails: card.as_ref().map(thumbnails).unwrap_or_default(),
            prompt: card.and_then(|c| c.prompt),
            task_id: t.task_id,
            task_type: t.task_type,
            model: t.model,
            status: t.status,
            percentage: t.percentage,
            credits: t.credits,
            created: when(t.created_at),
        });
    }
    let next = page.next_before.map(|cursor| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(st) = &status {
            q.append_pair("status", st);
        }
        q.append_pair("before", &cursor);
        q.finish()
    });
    render(
        StatusCode::OK,
        &TasksPage {
            chrome: Chrome::signed_in(&app, &s, "Tasks", "tasks"),
            statuses: &STATUSES,
            status: status.unwrap_or_default(),
            tasks,
            paged: before.is_some(),
            next,
        },
    )
}

/// `GET /tasks/{id}`: one of the holder's tasks; another account's, or none, is a 404.
pub async fn one(app: web::Data<Core>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    let s = page_holder!(app, req, TASKS);
    let not_found = || ApiError::Service(ServiceError::NotFound("no such task of yours".into()));
    let Ok(task_id) = Uuid::parse_str(&id) else {
        return error_page(&not_found(), TASKS);
    };
    let card = match app.tasks().task_card(s.account_id, task_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return error_page(&not_found(), TASKS),
        Err(e) => return error_page(&e.into(), TASKS),
    };
    let o = card.object;
    render(
        StatusCode::OK,
        &TaskPage {
            chrome: Chrome::signed_in(&app, &s, "Task", "tasks"),
            t: TaskDetail {
                task_id: o.task_id.to_string(),
                task_type: o.task_type,
                model: o.model,
                status: o.status,
                percentage: o.percentage,
                created: when(card.created_at),
                prompt: card.prompt,
                original_image_url: o.original_image_url,
                image_urls: o.image_urls,
                image_url: o.image_url,
                video_urls: o.video_urls,
                content: o.content,
                error: o.error,
            },
        },
    )
}
