//! The breach register (policy section 6): staff record a breach with its affected
//! holders; the regulator deadline runs from discovery (`breach_notification_hours`, 72 by
//! default); emailing each affected holder and marking the regulator notified are events;
//! the register shows overdue deadlines.

use super::Legal;
use crate::error::ServiceError;
use crate::identity::Ctx;
use chrono::{DateTime, Duration, Utc};
use journey_commands::mailer::Mail;
use journey_domain::breach::{BreachCommand, BreachRecord};
use journey_domain::meta::{Actor, CommandMeta};
use journey_domain::DataCategory;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Who was affected: listed accounts, or a query resolved when the breach is recorded.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Affected {
    /// These account ids.
    Accounts(Vec<Uuid>),
    /// Every account open at the time of recording.
    AllAccounts(bool),
    /// Accounts created in `[from, to)`.
    CreatedBetween {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordBreach {
    pub discovered_at: DateTime<Utc>,
    /// What happened. Kept in clear: no personal data here.
    pub description: String,
    /// Data categories involved: account, usage, prompts, billing, support.
    pub categories: Vec<String>,
    pub affected: Affected,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegulatorNotice {
    /// The regulator's case number or how it was notified.
    pub reference: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BreachView {
    pub breach_id: Uuid,
    pub discovered_at: DateTime<Utc>,
    pub description: String,
    pub categories: Vec<String>,
    /// How the affected accounts were chosen.
    pub selection: String,
    pub affected: usize,
    pub holders_notified: usize,
    /// The regulator must be notified by then.
    pub deadline_at: DateTime<Utc>,
    pub regulator_notified_at: Option<DateTime<Utc>>,
    pub regulator_reference: Option<String>,
    /// Past the deadline with the regulator not notified.
    pub overdue: bool,
    pub recorded_at: DateTime<Utc>,
}

impl Legal<'_> {
    pub async fn record_breach(
        &self,
        staff: Uuid,
        r: RecordBreach,
        ctx: &Ctx,
    ) -> Result<BreachView, ServiceError> {
        if r.description.trim().is_empty() || r.description.chars().count() > 4000 {
            return Err(ServiceError::bad(
                "description must be 1 to 4000 characters",
            ));
        }
        if r.discovered_at > ctx.at {
            return Err(ServiceError::bad("discovered_at cannot be in the future"));
        }
        if r.categories.is_empty() {
            return Err(ServiceError::bad(
                "categories must name at least one data category",
            ));
        }
        for c in &r.categories {
            if DataCategory::parse(c).is_none() {
                return Err(ServiceError::bad(format!(
                    "unknown category {c:?}: use account, usage, prompts, billing or support"
                )));
            }
        }
        let (affected, selection) = self.resolve_affected(&r.affected).await?;
        let record = BreachRecord {
            discovered_at: r.discovered_at,
            description: r.description.trim().to_string(),
            categories: r.categories,
            affected,
            selection,
            deadline_at: r.discovered_at + Duration::hours(self.cfg.breach_notification_hours),
            recorded_by: staff,
            at: ctx.at,
        };
        let id = Uuid::new_v4();
        let meta = self.identity().meta(Actor::Staff(staff), None, ctx).await?;
        self.stores
            .legal
            .breaches
            .execute(
                &id.to_string(),
                BreachCommand::Record(Box::new(record)),
                &meta,
            )
            .await?;
        self.breach(id).await
    }

    async fn resolve_affected(&self, a: &Affected) -> Result<(Vec<Uuid>, String), ServiceError> {
        self.runner.catch_up().await?;
        let ids = |rows: Vec<(String,)>| {
            rows.into_iter()
                .filter_map(|(id,)| Uuid::parse_str(&id).ok())
                .collect::<Vec<_>>()
        };
        Ok(match a {
            Affected::Accounts(list) => {
                if list.is_empty() {
                    return Err(ServiceError::bad("affected.accounts is empty"));
                }
                let mut list = list.clone();
                list.sort();
                list.dedup();
                (list, "listed".into())
            }
            Affected::AllAccounts(true) => {
                let rows = sqlx::query_as("SELECT account_id FROM rm_accounts")
                    .fetch_all(&self.db.any)
                    .await?;
                (ids(rows), "all accounts open when recorded".into())
            }
            Affected::AllAccounts(false) => {
                return Err(ServiceError::bad("affected.all_accounts must be true"))
            }
            Affected::CreatedBetween { from, to } => {
                if from >= to {
                    return Err(ServiceError::bad("created_between: from must be before to"));
                }
                let rows = sqlx::query_as(
                    "SELECT account_id FROM rm_accounts WHERE created_at >= $1 AND created_at < $2",
                )
                .bind(from.timestamp_millis())
                .bind(to.timestamp_millis())
                .fetch_all(&self.db.any)
                .await?;
                (ids(rows), format!("accounts created from {from} to {to}"))
            }
        })
    }

    pub async fn breach(&self, id: Uuid) -> Result<BreachView, ServiceError> {
        let (b, _) = self.stores.legal.breaches.load(&id.to_string()).await?;
        let r = b
            .record
            .ok_or_else(|| ServiceError::NotFound(format!("no breach {id}")))?;
        let reference = if b.regulator_notified_at.is_some() {
            let events =
                journey_projections::events::read_stream(&self.db, "breach", &id.to_string())
                    .await?;
            events
                .iter()
                .find(|e| e.event_type == "RegulatorNotified")
                .and_then(|e| {
                    e.payload["RegulatorNotified"]["reference"]
                        .as_str()
                        .map(str::to_string)
                })
        } else {
            None
        };
        Ok(BreachView {
            breach_id: id,
            discovered_at: r.discovered_at,
            description: r.description,
            categories: r.categories,
            selection: r.selection,
            affected: r.affected.len(),
            holders_notified: b.notified.len(),
            deadline_at: r.deadline_at,
            regulator_notified_at: b.regulator_notified_at,
            regulator_reference: reference,
            overdue: b.regulator_notified_at.is_none() && self.clock.now() > r.deadline_at,
            recorded_at: r.at,
        })
    }

    /// The register, newest first.
    pub async fn breaches(&self) -> Result<Vec<BreachView>, ServiceError> {
        let ids = journey_projections::events::stream_ids(&self.db, "breach", i64::MAX).await?;
        let mut out = Vec::new();
        for id in ids {
            out.push(
                self.breach(Uuid::parse_str(&id).map_err(|e| ServiceError::Internal(e.into()))?)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Emails every affected holder not yet told; each email is a `BreachSubjectNotified`.
    /// Erased accounts have no address left and are skipped. The holders about to be told
    /// are recorded in the audit trail first (`breach.notify_holders`, the breach as the
    /// reason), since their addresses are opened to write to them.
    pub async fn notify_breach_subjects(
        &self,
        staff: Uuid,
        id: Uuid,
        ctx: &Ctx,
    ) -> Result<BreachView, ServiceError> {
        let (b, _) = self.stores.legal.breaches.load(&id.to_string()).await?;
        let r = b
            .record
            .clone()
            .ok_or_else(|| ServiceError::NotFound(format!("no breach {id}")))?;
        let pending: Vec<Uuid> = r
            .affected
            .iter()
            .filter(|a| !b.notified.contains(*a))
            .copied()
            .collect();
        let reason = format!("breach {id}");
        self.identity()
            .audit_reads(
                staff,
                pending.iter().copied(),
                "breach.notify_holders",
                Some(&reason),
                ctx,
            )
            .await?;
        for account in &pending {
            let Some(to) = self.identity().email_of(*account).await? else {
                continue;
            };
            self.mailer
                .send(Mail {
                    to,
                    subject: "Important: a security incident affecting your JourneyAPI data".into(),
                    body: format!(
                        "On {} we discovered a security incident that affected your data.\n\n{}\n\nData involved: {}.\nQuestions: {}\n",
                        r.discovered_at.format("%Y-%m-%d"),
                        r.description,
                        r.categories.join(", "),
                        self.cfg.privacy_contact
                    ),
                })
                .await
                .map_err(ServiceError::Internal)?;
            let now = self.clock.now();
            self.stores
                .legal
                .breaches
                .execute(
                    &id.to_string(),
                    BreachCommand::RecordSubjectNotified {
                        account_id: *account,
                        at: now,
                    },
                    &CommandMeta::system(now),
                )
                .await?;
        }
        self.breach(id).await
    }

    pub async fn mark_regulator_notified(
        &self,
        staff: Uuid,
        id: Uuid,
        reference: &str,
        ctx: &Ctx,
    ) -> Result<BreachView, ServiceError> {
        if reference.trim().is_empty() {
            return Err(ServiceError::bad(
                "reference is required (the regulator's case number or how it was notified)",
            ));
        }
        let meta = self.identity().meta(Actor::Staff(staff), None, ctx).await?;
        self.stores
            .legal
            .breaches
            .execute(
                &id.to_string(),
                BreachCommand::MarkRegulatorNotified {
                    staff,
                    reference: reference.trim().to_string(),
                    at: ctx.at,
                },
                &meta,
            )
            .await
            .map_err(|e| match e {
                journey_commands::StoreError::Rejected(
                    journey_domain::breach::BreachError::Unknown,
                ) => ServiceError::NotFound(format!("no breach {id}")),
                other => crate::error::refused_as_conflict(other),
            })?;
        self.breach(id).await
    }
}
