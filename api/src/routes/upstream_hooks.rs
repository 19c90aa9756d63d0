//! `POST /webhooks/upstream/{provider}/{token}`: midjourney-proxy's notifyHook. The token
//! is per task (its id plus a secret whose HMAC the task holds), so a report can only
//! touch the task it was issued for. The proxy sends the whole task object on every
//! change, without retries and possibly out of order; the task never moves backwards.

use crate::error::ApiError;
use crate::error::ServiceError;
use actix_web::{web, HttpResponse};
use journey_commands::upstream::mj_proxy::parse_task;
use journey_contexts::app::Core;
use uuid::Uuid;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/webhooks/upstream/{provider}/{token}",
        web::post().to(notify),
    );
}

/// midjourney-proxy status callback (per-task secret URL).
#[utoipa::path(post, path = "/webhooks/upstream/{provider}/{token}", tag = "webhooks",
    params(("provider" = String, Path, description = "Provider name from configuration"),
           ("token" = String, Path, description = "Per-task secret issued with the submission")),
    request_body(content = serde_json::Value, description = "midjourney-proxy task object"),
    responses(
        (status = 200, description = "Applied (or ignored as stale)"),
        (status = 400, description = "Unreadable task object, or one about another job", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown token", body = crate::error::ErrorBody)))]
pub async fn notify(
    app: web::Data<Core>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (provider, token) = path.into_inner();
    let unknown = || ApiError::Service(ServiceError::NotFound("unknown notification token".into()));
    let task_id = token
        .get(..32)
        .and_then(|t| Uuid::parse_str(t).ok())
        .ok_or_else(unknown)?;
    let task = app.tasks().task(&task_id.to_string()).await?;
    if !app.tasks().notify_token_task(&token, &task)
        || task.spec.as_ref().is_none_or(|s| s.provider != provider)
    {
        return Err(unknown());
    }
    let report = parse_task(&body).map_err(|e| ApiError::bad(e.to_string()))?;
    if task.upstream_id.as_ref().is_some_and(|u| *u != report.id) {
        return Err(ApiError::bad("the report is about another upstream job"));
    }
    let now = app.clock.now();
    let task = app
        .tasks()
        .apply_mj_report(task_id, task, &report, now)
        .await?;
    if task.is_terminal() {
        // Settling is done; the webhook to the client goes out from the worker.
        app.tasks().reschedule(task_id, now).await?;
        app.tasks().wake_worker();
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({})))
}
