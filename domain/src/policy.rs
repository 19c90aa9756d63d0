//! Privacy-policy versions and who was told about them. A `PolicyVersion` (aggregate
//! `policy`, id = the version label) is published once with its effective date; a material
//! change must take effect at least `MATERIAL_NOTICE_DAYS` after publication. A
//! `PolicyAck` (aggregate `policy_ack`, id = `<version>|<account>`) records, once each, that
//! the holder was emailed the notice and that they accepted the version by using the
//! service after it took effect — so staff can prove who was told, when, and who accepted.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Least notice for a material change (privacy policy, section 10).
pub const MATERIAL_NOTICE_DAYS: i64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyDocument {
    Text(String),
    Url(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    pub document: PolicyDocument,
    pub effective_at: DateTime<Utc>,
    pub material: bool,
    pub published_by: Uuid,
    pub published_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PolicyCommand {
    Publish(Box<Publication>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PolicyEvent {
    PolicyPublished(Box<Publication>),
}

crate::domain_event!(PolicyEvent, "1", { PolicyPublished });

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    #[error("this version is already published")]
    AlreadyPublished,
    #[error("a material change must take effect at least {MATERIAL_NOTICE_DAYS} days after it is published (earliest {0})")]
    NoticeTooShort(DateTime<Utc>),
    #[error("the effective date cannot be before the publication")]
    EffectiveInThePast,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub publication: Option<Box<Publication>>,
}

impl Aggregate for PolicyVersion {
    const TYPE: &'static str = "policy";
    type Command = PolicyCommand;
    type Event = PolicyEvent;
    type Error = PolicyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PolicyCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), PolicyError> {
        let PolicyCommand::Publish(p) = command;
        if self.publication.is_some() {
            return Err(PolicyError::AlreadyPublished);
        }
        if p.effective_at < p.published_at - Duration::minutes(1) {
            return Err(PolicyError::EffectiveInThePast);
        }
        let earliest = p.published_at + Duration::days(MATERIAL_NOTICE_DAYS);
        if p.material && p.effective_at < earliest {
            return Err(PolicyError::NoticeTooShort(earliest));
        }
        sink.write(PolicyEvent::PolicyPublished(p), self).await;
        Ok(())
    }

    fn apply(&mut self, event: PolicyEvent) {
        let PolicyEvent::PolicyPublished(p) = event;
        self.publication = Some(p);
    }
}

/// The `policy_ack` stream of one holder for one version.
pub fn ack_id(version: &str, account: Uuid) -> String {
    format!("{version}|{account}")
}

#[derive(Debug, Clone, PartialEq)]
pub enum AckCommand {
    RecordNotice {
        account_id: Uuid,
        version: String,
        at: DateTime<Utc>,
    },
    Accept {
        account_id: Uuid,
        version: String,
        /// `session` or `api_key`: how the holder used the service.
        via: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AckEvent {
    PolicyNoticeSent {
        account_id: Uuid,
        version: String,
        at: DateTime<Utc>,
    },
    PolicyAccepted {
        account_id: Uuid,
        version: String,
        via: String,
        at: DateTime<Utc>,
    },
}

crate::domain_event!(AckEvent, "1", { PolicyNoticeSent, PolicyAccepted });

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AckError {}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PolicyAck {
    pub notified_at: Option<DateTime<Utc>>,
    pub accepted_at: Option<DateTime<Utc>>,
}

impl Aggregate for PolicyAck {
    const TYPE: &'static str = "policy_ack";
    type Command = AckCommand;
    type Event = AckEvent;
    type Error = AckError;
    type Services = ();

    async fn handle(
        &mut self,
        command: AckCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), AckError> {
        // Each fact is recorded once, however often it is retried.
        let event = match command {
            AckCommand::RecordNotice { .. } if self.notified_at.is_some() => return Ok(()),
            AckCommand::Accept { .. } if self.accepted_at.is_some() => return Ok(()),
            AckCommand::RecordNotice {
                account_id,
                version,
                at,
            } => AckEvent::PolicyNoticeSent {
                account_id,
                version,
                at,
            },
            AckCommand::Accept {
                account_id,
                version,
                via,
                at,
            } => AckEvent::PolicyAccepted {
                account_id,
                version,
                via,
                at,
            },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: AckEvent) {
        match event {
            AckEvent::PolicyNoticeSent { at, .. } => self.notified_at = Some(at),
            AckEvent::PolicyAccepted { at, .. } => self.accepted_at = Some(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn publication(material: bool, days: i64) -> Box<Publication> {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        Box::new(Publication {
            document: PolicyDocument::Url("https://example.com/p".into()),
            effective_at: at + Duration::days(days),
            material,
            published_by: Uuid::nil(),
            published_at: at,
        })
    }

    #[test]
    fn material_changes_need_thirty_days_notice() {
        let p = publication(true, 29);
        let earliest = p.published_at + Duration::days(30);
        TestFramework::<PolicyVersion>::with(())
            .given_no_previous_events()
            .when(PolicyCommand::Publish(p))
            .then_expect_error(PolicyError::NoticeTooShort(earliest));
        let p = publication(true, 30);
        TestFramework::<PolicyVersion>::with(())
            .given_no_previous_events()
            .when(PolicyCommand::Publish(p.clone()))
            .then_expect_events(vec![PolicyEvent::PolicyPublished(p)]);
        let p = publication(false, 1);
        TestFramework::<PolicyVersion>::with(())
            .given_no_previous_events()
            .when(PolicyCommand::Publish(p.clone()))
            .then_expect_events(vec![PolicyEvent::PolicyPublished(p)]);
    }

    #[test]
    fn notices_and_acceptances_are_recorded_once() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let sent = AckEvent::PolicyNoticeSent {
            account_id: Uuid::nil(),
            version: "v2".into(),
            at,
        };
        TestFramework::<PolicyAck>::with(())
            .given(vec![sent])
            .when(AckCommand::RecordNotice {
                account_id: Uuid::nil(),
                version: "v2".into(),
                at,
            })
            .then_expect_events(vec![]);
    }
}
