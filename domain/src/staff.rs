//! Staff: roles held by an account (id = the staff member's account id), and the audit
//! trail of their reads of subjects' data. Staff sign in like anyone else; a role is what
//! opens `/admin/v1/*`. Who granted or revoked a role is in the command metadata.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including granting roles through the API in later versions.
    Admin,
    /// Data-subject requests, exports, audit, erasure.
    Compliance,
    /// Helping holders through support tickets, and nothing else about a subject.
    Support,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "compliance" => Some(Role::Compliance),
            "support" => Some(Role::Support),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Compliance => "compliance",
            Role::Support => "support",
        }
    }
}

/// Longest accepted audit reason. Reasons say why (a ticket, a request id), not who.
pub const MAX_REASON_LEN: usize = 300;

#[derive(Debug, Clone, PartialEq)]
pub enum StaffCommand {
    Grant {
        role: Role,
        at: DateTime<Utc>,
    },
    Revoke {
        role: Role,
        at: DateTime<Utc>,
    },
    /// Recorded before the data is returned or changed.
    RecordRead {
        subject: Option<Uuid>,
        action: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// A read of a list that names several subjects: one `StaffRead` per distinct subject,
    /// all in one commit; an empty list still records the read, with no subject.
    RecordReads {
        subjects: Vec<Uuid>,
        action: String,
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StaffEvent {
    RoleGranted {
        role: Role,
        at: DateTime<Utc>,
    },
    RoleRevoked {
        role: Role,
        at: DateTime<Utc>,
    },
    /// A staff read of personal data: who (the stream), whose, what, why, when.
    StaffRead {
        subject: Option<Uuid>,
        action: String,
        reason: String,
        at: DateTime<Utc>,
    },
}

crate::domain_event!(StaffEvent, "1", { RoleGranted, RoleRevoked, StaffRead });

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StaffError {
    #[error("a staff role is required")]
    NoRole,
    #[error("a reason (1 to {MAX_REASON_LEN} characters) is required for every read of a subject's data")]
    BadReason,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct StaffMember {
    pub roles: BTreeSet<Role>,
}

impl StaffMember {
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.roles.contains(r))
    }

    /// Reads need a role and a reason of 1 to `MAX_REASON_LEN` characters (trimmed).
    fn checked_reason(&self, reason: &str) -> Result<String, StaffError> {
        if self.roles.is_empty() {
            return Err(StaffError::NoRole);
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_LEN {
            return Err(StaffError::BadReason);
        }
        Ok(reason.to_string())
    }
}

impl Aggregate for StaffMember {
    const TYPE: &'static str = "staff";
    type Command = StaffCommand;
    type Event = StaffEvent;
    type Error = StaffError;
    type Services = ();

    async fn handle(
        &mut self,
        command: StaffCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), StaffError> {
        match command {
            StaffCommand::Grant { role, at } => {
                if !self.roles.contains(&role) {
                    sink.write(StaffEvent::RoleGranted { role, at }, self).await;
                }
            }
            StaffCommand::Revoke { role, at } => {
                if self.roles.contains(&role) {
                    sink.write(StaffEvent::RoleRevoked { role, at }, self).await;
                }
            }
            StaffCommand::RecordRead {
                subject,
                action,
                reason,
                at,
            } => {
                let reason = self.checked_reason(&reason)?;
                let event = StaffEvent::StaffRead {
                    subject,
                    action,
                    reason,
                    at,
                };
                sink.write(event, self).await;
            }
            StaffCommand::RecordReads {
                subjects,
                action,
                reason,
                at,
            } => {
                let reason = self.checked_reason(&reason)?;
                let mut seen = BTreeSet::new();
                let mut subjects: Vec<Option<Uuid>> = subjects
                    .into_iter()
                    .filter(|s| seen.insert(*s))
                    .map(Some)
                    .collect();
                if subjects.is_empty() {
                    subjects.push(None);
                }
                for subject in subjects {
                    let event = StaffEvent::StaffRead {
                        subject,
                        action: action.clone(),
                        reason: reason.clone(),
                        at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: StaffEvent) {
        match event {
            StaffEvent::RoleGranted { role, .. } => {
                self.roles.insert(role);
            }
            StaffEvent::RoleRevoked { role, .. } => {
                self.roles.remove(&role);
            }
            StaffEvent::StaffRead { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    #[test]
    fn reads_need_a_role_and_a_reason() {
        let at = Utc::now();
        let read = |reason: &str| StaffCommand::RecordRead {
            subject: None,
            action: "requests.list".into(),
            reason: reason.into(),
            at,
        };
        TestFramework::<StaffMember>::with(())
            .given_no_previous_events()
            .when(read("ticket 7"))
            .then_expect_error(StaffError::NoRole);
        let granted = StaffEvent::RoleGranted {
            role: Role::Support,
            at,
        };
        TestFramework::<StaffMember>::with(())
            .given(vec![granted.clone()])
            .when(read("  "))
            .then_expect_error(StaffError::BadReason);
        TestFramework::<StaffMember>::with(())
            .given(vec![
                granted,
                StaffEvent::RoleRevoked {
                    role: Role::Support,
                    at,
                },
            ])
            .when(read("ticket 7"))
            .then_expect_error(StaffError::NoRole);
    }

    #[test]
    fn a_list_read_records_each_subject_once_or_the_read_alone() {
        let at = Utc::now();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let granted = StaffEvent::RoleGranted {
            role: Role::Support,
            at,
        };
        let reads = |subjects: Vec<Uuid>| StaffCommand::RecordReads {
            subjects,
            action: "tickets.list".into(),
            reason: " queue ".into(),
            at,
        };
        let read = |subject: Option<Uuid>| StaffEvent::StaffRead {
            subject,
            action: "tickets.list".into(),
            reason: "queue".into(),
            at,
        };
        TestFramework::<StaffMember>::with(())
            .given(vec![granted.clone()])
            .when(reads(vec![a, b, a]))
            .then_expect_events(vec![read(Some(a)), read(Some(b))]);
        TestFramework::<StaffMember>::with(())
            .given(vec![granted])
            .when(reads(vec![]))
            .then_expect_events(vec![read(None)]);
        TestFramework::<StaffMember>::with(())
            .given_no_previous_events()
            .when(reads(vec![a]))
            .then_expect_error(StaffError::NoRole);
    }
}
