//! Random tokens and their stored forms. Raw tokens and keys leave the server once (in a
//! response or an email) and are kept only as hashes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use journey_domain::api_key::{base62, checksum_from_digest, parse_key, KEY_PREFIX};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// `n` bytes from the OS CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    OsRng.fill_bytes(&mut b);
    b
}

/// A 32-byte random token, base64url without padding (magic links, sessions).
pub fn new_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(32))
}

/// Stored form of a high-entropy token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Keyed hash under the server pepper (API keys, email and Google-subject lookups).
pub fn hmac_hex(pepper: &[u8], domain: &str, value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(pepper).expect("hmac takes any key length");
    mac.update(domain.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time comparison of two strings (CSRF tokens, state values).
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub struct NewApiKey {
    pub raw: String,
    pub prefix: String,
    pub last4: String,
}

/// A fresh key: prefix + base62 of 24 random bytes (192 bits) + checksum.
pub fn new_api_key() -> NewApiKey {
    let secret = base62(&random_bytes(24));
    let sum = checksum_from_digest(&Sha256::digest(secret.as_bytes()));
    let raw = format!("{KEY_PREFIX}{secret}{sum}");
    NewApiKey {
        prefix: format!("{KEY_PREFIX}{}", &secret[..4]),
        last4: raw[raw.len() - 4..].to_string(),
        raw,
    }
}

/// Whether a presented key has our shape and a valid checksum (no database needed).
pub fn api_key_well_formed(raw: &str) -> bool {
    match parse_key(raw) {
        Some((secret, sum)) => ct_eq(
            &checksum_from_digest(&Sha256::digest(secret.as_bytes())),
            sum,
        ),
        None => false,
    }
}

/// Normalizes an email for lookups (trim, lowercase). Returns None for implausible input.
pub fn normalize_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    let ok = !local.is_empty()
        && local.len() <= 64
        && e.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && !local.contains('@');
    ok.then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_well_formed_and_checksummed() {
        let k = new_api_key();
        assert!(k.raw.starts_with("japi_live_"));
        assert!(k.raw.len() >= 10 + 32 + 6);
        assert!(api_key_well_formed(&k.raw));
        let mut typo = k.raw.clone().into_bytes();
        let i = 15;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        assert!(!api_key_well_formed(&String::from_utf8(typo).unwrap()));
        assert_ne!(new_api_key().raw, k.raw);
    }

    #[test]
    fn emails_normalize() {
        assert_eq!(
            normalize_email(" A@Example.COM ").as_deref(),
            Some("a@example.com")
        );
        for bad in ["", "a", "a@", "@b.c", "a@b", "a b@c.d", "a@b..c", "a@b_c.d"] {
            assert!(normalize_email(bad).is_none(), "{bad:?}");
        }
    }
}
