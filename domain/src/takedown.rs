//! Takedown cases (aggregate `takedown`, id = case id). A claimant (no account needed)
//! names a task or a result image URL and the grounds; staff action or reject the case,
//! once. Actioning removes the task's result URLs from every API response, webhook and
//! export (the task records `ResultsTakenDown`), and the claimant and the account holder
//! are told; each step is an event. The claimant's contact and grounds are sealed under
//! the case's own subject (`takedown:<id>`).

use crate::sealed::Sealed;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakedownFiled {
    pub claimant_contact: Sealed<String>,
    pub grounds: Sealed<String>,
    /// The task named, or found from the image URL; `None` when nothing matched.
    pub task_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TakedownCommand {
    File(Box<TakedownFiled>),
    Action {
        staff: Uuid,
        reason: String,
        at: DateTime<Utc>,
    },
    Reject {
        staff: Uuid,
        reason: String,
        at: DateTime<Utc>,
    },
    RecordNotice {
        /// `claimant` or `holder`.
        to: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TakedownEvent {
    TakedownFiled(Box<TakedownFiled>),
    TakedownActioned {
        staff: Uuid,
        reason: String,
        at: DateTime<Utc>,
    },
    TakedownRejected {
        staff: Uuid,
        reason: String,
        at: DateTime<Utc>,
    },
    TakedownNoticeSent {
        to: String,
        at: DateTime<Utc>,
    },
}

crate::domain_event!(TakedownEvent, "1", {
    TakedownFiled, TakedownActioned, TakedownRejected, TakedownNoticeSent
});

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TakedownError {
    #[error("no such case")]
    Unknown,
    #[error("the case was already filed")]
    AlreadyFiled,
    #[error("the case was already {0}")]
    AlreadyDecided(&'static str),
    #[error("the case names no task of ours, so there is nothing to take down")]
    NoTask,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Open,
    Actioned,
    Rejected,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Open => "open",
            CaseStatus::Actioned => "actioned",
            CaseStatus::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Takedown {
    pub filed: Option<Box<TakedownFiled>>,
    pub status: Option<CaseStatus>,
    pub notices: Vec<String>,
}

impl Aggregate for Takedown {
    const TYPE: &'static str = "takedown";
    type Command = TakedownCommand;
    type Event = TakedownEvent;
    type Error = TakedownError;
    type Services = ();

    async fn handle(
        &mut self,
        command: TakedownCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), TakedownError> {
        let event = match (command, self.status) {
            (TakedownCommand::File(f), None) => TakedownEvent::TakedownFiled(f),
            (TakedownCommand::File(_), Some(_)) => return Err(TakedownError::AlreadyFiled),
            (_, None) => return Err(TakedownError::Unknown),
            (TakedownCommand::RecordNotice { to, at }, Some(_)) => {
                if self.notices.contains(&to) {
                    return Ok(());
                }
                TakedownEvent::TakedownNoticeSent { to, at }
            }
            (_, Some(s @ (CaseStatus::Actioned | CaseStatus::Rejected))) => {
                return Err(TakedownError::AlreadyDecided(s.as_str()))
            }
            (TakedownCommand::Action { staff, reason, at }, Some(CaseStatus::Open)) => {
                if self.filed.as_ref().and_then(|f| f.task_id).is_none() {
                    return Err(TakedownError::NoTask);
                }
                TakedownEvent::TakedownActioned { staff, reason, at }
            }
            (TakedownCommand::Reject { staff, reason, at }, Some(CaseStatus::Open)) => {
                TakedownEvent::TakedownRejected { staff, reason, at }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: TakedownEvent) {
        match event {
            TakedownEvent::TakedownFiled(f) => {
                self.filed = Some(f);
                self.status = Some(CaseStatus::Open);
            }
            TakedownEvent::TakedownActioned { .. } => self.status = Some(CaseStatus::Actioned),
            TakedownEvent::TakedownRejected { .. } => self.status = Some(CaseStatus::Rejected),
            TakedownEvent::TakedownNoticeSent { to, .. } => self.notices.push(to),
        }
    }
}
