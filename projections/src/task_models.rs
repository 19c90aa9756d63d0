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
    /// Creations and submissions, two of every accepted task's events, are gathered and
    /// written one statement per kind: row by row they cost two round trips per task, each
    /// more of the database's CPU than the row it carries (docs/performance.md). Any other
    /// event first writes what is gathered, creations before submissions, so each task's
    /// rows change in its stream's order (a task's creation is its stream's first event).
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        let mut gathered = Gathered::default();
        for e in events {
            // Each event is decoded once. Other streams' events (ledgers, usage: most of a
            // batch) change nothing here and do not cut the gathering short.
            let Some(change) = change_of(e).with_context(|| e.what())? else {
                continue;
            };
            match change {
                Change::Task(TaskEvent::TaskCreated { spec, at }) => {
                    gathered.created.push(CreatedRow {
                        task_id: e.aggregate_id.clone(),
                        account_id: spec.account_id.to_string(),
                        task_type: spec.task_type.as_str(),
                        model: spec.model,
                        credits: spec.credits as i64,
                        at: ms(at),
                        webhook: spec
                            .webhook
                            .as_ref()
                            .map(|_| WebhookState::Pending.as_str()),
                    })
                }
                Change::Task(TaskEvent::TaskSubmitted { at, .. }) => {
                    gathered.submitted.push((e.aggregate_id.clone(), ms(at)))
                }
                other => {
                    gathered.write(conn).await?;
                    self.apply_change(conn, &e.aggregate_id, other)
                        .await
                        .with_context(|| e.what())?;
                }
            }
            if gathered.len() >= TASK_ROWS_PER_STATEMENT {
                gathered.write(conn).await?;
            }
        }
        gathered.write(conn).await
    }
}

/// What an event asks of the task read models.
enum Change {
    /// `AccountErased`: the account's rows go.
    Forget(String),
    /// The retention run's `TaskLogsTrimmed`: task rows created before this (epoch ms) go.
    Trim(i64),
    /// An event of a task's own stream.
    Task(TaskEvent),
}

/// `None` for an event that changes nothing here (another stream's, or a task event this
/// version does not know).
fn change_of(e: &StoredEvent) -> Result<Option<Change>> {
    if let Some(account) = erased_account(e) {
        return Ok(Some(Change::Forget(account.to_string())));
    }
    if let Some(before) = trimmed_before(e)? {
        return Ok(Some(Change::Trim(before)));
    }
    if e.aggregate_type != Task::TYPE {
        return Ok(None);
    }
    Ok(e.decode_known::<TaskEvent>()?.map(Change::Task))
}

/// Rows per statement of the gathered task writes.
const TASK_ROWS_PER_STATEMENT: usize = 500;

/// A new task's row in `rm_tasks`.
struct CreatedRow {
    task_id: String,
    account_id: String,
    task_type: &'static str,
    model: String,
    credits: i64,
    at: i64,
    webhook: Option<&'static str>,
}

/// Task creations and submissions waiting to be written (see `Tasks::apply`).
#[derive(Default)]
struct Gathered {
    created: Vec<CreatedRow>,
    /// (task id, submitted at)
    submitted: Vec<(String, i64)>,
}

impl Gathered {
    fn len(&self) -> usize {
        self.created.len().max(self.submitted.len())
    }

    /// Writes and empties what is gathered: creations first, then submissions.
    async fn write(&mut self, conn: &mut AnyConnection) -> Result<()> {
        if !self.created.is_empty() {
            let values = crate::read_models::row_placeholders(self.created.len(), 7);
            let sql = format!(
                "INSERT INTO rm_tasks (task_id, account_id, task_type, model, credits, created_at,
                                       webhook, status, percentage, updated_at)
                 SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6,
                        v.column7, 'staged', 0, v.column6
                 FROM (VALUES {values}) AS v
                 WHERE true ON CONFLICT (task_id) DO NOTHING"
            );
            let mut q = sqlx::query(&sql);
            for r in self.created.drain(..) {
                q = q
                    .bind(r.task_id)
                    .bind(r.account_id)
                    .bind(r.task_type)
                    .bind(r.model)
                    .bind(r.credits)
                    .bind(r.at)
                    .bind(r.webhook);
            }
            q.execute(&mut *conn).await?;
        }
        if !self.submitted.is_empty() {
            // Rows found by the primary key (`IN`) rather than joined to a `VALUES` list,
            // which read more of `rm_tasks` in sequential scans while the table was young
            // (docs/performance.md).
            let n = self.submitted.len();
            let cases: String = (0..n)
                .map(|i| format!(" WHEN ${} THEN ${}", 2 * i + 1, 2 * i + 2))
                .collect();
            let ids: Vec<String> = (0..n).map(|i| format!("${}", 2 * i + 1)).collect();
            let sql = format!(
                "UPDATE rm_tasks SET status = 'pending', updated_at = CASE task_id{cases} END
                 WHERE task_id IN ({}) AND status = 'staged'",
                ids.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for (task_id, at) in self.submitted.drain(..) {
                q = q.bind(task_id).bind(at);
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

impl Tasks {
    /// Applies one change other than a creation or a submission (those are gathered).
    async fn apply_change(&self, conn: &mut AnyConnection, id: &str, change: Change) -> Result<()> {
        let event = match change {
            Change::Forget(account) => {
                return forget(conn, &["rm_tasks", "rm_image_totals"], &account).await;
            }
            Change::Trim(before) => {
                // `rm_image_totals` is a running total over the account's life, not a log
                // row: it stays.
                sqlx::query("DELETE FROM rm_tasks WHERE created_at < $1")
                    .bind(before)
                    .execute(&mut *conn)
                    .await?;
                return Ok(());
            }
            Change::Task(event) => event,
        };
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
            // Gathered by `Tasks::apply`.
            TaskEvent::TaskCreated { .. } | TaskEvent::TaskSubmitted { .. } => {}
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
