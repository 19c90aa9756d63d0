//! Privacy-policy versions: publishing (with the 30-day rule for material changes), the
//! notice emailed to every holder (one `PolicyNoticeSent` each), the version in force
//! (recorded at sign-up and on consent changes), and acceptance by continued use (the
//! first authenticated request after a version takes effect writes `PolicyAccepted`).

use super::Legal;
use crate::error::ServiceError;
use crate::identity::Ctx;
use chrono::{DateTime, Utc};
use journey_commands::mailer::Mail;
use journey_domain::meta::{Actor, CommandMeta};
use journey_domain::policy::{
    ack_id, AckCommand, PolicyAck, PolicyCommand, PolicyDocument, PolicyVersion, Publication,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa::ToSchema;
use uuid::Uuid;

/// Published versions are read at most this often per process (acceptance checks run on
/// every authenticated request).
const CACHE_FOR: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishPolicy {
    /// A label such as `2026-12-01`; letters, digits, `.`, `-`, `_`.
    pub version: String,
    /// The policy text, or
    pub text: Option<String>,
    /// where it is published (exactly one of the two).
    pub url: Option<String>,
    /// RFC 3339; a material change needs at least 30 days from now.
    pub effective_at: DateTime<Utc>,
    pub material: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyView {
    pub version: String,
    pub effective_at: DateTime<Utc>,
    pub published_at: DateTime<Utc>,
    pub material: bool,
    pub text: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrivacyPolicyPage {
    /// The version in force now (`null` before any is published: then `baseline_version`).
    pub current: Option<PolicyView>,
    /// Published versions that take effect later, soonest first.
    pub upcoming: Vec<PolicyView>,
    /// The version in force before any was published here (configuration).
    pub baseline_version: String,
    pub privacy_contact: String,
    pub supervisory_authority: crate::config::Authority,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyAckView {
    pub version: String,
    pub notified_at: Option<DateTime<Utc>>,
    pub accepted_at: Option<DateTime<Utc>>,
}

/// The process-wide cache of published versions.
#[derive(Default)]
pub struct PolicyCache {
    loaded: std::sync::Mutex<Option<(Instant, Arc<Vec<PolicyView>>)>>,
    accepted: std::sync::Mutex<std::collections::HashSet<(String, Uuid)>>,
}

fn view(version: &str, p: &Publication) -> PolicyView {
    let (text, url) = match &p.document {
        PolicyDocument::Text(t) => (Some(t.clone()), None),
        PolicyDocument::Url(u) => (None, Some(u.clone())),
    };
    PolicyView {
        version: version.to_string(),
        effective_at: p.effective_at,
        published_at: p.published_at,
        material: p.material,
        text,
        url,
    }
}

impl Legal<'_> {
    /// Every published version, oldest effective first.
    pub async fn policies(&self) -> Result<Arc<Vec<PolicyView>>, ServiceError> {
        if let Some((at, list)) = self.policy_cache.loaded.lock().expect("cache").as_ref() {
            if at.elapsed() < CACHE_FOR {
                return Ok(list.clone());
            }
        }
        let ids = journey_projections::events::stream_ids(&self.db, "policy", i64::MAX).await?;
        let mut list = Vec::new();
        for id in ids {
            let (p, _) = self.stores.legal.policies.load(&id).await?;
            if let Some(publication) = p.publication {
                list.push(view(&id, &publication));
            }
        }
        list.sort_by_key(|v| v.effective_at);
        let list = Arc::new(list);
        *self.policy_cache.loaded.lock().expect("cache") = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// The version in force at `at`: the published one that took effect last, or the
    /// configured baseline.
    pub async fn policy_in_force(&self, at: DateTime<Utc>) -> Result<String, ServiceError> {
        Ok(self
            .policies()
            .await?
            .iter()
            .rev()
            .find(|p| p.effective_at <= at)
            .map(|p| p.version.clone())
            .unwrap_or_else(|| self.cfg.policy_version.clone()))
    }

    pub async fn privacy_policy_page(&self) -> Result<PrivacyPolicyPage, ServiceError> {
        let now = self.clock.now();
        let list = self.policies().await?;
        Ok(PrivacyPolicyPage {
            current: list.iter().rev().find(|p| p.effective_at <= now).cloned(),
            upcoming: list
                .iter()
                .filter(|p| p.effective_at > now)
                .cloned()
                .collect(),
            baseline_version: self.cfg.policy_version.clone(),
            privacy_contact: self.cfg.privacy_contact.clone(),
            supervisory_authority: self.cfg.supervisory_authority.clone(),
        })
    }

    /// Publishes a version and starts emailing every holder who has an account now.
    pub async fn publish_policy(
        &self,
        staff: Uuid,
        input: PublishPolicy,
        ctx: &Ctx,
    ) -> Result<PolicyView, ServiceError> {
        let version = input.version.trim().to_string();
        if version.is_empty()
            || version.len() > 64
            || !version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(ServiceError::bad(
                "version must be 1 to 64 letters, digits, '.', '-' or '_'",
            ));
        }
        let document = match (input.text, input.url) {
            (Some(t), None) if !t.trim().is_empty() => PolicyDocument::Text(t),
            (None, Some(u)) => {
                let u = url::Url::parse(&u)
                    .ok()
                    .filter(|u| u.scheme() == "https" || u.scheme() == "http")
                    .ok_or_else(|| ServiceError::bad("url must be an http(s) URL"))?;
                PolicyDocument::Url(u.to_string())
            }
            _ => return Err(ServiceError::bad("give exactly one of text and url")),
        };
        let publication = Publication {
            document,
            effective_at: input.effective_at,
            material: input.material,
            published_by: staff,
            published_at: ctx.at,
        };
        let meta = self.identity().meta(Actor::Staff(staff), None, ctx).await?;
        self.stores
            .legal
            .policies
            .execute(
                &version,
                PolicyCommand::Publish(Box::new(publication.clone())),
                &meta,
            )
            .await
            .map_err(|e| match e {
                journey_commands::StoreError::Rejected(
                    journey_domain::policy::PolicyError::AlreadyPublished,
                ) => ServiceError::Conflict(format!("version {version} is already published")),
                other => other.into(),
            })?;
        *self.policy_cache.loaded.lock().expect("cache") = None;
        let accounts = self.holders_now().await?;
        let app = self.handle();
        let v = version.clone();
        tokio::spawn(async move {
            // One sender at a time over all instances (and `journey policy notify`).
            let legal = app.legal();
            let send = legal.send_policy_notices(&v, &accounts);
            match app.leases.run_when_free("policy-notices", send).await {
                Ok(journey_commands::leases::Ran::Done(Ok(_))) => {}
                Ok(journey_commands::leases::Ran::Done(Err(e))) => {
                    tracing::error!(error = %e, version = %v, "policy notices stopped; re-publishing is refused, run them again with `journey policy notify`")
                }
                Ok(_) => {
                    tracing::error!(version = %v, "policy notices abandoned (lease lost); run them again with `journey policy notify`")
                }
                Err(e) => {
                    tracing::error!(error = %e, version = %v, "policy notices not sent (job lease); run them with `journey policy notify`")
                }
            }
        });
        Ok(view(&version, &publication))
    }

    /// Accounts open now (active or inside their deletion window).
    pub async fn holders_now(&self) -> Result<Vec<Uuid>, ServiceError> {
        self.runner.catch_up().await?;
        let rows: Vec<(String,)> = sqlx::query_as("SELECT account_id FROM rm_accounts")
            .fetch_all(&self.db.any)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id,)| Uuid::parse_str(&id).ok())
            .collect())
    }

    /// Emails the notice of `version` to each of `accounts` not yet told, recording each.
    pub async fn send_policy_notices(
        &self,
        version: &str,
        accounts: &[Uuid],
    ) -> Result<u64, ServiceError> {
        let (policy, _) = self.stores.legal.policies.load(version).await?;
        let p = policy
            .publication
            .ok_or_else(|| ServiceError::NotFound(format!("no policy version {version}")))?;
        let where_ = match &p.document {
            PolicyDocument::Url(u) => format!("Read it at {u}."),
            PolicyDocument::Text(_) => format!(
                "Read it at {}/v1/legal/privacy-policy.",
                self.cfg.public_url()
            ),
        };
        let kind = if p.material {
            "a material change"
        } else {
            "an update"
        };
        let mut sent = 0;
        for account in accounts {
            let id = ack_id(version, *account);
            let (ack, _) = self.stores.legal.policy_acks.load(&id).await?;
            if ack.notified_at.is_some() {
                continue;
            }
            let Some(to) = self.identity().email_of(*account).await? else {
                continue;
            };
            self.mailer
                .send(Mail {
                    to,
                    subject: format!("JourneyAPI privacy policy: version {version}"),
                    body: format!(
                        "We are making {kind} to our privacy policy. Version {version} takes effect on {}.\n{where_}\nQuestions: {}\n",
                        p.effective_at.format("%Y-%m-%d %H:%M UTC"),
                        self.cfg.privacy_contact
                    ),
                })
                .await
                .map_err(ServiceError::Internal)?;
            let now = self.clock.now();
            let cmd = AckCommand::RecordNotice {
                account_id: *account,
                version: version.to_string(),
                at: now,
            };
            self.stores
                .legal
                .policy_acks
                .execute(&id, cmd, &CommandMeta::system(now))
                .await?;
            sent += 1;
        }
        self.runner.nudge();
        Ok(sent)
    }

    /// Records acceptance by continued use: the first authenticated request after the
    /// version in force took effect. Cheap after the first time (cached per process).
    pub async fn note_policy_use(&self, account: Uuid, via: &str) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let list = self.policies().await?;
        let Some(current) = list.iter().rev().find(|p| p.effective_at <= now) else {
            return Ok(());
        };
        let key = (current.version.clone(), account);
        if self
            .policy_cache
            .accepted
            .lock()
            .expect("cache")
            .contains(&key)
        {
            return Ok(());
        }
        let id = ack_id(&current.version, account);
        let cmd = AckCommand::Accept {
            account_id: account,
            version: current.version.clone(),
            via: via.to_string(),
            at: now,
        };
        let meta = CommandMeta::system(now);
        self.stores
            .legal
            .policy_acks
            .execute(&id, cmd, &meta)
            .await?;
        self.runner.nudge();
        self.policy_cache
            .accepted
            .lock()
            .expect("cache")
            .insert(key);
        Ok(())
    }

    /// Which versions the holder was told about and accepted.
    pub async fn policy_acks_of(&self, account: Uuid) -> Result<Vec<PolicyAckView>, ServiceError> {
        let mut out = Vec::new();
        for p in self.policies().await?.iter() {
            let (ack, _): (PolicyAck, _) = self
                .stores
                .legal
                .policy_acks
                .load(&ack_id(&p.version, account))
                .await?;
            out.push(PolicyAckView {
                version: p.version.clone(),
                notified_at: ack.notified_at,
                accepted_at: ack.accepted_at,
            });
        }
        Ok(out)
    }

    /// A version's publication, for the CLI.
    pub async fn policy_version(&self, version: &str) -> Result<PolicyVersion, ServiceError> {
        Ok(self.stores.legal.policies.load(version).await?.0)
    }
}
