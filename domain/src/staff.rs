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
    /// Helping holders: reading their history to answer them.
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
    /// Recorded before the data is returned.
    RecordRead {
        subject: Option<Uuid>,
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
                if self.roles.is_empty() {
                    return Err(StaffError::NoRole);
                }
                let reason = reason.trim().to_string();
                if reason.is_empty() || reason.chars().count() > MAX_REASON_LEN {
                    return Err(StaffError::BadReason);
                }
                let event = StaffEvent::StaffRead {
                    subject,
                    action,
                    reason,
                    at,
                };
                sink.write(event, self).await;
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
}
