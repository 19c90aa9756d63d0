//! Moving tasks along: recording upstream submissions and status reports (from the
//! notifyHook receiver and the poller alike), finishing and failing tasks, and settling
//! their credits. Every step is idempotent, so a report seen twice, late or by two
//! instances changes nothing the second time.

use super::Tasks;
use crate::error::ServiceError;
use chrono::{DateTime, Utc};
use journey_commands::upstream::mj_proxy::{MjStatus, MjTask};
use journey_domain::credits::CreditCommand;
use journey_domain::meta::CommandMeta;
use journey_domain::task::{FailCause, ResultKind, Task, TaskCommand, TaskResult, TaskStatus};
use journey_domain::DataCategory;
use serde_json::Value;
use uuid::Uuid;

impl Tasks<'_> {
    pub(crate) async fn task_command(
        &self,
        task_id: Uuid,
        command: TaskCommand,
        meta: &CommandMeta,
    ) -> Result<Task, ServiceError> {
        let id = task_id.to_string();
        self.stores.tasks.tasks.execute(&id, command, meta).await?;
        self.runner.nudge();
        Ok(self.stores.tasks.tasks.load(&id).await?.0)
    }

    /// Seals a value of the task's owner in the prompts category (results and errors go
    /// with the prompt they came from).
    async fn seal_for<T: serde::Serialize>(
        &self,
        task: &Task,
        value: &T,
        at: DateTime<Utc>,
    ) -> Result<journey_domain::Sealed<T>, ServiceError> {
        let account = task.spec.as_ref().map(|s| s.account_id).unwrap_or_default();
        Ok(self
            .vault
            .seal(&account.to_string(), DataCategory::Prompts, at, value)
            .await?)
    }

    pub async fn finish_task(
        &self,
        task_id: Uuid,
        task: &Task,
        result: TaskResult,
        buttons: Vec<String>,
        at: DateTime<Utc>,
    ) -> Result<Task, ServiceError> {
        if task.is_terminal() {
            return Ok(task.clone());
        }
        let images = result.image_count();
        let urls: Vec<&String> = result
            .original_image_url
            .iter()
            .chain(result.image_urls.iter())
            .chain(result.image_url.iter())
            .chain(result.video_urls.iter())
            .collect();
        self.legal().index_result_urls(task_id, &urls).await?;
        let sealed = self.seal_for(task, &result, at).await?;
        let command = TaskCommand::Finish {
            result: sealed,
            images,
            buttons,
            at,
        };
        let task = self
            .task_command(task_id, command, &CommandMeta::system(at))
            .await?;
        self.settle_task(task_id, &task, at).await?;
        Ok(task)
    }

    pub async fn fail_task(
        &self,
        task_id: Uuid,
        task: &Task,
        cause: FailCause,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<Task, ServiceError> {
        if task.is_terminal() {
            return Ok(task.clone());
        }
        let sealed = self.seal_for(task, &error.to_string(), at).await?;
        let command = TaskCommand::Fail {
            cause,
            error: sealed,
            at,
        };
        let task = self
            .task_command(task_id, command, &CommandMeta::system(at))
            .await?;
        self.settle_task(task_id, &task, at).await?;
        Ok(task)
    }

    /// Captures a finished task's reservation or releases a failed one's; a no-op for
    /// tasks in flight and for reservations already settled. Returns whether the
    /// reservation is now settled.
    pub async fn settle_task(
        &self,
        task_id: Uuid,
        task: &Task,
        at: DateTime<Utc>,
    ) -> Result<bool, ServiceError> {
        let Some(spec) = task.spec.as_ref() else {
            return Ok(true);
        };
        let command = match task.status() {
            TaskStatus::Finished => CreditCommand::Capture { task_id, at },
            TaskStatus::Failed => CreditCommand::Release { task_id, at },
            _ => return Ok(false),
        };
        self.credits()
            .settle_reservation(&spec.account_id.to_string(), command, at)
            .await?;
        Ok(true)
    }

    /// Applies one midjourney-proxy task report. Reports that would move the task
    /// backwards, or that come after it ended, change nothing.
    pub async fn apply_mj_report(
        &self,
        task_id: Uuid,
        task: Task,
        report: &MjTask,
        at: DateTime<Utc>,
    ) -> Result<Task, ServiceError> {
        if task.is_terminal() {
            return Ok(task);
        }
        let meta = CommandMeta::system(at);
        let task = if task.upstream_id.is_none() {
            // The callback can overtake our own record of the submission.
            let cmd = TaskCommand::MarkSubmitted {
                upstream_id: report.id.clone(),
                at,
            };
            self.task_command(task_id, cmd, &meta).await?
        } else {
            task
        };
        match report.status {
            MjStatus::Success => {
                let result = self.result_of(&task, report).await?;
                let buttons = report.buttons.iter().map(|b| b.custom_id.clone()).collect();
                self.finish_task(task_id, &task, result, buttons, at).await
            }
            MjStatus::Failure | MjStatus::Cancel => {
                let reason = report
                    .fail_reason
                    .clone()
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| "the upstream job failed".to_string());
                let error = format!("upstream failed: {reason}");
                self.fail_task(task_id, &task, FailCause::UpstreamFailed, &error, at)
                    .await
            }
            MjStatus::InProgress => {
                let cmd = TaskCommand::RecordProgress {
                    status: TaskStatus::Processing,
                    percentage: report.percentage().unwrap_or(0),
                    at,
                };
                self.task_command(task_id, cmd, &meta).await
            }
            MjStatus::NotStart | MjStatus::Submitted | MjStatus::Modal | MjStatus::Unknown => {
                Ok(task)
            }
        }
    }

    /// The client-facing result of a successful upstream job.
    async fn result_of(&self, task: &Task, report: &MjTask) -> Result<TaskResult, ServiceError> {
        let kind = task
            .spec
            .as_ref()
            .map(|s| s.result_kind)
            .unwrap_or(ResultKind::Single);
        let image = report.image_url.clone();
        Ok(match kind {
            ResultKind::Grid => TaskResult {
                image_urls: grid_images(image.as_deref(), &report.properties),
                original_image_url: image,
                ..TaskResult::default()
            },
            ResultKind::Single => TaskResult {
                image_url: image,
                ..TaskResult::default()
            },
            ResultKind::Video => TaskResult {
                // The reference promises four; a provider that lists more gets cut to four.
                video_urls: strings_at(&report.properties, "videoUrls")
                    .into_iter()
                    .take(4)
                    .collect(),
                ..TaskResult::default()
            },
            ResultKind::Describe => {
                let text = report
                    .properties
                    .get("finalPrompt")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| report.prompt.clone())
                    .unwrap_or_default();
                // Describe echoes the image the client sent.
                let input = match task.spec.as_ref() {
                    Some(s) => self.vault.open(&s.params).await?.value().and_then(|p| {
                        p.get("image_url")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    }),
                    None => None,
                };
                TaskResult {
                    content: describe_prompts(&text),
                    image_url: input.or(image),
                    ..TaskResult::default()
                }
            }
        })
    }
}

/// The four images of a grid. midjourney-proxy reports one grid image; resellers that
/// split it send the four as `imageUrls`, which win. Otherwise the Midjourney CDN's
/// naming is followed: a grid `…/<job>/grid_0.png` has its images at `…/<job>/0_0.png`
/// … `0_3.png` (top-left, top-right, bottom-left, bottom-right). A grid URL of another
/// shape yields no `image_urls` rather than four guesses.
pub fn grid_images(grid: Option<&str>, properties: &Value) -> Vec<String> {
    let given = strings_at(properties, "imageUrls");
    if given.len() == 4 {
        return given;
    }
    let Some(grid) = grid else { return vec![] };
    let Ok(mut url) = url::Url::parse(grid) else {
        return vec![];
    };
    let Some(last) = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .map(str::to_string)
    else {
        return vec![];
    };
    let Some((stem, ext)) = last.rsplit_once('.') else {
        return vec![];
    };
    if !stem.starts_with("grid") {
        return vec![];
    }
    (0..4)
        .map(|i| {
            if let Ok(mut segs) = url.path_segments_mut() {
                segs.pop().push(&format!("0_{i}.{ext}"));
            }
            url.to_string()
        })
        .collect()
}

fn strings_at(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .or_else(|| x.get("url").and_then(Value::as_str).map(str::to_string))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Midjourney numbers its four suggestions with keycap emoji (1️⃣ … 4️⃣).
fn describe_prompts(text: &str) -> Vec<String> {
    let marks = ["1️⃣", "2️⃣", "3️⃣", "4️⃣"];
    let mut out = Vec::new();
    for (i, m) in marks.iter().enumerate() {
        let Some(start) = text.find(m) else { continue };
        let rest = &text[start + m.len()..];
        let end = marks[i + 1..]
            .iter()
            .filter_map(|n| rest.find(n))
            .min()
            .unwrap_or(rest.len());
        let p = rest[..end].trim();
        if !p.is_empty() {
            out.push(p.to_string());
        }
    }
    if out.is_empty() && !text.trim().is_empty() {
        out.push(text.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_images_follow_the_cdn_naming_unless_given() {
        let derived = grid_images(
            Some("https://cdn.midjourney.com/abc/grid_0.png"),
            &Value::Null,
        );
        assert_eq!(derived[0], "https://cdn.midjourney.com/abc/0_0.png");
        assert_eq!(derived[3], "https://cdn.midjourney.com/abc/0_3.png");
        let given = serde_json::json!({"imageUrls": ["a", "b", "c", "d"]});
        assert_eq!(
            grid_images(Some("https://x/grid_0.png"), &given),
            ["a", "b", "c", "d"]
        );
        assert!(grid_images(Some("https://x/y.png"), &Value::Null).is_empty());
    }

    #[test]
    fn describe_text_splits_into_four_prompts() {
        let p = describe_prompts("1️⃣ a cat --ar 1:1\n\n2️⃣ a dog\n\n3️⃣ a fox\n\n4️⃣ an owl");
        assert_eq!(p, ["a cat --ar 1:1", "a dog", "a fox", "an owl"]);
    }
}
