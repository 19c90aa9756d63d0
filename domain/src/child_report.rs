//! Reports that an account belongs to a child (aggregate `child_report`, id = report id).
//! Anyone may report; staff confirm or reject, once. A confirmed report starts the
//! account's erasure at once (the api layer runs it and records the certificate). The
//! reported address itself is not kept, only the account it matched; the reporter's contact
//! and the details are sealed under the report's own subject (`child-report:<id>`).

use crate::sealed::Sealed;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildReportFiled {
    /// The account the reported address belongs to, when there is one.
    pub account_id: Option<Uuid>,
    pub reporter_contact: Sealed<String>,
    pub details: Sealed<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChildReportCommand {
    File(Box<ChildReportFiled>),
    Confirm {
        staff: Uuid,
        reason: String,
        at: DateTime<Utc>,
    },
    Reject {
        staff: Uuid,
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChildReportEvent {
    ChildReportFiled(Box<ChildReportFiled>),
    ChildReportConfirmed {
        staff: Uuid,
        reason: String,
        at: DateTime<Utc>,
    },
    ChildReportRejected {
        staff: Uuid,
        reason: String,
        at: DateTime<Utc>,
    },
}

crate::domain_event!(ChildReportEvent, "1", {
    ChildReportFiled, ChildReportConfirmed, ChildReportRejected
});

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChildReportError {
    #[error("no such report")]
    Unknown,
    #[error("the report was already filed")]
    AlreadyFiled,
    #[error("the report was already {0}")]
    AlreadyDecided(&'static str),
    #[error("the report names no account, so there is nothing to erase")]
    NoAccount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    Open,
    Confirmed,
    Rejected,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChildReport {
    pub filed: Option<Box<ChildReportFiled>>,
    pub status: Option<ReportStatus>,
}

impl Aggregate for ChildReport {
    const TYPE: &'static str = "child_report";
    type Command = ChildReportCommand;
    type Event = ChildReportEvent;
    type Error = ChildReportError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ChildReportCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ChildReportError> {
        let event = match (command, self.status) {
            (ChildReportCommand::File(f), None) => ChildReportEvent::ChildReportFiled(f),
            (ChildReportCommand::File(_), Some(_)) => return Err(ChildReportError::AlreadyFiled),
            (_, None) => return Err(ChildReportError::Unknown),
            (_, Some(ReportStatus::Confirmed)) => {
                return Err(ChildReportError::AlreadyDecided("confirmed"))
            }
            (_, Some(ReportStatus::Rejected)) => {
                return Err(ChildReportError::AlreadyDecided("rejected"))
            }
            (ChildReportCommand::Confirm { staff, reason, at }, Some(ReportStatus::Open)) => {
                if self.filed.as_ref().and_then(|f| f.account_id).is_none() {
                    return Err(ChildReportError::NoAccount);
                }
                ChildReportEvent::ChildReportConfirmed { staff, reason, at }
            }
            (ChildReportCommand::Reject { staff, reason, at }, Some(ReportStatus::Open)) => {
                ChildReportEvent::ChildReportRejected { staff, reason, at }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: ChildReportEvent) {
        match event {
            ChildReportEvent::ChildReportFiled(f) => {
                self.filed = Some(f);
                self.status = Some(ReportStatus::Open);
            }
            ChildReportEvent::ChildReportConfirmed { .. } => {
                self.status = Some(ReportStatus::Confirmed)
            }
            ChildReportEvent::ChildReportRejected { .. } => {
                self.status = Some(ReportStatus::Rejected)
            }
        }
    }
}
