//! Transport security (privacy policy, section 6): native TLS with a certificate made in the
//! test, reloads on file change (in-process server) and on SIGHUP (the real binary), the
//! security headers with and without TLS, and the start-up checks of the development and
//! production profiles.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use support::Harness;

const HSTS: &str = "max-age=31536000";

/// A self-signed certificate for `localhost` and 127.0.0.1 with its own subject and serial.
struct TestCert {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl TestCert {
    fn new(common_name: &str, serial: u64) -> TestCert {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// Writes the key, then the certificate (as a renewal tool would, one file at a time).
    fn install(&self, files: &(PathBuf, PathBuf)) {
        std::fs::write(&files.1, &self.key_pem).unwrap();
        std::fs::write(&files.0, &self.cert_pem).unwrap();
    }

    /// A client that trusts this certificate only and reports the certificate it was served.
    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).unwrap())
            .tls_info(true)
            .build()
            .unwrap()
    }
}

fn cert_files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The DER of the certificate the server presented for this response.
fn served_cert(r: &reqwest::Response) -> Vec<u8> {
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .expect("TLS info")
        .to_vec()
}

/// GETs `url` with `cert`'s client (a new connection each time) until it succeeds; the
/// server swaps certificates in the background. Returns the response or the last error.
async fn wait_until_served(cert: &TestCert, url: &str) -> Result<reqwest::Response, String> {
    let mut last = String::new();
    for _ in 0..300 {
        match cert.client().get(url).send().await {
            Ok(r) => return Ok(r),
            Err(e) => last = format!("{e:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_hsts_and_nosniff_and_picks_up_a_changed_certificate() {
    let dir = support::temp_dir();
    let files = cert_files(&dir);
    let first = TestCert::new("journey test one", 1);
    first.install(&files);
    let h = Harness::start_with(|c| {
        c.tls_cert_path = Some(files.0.clone());
        c.tls_key_path = Some(files.1.clone());
        c.tls_poll_interval_ms = 50;
    })
    .await;
    assert!(h.base.starts_with("https://127.0.0.1:"), "{}", h.base);

    let r = first.client().get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], HSTS);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(served_cert(&r), first.der);
    // Errors carry them too.
    let r = first.client().get(h.url("/no/such")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["strict-transport-security"], HSTS);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");

    // The TLS port does not speak plain HTTP.
    let plain = h.base.replacen("https://", "http://", 1);
    let r = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .send()
        .await;
    assert!(r.is_err(), "plain HTTP answered on the TLS port: {r:?}");

    // A renewed certificate (another subject and serial) is served to new connections
    // without a restart, once the file poll sees the change.
    let second = TestCert::new("journey test two", 2);
    second.install(&files);
    let r = wait_until_served(&second, &h.url("/healthz"))
        .await
        .expect("the new certificate is served");
    assert_eq!(r.status(), 200);
    assert_eq!(served_cert(&r), second.der);
    assert!(
        first.client().get(h.url("/healthz")).send().await.is_err(),
        "a client trusting only the old certificate no longer connects"
    );

    // A bad file is refused (counted as a failed reload) and the current certificate stays.
    let failed = |metrics: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("journey_tls_certificate_reloads_total")
                    && l.contains("outcome=\"failed\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = failed(&metrics(&second, &h).await);
    std::fs::write(&files.0, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let mut seen = false;
    for _ in 0..300 {
        if failed(&metrics(&second, &h).await) > before {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "the bad certificate file was never tried");
    let r = second.client().get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        served_cert(&r),
        second.der,
        "the previous certificate stays"
    );
}

async fn metrics(cert: &TestCert, h: &Harness) -> String {
    cert.client()
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tls_there_is_no_hsts_but_nosniff_is_on_every_response() {
    let h = Harness::start().await;
    assert!(h.base.starts_with("http://"), "{}", h.base);
    let c = reqwest::Client::new();
    for path in ["/healthz", "/no/such", "/openapi.json"] {
        // A client-sent X-Forwarded-Proto does not make a plain connection TLS.
        let r = c
            .get(h.url(path))
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .unwrap();
        assert!(
            r.headers().get("strict-transport-security").is_none(),
            "{path}: HSTS over plain HTTP"
        );
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_https_and_reloads_the_certificate_on_sighup() {
    let h = Harness::start().await;
    let dir = support::temp_dir();
    let files = cert_files(&dir);
    let first = TestCert::new("journey binary one", 11);
    first.install(&files);
    let mut child = h
        .cli_command(&["serve", "--bind", "127.0.0.1:0"])
        .env("JOURNEY_TLS_CERT_PATH", &files.0)
        .env("JOURNEY_TLS_KEY_PATH", &files.1)
        // Reload on SIGHUP only, so that the signal is what makes the change.
        .env("JOURNEY_TLS_POLL_INTERVAL_MS", "0")
        .env("JOURNEY_RETENTION_INTERVAL_SECS", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    assert!(
        line.starts_with("JourneyAPI listening on https://127.0.0.1:"),
        "{line}"
    );
    let base = line
        .split(' ')
        .nth(3)
        .expect("address in the start-up line")
        .to_string();
    let r = first
        .client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], HSTS);
    assert_eq!(served_cert(&r), first.der);

    let second = TestCert::new("journey binary two", 12);
    second.install(&files);
    let kill = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
    };
    assert!(kill("-HUP").success());
    let r = wait_until_served(&second, &format!("{base}/healthz")).await;
    kill("-TERM");
    let exit = child.wait().unwrap();
    let r = r.expect("the new certificate is served after SIGHUP");
    assert_eq!(served_cert(&r), second.der);
    assert!(exit.success(), "graceful exit: {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_transport_is_a_warning_in_development_and_refused_in_production() {
    let h = Harness::start().await;
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).to_string();

    // Development: the configuration is printed and each finding is a warning naming it.
    let out = h
        .cli_command(&["config"])
        .env("JOURNEY_SMTP_URL", "smtp://mail.invalid:25")
        .env(
            "JOURNEY_DATABASE_URL",
            "postgres://journey@db.invalid:5432/journey",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for needle in [
        "INSECURE TRANSPORT",
        "smtp_url",
        "smtps://",
        "database_url",
        "sslmode",
    ] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }

    // Production: `journey serve` refuses to start, naming every setting, before it
    // connects to anything.
    let out = h
        .cli_command(&["serve", "--bind", "127.0.0.1:0"])
        .env("JOURNEY_PROFILE", "production")
        .env("JOURNEY_SMTP_URL", "smtp://mail.invalid:25")
        .env(
            "JOURNEY_DATABASE_URL",
            "postgres://journey@db.invalid:5432/journey",
        )
        .env_remove("JOURNEY_PEPPER")
        .output()
        .unwrap();
    assert!(!out.status.success(), "production started");
    let err = stderr(&out);
    for needle in [
        "production profile",
        "smtp_url",
        "database_url",
        "pepper: JOURNEY_PEPPER is not configured",
    ] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
    assert!(!err.contains("JourneyAPI listening"), "{err}");
    // Each on its own is enough.
    for (var, value, setting) in [
        ("JOURNEY_SMTP_URL", "smtp://mail.invalid:25", "smtp_url"),
        (
            "JOURNEY_DATABASE_URL",
            "postgres://journey@db.invalid:5432/journey?sslmode=prefer",
            "database_url",
        ),
        (
            "JOURNEY_PROVIDERS__IMAGES__BASE_URL",
            "http://relay.invalid",
            "providers.images.base_url",
        ),
    ] {
        let out = h
            .cli_command(&["config"])
            .env("JOURNEY_PROFILE", "production")
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} accepted");
        assert!(stderr(&out).contains(setting), "{}", stderr(&out));
    }

    // A production configuration with TLS to its services runs (loopback services are
    // exempt: they never leave the machine).
    let out = h
        .cli_command(&["migrate"])
        .env("JOURNEY_PROFILE", "production")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = h
        .cli_command(&["config"])
        .env("JOURNEY_PROFILE", "production")
        .env("JOURNEY_SMTP_URL", "smtps://user:pw@mail.invalid")
        .env("JOURNEY_PUBLIC_URL", "https://journey.example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // Half a TLS configuration is refused in any profile.
    let out = h
        .cli_command(&["serve", "--bind", "127.0.0.1:0"])
        .env("JOURNEY_TLS_CERT_PATH", "/nonexistent/cert.pem")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("tls_key_path (JOURNEY_TLS_KEY_PATH)"),
        "{}",
        stderr(&out)
    );
}
