//! Everything a request handler or CLI command needs, built once from configuration.

use crate::config::{secret_or_generated, Config};
use crate::rate_limit::RateLimits;
use crate::upstreams::Upstreams;
use anyhow::{Context, Result};
use journey_commands::billing_refs::BillingRefs;
use journey_commands::clock::{SharedClock, SystemClock};
use journey_commands::identity_index::IdentityIndex;
use journey_commands::mailer::Mailer;
use journey_commands::net_guard::Guard;
use journey_commands::oidc::{OidcClient, OidcConfig};
use journey_commands::stripe_api::StripeApi;
use journey_commands::vault::MasterKey;
use journey_commands::{Db, Store, Vault};
use journey_domain::account::Account;
use journey_domain::api_key::ApiKey;
use journey_domain::billing::BillingAccount;
use journey_domain::catalog::Catalog;
use journey_domain::consent::Consents;
use journey_domain::credits::CreditLedger;
use journey_domain::magic_link::MagicLink;
use journey_domain::models::ModelCatalog;
use journey_domain::requests::DataSubjectRequest;
use journey_domain::retention_log::RetentionRun;
use journey_domain::session::Session;
use journey_domain::staff::StaffMember;
use journey_domain::task::Task;
use journey_projections::Runner;
use std::sync::Arc;

pub struct Stores {
    pub accounts: Store<Account>,
    pub credits: Store<CreditLedger>,
    pub billing: Store<BillingAccount>,
    pub staff: Store<StaffMember>,
    pub consents: Store<Consents>,
    pub retention: Store<RetentionRun>,
    pub requests: Store<DataSubjectRequest>,
    pub links: Store<MagicLink>,
    pub sessions: Store<Session>,
    pub keys: Store<ApiKey>,
    pub tasks: Store<Task>,
    pub policies: Store<journey_domain::policy::PolicyVersion>,
    pub policy_acks: Store<journey_domain::policy::PolicyAck>,
    pub child_reports: Store<journey_domain::child_report::ChildReport>,
    pub breaches: Store<journey_domain::breach::Breach>,
    pub takedowns: Store<journey_domain::takedown::Takedown>,
    pub tickets: Store<journey_domain::ticket::Ticket>,
    pub stripe_events: Store<journey_domain::stripe_event_log::StripeEventLog>,
}

pub struct AppState {
    pub cfg: Config,
    pub db: Db,
    pub vault: Vault,
    pub clock: SharedClock,
    pub mailer: Mailer,
    pub oidc: OidcClient,
    pub runner: Arc<Runner>,
    /// The batched usage log (`commands::usage_log`).
    pub usage_log: journey_commands::usage_log::UsageLog,
    pub stores: Stores,
    pub identity: IdentityIndex,
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

pub type App = Arc<AppState>;

impl AppState {
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
        Ok(Arc::new(AppState {
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
                accounts: Store::new(&db),
                credits: Store::new(&db),
                billing: Store::new(&db),
                staff: Store::new(&db),
                consents: Store::new(&db),
                retention: Store::new(&db),
                requests: Store::new(&db),
                links: Store::new(&db),
                sessions: Store::new(&db),
                keys: Store::new(&db),
                tasks: Store::new(&db),
                policies: Store::new(&db),
                policy_acks: Store::new(&db),
                child_reports: Store::new(&db),
                breaches: Store::new(&db),
                takedowns: Store::new(&db),
                tickets: Store::new(&db),
                stripe_events: Store::new(&db),
            },
            identity: IdentityIndex::new(db.clone()),
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
