//! Data-subject requests (access, correction, deletion, portability, restriction,
//! objection): one aggregate per request (id = request id). A request is due 30 days after
//! receipt and moves received → verified → in progress → completed or rejected; every step
//! is an event, its actor in the metadata. The requester proves they hold the account's
//! email with a one-time code (10 minutes, 3 attempts) of which only an HMAC is stored.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const DUE_AFTER_DAYS: i64 = 30;
pub const CODE_TTL_MINUTES: i64 = 10;
pub const CODE_ATTEMPTS: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestType {
    Access,
    Correction,
    Deletion,
    Portability,
    Restriction,
    Objection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Submitted by the signed-in holder.
    Account,
    /// Arrived by email; recorded by staff.
    Email,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    #[default]
    New,
    Received,
    Verified,
    InProgress,
    Completed,
    Rejected,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::New => "new",
            RequestStatus::Received => "received",
            RequestStatus::Verified => "verified",
            RequestStatus::InProgress => "in_progress",
            RequestStatus::Completed => "completed",
            RequestStatus::Rejected => "rejected",
        }
    }

    pub fn is_closed(self) -> bool {
        matches!(self, RequestStatus::Completed | RequestStatus::Rejected)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RequestCommand {
    Receive {
        subject: Uuid,
        kind: RequestType,
        channel: Channel,
        code_hash: String,
        at: DateTime<Utc>,
    },
    /// A new code (the old one expired or its attempts ran out).
    ReissueCode {
        code_hash: String,
        at: DateTime<Utc>,
    },
    Verify {
        code_hash: String,
        at: DateTime<Utc>,
    },
    Start {
        at: DateTime<Utc>,
    },
    Complete {
        note: String,
        at: DateTime<Utc>,
    },
    Reject {
        reason: String,
        at: DateTime<Utc>,
    },
    Remind {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RequestEvent {
    RequestReceived {
        subject: Uuid,
        kind: RequestType,
        channel: Channel,
        due_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Only the HMAC of the code is stored.
    VerificationCodeIssued {
        code_hash: String,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    VerificationFailed {
        attempts_left: u8,
        at: DateTime<Utc>,
    },
    RequestVerified {
        at: DateTime<Utc>,
    },
    RequestStarted {
        at: DateTime<Utc>,
    },
    RequestCompleted {
        note: String,
        at: DateTime<Utc>,
    },
    RequestRejected {
        reason: String,
        at: DateTime<Utc>,
    },
    DueReminderSent {
        at: DateTime<Utc>,
    },
}

crate::domain_event!(RequestEvent, "1", {
    RequestReceived, VerificationCodeIssued, VerificationFailed, RequestVerified,
    RequestStarted, RequestCompleted, RequestRejected, DueReminderSent
});

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error("request already exists")]
    Exists,
    #[error("no such request")]
    NotFound,
    #[error("the request is {0}; this step is not possible now")]
    WrongState(&'static str),
    #[error("the verification code has expired or its attempts are used up; ask for a new one")]
    CodeExpired,
    #[error("wrong verification code; {0} attempt(s) left")]
    WrongCode(u8),
    #[error("a reason is required")]
    NoReason,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct DataSubjectRequest {
    pub subject: Option<Uuid>,
    pub kind: Option<RequestType>,
    pub status: RequestStatus,
    pub due_at: Option<DateTime<Utc>>,
    code_hash: Option<String>,
    code_expires: Option<DateTime<Utc>>,
    attempts_left: u8,
    pub reminded: bool,
}

impl DataSubjectRequest {
    fn state_err(&self) -> RequestError {
        RequestError::WrongState(self.status.as_str())
    }
}

impl Aggregate for DataSubjectRequest {
    const TYPE: &'static str = "dsr";
    type Command = RequestCommand;
    type Event = RequestEvent;
    type Error = RequestError;
    type Services = ();

    async fn handle(
        &mut self,
        command: RequestCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), RequestError> {
        use RequestStatus as S;
        let code_issued = |code_hash, at: DateTime<Utc>| RequestEvent::VerificationCodeIssued {
            code_hash,
            expires_at: at + Duration::minutes(CODE_TTL_MINUTES),
            at,
        };
        match command {
            RequestCommand::Receive {
                subject,
                kind,
                channel,
                code_hash,
                at,
            } => {
                if self.status != S::New {
                    return Err(RequestError::Exists);
                }
                let received = RequestEvent::RequestReceived {
                    subject,
                    kind,
                    channel,
                    due_at: at + Duration::days(DUE_AFTER_DAYS),
                    at,
                };
                sink.write(received, self).await;
                sink.write(code_issued(code_hash, at), self).await;
            }
            RequestCommand::ReissueCode { code_hash, at } => {
                if self.status != S::Received {
                    return Err(self.state_err());
                }
                sink.write(code_issued(code_hash, at), self).await;
            }
            RequestCommand::Verify { code_hash, at } => {
                match self.status {
                    S::New => return Err(RequestError::NotFound),
                    S::Received => {}
                    _ => return Err(self.state_err()),
                }
                if self.attempts_left == 0 || self.code_expires.is_none_or(|e| at >= e) {
                    return Err(RequestError::CodeExpired);
                }
                if self.code_hash.as_deref() != Some(code_hash.as_str()) {
                    let attempts_left = self.attempts_left - 1;
                    // The failure is recorded (the error below is not a rollback).
                    sink.write(RequestEvent::VerificationFailed { attempts_left, at }, self)
                        .await;
                    return Ok(());
                }
                sink.write(RequestEvent::RequestVerified { at }, self).await;
            }
            RequestCommand::Start { at } => {
                if self.status != S::Verified {
                    return Err(self.state_err());
                }
                sink.write(RequestEvent::RequestStarted { at }, self).await;
            }
            RequestCommand::Complete { note, at } => {
                if self.status != S::InProgress {
                    return Err(self.state_err());
                }
                sink.write(RequestEvent::RequestCompleted { note, at }, self)
                    .await;
            }
            RequestCommand::Reject { reason, at } => {
                if self.status == S::New || self.status.is_closed() {
                    return Err(self.state_err());
                }
                if reason.trim().is_empty() {
                    return Err(RequestError::NoReason);
                }
                sink.write(RequestEvent::RequestRejected { reason, at }, self)
                    .await;
            }
            RequestCommand::Remind { at } => {
                if !self.reminded && self.status != S::New && !self.status.is_closed() {
                    sink.write(RequestEvent::DueReminderSent { at }, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: RequestEvent) {
        match event {
            RequestEvent::RequestReceived {
                subject,
                kind,
                due_at,
                ..
            } => {
                self.subject = Some(subject);
                self.kind = Some(kind);
                self.status = RequestStatus::Received;
                self.due_at = Some(due_at);
            }
            RequestEvent::VerificationCodeIssued {
                code_hash,
                expires_at,
                ..
            } => {
                self.code_hash = Some(code_hash);
                self.code_expires = Some(expires_at);
                self.attempts_left = CODE_ATTEMPTS;
            }
            RequestEvent::VerificationFailed { attempts_left, .. } => {
                self.attempts_left = attempts_left
            }
            RequestEvent::RequestVerified { .. } => {
                self.status = RequestStatus::Verified;
                self.code_hash = None;
            }
            RequestEvent::RequestStarted { .. } => self.status = RequestStatus::InProgress,
            RequestEvent::RequestCompleted { .. } => self.status = RequestStatus::Completed,
            RequestEvent::RequestRejected { .. } => self.status = RequestStatus::Rejected,
            RequestEvent::DueReminderSent { .. } => self.reminded = true,
        }
    }
}

impl DataSubjectRequest {
    /// Attempts left on the current code (for error messages).
    pub fn attempts_left(&self) -> u8 {
        self.attempts_left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn three_wrong_codes_burn_the_code_and_steps_follow_the_order() {
        let at = Utc::now();
        let mut r = DataSubjectRequest::default();
        let run = |r: &mut DataSubjectRequest, c: RequestCommand| {
            let mut r2 = r.clone();
            async move {
                let sink = EventSink::default();
                let out = r2.handle(c, &(), &sink).await;
                (r2, out, sink.collect().await)
            }
        };
        let (next, out, _) = run(
            &mut r,
            RequestCommand::Receive {
                subject: Uuid::nil(),
                kind: RequestType::Access,
                channel: Channel::Account,
                code_hash: "good".into(),
                at,
            },
        )
        .await;
        assert!(out.is_ok());
        r = next;
        let (next, out, _) = run(&mut r, RequestCommand::Start { at }).await;
        assert_eq!(out, Err(RequestError::WrongState("received")));
        r = next;
        for left in [2u8, 1, 0] {
            let (next, _, events) = run(
                &mut r,
                RequestCommand::Verify {
                    code_hash: "bad".into(),
                    at,
                },
            )
            .await;
            assert_eq!(
                events,
                vec![RequestEvent::VerificationFailed {
                    attempts_left: left,
                    at
                }]
            );
            r = next;
        }
        let (_, out, _) = run(
            &mut r,
            RequestCommand::Verify {
                code_hash: "good".into(),
                at,
            },
        )
        .await;
        assert_eq!(out, Err(RequestError::CodeExpired), "burnt after three");
        // A new code works within ten minutes, not after.
        let (mut fresh, _, _) = run(
            &mut r,
            RequestCommand::ReissueCode {
                code_hash: "new".into(),
                at,
            },
        )
        .await;
        let late = RequestCommand::Verify {
            code_hash: "new".into(),
            at: at + Duration::minutes(CODE_TTL_MINUTES),
        };
        assert_eq!(
            run(&mut fresh, late).await.1,
            Err(RequestError::CodeExpired)
        );
        let in_time = RequestCommand::Verify {
            code_hash: "new".into(),
            at: at + Duration::minutes(9),
        };
        let (verified, out, _) = run(&mut fresh, in_time).await;
        assert!(out.is_ok());
        assert_eq!(verified.status, RequestStatus::Verified);
    }
}
