//! The breach register (aggregate `breach`, id = breach id). A breach is recorded with its
//! discovery time, description, data categories and the affected accounts (listed, or
//! selected by a query that is resolved when it is recorded, and kept); the regulator must
//! be notified by `deadline_at`. Each email to an affected holder and the regulator's
//! notification are events, once each.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreachRecord {
    pub discovered_at: DateTime<Utc>,
    /// What happened; staff must not put personal data here (it is kept in clear).
    pub description: String,
    pub categories: Vec<String>,
    pub affected: Vec<Uuid>,
    /// How `affected` was chosen (`listed`, or the query), for the record.
    pub selection: String,
    pub deadline_at: DateTime<Utc>,
    pub recorded_by: Uuid,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BreachCommand {
    Record(Box<BreachRecord>),
    RecordSubjectNotified {
        account_id: Uuid,
        at: DateTime<Utc>,
    },
    MarkRegulatorNotified {
        staff: Uuid,
        reference: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BreachEvent {
    BreachRecorded(Box<BreachRecord>),
    BreachSubjectNotified {
        account_id: Uuid,
        at: DateTime<Utc>,
    },
    RegulatorNotified {
        staff: Uuid,
        reference: String,
        at: DateTime<Utc>,
    },
}

crate::domain_event!(BreachEvent, "1", {
    BreachRecorded, BreachSubjectNotified, RegulatorNotified
});

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BreachError {
    #[error("no such breach")]
    Unknown,
    #[error("the breach is already recorded")]
    AlreadyRecorded,
    #[error("account {0} is not among the affected")]
    NotAffected(Uuid),
    #[error("the regulator was already marked notified")]
    RegulatorAlreadyNotified,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Breach {
    pub record: Option<Box<BreachRecord>>,
    pub notified: BTreeSet<Uuid>,
    pub regulator_notified_at: Option<DateTime<Utc>>,
}

impl Aggregate for Breach {
    const TYPE: &'static str = "breach";
    type Command = BreachCommand;
    type Event = BreachEvent;
    type Error = BreachError;
    type Services = ();

    async fn handle(
        &mut self,
        command: BreachCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), BreachError> {
        let event = match command {
            BreachCommand::Record(r) => {
                if self.record.is_some() {
                    return Err(BreachError::AlreadyRecorded);
                }
                BreachEvent::BreachRecorded(r)
            }
            BreachCommand::RecordSubjectNotified { account_id, at } => {
                let record = self.record.as_ref().ok_or(BreachError::Unknown)?;
                if !record.affected.contains(&account_id) {
                    return Err(BreachError::NotAffected(account_id));
                }
                if self.notified.contains(&account_id) {
                    return Ok(());
                }
                BreachEvent::BreachSubjectNotified { account_id, at }
            }
            BreachCommand::MarkRegulatorNotified {
                staff,
                reference,
                at,
            } => {
                self.record.as_ref().ok_or(BreachError::Unknown)?;
                if self.regulator_notified_at.is_some() {
                    return Err(BreachError::RegulatorAlreadyNotified);
                }
                BreachEvent::RegulatorNotified {
                    staff,
                    reference,
                    at,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: BreachEvent) {
        match event {
            BreachEvent::BreachRecorded(r) => self.record = Some(r),
            BreachEvent::BreachSubjectNotified { account_id, .. } => {
                self.notified.insert(account_id);
            }
            BreachEvent::RegulatorNotified { at, .. } => self.regulator_notified_at = Some(at),
        }
    }
}
