//! Read models for tasks and the usage log. They hold ids, types, states and counts (no
//! prompts, results or addresses: those stay sealed in the events). Each deletes the
//! subject's rows on `AccountErased`, and deletes the rows past the 90-day term when it
//! applies the retention run's `TaskLogsTrimmed` (the run itself writes no read model, so a
//! rebuild trims at the same point of the history as live catch-up did).

use crate::events::StoredEvent;
use crate::read_models::{erased_account, ms};
use crate::runner::Projection;
use anyhow::{Context, Result};
use async_trait::async_trait;
use cqrs_es::Aggregate;
use journey_domain::retention_log::{RetentionEvent, RetentionRun};
use journey_domain::task::{Task, TaskEvent, TaskStatus};
use journey_domain::usage::{account_of, UsageDay, UsageEvent};
use sqlx::AnyConnection;

async fn forget(conn: &mut AnyConnection, tables: &[&str], account: &str) -> Result<()> {
    for t in tables {
        sqlx::query(&format!("DELETE FROM {t} WHERE account_id = $1"))
            .bind(account)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The cut-off (epoch ms) of a retention run's `TaskLogsTrimmed`, if this is one.
fn trimmed_before(e: &StoredEvent) -> Result<Option<i64>> {
    if e.aggregate_type != RetentionRun::TYPE {
        return Ok(None);
    }
    Ok(match e.decode_known::<RetentionEvent>()? {
        Some(RetentionEvent::TaskLogsTrimmed { before }) => Some(ms(before)),
        _ => None,
    })
}

/// A task's customer webhook as the holder's task list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookState {
    /// Not attempted yet (the task has not ended).
    Pending,
    /// An attempt failed; another is scheduled.
    Retrying,
    Delivered,
    /// Refused (an address we do not deliver to) or given up after the last attempt.
    Undeliverable,
}

impl WebhookState {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookState::Pending => "pending",
            WebhookState::Retrying => "retrying",
            WebhookState::Delivered => "delivered",
            WebhookState::Undeliverable => "undeliverable",
        }
    }
}

/// `rm_tasks` (the holder's task list) and `rm_image_totals` (`total_images`).
pub struct Tasks;

#[async_trait]
impl Projection for Tasks {
    fn name(&self) -> &'static str {
        "tasks"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_tasks", "rm_image_totals"]
    }
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        for e in events {
            self.apply_one(conn, e).await.with_context(|| e.what())?;
        }
        Ok(())
    }
}

impl Tasks {
    async fn apply_one(&self, conn: &mut AnyConnection, e: &StoredEvent) -> Result<()> {
        if let Some(account) = erased_account(e) {
            return forget(conn, &["rm_tasks", "rm_image_totals"], account).await;
        }
        if let Some(before) = trimmed_before(e)? {
            // `rm_image_totals` is a running total over the account's life, not a log row:
            // it stays.
            sqlx::query("DELETE FROM rm_tasks WHERE created_at < $1")
                .bind(before)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
        if e.aggregate_type != Task::TYPE {
            return Ok(());
        }
        let Some(event) = e.decode_known::<TaskEvent>()? else {
            return Ok(());
        };
        let id = e.aggregate_id.as_str();
        let set_status = |status: TaskStatus, percentage: u8, at| {
            sqlx::query(
                "UPDATE rm_tasks SET status = $1, percentage = $2, updated_at = $3 WHERE task_id = $4",
            )
            .bind(status.as_str())
            .bind(i64::from(percentage))
            .bind(ms(at))
            .bind(id.to_string())
        };
        match event {
            TaskEvent::TaskCreated { spec, at } => {
                sqlx::query(
                    "INSERT INTO rm_tasks (task_id, account_id, task_type, model, status, percentage,
                                           credits, created_at, updated_at, webhook)
                     VALUES ($1, $2, $3, $4, 'staged', 0, $5, $6, $6, $7) ON CONFLICT (task_id) DO NOTHING",
                )
                .bind(id)
                .bind(spec.account_id.to_string())
                .bind(spec.task_type.as_str())
                .bind(&spec.model)
                .bind(spec.credits as i64)
                .bind(ms(at))
                .bind(spec.webhook.as_ref().map(|_| WebhookState::Pending.as_str()))
                .execute(&mut *conn)
                .await?;
            }
            TaskEvent::TaskSubmitted { at, .. } => {
                sqlx::query(
                    "UPDATE rm_tasks SET status = 'pending', updated_at = $1
                     WHERE task_id = $2 AND status = 'staged'",
                )
                .bind(ms(at))
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            TaskEvent::TaskProgressed {
                status,
                percentage,
                at,
            } => {
                set_status(status, percentage, at)
                    .execute(&mut *conn)
                    .await?;
            }
            TaskEvent::TaskFinished { images, at, .. } => {
                set_status(TaskStatus::Finished, 100, at)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("UPDATE rm_tasks SET images = $1 WHERE task_id = $2")
                    .bind(i64::from(images))
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                let account: Option<(String,)> =
                    sqlx::query_as("SELECT account_id FROM rm_tasks WHERE task_id = $1")
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?;
                if let Some((account,)) = account {
                    sqlx::query(
                        "INSERT INTO rm_image_totals (account_id, total_images) VALUES ($1, $2)
                         ON CONFLICT (account_id) DO UPDATE
                         SET total_images = rm_image_totals.total_images + $2",
                    )
                    .bind(account)
                    .bind(i64::from(images))
                    .execute(&mut *conn)
                    .await?;
                }
            }
            TaskEvent::TaskFailed { at, .. } => {
                sqlx::query(
                    "UPDATE rm_tasks SET status = 'failed', updated_at = $1 WHERE task_id = $2",
                )
                .bind(ms(at))
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            TaskEvent::WebhookAttempted {
                attempt,
                error,
                delivered,
                next_attempt_at,
                status,
                ..
            } => {
                let state = match (delivered, next_attempt_at) {
                    (true, _) => WebhookState::Delivered,
                    (false, Some(_)) => WebhookState::Retrying,
                    (false, None) => WebhookState::Undeliverable,
                };
                let error = match (error, status) {
                    (Some(e), _) => Some(e),
                    (None, Some(s)) if !delivered => Some(format!("HTTP {s}")),
                    _ => None,
                };
                sqlx::query(
                    "UPDATE rm_tasks SET webhook = $1, webhook_attempts = $2, webhook_error = $3
                     WHERE task_id = $4",
                )
                .bind(state.as_str())
                .bind(i64::from(attempt))
                .bind(error)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            TaskEvent::ResultsTakenDown { .. } => {}
        }
        Ok(())
    }
}

/// `rm_usage`: one row per recorded API request.
pub struct Usage;

#[async_trait]
impl Projection for Usage {
    fn name(&self) -> &'static str {
        "usage"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_usage"]
    }
    /// Set-based: the batch's records go out `USAGE_ROWS_PER_STATEMENT` per statement; an
    /// erasure or a trimming in the batch first writes what came before it, so the rows
    /// end as if the events were applied one by one.
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        let mut pending: Vec<UsageRow> = Vec::new();
        for e in events {
            if let Some(account) = erased_account(e) {
                write_usage(conn, &mut pending).await?;
                forget(conn, &["rm_usage"], account).await?;
                continue;
            }
            if let Some(before) = trimmed_before(e).with_context(|| e.what())? {
                write_usage(conn, &mut pending).await?;
                sqlx::query("DELETE FROM rm_usage WHERE at < $1")
                    .bind(before)
                    .execute(&mut *conn)
                    .await?;
                continue;
            }
            if let Some(row) = usage_row(e).with_context(|| e.what())? {
                pending.push(row);
                if pending.len() >= USAGE_ROWS_PER_STATEMENT {
                    write_usage(conn, &mut pending).await?;
                }
            }
        }
        write_usage(conn, &mut pending).await
    }
}

/// One `rm_usage` row waiting to be written.
struct UsageRow {
    position: i64,
    account: String,
    day: String,
    at: i64,
    endpoint: String,
    status: i64,
    credits: i64,
    task: Option<String>,
}

/// 8 values a row.
const USAGE_ROWS_PER_STATEMENT: usize = 500;

/// The row an `ApiRequestRecorded` adds (none for any other event).
fn usage_row(e: &StoredEvent) -> Result<Option<UsageRow>> {
    if e.aggregate_type != UsageDay::TYPE {
        return Ok(None);
    }
    let Some(UsageEvent::ApiRequestRecorded(r)) = e.decode_known::<UsageEvent>()? else {
        return Ok(None);
    };
    let Some(account) = account_of(&e.aggregate_id) else {
        return Ok(None);
    };
    Ok(Some(UsageRow {
        position: e.cursor.position,
        account: account.to_string(),
        day: r.at.format("%Y-%m-%d").to_string(),
        at: ms(r.at),
        endpoint: r.endpoint,
        status: i64::from(r.status),
        credits: r.credits as i64,
        task: r.task_id.map(|t| t.to_string()),
    }))
}

/// Writes and empties `pending`; a row already there (same position) is left as it is.
async fn write_usage(conn: &mut AnyConnection, pending: &mut Vec<UsageRow>) -> Result<()> {
    for chunk in pending.chunks(USAGE_ROWS_PER_STATEMENT) {
        let values = crate::read_models::row_placeholders(chunk.len(), 8);
        let sql = format!(
            "INSERT INTO rm_usage (position, account_id, day, at, endpoint, status, credits, task_id)
             VALUES {values} ON CONFLICT (position) DO NOTHING"
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(r.position)
                .bind(r.account.as_str())
                .bind(r.day.as_str())
                .bind(r.at)
                .bind(r.endpoint.as_str())
                .bind(r.status)
                .bind(r.credits)
                .bind(r.task.as_deref());
        }
        q.execute(&mut *conn).await?;
    }
    pending.clear();
    Ok(())
}
