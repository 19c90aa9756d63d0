//! Self-service exports: `POST /v1/me/export` starts a job; when it is ready the holder gets
//! a signed download link that expires after an hour and works only in that holder's own
//! session. The document is stored sealed under the holder's account key.

use crate::app::App;
use crate::error::ServiceError;
use crate::identity::Ctx;
use chrono::{DateTime, Duration, Utc};
use journey_commands::secrets::{ct_eq, hmac_hex};
use journey_domain::DataCategory;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

/// How long a download link works after the export is ready.
pub const LINK_TTL_SECS: i64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Json,
    Html,
}

impl ExportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Json => "json",
            ExportFormat::Html => "html",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(ExportFormat::Json),
            "html" => Some(ExportFormat::Html),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Json => "application/json",
            ExportFormat::Html => "text/html; charset=utf-8",
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportJob {
    pub job_id: Uuid,
    /// `pending`, `ready` or `failed`.
    pub status: String,
    pub format: ExportFormat,
    /// Present when ready: GET it with your session before `expires_at`.
    pub download_url: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

fn sign(app: &App, job: Uuid, account: Uuid, expires: i64) -> String {
    hmac_hex(
        &app.pepper,
        "export-link",
        &format!("{job}|{account}|{expires}"),
    )
}

pub async fn start(
    app: &App,
    account: Uuid,
    format: ExportFormat,
    ctx: &Ctx,
) -> Result<ExportJob, ServiceError> {
    let job = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO export_jobs (job_id, account_id, format, status, created_at)
         VALUES ($1, $2, $3, 'pending', $4)",
    )
    .bind(job.to_string())
    .bind(account.to_string())
    .bind(format.as_str())
    .bind(ctx.at.timestamp_millis())
    .execute(&app.db.any)
    .await?;
    let app = app.clone();
    tokio::spawn(async move {
        let outcome = async {
            let text = app
                .privacy()
                .export_document(account, format, |_, _| {})
                .await?;
            let now = app.clock.now();
            let sealed = app
                .vault
                .seal(&account.to_string(), DataCategory::Account, now, &text)
                .await?;
            sqlx::query(
                "UPDATE export_jobs SET status = 'ready', document = $1, ready_at = $2, expires_at = $3
                 WHERE job_id = $4",
            )
            .bind(serde_json::to_string(&sealed).map_err(|e| ServiceError::Internal(e.into()))?)
            .bind(now.timestamp_millis())
            .bind((now + Duration::seconds(LINK_TTL_SECS)).timestamp_millis())
            .bind(job.to_string())
            .execute(&app.db.any)
            .await?;
            Ok::<(), ServiceError>(())
        }
        .await;
        if let Err(e) = outcome {
            tracing::error!(error = %e, %job, "export failed");
            let _ = sqlx::query(
                "UPDATE export_jobs SET status = 'failed', error = $1 WHERE job_id = $2",
            )
            .bind(e.to_string())
            .bind(job.to_string())
            .execute(&app.db.any)
            .await;
        }
    });
    Ok(ExportJob {
        job_id: job,
        status: "pending".into(),
        format,
        download_url: None,
        expires_at: None,
    })
}

/// The job, if it is this account's.
pub async fn status(app: &App, account: Uuid, job: Uuid) -> Result<ExportJob, ServiceError> {
    let row = sqlx::query(
        "SELECT format, status, expires_at FROM export_jobs WHERE job_id = $1 AND account_id = $2",
    )
    .bind(job.to_string())
    .bind(account.to_string())
    .fetch_optional(&app.db.any)
    .await?
    .ok_or_else(|| ServiceError::NotFound("no such export".into()))?;
    let format = ExportFormat::parse(&row.try_get::<String, _>(0)?).unwrap_or(ExportFormat::Json);
    let status: String = row.try_get(1)?;
    let expires: Option<i64> = row.try_get(2)?;
    let download_url = match (status.as_str(), expires) {
        ("ready", Some(exp)) if exp > app.clock.now().timestamp_millis() => Some(format!(
            "{}/v1/me/exports/{job}/download?expires={exp}&sig={}",
            app.cfg.public_url(),
            sign(app, job, account, exp)
        )),
        _ => None,
    };
    Ok(ExportJob {
        job_id: job,
        status,
        format,
        download_url,
        expires_at: expires.and_then(DateTime::from_timestamp_millis),
    })
}

/// The document behind a signed link, for the account it was made for.
pub async fn download(
    app: &App,
    account: Uuid,
    job: Uuid,
    expires: i64,
    sig: &str,
) -> Result<(ExportFormat, String), ServiceError> {
    if !ct_eq(sig, &sign(app, job, account, expires)) {
        return Err(ServiceError::Forbidden(
            "this download link is not valid for your account".into(),
        ));
    }
    if app.clock.now().timestamp_millis() >= expires {
        return Err(ServiceError::Forbidden(
            "this download link has expired; start a new export".into(),
        ));
    }
    let row = sqlx::query(
        "SELECT format, document FROM export_jobs
         WHERE job_id = $1 AND account_id = $2 AND status = 'ready'",
    )
    .bind(job.to_string())
    .bind(account.to_string())
    .fetch_optional(&app.db.any)
    .await?
    .ok_or_else(|| ServiceError::NotFound("no such export".into()))?;
    let format = ExportFormat::parse(&row.try_get::<String, _>(0)?).unwrap_or(ExportFormat::Json);
    let sealed: journey_domain::Sealed<String> =
        serde_json::from_str(&row.try_get::<String, _>(1)?)
            .map_err(|e| ServiceError::Internal(e.into()))?;
    let text = app
        .vault
        .open(&sealed)
        .await?
        .value()
        .ok_or_else(|| ServiceError::NotFound("this export was erased".into()))?;
    Ok((format, text))
}
