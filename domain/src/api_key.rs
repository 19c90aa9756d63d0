//! API keys: `japi_live_` + a base62 secret + a checksum. Only an HMAC of the key is kept
//! (plus a display prefix and last four characters); the raw key is shown once. The key's
//! name is free text the holder chose, so it is sealed like other personal data.

use crate::sealed::Sealed;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const KEY_PREFIX: &str = "japi_live_";
/// Characters of checksum appended to the secret.
pub const CHECKSUM_LEN: usize = 6;
/// Minimum secret length in base62 characters (22 chars ≈ 131 bits).
pub const MIN_SECRET_LEN: usize = 22;
pub const MAX_NAME_LEN: usize = 100;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Encodes bytes as base62 (big-endian, fixed width for a given input length).
pub fn base62(bytes: &[u8]) -> String {
    // Repeated division of a big-endian number; inputs are small (≤ 32 bytes).
    let mut digits: Vec<u8> = bytes.to_vec();
    let width = (bytes.len() as f64 * 8.0 / 62f64.log2()).ceil() as usize;
    let mut out = Vec::with_capacity(width);
    for _ in 0..width {
        let mut rem: u32 = 0;
        for d in digits.iter_mut() {
            let acc = (rem << 8) | u32::from(*d);
            *d = (acc / 62) as u8;
            rem = acc % 62;
        }
        out.push(BASE62[rem as usize]);
    }
    out.reverse();
    String::from_utf8(out).expect("base62 is ascii")
}

/// Checksum over the secret part, so typos are rejected without a database lookup.
/// `digest` is a SHA-256 of the secret, computed by the caller (domain has no crypto).
pub fn checksum_from_digest(digest: &[u8]) -> String {
    base62(&digest[..5])[..CHECKSUM_LEN].to_string()
}

/// Splits a presented key into (secret, checksum) if it has the right shape.
pub fn parse_key(raw: &str) -> Option<(&str, &str)> {
    let body = raw.strip_prefix(KEY_PREFIX)?;
    if body.len() < MIN_SECRET_LEN + CHECKSUM_LEN
        || !body.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    Some(body.split_at(body.len() - CHECKSUM_LEN))
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApiKeyCommand {
    Create {
        account_id: Uuid,
        name: Sealed<String>,
        key_hash: String,
        prefix: String,
        last4: String,
        at: DateTime<Utc>,
    },
    RecordUse {
        at: DateTime<Utc>,
    },
    Revoke {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ApiKeyEvent {
    ApiKeyCreated {
        account_id: Uuid,
        name: Sealed<String>,
        key_hash: String,
        prefix: String,
        last4: String,
        at: DateTime<Utc>,
    },
    ApiKeyUsed {
        at: DateTime<Utc>,
    },
    ApiKeyRevoked {
        at: DateTime<Utc>,
    },
}

crate::domain_event!(ApiKeyEvent, "1", { ApiKeyCreated, ApiKeyUsed, ApiKeyRevoked });

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApiKeyError {
    #[error("api key already exists")]
    AlreadyCreated,
    #[error("api key not found")]
    NotFound,
    #[error("api key is revoked")]
    Revoked,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    pub account_id: Option<Uuid>,
    pub revoked: bool,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl Aggregate for ApiKey {
    const TYPE: &'static str = "api_key";
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type Error = ApiKeyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ApiKeyCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ApiKeyError> {
        match command {
            ApiKeyCommand::Create {
                account_id,
                name,
                key_hash,
                prefix,
                last4,
                at,
            } => {
                if self.account_id.is_some() {
                    return Err(ApiKeyError::AlreadyCreated);
                }
                sink.write(
                    ApiKeyEvent::ApiKeyCreated {
                        account_id,
                        name,
                        key_hash,
                        prefix,
                        last4,
                        at,
                    },
                    self,
                )
                .await;
            }
            ApiKeyCommand::RecordUse { at } => {
                if self.account_id.is_none() {
                    return Err(ApiKeyError::NotFound);
                }
                if self.revoked {
                    return Err(ApiKeyError::Revoked);
                }
                sink.write(ApiKeyEvent::ApiKeyUsed { at }, self).await;
            }
            ApiKeyCommand::Revoke { at } => {
                if self.account_id.is_none() {
                    return Err(ApiKeyError::NotFound);
                }
                if !self.revoked {
                    sink.write(ApiKeyEvent::ApiKeyRevoked { at }, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ApiKeyEvent) {
        match event {
            ApiKeyEvent::ApiKeyCreated { account_id, .. } => self.account_id = Some(account_id),
            ApiKeyEvent::ApiKeyUsed { at } => self.last_used_at = Some(at),
            ApiKeyEvent::ApiKeyRevoked { .. } => self.revoked = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    #[test]
    fn base62_has_fixed_width_and_alphabet() {
        assert_eq!(base62(&[0u8; 16]).len(), 22);
        assert_eq!(base62(&[255u8; 16]).len(), 22);
        assert_eq!(base62(&[0, 61]), "00z");
        assert!(base62(&[7u8; 24])
            .bytes()
            .all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn parse_rejects_wrong_shapes() {
        assert!(parse_key("japi_live_short").is_none());
        assert!(parse_key("sk_live_0123456789012345678901234567").is_none());
        assert!(parse_key("japi_live_0123456789-12345678901234567").is_none());
        let (secret, sum) = parse_key("japi_live_0123456789012345678901abcdef").unwrap();
        assert_eq!(secret, "0123456789012345678901");
        assert_eq!(sum, "abcdef");
    }

    #[test]
    fn revoked_key_cannot_be_used_and_revoke_is_idempotent() {
        let at = Utc::now();
        let created = ApiKeyEvent::ApiKeyCreated {
            account_id: Uuid::nil(),
            name: Sealed::from_parts("k".into(), "n".into(), "c".into()),
            key_hash: "h".into(),
            prefix: "p".into(),
            last4: "l".into(),
            at,
        };
        let revoked = ApiKeyEvent::ApiKeyRevoked { at };
        TestFramework::<ApiKey>::with(())
            .given(vec![created.clone(), revoked.clone()])
            .when(ApiKeyCommand::RecordUse { at })
            .then_expect_error(ApiKeyError::Revoked);
        TestFramework::<ApiKey>::with(())
            .given(vec![created, revoked])
            .when(ApiKeyCommand::Revoke { at })
            .then_expect_events(vec![]);
    }
}
