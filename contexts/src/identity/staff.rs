//! Staff use cases: granting and revoking roles, and the audit trail. Every staff read or
//! change of a subject's data, from HTTP or the CLI, calls `audit_read` (one subject) or
//! `audit_reads` (a list) first; if the audit event cannot be written, the operation fails
//! and nothing is returned or changed.

use super::Identity;
use crate::error::ServiceError;
use crate::identity::{from_ms, Ctx};
use chrono::{DateTime, Utc};
use journey_commands::identity_index::IdentityKind;
use journey_commands::secrets::normalize_email;
use journey_commands::StoreError;
use journey_domain::meta::Actor;
use journey_domain::staff::{Role, StaffCommand, StaffError, StaffMember};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub position: i64,
    /// The staff member's account id.
    pub actor: String,
    pub subject: Option<String>,
    pub action: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// One staff role held (`staff_roster`).
#[derive(Debug)]
pub struct StaffGrant {
    pub account_id: Uuid,
    pub role: Role,
    pub granted_at: DateTime<Utc>,
}

/// Filters for the audit trail; all optional.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<Uuid>,
    pub subject: Option<Uuid>,
    /// One action (`subject.events`, `audit.list`, …).
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub after: Option<i64>,
    pub limit: u32,
}

impl Identity<'_> {
    pub async fn staff_member(&self, account_id: Uuid) -> Result<StaffMember, ServiceError> {
        Ok(self
            .stores
            .identity
            .staff
            .load(&account_id.to_string())
            .await?
            .0)
    }

    /// The active account registered under `email`.
    pub async fn account_by_email(&self, email: &str) -> Result<Uuid, ServiceError> {
        let normalized =
            normalize_email(email).ok_or_else(|| ServiceError::bad("not a valid email address"))?;
        let id = self
            .identity_index
            .find(IdentityKind::Email, &self.email_hash(&normalized))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no account for {normalized}")))?;
        if !self.account_is_active(id).await? {
            return Err(ServiceError::NotFound(format!(
                "no active account for {normalized}"
            )));
        }
        Ok(id)
    }

    /// Grants (`grant = true`) or revokes a role; returns the account id.
    pub async fn set_role(
        &self,
        email: &str,
        role: Role,
        grant: bool,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<Uuid, ServiceError> {
        let id = self.account_by_email(email).await?;
        let command = if grant {
            StaffCommand::Grant { role, at: ctx.at }
        } else {
            StaffCommand::Revoke { role, at: ctx.at }
        };
        let meta = self.meta(actor, None, ctx).await?;
        self.stores
            .identity
            .staff
            .execute(&id.to_string(), command, &meta)
            .await?;
        self.settle::<StaffMember>(&id.to_string()).await?;
        Ok(id)
    }

    /// Who holds which staff role (`rm_staff_roles`), by account id: the role granted
    /// and when. For the admin's roster page.
    pub async fn staff_roster(&self) -> Result<Vec<StaffGrant>, ServiceError> {
        self.runner.catch_up().await?;
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT account_id, role, granted_at FROM rm_staff_roles ORDER BY account_id, role",
        )
        .fetch_all(&self.db.any)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, role, at)| {
                Some(StaffGrant {
                    account_id: Uuid::parse_str(&id).ok()?,
                    role: Role::parse(&role)?,
                    granted_at: from_ms(at),
                })
            })
            .collect())
    }

    /// Records a staff read (or change) of one subject's data before the data is returned
    /// or changed. If the record cannot be written, the caller must stop.
    pub async fn audit_read(
        &self,
        staff: Uuid,
        subject: Option<Uuid>,
        action: &str,
        reason: Option<&str>,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let command = StaffCommand::RecordRead {
            subject,
            action: action.to_string(),
            reason: reason.unwrap_or_default().to_string(),
            at: ctx.at,
        };
        self.record_staff_access(staff, command, ctx).await
    }

    /// Records a staff read of a list naming several subjects: one audit entry per
    /// distinct subject, in one commit (one entry with no subject for an empty list).
    pub async fn audit_reads(
        &self,
        staff: Uuid,
        subjects: impl IntoIterator<Item = Uuid>,
        action: &str,
        reason: Option<&str>,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let command = StaffCommand::RecordReads {
            subjects: subjects.into_iter().collect(),
            action: action.to_string(),
            reason: reason.unwrap_or_default().to_string(),
            at: ctx.at,
        };
        self.record_staff_access(staff, command, ctx).await
    }

    async fn record_staff_access(
        &self,
        staff: Uuid,
        command: StaffCommand,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let meta = self.meta(Actor::Staff(staff), None, ctx).await?;
        self.stores
            .identity
            .staff
            .execute(&staff.to_string(), command, &meta)
            .await
            .map_err(|e| match e {
                StoreError::Rejected(StaffError::NoRole) => {
                    ServiceError::Forbidden("a staff role is required".into())
                }
                StoreError::Rejected(e @ StaffError::BadReason) => {
                    ServiceError::bad(format!("{e}: pass it as the `reason` query parameter"))
                }
                other => other.into(),
            })?;
        // Read-your-write: the trail and the subject's export (`rm_audit`) show this access
        // from now on, also when they are read by another process right after a CLI command.
        self.settle::<StaffMember>(&staff.to_string()).await
    }

    /// The data subject a stream belongs to (`subject_streams`), if any: registers such as
    /// breaches, child reports and takedowns have none.
    pub async fn stream_subject(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<Uuid>, ServiceError> {
        self.runner.catch_up().await?;
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT subject FROM subject_streams WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.db.any)
        .await?;
        Ok(row.and_then(|(s,)| Uuid::parse_str(&s).ok()))
    }

    pub async fn audit_trail(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, ServiceError> {
        self.runner.catch_up().await?;
        let rows = sqlx::query(
            "SELECT position, actor, subject, action, reason, at FROM rm_audit
             WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR subject = $2)
               AND at >= $3 AND at <= $4 AND position > $5 AND ($7 = '' OR action = $7)
             ORDER BY position LIMIT $6",
        )
        .bind(f.actor.map(|a| a.to_string()).unwrap_or_default())
        .bind(f.subject.map(|s| s.to_string()).unwrap_or_default())
        .bind(f.from.map_or(i64::MIN, |t| t.timestamp_millis()))
        .bind(f.to.map_or(i64::MAX, |t| t.timestamp_millis()))
        .bind(f.after.unwrap_or(0))
        .bind(i64::from(f.limit))
        .bind(f.action.as_deref().unwrap_or_default())
        .fetch_all(&self.db.any)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    position: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    subject: r.try_get(2)?,
                    action: r.try_get(3)?,
                    reason: r.try_get(4)?,
                    at: from_ms(r.try_get(5)?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ServiceError::from)
    }
}

/// A signed-in staff member: an account holding at least one staff role (the HTTP layer
/// resolves it from the session; the CLI from `--by`). Use cases narrow the roles with
/// `require`.
#[derive(Clone)]
pub struct StaffAuth {
    pub account_id: Uuid,
    pub roles: std::collections::BTreeSet<journey_domain::staff::Role>,
}

impl StaffAuth {
    pub fn require(&self, any_of: &[journey_domain::staff::Role]) -> Result<(), ServiceError> {
        if any_of.iter().any(|r| self.roles.contains(r)) {
            return Ok(());
        }
        let names: Vec<&str> = any_of.iter().map(|r| r.as_str()).collect();
        Err(ServiceError::Forbidden(format!(
            "this needs one of the staff roles: {}",
            names.join(", ")
        )))
    }
}
