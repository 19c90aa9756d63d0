//! The vault: seals personal data under per subject × category × period data keys
//! (AES-256-GCM), wraps those keys with the master key, and destroys them for erasure and
//! retention. Opening a value whose key is gone yields `Opened::Erased`, never an error.

use crate::db::Db;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use journey_domain::retention::period_label;
use journey_domain::sealed::{map_sealed, ERASED_MARKER};
use journey_domain::{DataCategory, Opened, Sealed};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The subject's key for this category was destroyed; nothing new may be sealed under it.
    #[error("the data subject has been erased")]
    SubjectErased,
    /// The key of this (explicitly named) period was destroyed — by retention, or a support
    /// ticket deleted on request — while the subject lives on: that period takes no more
    /// data. Calendar periods never answer this (see `seal`).
    #[error("the data of this period was destroyed")]
    PeriodClosed,
    #[error("sealed value failed authentication (tampered or wrong master key)")]
    Tampered,
    #[error("vault storage: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("vault encoding: {0}")]
    Encoding(String),
}

/// Successor keys `seal` may cut within one calendar period (each follows a destroyed one).
const MAX_SUCCESSORS: u32 = 8;

/// A 32-byte master key (from `JOURNEY_MASTER_KEY` or the generated data-dir file).
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn from_bytes(b: [u8; 32]) -> Self {
        MasterKey(b)
    }

    /// Parses 64 hex characters or standard base64 of 32 bytes.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let bytes = hex::decode(s).ok().or_else(|| B64.decode(s).ok())?;
        Some(MasterKey(bytes.try_into().ok()?))
    }

    pub fn generate() -> Self {
        MasterKey(
            crate::secrets::random_bytes(32)
                .try_into()
                .expect("32 bytes"),
        )
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
    }
}

/// A data key's identity (never its material).
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub key_id: String,
    pub subject: String,
    pub category: String,
    pub period: String,
}

/// Data keys fetched during one long read (an export), by key id; `None` = destroyed.
#[derive(Default)]
pub struct KeyRing(std::collections::HashMap<String, Option<Vec<u8>>>);

#[derive(Clone)]
pub struct Vault {
    db: Db,
    master: MasterKey,
    live: std::sync::Arc<std::sync::Mutex<LiveKeys>>,
}

/// Live data keys this process sealed with recently, by subject × category × period, so
/// that sealing (several values per request) reads the key table once per key and
/// `LIVE_KEY_TTL`, not twice per value. A key this process destroys leaves the cache at
/// once; one another process destroys (the CLI's erasure, another instance's retention run)
/// may still be used to seal until its entry expires — what is sealed then cannot be opened,
/// because opening reads the wrapped key from the table, where it is gone.
#[derive(Default)]
struct LiveKeys(HashMap<KeySlot, LiveKey>);

/// Subject, category, period.
type KeySlot = (String, DataCategory, String);
/// Key id, key, when it was read.
type LiveKey = (String, Vec<u8>, std::time::Instant);

const LIVE_KEY_TTL: std::time::Duration = std::time::Duration::from_secs(60);
const LIVE_KEY_LIMIT: usize = 50_000;

impl LiveKeys {
    fn get(
        &self,
        subject: &str,
        category: DataCategory,
        period: &str,
    ) -> Option<(String, Vec<u8>)> {
        let (id, key, at) = self
            .0
            .get(&(subject.to_string(), category, period.to_string()))?;
        (at.elapsed() < LIVE_KEY_TTL).then(|| (id.clone(), key.clone()))
    }

    fn put(&mut self, subject: &str, category: DataCategory, period: &str, id: &str, key: &[u8]) {
        if self.0.len() >= LIVE_KEY_LIMIT {
            self.0.clear();
        }
        self.0.insert(
            (subject.to_string(), category, period.to_string()),
            (id.to_string(), key.to_vec(), std::time::Instant::now()),
        );
    }

    fn forget_subject(&mut self, subject: &str) {
        self.0.retain(|(s, _, _), _| s != subject);
    }

    fn forget_key(&mut self, key_id: &str) {
        self.0.retain(|_, (id, _, _)| id != key_id);
    }
}

/// A report of destroyed keys.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Destroyed {
    pub keys: u64,
    pub categories: Vec<String>,
}

impl Vault {
    pub fn new(db: Db, master: MasterKey) -> Self {
        Vault {
            db,
            master,
            live: Default::default(),
        }
    }

    /// Seals under the subject's key for the calendar period `at` falls in. If that key
    /// was destroyed while the period is still running (a retention run dated in the
    /// future), the period continues under a successor key (`<period>+1`, `+2`, …) that
    /// expires with it: destroying a periodic key never makes a live subject look erased.
    pub async fn seal<T: Serialize>(
        &self,
        subject: &str,
        category: DataCategory,
        at: DateTime<Utc>,
        value: &T,
    ) -> Result<Sealed<T>, VaultError> {
        let period = period_label(category, at);
        let mut label = period.clone();
        for successor in 1..=MAX_SUCCESSORS {
            match self.seal_in(subject, category, &label, at, value).await {
                Err(VaultError::PeriodClosed) => label = format!("{period}+{successor}"),
                other => return other,
            }
        }
        Err(VaultError::PeriodClosed)
    }

    /// Seals under a key of an explicitly named period, for data whose term is not a
    /// calendar period (each support ticket has its own key, kept 3 years after it closes).
    pub async fn seal_in<T: Serialize>(
        &self,
        subject: &str,
        category: DataCategory,
        period: &str,
        at: DateTime<Utc>,
        value: &T,
    ) -> Result<Sealed<T>, VaultError> {
        let (key_id, key) = self.live_key(subject, category, period, at).await?;
        let plain = serde_json::to_vec(value).map_err(|e| VaultError::Encoding(e.to_string()))?;
        let nonce = crate::secrets::random_bytes(12);
        let ct = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key))
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Encoding("encryption failed".into()))?;
        Ok(Sealed::from_parts(
            key_id,
            B64.encode(nonce),
            B64.encode(ct),
        ))
    }

    pub async fn open<T: DeserializeOwned>(&self, s: &Sealed<T>) -> Result<Opened<T>, VaultError> {
        match self.open_raw(&s.k, &s.n, &s.c).await? {
            None => Ok(Opened::Erased),
            Some(plain) => serde_json::from_slice(&plain)
                .map(Opened::Value)
                .map_err(|e| VaultError::Encoding(e.to_string())),
        }
    }

    /// Opens an optional sealed value; `None` stays `None`.
    pub async fn open_opt<T: DeserializeOwned>(
        &self,
        s: &Option<Sealed<T>>,
    ) -> Result<Option<Opened<T>>, VaultError> {
        match s {
            Some(s) => Ok(Some(self.open(s).await?)),
            None => Ok(None),
        }
    }

    /// Replaces every sealed envelope in a JSON tree with its opened value, or
    /// `"[erased]"` where the key is gone (audits, exports).
    pub async fn open_json(&self, v: &Value) -> Result<Value, VaultError> {
        self.open_json_with(v.clone(), &mut KeyRing::default())
            .await
    }

    /// `open_json` reusing data keys already fetched into `ring` (exports open many
    /// values under few keys). A key destroyed after it entered the ring still opens
    /// values for the ring's short life: keep rings per export, not longer. Takes the tree
    /// and opens it in place (an export opens every event's payload and metadata once).
    pub async fn open_json_with(
        &self,
        mut out: Value,
        ring: &mut KeyRing,
    ) -> Result<Value, VaultError> {
        // A walk opens what the ring has keys for and notes the key ids it lacks; those are
        // fetched (I/O, between walks) and a second walk opens the rest. In a long export
        // the ring soon holds every key, so each event is walked once (a client IP is
        // sealed inside a string, which every walk parses again). `ring_key` records
        // destroyed keys too, so there is never a third walk.
        loop {
            let mut missing = Vec::new();
            map_sealed(&mut out, &mut |env, _| {
                let k = str_at(env, "k");
                match ring.0.get(&k) {
                    None => {
                        missing.push(k);
                        Ok(None)
                    }
                    Some(key) => open_envelope(key.as_deref(), &k, env).map(Some),
                }
            })?;
            if missing.is_empty() {
                return Ok(out);
            }
            for id in missing {
                self.ring_key(&id, ring).await?;
            }
        }
    }

    async fn open_raw(
        &self,
        key_id: &str,
        n: &str,
        c: &str,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        self.open_raw_with(key_id, n, c, &mut KeyRing::default())
            .await
    }

    async fn open_raw_with(
        &self,
        key_id: &str,
        n: &str,
        c: &str,
        ring: &mut KeyRing,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        match self.ring_key(key_id, ring).await? {
            None => Ok(None),
            Some(key) => decrypt(&key, key_id, n, c).map(Some),
        }
    }

    /// The data key for `key_id` through `ring` (fetched once per ring).
    async fn ring_key(
        &self,
        key_id: &str,
        ring: &mut KeyRing,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        if let Some(k) = ring.0.get(key_id) {
            return Ok(k.clone());
        }
        let k = self.unwrapped(key_id).await?;
        ring.0.insert(key_id.to_string(), k.clone());
        Ok(k)
    }

    /// The data key for `key_id`, or None if it was destroyed (or never existed).
    async fn unwrapped(&self, key_id: &str) -> Result<Option<Vec<u8>>, VaultError> {
        let row = sqlx::query("SELECT wrapped FROM data_keys WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(&self.db.any)
            .await?;
        let wrapped: Option<Vec<u8>> = match row {
            Some(r) => r.try_get(0)?,
            None => None,
        };
        wrapped.map(|w| self.unwrap_key(key_id, &w)).transpose()
    }

    async fn live_key(
        &self,
        subject: &str,
        category: DataCategory,
        period: &str,
        at: DateTime<Utc>,
    ) -> Result<(String, Vec<u8>), VaultError> {
        if let Some(hit) = self.live_keys().get(subject, category, period) {
            return Ok(hit);
        }
        let (key_id, key) = self
            .live_key_uncached(subject, category, period, at)
            .await?;
        self.live_keys()
            .put(subject, category, period, &key_id, &key);
        Ok((key_id, key))
    }

    fn live_keys(&self) -> std::sync::MutexGuard<'_, LiveKeys> {
        self.live.lock().expect("live keys")
    }

    async fn live_key_uncached(
        &self,
        subject: &str,
        category: DataCategory,
        period: &str,
        at: DateTime<Utc>,
    ) -> Result<(String, Vec<u8>), VaultError> {
        // Two attempts: the first may lose an insert race to a concurrent sealer.
        for _ in 0..2 {
            let row = sqlx::query(
                "SELECT key_id, wrapped FROM data_keys WHERE subject = $1 AND category = $2 AND period = $3",
            )
            .bind(subject)
            .bind(category.as_str())
            .bind(period)
            .fetch_optional(&self.db.any)
            .await?;
            if let Some(row) = row {
                let key_id: String = row.try_get(0)?;
                let wrapped: Option<Vec<u8>> = row.try_get(1)?;
                // A periodic key that raced an erasure must not be reused.
                if period != "lifetime" && self.is_erased_lifetime(subject, category).await? {
                    return Err(VaultError::SubjectErased);
                }
                let Some(wrapped) = wrapped else {
                    // A destroyed lifetime key is the subject's erasure tombstone; a
                    // destroyed periodic key only ends its period.
                    return Err(if period == "lifetime" {
                        VaultError::SubjectErased
                    } else {
                        VaultError::PeriodClosed
                    });
                };
                let key = self.unwrap_key(&key_id, &wrapped)?;
                return Ok((key_id, key));
            }
            if period != "lifetime" && self.is_erased_lifetime(subject, category).await? {
                return Err(VaultError::SubjectErased);
            }
            let key_id = Uuid::new_v4().to_string();
            let key = crate::secrets::random_bytes(32);
            let wrapped = self.wrap_key(&key_id, &key)?;
            sqlx::query(
                "INSERT INTO data_keys (key_id, subject, category, period, wrapped, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subject, category, period) DO NOTHING",
            )
            .bind(&key_id)
            .bind(subject)
            .bind(category.as_str())
            .bind(period)
            .bind(wrapped)
            .bind(at.timestamp_millis())
            .execute(&self.db.any)
            .await?;
            // An erasure may have committed between our check and our insert; it writes
            // its tombstone before destroying keys, so seeing it now means our key must go.
            if period != "lifetime" && self.is_erased_lifetime(subject, category).await? {
                sqlx::query("UPDATE data_keys SET wrapped = NULL, destroyed_at = $1, destroyed_reason = 'subject erased' WHERE key_id = $2")
                    .bind(at.timestamp_millis())
                    .bind(&key_id)
                    .execute(&self.db.any)
                    .await?;
                return Err(VaultError::SubjectErased);
            }
        }
        Err(VaultError::Encoding("could not allocate a data key".into()))
    }

    fn wrap_key(&self, key_id: &str, key: &[u8]) -> Result<Vec<u8>, VaultError> {
        let nonce = crate::secrets::random_bytes(12);
        let ct = self
            .master
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: key,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Encoding("wrap failed".into()))?;
        Ok([nonce, ct].concat())
    }

    fn unwrap_key(&self, key_id: &str, wrapped: &[u8]) -> Result<Vec<u8>, VaultError> {
        if wrapped.len() < 12 {
            return Err(VaultError::Tampered);
        }
        let (nonce, ct) = wrapped.split_at(12);
        self.master
            .cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Tampered)
    }

    /// Destroys every live key of `subject` in `categories`. Work is O(number of keys),
    /// whatever the number of events sealed under them.
    pub async fn destroy_subject(
        &self,
        subject: &str,
        categories: &[DataCategory],
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Destroyed, VaultError> {
        self.live_keys().forget_subject(subject);
        // Tombstones first, each committed on its own: a sealer that creates a periodic key
        // after this point sees them (it re-checks after inserting) and destroys its key; a
        // key created before it is caught by the destroying UPDATE below.
        for c in categories {
            sqlx::query(
                "INSERT INTO data_keys (key_id, subject, category, period, wrapped, created_at, destroyed_at, destroyed_reason)
                 VALUES ($1, $2, $3, 'lifetime', NULL, $4, $4, $5)
                 ON CONFLICT (subject, category, period) DO NOTHING",
            )
            .bind(Uuid::new_v4().to_string())
            .bind(subject)
            .bind(c.as_str())
            .bind(at.timestamp_millis())
            .bind(reason)
            .execute(&self.db.any)
            .await?;
        }
        let mut report = Destroyed::default();
        for c in categories {
            let done = sqlx::query(
                "UPDATE data_keys SET wrapped = NULL, destroyed_at = $1, destroyed_reason = $2
                 WHERE subject = $3 AND category = $4 AND wrapped IS NOT NULL",
            )
            .bind(at.timestamp_millis())
            .bind(reason)
            .bind(subject)
            .bind(c.as_str())
            .execute(&self.db.any)
            .await?
            .rows_affected();
            if done > 0 {
                report.keys += done;
                report.categories.push(c.as_str().to_string());
            }
        }
        // Again: a sealer may have cached a key between the first eviction and the UPDATEs.
        self.live_keys().forget_subject(subject);
        Ok(report)
    }

    /// Live periodic keys (daily, weekly or yearly) with their subject, category and period.
    pub async fn live_periodic_keys(&self) -> Result<Vec<KeyInfo>, VaultError> {
        self.key_infos("wrapped IS NOT NULL AND period <> 'lifetime'")
            .await
    }

    async fn key_infos(&self, condition: &str) -> Result<Vec<KeyInfo>, VaultError> {
        let rows = sqlx::query(&format!(
            "SELECT key_id, subject, category, period FROM data_keys WHERE {condition}"
        ))
        .fetch_all(&self.db.any)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyInfo {
                    key_id: r.try_get(0)?,
                    subject: r.try_get(1)?,
                    category: r.try_get(2)?,
                    period: r.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(VaultError::from)
    }

    /// Destroys the key of one subject × category × period (a ticket deleted on request, or
    /// past its term); false if there was none or it was already gone.
    pub async fn destroy_period(
        &self,
        subject: &str,
        category: DataCategory,
        period: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, VaultError> {
        self.live_keys().forget_subject(subject);
        let n = sqlx::query(
            "UPDATE data_keys SET wrapped = NULL, destroyed_at = $1, destroyed_reason = $2
             WHERE subject = $3 AND category = $4 AND period = $5 AND wrapped IS NOT NULL",
        )
        .bind(at.timestamp_millis())
        .bind(reason)
        .bind(subject)
        .bind(category.as_str())
        .bind(period)
        .execute(&self.db.any)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Destroys one key (retention expiry); false if it was already gone.
    pub async fn destroy_key(
        &self,
        key_id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, VaultError> {
        self.live_keys().forget_key(key_id);
        let n = sqlx::query(
            "UPDATE data_keys SET wrapped = NULL, destroyed_at = $1, destroyed_reason = $2
             WHERE key_id = $3 AND wrapped IS NOT NULL",
        )
        .bind(at.timestamp_millis())
        .bind(reason)
        .bind(key_id)
        .execute(&self.db.any)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Destroyed keys whose events have not been compacted into tombstones yet.
    pub async fn uncompacted_destroyed(&self) -> Result<Vec<KeyInfo>, VaultError> {
        self.key_infos("wrapped IS NULL AND compacted_at IS NULL")
            .await
    }

    pub async fn mark_compacted(&self, key_id: &str, at: DateTime<Utc>) -> Result<(), VaultError> {
        sqlx::query("UPDATE data_keys SET compacted_at = $1 WHERE key_id = $2")
            .bind(at.timestamp_millis())
            .bind(key_id)
            .execute(&self.db.any)
            .await?;
        Ok(())
    }

    async fn is_erased_lifetime(
        &self,
        subject: &str,
        category: DataCategory,
    ) -> Result<bool, VaultError> {
        let row = sqlx::query(
            "SELECT count(*) FROM data_keys WHERE subject = $1 AND category = $2 AND period = 'lifetime' AND wrapped IS NULL",
        )
        .bind(subject)
        .bind(category.as_str())
        .fetch_one(&self.db.any)
        .await?;
        let n: i64 = row.try_get(0)?;
        Ok(n > 0)
    }

    /// Whether any of the subject's keys in `category` has been destroyed.
    pub async fn is_erased(
        &self,
        subject: &str,
        category: DataCategory,
    ) -> Result<bool, VaultError> {
        let row = sqlx::query(
            "SELECT count(*) FROM data_keys WHERE subject = $1 AND category = $2 AND wrapped IS NULL",
        )
        .bind(subject)
        .bind(category.as_str())
        .fetch_one(&self.db.any)
        .await?;
        let n: i64 = row.try_get(0)?;
        Ok(n > 0)
    }
}

fn str_at(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_string()
}

/// The value sealed in `env` under data key `key_id`, or the erasure marker when that key
/// was destroyed (`key` is None).
fn open_envelope(key: Option<&[u8]>, key_id: &str, env: &Value) -> Result<Value, VaultError> {
    let Some(key) = key else {
        return Ok(Value::String(ERASED_MARKER.into()));
    };
    let plain = decrypt(key, key_id, &str_at(env, "n"), &str_at(env, "c"))?;
    serde_json::from_slice(&plain).map_err(|e| VaultError::Encoding(e.to_string()))
}

/// Opens one envelope's ciphertext with its data key (the key id is the associated data).
fn decrypt(key: &[u8], key_id: &str, n: &str, c: &str) -> Result<Vec<u8>, VaultError> {
    let nonce = B64.decode(n).map_err(|_| VaultError::Tampered)?;
    let ct = B64.decode(c).map_err(|_| VaultError::Tampered)?;
    if nonce.len() != 12 {
        return Err(VaultError::Tampered);
    }
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ct,
                aad: key_id.as_bytes(),
            },
        )
        .map_err(|_| VaultError::Tampered)
}
