//! The shared core every context works over (configuration, database, event stores, vault,
//! clock, outside clients), built once from configuration, and the way in to each context:
//! `core.identity()`, `core.credits()`, `core.tasks()`, `core.privacy()`, `core.legal()`.
//!
//! A context's service is a borrowed view of the core (`Identity<'a>(&'a Core)`): its use
//! cases are methods on the view, and a use case that needs another context calls that
//! context's service (`self.credits().reserve(..)`), never its internals.

use crate::config::{secret_or_generated, Config};
use crate::rate_limit::RateLimits;
use crate::tasks::upstreams::Upstreams;
use anyhow::{Context, Result};
use journey_commands::billing_refs::BillingRefs;
use journey_commands::clock::{SharedClock, SystemClock};
use journey_commands::identity_index::IdentityIndex;
use journey_commands::mailer::Mailer;
use journey_commands::net_guard::Guard;
use journey_commands::oidc::{OidcClient, OidcConfig};
use journey_commands::stripe_api::StripeApi;
use journey_commands::vault::MasterKey;
use journey_commands::{Db, Vault};
use journey_domain::catalog::Catalog;
use journey_domain::models::ModelCatalog;
use journey_projections::Runner;
use std::sync::Arc;

/// Every context's stores, each owned by its context (`identity::Stores`, ...): the
/// fields of each are private to that context's modules.
pub struct Stores {
    pub(crate) identity: crate::identity::Stores,
    pub(crate) credits: crate::credits::Stores,
    pub(crate) tasks: crate::tasks::Stores,
    pub(crate) privacy: crate::privacy::Stores,
    pub(crate) legal: crate::legal::Stores,
}

pub struct Core {
    /// This core's own `Arc`, for use cases that hand work to a background task.
    me: std::sync::Weak<Core>,
    pub cfg: Config,
    pub db: Db,
    pub vault: Vault,
    pub clock: SharedClock,
    pub mailer: Mailer,
    pub oidc: OidcClient,
    pub runner: Arc<Runner>,
    /// The batched usage log (`commands::usage_log`).
    pub usage_log: journey_commands::usage_log::UsageLog,
    pub(crate) stores: Stores,
    pub identity_index: IdentityIndex,
    pub pepper: Vec<u8>,
    pub limits: RateLimits,
    /// Job leases: one instance at a time runs the retention run and policy notices.
    pub leases: journey_commands::leases::Leases,
    pub catalog: Catalog,
    pub stripe: StripeApi,
    pub refs: BillingRefs,
    pub models: ModelCatalog,
    pub upstreams: Upstreams,
    /// Address guard for every client-supplied URL (webhooks, images to download).
    pub guard: Guard,
    pub webhook_client: reqwest::Client,
    pub download_client: reqwest::Client,
    pub worker_wake: tokio::sync::Notify,
    /// Names this process's leases on shared work rows.
    pub instance_id: String,
    /// Where this process listens, once it does (callback URLs when no public_url is set).
    pub listen_addr: std::sync::OnceLock<std::net::SocketAddr>,
    pub policy_cache: crate::legal::policies::PolicyCache,
}

pub type App = Arc<Core>;

impl Core {
    /// Connects, migrates and wires the application. `clock` is injectable for tests.
    pub async fn build(cfg: Config, clock: Option<SharedClock>) -> Result<App> {
        crate::transport::check(&cfg)?;
        let url = cfg.database_url();
        if url.starts_with("sqlite:") {
            std::fs::create_dir_all(&cfg.data_dir)
                .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
        }
        if !url.starts_with("sqlite:") && (cfg.master_key.is_none() || cfg.pepper.is_none()) {
            anyhow::bail!(
                "JOURNEY_MASTER_KEY and JOURNEY_PEPPER must be configured for Postgres: several \
                 instances share the database and must share these secrets (generation into the \
                 data directory is only for the embedded SQLite default)"
            );
        }
        let db = Db::connect(&url).await?;
        db.migrate().await.context("migrations failed")?;
        let master =
            secret_or_generated(&cfg.master_key, &cfg.data_dir, "master.key", "master key")?;
        let master = MasterKey::parse(&master)
            .context("master key must be 32 bytes as 64 hex characters or base64")?;
        let pepper = secret_or_generated(&cfg.pepper, &cfg.data_dir, "pepper.key", "pepper")?;
        if pepper.len() < 16 {
            anyhow::bail!(
                "JOURNEY_PEPPER must be at least 16 characters (it keys every HMAC we store)"
            );
        }
        let mailer = match &cfg.smtp_url {
            Some(url) => Mailer::smtp(url, &cfg.mail_from)?,
            None => {
                tracing::warn!(
                    outbox = %cfg.data_dir.join("outbox").display(),
                    "no JOURNEY_SMTP_URL: emails (with live sign-in links) are written to the outbox; development only"
                );
                Mailer::outbox(cfg.data_dir.join("outbox"), &cfg.mail_from)
            }
        };
        let oidc = OidcClient::new(OidcConfig {
            issuer: cfg.google_issuer.clone(),
            client_id: cfg.google_client_id.clone(),
            client_secret: cfg.google_client_secret.clone(),
            redirect_uri: format!("{}/v1/auth/google/callback", cfg.public_url()),
        });
        let catalog = cfg.catalog()?;
        let stripe = StripeApi::new(
            cfg.stripe_secret_key.as_deref(),
            cfg.stripe_api_base.as_deref(),
        )?;
        let runner = Runner::new(db.clone(), journey_projections::read_models::all());
        let models = cfg.models()?;
        cfg.check_subprocessors()?;
        let upstreams = Upstreams::new(&cfg)?;
        let guard = Guard::new(cfg.allow_private_webhooks);
        if cfg.allow_private_webhooks {
            tracing::warn!(
                "JOURNEY_ALLOW_PRIVATE_WEBHOOKS is on: client URLs may reach internal addresses"
            );
        }
        let (usage_log, _writer) = journey_commands::usage_log::UsageLog::start(db.clone());
        let limits = crate::rate_limit::connect(&cfg, &db, pepper.as_bytes()).await?;
        let instance_id = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let leases = journey_commands::leases::Leases::new(
            db.clone(),
            instance_id.clone(),
            std::time::Duration::from_secs(cfg.job_lease_secs),
        );
        Ok(Arc::new_cyclic(|me| Core {
            me: me.clone(),
            usage_log,
            limits,
            leases,
            webhook_client: guard.client(std::time::Duration::from_secs(10)),
            download_client: guard.client(crate::tasks::create::IMAGE_LIMITS.timeout),
            guard,
            models,
            upstreams,
            worker_wake: tokio::sync::Notify::new(),
            listen_addr: std::sync::OnceLock::new(),
            policy_cache: Default::default(),
            instance_id,
            vault: Vault::new(db.clone(), master),
            clock: clock.unwrap_or_else(|| Arc::new(SystemClock)),
            stores: Stores {
                identity: crate::identity::Stores::new(&db),
                credits: crate::credits::Stores::new(&db),
                tasks: crate::tasks::Stores::new(&db),
                privacy: crate::privacy::Stores::new(&db),
                legal: crate::legal::Stores::new(&db),
            },
            identity_index: IdentityIndex::new(db.clone()),
            refs: BillingRefs::new(db.clone()),
            catalog,
            stripe,
            pepper: pepper.into_bytes(),
            mailer,
            oidc,
            runner,
            db,
            cfg,
        }))
    }
}

/// Declares a context's service: a borrowed view of the core whose methods are the
/// context's use cases.
macro_rules! service {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name<'a>(&'a $crate::app::Core);

        impl<'a> $name<'a> {
            pub fn new(core: &'a $crate::app::Core) -> Self {
                $name(core)
            }
        }

        impl std::ops::Deref for $name<'_> {
            type Target = $crate::app::Core;
            fn deref(&self) -> &$crate::app::Core {
                self.0
            }
        }
    };
}
pub(crate) use service;

impl Core {
    /// The shared handle of this core (for work that outlives the request).
    pub fn handle(&self) -> App {
        self.me.upgrade().expect("the core outlives its services")
    }

    /// Sign-in, sessions, profiles, API keys, staff roles and the audit trail.
    pub fn identity(&self) -> crate::identity::Identity<'_> {
        crate::identity::Identity::new(self)
    }
    /// Credits (reserve, capture, release, grants) and billing (Stripe).
    pub fn credits(&self) -> crate::credits::Credits<'_> {
        crate::credits::Credits::new(self)
    }
    /// Image-generation tasks: acceptance, relay, the worker, webhooks, the usage log.
    pub fn tasks(&self) -> crate::tasks::Tasks<'_> {
        crate::tasks::Tasks::new(self)
    }
    /// Consent, data-subject requests, export, deletion and retention.
    pub fn privacy(&self) -> crate::privacy::Privacy<'_> {
        crate::privacy::Privacy::new(self)
    }
    /// Policy versions, children, breaches, takedowns and support.
    pub fn legal(&self) -> crate::legal::Legal<'_> {
        crate::legal::Legal::new(self)
    }
}
