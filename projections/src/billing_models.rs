//! Read models for billing and credits. Like the identity read models, each deletes the
//! subject's rows on `AccountErased`; the events themselves (sealed under billing keys)
//! are what the law makes us keep.

use crate::events::StoredEvent;
use crate::runner::Projection;
use anyhow::{Context, Result};
use async_trait::async_trait;
use cqrs_es::Aggregate;
use journey_domain::billing::{BillingAccount, BillingEvent};
use journey_domain::credits::{CreditEvent, CreditLedger};
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeSet, HashMap};

use crate::read_models::ms;

async fn forget(conn: &mut AnyConnection, table: &str, account: &str) -> Result<()> {
    sqlx::query(&format!("DELETE FROM {table} WHERE account_id = $1"))
        .bind(account)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `rm_billing`: customer, plan and suspension per account, for authentication and staff.
pub struct Billing;

#[async_trait]
impl Projection for Billing {
    fn name(&self) -> &'static str {
        "billing"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_billing"]
    }
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        for e in events {
            self.apply_one(conn, e).await.with_context(|| e.what())?;
        }
        Ok(())
    }
}

impl Billing {
    async fn apply_one(&self, conn: &mut AnyConnection, e: &StoredEvent) -> Result<()> {
        if let Some(account) = crate::read_models::erased_account(e) {
            return forget(conn, "rm_billing", account).await;
        }
        if e.aggregate_type != BillingAccount::TYPE {
            return Ok(());
        }
        let Some(event) = e.decode_known::<BillingEvent>()? else {
            return Ok(());
        };
        let id = e.aggregate_id.as_str();
        sqlx::query(
            "INSERT INTO rm_billing (account_id, updated_at) VALUES ($1, $2)
             ON CONFLICT (account_id) DO NOTHING",
        )
        .bind(id)
        .bind(e.committed_at)
        .execute(&mut *conn)
        .await?;
        let at = e.committed_at;
        let q = match event {
            BillingEvent::StripeCustomerLinked { customer_id, .. } => sqlx::query(
                "UPDATE rm_billing SET customer_id = $1, updated_at = $2 WHERE account_id = $3",
            )
            .bind(customer_id),
            BillingEvent::SubscriptionChanged { state, .. } => sqlx::query(
                "UPDATE rm_billing SET plan = $1, status = $2, period_end = $3,
                 cancel_at_period_end = $4, ended = 0, updated_at = $5 WHERE account_id = $6",
            )
            .bind(state.plan)
            .bind(state.status.as_str())
            .bind(state.current_period_end.map(ms))
            .bind(i64::from(state.cancel_at_period_end)),
            BillingEvent::SubscriptionEnded { paid_until, .. } => sqlx::query(
                "UPDATE rm_billing SET status = 'canceled', period_end = $1,
                 cancel_at_period_end = 0, ended = 1, updated_at = $2 WHERE account_id = $3",
            )
            .bind(paid_until.map(ms)),
            BillingEvent::AccountSuspended { .. } => sqlx::query(
                "UPDATE rm_billing SET suspended = 1, updated_at = $1 WHERE account_id = $2",
            ),
            BillingEvent::SuspensionLifted { .. } => sqlx::query(
                "UPDATE rm_billing SET suspended = 0, updated_at = $1 WHERE account_id = $2",
            ),
            BillingEvent::BillingRecorded { .. }
            | BillingEvent::PaymentMethodUpdated { .. }
            | BillingEvent::StripeEventProcessed { .. } => return Ok(()),
        };
        q.bind(at).bind(id).execute(&mut *conn).await?;
        Ok(())
    }
}

/// `rm_credit_entries`: the ledger history shown to the holder, with a running balance.
///
/// Set-based: a batch is folded in memory and written with multi-row statements. The
/// balance each account had before the batch is read once per batch for all its accounts
/// (not once per event), the running balances are carried in memory through the batch, and
/// the rows go out `ENTRY_ROWS_PER_STATEMENT` at a time. A rebuild therefore costs a few
/// statements per thousand events instead of two per event.
pub struct CreditEntries;

/// One `rm_credit_entries` row waiting to be written.
struct Entry<'a> {
    account: &'a str,
    seq: i64,
    kind: &'static str,
    amount: i64,
    balance_after: i64,
    task: Option<String>,
    grant: Option<String>,
    source: Option<String>,
    expires_at: Option<i64>,
    at: i64,
}

/// 10 values a row: within SQLite's 32,766 and Postgres's 65,535 bound values.
const ENTRY_ROWS_PER_STATEMENT: usize = 500;
/// Accounts per "balance before the batch" read.
const ACCOUNTS_PER_READ: usize = 500;

#[async_trait]
impl Projection for CreditEntries {
    fn name(&self) -> &'static str {
        "credit_entries"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_credit_entries"]
    }
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        let accounts: BTreeSet<&str> = events
            .iter()
            .filter(|e| e.aggregate_type == CreditLedger::TYPE)
            .map(|e| e.aggregate_id.as_str())
            .collect();
        let mut balances = last_balances(conn, &accounts).await?;
        let mut pending: Vec<Entry<'_>> = Vec::new();
        for e in events {
            if let Some(account) = crate::read_models::erased_account(e) {
                // Rows folded so far for this account must go before the deletion does.
                write_entries(conn, &mut pending).await?;
                forget(conn, "rm_credit_entries", account).await?;
                balances.insert(account, 0);
                continue;
            }
            if e.aggregate_type != CreditLedger::TYPE {
                continue;
            }
            let Some(event) = e.decode_known::<CreditEvent>().with_context(|| e.what())? else {
                continue;
            };
            let id = e.aggregate_id.as_str();
            let balance = balances.entry(id).or_insert(0);
            if let Some(entry) = entry_of(id, e.sequence, &event, balance) {
                pending.push(entry);
            }
            if pending.len() >= ENTRY_ROWS_PER_STATEMENT {
                write_entries(conn, &mut pending).await?;
            }
        }
        write_entries(conn, &mut pending).await
    }
}

/// The row an event adds (none for a refund, which moves no credits), moving `balance`.
fn entry_of<'a>(
    account: &'a str,
    seq: i64,
    event: &CreditEvent,
    balance: &mut i64,
) -> Option<Entry<'a>> {
    let (kind, task, grant, source, expires, at) = match event {
        CreditEvent::CreditsGranted {
            grant_id,
            source,
            expires_at,
            at,
            ..
        } => (
            "grant",
            None,
            Some(grant_id),
            Some(source.as_str()),
            *expires_at,
            at,
        ),
        CreditEvent::CreditsReserved { task_id, at, .. } => {
            ("reserve", Some(task_id), None, None, None, at)
        }
        CreditEvent::ReservationCaptured { task_id, at, .. } => {
            ("capture", Some(task_id), None, None, None, at)
        }
        CreditEvent::ReservationReleased { task_id, at, .. } => {
            ("release", Some(task_id), None, None, None, at)
        }
        CreditEvent::CreditsExpired { grant_id, at, .. } => {
            ("expire", None, Some(grant_id), None, None, at)
        }
        CreditEvent::CreditsClawedBack { grant_id, at, .. } => {
            ("claw_back", None, Some(grant_id), None, None, at)
        }
        CreditEvent::PurchaseRefunded { .. } => return None,
    };
    let delta = event.delta();
    *balance += delta;
    Some(Entry {
        account,
        seq,
        kind,
        amount: delta,
        balance_after: *balance,
        task: task.map(|t| t.to_string()),
        grant: grant.map(|g| g.to_string()),
        source: source.map(str::to_string),
        expires_at: expires.map(ms),
        at: ms(*at),
    })
}

/// Each account's `balance_after` on its newest row, before this batch (absent: no row).
///
/// The statement is not kept prepared (`persistent(false)`): Postgres plans it at each use
/// with the table as it is then. A kept statement first planned while the read model was
/// empty kept a sequential-scan plan as the table grew, which made a rebuild quadratic.
async fn last_balances<'a>(
    conn: &mut AnyConnection,
    accounts: &BTreeSet<&'a str>,
) -> Result<HashMap<&'a str, i64>> {
    let mut balances = HashMap::with_capacity(accounts.len());
    let ids: Vec<&'a str> = accounts.iter().copied().collect();
    for chunk in ids.chunks(ACCOUNTS_PER_READ) {
        // One backward probe of the primary key per account (`ORDER BY seq DESC LIMIT 1`);
        // a `seq = (SELECT max(seq) …)` filter instead read every row of the accounts.
        let rows = (1..=chunk.len())
            .map(|i| format!("(${i})"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT v.column1,
                    (SELECT balance_after FROM rm_credit_entries
                     WHERE account_id = v.column1 ORDER BY seq DESC LIMIT 1)
             FROM (VALUES {rows}) v"
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for a in chunk {
            q = q.bind(*a);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let id: String = row.try_get(0)?;
            let balance: Option<i64> = row.try_get(1)?;
            if let (Some(a), Some(balance)) = (accounts.get(id.as_str()), balance) {
                balances.insert(*a, balance);
            }
        }
    }
    Ok(balances)
}

/// Writes and empties `pending`, one statement per `ENTRY_ROWS_PER_STATEMENT` rows. A row
/// that exists already (same account and sequence) is left as it is.
async fn write_entries(conn: &mut AnyConnection, pending: &mut Vec<Entry<'_>>) -> Result<()> {
    for chunk in pending.chunks(ENTRY_ROWS_PER_STATEMENT) {
        let values = crate::read_models::row_placeholders(chunk.len(), 10);
        let sql = format!(
            "INSERT INTO rm_credit_entries
             (account_id, seq, kind, amount, balance_after, task_id, grant_id, source, expires_at, at)
             VALUES {values}
             ON CONFLICT (account_id, seq) DO NOTHING"
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(e.account)
                .bind(e.seq)
                .bind(e.kind)
                .bind(e.amount)
                .bind(e.balance_after)
                .bind(e.task.as_deref())
                .bind(e.grant.as_deref())
                .bind(e.source.as_deref())
                .bind(e.expires_at)
                .bind(e.at);
        }
        q.execute(&mut *conn).await?;
    }
    pending.clear();
    Ok(())
}
