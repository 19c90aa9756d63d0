//! An image-generation task (aggregate `task`, id = the task id the client sees).
//!
//! Lifecycle: `staged` (accepted, credits reserved, nothing sent yet) → `pending` (the
//! upstream provider accepted it) → `starting`/`processing` (progress) → `finished` or
//! `failed`. Invariants held here, whatever order or how often updates arrive:
//! - status and percentage never move backwards, and a finished or failed task never
//!   changes again (late, repeated and out-of-order upstream callbacks are no-ops);
//! - a task is submitted upstream at most once;
//! - customer-webhook attempts are recorded once each, and stop after the first success.
//!
//! Personal data is sealed: the prompt and generation parameters and the result
//! (`prompts` category, 90 days) and the customer's webhook destination (`usage`, 90 days).

use crate::sealed::Sealed;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! task_types {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// `task_type`: names the endpoint (and option) that created the task.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum TaskType {
            $(#[serde(rename = $name)] $variant,)+
        }

        impl TaskType {
            pub const ALL: &'static [TaskType] = &[$(TaskType::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(TaskType::$variant => $name,)+ }
            }
        }
    };
}

task_types! {
    Imagine => "imagine",
    Upscale1x => "upscale-1x",
    UpscaleSubtle => "upscale-subtle",
    UpscaleCreative => "upscale-creative",
    Upscale2x => "upscale-2x",
    Upscale4x => "upscale-4x",
    Variation1 => "variation-1",
    Variation2 => "variation-2",
    Variation3 => "variation-3",
    Variation4 => "variation-4",
    VariationStrong => "variation-strong",
    VariationSubtle => "variation-subtle",
    Reroll => "reroll",
    PanUp => "pan-up",
    PanDown => "pan-down",
    PanLeft => "pan-left",
    PanRight => "pan-right",
    Blend => "blend",
    Describe => "describe",
    Faceswap => "faceswap",
    ImagineVideo => "imagine-video",
    ImagineVideoExtend => "imagine-video-extend",
    Inpaint => "inpaint",
    Outpaint => "outpaint",
}

/// The shape of a task's result (reference: "Result fields by kind").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    /// `original_image_url` plus four `image_urls`.
    Grid,
    /// One `image_url`.
    Single,
    /// Four `video_urls`.
    Video,
    /// `content` (four prompts), echoing `image_url`.
    Describe,
}

impl TaskType {
    pub fn parse(s: &str) -> Option<TaskType> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// The result shape for a Midjourney-family task of this type (models outside the
    /// family always give a single image).
    pub fn result_kind(self) -> ResultKind {
        use TaskType::*;
        match self {
            Imagine | Variation1 | Variation2 | Variation3 | Variation4 | VariationStrong
            | VariationSubtle | Reroll | PanUp | PanDown | PanLeft | PanRight | Blend | Inpaint
            | Outpaint => ResultKind::Grid,
            Upscale1x | UpscaleSubtle | UpscaleCreative | Upscale2x | Upscale4x | Faceswap => {
                ResultKind::Single
            }
            ImagineVideo | ImagineVideoExtend => ResultKind::Video,
            Describe => ResultKind::Describe,
        }
    }

    pub fn is_upscale_1x(self) -> bool {
        self == TaskType::Upscale1x
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Staged,
    Pending,
    Starting,
    Processing,
    Finished,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Staged => "staged",
            TaskStatus::Pending => "pending",
            TaskStatus::Starting => "starting",
            TaskStatus::Processing => "processing",
            TaskStatus::Finished => "finished",
            TaskStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        [
            TaskStatus::Staged,
            TaskStatus::Pending,
            TaskStatus::Starting,
            TaskStatus::Processing,
            TaskStatus::Finished,
            TaskStatus::Failed,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Finished | TaskStatus::Failed)
    }

    /// Order along the lifecycle; both terminal states rank last.
    fn rank(self) -> u8 {
        match self {
            TaskStatus::Staged => 0,
            TaskStatus::Pending => 1,
            TaskStatus::Starting => 2,
            TaskStatus::Processing => 3,
            TaskStatus::Finished | TaskStatus::Failed => 4,
        }
    }
}

/// What a finished task produced (sealed in the event: generated content belongs to the
/// prompt's owner and goes with the prompts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub video_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<String>,
}

impl TaskResult {
    /// Images (or videos) delivered, for `total_images`.
    pub fn image_count(&self) -> u32 {
        let n = self.image_urls.len() + self.video_urls.len();
        if n > 0 {
            n as u32
        } else if self.original_image_url.is_some() {
            // A grid whose four images could not be linked separately still holds four.
            4
        } else {
            u32::from(self.image_url.is_some() && self.content.is_empty())
        }
    }
}

/// Where and how to tell the client about the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookTarget {
    pub url: String,
    /// Sent back verbatim in `x-webhook-secret`, so it cannot be hashed; it is sealed.
    pub secret: Option<String>,
}

/// Why a task failed; the human-readable `error` is sealed beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailCause {
    /// The provider refused the submission (queue full, banned prompt, validation...).
    Rejected,
    /// The provider accepted it and later reported failure.
    UpstreamFailed,
    /// The provider could not be reached or answered garbage.
    Unreachable,
    /// No result within the configured time.
    TimedOut,
    /// An input (image to download) was unusable.
    BadInput,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub account_id: Uuid,
    pub key_id: Uuid,
    pub task_type: TaskType,
    /// `imagine`'s model, or the action's family (`midjourney`).
    pub model: String,
    pub provider: String,
    pub credits: u64,
    pub result_kind: ResultKind,
    pub parent_task_id: Option<Uuid>,
    /// Prompt and generation parameters as the client sent them.
    pub params: Sealed<serde_json::Value>,
    pub webhook: Option<Sealed<WebhookTarget>>,
    /// HMAC of the per-task secret in the upstream notifyHook URL.
    pub notify_token_hash: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TaskCommand {
    Create {
        spec: Box<TaskSpec>,
        at: DateTime<Utc>,
    },
    MarkSubmitted {
        upstream_id: String,
        at: DateTime<Utc>,
    },
    RecordProgress {
        status: TaskStatus,
        percentage: u8,
        at: DateTime<Utc>,
    },
    Finish {
        result: Sealed<TaskResult>,
        images: u32,
        /// Upstream action ids (`customId`s) children of this task are submitted with.
        buttons: Vec<String>,
        at: DateTime<Utc>,
    },
    Fail {
        cause: FailCause,
        error: Sealed<String>,
        at: DateTime<Utc>,
    },
    RecordWebhookAttempt {
        attempt: u32,
        status: Option<u16>,
        /// Transport error or refusal, when there was no HTTP status.
        error: Option<String>,
        delivered: bool,
        next_attempt_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// A takedown case was actioned: the result URLs are shown nowhere any more.
    TakeDown { case_id: Uuid, at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskEvent {
    TaskCreated {
        spec: Box<TaskSpec>,
        at: DateTime<Utc>,
    },
    TaskSubmitted {
        upstream_id: String,
        at: DateTime<Utc>,
    },
    TaskProgressed {
        status: TaskStatus,
        percentage: u8,
        at: DateTime<Utc>,
    },
    TaskFinished {
        result: Sealed<TaskResult>,
        images: u32,
        buttons: Vec<String>,
        at: DateTime<Utc>,
    },
    TaskFailed {
        cause: FailCause,
        error: Sealed<String>,
        at: DateTime<Utc>,
    },
    WebhookAttempted {
        attempt: u32,
        status: Option<u16>,
        error: Option<String>,
        delivered: bool,
        next_attempt_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    ResultsTakenDown {
        case_id: Uuid,
        at: DateTime<Utc>,
    },
}

crate::domain_event!(TaskEvent, "1", {
    TaskCreated, TaskSubmitted, TaskProgressed, TaskFinished, TaskFailed, WebhookAttempted,
    ResultsTakenDown
});

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TaskError {
    #[error("task already exists")]
    AlreadyExists,
    #[error("no such task")]
    Unknown,
    #[error("task was already submitted upstream as {0}")]
    AlreadySubmitted(String),
    #[error("webhook attempt {got} out of order (expected {expected})")]
    AttemptOutOfOrder { expected: u32, got: u32 },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Task {
    pub spec: Option<Box<TaskSpec>>,
    pub status: Option<TaskStatus>,
    pub percentage: u8,
    pub upstream_id: Option<String>,
    pub result: Option<Sealed<TaskResult>>,
    pub images: u32,
    pub buttons: Vec<String>,
    pub error: Option<Sealed<String>>,
    pub cause: Option<FailCause>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub webhook_attempts: u32,
    pub webhook_delivered: bool,
    pub next_webhook_at: Option<DateTime<Utc>>,
    /// Set by a takedown: result URLs are withheld everywhere.
    pub taken_down: bool,
}

impl Task {
    pub fn status(&self) -> TaskStatus {
        self.status.unwrap_or(TaskStatus::Staged)
    }

    pub fn exists(&self) -> bool {
        self.spec.is_some()
    }

    pub fn is_terminal(&self) -> bool {
        self.status().is_terminal()
    }

    /// The task belongs to `account` (anything else behaves as unknown).
    pub fn owned_by(&self, account: Uuid) -> bool {
        self.spec.as_ref().is_some_and(|s| s.account_id == account)
    }

    /// The parent's upstream button whose `customId` contains `needle`.
    pub fn button(&self, needle: &str) -> Option<&str> {
        self.buttons
            .iter()
            .map(String::as_str)
            .find(|b| b.contains(needle))
    }

    /// Webhook delivery still owed: the task ended, it has a destination, and no attempt
    /// succeeded or the attempts are not used up.
    pub fn webhook_owed(&self) -> bool {
        self.is_terminal()
            && self.spec.as_ref().is_some_and(|s| s.webhook.is_some())
            && !self.webhook_delivered
            && (self.webhook_attempts == 0 || self.next_webhook_at.is_some())
    }
}

impl Aggregate for Task {
    const TYPE: &'static str = "task";
    type Command = TaskCommand;
    type Event = TaskEvent;
    type Error = TaskError;
    type Services = ();

    async fn handle(
        &mut self,
        command: TaskCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), TaskError> {
        if !self.exists() && !matches!(command, TaskCommand::Create { .. }) {
            return Err(TaskError::Unknown);
        }
        let event = match command {
            TaskCommand::Create { spec, at } => {
                if self.exists() {
                    return Err(TaskError::AlreadyExists);
                }
                TaskEvent::TaskCreated { spec, at }
            }
            TaskCommand::MarkSubmitted { upstream_id, at } => {
                match &self.upstream_id {
                    Some(id) if *id == upstream_id => return Ok(()),
                    Some(id) => return Err(TaskError::AlreadySubmitted(id.clone())),
                    None if self.is_terminal() => return Ok(()),
                    None => {}
                }
                TaskEvent::TaskSubmitted { upstream_id, at }
            }
            TaskCommand::RecordProgress {
                status,
                percentage,
                at,
            } => {
                let current = self.status();
                let forward = status.rank() > current.rank()
                    || (status.rank() == current.rank() && percentage > self.percentage);
                if status.is_terminal() || current.is_terminal() || !forward {
                    return Ok(());
                }
                TaskEvent::TaskProgressed {
                    status,
                    percentage: percentage.min(99).max(self.percentage),
                    at,
                }
            }
            TaskCommand::Finish {
                result,
                images,
                buttons,
                at,
            } => {
                if self.is_terminal() {
                    return Ok(());
                }
                TaskEvent::TaskFinished {
                    result,
                    images,
                    buttons,
                    at,
                }
            }
            TaskCommand::Fail { cause, error, at } => {
                if self.is_terminal() {
                    return Ok(());
                }
                TaskEvent::TaskFailed { cause, error, at }
            }
            TaskCommand::RecordWebhookAttempt {
                attempt,
                status,
                error,
                delivered,
                next_attempt_at,
                at,
            } => {
                if attempt <= self.webhook_attempts || self.webhook_delivered {
                    // A second worker's late write of an attempt already recorded.
                    return Ok(());
                }
                if attempt != self.webhook_attempts + 1 {
                    return Err(TaskError::AttemptOutOfOrder {
                        expected: self.webhook_attempts + 1,
                        got: attempt,
                    });
                }
                TaskEvent::WebhookAttempted {
                    attempt,
                    status,
                    error,
                    delivered,
                    next_attempt_at,
                    at,
                }
            }
            TaskCommand::TakeDown { case_id, at } => {
                if self.taken_down {
                    return Ok(());
                }
                TaskEvent::ResultsTakenDown { case_id, at }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: TaskEvent) {
        match event {
            TaskEvent::TaskCreated { spec, at } => {
                self.spec = Some(spec);
                self.status = Some(TaskStatus::Staged);
                self.created_at = Some(at);
                self.updated_at = Some(at);
            }
            TaskEvent::TaskSubmitted { upstream_id, at } => {
                self.upstream_id = Some(upstream_id);
                if self.status().rank() < TaskStatus::Pending.rank() {
                    self.status = Some(TaskStatus::Pending);
                }
                self.updated_at = Some(at);
            }
            TaskEvent::TaskProgressed {
                status,
                percentage,
                at,
            } => {
                self.status = Some(status);
                self.percentage = percentage;
                self.updated_at = Some(at);
            }
            TaskEvent::TaskFinished {
                result,
                images,
                buttons,
                at,
            } => {
                self.status = Some(TaskStatus::Finished);
                self.percentage = 100;
                self.result = Some(result);
                self.images = images;
                self.buttons = buttons;
                self.updated_at = Some(at);
            }
            TaskEvent::TaskFailed { cause, error, at } => {
                self.status = Some(TaskStatus::Failed);
                self.cause = Some(cause);
                self.error = Some(error);
                self.updated_at = Some(at);
            }
            TaskEvent::WebhookAttempted {
                attempt,
                delivered,
                next_attempt_at,
                ..
            } => {
                self.webhook_attempts = attempt;
                self.webhook_delivered = delivered;
                self.next_webhook_at = next_attempt_at;
            }
            TaskEvent::ResultsTakenDown { .. } => self.taken_down = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn sealed<T>() -> Sealed<T> {
        Sealed::from_parts("k".into(), "n".into(), "c".into())
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn created() -> TaskEvent {
        TaskEvent::TaskCreated {
            spec: Box::new(TaskSpec {
                account_id: Uuid::nil(),
                key_id: Uuid::nil(),
                task_type: TaskType::Imagine,
                model: "midjourney".into(),
                provider: "midjourney".into(),
                credits: 4,
                result_kind: ResultKind::Grid,
                parent_task_id: None,
                params: sealed(),
                webhook: None,
                notify_token_hash: "h".into(),
            }),
            at: t0(),
        }
    }

    fn progressed(status: TaskStatus, percentage: u8) -> TaskEvent {
        TaskEvent::TaskProgressed {
            status,
            percentage,
            at: t0(),
        }
    }

    #[test]
    fn type_names_are_the_reference_names() {
        assert_eq!(TaskType::Upscale1x.as_str(), "upscale-1x");
        assert_eq!(
            TaskType::ImagineVideoExtend.as_str(),
            "imagine-video-extend"
        );
        assert_eq!(TaskType::parse("pan-left"), Some(TaskType::PanLeft));
        assert_eq!(TaskType::parse("pan"), None);
    }

    #[test]
    fn progress_never_moves_backwards() {
        TestFramework::<Task>::with(())
            .given(vec![created(), progressed(TaskStatus::Processing, 45)])
            .when(TaskCommand::RecordProgress {
                status: TaskStatus::Processing,
                percentage: 10,
                at: t0(),
            })
            .then_expect_events(vec![]);
        TestFramework::<Task>::with(())
            .given(vec![created(), progressed(TaskStatus::Processing, 45)])
            .when(TaskCommand::RecordProgress {
                status: TaskStatus::Pending,
                percentage: 90,
                at: t0(),
            })
            .then_expect_events(vec![]);
        TestFramework::<Task>::with(())
            .given(vec![created(), progressed(TaskStatus::Processing, 45)])
            .when(TaskCommand::RecordProgress {
                status: TaskStatus::Processing,
                percentage: 90,
                at: t0(),
            })
            .then_expect_events(vec![progressed(TaskStatus::Processing, 90)]);
    }

    #[test]
    fn a_finished_task_never_changes() {
        let finished = TaskEvent::TaskFinished {
            result: sealed(),
            images: 4,
            buttons: vec![],
            at: t0(),
        };
        for cmd in [
            TaskCommand::Fail {
                cause: FailCause::TimedOut,
                error: sealed(),
                at: t0(),
            },
            TaskCommand::Finish {
                result: sealed(),
                images: 4,
                buttons: vec![],
                at: t0(),
            },
            TaskCommand::RecordProgress {
                status: TaskStatus::Processing,
                percentage: 50,
                at: t0(),
            },
        ] {
            TestFramework::<Task>::with(())
                .given(vec![created(), finished.clone()])
                .when(cmd)
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn unknown_tasks_take_no_commands_and_submission_is_once() {
        TestFramework::<Task>::with(())
            .given_no_previous_events()
            .when(TaskCommand::MarkSubmitted {
                upstream_id: "1".into(),
                at: t0(),
            })
            .then_expect_error(TaskError::Unknown);
        let submitted = TaskEvent::TaskSubmitted {
            upstream_id: "1".into(),
            at: t0(),
        };
        TestFramework::<Task>::with(())
            .given(vec![created(), submitted.clone()])
            .when(TaskCommand::MarkSubmitted {
                upstream_id: "2".into(),
                at: t0(),
            })
            .then_expect_error(TaskError::AlreadySubmitted("1".into()));
    }

    #[test]
    fn webhook_attempts_are_recorded_once_each() {
        let attempt = |n| TaskCommand::RecordWebhookAttempt {
            attempt: n,
            status: Some(500),
            error: None,
            delivered: false,
            next_attempt_at: Some(t0()),
            at: t0(),
        };
        let recorded = TaskEvent::WebhookAttempted {
            attempt: 1,
            status: Some(500),
            error: None,
            delivered: false,
            next_attempt_at: Some(t0()),
            at: t0(),
        };
        TestFramework::<Task>::with(())
            .given(vec![created(), recorded.clone()])
            .when(attempt(1))
            .then_expect_events(vec![]);
        TestFramework::<Task>::with(())
            .given(vec![created(), recorded])
            .when(attempt(3))
            .then_expect_error(TaskError::AttemptOutOfOrder {
                expected: 2,
                got: 3,
            });
    }
}
