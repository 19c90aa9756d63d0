//! Support tickets (aggregate `ticket`, id = ticket id). The holder opens a ticket and
//! replies; support staff answer and close it. Messages and the subject line are sealed in
//! the `support` category under a key of their own ticket (period `ticket-<id>`), so a
//! ticket's correspondence is destroyed 3 years after it closes, or at once when the holder
//! asks, without touching other tickets; erasing the account destroys them all.

use crate::sealed::Sealed;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The support-key period of a ticket.
pub fn key_period(ticket: Uuid) -> String {
    format!("ticket-{ticket}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Author {
    Holder,
    Staff(Uuid),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TicketCommand {
    Open {
        account_id: Uuid,
        subject: Sealed<String>,
        body: Sealed<String>,
        at: DateTime<Utc>,
    },
    Post {
        author: Author,
        body: Sealed<String>,
        at: DateTime<Utc>,
    },
    Close {
        author: Author,
        at: DateTime<Utc>,
    },
    /// The holder asked for the correspondence to be deleted (its key is destroyed).
    Erase {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TicketEvent {
    TicketOpened {
        account_id: Uuid,
        subject: Sealed<String>,
        at: DateTime<Utc>,
    },
    TicketMessagePosted {
        author: Author,
        body: Sealed<String>,
        at: DateTime<Utc>,
    },
    TicketClosed {
        author: Author,
        at: DateTime<Utc>,
    },
    TicketErased {
        at: DateTime<Utc>,
    },
}

crate::domain_event!(TicketEvent, "1", {
    TicketOpened, TicketMessagePosted, TicketClosed, TicketErased
});

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TicketError {
    #[error("no such ticket")]
    Unknown,
    #[error("the ticket already exists")]
    AlreadyOpen,
    #[error("the ticket is closed")]
    Closed,
    #[error("the ticket's correspondence was deleted")]
    Erased,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ticket {
    pub account_id: Option<Uuid>,
    pub subject: Option<Sealed<String>>,
    pub messages: Vec<(Author, Sealed<String>, DateTime<Utc>)>,
    pub opened_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub erased: bool,
}

impl Aggregate for Ticket {
    const TYPE: &'static str = "ticket";
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Error = TicketError;
    type Services = ();

    async fn handle(
        &mut self,
        command: TicketCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), TicketError> {
        if let TicketCommand::Open {
            account_id,
            subject,
            body,
            at,
        } = command
        {
            if self.account_id.is_some() {
                return Err(TicketError::AlreadyOpen);
            }
            sink.write(
                TicketEvent::TicketOpened {
                    account_id,
                    subject,
                    at,
                },
                self,
            )
            .await;
            sink.write(
                TicketEvent::TicketMessagePosted {
                    author: Author::Holder,
                    body,
                    at,
                },
                self,
            )
            .await;
            return Ok(());
        }
        if self.account_id.is_none() {
            return Err(TicketError::Unknown);
        }
        if self.erased {
            return Err(TicketError::Erased);
        }
        let event = match command {
            TicketCommand::Open { .. } => unreachable!("handled above"),
            TicketCommand::Post { author, body, at } => {
                if self.closed_at.is_some() {
                    return Err(TicketError::Closed);
                }
                TicketEvent::TicketMessagePosted { author, body, at }
            }
            TicketCommand::Close { author, at } => {
                if self.closed_at.is_some() {
                    return Ok(());
                }
                TicketEvent::TicketClosed { author, at }
            }
            TicketCommand::Erase { at } => TicketEvent::TicketErased { at },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: TicketEvent) {
        match event {
            TicketEvent::TicketOpened {
                account_id,
                subject,
                at,
            } => {
                self.account_id = Some(account_id);
                self.subject = Some(subject);
                self.opened_at = Some(at);
            }
            TicketEvent::TicketMessagePosted { author, body, at } => {
                self.messages.push((author, body, at))
            }
            TicketEvent::TicketClosed { at, .. } => self.closed_at = Some(at),
            TicketEvent::TicketErased { at } => {
                self.erased = true;
                self.closed_at.get_or_insert(at);
            }
        }
    }
}
