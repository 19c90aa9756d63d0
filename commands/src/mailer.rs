//! Transactional email: SMTP (lettre) when `JOURNEY_SMTP_URL` is set, otherwise a file
//! outbox under the data directory so the embedded default works offline.

use anyhow::{Context, Result};
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;

#[derive(Clone)]
pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(PathBuf),
}

#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: String,
}

pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl Mailer {
    /// `smtp://host:port` (plain, for local relays and tests) or `smtps://user:pass@host`.
    pub fn smtp(url: &str, from: &str) -> Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .context("bad JOURNEY_SMTP_URL")?
            .build();
        Ok(Mailer {
            transport: Transport::Smtp(transport),
            from: from.to_string(),
        })
    }

    pub fn outbox(dir: PathBuf, from: &str) -> Self {
        Mailer {
            transport: Transport::Outbox(dir),
            from: from.to_string(),
        }
    }

    pub async fn send(&self, mail: Mail) -> Result<()> {
        let msg = Message::builder()
            .from(self.from.parse().context("bad sender address")?)
            .to(mail.to.parse().context("bad recipient address")?)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body)?;
        match &self.transport {
            Transport::Smtp(t) => {
                t.send(msg).await.context("SMTP delivery failed")?;
            }
            Transport::Outbox(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                let name = format!(
                    "{}-{}.eml",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
                    uuid::Uuid::new_v4()
                );
                let path = dir.join(name);
                tokio::fs::write(&path, msg.formatted()).await?;
                tracing::info!(path = %path.display(), "email written to outbox (no SMTP configured)");
            }
        }
        Ok(())
    }
}
