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

/// What a new holder confirmed at sign-up: that they are at least `minimum_age` (13, or
/// 16 where their country requires it), and which privacy-policy version was in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignUpTerms {
    pub minimum_age: u8,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    pub policy_version: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AccountCommand {
    Register {
        email: Sealed<String>,
        method: SignInMethod,
        google: Option<GoogleProfile>,
        terms: Option<SignUpTerms>,
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
    /// The holder asked for deletion: disabled now, purged at `purge_after`.
    RequestDeletion {
        purge_after: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Staff cancel a pending deletion inside the window, at the holder's request.
    CancelDeletion {
        reason: String,
        at: DateTime<Utc>,
    },
    /// Records the erasure certificate (after `Erase`).
    Certify {
        certificate: ErasureCertificate,
    },
}

/// What an erasure did: categories, counts, time, reason and requester — never content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErasureCertificate {
    /// Data categories whose keys were destroyed.
    pub categories: Vec<String>,
    pub keys_destroyed: u64,
    pub sessions_ended: u64,
    pub api_keys_revoked: u64,
    pub identity_claims_dropped: u64,
    pub events_tombstoned: u64,
    /// Kept on purpose: the billing records the law makes us keep, and for how long.
    pub retained: Vec<String>,
    pub reason: String,
    /// Who asked (`account:<id>` for the holder, `staff:<id>`, `system`).
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub erased_at: DateTime<Utc>,
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
    AccountErased {
        reason: String,
        at: DateTime<Utc>,
    },
    DeletionRequested {
        purge_after: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    DeletionCancelled {
        reason: String,
        at: DateTime<Utc>,
    },
    ErasureCertified {
        certificate: ErasureCertificate,
    },
    /// Written with `AccountRegistered`: the age confirmation and the policy in force.
    SignUpTermsAccepted {
        terms: SignUpTerms,
        at: DateTime<Utc>,
    },
}

crate::domain_event!(AccountEvent, "1", {
    AccountRegistered, GoogleLinked, NameCorrected, EmailChanged, AccountErased,
    DeletionRequested, DeletionCancelled, ErasureCertified, SignUpTermsAccepted
});

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AccountError {
    #[error("account already exists")]
    AlreadyRegistered,
    #[error("account does not exist")]
    NotRegistered,
    #[error("account has been erased")]
    Erased,
    #[error("account is scheduled for deletion")]
    PendingDeletion,
    #[error("no deletion is pending")]
    NoDeletionPending,
    #[error("the account is not erased yet")]
    NotErased,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AccountStatus {
    #[default]
    New,
    Active,
    /// Disabled at the holder's request; purged when the window ends.
    PendingDeletion,
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
    pub purge_after: Option<DateTime<Utc>>,
    pub certified: bool,
}

impl Account {
    fn require_active(&self) -> Result<(), AccountError> {
        match self.status {
            AccountStatus::New => Err(AccountError::NotRegistered),
            AccountStatus::Erased => Err(AccountError::Erased),
            AccountStatus::PendingDeletion => Err(AccountError::PendingDeletion),
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
                terms,
                at,
            } => {
                match self.status {
                    AccountStatus::New => {}
                    AccountStatus::Active | AccountStatus::PendingDeletion => {
                        return Err(AccountError::AlreadyRegistered)
                    }
                    AccountStatus::Erased => return Err(AccountError::Erased),
                }
                sink.write(AccountEvent::AccountRegistered { email, method, at }, self)
                    .await;
                if let Some(terms) = terms {
                    sink.write(AccountEvent::SignUpTermsAccepted { terms, at }, self)
                        .await;
                }
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
                AccountStatus::New | AccountStatus::Active | AccountStatus::PendingDeletion => {
                    sink.write(AccountEvent::AccountErased { reason, at }, self)
                        .await;
                }
            },
            AccountCommand::RequestDeletion { purge_after, at } => {
                if self.status == AccountStatus::PendingDeletion {
                    return Ok(());
                }
                self.require_active()?;
                sink.write(AccountEvent::DeletionRequested { purge_after, at }, self)
                    .await;
            }
            AccountCommand::CancelDeletion { reason, at } => {
                if self.status != AccountStatus::PendingDeletion {
                    return Err(AccountError::NoDeletionPending);
                }
                sink.write(AccountEvent::DeletionCancelled { reason, at }, self)
                    .await;
            }
            AccountCommand::Certify { certificate } => {
                if self.status != AccountStatus::Erased {
                    return Err(AccountError::NotErased);
                }
                if !self.certified {
                    sink.write(AccountEvent::ErasureCertified { certificate }, self)
                        .await;
                }
            }
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
            AccountEvent::DeletionRequested { purge_after, .. } => {
                self.status = AccountStatus::PendingDeletion;
                self.purge_after = Some(purge_after);
            }
            AccountEvent::DeletionCancelled { .. } => {
                self.status = AccountStatus::Active;
                self.purge_after = None;
            }
            AccountEvent::ErasureCertified { .. } => self.certified = true,
            AccountEvent::SignUpTermsAccepted { .. } => {}
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
                terms: None,
                at,
            })
            .then_expect_events(vec![registered.clone()]);
        TestFramework::<Account>::with(())
            .given(vec![registered])
            .when(AccountCommand::Register {
                email: sealed("e"),
                method: SignInMethod::MagicLink,
                google: None,
                terms: None,
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
