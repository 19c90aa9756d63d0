//! Takedown requests (policy section 11): a claimant names a task or a result image URL and
//! the grounds; staff action or reject the case. Actioning writes `ResultsTakenDown` on the
//! task, so its result URLs vanish from `/fetch`, `/fetch-many`, webhooks not yet delivered
//! and exports; the claimant and the holder are emailed. Every step is an event.

use super::Legal;
use crate::error::{require_reason, ServiceError};
use crate::identity::Ctx;
use chrono::{DateTime, Utc};
use journey_commands::mailer::Mail;
use journey_domain::meta::{Actor, CommandMeta};
use journey_domain::takedown::{CaseStatus, TakedownCommand, TakedownFiled};
use journey_domain::task::TaskCommand;
use journey_domain::{DataCategory, Opened};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TakedownRequest {
    /// Where to reach the claimant (an email address: they are told the outcome).
    pub claimant_email: String,
    pub claimant_name: Option<String>,
    /// Exactly one of `task_id` and `image_url`.
    pub task_id: Option<String>,
    pub image_url: Option<String>,
    /// Why the content should come down (rights held, law broken, ...).
    pub grounds: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TakedownView {
    pub case_id: Uuid,
    /// `open`, `actioned` or `rejected`.
    pub status: String,
    /// The task the case concerns, if one matched.
    pub task_id: Option<Uuid>,
    pub filed_at: DateTime<Utc>,
    /// `claimant`, `holder`: who has been told the outcome.
    pub notified: Vec<String>,
    /// Opened in the (audited) list only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimant_contact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grounds: Option<String>,
}

/// The index key of a result URL (URLs are sealed in the task; only this hash is kept).
pub fn url_key(url: &str) -> String {
    hex::encode(Sha256::digest(url.trim().as_bytes()))
}

fn case_subject(case: Uuid) -> String {
    format!("takedown:{case}")
}

impl Legal<'_> {
    /// Remembers which task produced each result URL, so a claimant can name an image.
    pub(crate) async fn index_result_urls(
        &self,
        task_id: Uuid,
        urls: &[&String],
    ) -> Result<(), ServiceError> {
        for u in urls {
            sqlx::query(
                "INSERT INTO result_urls (url_hash, task_id) VALUES ($1, $2)
                 ON CONFLICT (url_hash) DO NOTHING",
            )
            .bind(url_key(u))
            .bind(task_id.to_string())
            .execute(&self.db.any)
            .await?;
        }
        Ok(())
    }

    pub async fn file_takedown(&self, r: TakedownRequest, ctx: &Ctx) -> Result<Uuid, ServiceError> {
        let email = journey_commands::secrets::normalize_email(&r.claimant_email)
            .ok_or_else(|| ServiceError::bad("claimant_email is not a valid address"))?;
        if r.grounds.trim().is_empty() || r.grounds.chars().count() > 4000 {
            return Err(ServiceError::bad("grounds must be 1 to 4000 characters"));
        }
        if let Some(name) = &r.claimant_name {
            if name.chars().count() > 200 {
                return Err(ServiceError::bad(
                    "claimant_name must be at most 200 characters",
                ));
            }
            crate::text::single_line("claimant_name", name.trim())?;
        }
        let task_id = match (&r.task_id, &r.image_url) {
            (Some(t), None) => {
                let id = crate::tasks::requests::parse_task_id("task_id", t)?;
                let task = self.tasks().task(&id.to_string()).await?;
                task.exists().then_some(id)
            }
            (None, Some(u)) => {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT task_id FROM result_urls WHERE url_hash = $1")
                        .bind(url_key(u))
                        .fetch_optional(&self.db.any)
                        .await?;
                row.and_then(|(t,)| Uuid::parse_str(&t).ok())
            }
            _ => {
                return Err(ServiceError::bad(
                    "give exactly one of task_id and image_url",
                ))
            }
        };
        self.limits
            .magic_link(
                &format!("takedown:{}", self.identity().email_hash(&email)),
                ctx.ip.as_deref(),
            )
            .await
            .map_err(ServiceError::TooManyRequests)?;
        let case = Uuid::new_v4();
        let subject = case_subject(case);
        let contact = match &r.claimant_name {
            Some(n) if !n.trim().is_empty() => format!("{} <{email}>", n.trim()),
            _ => email,
        };
        let filed = TakedownFiled {
            claimant_contact: self
                .vault
                .seal(&subject, DataCategory::Support, ctx.at, &contact)
                .await?,
            grounds: self
                .vault
                .seal(
                    &subject,
                    DataCategory::Support,
                    ctx.at,
                    &r.grounds.trim().to_string(),
                )
                .await?,
            task_id,
            at: ctx.at,
        };
        let meta = self.identity().meta(Actor::System, None, ctx).await?;
        self.stores
            .legal
            .takedowns
            .execute(
                &case.to_string(),
                TakedownCommand::File(Box::new(filed)),
                &meta,
            )
            .await?;
        Ok(case)
    }

    pub async fn takedown(&self, case: Uuid) -> Result<TakedownView, ServiceError> {
        let (t, _) = self.stores.legal.takedowns.load(&case.to_string()).await?;
        let filed = t
            .filed
            .ok_or_else(|| ServiceError::NotFound(format!("no takedown case {case}")))?;
        Ok(TakedownView {
            case_id: case,
            status: t.status.unwrap_or(CaseStatus::Open).as_str().into(),
            task_id: filed.task_id,
            filed_at: filed.at,
            notified: t.notices,
            claimant_contact: None,
            grounds: None,
        })
    }

    /// The holder whose task a case concerns, if it matched one.
    async fn task_holder(&self, task_id: Option<Uuid>) -> Result<Option<Uuid>, ServiceError> {
        let Some(task_id) = task_id else {
            return Ok(None);
        };
        let task = self.tasks().task(&task_id.to_string()).await?;
        Ok(task.spec.map(|s| s.account_id))
    }

    /// Cases, newest first, optionally by `status`, with the claimant's contact and the
    /// grounds opened. The holders whose tasks the listed cases concern are recorded in the
    /// audit trail (`takedowns.list`, one entry each) before anything is opened.
    pub async fn takedowns(
        &self,
        staff: Uuid,
        status: Option<&str>,
        reason: Option<&str>,
        ctx: &Ctx,
    ) -> Result<Vec<TakedownView>, ServiceError> {
        let ids =
            journey_projections::events::stream_ids(&self.db, "takedown", super::REGISTER_LIMIT)
                .await?;
        let mut listed = Vec::new();
        let mut holders = Vec::new();
        for id in ids {
            let case = Uuid::parse_str(&id).map_err(|e| ServiceError::Internal(e.into()))?;
            let v = self.takedown(case).await?;
            if status.is_none_or(|s| s == v.status) {
                holders.extend(self.task_holder(v.task_id).await?);
                listed.push(v);
            }
        }
        self.identity()
            .audit_reads(staff, holders, "takedowns.list", reason, ctx)
            .await?;
        for v in &mut listed {
            let (t, _) = self
                .stores
                .legal
                .takedowns
                .load(&v.case_id.to_string())
                .await?;
            if let Some(f) = t.filed {
                v.claimant_contact = self.vault.open(&f.claimant_contact).await?.value();
                v.grounds = self.vault.open(&f.grounds).await?.value();
            }
        }
        Ok(listed)
    }

    /// Actions (takes the results down) or rejects a case, then tells the claimant and, when
    /// actioned, the holder.
    pub async fn decide_takedown(
        &self,
        staff: Uuid,
        case: Uuid,
        action: bool,
        reason: &str,
        ctx: &Ctx,
    ) -> Result<TakedownView, ServiceError> {
        require_reason(reason)?;
        let id = case.to_string();
        let (t, _) = self.stores.legal.takedowns.load(&id).await?;
        let filed = t
            .filed
            .ok_or_else(|| ServiceError::NotFound(format!("no takedown case {case}")))?;
        // Deciding changes the holder's task (actioning removes its results): recorded first.
        let owner = self.task_holder(filed.task_id).await?;
        let audited = if action {
            "takedown.action"
        } else {
            "takedown.reject"
        };
        self.identity()
            .audit_read(staff, owner, audited, Some(reason), ctx)
            .await?;
        let command = if action {
            TakedownCommand::Action {
                staff,
                reason: reason.to_string(),
                at: ctx.at,
            }
        } else {
            TakedownCommand::Reject {
                staff,
                reason: reason.to_string(),
                at: ctx.at,
            }
        };
        let meta = self.identity().meta(Actor::Staff(staff), None, ctx).await?;
        self.stores
            .legal
            .takedowns
            .execute(&id, command, &meta)
            .await
            .map_err(crate::error::refused_as_conflict)?;
        let mut holder = None;
        if action {
            let task_id = filed.task_id.expect("actioned cases name a task");
            let cmd = TaskCommand::TakeDown {
                case_id: case,
                at: ctx.at,
            };
            let task = self.tasks().task_command(task_id, cmd, &meta).await?;
            holder = task.spec.as_ref().map(|s| s.account_id);
        }
        let outcome = if action {
            "The content was removed from our service."
        } else {
            "After review, we did not remove the content."
        };
        if let Opened::Value(contact) = self.vault.open(&filed.claimant_contact).await? {
            let to = contact
                .rsplit_once('<')
                .map(|(_, e)| e.trim_end_matches('>').to_string())
                .unwrap_or(contact);
            self.notify_case(
                &id,
                "claimant",
                &to,
                &format!("Your takedown request {case}"),
                outcome,
            )
            .await?;
        }
        if let Some(account) = holder {
            if let Some(to) = self.identity().email_of(account).await? {
                let body = format!(
                    "Following a takedown request, the results of task {} are no longer available through JourneyAPI.\nReason: {reason}\nQuestions: {}",
                    filed.task_id.map(|t| t.to_string()).unwrap_or_default(),
                    self.cfg.privacy_contact
                );
                self.notify_case(
                    &id,
                    "holder",
                    &to,
                    "Content removed from one of your tasks",
                    &body,
                )
                .await?;
            }
        }
        self.runner.nudge();
        self.takedown(case).await
    }

    async fn notify_case(
        &self,
        id: &str,
        to_whom: &str,
        to: &str,
        subject: &str,
        body: &str,
    ) -> Result<(), ServiceError> {
        self.mailer
            .send(Mail {
                to: to.to_string(),
                subject: subject.to_string(),
                body: format!("{body}\n"),
            })
            .await
            .map_err(ServiceError::Internal)?;
        let now = self.clock.now();
        self.stores
            .legal
            .takedowns
            .execute(
                id,
                TakedownCommand::RecordNotice {
                    to: to_whom.to_string(),
                    at: now,
                },
                &CommandMeta::system(now),
            )
            .await?;
        Ok(())
    }
}
