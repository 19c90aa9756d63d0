//! A magic link: a single-use, short-lived sign-in (or email-confirmation) token.
//! The aggregate id is the SHA-256 of the token, so the token itself is never stored.

use crate::sealed::Sealed;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinkPurpose {
    /// Sign in (creating the account `account_id` on first use).
    SignIn { account_id: Uuid },
    /// Confirm a new email address for an existing account.
    ChangeEmail { account_id: Uuid },
}

impl LinkPurpose {
    pub fn account_id(&self) -> Uuid {
        match self {
            LinkPurpose::SignIn { account_id } | LinkPurpose::ChangeEmail { account_id } => {
                *account_id
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum MagicLinkCommand {
    Issue {
        email: Sealed<String>,
        purpose: LinkPurpose,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    Consume {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MagicLinkEvent {
    MagicLinkIssued {
        email: Sealed<String>,
        purpose: LinkPurpose,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    MagicLinkConsumed {
        at: DateTime<Utc>,
    },
}

crate::domain_event!(MagicLinkEvent, "1", { MagicLinkIssued, MagicLinkConsumed });

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MagicLinkError {
    #[error("this sign-in link is not valid")]
    Unknown,
    #[error("this sign-in link has already been used")]
    AlreadyUsed,
    #[error("this sign-in link has expired")]
    Expired,
    #[error("this sign-in link already exists")]
    AlreadyIssued,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct MagicLink {
    pub email: Option<Sealed<String>>,
    pub purpose: Option<LinkPurpose>,
    pub expires_at: Option<DateTime<Utc>>,
    pub consumed: bool,
}

impl MagicLink {
    /// Whether the link can still be consumed at `at` (used by the confirmation page).
    pub fn check_usable(&self, at: DateTime<Utc>) -> Result<(), MagicLinkError> {
        let expires_at = self.expires_at.ok_or(MagicLinkError::Unknown)?;
        if self.consumed {
            return Err(MagicLinkError::AlreadyUsed);
        }
        if at >= expires_at {
            return Err(MagicLinkError::Expired);
        }
        Ok(())
    }
}

impl Aggregate for MagicLink {
    const TYPE: &'static str = "magic_link";
    type Command = MagicLinkCommand;
    type Event = MagicLinkEvent;
    type Error = MagicLinkError;
    type Services = ();

    async fn handle(
        &mut self,
        command: MagicLinkCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), MagicLinkError> {
        match command {
            MagicLinkCommand::Issue {
                email,
                purpose,
                expires_at,
                at,
            } => {
                if self.expires_at.is_some() {
                    return Err(MagicLinkError::AlreadyIssued);
                }
                sink.write(
                    MagicLinkEvent::MagicLinkIssued {
                        email,
                        purpose,
                        expires_at,
                        at,
                    },
                    self,
                )
                .await;
            }
            MagicLinkCommand::Consume { at } => {
                self.check_usable(at)?;
                sink.write(MagicLinkEvent::MagicLinkConsumed { at }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: MagicLinkEvent) {
        match event {
            MagicLinkEvent::MagicLinkIssued {
                email,
                purpose,
                expires_at,
                ..
            } => {
                self.email = Some(email);
                self.purpose = Some(purpose);
                self.expires_at = Some(expires_at);
            }
            MagicLinkEvent::MagicLinkConsumed { .. } => self.consumed = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use cqrs_es::test::TestFramework;

    fn issued(at: DateTime<Utc>) -> MagicLinkEvent {
        MagicLinkEvent::MagicLinkIssued {
            email: Sealed::from_parts("k".into(), "n".into(), "c".into()),
            purpose: LinkPurpose::SignIn {
                account_id: Uuid::nil(),
            },
            expires_at: at + Duration::minutes(15),
            at,
        }
    }

    #[test]
    fn consumes_once_within_lifetime() {
        let at = Utc::now();
        TestFramework::<MagicLink>::with(())
            .given(vec![issued(at)])
            .when(MagicLinkCommand::Consume {
                at: at + Duration::minutes(14),
            })
            .then_expect_events(vec![MagicLinkEvent::MagicLinkConsumed {
                at: at + Duration::minutes(14),
            }]);
        TestFramework::<MagicLink>::with(())
            .given(vec![issued(at), MagicLinkEvent::MagicLinkConsumed { at }])
            .when(MagicLinkCommand::Consume { at })
            .then_expect_error(MagicLinkError::AlreadyUsed);
        TestFramework::<MagicLink>::with(())
            .given(vec![issued(at)])
            .when(MagicLinkCommand::Consume {
                at: at + Duration::minutes(15),
            })
            .then_expect_error(MagicLinkError::Expired);
        TestFramework::<MagicLink>::with(())
            .given_no_previous_events()
            .when(MagicLinkCommand::Consume { at })
            .then_expect_error(MagicLinkError::Unknown);
    }
}
