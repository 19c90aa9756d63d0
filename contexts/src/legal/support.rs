//! Support correspondence (policy sections 2 and 5): holders open tickets and reply; staff
//! with the `support` (or `admin`) role answer and close them. Subject lines and messages
//! are sealed in the `support` category under the ticket's own key, destroyed 3 years
//! after the ticket closes (the retention run), at once when the holder deletes the ticket,
//! or with every other key of the account on erasure.

use super::Legal;
use crate::error::ServiceError;
use crate::identity::Ctx;
use chrono::{DateTime, Duration, Utc};
use journey_commands::mailer::Mail;
use journey_commands::VaultError;
use journey_domain::meta::Actor;
use journey_domain::ticket::{key_period, Author, Ticket, TicketCommand, TicketError};
use journey_domain::{DataCategory, Opened};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Support correspondence is kept this long after its ticket closes.
pub const KEEP_AFTER_CLOSING_DAYS: i64 = 3 * 365 + 1;
const MAX_MESSAGE: usize = 10_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTicket {
    pub subject: String,
    pub message: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    /// `holder` or `staff`.
    pub from: String,
    pub body: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TicketView {
    pub ticket_id: Uuid,
    pub account_id: Uuid,
    /// `open`, `closed` or `deleted`.
    pub status: String,
    pub subject: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Empty in lists.
    pub messages: Vec<MessageView>,
}

fn checked(field: &str, v: &str, max: usize) -> Result<String, ServiceError> {
    let v = v.trim();
    if v.is_empty() || v.chars().count() > max {
        return Err(ServiceError::bad(format!(
            "{field} must be 1 to {max} characters"
        )));
    }
    Ok(v.to_string())
}

impl Legal<'_> {
    async fn seal_ticket(
        &self,
        account: Uuid,
        ticket: Uuid,
        text: &str,
        at: DateTime<Utc>,
    ) -> Result<journey_domain::Sealed<String>, ServiceError> {
        self.vault
            .seal_in(
                &account.to_string(),
                DataCategory::Support,
                &key_period(ticket),
                at,
                &text.to_string(),
            )
            .await
            .map_err(|e| match e {
                // The ticket's key was destroyed on the holder's request (or its term
                // ended): the same answer as the aggregate gives a deleted ticket.
                VaultError::PeriodClosed => ServiceError::Conflict(TicketError::Erased.to_string()),
                other => other.into(),
            })
    }

    pub async fn open_ticket(
        &self,
        account: Uuid,
        t: NewTicket,
        ctx: &Ctx,
    ) -> Result<TicketView, ServiceError> {
        let subject = checked("subject", &t.subject, 200)?;
        crate::text::single_line("subject", &subject)?;
        let body = checked("message", &t.message, MAX_MESSAGE)?;
        let id = Uuid::new_v4();
        let cmd = TicketCommand::Open {
            account_id: account,
            subject: self.seal_ticket(account, id, &subject, ctx.at).await?,
            body: self.seal_ticket(account, id, &body, ctx.at).await?,
            at: ctx.at,
        };
        let meta = self
            .identity()
            .meta(Actor::Account(account), Some(account), ctx)
            .await?;
        self.stores
            .legal
            .tickets
            .execute(&id.to_string(), cmd, &meta)
            .await?;
        self.runner.nudge();
        self.ticket_view(id, true).await
    }

    /// The holder's own ticket, or 404 (a foreign ticket behaves as unknown).
    async fn own_ticket(&self, account: Uuid, id: Uuid) -> Result<Ticket, ServiceError> {
        let (t, _) = self.stores.legal.tickets.load(&id.to_string()).await?;
        if t.account_id != Some(account) {
            return Err(ServiceError::NotFound(format!("no ticket {id}")));
        }
        Ok(t)
    }

    pub async fn ticket_view(
        &self,
        id: Uuid,
        with_messages: bool,
    ) -> Result<TicketView, ServiceError> {
        let (t, _) = self.stores.legal.tickets.load(&id.to_string()).await?;
        self.view_of(id, &t, with_messages).await
    }

    /// `open`, `closed` or `deleted`.
    fn status_of(t: &Ticket) -> &'static str {
        if t.erased {
            "deleted"
        } else if t.closed_at.is_some() {
            "closed"
        } else {
            "open"
        }
    }

    async fn view_of(
        &self,
        id: Uuid,
        t: &Ticket,
        with_messages: bool,
    ) -> Result<TicketView, ServiceError> {
        let account = t
            .account_id
            .ok_or_else(|| ServiceError::NotFound(format!("no ticket {id}")))?;
        let open = |o: Opened<String>| match o {
            Opened::Value(v) => v,
            Opened::Erased => "[erased]".to_string(),
        };
        let subject = match &t.subject {
            Some(s) => open(self.vault.open(s).await?),
            None => String::new(),
        };
        let mut messages = Vec::new();
        if with_messages {
            for (author, body, at) in &t.messages {
                messages.push(MessageView {
                    from: match author {
                        Author::Holder => "holder".into(),
                        Author::Staff(_) => "staff".into(),
                    },
                    body: open(self.vault.open(body).await?),
                    at: *at,
                });
            }
        }
        Ok(TicketView {
            ticket_id: id,
            account_id: account,
            status: Self::status_of(t).into(),
            subject,
            opened_at: t.opened_at.unwrap_or_default(),
            closed_at: t.closed_at,
            messages,
        })
    }

    async fn ticket_ids(&self, account: Option<Uuid>) -> Result<Vec<Uuid>, ServiceError> {
        let ids: Vec<String> = match account {
            Some(a) => {
                self.runner.catch_up().await?;
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT aggregate_id FROM subject_streams WHERE subject = $1 AND aggregate_type = 'ticket'
                     ORDER BY first_position DESC",
                )
                .bind(a.to_string())
                .fetch_all(&self.db.any)
                .await?;
                rows.into_iter().map(|(id,)| id).collect()
            }
            None => {
                journey_projections::events::stream_ids(&self.db, "ticket", super::REGISTER_LIMIT)
                    .await?
            }
        };
        Ok(ids
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect())
    }

    /// Tickets of `account`, or every ticket, newest first; `status` filters.
    async fn listed_tickets(
        &self,
        account: Option<Uuid>,
        status: Option<&str>,
    ) -> Result<Vec<(Uuid, Ticket)>, ServiceError> {
        if let Some(s) = status {
            if !["open", "closed", "deleted"].contains(&s) {
                return Err(ServiceError::bad("status must be open, closed or deleted"));
            }
        }
        let mut out = Vec::new();
        for id in self.ticket_ids(account).await? {
            let (t, _) = self.stores.legal.tickets.load(&id.to_string()).await?;
            if t.account_id.is_some() && status.is_none_or(|s| s == Self::status_of(&t)) {
                out.push((id, t));
            }
        }
        Ok(out)
    }

    /// The holder's own tickets, newest first.
    pub async fn tickets(
        &self,
        account: Uuid,
        status: Option<&str>,
    ) -> Result<Vec<TicketView>, ServiceError> {
        let mut out = Vec::new();
        for (id, t) in self.listed_tickets(Some(account), status).await? {
            out.push(self.view_of(id, &t, false).await?);
        }
        Ok(out)
    }

    /// Every ticket for staff, newest first. Each holder listed is recorded in the audit
    /// trail (`tickets.list`) before any subject line is opened.
    pub async fn staff_tickets(
        &self,
        staff: Uuid,
        status: Option<&str>,
        reason: Option<&str>,
        ctx: &Ctx,
    ) -> Result<Vec<TicketView>, ServiceError> {
        let listed = self.listed_tickets(None, status).await?;
        let holders = listed.iter().filter_map(|(_, t)| t.account_id);
        self.identity()
            .audit_reads(staff, holders, "tickets.list", reason, ctx)
            .await?;
        let mut out = Vec::new();
        for (id, t) in &listed {
            out.push(self.view_of(*id, t, false).await?);
        }
        Ok(out)
    }

    pub async fn holder_ticket(&self, account: Uuid, id: Uuid) -> Result<TicketView, ServiceError> {
        self.own_ticket(account, id).await?;
        self.ticket_view(id, true).await
    }

    /// A message from the holder (`staff` = None) or from staff.
    pub async fn post_ticket_message(
        &self,
        account: Option<Uuid>,
        staff: Option<Uuid>,
        id: Uuid,
        m: NewMessage,
        ctx: &Ctx,
    ) -> Result<TicketView, ServiceError> {
        let body = checked("message", &m.message, MAX_MESSAGE)?;
        let (owner, author, actor) = self.ticket_writer(account, staff, id).await?;
        self.audit_ticket_write(staff, owner, id, "ticket.reply", ctx)
            .await?;
        let cmd = TicketCommand::Post {
            author,
            body: self.seal_ticket(owner, id, &body, ctx.at).await?,
            at: ctx.at,
        };
        let meta = self.identity().meta(actor, Some(owner), ctx).await?;
        self.stores
            .legal
            .tickets
            .execute(&id.to_string(), cmd, &meta)
            .await
            .map_err(crate::error::refused_as_conflict)?;
        if staff.is_some() {
            self.tell_holder(owner, id).await;
            return self.staff_ack(id).await;
        }
        self.ticket_view(id, true).await
    }

    /// Who writes to a ticket: the holder (only their own ticket) or a staff member.
    async fn ticket_writer(
        &self,
        account: Option<Uuid>,
        staff: Option<Uuid>,
        id: Uuid,
    ) -> Result<(Uuid, Author, Actor), ServiceError> {
        let owner = match account {
            Some(a) => {
                self.own_ticket(a, id).await?;
                a
            }
            None => self.ticket_owner(id).await?,
        };
        Ok(match staff {
            Some(s) => (owner, Author::Staff(s), Actor::Staff(s)),
            None => (owner, Author::Holder, Actor::Account(owner)),
        })
    }

    /// A staff member's write to a holder's ticket is recorded (the ticket is the reason)
    /// before it is made; the holder's own writes are not staff access.
    async fn audit_ticket_write(
        &self,
        staff: Option<Uuid>,
        owner: Uuid,
        id: Uuid,
        action: &str,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        match staff {
            Some(s) => {
                let reason = format!("ticket {id}");
                self.identity()
                    .audit_read(s, Some(owner), action, Some(&reason), ctx)
                    .await
            }
            None => Ok(()),
        }
    }

    /// What a staff write answers: the ticket's state without its text (reads of the text
    /// go through the audited `GET /admin/v1/tickets/{id}`).
    async fn staff_ack(&self, id: Uuid) -> Result<TicketView, ServiceError> {
        let mut v = self.ticket_view(id, false).await?;
        v.subject = String::new();
        Ok(v)
    }

    /// The account a ticket belongs to, without opening anything.
    pub async fn ticket_owner(&self, id: Uuid) -> Result<Uuid, ServiceError> {
        let (t, _) = self.stores.legal.tickets.load(&id.to_string()).await?;
        t.account_id
            .ok_or_else(|| ServiceError::NotFound(format!("no ticket {id}")))
    }

    /// The reply itself stays in the dashboard: the email only says there is one.
    async fn tell_holder(&self, owner: Uuid, id: Uuid) {
        if let Ok(Some(to)) = self.identity().email_of(owner).await {
            let mail = Mail {
                to,
                subject: "New reply to your JourneyAPI support ticket".into(),
                body: format!(
                    "Support answered your ticket {id}. Read it at {}/v1/support/tickets/{id}.\n",
                    self.cfg.public_url()
                ),
            };
            if let Err(e) = self.mailer.send(mail).await {
                tracing::warn!(error = %format!("{e:#}"), "support reply notice not sent");
            }
        }
    }

    pub async fn close_ticket(
        &self,
        account: Option<Uuid>,
        staff: Option<Uuid>,
        id: Uuid,
        ctx: &Ctx,
    ) -> Result<TicketView, ServiceError> {
        let (owner, author, actor) = self.ticket_writer(account, staff, id).await?;
        self.audit_ticket_write(staff, owner, id, "ticket.close", ctx)
            .await?;
        let meta = self.identity().meta(actor, Some(owner), ctx).await?;
        self.stores
            .legal
            .tickets
            .execute(
                &id.to_string(),
                TicketCommand::Close { author, at: ctx.at },
                &meta,
            )
            .await
            .map_err(crate::error::refused_as_conflict)?;
        self.runner.nudge();
        if staff.is_some() {
            return self.staff_ack(id).await;
        }
        self.ticket_view(id, true).await
    }

    /// The holder's request to delete a ticket's correspondence: its key is destroyed and
    /// its events are compacted into tombstones by the next retention run.
    pub async fn delete_ticket(
        &self,
        account: Uuid,
        id: Uuid,
        ctx: &Ctx,
    ) -> Result<TicketView, ServiceError> {
        self.own_ticket(account, id).await?;
        self.vault
            .destroy_period(
                &account.to_string(),
                DataCategory::Support,
                &key_period(id),
                "deleted at the holder's request",
                ctx.at,
            )
            .await?;
        let meta = self
            .identity()
            .meta(Actor::Account(account), Some(account), ctx)
            .await?;
        self.stores
            .legal
            .tickets
            .execute(&id.to_string(), TicketCommand::Erase { at: ctx.at }, &meta)
            .await
            .map_err(crate::error::refused_as_conflict)?;
        self.runner.nudge();
        self.ticket_view(id, false).await
    }

    /// Retention: destroys the keys of tickets closed more than 3 years before `as_of`.
    pub async fn expire_support_keys(
        &self,
        as_of: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<u64, ServiceError> {
        let mut n = 0;
        for k in self.vault.live_periodic_keys().await? {
            let Some(ticket) = k
                .period
                .strip_prefix("ticket-")
                .and_then(|t| Uuid::parse_str(t).ok())
            else {
                continue;
            };
            let (t, _) = self.stores.legal.tickets.load(&ticket.to_string()).await?;
            let due = t
                .closed_at
                .is_some_and(|c| c + Duration::days(KEEP_AFTER_CLOSING_DAYS) <= as_of);
            if due
                && (dry_run
                    || self
                        .vault
                        .destroy_key(
                            &k.key_id,
                            "retention: 3 years after the ticket closed",
                            as_of,
                        )
                        .await?)
            {
                n += 1;
            }
        }
        Ok(n)
    }
}
