//! Native TLS (rustls): the server's certificate, read from the PEM files named by
//! `tls_cert_path` and `tls_key_path` and swapped in place, without a restart, on SIGHUP
//! or when either file changes. Each new handshake asks [`CertStore`] for the current
//! certificate; connections already open keep the one they were made with. A reload that
//! fails (unreadable file, bad PEM, key not matching the certificate) keeps serving the
//! old certificate and logs an error.

use anyhow::{anyhow, Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// What the poll compares: each file's modification time and length.
type Stamp = [Option<(SystemTime, u64)>; 2];

/// The current certificate and where it comes from.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamp at the last load attempt, successful or not (a bad file is not
    /// retried until it changes again).
    seen: Mutex<Stamp>,
}

impl CertStore {
    /// Loads the certificate chain and key; an error here stops the server from starting.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<CertStore>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = stamp(cert_path, key_path);
        let key = certified_key(cert_path, key_path, &provider)?;
        Ok(Arc::new(CertStore {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new(seen),
        }))
    }

    /// The rustls server configuration that asks this store for every handshake's
    /// certificate (TLS 1.2 and 1.3, no client certificates).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig> {
        Ok(
            rustls::ServerConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()
                .context("TLS protocol versions")?
                .with_no_client_auth()
                .with_cert_resolver(self.clone()),
        )
    }

    /// Reads both files again and, if they make a valid certificate and key, serves them
    /// from the next handshake on. On error the old certificate stays and the error is
    /// returned (and logged). Counted in `journey_tls_certificate_reloads_total{outcome}`.
    pub fn reload(&self) -> Result<()> {
        *self.seen.lock().expect("stamp lock") = stamp(&self.cert_path, &self.key_path);
        match certified_key(&self.cert_path, &self.key_path, &self.provider) {
            Ok(key) => {
                *self.current.write().expect("certificate lock") = Arc::new(key);
                metrics::counter!("journey_tls_certificate_reloads_total", "outcome" => "ok")
                    .increment(1);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                metrics::counter!("journey_tls_certificate_reloads_total", "outcome" => "failed")
                    .increment(1);
                tracing::error!(
                    cert = %self.cert_path.display(),
                    key = %self.key_path.display(),
                    error = %format!("{e:#}"),
                    "TLS certificate reload failed; still serving the previous certificate"
                );
                Err(e)
            }
        }
    }

    /// Reloads if either file's modification time or length differs from the last attempt.
    fn reload_if_changed(&self) {
        let now = stamp(&self.cert_path, &self.key_path);
        if *self.seen.lock().expect("stamp lock") != now {
            let _ = self.reload();
        }
    }

    /// Watches for SIGHUP and, every `poll` (none when zero), for changed files, until
    /// `stop` turns true. The SIGHUP handler is in place when this returns.
    pub fn spawn_watcher(
        self: Arc<Self>,
        poll: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        #[cfg(unix)]
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; TLS reload on SIGHUP is off");
                None
            }
        };
        tokio::spawn(async move {
            let mut tick = (!poll.is_zero()).then(|| {
                let mut t = tokio::time::interval(poll);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            loop {
                #[cfg(unix)]
                let hup = async {
                    match hangup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hup = std::future::pending::<Option<()>>();
                let polled = async {
                    match tick.as_mut() {
                        Some(t) => t.tick().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = hup => {
                        tracing::info!("SIGHUP: reloading the TLS certificate");
                        let _ = self.reload();
                    }
                    _ = polled => self.reload_if_changed(),
                    _ = stop.changed() => return,
                }
            }
        })
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").clone())
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    [cert, key].map(|p| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    })
}

/// The PEM certificate chain (leaf first) and private key (PKCS#8, PKCS#1 or SEC1), checked
/// to belong together.
fn certified_key(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read tls_cert_path {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("tls_cert_path {} is not PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!(
            "tls_cert_path {} holds no PEM CERTIFICATE block",
            cert.display()
        );
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        anyhow!(
            "tls_key_path {} holds no usable PEM private key: {e}",
            key.display()
        )
    })?;
    CertifiedKey::from_der(chain, der, provider).map_err(|e| {
        anyhow!(
            "tls_cert_path {} and tls_key_path {} do not make a usable certificate: {e}",
            cert.display(),
            key.display()
        )
    })
}
