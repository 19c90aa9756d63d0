//! Configuration: defaults, then an optional `journey.toml` (or the file named by
//! `JOURNEY_CONFIG`), then `JOURNEY_*` environment variables.

use anyhow::{Context, Result};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The built-in plans and packs (edit a copy and set `catalog_path` to change them).
pub const DEFAULT_CATALOG: &str = include_str!("../../config/catalog.toml");
pub const DEFAULT_MODELS: &str = include_str!("../../config/models.toml");

/// An upstream provider (`providers.<name>`): where tasks are relayed and how.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ProviderConfig {
    /// `midjourney-proxy` or `openai-images`.
    pub kind: String,
    pub base_url: String,
    /// midjourney-proxy auth: `bearer` (resellers) or `mj-api-secret` (the open-source proxy).
    pub auth: journey_commands::upstream::mj_proxy::MjAuth,
    /// Secret; also `JOURNEY_PROVIDERS__<NAME>__API_KEY`. Without it tasks for this
    /// provider are refused with 503.
    pub api_key: Option<String>,
    /// midjourney-proxy speed mode: `fast`, `relax` or `turbo` (path prefix); none = `/mj`.
    pub speed: Option<String>,
    /// Per HTTP call to the provider.
    pub request_timeout_secs: u64,
    /// A task with no result after this long fails and its credits are released.
    pub task_timeout_secs: u64,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            kind: journey_domain::models::MJ_PROXY.into(),
            base_url: String::new(),
            auth: journey_commands::upstream::mj_proxy::MjAuth::Bearer,
            api_key: None,
            speed: None,
            request_timeout_secs: 30,
            task_timeout_secs: 900,
        }
    }
}

/// A sub-processor (privacy policy, section 4): who processes what, where, under which
/// transfer safeguard.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Subprocessor {
    pub name: String,
    pub purpose: String,
    pub data_categories: Vec<String>,
    pub location: String,
    pub transfer_safeguard: String,
}

/// The supervisory authority holders may complain to (section 7).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Authority {
    pub name: String,
    pub url: String,
}

fn default_subprocessors() -> std::collections::BTreeMap<String, Subprocessor> {
    let sp =
        |name: &str, purpose: &str, cats: &[&str], location: &str, safeguard: &str| Subprocessor {
            name: name.into(),
            purpose: purpose.into(),
            data_categories: cats.iter().map(|c| c.to_string()).collect(),
            location: location.into(),
            transfer_safeguard: safeguard.into(),
        };
    [
        (
            "stripe",
            sp(
                "Stripe, Inc.",
                "payment processing and subscription management",
                &["billing"],
                "United States",
                "EU-US Data Privacy Framework; standard contractual clauses",
            ),
        ),
        (
            "midjourney",
            sp(
                "BLTCY (midjourney-proxy relay)",
                "image generation with the Midjourney family",
                &["prompts"],
                "Singapore",
                "standard contractual clauses",
            ),
        ),
        (
            "images",
            sp(
                "BLTCY (OpenAI-compatible images relay)",
                "image generation with the other models",
                &["prompts"],
                "Singapore",
                "standard contractual clauses",
            ),
        ),
        (
            "email",
            sp(
                "Email delivery provider",
                "transactional email (sign-in links, receipts, notices)",
                &["account"],
                "European Union",
                "none needed (EU)",
            ),
        ),
        (
            "hosting",
            sp(
                "Hosting, database and CDN provider",
                "infrastructure",
                &["account", "usage", "prompts", "billing", "support"],
                "European Union",
                "none needed (EU)",
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn default_providers() -> std::collections::BTreeMap<String, ProviderConfig> {
    [
        (
            "midjourney".to_string(),
            ProviderConfig {
                kind: journey_domain::models::MJ_PROXY.into(),
                base_url: "https://api.bltcy.ai".into(),
                ..ProviderConfig::default()
            },
        ),
        (
            "images".to_string(),
            ProviderConfig {
                kind: journey_domain::models::OPENAI_IMAGES.into(),
                base_url: "https://api.bltcy.ai".into(),
                request_timeout_secs: 120,
                task_timeout_secs: 600,
                ..ProviderConfig::default()
            },
        ),
    ]
    .into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on.
    pub bind: String,
    /// Directory for the embedded database, generated secrets and the mail outbox.
    pub data_dir: PathBuf,
    /// `postgres://...` for production; default is SQLite under `data_dir`.
    pub database_url: Option<String>,
    /// 32-byte master key (hex or base64) wrapping all data keys. Secret.
    pub master_key: Option<String>,
    /// Server pepper for HMACs of API keys and lookup hashes. Secret.
    pub pepper: Option<String>,
    /// Public base URL used in emails and OAuth redirects; default `http://{bind}`.
    pub public_url: Option<String>,
    /// SMTP relay, e.g. `smtp://127.0.0.1:2525` or `smtps://user:pass@host`. Secret.
    pub smtp_url: Option<String>,
    pub mail_from: String,
    pub google_issuer: String,
    pub google_client_id: String,
    /// Secret.
    pub google_client_secret: String,
    /// Mark cookies `Secure` (turn off only for local plain-http development and tests).
    pub cookie_secure: bool,
    /// Take the client IP from the last `X-Forwarded-For` entry, the one a single trusted
    /// reverse proxy appends (enable only behind such a proxy).
    pub trust_forwarded_for: bool,
    pub magic_link_ttl_secs: i64,
    pub session_ttl_secs: i64,
    pub magic_link_per_email_per_hour: u32,
    pub magic_link_per_ip_per_hour: u32,
    /// `/readyz` fails when any projection is further behind than this many events.
    pub projection_lag_bound: i64,
    /// `text` or `json`.
    pub log_format: String,
    /// Plans and credit packs; default: the built-in `config/catalog.toml`.
    pub catalog_path: Option<PathBuf>,
    /// Stripe secret API key (`sk_...`); billing endpoints answer 503 without it. Secret.
    pub stripe_secret_key: Option<String>,
    /// Webhook signing secrets (`whsec_...`), comma-separated to accept several while
    /// rotating. Secret.
    pub stripe_webhook_secret: Option<String>,
    /// Stripe API base URL (tests point it at a local fake); default Stripe's.
    pub stripe_api_base: Option<String>,
    /// The baseline privacy-policy version: in force (recorded at sign-up and with consent
    /// changes) until a version published through `/admin/v1/policies` takes effect.
    pub policy_version: String,
    /// Seconds between the server's retention runs (0 = off; `journey retention run` still works).
    pub retention_interval_secs: u64,
    pub models_path: Option<PathBuf>,
    pub providers: std::collections::BTreeMap<String, ProviderConfig>,
    /// Lets customer webhooks and image downloads reach private, loopback and link-local
    /// addresses (`JOURNEY_ALLOW_PRIVATE_WEBHOOKS=true`); for development only.
    pub allow_private_webhooks: bool,
    /// Client-API requests per API key per minute (shared by every instance on Postgres
    /// or Redis).
    pub api_requests_per_key_per_minute: u32,
    /// `redis://[:password@]host:port[/db]`: keep the rate limits in Redis instead of the
    /// database (docs/operations.md, "Several instances"). Secret if it has a password.
    pub redis_url: Option<String>,
    /// Prepended to every Redis key (several deployments on one Redis).
    pub redis_key_prefix: String,
    /// Seconds a job lease (retention run, policy notices) lasts without renewal: how soon
    /// another instance takes over the job of a dead one.
    pub job_lease_secs: u64,
    /// Tasks an account may have in flight at once.
    pub max_tasks_in_flight: u32,
    /// How often the task worker looks for due work (milliseconds).
    pub task_worker_tick_ms: u64,
    /// How often in-flight tasks are polled upstream (the notifyHook's safety net).
    pub task_poll_interval_secs: u64,
    /// The sub-processor registry; every configured provider, Stripe (when configured), the
    /// email provider (`email`) and `hosting` must have an entry.
    pub subprocessors: std::collections::BTreeMap<String, Subprocessor>,
    pub privacy_contact: String,
    pub supervisory_authority: Authority,
    /// Countries (ISO alpha-2) whose residents must be 16, not 13, to sign up.
    pub age_16_countries: Vec<String>,
    /// Hours from a breach's discovery to the regulator notification deadline.
    pub breach_notification_hours: i64,
    /// PEM certificate chain (leaf first) for native TLS; set with `tls_key_path` or not at all.
    pub tls_cert_path: Option<PathBuf>,
    /// PEM private key of `tls_cert_path`.
    pub tls_key_path: Option<PathBuf>,
    /// How often the certificate and key files are checked for changes, in milliseconds
    /// (0 = reload only on SIGHUP).
    pub tls_poll_interval_ms: u64,
    /// `development` warns about insecure transport settings, `production` refuses them.
    pub profile: Profile,
}

/// The deployment profile (`JOURNEY_PROFILE`); see `crate::transport`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Development,
    Production,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            master_key: None,
            pepper: None,
            public_url: None,
            smtp_url: None,
            mail_from: "JourneyAPI <no-reply@journeyapi.local>".into(),
            google_issuer: "https://accounts.google.com".into(),
            google_client_id: String::new(),
            google_client_secret: String::new(),
            cookie_secure: true,
            trust_forwarded_for: false,
            magic_link_ttl_secs: 15 * 60,
            session_ttl_secs: 30 * 24 * 3600,
            magic_link_per_email_per_hour: 5,
            magic_link_per_ip_per_hour: 30,
            projection_lag_bound: 1000,
            log_format: "text".into(),
            catalog_path: None,
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_api_base: None,
            policy_version: "2026-03-26".into(),
            retention_interval_secs: 24 * 3600,
            models_path: None,
            providers: default_providers(),
            allow_private_webhooks: false,
            api_requests_per_key_per_minute: 600,
            redis_url: None,
            redis_key_prefix: "journey:".into(),
            job_lease_secs: 30,
            max_tasks_in_flight: 20,
            task_worker_tick_ms: 1000,
            task_poll_interval_secs: 15,
            subprocessors: default_subprocessors(),
            privacy_contact: "privacy@journeyapi.co".into(),
            supervisory_authority: Authority {
                name: "The data protection authority of your country of residence".into(),
                url: "https://edpb.europa.eu/about-edpb/about-edpb/members_en".into(),
            },
            age_16_countries: ["DE", "HR", "HU", "IE", "LU", "NL", "PL", "RO", "SK"]
                .map(String::from)
                .to_vec(),
            breach_notification_hours: 72,
            tls_cert_path: None,
            tls_key_path: None,
            tls_poll_interval_ms: 5000,
            profile: Profile::Development,
        }
    }
}

/// Variables figment must not parse: not settings, or secrets read verbatim in `load`.
const IGNORED_ENV: [&str; 8] = [
    "config",
    "test_database_url",
    "master_key",
    "pepper",
    "google_client_secret",
    "google_client_id",
    "stripe_secret_key",
    "stripe_webhook_secret",
];

impl Config {
    pub fn load() -> Result<Config> {
        let file = std::env::var("JOURNEY_CONFIG").unwrap_or_else(|_| "journey.toml".into());
        let mut cfg: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(&file))
            .merge(Env::prefixed("JOURNEY_").ignore(&IGNORED_ENV).split("__"))
            .extract()
            .context("invalid configuration")?;
        // Secrets are taken verbatim: figment would read an all-digit value as a number
        // (and drop leading zeros), silently changing the secret.
        for (var, field) in [
            ("JOURNEY_MASTER_KEY", &mut cfg.master_key),
            ("JOURNEY_PEPPER", &mut cfg.pepper),
            ("JOURNEY_STRIPE_SECRET_KEY", &mut cfg.stripe_secret_key),
            (
                "JOURNEY_STRIPE_WEBHOOK_SECRET",
                &mut cfg.stripe_webhook_secret,
            ),
        ] {
            if let Ok(v) = std::env::var(var) {
                *field = Some(v);
            }
        }
        for (name, p) in cfg.providers.iter_mut() {
            let var = format!("JOURNEY_PROVIDERS__{}__API_KEY", name.to_uppercase());
            if let Ok(v) = std::env::var(var) {
                p.api_key = Some(v);
            }
        }
        if let Ok(v) = std::env::var("JOURNEY_GOOGLE_CLIENT_SECRET") {
            cfg.google_client_secret = v;
        }
        if let Ok(v) = std::env::var("JOURNEY_GOOGLE_CLIENT_ID") {
            cfg.google_client_id = v;
        }
        Ok(cfg)
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("journey.db").display()))
    }

    /// Whether the server itself speaks TLS (both `tls_*_path` settings are set).
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert_path.is_some() && self.tls_key_path.is_some()
    }

    /// The scheme this server listens with: `https` with native TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_enabled() {
            "https"
        } else {
            "http"
        }
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("{}://{}", self.scheme(), self.bind))
            .trim_end_matches('/')
            .to_string()
    }

    pub fn webhook_secrets(&self) -> Vec<String> {
        self.stripe_webhook_secret
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// The catalogue: the configured file, or the built-in default.
    pub fn catalog(&self) -> Result<journey_domain::catalog::Catalog> {
        let figment = match &self.catalog_path {
            Some(p) => {
                if !p.exists() {
                    anyhow::bail!("catalog file {} does not exist", p.display());
                }
                Figment::from(Toml::file(p))
            }
            None => Figment::from(Toml::string(DEFAULT_CATALOG)),
        };
        let catalog: journey_domain::catalog::Catalog =
            figment.extract().context("invalid catalog")?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// The model catalogue, checked against the configured providers.
    pub fn models(&self) -> Result<journey_domain::models::ModelCatalog> {
        let figment = match &self.models_path {
            Some(p) => {
                if !p.exists() {
                    anyhow::bail!("model catalogue file {} does not exist", p.display());
                }
                Figment::from(Toml::file(p))
            }
            None => Figment::from(Toml::string(DEFAULT_MODELS)),
        };
        let models: journey_domain::models::ModelCatalog =
            figment.extract().context("invalid model catalogue")?;
        models.validate(|name| self.providers.get(name).map(|p| p.kind.as_str()))?;
        for (name, p) in &self.providers {
            if p.kind != journey_domain::models::MJ_PROXY
                && p.kind != journey_domain::models::OPENAI_IMAGES
            {
                anyhow::bail!("providers.{name}.kind must be midjourney-proxy or openai-images");
            }
            url::Url::parse(&p.base_url)
                .with_context(|| format!("providers.{name}.base_url is not a URL"))?;
        }
        Ok(models)
    }

    /// Every outside service the configuration uses must be in the sub-processor registry.
    pub fn check_subprocessors(&self) -> Result<()> {
        let mut needed: Vec<(String, String)> = self
            .providers
            .keys()
            .map(|p| (p.clone(), format!("upstream provider `{p}`")))
            .collect();
        if self.stripe_secret_key.is_some() {
            needed.push(("stripe".into(), "Stripe (stripe_secret_key is set)".into()));
        }
        if self.smtp_url.is_some() {
            needed.push((
                "email".into(),
                "the email provider (smtp_url is set)".into(),
            ));
        }
        needed.push(("hosting".into(), "the infrastructure provider".into()));
        for (key, what) in needed {
            if !self.subprocessors.contains_key(&key) {
                anyhow::bail!(
                    "{what} has no entry in the sub-processor registry: add [subprocessors.{key}] \
                     (name, purpose, data_categories, location, transfer_safeguard) to the configuration"
                );
            }
        }
        for c in &self.age_16_countries {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                anyhow::bail!("age_16_countries: {c:?} is not an upper-case ISO 3166 alpha-2 code");
            }
        }
        Ok(())
    }

    /// The youngest a holder from `country` may be to sign up.
    pub fn minimum_age(&self, country: &str) -> u8 {
        if self.age_16_countries.iter().any(|c| c == country) {
            16
        } else {
            13
        }
    }

    /// The effective configuration as TOML with every secret masked.
    pub fn masked(&self) -> String {
        let mut c = self.clone();
        for p in c.providers.values_mut() {
            if p.api_key.is_some() {
                p.api_key = Some("********".into());
            }
        }
        let mask = |s: &mut Option<String>| {
            if s.is_some() {
                *s = Some("********".into());
            }
        };
        mask(&mut c.master_key);
        mask(&mut c.pepper);
        mask(&mut c.smtp_url);
        mask(&mut c.stripe_secret_key);
        mask(&mut c.stripe_webhook_secret);
        if let Some(url) = &c.database_url {
            c.database_url = Some(mask_url_password(url));
        }
        if let Some(url) = &c.redis_url {
            c.redis_url = Some(mask_url_password(url));
        }
        if !c.google_client_secret.is_empty() {
            c.google_client_secret = "********".into();
        }
        let mut out = toml_lines(&c);
        out.push_str(&format!(
            "# effective database: {}\n",
            mask_url_password(&self.database_url())
        ));
        out
    }
}

fn mask_url_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("********"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn toml_lines(c: &Config) -> String {
    // figment has no serializer; a flat struct renders simply as key = json value.
    let v = serde_json::to_value(c).expect("config serializes");
    let mut out = String::new();
    if let serde_json::Value::Object(m) = v {
        for (k, v) in m {
            if !v.is_null() {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
    }
    out
}

/// Reads a secret from `configured`, else from `data_dir/file`, generating it there (with
/// a warning) on first use so the embedded default runs on a fresh machine.
pub fn secret_or_generated(
    configured: &Option<String>,
    data_dir: &Path,
    file: &str,
    what: &str,
) -> Result<String> {
    if let Some(v) = configured {
        return Ok(v.clone());
    }
    let path = data_dir.join(file);
    if let Ok(v) = std::fs::read_to_string(&path) {
        return Ok(v.trim().to_string());
    }
    std::fs::create_dir_all(data_dir)?;
    let v = hex::encode(journey_commands::secrets::random_bytes(32));
    write_private(&path, &v)?;
    tracing::warn!(
        path = %path.display(),
        "generated a new {what} into the data directory; set it through configuration in production"
    );
    Ok(v)
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_hides_every_secret() {
        let c = Config {
            master_key: Some("mk-secret-value".into()),
            pepper: Some("pepper-secret-value".into()),
            smtp_url: Some("smtp://u:smtp-secret@host".into()),
            google_client_secret: "google-secret-value".into(),
            stripe_secret_key: Some("sk_live_secret_value".into()),
            stripe_webhook_secret: Some("whsec_secret_value".into()),
            database_url: Some("postgres://u:db-secret@host/db".into()),
            ..Config::default()
        };
        let text = c.masked();
        for secret in [
            "mk-secret-value",
            "pepper-secret-value",
            "smtp-secret",
            "google-secret-value",
            "sk_live_secret_value",
            "whsec_secret_value",
            "db-secret",
        ] {
            assert!(!text.contains(secret), "{secret} shown:\n{text}");
        }
    }

    #[test]
    fn built_in_catalogue_is_valid_and_webhook_secrets_split() {
        let c = Config {
            stripe_webhook_secret: Some(" whsec_a ,whsec_b,".into()),
            ..Config::default()
        };
        assert_eq!(c.webhook_secrets(), ["whsec_a", "whsec_b"]);
        let catalog = c.catalog().unwrap();
        assert_eq!(
            catalog.plan_for_price("price_journey_growth_monthly"),
            Some("growth")
        );
    }
}
