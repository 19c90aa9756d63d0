//! Consent, objection and restriction use cases, and the two optional kinds of processing
//! they gate: marketing email and analytics. Both gates read `rm_consents` after bringing
//! projections up to date, and skip every account that is restricted, has not consented,
//! or (for marketing) objected.

use super::Privacy;
use crate::error::{require_reason, ServiceError};
use crate::identity::Ctx;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use journey_commands::mailer::Mail;
use journey_commands::StoreError;
use journey_domain::consent::{
    ConsentCommand, ConsentError, ConsentEvent, Consents, Purpose, Source,
};
use journey_domain::meta::Actor;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsentsView {
    /// Processing needed to run the service and meet legal duties: always on.
    pub necessary: bool,
    pub analytics_cookies: bool,
    pub marketing_email: bool,
    /// The holder objected to direct marketing.
    pub marketing_objection: bool,
    /// Processing is restricted: data is used only for the holder's own requests and legal duties.
    pub restricted: bool,
    /// The privacy policy version in force now.
    pub policy_version: String,
    pub history: Vec<ConsentChange>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsentChange {
    /// `ConsentGiven`, `ConsentWithdrawn`, `MarketingObjected`, `ProcessingRestricted` or `RestrictionLifted`.
    pub event: String,
    pub purpose: Option<String>,
    /// `holder` or `staff`.
    pub source: Option<String>,
    pub policy_version: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentUpdate {
    pub analytics_cookies: Option<bool>,
    pub marketing_email: Option<bool>,
    /// `necessary` cannot be turned off; sending `false` is refused.
    pub necessary: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct MarketingReport {
    pub eligible: usize,
    pub sent: usize,
    pub dry_run: bool,
}

fn source_str(s: Source) -> String {
    match s {
        Source::Holder => "holder",
        Source::Staff => "staff",
    }
    .into()
}

impl Privacy<'_> {
    pub async fn consents(&self, account_id: Uuid) -> Result<Consents, ServiceError> {
        Ok(self
            .stores
            .privacy
            .consents
            .load(&account_id.to_string())
            .await?
            .0)
    }

    pub async fn consents_view(&self, account_id: Uuid) -> Result<ConsentsView, ServiceError> {
        let c = self.consents(account_id).await?;
        let stream = journey_projections::events::read_stream(
            &self.db,
            Consents::TYPE,
            &account_id.to_string(),
        )
        .await?;
        let mut history = Vec::with_capacity(stream.len());
        for e in stream {
            let change = match e.decode::<ConsentEvent>()? {
                ConsentEvent::ConsentGiven {
                    purpose,
                    source,
                    policy_version,
                    at,
                }
                | ConsentEvent::ConsentWithdrawn {
                    purpose,
                    source,
                    policy_version,
                    at,
                } => (
                    Some(purpose.as_str().to_string()),
                    Some(source),
                    Some(policy_version),
                    at,
                ),
                ConsentEvent::MarketingObjected {
                    source,
                    policy_version,
                    at,
                } => (
                    Some(Purpose::MarketingEmail.as_str().to_string()),
                    Some(source),
                    Some(policy_version),
                    at,
                ),
                ConsentEvent::ProcessingRestricted { source, at } => (None, Some(source), None, at),
                ConsentEvent::RestrictionLifted { at, .. } => (None, Some(Source::Staff), None, at),
            };
            history.push(ConsentChange {
                event: e.event_type.clone(),
                purpose: change.0,
                source: change.1.map(source_str),
                policy_version: change.2,
                at: change.3,
            });
        }
        Ok(ConsentsView {
            necessary: true,
            analytics_cookies: c.granted.contains(&Purpose::AnalyticsCookies),
            marketing_email: c.granted.contains(&Purpose::MarketingEmail),
            marketing_objection: c.marketing_objection,
            restricted: c.restricted,
            policy_version: self.legal().policy_in_force(self.clock.now()).await?,
            history,
        })
    }

    async fn consent_command(
        &self,
        account_id: Uuid,
        command: ConsentCommand,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let meta = self.identity().meta(actor, Some(account_id), ctx).await?;
        let id = account_id.to_string();
        self.stores
            .privacy
            .consents
            .execute(&id, command, &meta)
            .await
            .map_err(|e| match e {
                StoreError::Rejected(ConsentError::NotRestricted) => {
                    ServiceError::Conflict("processing is not restricted".into())
                }
                other => other.into(),
            })?;
        self.identity().settle::<Consents>(&id).await
    }

    pub async fn update_consents(
        &self,
        account_id: Uuid,
        update: ConsentUpdate,
        ctx: &Ctx,
    ) -> Result<ConsentsView, ServiceError> {
        if update.necessary == Some(false) {
            return Err(ServiceError::bad(
                "`necessary` processing cannot be turned off; to stop it, delete the account (DELETE /v1/me)",
            ));
        }
        let changes: Vec<(Purpose, bool)> = [
            (Purpose::AnalyticsCookies, update.analytics_cookies),
            (Purpose::MarketingEmail, update.marketing_email),
        ]
        .into_iter()
        .filter_map(|(p, v)| v.map(|v| (p, v)))
        .collect();
        if changes.is_empty() {
            return Err(ServiceError::bad(
                "nothing to change: send analytics_cookies and/or marketing_email",
            ));
        }
        for (purpose, granted) in changes {
            let cmd = ConsentCommand::Set {
                purpose,
                granted,
                source: Source::Holder,
                policy_version: self.legal().policy_in_force(ctx.at).await?,
                at: ctx.at,
            };
            self.consent_command(account_id, cmd, Actor::Account(account_id), ctx)
                .await?;
        }
        self.consents_view(account_id).await
    }

    pub async fn object_to_marketing(
        &self,
        account_id: Uuid,
        ctx: &Ctx,
    ) -> Result<ConsentsView, ServiceError> {
        let cmd = ConsentCommand::ObjectToMarketing {
            source: Source::Holder,
            policy_version: self.legal().policy_in_force(ctx.at).await?,
            at: ctx.at,
        };
        self.consent_command(account_id, cmd, Actor::Account(account_id), ctx)
            .await?;
        self.consents_view(account_id).await
    }

    pub async fn restrict_processing(
        &self,
        account_id: Uuid,
        ctx: &Ctx,
    ) -> Result<ConsentsView, ServiceError> {
        let cmd = ConsentCommand::Restrict {
            source: Source::Holder,
            at: ctx.at,
        };
        self.consent_command(account_id, cmd, Actor::Account(account_id), ctx)
            .await?;
        self.consents_view(account_id).await
    }

    pub async fn lift_restriction(
        &self,
        staff: Uuid,
        subject: Uuid,
        reason: &str,
        ctx: &Ctx,
    ) -> Result<ConsentsView, ServiceError> {
        require_reason(reason)?;
        // Reading the subject's consents to answer is a staff read: audit it first.
        self.identity()
            .audit_read(staff, Some(subject), "restriction.lift", Some(reason), ctx)
            .await?;
        let cmd = ConsentCommand::LiftRestriction {
            reason: reason.to_string(),
            at: ctx.at,
        };
        self.consent_command(subject, cmd, Actor::Staff(staff), ctx)
            .await?;
        self.consents_view(subject).await
    }

    /// Staff record a restriction or an objection for a subject whose request arrived
    /// another way (`objection` false = restriction). Audited like a read, since the
    /// answer shows the subject's consents.
    pub async fn staff_apply(
        &self,
        staff: Uuid,
        subject: Uuid,
        objection: bool,
        reason: &str,
        ctx: &Ctx,
    ) -> Result<ConsentsView, ServiceError> {
        let action = if objection {
            "objection.apply"
        } else {
            "restriction.apply"
        };
        self.identity()
            .audit_read(staff, Some(subject), action, Some(reason), ctx)
            .await?;
        if !self.identity().account_is_active(subject).await? {
            return Err(ServiceError::NotFound(format!(
                "no active account {subject}"
            )));
        }
        let cmd = if objection {
            ConsentCommand::ObjectToMarketing {
                source: Source::Staff,
                policy_version: self.legal().policy_in_force(ctx.at).await?,
                at: ctx.at,
            }
        } else {
            ConsentCommand::Restrict {
                source: Source::Staff,
                at: ctx.at,
            }
        };
        self.consent_command(subject, cmd, Actor::Staff(staff), ctx)
            .await?;
        self.consents_view(subject).await
    }

    /// Accounts whose data may be used for `purpose` now (active, consented, not
    /// restricted, and for marketing not objected).
    pub async fn may_process_accounts(&self, purpose: Purpose) -> Result<Vec<Uuid>, ServiceError> {
        self.runner.catch_up().await?;
        let gate = match purpose {
            Purpose::AnalyticsCookies => "c.analytics_cookies = 1",
            Purpose::MarketingEmail => "c.marketing_email = 1 AND c.marketing_objected = 0",
        };
        let rows = sqlx::query(&format!(
            "SELECT c.account_id FROM rm_consents c
             JOIN rm_accounts a ON a.account_id = c.account_id
             WHERE a.status = 'active' AND c.restricted = 0 AND {gate}
             ORDER BY c.account_id"
        ))
        .fetch_all(&self.db.any)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            let id = Uuid::parse_str(&r.try_get::<String, _>(0)?)
                .map_err(|e| ServiceError::Internal(e.into()))?;
            // The aggregate has the last word (the read model may trail a fresh change).
            if self.consents(id).await?.may_process(purpose) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Sends a marketing email to every account that may receive one.
    pub async fn send_marketing(
        &self,
        subject: &str,
        body: &str,
        dry_run: bool,
    ) -> Result<MarketingReport, ServiceError> {
        let recipients = self.may_process_accounts(Purpose::MarketingEmail).await?;
        let mut sent = 0;
        if !dry_run {
            for id in &recipients {
                let me = self.identity().me(*id).await?;
                self.mailer
                    .send(Mail {
                        to: me.email,
                        subject: subject.to_string(),
                        body: format!(
                            "{body}\n\n--\nYou receive this because you agreed to marketing email. \
                             Withdraw or object at any time: PUT {0}/v1/me/consents or POST {0}/v1/me/objection\n",
                            self.cfg.public_url()
                        ),
                    })
                    .await?;
                sent += 1;
            }
        }
        Ok(MarketingReport {
            eligible: recipients.len(),
            sent,
            dry_run,
        })
    }
}

/// One pseudonymous analytics row (no email, no name).
#[derive(Debug, Serialize)]
pub struct AnalyticsRow {
    pub account_id: Uuid,
    pub plan: String,
    pub credits_available: u64,
}

impl Privacy<'_> {
    /// Per-account product analytics, only for accounts that allow it.
    pub async fn analytics_rows(&self) -> Result<Vec<AnalyticsRow>, ServiceError> {
        let mut rows = Vec::new();
        for id in self.may_process_accounts(Purpose::AnalyticsCookies).await? {
            rows.push(AnalyticsRow {
                account_id: id,
                plan: self.credits().plan_of(id).await?,
                credits_available: self.credits().balance(id).await?.available,
            });
        }
        Ok(rows)
    }
}
