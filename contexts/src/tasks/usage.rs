//! The API usage log (privacy policy: time, endpoint, status, credits, task, client IP —
//! 90 days) and the holder's views of it: `GET /v1/usage` and `GET /v1/tasks`.

use super::Tasks;
use crate::error::ServiceError;
use crate::identity::{from_ms, Ctx};
use chrono::{DateTime, NaiveDate, Utc};
use journey_domain::meta::{Actor, CommandMeta};
use journey_domain::usage::ApiRequest;
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;
use uuid::Uuid;

/// Set by API-key authentication: whose request this is.
#[derive(Debug, Clone, Copy)]
pub struct ApiUsage {
    pub account_id: Uuid,
    pub key_id: Uuid,
}

/// Set by task-creating handlers: what the request charged and created.
#[derive(Debug, Clone, Copy)]
pub struct UsageCharge {
    pub credits: u64,
    pub task_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageEntry {
    pub at: DateTime<Utc>,
    pub endpoint: String,
    pub status: u16,
    pub credits: i64,
    pub task_id: Option<String>,
    /// Pass as `before` for the next (older) page.
    pub cursor: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageDayTotal {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub requests: i64,
    pub credits: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsagePage {
    pub entries: Vec<UsageEntry>,
    /// Totals per UTC day over the whole `from`..`to` range (not only this page).
    pub days: Vec<UsageDayTotal>,
    pub next_before: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskSummary {
    pub task_id: String,
    pub task_type: String,
    pub model: String,
    pub status: String,
    pub percentage: String,
    pub credits: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The customer webhook, when the task was created with a `webhook_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSummary>,
    /// Pass as `before` for the next (older) page: `<created_at ms>_<task id>`.
    pub cursor: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookSummary {
    /// `pending` (the task has not ended), `retrying`, `delivered`, or `undeliverable`
    /// (refused destination, or given up after the last attempt).
    #[schema(example = "undeliverable")]
    pub state: String,
    pub attempts: i64,
    /// The last failed attempt's error (HTTP status or transport error; never the URL).
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    pub tasks: Vec<TaskSummary>,
    pub next_before: Option<String>,
}

/// `from`/`to` query values: a date (`2026-11-24`) or an RFC 3339 instant.
pub fn parse_instant(field: &str, v: &str) -> Result<DateTime<Utc>, ServiceError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .ok_or_else(|| {
            ServiceError::bad(format!(
                "{field} must be a date (YYYY-MM-DD) or an RFC 3339 time"
            ))
        })
}

impl Tasks<'_> {
    /// Appends one request to the owner's usage log for the day.
    pub async fn record_usage(
        &self,
        who: ApiUsage,
        charge: Option<UsageCharge>,
        endpoint: &str,
        status: u16,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let client_ip = self.identity().sealed_ip(ctx, who.account_id).await?;
        let record = ApiRequest {
            key_id: who.key_id,
            endpoint: endpoint.to_string(),
            status,
            credits: charge.map(|c| c.credits).unwrap_or(0),
            task_id: charge.and_then(|c| c.task_id),
            client_ip,
            at: ctx.at,
        };
        // The IP is in the payload already; the metadata names only the actor.
        let meta = CommandMeta {
            actor: Actor::ApiKey(who.key_id),
            request_id: ctx.request_id.clone(),
            client_ip: None,
            at: ctx.at,
        };
        self.usage_log
            .record(who.account_id, record, meta)
            .await
            .map_err(|e| ServiceError::Internal(e.into()))?;
        self.runner.nudge();
        Ok(())
    }

    pub async fn usage_page(
        &self,
        account: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<UsagePage, ServiceError> {
        // This instance's records still in the buffer are written first, then read back
        // through the projection once it has applied this instance's stream of the day.
        self.usage_log
            .flush()
            .await
            .map_err(|e| ServiceError::Internal(e.into()))?;
        let stream = self.usage_log.stream_of(account, self.clock.now());
        self.identity()
            .settle::<journey_domain::usage::UsageDay>(&stream)
            .await?;
        let rows = sqlx::query(
            "SELECT position, at, endpoint, status, credits, task_id FROM rm_usage
             WHERE account_id = $1 AND at >= $2 AND at < $3 AND position < $4
             ORDER BY position DESC LIMIT $5",
        )
        .bind(account.to_string())
        .bind(from.timestamp_millis())
        .bind(to.timestamp_millis())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.db.any)
        .await?;
        let mut entries = rows
            .iter()
            .map(|r| {
                Ok(UsageEntry {
                    cursor: r.try_get(0)?,
                    at: from_ms(r.try_get(1)?),
                    endpoint: r.try_get(2)?,
                    status: r.try_get::<i64, _>(3)? as u16,
                    credits: r.try_get(4)?,
                    task_id: r.try_get(5)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let next_before = if entries.len() > limit as usize {
            entries.truncate(limit as usize);
            entries.last().map(|e| e.cursor)
        } else {
            None
        };
        let days = sqlx::query(
            "SELECT day, COUNT(*), CAST(SUM(credits) AS BIGINT) FROM rm_usage
             WHERE account_id = $1 AND at >= $2 AND at < $3 GROUP BY day ORDER BY day",
        )
        .bind(account.to_string())
        .bind(from.timestamp_millis())
        .bind(to.timestamp_millis())
        .fetch_all(&self.db.any)
        .await?
        .iter()
        .map(|r| {
            Ok(UsageDayTotal {
                day: r.try_get(0)?,
                requests: r.try_get(1)?,
                credits: r.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(UsagePage {
            entries,
            days,
            next_before,
        })
    }

    pub async fn task_page(
        &self,
        account: Uuid,
        status: Option<&str>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<TaskPage, ServiceError> {
        // Tasks created in the same millisecond are told apart by id, so no page skips one.
        let (before_ms, before_id) = match before {
            None => (i64::MAX, String::new()),
            Some(c) => c
                .split_once('_')
                .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, Uuid::parse_str(id).ok()?)))
                .map(|(ms, id)| (ms, id.to_string()))
                .ok_or_else(|| ServiceError::bad("before must be a cursor from next_before"))?,
        };
        if let Some(s) = status {
            if journey_domain::task::TaskStatus::parse(s).is_none() {
                return Err(ServiceError::bad(
                    "status must be one of staged, pending, starting, processing, finished, failed",
                ));
            }
        }
        // Many streams feed these rows: catch up rather than wait on one stream.
        self.runner.catch_up().await?;
        let rows = sqlx::query(
            "SELECT task_id, task_type, model, status, percentage, credits, created_at, updated_at,
                    webhook, webhook_attempts, webhook_error
             FROM rm_tasks WHERE account_id = $1 AND ($2 = '' OR status = $2)
               AND (created_at < $3 OR (created_at = $3 AND task_id < $4))
             ORDER BY created_at DESC, task_id DESC LIMIT $5",
        )
        .bind(account.to_string())
        .bind(status.unwrap_or(""))
        .bind(before_ms)
        .bind(before_id)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.db.any)
        .await?;
        let mut tasks = rows
            .iter()
            .map(|r| {
                let created: i64 = r.try_get(6)?;
                let task_id: String = r.try_get(0)?;
                Ok(TaskSummary {
                    cursor: format!("{created}_{task_id}"),
                    task_id,
                    task_type: r.try_get(1)?,
                    model: r.try_get(2)?,
                    status: r.try_get(3)?,
                    percentage: r.try_get::<i64, _>(4)?.to_string(),
                    credits: r.try_get(5)?,
                    created_at: from_ms(created),
                    updated_at: from_ms(r.try_get(7)?),
                    webhook: match r.try_get::<Option<String>, _>(8)? {
                        Some(state) => Some(WebhookSummary {
                            state,
                            attempts: r.try_get(9)?,
                            last_error: r.try_get(10)?,
                        }),
                        None => None,
                    },
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let next_before = if tasks.len() > limit as usize {
            tasks.truncate(limit as usize);
            tasks.last().map(|t| t.cursor.clone())
        } else {
            None
        };
        Ok(TaskPage { tasks, next_before })
    }

    /// Images (and videos) delivered to the account, ever.
    pub async fn total_images(&self, account: Uuid) -> Result<i64, ServiceError> {
        // Many streams feed these rows: catch up rather than wait on one stream.
        self.runner.catch_up().await?;
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT total_images FROM rm_image_totals WHERE account_id = $1")
                .bind(account.to_string())
                .fetch_optional(&self.db.any)
                .await?;
        Ok(row.map(|r| r.0).unwrap_or(0))
    }
}
