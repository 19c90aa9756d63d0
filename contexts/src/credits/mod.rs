//! Credit use cases: the balance, the command API tasks use (reserve, capture, release),
//! staff grants, and the ledger history.

pub mod billing;
pub mod stripe_events;

crate::app::service!(
    /// The credits and billing context: the ledger's command API, staff grants, Stripe
    /// Checkout and portal sessions, and verified Stripe events.
    Credits
);

/// The event stores of the aggregates this context owns. The fields are private to this
/// context's modules: another context reaches these aggregates only through the service.
pub struct Stores {
    credits: journey_commands::Store<journey_domain::credits::CreditLedger>,
    billing: journey_commands::Store<journey_domain::billing::BillingAccount>,
    stripe_events: journey_commands::Store<journey_domain::stripe_event_log::StripeEventLog>,
}

impl Stores {
    pub(crate) fn new(db: &journey_commands::Db) -> Self {
        Stores {
            credits: journey_commands::Store::new(db),
            billing: journey_commands::Store::new(db),
            stripe_events: journey_commands::Store::new(db),
        }
    }
}

use crate::error::{require_reason, ServiceError};
use crate::identity::{from_ms, Ctx};
use chrono::{DateTime, Utc};
use journey_commands::StoreError;
use journey_domain::credits::{CreditCommand, CreditError, CreditLedger, GrantSource};
use journey_domain::meta::Actor;
use journey_domain::DataCategory;
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Balance {
    /// Credits that can be spent now (unexpired, not reserved).
    pub available: u64,
    /// Credits held for tasks still running.
    pub reserved: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    /// Position in the account's ledger; pass it as `before` for the next page.
    pub seq: i64,
    /// `grant`, `reserve`, `capture`, `release`, `expire` or `claw_back`.
    pub kind: String,
    /// Change to the available balance (captures are 0: the reservation already counted).
    pub amount: i64,
    pub balance_after: i64,
    pub task_id: Option<String>,
    pub grant_id: Option<String>,
    /// For grants: `purchase`, `subscription_period`, `admin` or `promotion`.
    pub source: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LedgerPage {
    pub entries: Vec<LedgerEntry>,
    /// Cursor for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// A staff or promotional grant.
pub struct ManualGrant<'a> {
    pub account_id: Uuid,
    pub amount: u64,
    pub source: GrantSource,
    pub reason: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
}

pub(crate) fn credit_error(e: StoreError<CreditError>) -> ServiceError {
    match e {
        StoreError::Rejected(CreditError::InsufficientCredits { needed, available }) => {
            ServiceError::PaymentRequired(format!(
                "insufficient credits: this needs {needed}, {available} available"
            ))
        }
        StoreError::Rejected(CreditError::TooManyInFlight(limit)) => {
            ServiceError::TooManyInFlight(limit)
        }
        StoreError::Rejected(CreditError::NoReservation(t)) => {
            ServiceError::NotFound(format!("no reservation for task {t}"))
        }
        StoreError::Rejected(e @ CreditError::AlreadySettled(..))
        | StoreError::Rejected(e @ CreditError::ReservationMismatch(_)) => {
            ServiceError::Conflict(e.to_string())
        }
        other => other.into(),
    }
}

impl Credits<'_> {
    pub async fn balance(&self, account_id: Uuid) -> Result<Balance, ServiceError> {
        let (ledger, _) = self
            .stores
            .credits
            .credits
            .load(&account_id.to_string())
            .await?;
        Ok(Balance {
            available: ledger.available(self.clock.now()),
            reserved: ledger.reserved(),
        })
    }

    /// Runs a ledger command. Balances are read from the aggregate, so only callers that
    /// then read the ledger history (grants) wait for the projection.
    async fn credit_command(
        &self,
        account_id: Uuid,
        command: CreditCommand,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let meta = self.identity().meta(actor, Some(account_id), ctx).await?;
        self.stores
            .credits
            .credits
            .execute(&account_id.to_string(), command, &meta)
            .await
            .map_err(credit_error)?;
        self.runner.nudge();
        Ok(())
    }

    /// Holds `amount` credits for `task_id`; 402 when the balance is short. Retrying the
    /// same reservation is a no-op.
    pub async fn reserve_credits(
        &self,
        account_id: Uuid,
        task_id: Uuid,
        amount: u64,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let cmd = CreditCommand::Reserve {
            task_id,
            amount,
            max_open: None,
            at: ctx.at,
        };
        self.credit_command(account_id, cmd, actor, ctx).await
    }

    /// Spends a task's reservation (the task finished). Idempotent.
    pub async fn capture_credits(
        &self,
        account_id: Uuid,
        task_id: Uuid,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let cmd = CreditCommand::Capture {
            task_id,
            at: ctx.at,
        };
        self.credit_command(account_id, cmd, actor, ctx).await
    }

    /// Returns a task's reservation in full (the task failed). Idempotent.
    pub async fn release_credits(
        &self,
        account_id: Uuid,
        task_id: Uuid,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let cmd = CreditCommand::Release {
            task_id,
            at: ctx.at,
        };
        self.credit_command(account_id, cmd, actor, ctx).await
    }

    /// A staff or promotional grant; the reason is sealed with the account's billing data.
    /// Returns the new grant's id, or `None` when its idempotency key was already used.
    pub async fn grant_credits(
        &self,
        grant: ManualGrant<'_>,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<Option<Uuid>, ServiceError> {
        let subject = grant.account_id.to_string();
        if !self.identity().account_is_active(grant.account_id).await? {
            return Err(ServiceError::NotFound(format!(
                "no active account {}",
                grant.account_id
            )));
        }
        require_reason(grant.reason)?;
        let note = self
            .vault
            .seal(
                &subject,
                DataCategory::Billing,
                ctx.at,
                &grant.reason.to_string(),
            )
            .await?;
        let grant_id = Uuid::new_v4();
        let cmd = CreditCommand::Grant {
            grant_id,
            source: grant.source,
            amount: grant.amount,
            expires_at: grant.expires_at,
            idempotency_key: grant.idempotency_key,
            purchase_ref: None,
            note: Some(note),
            at: ctx.at,
        };
        self.credit_command(grant.account_id, cmd, actor, ctx)
            .await?;
        self.identity().settle::<CreditLedger>(&subject).await?;
        // `None`: the idempotency key had been used, nothing was granted.
        let (ledger, _) = self.stores.credits.credits.load(&subject).await?;
        Ok(ledger.lots.contains_key(&grant_id).then_some(grant_id))
    }

    /// Newest first, `limit` entries older than `before`.
    pub async fn ledger_page(
        &self,
        account_id: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<LedgerPage, ServiceError> {
        let id = account_id.to_string();
        self.identity().settle::<CreditLedger>(&id).await?;
        let rows = sqlx::query(
            "SELECT seq, kind, amount, balance_after, task_id, grant_id, source, expires_at, at
             FROM rm_credit_entries WHERE account_id = $1 AND seq < $2
             ORDER BY seq DESC LIMIT $3",
        )
        .bind(&id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.db.any)
        .await?;
        let mut entries = rows
            .iter()
            .map(|r| {
                Ok(LedgerEntry {
                    seq: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    amount: r.try_get(2)?,
                    balance_after: r.try_get(3)?,
                    task_id: r.try_get(4)?,
                    grant_id: r.try_get(5)?,
                    source: r.try_get(6)?,
                    expires_at: r.try_get::<Option<i64>, _>(7)?.map(from_ms),
                    at: from_ms(r.try_get(8)?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let next_before = if entries.len() > limit as usize {
            entries.truncate(limit as usize);
            entries.last().map(|e| e.seq)
        } else {
            None
        };
        Ok(LedgerPage {
            entries,
            next_before,
        })
    }
}

/// What the tasks context needs of the ledger: a reservation decided inside its unit of
/// work, and the settlement of a task's reservation.
impl<'a> Credits<'a> {
    /// Decides a reservation without committing it: the ledger's events wait in the
    /// returned `Decided` for the caller's `UnitOfWork` (accepting a task is one commit).
    /// 402 when the balance is short, 429 at the in-flight limit.
    pub async fn decide_reservation(
        &self,
        account: &str,
        reserve: CreditCommand,
    ) -> Result<journey_commands::Decided<'a, CreditLedger>, ServiceError> {
        self.0
            .stores
            .credits
            .credits
            .decide(account, reserve)
            .await
            .map_err(credit_error)
    }

    /// Captures or releases a task's reservation (system actor). A reservation that never
    /// came into being (a crash before the task's acceptance committed, in versions
    /// before the unit of work) is nothing owed: that is not an error.
    pub async fn settle_reservation(
        &self,
        account: &str,
        command: CreditCommand,
        at: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let meta = journey_domain::meta::CommandMeta::system(at);
        match self
            .stores
            .credits
            .credits
            .execute(account, command, &meta)
            .await
        {
            Ok(()) | Err(StoreError::Rejected(CreditError::NoReservation(_))) => {
                self.runner.nudge();
                Ok(())
            }
            Err(e) => Err(credit_error(e)),
        }
    }

    /// Whether the account's subscription will renew (not cancelled, not ended, a plan in
    /// force at `at`): deleting the account must wait until it is cancelled.
    pub async fn subscription_renews(
        &self,
        account: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, ServiceError> {
        let (billing, _) = self
            .stores
            .credits
            .billing
            .load(&account.to_string())
            .await?;
        Ok(billing.subscription.as_ref().is_some_and(|s| {
            !s.ended && !s.state.cancel_at_period_end && billing.plan_at(at).is_some()
        }))
    }
}
