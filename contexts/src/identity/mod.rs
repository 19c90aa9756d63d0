//! Sign-in, sessions, profile and API-key use cases, shared by HTTP handlers and the CLI.

pub mod key_cache;
pub mod staff;
pub mod staff_views;

crate::app::service!(
    /// The identity context: sign-in (magic link, Google), sessions, profiles, API keys,
    /// staff roles, the audit trail and staff views of a subject.
    Identity
);

/// The event stores of the aggregates this context owns. The fields are private to this
/// context's modules: another context reaches these aggregates only through the service.
pub struct Stores {
    accounts: journey_commands::Store<journey_domain::account::Account>,
    links: journey_commands::Store<journey_domain::magic_link::MagicLink>,
    sessions: journey_commands::Store<journey_domain::session::Session>,
    keys: journey_commands::Store<journey_domain::api_key::ApiKey>,
    staff: journey_commands::Store<journey_domain::staff::StaffMember>,
    /// Recent API-key authentications (`key_cache`).
    key_cache: key_cache::KeyCache,
}

impl Stores {
    pub(crate) fn new(db: &journey_commands::Db) -> Self {
        Stores {
            accounts: journey_commands::Store::new(db),
            links: journey_commands::Store::new(db),
            sessions: journey_commands::Store::new(db),
            keys: journey_commands::Store::new(db),
            staff: journey_commands::Store::new(db),
            key_cache: key_cache::KeyCache::default(),
        }
    }
}

use crate::error::ServiceError;
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use cqrs_es::Aggregate;
use journey_commands::identity_index::IdentityKind;
use journey_commands::mailer::Mail;
use journey_commands::oidc::IdClaims;
use journey_commands::secrets::{self, hmac_hex, new_api_key, normalize_email, token_hash};
use journey_commands::StoreError;
use journey_domain::account::{
    Account, AccountCommand, AccountStatus, GoogleProfile, SignInMethod, SignUpTerms,
};
use journey_domain::api_key::{ApiKey, ApiKeyCommand};
use journey_domain::magic_link::{LinkPurpose, MagicLinkCommand, MagicLinkError};
use journey_domain::meta::{Actor, CommandMeta};
use journey_domain::session::{Session, SessionCommand, SessionEndReason};
use journey_domain::{DataCategory, Opened};
use key_cache::KnownKey;
use serde::Serialize;
use sqlx::Row;
use std::time::Duration as StdDuration;
use uuid::Uuid;

/// How long a request waits for projections to apply its own write.
const READ_YOUR_WRITE: StdDuration = StdDuration::from_secs(5);

/// A sign-up's age confirmation as the holder gave it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AgeInput {
    pub country: Option<String>,
    pub age_confirmed: bool,
}

/// Request context: who, which request, from which address, at which instant.
#[derive(Clone)]
pub struct Ctx {
    pub request_id: String,
    pub ip: Option<String>,
    pub at: DateTime<Utc>,
    /// The client IP as sealed for this request's subject, shared by every `Ctx` of the
    /// request (see `AppState::sealed_ip`).
    pub sealed_ip: SealedIp,
}

/// One request's sealed client IP: the command metadata and the usage log both carry it,
/// and it is sealed once. Keyed by the subject it was sealed for.
#[derive(Clone, Default)]
pub struct SealedIp(std::sync::Arc<std::sync::Mutex<Option<IpFor>>>);

/// The subject an IP was sealed for, and the sealed IP.
type IpFor = (Uuid, journey_domain::Sealed<String>);

impl Ctx {
    pub fn system(at: DateTime<Utc>) -> Ctx {
        Ctx {
            request_id: format!("cli-{}", Uuid::new_v4()),
            ip: None,
            at,
            sealed_ip: SealedIp::default(),
        }
    }
}

pub struct SignedIn {
    pub account_id: Uuid,
    pub session_token: String,
    pub created: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub account_id: Uuid,
    /// `"[erased]"` never appears here: erased accounts cannot sign in.
    pub email: String,
    pub name: Option<String>,
    pub picture: Option<String>,
    pub created_at: DateTime<Utc>,
    /// `magic_link` and/or `google`.
    #[schema(value_type = Vec<String>)]
    pub sign_in_methods: Vec<SignInMethod>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    /// Display form: prefix…last4.
    pub display: String,
    pub prefix: String,
    pub last4: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    pub id: Uuid,
    pub name: String,
    /// The raw key. Shown once; only an HMAC of it is stored.
    pub key: String,
    pub prefix: String,
    pub last4: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct ErasureReport {
    pub account_id: Uuid,
    pub keys_destroyed: u64,
    pub categories: Vec<String>,
    pub sessions_ended: usize,
    pub api_keys_revoked: usize,
    pub identity_claims_dropped: u64,
}

fn pending_deletion() -> ServiceError {
    ServiceError::Forbidden(
        "this account is scheduled for deletion; contact support within the 30-day window to cancel"
            .into(),
    )
}

/// Google sign-in with an address Google does not mark verified (`email_verified` false or
/// missing) is refused: 403, nothing claimed or created.
pub const GOOGLE_EMAIL_UNVERIFIED: &str =
    "Google has not verified this Google account's email address; verify it with Google, or sign in with a link sent to that address";

/// A magic link as seen before it is consumed.
pub struct LinkStatus {
    /// `None` for a token no link was issued for.
    pub purpose: Option<LinkPurpose>,
    /// The purpose while the link can be consumed; else why not (unknown, used, expired).
    pub usable: Result<LinkPurpose, MagicLinkError>,
}

/// Why a sign-up was refused. Nothing is created and the sign-in link is not spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignUpRefusal {
    /// No country, or not a two-letter code.
    Country,
    /// The minimum age for `country` was not confirmed.
    Age { country: String, minimum_age: u8 },
}

impl std::fmt::Display for SignUpRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignUpRefusal::Country => f.write_str(
                "to create an account, give your country (`country`, a two-letter ISO code) \
                 and confirm your age (`age_confirmed`: true)",
            ),
            SignUpRefusal::Age { minimum_age, .. } => write!(
                f,
                "to create an account you must confirm that you are at least {minimum_age} \
                 years old (`age_confirmed`: true); no account was created"
            ),
        }
    }
}

/// Why a magic link was not consumed, for callers that explain it in their own words (the
/// browser form). `ServiceError::from` gives the JSON API's answer.
#[derive(Debug)]
pub enum ConsumeError {
    /// Unknown, already used or expired.
    Link(MagicLinkError),
    /// A sign-up without a valid country or the age confirmation; the link is not spent.
    SignUp(SignUpRefusal),
    Erased,
    PendingDeletion,
    /// Anything else, as the JSON API answers it.
    Other(ServiceError),
}

impl From<ServiceError> for ConsumeError {
    fn from(e: ServiceError) -> Self {
        ConsumeError::Other(e)
    }
}

impl<E: std::error::Error> From<StoreError<E>> for ConsumeError {
    fn from(e: StoreError<E>) -> Self {
        ConsumeError::Other(e.into())
    }
}

impl From<ConsumeError> for ServiceError {
    fn from(e: ConsumeError) -> Self {
        match e {
            ConsumeError::Link(e) => ServiceError::bad(e.to_string()),
            ConsumeError::SignUp(r) => ServiceError::bad(r.to_string()),
            ConsumeError::Erased => ServiceError::Forbidden("this account has been erased".into()),
            ConsumeError::PendingDeletion => pending_deletion(),
            ConsumeError::Other(e) => e,
        }
    }
}

/// A stored millisecond timestamp as a time (0 for an impossible value).
pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Longest display name (characters).
pub const MAX_DISPLAY_NAME: usize = 200;

/// A holder's display name as given: trimmed, 1 to `MAX_DISPLAY_NAME` characters, on one
/// line without invisible characters.
pub fn display_name(name: &str) -> Result<&str, ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_DISPLAY_NAME {
        return Err(ServiceError::bad(format!(
            "name must be 1 to {MAX_DISPLAY_NAME} characters"
        )));
    }
    crate::text::single_line("name", name)?;
    Ok(name)
}

impl Identity<'_> {
    pub fn email_hash(&self, normalized: &str) -> String {
        hmac_hex(&self.pepper, "email", normalized)
    }

    fn google_hash(&self, sub: &str) -> String {
        hmac_hex(&self.pepper, "google-sub", sub)
    }

    /// Command metadata with the client IP sealed under `subject`'s usage key.
    pub async fn meta(
        &self,
        actor: Actor,
        subject: Option<Uuid>,
        ctx: &Ctx,
    ) -> Result<CommandMeta, ServiceError> {
        let client_ip = match subject {
            Some(s) => self.sealed_ip(ctx, s).await?,
            None => None,
        };
        Ok(CommandMeta {
            actor,
            request_id: ctx.request_id.clone(),
            client_ip,
            at: ctx.at,
        })
    }

    /// The request's client IP sealed in `subject`'s `usage` category, once per request.
    pub async fn sealed_ip(
        &self,
        ctx: &Ctx,
        subject: Uuid,
    ) -> Result<Option<journey_domain::Sealed<String>>, ServiceError> {
        let Some(ip) = &ctx.ip else {
            return Ok(None);
        };
        if let Some((s, sealed)) = ctx.sealed_ip.0.lock().expect("sealed ip").as_ref() {
            if *s == subject {
                return Ok(Some(sealed.clone()));
            }
        }
        let sealed = self
            .vault
            .seal(&subject.to_string(), DataCategory::Usage, ctx.at, ip)
            .await?;
        *ctx.sealed_ip.0.lock().expect("sealed ip") = Some((subject, sealed.clone()));
        Ok(Some(sealed))
    }

    /// Waits until projections have applied the newest event of a stream.
    pub async fn settle<A: Aggregate>(&self, id: &str) -> Result<(), ServiceError> {
        if !self
            .runner
            .wait_for_stream(A::TYPE, id, READ_YOUR_WRITE)
            .await?
        {
            tracing::warn!(
                aggregate = A::TYPE,
                id,
                "projections did not catch up in time"
            );
        }
        Ok(())
    }

    // ---- magic links -------------------------------------------------------------------

    /// Issues a sign-in link. Answers the same whether or not an account exists.
    pub async fn request_magic_link(&self, raw_email: &str, ctx: &Ctx) -> Result<(), ServiceError> {
        let email = normalize_email(raw_email)
            .ok_or_else(|| ServiceError::bad("email is not a valid address"))?;
        let hash = self.email_hash(&email);
        self.limits
            .magic_link(&hash, ctx.ip.as_deref())
            .await
            .map_err(ServiceError::TooManyRequests)?;
        // The account id is claimed with the first link, so every link for this address
        // seals its email under the same subject (and erasure destroys them all).
        let account_id = self
            .identity_index
            .claim(
                IdentityKind::Email,
                &hash,
                Uuid::new_v4(),
                ctx.at.timestamp_millis(),
            )
            .await?;
        self.issue_link(&email, LinkPurpose::SignIn { account_id }, ctx)
            .await
    }

    async fn issue_link(
        &self,
        email: &str,
        purpose: LinkPurpose,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let account_id = purpose.account_id();
        let sealed = self
            .vault
            .seal(
                &account_id.to_string(),
                DataCategory::Account,
                ctx.at,
                &email.to_string(),
            )
            .await?;
        let token = secrets::new_token();
        let meta = self.meta(Actor::System, Some(account_id), ctx).await?;
        self.stores
            .identity
            .links
            .execute(
                &token_hash(&token),
                MagicLinkCommand::Issue {
                    email: sealed,
                    purpose,
                    expires_at: ctx.at + Duration::seconds(self.cfg.magic_link_ttl_secs),
                    at: ctx.at,
                },
                &meta,
            )
            .await?;
        let link = format!(
            "{}/v1/auth/magic-link/confirm?token={token}",
            self.cfg.public_url()
        );
        let minutes = self.cfg.magic_link_ttl_secs / 60;
        let (subject, intro) = match purpose {
            LinkPurpose::SignIn { .. } => (
                "Your JourneyAPI sign-in link",
                "Open this link to sign in to JourneyAPI",
            ),
            LinkPurpose::ChangeEmail { .. } => (
                "Confirm your new JourneyAPI email address",
                "Open this link to confirm this address for your JourneyAPI account",
            ),
        };
        self.mailer
            .send(Mail {
                to: email.to_string(),
                subject: subject.into(),
                body: format!(
                    "{intro}:\n\n{link}\n\nThe link works once and expires in {minutes} minutes.\nIf you did not ask for it, ignore this message.\n"
                ),
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %format!("{e:#}"), "could not send magic link");
                ServiceError::Unavailable("could not send email right now; try again later".into())
            })
    }

    /// A link's state without consuming it (the confirmation page, and the form post before
    /// it looks at the browser binding, so a used link is reported as used).
    pub async fn magic_link_status(
        &self,
        token: &str,
        at: DateTime<Utc>,
    ) -> Result<LinkStatus, ServiceError> {
        let (link, _) = self.stores.identity.links.load(&token_hash(token)).await?;
        Ok(LinkStatus {
            usable: link.check_usable(at).and_then(|()| {
                // Issued links always carry their purpose.
                link.purpose.ok_or(MagicLinkError::Unknown)
            }),
            purpose: link.purpose,
        })
    }

    /// Consumes a link. Sign-in links start a session (creating the account on first use);
    /// email-change links apply the new address and return no session. `ServiceError::from`
    /// turns a refusal into the JSON API's answer.
    pub async fn consume_magic_link(
        &self,
        token: &str,
        age: &AgeInput,
        ctx: &Ctx,
    ) -> Result<Option<SignedIn>, ConsumeError> {
        let link_id = token_hash(token);
        let (link, _) = self.stores.identity.links.load(&link_id).await?;
        let purpose = link
            .purpose
            .ok_or(ConsumeError::Link(MagicLinkError::Unknown))?;
        let account_id = purpose.account_id();
        let (account, _) = self
            .stores
            .identity
            .accounts
            .load(&account_id.to_string())
            .await?;
        if account.status == AccountStatus::Erased {
            return Err(ConsumeError::Erased);
        }
        // A sign-up needs the age confirmation before anything is spent or created.
        let terms = match purpose {
            LinkPurpose::SignIn { .. } if account.status == AccountStatus::New => {
                Some(self.new_account_terms(age, ctx.at).await?)
            }
            _ => None,
        };
        let meta = self
            .meta(Actor::Account(account_id), Some(account_id), ctx)
            .await?;
        match self
            .stores
            .identity
            .links
            .execute(&link_id, MagicLinkCommand::Consume { at: ctx.at }, &meta)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Rejected(e)) => return Err(ConsumeError::Link(e)),
            Err(e) => return Err(ServiceError::from(e).into()),
        }
        let email = link.email.expect("issued links carry an email");
        match purpose {
            LinkPurpose::SignIn { account_id } => {
                let (account, _) = self
                    .stores
                    .identity
                    .accounts
                    .load(&account_id.to_string())
                    .await?;
                let created = match account.status {
                    AccountStatus::Erased => return Err(ConsumeError::Erased),
                    AccountStatus::PendingDeletion => return Err(ConsumeError::PendingDeletion),
                    AccountStatus::Active => false,
                    AccountStatus::New => {
                        let terms = match terms {
                            Some(t) => t,
                            None => self.new_account_terms(age, ctx.at).await?,
                        };
                        self.register(
                            account_id,
                            email,
                            SignInMethod::MagicLink,
                            None,
                            terms,
                            &meta,
                        )
                        .await?
                    }
                };
                let session_token = self
                    .start_session(account_id, SignInMethod::MagicLink, ctx)
                    .await?;
                Ok(Some(SignedIn {
                    account_id,
                    session_token,
                    created,
                }))
            }
            LinkPurpose::ChangeEmail { account_id } => {
                self.apply_email_change(account_id, email, &meta).await?;
                Ok(None)
            }
        }
    }

    pub async fn is_new_account(&self, account_id: Uuid) -> Result<bool, ServiceError> {
        let (a, _) = self
            .stores
            .identity
            .accounts
            .load(&account_id.to_string())
            .await?;
        Ok(a.status == AccountStatus::New)
    }

    /// What a new holder confirms at sign-up (privacy policy, section 9): at least 13, or
    /// 16 in the configured countries, and the policy version in force.
    pub async fn sign_up_terms(
        &self,
        age: &AgeInput,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<SignUpTerms, ServiceError> {
        self.new_account_terms(age, at).await.map_err(Into::into)
    }

    async fn new_account_terms(
        &self,
        age: &AgeInput,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<SignUpTerms, ConsumeError> {
        let (country, minimum_age) = self.check_age(age).map_err(ConsumeError::SignUp)?;
        Ok(SignUpTerms {
            minimum_age,
            country,
            policy_version: self.legal().policy_in_force(at).await?,
        })
    }

    /// The sign-up's country (upper case) and the minimum age that applies there.
    fn check_age(&self, age: &AgeInput) -> Result<(String, u8), SignUpRefusal> {
        let country = age
            .country
            .as_deref()
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
            .ok_or(SignUpRefusal::Country)?;
        let minimum_age = self.cfg.minimum_age(&country);
        if !age.age_confirmed {
            return Err(SignUpRefusal::Age {
                country,
                minimum_age,
            });
        }
        Ok((country, minimum_age))
    }

    /// Registers a new account; false if a concurrent first sign-in registered it first.
    async fn register(
        &self,
        account_id: Uuid,
        email: journey_domain::Sealed<String>,
        method: SignInMethod,
        google: Option<GoogleProfile>,
        terms: SignUpTerms,
        meta: &CommandMeta,
    ) -> Result<bool, ServiceError> {
        let result = self
            .stores
            .identity
            .accounts
            .execute(
                &account_id.to_string(),
                AccountCommand::Register {
                    email,
                    method,
                    google,
                    terms: Some(terms),
                    at: meta.at,
                },
                meta,
            )
            .await;
        match result {
            Ok(()) => Ok(true),
            Err(StoreError::Rejected(journey_domain::account::AccountError::AlreadyRegistered)) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn apply_email_change(
        &self,
        account_id: Uuid,
        new_email: journey_domain::Sealed<String>,
        meta: &CommandMeta,
    ) -> Result<(), ServiceError> {
        let Opened::Value(new_plain) = self.vault.open(&new_email).await? else {
            return Err(ServiceError::Forbidden(
                "this account has been erased".into(),
            ));
        };
        let new_hash = self.email_hash(&new_plain);
        let owner = self
            .identity_index
            .claim(
                IdentityKind::Email,
                &new_hash,
                account_id,
                meta.at.timestamp_millis(),
            )
            .await?;
        if owner != account_id {
            let (other, _) = self
                .stores
                .identity
                .accounts
                .load(&owner.to_string())
                .await?;
            if other.status != AccountStatus::New {
                return Err(ServiceError::Conflict(
                    "that email address belongs to another account".into(),
                ));
            }
            // A never-completed sign-in holds the address: hand it to this account.
            if !self
                .identity_index
                .reassign(IdentityKind::Email, &new_hash, owner, account_id)
                .await?
            {
                return Err(ServiceError::Conflict(
                    "that email address was just claimed; try again".into(),
                ));
            }
        }
        let (account, _) = self
            .stores
            .identity
            .accounts
            .load(&account_id.to_string())
            .await?;
        if let Some(old) = &account.email {
            if let Opened::Value(old_plain) = self.vault.open(old).await? {
                let old_hash = self.email_hash(&old_plain);
                if old_hash != new_hash {
                    self.identity_index
                        .release(IdentityKind::Email, &old_hash, account_id)
                        .await?;
                }
            }
        }
        self.stores
            .identity
            .accounts
            .execute(
                &account_id.to_string(),
                AccountCommand::ChangeEmail {
                    email: new_email,
                    at: meta.at,
                },
                meta,
            )
            .await?;
        self.settle::<Account>(&account_id.to_string()).await
    }

    // ---- sessions ----------------------------------------------------------------------

    pub async fn start_session(
        &self,
        account_id: Uuid,
        method: SignInMethod,
        ctx: &Ctx,
    ) -> Result<String, ServiceError> {
        let token = secrets::new_token();
        let id = token_hash(&token);
        let meta = self
            .meta(Actor::Account(account_id), Some(account_id), ctx)
            .await?;
        self.stores
            .identity
            .sessions
            .execute(
                &id,
                SessionCommand::Start {
                    account_id,
                    method,
                    expires_at: ctx.at + Duration::seconds(self.cfg.session_ttl_secs),
                    at: ctx.at,
                },
                &meta,
            )
            .await?;
        self.settle::<Session>(&id).await?;
        Ok(token)
    }

    /// The account a session token signs in, if the session is live.
    pub async fn session_account(
        &self,
        token: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Uuid>, ServiceError> {
        let (session, _) = self
            .stores
            .identity
            .sessions
            .load(&token_hash(token))
            .await?;
        let Some(account_id) = session.active_account(at) else {
            return Ok(None);
        };
        // The account itself decides (not a read model that may lag): no session outlives
        // an erasure, even one that raced with it.
        let (account, _) = self
            .stores
            .identity
            .accounts
            .load(&account_id.to_string())
            .await?;
        Ok((account.status == AccountStatus::Active).then_some(account_id))
    }

    pub async fn logout(
        &self,
        token: &str,
        account_id: Uuid,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let id = token_hash(token);
        let meta = self
            .meta(Actor::Account(account_id), Some(account_id), ctx)
            .await?;
        self.stores
            .identity
            .sessions
            .execute(
                &id,
                SessionCommand::End {
                    reason: SessionEndReason::Logout,
                    at: ctx.at,
                },
                &meta,
            )
            .await?;
        self.settle::<Session>(&id).await
    }

    /// CSRF token bound to a session: derived, so nothing extra is stored.
    pub fn csrf_token(&self, session_token: &str) -> String {
        hmac_hex(&self.pepper, "csrf", session_token)
    }

    // ---- Google ------------------------------------------------------------------------

    pub async fn google_sign_in(
        &self,
        claims: IdClaims,
        age: &AgeInput,
        ctx: &Ctx,
    ) -> Result<SignedIn, ServiceError> {
        let sub_hash = self.google_hash(&claims.sub);
        let email = claims
            .email
            .as_deref()
            .and_then(normalize_email)
            .ok_or_else(|| ServiceError::bad("Google did not share a usable email address"))?;
        // The address becomes the account's (receipts, notices and request codes go there):
        // only one Google vouches for will do, also for an account already linked to this
        // Google subject. Nothing is looked up, claimed or created before this check.
        if !claims.email_verified {
            return Err(ServiceError::Forbidden(GOOGLE_EMAIL_UNVERIFIED.into()));
        }
        let known = self
            .identity_index
            .find(IdentityKind::Google, &sub_hash)
            .await?;
        let account_id = match known {
            Some(id) => id,
            None => {
                let by_email = self
                    .identity_index
                    .find(IdentityKind::Email, &self.email_hash(&email))
                    .await?;
                let signing_up = match by_email {
                    None => true,
                    // An address claimed by a sign-in link never used: still a sign-up.
                    Some(id) => self.is_new_account(id).await?,
                };
                if signing_up {
                    // A sign-up: refused before anything is claimed without the age check.
                    self.sign_up_terms(age, ctx.at).await?;
                }
                let candidate = by_email.unwrap_or_else(Uuid::new_v4);
                self.identity_index
                    .claim(
                        IdentityKind::Google,
                        &sub_hash,
                        candidate,
                        ctx.at.timestamp_millis(),
                    )
                    .await?
            }
        };
        let subject = account_id.to_string();
        let seal = |v: String| {
            let subject = subject.clone();
            async move {
                self.vault
                    .seal(&subject, DataCategory::Account, ctx.at, &v)
                    .await
            }
        };
        let profile = GoogleProfile {
            sub: seal(claims.sub.clone()).await?,
            name: match claims.name.clone() {
                Some(n) => Some(seal(n).await?),
                None => None,
            },
            picture: match claims.picture.clone() {
                Some(p) => Some(seal(p).await?),
                None => None,
            },
        };
        let meta = self
            .meta(Actor::Account(account_id), Some(account_id), ctx)
            .await?;
        let (account, _) = self.stores.identity.accounts.load(&subject).await?;
        let created = match account.status {
            AccountStatus::Erased => {
                return Err(ServiceError::Forbidden(
                    "this account has been erased".into(),
                ))
            }
            AccountStatus::PendingDeletion => return Err(pending_deletion()),
            AccountStatus::Active => {
                if account.google_sub.is_none() {
                    self.stores
                        .identity
                        .accounts
                        .execute(
                            &subject,
                            AccountCommand::LinkGoogle {
                                profile,
                                at: ctx.at,
                            },
                            &meta,
                        )
                        .await?;
                }
                false
            }
            AccountStatus::New => {
                let hash = self.email_hash(&email);
                self.identity_index
                    .claim(
                        IdentityKind::Email,
                        &hash,
                        account_id,
                        ctx.at.timestamp_millis(),
                    )
                    .await?;
                let terms = self.sign_up_terms(age, ctx.at).await?;
                let sealed_email = seal(email.clone()).await?;
                self.register(
                    account_id,
                    sealed_email,
                    SignInMethod::Google,
                    Some(profile),
                    terms,
                    &meta,
                )
                .await?
            }
        };
        let session_token = self
            .start_session(account_id, SignInMethod::Google, ctx)
            .await?;
        Ok(SignedIn {
            account_id,
            session_token,
            created,
        })
    }

    // ---- profile -----------------------------------------------------------------------

    /// The holder's address, or `None` once it is erased (or never registered).
    pub(crate) async fn email_of(&self, account_id: Uuid) -> Result<Option<String>, ServiceError> {
        let (a, _) = self
            .stores
            .identity
            .accounts
            .load(&account_id.to_string())
            .await?;
        Ok(self.vault.open_opt(&a.email).await?.and_then(Opened::value))
    }

    pub async fn account_is_active(&self, account_id: Uuid) -> Result<bool, ServiceError> {
        let (a, _) = self
            .stores
            .identity
            .accounts
            .load(&account_id.to_string())
            .await?;
        Ok(a.status == AccountStatus::Active)
    }

    pub async fn me(&self, account_id: Uuid) -> Result<Me, ServiceError> {
        let (a, _) = self
            .stores
            .identity
            .accounts
            .load(&account_id.to_string())
            .await?;
        if a.status != AccountStatus::Active {
            return Err(ServiceError::SignInRequired);
        }
        let open = |o: Option<Opened<String>>| o.and_then(Opened::value);
        Ok(Me {
            account_id,
            email: open(self.vault.open_opt(&a.email).await?).unwrap_or_default(),
            name: open(self.vault.open_opt(&a.name).await?),
            picture: open(self.vault.open_opt(&a.picture).await?),
            created_at: a.created_at.unwrap_or_default(),
            sign_in_methods: a.methods,
        })
    }

    pub async fn correct_name(
        &self,
        account_id: Uuid,
        name: &str,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let name = display_name(name)?;
        let subject = account_id.to_string();
        let sealed = self
            .vault
            .seal(&subject, DataCategory::Account, ctx.at, &name.to_string())
            .await?;
        let meta = self.meta(actor, Some(account_id), ctx).await?;
        self.stores
            .identity
            .accounts
            .execute(
                &subject,
                AccountCommand::CorrectName {
                    name: sealed,
                    at: ctx.at,
                },
                &meta,
            )
            .await?;
        self.settle::<Account>(&subject).await
    }

    /// Starts an email change: nothing changes until the new address confirms.
    pub async fn request_email_change(
        &self,
        account_id: Uuid,
        raw_email: &str,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let email = normalize_email(raw_email)
            .ok_or_else(|| ServiceError::bad("email is not a valid address"))?;
        let hash = self.email_hash(&email);
        if let Some(owner) = self.identity_index.find(IdentityKind::Email, &hash).await? {
            if owner == account_id {
                return Err(ServiceError::bad("that is already your email address"));
            }
        }
        self.limits
            .magic_link(&hash, ctx.ip.as_deref())
            .await
            .map_err(ServiceError::TooManyRequests)?;
        self.issue_link(&email, LinkPurpose::ChangeEmail { account_id }, ctx)
            .await
    }

    // ---- API keys ----------------------------------------------------------------------

    pub async fn create_api_key(
        &self,
        account_id: Uuid,
        name: &str,
        ctx: &Ctx,
    ) -> Result<CreatedApiKey, ServiceError> {
        let name = name.trim();
        let max = journey_domain::api_key::MAX_NAME_LEN;
        if name.is_empty() || name.chars().count() > max {
            return Err(ServiceError::bad(format!(
                "name must be 1 to {max} characters"
            )));
        }
        crate::text::single_line("name", name)?;
        let sealed_name = self
            .vault
            .seal(
                &account_id.to_string(),
                DataCategory::Account,
                ctx.at,
                &name.to_string(),
            )
            .await?;
        let key = new_api_key();
        let id = Uuid::new_v4();
        let meta = self
            .meta(Actor::Account(account_id), Some(account_id), ctx)
            .await?;
        self.stores
            .identity
            .keys
            .execute(
                &id.to_string(),
                ApiKeyCommand::Create {
                    account_id,
                    name: sealed_name,
                    key_hash: hmac_hex(&self.pepper, "api-key", &key.raw),
                    prefix: key.prefix.clone(),
                    last4: key.last4.clone(),
                    at: ctx.at,
                },
                &meta,
            )
            .await?;
        self.settle::<ApiKey>(&id.to_string()).await?;
        Ok(CreatedApiKey {
            id,
            name: name.to_string(),
            key: key.raw,
            prefix: key.prefix,
            last4: key.last4,
            created_at: ctx.at,
        })
    }

    pub async fn list_api_keys(&self, account_id: Uuid) -> Result<Vec<ApiKeyView>, ServiceError> {
        let rows = sqlx::query(
            "SELECT key_id, name, prefix, last4, created_at, last_used_at FROM rm_api_keys
             WHERE account_id = $1 AND revoked_at IS NULL ORDER BY created_at, key_id",
        )
        .bind(account_id.to_string())
        .fetch_all(&self.db.any)
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for r in &rows {
            let prefix: String = r.try_get(2)?;
            let last4: String = r.try_get(3)?;
            let sealed: journey_domain::Sealed<String> =
                serde_json::from_str(&r.try_get::<String, _>(1)?).context("stored key name")?;
            keys.push(ApiKeyView {
                id: Uuid::parse_str(&r.try_get::<String, _>(0)?).context("bad key id")?,
                name: self.vault.open(&sealed).await?.value().unwrap_or_default(),
                display: format!("{prefix}…{last4}"),
                prefix,
                last4,
                created_at: from_ms(r.try_get(4)?),
                last_used_at: r.try_get::<Option<i64>, _>(5)?.map(from_ms),
            });
        }
        Ok(keys)
    }

    /// Revokes one of the caller's keys. Another account's key id answers 404, like an
    /// unknown one, so ids reveal nothing.
    pub async fn revoke_api_key(
        &self,
        account_id: Uuid,
        key_id: Uuid,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let (key, _) = self.stores.identity.keys.load(&key_id.to_string()).await?;
        if key.account_id != Some(account_id) || key.revoked {
            return Err(ServiceError::NotFound("api key not found".into()));
        }
        let meta = self
            .meta(Actor::Account(account_id), Some(account_id), ctx)
            .await?;
        self.stores
            .identity
            .keys
            .execute(
                &key_id.to_string(),
                ApiKeyCommand::Revoke { at: ctx.at },
                &meta,
            )
            .await?;
        self.stores.identity.key_cache.forget_key(key_id);
        self.settle::<ApiKey>(&key_id.to_string()).await
    }

    /// Resolves a presented key to (key id, account id). Usage is recorded at most once a
    /// minute per key so `last used` stays useful without an event per request.
    pub async fn authenticate_api_key(
        &self,
        raw: &str,
        ctx: &Ctx,
    ) -> Result<(Uuid, Uuid), ServiceError> {
        if !secrets::api_key_well_formed(raw) {
            return Err(ServiceError::BadApiKey);
        }
        let hash = hmac_hex(&self.pepper, "api-key", raw);
        let cache = &self.stores.identity.key_cache;
        let known = match cache.get(&hash) {
            Some(known) => known,
            None => {
                let known = self.look_up_api_key(&hash).await?;
                cache.put(hash.clone(), known);
                known
            }
        };
        let KnownKey {
            key_id, account_id, ..
        } = known;
        if known
            .last_used_ms
            .is_none_or(|t| ctx.at.timestamp_millis() - t >= 60_000)
        {
            let meta = self
                .meta(Actor::ApiKey(key_id), Some(account_id), ctx)
                .await?;
            if let Err(e) = self
                .stores
                .identity
                .keys
                .execute(
                    &key_id.to_string(),
                    ApiKeyCommand::RecordUse { at: ctx.at },
                    &meta,
                )
                .await
            {
                // A key revoked a moment ago must not authenticate.
                if matches!(e, StoreError::Rejected(_)) {
                    cache.forget_key(key_id);
                    return Err(ServiceError::BadApiKey);
                }
                tracing::warn!(error = %e, "could not record api key use");
            }
            cache.note_use(&hash, ctx.at.timestamp_millis());
            self.runner.nudge();
        }
        Ok((key_id, account_id))
    }

    /// An active, unrevoked key of an active account, from the read models; 403 while a
    /// payment dispute suspends the account.
    async fn look_up_api_key(&self, hash: &str) -> Result<KnownKey, ServiceError> {
        let row = sqlx::query(
            "SELECT k.key_id, k.account_id, k.last_used_at, COALESCE(b.suspended, 0)
             FROM rm_api_keys k
             JOIN rm_accounts a ON a.account_id = k.account_id AND a.status = 'active'
             LEFT JOIN rm_billing b ON b.account_id = k.account_id
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.db.any)
        .await?
        .ok_or(ServiceError::BadApiKey)?;
        let key_id =
            Uuid::parse_str(&row.try_get::<String, _>(0)?).map_err(|_| ServiceError::BadApiKey)?;
        let account_id =
            Uuid::parse_str(&row.try_get::<String, _>(1)?).map_err(|_| ServiceError::BadApiKey)?;
        if row.try_get::<i64, _>(3)? != 0 {
            return Err(ServiceError::Forbidden(
                "account suspended: a payment dispute was opened; contact support to restore access"
                    .into(),
            ));
        }
        Ok(KnownKey {
            key_id,
            account_id,
            last_used_ms: row.try_get(2)?,
        })
    }

    /// Forgets this process's cached authentications of the account's keys (after a
    /// change that may refuse them, such as a dispute's suspension).
    pub fn forget_cached_keys_of(&self, account_id: Uuid) {
        self.stores.identity.key_cache.forget_account(account_id);
    }

    // ---- erasure -----------------------------------------------------------------------

    pub async fn open_sessions_of(&self, subject: &str) -> Result<Vec<String>, ServiceError> {
        self.ids_of(
            subject,
            "SELECT session_id FROM rm_sessions WHERE account_id = $1 AND ended_at IS NULL",
        )
        .await
    }

    pub async fn live_keys_of(&self, subject: &str) -> Result<Vec<String>, ServiceError> {
        self.ids_of(
            subject,
            "SELECT key_id FROM rm_api_keys WHERE account_id = $1 AND revoked_at IS NULL",
        )
        .await
    }

    pub async fn end_session_for_erasure(
        &self,
        session: &str,
        meta: &CommandMeta,
    ) -> Result<(), ServiceError> {
        let end = SessionCommand::End {
            reason: SessionEndReason::AccountErased,
            at: meta.at,
        };
        self.stores
            .identity
            .sessions
            .execute(session, end, meta)
            .await?;
        Ok(())
    }

    pub async fn revoke_key_for_erasure(
        &self,
        key: &str,
        meta: &CommandMeta,
    ) -> Result<(), ServiceError> {
        self.stores
            .identity
            .keys
            .execute(key, ApiKeyCommand::Revoke { at: meta.at }, meta)
            .await?;
        if let Ok(key_id) = Uuid::parse_str(key) {
            self.stores.identity.key_cache.forget_key(key_id);
        }
        Ok(())
    }

    /// The first column of a read-model query keyed by account id.
    async fn ids_of(&self, account_id: &str, sql: &str) -> Result<Vec<String>, ServiceError> {
        let rows = sqlx::query(sql)
            .bind(account_id)
            .fetch_all(&self.db.any)
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    /// Whether anything is held for a subject that has no account yet (a sign-in link
    /// was requested but never used).
    async fn subject_has_data(&self, subject: &str) -> Result<bool, ServiceError> {
        let n: i64 = sqlx::query(
            "SELECT (SELECT count(*) FROM identity_index WHERE account_id = $1)
                  + (SELECT count(*) FROM data_keys WHERE subject = $1)",
        )
        .bind(subject)
        .fetch_one(&self.db.any)
        .await?
        .try_get(0)?;
        Ok(n > 0)
    }

    /// 404 "no such account" unless the account exists or data is held about it.
    pub async fn ensure_erasable(&self, account_id: Uuid) -> Result<(), ServiceError> {
        let subject = account_id.to_string();
        let (account, _) = self.stores.identity.accounts.load(&subject).await?;
        if account.status == AccountStatus::New && !self.subject_has_data(&subject).await? {
            return Err(ServiceError::NotFound("no such account".into()));
        }
        Ok(())
    }

    /// Erases an account now: ends its sessions, revokes its keys, destroys its data keys
    /// (every category but billing), drops its identity claims and records `AccountErased`,
    /// on which every projection forgets the subject.
    pub async fn erase_account(
        &self,
        account_id: Uuid,
        reason: &str,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<ErasureReport, ServiceError> {
        let subject = account_id.to_string();
        self.ensure_erasable(account_id).await?;
        // The session and key lists below come from read models: bring them up to date.
        self.runner.catch_up().await?;
        // No IP in erasure metadata: it would be sealed under a key we are about to destroy.
        let meta = CommandMeta {
            actor,
            request_id: ctx.request_id.clone(),
            client_ip: None,
            at: ctx.at,
        };
        let sessions = self.open_sessions_of(&subject).await?;
        for s in &sessions {
            self.end_session_for_erasure(s, &meta).await?;
        }
        let keys = self.live_keys_of(&subject).await?;
        for k in &keys {
            self.revoke_key_for_erasure(k, &meta).await?;
        }
        let categories: Vec<DataCategory> = DataCategory::erasable().collect();
        let destroyed = self
            .vault
            .destroy_subject(&subject, &categories, reason, ctx.at)
            .await?;
        let claims = self.identity_index.forget_account(account_id).await?;
        self.stores
            .identity
            .accounts
            .execute(
                &subject,
                AccountCommand::Erase {
                    reason: reason.to_string(),
                    at: ctx.at,
                },
                &meta,
            )
            .await?;
        self.settle::<Account>(&subject).await?;
        Ok(ErasureReport {
            account_id,
            keys_destroyed: destroyed.keys,
            categories: destroyed.categories,
            sessions_ended: sessions.len(),
            api_keys_revoked: keys.len(),
            identity_claims_dropped: claims,
        })
    }
}

/// The account lifecycle steps other contexts drive: the privacy context's deletion
/// window, erasure and certificate are commands on the `Account` aggregate this context
/// owns.
impl Identity<'_> {
    /// The account's current state (a stream that does not exist loads as a new account).
    pub async fn account_state(&self, subject: &str) -> Result<Account, ServiceError> {
        Ok(self.stores.identity.accounts.load(subject).await?.0)
    }

    /// Runs a lifecycle command (`RequestDeletion`, `CancelDeletion`, `Certify`) on the
    /// account, refusals as the aggregate gives them.
    pub async fn account_lifecycle(
        &self,
        subject: &str,
        command: AccountCommand,
        meta: &CommandMeta,
    ) -> Result<(), StoreError<journey_domain::account::AccountError>> {
        match &command {
            AccountCommand::RequestDeletion { .. }
            | AccountCommand::CancelDeletion { .. }
            | AccountCommand::Certify { .. } => {}
            _ => {
                return Err(StoreError::Storage(
                    "not an account lifecycle command".into(),
                ))
            }
        }
        self.stores
            .identity
            .accounts
            .execute(subject, command, meta)
            .await
    }
}
