//! Children's privacy (policy section 9): anyone may report that an account belongs to a
//! child; staff review the report, and a confirmed one erases the account at once (no
//! 30-day window), with the erasure certificate, all as events. The age confirmation at
//! sign-up is in `identity::sign_up_terms`.

use super::Legal;
use crate::error::{require_reason, ServiceError};
use crate::identity::Ctx;
use chrono::{DateTime, Utc};
use journey_commands::identity_index::IdentityKind;
use journey_commands::secrets::normalize_email;
use journey_domain::child_report::{ChildReportCommand, ChildReportFiled, ReportStatus};
use journey_domain::meta::Actor;
use journey_domain::DataCategory;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChildReportRequest {
    /// The email address of the account the child uses.
    pub account_email: String,
    /// How to reach the person reporting (email or phone).
    pub reporter_contact: String,
    /// What makes the reporter believe the holder is a child.
    pub details: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChildReportView {
    pub report_id: Uuid,
    /// `open`, `confirmed` or `rejected`.
    pub status: String,
    /// The account the reported address belongs to (none if it matched no account).
    pub account_id: Option<Uuid>,
    pub filed_at: DateTime<Utc>,
    /// Opened in the (audited) list only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporter_contact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

fn sealing_subject(report: Uuid) -> String {
    format!("child-report:{report}")
}

fn status_name(s: Option<ReportStatus>) -> &'static str {
    match s {
        Some(ReportStatus::Confirmed) => "confirmed",
        Some(ReportStatus::Rejected) => "rejected",
        _ => "open",
    }
}

impl Legal<'_> {
    /// Files a report. The answer never says whether the address has an account.
    pub async fn file_child_report(
        &self,
        r: ChildReportRequest,
        ctx: &Ctx,
    ) -> Result<Uuid, ServiceError> {
        let email = normalize_email(&r.account_email)
            .ok_or_else(|| ServiceError::bad("account_email is not a valid address"))?;
        for (field, v, max) in [
            ("reporter_contact", &r.reporter_contact, 200),
            ("details", &r.details, 4000),
        ] {
            if v.trim().is_empty() || v.chars().count() > max {
                return Err(ServiceError::bad(format!(
                    "{field} must be 1 to {max} characters"
                )));
            }
        }
        crate::text::single_line("reporter_contact", r.reporter_contact.trim())?;
        // Reports are anonymous: the magic-link per-IP budget keeps them from flooding.
        self.limits
            .magic_link(
                &format!("child-report:{}", self.identity().email_hash(&email)),
                ctx.ip.as_deref(),
            )
            .await
            .map_err(ServiceError::TooManyRequests)?;
        let account_id = self
            .identity_index
            .find(IdentityKind::Email, &self.identity().email_hash(&email))
            .await?;
        let report = Uuid::new_v4();
        let subject = sealing_subject(report);
        let seal = |v: &str| {
            let subject = subject.clone();
            let v = v.trim().to_string();
            async move {
                self.vault
                    .seal(&subject, DataCategory::Support, ctx.at, &v)
                    .await
            }
        };
        let filed = ChildReportFiled {
            account_id,
            reporter_contact: seal(&r.reporter_contact).await?,
            details: seal(&r.details).await?,
            at: ctx.at,
        };
        let meta = self.identity().meta(Actor::System, None, ctx).await?;
        self.stores
            .legal
            .child_reports
            .execute(
                &report.to_string(),
                ChildReportCommand::File(Box::new(filed)),
                &meta,
            )
            .await?;
        self.runner.nudge();
        Ok(report)
    }

    /// Every report, newest first, with the reporter's contact and details opened. The
    /// reported accounts are recorded in the audit trail (`child_reports.list`, one entry
    /// each) before anything is opened.
    pub async fn child_reports(
        &self,
        staff: Uuid,
        reason: Option<&str>,
        ctx: &Ctx,
    ) -> Result<Vec<ChildReportView>, ServiceError> {
        let ids = journey_projections::events::stream_ids(
            &self.db,
            "child_report",
            super::REGISTER_LIMIT,
        )
        .await?;
        let mut filed = Vec::new();
        for id in ids {
            let (r, _) = self.stores.legal.child_reports.load(&id).await?;
            if let Some(f) = r.filed {
                let report = Uuid::parse_str(&id).map_err(|e| ServiceError::Internal(e.into()))?;
                filed.push((report, r.status, f));
            }
        }
        let accounts = filed.iter().filter_map(|(_, _, f)| f.account_id);
        self.identity()
            .audit_reads(staff, accounts, "child_reports.list", reason, ctx)
            .await?;
        let mut out = Vec::new();
        for (report, status, f) in filed {
            out.push(ChildReportView {
                report_id: report,
                status: status_name(status).into(),
                account_id: f.account_id,
                filed_at: f.at,
                reporter_contact: self.vault.open(&f.reporter_contact).await?.value(),
                details: self.vault.open(&f.details).await?.value(),
            });
        }
        Ok(out)
    }

    /// Confirms a report and erases the account now, or rejects it; either once.
    pub async fn decide_child_report(
        &self,
        staff: Uuid,
        report: Uuid,
        confirm: bool,
        reason: &str,
        ctx: &Ctx,
    ) -> Result<ChildReportView, ServiceError> {
        require_reason(reason)?;
        let id = report.to_string();
        let (r, _) = self.stores.legal.child_reports.load(&id).await?;
        let filed = r
            .filed
            .ok_or_else(|| ServiceError::NotFound(format!("no child report {report}")))?;
        // Deciding changes the reported account (confirming erases it): recorded first.
        let action = if confirm {
            "child_report.confirm"
        } else {
            "child_report.reject"
        };
        self.identity()
            .audit_read(staff, filed.account_id, action, Some(reason), ctx)
            .await?;
        let command = if confirm {
            ChildReportCommand::Confirm {
                staff,
                reason: reason.to_string(),
                at: ctx.at,
            }
        } else {
            ChildReportCommand::Reject {
                staff,
                reason: reason.to_string(),
                at: ctx.at,
            }
        };
        let meta = self.identity().meta(Actor::Staff(staff), None, ctx).await?;
        self.stores
            .legal
            .child_reports
            .execute(&id, command, &meta)
            .await
            .map_err(crate::error::refused_as_conflict)?;
        if confirm {
            let account = filed.account_id.expect("confirmed reports name an account");
            let why = format!("child account: confirmed report {report}");
            let erased = self
                .identity()
                .erase_account(account, &why, Actor::Staff(staff), ctx)
                .await?;
            self.privacy()
                .certify_erasure(&erased, &why, format!("staff:{staff}"), filed.at, ctx)
                .await?;
        }
        self.runner.nudge();
        Ok(ChildReportView {
            report_id: report,
            status: if confirm { "confirmed" } else { "rejected" }.into(),
            account_id: filed.account_id,
            filed_at: filed.at,
            reporter_contact: None,
            details: None,
        })
    }
}
