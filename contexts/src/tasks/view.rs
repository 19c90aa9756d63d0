//! The task object clients see (`/fetch`, `/fetch-many`, webhooks): one builder, so the
//! webhook body is exactly what `/fetch` returns.

use super::Tasks;
use crate::error::ServiceError;
use journey_domain::task::{Task, TaskResult, TaskStatus};
use journey_domain::Opened;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A task as the client API shows it. Result fields appear by kind (grid, single image,
/// video, describe); `error` only on failed tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskObject {
    pub task_id: Uuid,
    /// `imagine`, `upscale-1x`, `variation-2`, `pan-left`, ... (the creating endpoint).
    pub task_type: String,
    /// The model the task ran on: the `imagine` model's id (`midjourney`, `flux-pro`, ...);
    /// `midjourney` for every Midjourney action (upscales, variations, pan, blend,
    /// describe, face swap, video, ...); the upscaler model for `upscale-2x-4x`.
    #[schema(example = "midjourney")]
    pub model: String,
    /// `staged`, `pending`, `starting`, `processing`, `finished` or `failed`.
    pub status: String,
    /// `"0"`..`"100"`.
    pub percentage: String,
    /// Grids: the grid image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_image_url: Option<String>,
    /// Grids: the four images (see docs/api.md for how they are derived).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_urls: Vec<String>,
    /// Single images; describe echoes its input here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Videos: four URLs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub video_urls: Vec<String>,
    /// Describe: four prompt suggestions, each starting with its keycap number as
    /// documented ("1️⃣ …", "2️⃣ …").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Tasks<'_> {
    /// The client view of a loaded task (opens the sealed result or error).
    pub async fn task_object(
        &self,
        task_id: Uuid,
        task: &Task,
    ) -> Result<TaskObject, ServiceError> {
        let spec = task
            .spec
            .as_ref()
            .ok_or_else(|| ServiceError::NotFound(format!("unknown task_id {task_id}")))?;
        let status = task.status();
        let result = match &task.result {
            // A takedown withholds the results everywhere this view is used: fetch,
            // fetch-many, webhooks (built at send time) and idempotent replays.
            _ if task.taken_down => TaskResult::default(),
            Some(r) => match self.vault.open(r).await? {
                Opened::Value(r) => r,
                Opened::Erased => TaskResult::default(),
            },
            None => TaskResult::default(),
        };
        let error = match (&task.error, status) {
            (Some(e), TaskStatus::Failed) => Some(match self.vault.open(e).await? {
                Opened::Value(e) => e,
                Opened::Erased => "[erased]".to_string(),
            }),
            _ => None,
        };
        let percentage = if status == TaskStatus::Finished {
            100
        } else {
            task.percentage
        };
        Ok(TaskObject {
            task_id,
            task_type: spec.task_type.as_str().to_string(),
            model: spec.model.clone(),
            status: status.as_str().to_string(),
            percentage: percentage.to_string(),
            original_image_url: result.original_image_url,
            image_urls: result.image_urls,
            image_url: result.image_url,
            video_urls: result.video_urls,
            content: numbered(result.content),
            error,
        })
    }

    /// Loads a task of `account`; a foreign or unknown id is `None` alike.
    pub async fn owned_task(
        &self,
        account: Uuid,
        task_id: Uuid,
    ) -> Result<Option<Task>, ServiceError> {
        let (task, _) = self.stores.tasks.tasks.load(&task_id.to_string()).await?;
        Ok(task.owned_by(account).then_some(task))
    }
}

/// A task as its holder's dashboard shows it: the client view plus the prompt the client
/// sent (opened from the sealed parameters; `[erased]` once its key is destroyed) and when
/// it was created.
#[derive(Debug)]
pub struct TaskCard {
    pub object: TaskObject,
    /// `None` for tasks without a text prompt (blend, describe, upscales, ...).
    pub prompt: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl Tasks<'_> {
    /// One of `account`'s tasks for the dashboard; a foreign or unknown id is `None`, as
    /// for `owned_task`.
    pub async fn task_card(
        &self,
        account: Uuid,
        task_id: Uuid,
    ) -> Result<Option<TaskCard>, ServiceError> {
        let Some(task) = self.owned_task(account, task_id).await? else {
            return Ok(None);
        };
        let object = self.task_object(task_id, &task).await?;
        let prompt = match task.spec.as_ref() {
            Some(spec) => match self.vault.open(&spec.params).await? {
                Opened::Value(p) => p.get("prompt").and_then(|v| v.as_str()).map(str::to_string),
                Opened::Erased => Some("[erased]".to_string()),
            },
            None => None,
        };
        Ok(Some(TaskCard {
            object,
            prompt,
            created_at: task.created_at.unwrap_or_default(),
        }))
    }
}

/// Describe's suggestions as documented: each starts with its keycap number. Results are
/// stored without them (the upstream's own text is split on those marks).
fn numbered(content: Vec<String>) -> Vec<String> {
    const MARKS: [&str; 4] = ["1️⃣", "2️⃣", "3️⃣", "4️⃣"];
    content
        .into_iter()
        .enumerate()
        .map(|(i, c)| match MARKS.get(i) {
            Some(m) if !c.starts_with(m) => format!("{m} {c}"),
            _ => c,
        })
        .collect()
}
