//! Read models for staff work: which streams belong to which data subject, who holds
//! which staff role, and the audit trail of staff reads.

use crate::events::StoredEvent;
use crate::read_models::ms;
use crate::runner::Projection;
use anyhow::{Context, Result};
use async_trait::async_trait;
use cqrs_es::Aggregate;
use journey_domain::api_key::{ApiKey, ApiKeyEvent};
use journey_domain::breach::Breach;
use journey_domain::child_report::ChildReport;
use journey_domain::consent::{ConsentEvent, Consents, Purpose};
use journey_domain::magic_link::{MagicLink, MagicLinkEvent};
use journey_domain::policy::{PolicyAck, PolicyVersion};
use journey_domain::requests::{DataSubjectRequest, RequestEvent};
use journey_domain::session::{Session, SessionEvent};
use journey_domain::staff::{StaffEvent, StaffMember};
use journey_domain::stripe_event_log::StripeEventLog;
use journey_domain::takedown::Takedown;
use journey_domain::task::{Task, TaskEvent};
use journey_domain::ticket::{Ticket, TicketEvent};
use journey_domain::usage::{account_of, UsageDay};
use sqlx::AnyConnection;

/// The data subject a stream belongs to. Streams of account-keyed aggregates are named
/// by the account id; sessions, keys and sign-in links name it in their first event.
fn subject_of(e: &StoredEvent) -> Result<Option<String>> {
    Ok(match e.aggregate_type.as_str() {
        t if t == Session::TYPE => match e.decode_known::<SessionEvent>()? {
            Some(SessionEvent::SessionStarted { account_id, .. }) => Some(account_id.to_string()),
            _ => None,
        },
        t if t == ApiKey::TYPE => match e.decode_known::<ApiKeyEvent>()? {
            Some(ApiKeyEvent::ApiKeyCreated { account_id, .. }) => Some(account_id.to_string()),
            _ => None,
        },
        t if t == MagicLink::TYPE => match e.decode_known::<MagicLinkEvent>()? {
            Some(MagicLinkEvent::MagicLinkIssued { purpose, .. }) => {
                Some(purpose.account_id().to_string())
            }
            _ => None,
        },
        t if t == DataSubjectRequest::TYPE => match e.decode_known::<RequestEvent>()? {
            Some(RequestEvent::RequestReceived { subject, .. }) => Some(subject.to_string()),
            _ => None,
        },
        t if t == Task::TYPE => match e.decode_known::<TaskEvent>()? {
            Some(TaskEvent::TaskCreated { spec, .. }) => Some(spec.account_id.to_string()),
            _ => None,
        },
        t if t == UsageDay::TYPE => account_of(&e.aggregate_id).map(|a| a.to_string()),
        t if t == Ticket::TYPE => match e.decode_known::<TicketEvent>()? {
            Some(TicketEvent::TicketOpened { account_id, .. }) => Some(account_id.to_string()),
            _ => None,
        },
        // `<version>|<account>`.
        t if t == PolicyAck::TYPE => e.aggregate_id.rsplit_once('|').map(|(_, a)| a.to_string()),
        // Registers and cases name accounts by id but are not an account's own data: a
        // reporter's or claimant's contact must not reach the reported holder's export.
        t if t == PolicyVersion::TYPE
            || t == ChildReport::TYPE
            || t == Breach::TYPE
            || t == Takedown::TYPE
            || t == StripeEventLog::TYPE =>
        {
            None
        }
        // Retention runs concern no one.
        "retention" => None,
        // Every other aggregate is keyed by the account it concerns.
        _ => Some(e.aggregate_id.clone()),
    })
}

/// `subject_streams`: every stream of a data subject, for exports, staff views and purges.
/// Holds only ids and is kept after erasure (the purge walks it).
///
/// A stream's subject is fixed by its first event (sequence 1): the typed streams name it
/// in their opening event (`SessionStarted`, `ApiKeyCreated`, `TaskCreated`, …) and the
/// others are keyed by it. So only first events can add a row, and a batch's rows go out
/// in one multi-row statement: the later events of busy streams (a ledger's reservations,
/// a task's progress) cost nothing here, where each used to probe the table.
pub struct SubjectStreams;

/// 4 values a row.
const STREAM_ROWS_PER_STATEMENT: usize = 1000;

#[async_trait]
impl Projection for SubjectStreams {
    fn name(&self) -> &'static str {
        "subject_streams"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["subject_streams"]
    }
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        let mut rows: Vec<(String, &StoredEvent)> = Vec::new();
        for e in events.iter().filter(|e| e.sequence == 1) {
            if let Some(subject) = subject_of(e).with_context(|| e.what())? {
                rows.push((subject, e));
            }
        }
        for chunk in rows.chunks(STREAM_ROWS_PER_STATEMENT) {
            let values = crate::read_models::row_placeholders(chunk.len(), 4);
            let sql = format!(
                "INSERT INTO subject_streams (subject, aggregate_type, aggregate_id, first_position)
                 VALUES {values} ON CONFLICT (aggregate_type, aggregate_id) DO NOTHING"
            );
            let mut q = sqlx::query(&sql);
            for (subject, e) in chunk {
                q = q
                    .bind(subject.as_str())
                    .bind(e.aggregate_type.as_str())
                    .bind(e.aggregate_id.as_str())
                    .bind(e.cursor.position);
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// `rm_staff_roles` and `rm_audit`: roles held, and every staff read (who, whose, what,
/// why, when). Audit rows are not deleted on erasure: they name the subject by id only.
pub struct Staff;

#[async_trait]
impl Projection for Staff {
    fn name(&self) -> &'static str {
        "staff"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_staff_roles", "rm_audit"]
    }
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        for e in events {
            self.apply_one(conn, e).await.with_context(|| e.what())?;
        }
        Ok(())
    }
}

impl Staff {
    async fn apply_one(&self, conn: &mut AnyConnection, e: &StoredEvent) -> Result<()> {
        if e.aggregate_type != StaffMember::TYPE {
            return Ok(());
        }
        let Some(event) = e.decode_known::<StaffEvent>()? else {
            return Ok(());
        };
        let staff = e.aggregate_id.as_str();
        match event {
            StaffEvent::RoleGranted { role, at } => {
                sqlx::query(
                    "INSERT INTO rm_staff_roles (account_id, role, granted_at) VALUES ($1, $2, $3)
                     ON CONFLICT (account_id, role) DO NOTHING",
                )
                .bind(staff)
                .bind(role.as_str())
                .bind(at.timestamp_millis())
                .execute(&mut *conn)
                .await?;
            }
            StaffEvent::RoleRevoked { role, .. } => {
                sqlx::query("DELETE FROM rm_staff_roles WHERE account_id = $1 AND role = $2")
                    .bind(staff)
                    .bind(role.as_str())
                    .execute(&mut *conn)
                    .await?;
            }
            StaffEvent::StaffRead {
                subject,
                action,
                reason,
                at,
            } => {
                sqlx::query(
                    "INSERT INTO rm_audit (position, actor, subject, action, reason, at)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (position) DO NOTHING",
                )
                .bind(e.cursor.position)
                .bind(staff)
                .bind(subject.map(|s| s.to_string()))
                .bind(action)
                .bind(reason)
                .bind(at.timestamp_millis())
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(())
    }
}

/// `rm_consents`: the processing gates per account. Deleted with the account on erasure.
pub struct ConsentGates;

#[async_trait]
impl Projection for ConsentGates {
    fn name(&self) -> &'static str {
        "consents"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_consents"]
    }
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        for e in events {
            self.apply_one(conn, e).await.with_context(|| e.what())?;
        }
        Ok(())
    }
}

impl ConsentGates {
    async fn apply_one(&self, conn: &mut AnyConnection, e: &StoredEvent) -> Result<()> {
        if let Some(account) = crate::read_models::erased_account(e) {
            sqlx::query("DELETE FROM rm_consents WHERE account_id = $1")
                .bind(account)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
        if e.aggregate_type != Consents::TYPE {
            return Ok(());
        }
        let Some(event) = e.decode_known::<ConsentEvent>()? else {
            return Ok(());
        };
        let id = e.aggregate_id.as_str();
        sqlx::query(
            "INSERT INTO rm_consents (account_id, updated_at) VALUES ($1, $2)
             ON CONFLICT (account_id) DO NOTHING",
        )
        .bind(id)
        .bind(e.committed_at)
        .execute(&mut *conn)
        .await?;
        let column = |p: Purpose| match p {
            Purpose::AnalyticsCookies => "analytics_cookies",
            Purpose::MarketingEmail => "marketing_email",
        };
        let set = match event {
            ConsentEvent::ConsentGiven {
                purpose: Purpose::MarketingEmail,
                ..
            } => "marketing_email = 1, marketing_objected = 0".to_string(),
            ConsentEvent::ConsentGiven { purpose, .. } => format!("{} = 1", column(purpose)),
            ConsentEvent::ConsentWithdrawn { purpose, .. } => format!("{} = 0", column(purpose)),
            ConsentEvent::MarketingObjected { .. } => "marketing_objected = 1".into(),
            ConsentEvent::ProcessingRestricted { .. } => "restricted = 1".into(),
            ConsentEvent::RestrictionLifted { .. } => "restricted = 0".into(),
        };
        sqlx::query(&format!(
            "UPDATE rm_consents SET {set}, updated_at = $1 WHERE account_id = $2"
        ))
        .bind(e.committed_at)
        .bind(id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// `rm_requests`: data-subject requests by status and due date. Kept after erasure (the
/// request itself is a record of a legal duty; it names the subject by id only).
pub struct Requests;

#[async_trait]
impl Projection for Requests {
    fn name(&self) -> &'static str {
        "requests"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_requests"]
    }
    async fn apply(&self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<()> {
        for e in events {
            self.apply_one(conn, e).await.with_context(|| e.what())?;
        }
        Ok(())
    }
}

impl Requests {
    async fn apply_one(&self, conn: &mut AnyConnection, e: &StoredEvent) -> Result<()> {
        if e.aggregate_type != DataSubjectRequest::TYPE {
            return Ok(());
        }
        let Some(event) = e.decode_known::<RequestEvent>()? else {
            return Ok(());
        };
        let id = e.aggregate_id.as_str();
        let (status, closed_at) = match event {
            RequestEvent::RequestReceived {
                subject,
                kind,
                channel,
                due_at,
                at,
            } => {
                let text = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
                sqlx::query(
                    "INSERT INTO rm_requests (request_id, subject, kind, channel, status, received_at, due_at)
                     VALUES ($1, $2, $3, $4, 'received', $5, $6) ON CONFLICT (request_id) DO NOTHING",
                )
                .bind(id)
                .bind(subject.to_string())
                .bind(text(serde_json::to_value(kind)?))
                .bind(text(serde_json::to_value(channel)?))
                .bind(ms(at))
                .bind(ms(due_at))
                .execute(&mut *conn)
                .await?;
                return Ok(());
            }
            RequestEvent::RequestVerified { .. } => ("verified", None),
            RequestEvent::RequestStarted { .. } => ("in_progress", None),
            RequestEvent::RequestCompleted { at, .. } => ("completed", Some(ms(at))),
            RequestEvent::RequestRejected { at, .. } => ("rejected", Some(ms(at))),
            RequestEvent::DueReminderSent { .. } => {
                sqlx::query("UPDATE rm_requests SET reminded = 1 WHERE request_id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                return Ok(());
            }
            RequestEvent::VerificationCodeIssued { .. }
            | RequestEvent::VerificationFailed { .. } => return Ok(()),
        };
        sqlx::query("UPDATE rm_requests SET status = $1, closed_at = $2 WHERE request_id = $3")
            .bind(status)
            .bind(closed_at)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
