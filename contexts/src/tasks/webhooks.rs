//! Customer webhooks: when a task ends, the task object (exactly what `/fetch` returns)
//! is POSTed to the client's `webhook_url`, with `x-webhook-secret` when one was given and
//! `x-webhook-delivery` (the task id) and `x-webhook-attempt`. Delivery is at least once:
//! an instance that dies after sending but before recording the attempt leaves it to be
//! sent again by the next.
//! Non-2xx answers and timeouts are retried with exponential backoff; each attempt is a
//! `WebhookAttempted` event. Destinations go through the address guard, which checks
//! every connection (redirects included) and refuses private, loopback, link-local and
//! metadata addresses; a refused destination is not retried.

use super::Tasks;
use crate::error::ServiceError;
use chrono::{DateTime, Duration, Utc};
use journey_commands::net_guard::refused_by_guard;
use journey_domain::meta::CommandMeta;
use journey_domain::task::{Task, TaskCommand, WebhookTarget};
use journey_domain::Opened;
use uuid::Uuid;

/// Waits after failed attempt 1, 2, …: attempts go out at about 0, 1, 4, 13, 33 and 63
/// minutes, six in all over a little more than an hour.
const BACKOFF_SECS: [i64; 5] = [60, 180, 540, 1200, 1800];
pub const MAX_ATTEMPTS: u32 = BACKOFF_SECS.len() as u32 + 1;
/// The notification's id (the task id), the same on every attempt and redelivery.
pub const DELIVERY_HEADER: &str = "x-webhook-delivery";
/// 1 for the first attempt, 2 for the first retry, ...
pub const ATTEMPT_HEADER: &str = "x-webhook-attempt";

impl Tasks<'_> {
    /// Makes the next due delivery attempt. Returns when the task needs attention again,
    /// or `None` when nothing more is owed (delivered, abandoned, or no webhook).
    pub(crate) async fn deliver_webhook(
        &self,
        task_id: Uuid,
        task: &Task,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, ServiceError> {
        if !task.webhook_owed() {
            return Ok(None);
        }
        if let Some(next) = task.next_webhook_at.filter(|n| *n > now) {
            return Ok(Some(next));
        }
        let Some(sealed) = task.spec.as_ref().and_then(|s| s.webhook.as_ref()) else {
            return Ok(None);
        };
        let attempt = task.webhook_attempts + 1;
        let target: WebhookTarget = match self.vault.open(sealed).await? {
            Opened::Value(t) => t,
            // Erased with its owner's data: nowhere to deliver to.
            Opened::Erased => {
                self.record_attempt(
                    task_id,
                    attempt,
                    None,
                    Some("destination erased".into()),
                    false,
                    None,
                    now,
                )
                .await?;
                return Ok(None);
            }
        };
        let body = self.task_object(task_id, task).await?;
        // One notification per task: every attempt, and a redelivery by another instance
        // after a crash, carries the same delivery id for the client to deduplicate on.
        let mut request = self
            .webhook_client
            .post(&target.url)
            .header(DELIVERY_HEADER, task_id.to_string())
            .header(ATTEMPT_HEADER, attempt.to_string())
            .json(&body);
        if let Some(secret) = &target.secret {
            request = request.header("x-webhook-secret", secret);
        }
        let checked = self.guard.check_url(&target.url);
        let (status, error, refused) = match checked {
            Err(e) => (None, Some(e.to_string()), true),
            // Errors are recorded without their URL: the destination is personal data and
            // stays sealed in the task.
            Ok(_) => match request.send().await {
                Ok(resp) => (Some(resp.status().as_u16()), None, false),
                Err(e) if refused_by_guard(&e) => (
                    None,
                    Some(format!("refused: {}", root_cause(&e.without_url()))),
                    true,
                ),
                Err(e) if e.is_timeout() => (None, Some("timed out".to_string()), false),
                Err(e) => (
                    None,
                    Some(format!(
                        "could not connect: {}",
                        root_cause(&e.without_url())
                    )),
                    false,
                ),
            },
        };
        journey_commands::fault::crash_point("webhook.sent");
        let delivered = status.is_some_and(|s| (200..300).contains(&s));
        let next = if delivered || refused || attempt >= MAX_ATTEMPTS {
            None
        } else {
            Some(now + Duration::seconds(BACKOFF_SECS[(attempt - 1) as usize]))
        };
        metrics::counter!("journey_webhook_attempts_total", "delivered" => delivered.to_string())
            .increment(1);
        self.record_attempt(task_id, attempt, status, error, delivered, next, now)
            .await?;
        Ok(next)
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_attempt(
        &self,
        task_id: Uuid,
        attempt: u32,
        status: Option<u16>,
        error: Option<String>,
        delivered: bool,
        next_attempt_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let cmd = TaskCommand::RecordWebhookAttempt {
            attempt,
            status,
            error,
            delivered,
            next_attempt_at,
            at: now,
        };
        self.task_command(task_id, cmd, &CommandMeta::system(now))
            .await?;
        Ok(())
    }
}

/// The innermost cause of an error: the useful part ("dns error", "connection refused").
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
