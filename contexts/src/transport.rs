//! Start-up checks of transport security (privacy policy, section 6: "TLS encryption for all
//! data in transit") and the deployment profile. Each setting that would send data in clear
//! over a network is a finding that names the setting: in the `development` profile a
//! warning, in `production` a start-up error. Loopback hosts (`127.0.0.0/8`, `::1`,
//! `localhost`) and Unix sockets are exempt: traffic to them never leaves the machine (the
//! test fakes and a same-host database or mail relay run there).

use crate::config::{Config, Profile};
use anyhow::{bail, Result};

/// One insecure setting: which one, and what to do about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub setting: String,
    pub message: String,
}

/// Runs every check: errors for what no profile accepts (half a TLS configuration), then
/// warnings (development) or one error listing every finding (production).
pub fn check(cfg: &Config) -> Result<()> {
    if cfg.tls_cert_path.is_some() != cfg.tls_key_path.is_some() {
        bail!(
            "tls_cert_path (JOURNEY_TLS_CERT_PATH) and tls_key_path (JOURNEY_TLS_KEY_PATH) must \
             be set together: both for native TLS, neither for plain HTTP"
        );
    }
    let found = findings(cfg);
    match cfg.profile {
        Profile::Development => {
            for f in &found {
                tracing::warn!(setting = %f.setting, "INSECURE TRANSPORT: {}: {}", f.setting, f.message);
            }
            Ok(())
        }
        Profile::Production if found.is_empty() => Ok(()),
        Profile::Production => {
            let list: Vec<String> = found
                .iter()
                .map(|f| format!("{}: {}", f.setting, f.message))
                .collect();
            bail!(
                "the production profile (JOURNEY_PROFILE=production) refuses this configuration:\n  - {}",
                list.join("\n  - ")
            )
        }
    }
}

/// Every finding for `cfg` (production-only ones included when the profile is production).
pub fn findings(cfg: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |setting: &str, message: String| {
        out.push(Finding {
            setting: setting.to_string(),
            message,
        })
    };
    if let Some(smtp) = &cfg.smtp_url {
        if let Some(m) = plain_smtp(smtp) {
            add("smtp_url", m);
        }
    }
    for (name, p) in &cfg.providers {
        if let Some(host) = plain_http(&p.base_url) {
            add(
                &format!("providers.{name}.base_url"),
                format!(
                    "upstream provider `{name}` is reached over plain http:// at {host}: prompts, \
                     images and its API key travel unencrypted; use https://"
                ),
            );
        }
    }
    if let Some(host) = plain_http(&cfg.google_issuer) {
        add(
            "google_issuer",
            format!(
                "the Google sign-in issuer is plain http:// at {host}: tokens and the client \
                 secret travel unencrypted; use https://"
            ),
        );
    }
    if let Some(host) = cfg.stripe_api_base.as_deref().and_then(plain_http) {
        add(
            "stripe_api_base",
            format!(
                "the Stripe API is reached over plain http:// at {host}: the secret key travels \
                 unencrypted; use https://"
            ),
        );
    }
    if let Some(url) = &cfg.database_url {
        if let Some(m) = postgres_without_tls(url) {
            add("database_url", m);
        }
    }
    let bind_host = cfg.bind.rsplit_once(':').map_or(&*cfg.bind, |(h, _)| h);
    let exposed = !is_loopback(bind_host);
    if let Some(host) = cfg.public_url.as_deref().and_then(plain_http) {
        add(
            "public_url",
            format!(
                "JOURNEY_PUBLIC_URL is plain http:// at {host}: sign-in links in emails, session \
                 cookies and the OAuth redirect travel unencrypted; serve https:// (native TLS \
                 or a TLS-terminating proxy) and set public_url to it"
            ),
        );
    }
    if !cfg.tls_enabled() && cfg.public_url.is_none() && exposed && cfg.cookie_secure {
        add(
            "cookie_secure",
            format!(
                "TLS is off and public_url is unset, so the server answers plain http:// on {}, \
                 but cookies are Secure (cookie_secure=true): browsers send them only over \
                 HTTPS, so sign-in cannot work; set tls_cert_path and tls_key_path, or put a \
                 TLS-terminating proxy in front and set public_url to its https:// address",
                cfg.bind
            ),
        );
    }
    if !cfg.cookie_secure && exposed {
        add(
            "cookie_secure",
            format!(
                "cookie_secure=false on a non-loopback bind ({}): session cookies may be sent \
                 over plain HTTP; keep it true outside local development",
                cfg.bind
            ),
        );
    }
    if cfg.profile == Profile::Production {
        for (setting, value) in [("master_key", &cfg.master_key), ("pepper", &cfg.pepper)] {
            if value.is_none() {
                add(
                    setting,
                    format!(
                        "JOURNEY_{} is not configured: production does not use a \
                         secret generated into (or read back from) the data directory",
                        setting.to_uppercase()
                    ),
                );
            }
        }
    }
    out
}

/// Whether `host` is a loopback name or address.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host of an `http://` URL that is not on loopback.
fn plain_http(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?.to_string();
    (u.scheme() == "http" && !is_loopback(&host)).then_some(host)
}

/// Why an SMTP URL sends mail unencrypted, if it does. lettre (commands/src/mailer.rs)
/// encrypts `smtps://` (implicit TLS) and `smtp://…?tls=required` (STARTTLS, refused when the
/// server does not offer it); plain `smtp://` never encrypts and `tls=opportunistic` falls
/// back to clear text when an attacker strips STARTTLS. The URL holds the password, so only
/// the host is named.
fn plain_smtp(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str().unwrap_or_default().to_string();
    if u.scheme() != "smtp" || is_loopback(&host) {
        return None;
    }
    let tls = u
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.to_string());
    if tls.as_deref() == Some("required") {
        return None;
    }
    Some(format!(
        "JOURNEY_SMTP_URL is {} to {host}: emails with live sign-in links and the SMTP \
         password can be read on the way; use smtps://{host} (implicit TLS, port 465) or \
         smtp://{host}:587?tls=required (STARTTLS required)",
        match tls.as_deref() {
            Some("opportunistic") => "smtp:// with tls=opportunistic (falls back to clear text)",
            _ => "plain smtp://",
        }
    ))
}

/// Why a Postgres URL may connect without TLS, if it may. sqlx's default `sslmode` is
/// `prefer`, which silently connects in clear when the server (or an attacker) declines
/// TLS; only `require`, `verify-ca` and `verify-full` insist. `PGSSLMODE` is sqlx's default
/// when the URL has none.
fn postgres_without_tls(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "postgres" | "postgresql") {
        return None;
    }
    let param = |name: &str| {
        u.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
    };
    let host = param("host")
        .or_else(|| u.host_str().map(str::to_string))
        .unwrap_or_default();
    if host.is_empty() || host.starts_with('/') || is_loopback(&host) {
        return None;
    }
    let mode = param("sslmode")
        .or_else(|| param("ssl-mode"))
        .or_else(|| std::env::var("PGSSLMODE").ok());
    match mode.as_deref() {
        Some("require" | "verify-ca" | "verify-full") => None,
        Some(other) => Some(format!(
            "JOURNEY_DATABASE_URL to {host} has sslmode={other}, which may connect \
             unencrypted; add ?sslmode=verify-full (or require)"
        )),
        None => Some(format!(
            "JOURNEY_DATABASE_URL to {host} has no sslmode, so it connects \
             unencrypted whenever the server does not insist on TLS; add ?sslmode=verify-full \
             (or require)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cfg: &Config) -> Vec<String> {
        findings(cfg).into_iter().map(|f| f.setting).collect()
    }

    #[test]
    fn the_defaults_and_loopback_fakes_are_clean() {
        assert!(settings(&Config::default()).is_empty());
        let cfg = Config {
            smtp_url: Some("smtp://127.0.0.1:2525".into()),
            google_issuer: "http://localhost:9000".into(),
            stripe_api_base: Some("http://[::1]:1234/".into()),
            database_url: Some("postgres://postgres@127.0.0.1:5432/test".into()),
            cookie_secure: false,
            ..Config::default()
        };
        assert!(settings(&cfg).is_empty(), "{:?}", findings(&cfg));
    }

    #[test]
    fn each_insecure_setting_is_named() {
        let mut cfg = Config {
            smtp_url: Some("smtp://u:pw-7731@mail.example.com:587?tls=opportunistic".into()),
            google_issuer: "http://issuer.example.com".into(),
            database_url: Some("postgres://u:p@db.example.com/j?sslmode=prefer".into()),
            bind: "0.0.0.0:8080".into(),
            ..Config::default()
        };
        cfg.providers.get_mut("images").unwrap().base_url = "http://relay.example.com".into();
        let found = findings(&cfg);
        assert_eq!(
            settings(&cfg),
            [
                "smtp_url",
                "providers.images.base_url",
                "google_issuer",
                "database_url",
                "cookie_secure"
            ]
        );
        assert!(!format!("{found:?}").contains("pw-7731"), "password shown");
        cfg.smtp_url = Some("smtp://mail.example.com:587?tls=required".into());
        cfg.database_url = Some("postgres://db.example.com/j?sslmode=verify-full".into());
        cfg.public_url = Some("https://journey.example.com".into());
        cfg.google_issuer = "https://issuer.example.com".into();
        assert_eq!(settings(&cfg), ["providers.images.base_url"]);
    }

    #[test]
    fn production_also_wants_configured_secrets() {
        let cfg = Config {
            profile: Profile::Production,
            ..Config::default()
        };
        assert_eq!(settings(&cfg), ["master_key", "pepper"]);
        assert!(check(&cfg).unwrap_err().to_string().contains("master_key"));
    }
}
