//! Recent API-key authentications, reused for `KEY_CACHE_TTL` so that a client calling
//! back to back does not cost a read-model lookup (a database transaction) per request.
//!
//! Only successes are kept. This process forgets a key the moment it revokes it and an
//! account's keys the moment it applies a billing change to the account (a dispute
//! suspends API access), so here a revocation or suspension takes effect at once; another
//! instance that authenticated the key within the last `KEY_CACHE_TTL` may accept it for
//! up to that long (docs/operations.md, "Several instances").

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long an authentication is reused.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// Entries kept at most; past it, expired entries are dropped (and, if that is not
/// enough, all of them: the cache only saves reads).
const CAPACITY: usize = 10_000;

/// A key that authenticated: whose it is, and when its use was last recorded.
#[derive(Clone, Copy, Debug)]
pub struct KnownKey {
    pub key_id: Uuid,
    pub account_id: Uuid,
    /// Milliseconds since the epoch (`ApiKeyUsed` is recorded at most once a minute).
    pub last_used_ms: Option<i64>,
}

/// Keyed by the HMAC of the raw key (the raw key is never kept).
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (KnownKey, Instant)>>,
}

impl KeyCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (KnownKey, Instant)>> {
        // A panic while holding the lock cannot leave a map half-written; keep serving.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key_hash: &str) -> Option<KnownKey> {
        match self.entries().get(key_hash) {
            Some((key, at)) if at.elapsed() < KEY_CACHE_TTL => Some(*key),
            _ => None,
        }
    }

    pub fn put(&self, key_hash: String, key: KnownKey) {
        let mut entries = self.entries();
        if entries.len() >= CAPACITY {
            entries.retain(|_, (_, at)| at.elapsed() < KEY_CACHE_TTL);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key_hash, (key, Instant::now()));
    }

    /// Records that the key's use was just written (so it is not written again within
    /// the minute), keeping the entry's age.
    pub fn note_use(&self, key_hash: &str, at_ms: i64) {
        if let Some((key, _)) = self.entries().get_mut(key_hash) {
            key.last_used_ms = Some(at_ms);
        }
    }

    pub fn forget_key(&self, key_id: Uuid) {
        self.entries().retain(|_, (k, _)| k.key_id != key_id);
    }

    pub fn forget_account(&self, account_id: Uuid) {
        self.entries()
            .retain(|_, (k, _)| k.account_id != account_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(account: Uuid) -> KnownKey {
        KnownKey {
            key_id: Uuid::new_v4(),
            account_id: account,
            last_used_ms: None,
        }
    }

    #[test]
    fn forgetting_a_key_or_an_account_drops_its_entries_at_once() {
        let cache = KeyCache::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (ka, kb) = (key(a), key(b));
        cache.put("ha".into(), ka);
        cache.put("hb".into(), kb);
        assert!(cache.get("ha").is_some());
        cache.forget_key(ka.key_id);
        assert!(cache.get("ha").is_none());
        assert!(cache.get("hb").is_some());
        cache.forget_account(b);
        assert!(cache.get("hb").is_none());
    }

    #[test]
    fn a_noted_use_is_kept_until_the_entry_expires() {
        let cache = KeyCache::default();
        cache.put("h".into(), key(Uuid::new_v4()));
        cache.note_use("h", 42);
        assert_eq!(cache.get("h").unwrap().last_used_ms, Some(42));
    }
}
