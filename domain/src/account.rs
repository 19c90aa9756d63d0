//! The account aggregate: identity of an account holder. No passwords exist anywhere:
//! an account is created by its first magic-link or Google sign-in.

use crate::sealed::Sealed;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInMethod {
    MagicLink,
    Google,
}

/// What Google tells us about a holder. The subject id, name and picture are personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoogleProfile {
    pub sub: Sealed<String>,
    pub name: Option<Sealed<String>>,
    pub picture: Option<Sealed<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AccountCommand {
    Register {
        email: Sealed<String>,
        method: SignInMethod,
        google: Option<GoogleProfile>,
        at: DateTime<Utc>,
    },
    LinkGoogle {
        profile: GoogleProfile,
        at: DateTime<Utc>,
    },
    CorrectName {
        name: Sealed<String>,
        at: DateTime<Utc>,
    },
    ChangeEmail {
        email: Sealed<String>,
        at: DateTime<Utc>,
    },
    Erase {
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    AccountRegistered {
        email: Sealed<String>,
        method: SignInMethod,
        at: DateTime<Utc>,
    },
    GoogleLinked {
        profile: GoogleProfile,
        at: DateTime<Utc>,
    },
    NameCorrected {
        name: Sealed<String>,
        at: DateTime<Utc>,
    },
    EmailChanged {
        email: Sealed<String>,
        at: DateTime<Utc>,
    },
    /// Identity keys were destroyed; records why and when, never what.
    AccountErased { reason: String, at: DateTime<Utc> },
}

crate::domain_event!(AccountEvent, "1", {
    AccountRegistered, GoogleLinked, NameCorrected, EmailChanged, AccountErased
});

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AccountError {
    #[error("account already exists")]
    AlreadyRegistered,
    #[error("account does not exist")]
    NotRegistered,
    #[error("account has been erased")]
    Erased,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AccountStatus {
    #[default]
    New,
    Active,
    Erased,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Account {
    pub status: AccountStatus,
    pub email: Option<Sealed<String>>,
    pub name: Option<Sealed<String>>,
    pub picture: Option<Sealed<String>>,
    pub google_sub: Option<Sealed<String>>,
    pub created_at: Option<DateTime<Utc>>,
    pub methods: Vec<SignInMethod>,
}

impl Account {
    fn require_active(&self) -> Result<(), AccountError> {
        match self.status {
            AccountStatus::New => Err(AccountError::NotRegistered),
            AccountStatus::Erased => Err(AccountError::Erased),
            AccountStatus::Active => Ok(()),
        }
    }

    fn add_method(&mut self, m: SignInMethod) {
        if !self.methods.contains(&m) {
            self.methods.push(m);
        }
    }
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: AccountCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), AccountError> {
        match command {
            AccountCommand::Register {
                email,
                method,
                google,
                at,
            } => {
                match self.status {
                    AccountStatus::New => {}
                    AccountStatus::Active => return Err(AccountError::AlreadyRegistered),
                    AccountStatus::Erased => return Err(AccountError::Erased),
                }
                sink.write(AccountEvent::AccountRegistered { email, method, at }, self)
                    .await;
                if let Some(profile) = google {
                    sink.write(AccountEvent::GoogleLinked { profile, at }, self)
                        .await;
                }
            }
            AccountCommand::LinkGoogle { profile, at } => {
                self.require_active()?;
                sink.write(AccountEvent::GoogleLinked { profile, at }, self)
                    .await;
            }
            AccountCommand::CorrectName { name, at } => {
                self.require_active()?;
                sink.write(AccountEvent::NameCorrected { name, at }, self)
                    .await;
            }
            AccountCommand::ChangeEmail { email, at } => {
                self.require_active()?;
                sink.write(AccountEvent::EmailChanged { email, at }, self)
                    .await;
            }
            AccountCommand::Erase { reason, at } => match self.status {
                // Erasing twice is a no-op, so retried erasure requests are safe.
                AccountStatus::Erased => {}
                // New: a sign-in that never completed still sealed an email under this id.
                AccountStatus::New | AccountStatus::Active => {
                    sink.write(AccountEvent::AccountErased { reason, at }, self)
                        .await;
                }
            },
        }
        Ok(())
    }

    fn apply(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::AccountRegistered { email, method, at } => {
                self.status = AccountStatus::Active;
                self.email = Some(email);
                self.created_at = Some(at);
                self.add_method(method);
                // Every account can sign in by magic link to its email.
                self.add_method(SignInMethod::MagicLink);
            }
            AccountEvent::GoogleLinked { profile, .. } => {
                self.google_sub = Some(profile.sub);
                if profile.name.is_some() {
                    self.name = profile.name;
                }
                if profile.picture.is_some() {
                    self.picture = profile.picture;
                }
                self.add_method(SignInMethod::Google);
            }
            AccountEvent::NameCorrected { name, .. } => self.name = Some(name),
            AccountEvent::EmailChanged { email, .. } => self.email = Some(email),
            AccountEvent::AccountErased { .. } => {
                self.status = AccountStatus::Erased;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn sealed(s: &str) -> Sealed<String> {
        Sealed::from_parts("k".into(), "n".into(), s.into())
    }

    #[test]
    fn registers_once() {
        let at = Utc::now();
        let registered = AccountEvent::AccountRegistered {
            email: sealed("e"),
            method: SignInMethod::MagicLink,
            at,
        };
        TestFramework::<Account>::with(())
            .given_no_previous_events()
            .when(AccountCommand::Register {
                email: sealed("e"),
                method: SignInMethod::MagicLink,
                google: None,
                at,
            })
            .then_expect_events(vec![registered.clone()]);
        TestFramework::<Account>::with(())
            .given(vec![registered])
            .when(AccountCommand::Register {
                email: sealed("e"),
                method: SignInMethod::MagicLink,
                google: None,
                at,
            })
            .then_expect_error(AccountError::AlreadyRegistered);
    }

    #[test]
    fn erased_account_rejects_changes_and_erase_is_idempotent() {
        let at = Utc::now();
        let given = vec![
            AccountEvent::AccountRegistered {
                email: sealed("e"),
                method: SignInMethod::MagicLink,
                at,
            },
            AccountEvent::AccountErased {
                reason: "request".into(),
                at,
            },
        ];
        TestFramework::<Account>::with(())
            .given(given.clone())
            .when(AccountCommand::CorrectName {
                name: sealed("n"),
                at,
            })
            .then_expect_error(AccountError::Erased);
        TestFramework::<Account>::with(())
            .given(given)
            .when(AccountCommand::Erase {
                reason: "again".into(),
                at,
            })
            .then_expect_events(vec![]);
    }
}
