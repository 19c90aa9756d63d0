//! A signed-in session. The aggregate id is the SHA-256 of the opaque session token, so a
//! request authenticates by hashing its cookie and loading this stream; the token itself is
//! never stored.

use crate::account::SignInMethod;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    Logout,
    AccountErased,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionCommand {
    Start {
        account_id: Uuid,
        method: SignInMethod,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    End {
        reason: SessionEndReason,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SessionEvent {
    SessionStarted {
        account_id: Uuid,
        method: SignInMethod,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    SessionEnded {
        reason: SessionEndReason,
        at: DateTime<Utc>,
    },
}

crate::domain_event!(SessionEvent, "1", { SessionStarted, SessionEnded });

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SessionError {
    #[error("session already started")]
    AlreadyStarted,
    #[error("no such session")]
    Unknown,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Session {
    pub account_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
    pub ended: bool,
}

impl Session {
    /// The account this session signs in, if it is still valid at `at`.
    pub fn active_account(&self, at: DateTime<Utc>) -> Option<Uuid> {
        match (self.account_id, self.expires_at) {
            (Some(id), Some(exp)) if !self.ended && at < exp => Some(id),
            _ => None,
        }
    }
}

impl Aggregate for Session {
    const TYPE: &'static str = "session";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SessionCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SessionError> {
        match command {
            SessionCommand::Start {
                account_id,
                method,
                expires_at,
                at,
            } => {
                if self.account_id.is_some() {
                    return Err(SessionError::AlreadyStarted);
                }
                sink.write(
                    SessionEvent::SessionStarted {
                        account_id,
                        method,
                        expires_at,
                        at,
                    },
                    self,
                )
                .await;
            }
            SessionCommand::End { reason, at } => {
                if self.account_id.is_none() {
                    return Err(SessionError::Unknown);
                }
                // Ending an ended session is a no-op, so logout is idempotent.
                if !self.ended {
                    sink.write(SessionEvent::SessionEnded { reason, at }, self)
                        .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::SessionStarted {
                account_id,
                expires_at,
                ..
            } => {
                self.account_id = Some(account_id);
                self.expires_at = Some(expires_at);
            }
            SessionEvent::SessionEnded { .. } => self.ended = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn session_is_active_until_expiry_or_end() {
        let at = Utc::now();
        let id = Uuid::new_v4();
        let mut s = Session::default();
        s.apply(SessionEvent::SessionStarted {
            account_id: id,
            method: SignInMethod::MagicLink,
            expires_at: at + Duration::hours(1),
            at,
        });
        assert_eq!(s.active_account(at), Some(id));
        assert_eq!(s.active_account(at + Duration::hours(1)), None);
        s.apply(SessionEvent::SessionEnded {
            reason: SessionEndReason::Logout,
            at,
        });
        assert_eq!(s.active_account(at), None);
    }
}
