//! Rate limits that hold across instances.
//!
//! **Algorithm: GCRA** (the generic cell rate algorithm, the one `governor` implements),
//! on every backend, so the limits mean the same thing wherever they are kept. A quota of
//! `n` requests per period allows a burst of `n`, then one more every `period / n`. Its
//! whole state per key is one timestamp, the *theoretical arrival time* (TAT): a request
//! at `now` is allowed iff `max(TAT, now) + T - now <= n·T` (`T = period / n`), and then
//! moves TAT to `max(TAT, now) + T`. A refused request changes nothing and is told to
//! wait `TAT + T - n·T - now`. One timestamp means one read-modify-write, which a shared
//! store can do atomically in one round trip (a Postgres upsert, a Redis script), and a
//! key whose TAT lies in the past is indistinguishable from a key never seen, so old
//! state is dropped without changing any answer.
//!
//! **Backends**, chosen once at start-up (`connect`, logged):
//! - `redis` when a Redis URL is configured: one Lua script per check, TAT keys that
//!   expire by themselves;
//! - `postgres` when the database is Postgres: an unlogged table, the checks queued in an
//!   instance answered together by one upsert (several checks of a key in one batch are
//!   answered as the same checks in a row would be);
//! - `memory` otherwise (SQLite is single-instance): governor, in process.
//!
//! Shared backends read the time from the shared server (Redis `TIME`, Postgres
//! `clock_timestamp()`), not from the instance, so instances with skewed clocks still
//! agree; hence `check` takes no `now`.
//!
//! Keys reach a shared store only as HMACs under the server pepper (`bucket`): a client IP
//! is personal data and is never written to the database or Redis in the clear.
//!
//! When a shared backend fails (Redis or the database unreachable) the check falls back
//! to this instance's in-memory limiter and logs a warning: the limit degrades to a
//! per-instance ceiling for the outage instead of refusing every request.

pub mod memory;
pub mod postgres;
pub mod redis;

use crate::db::{Backend as DbBackend, Db};
use anyhow::{Context, Result};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// What a key is: each kind has its own quota and its own key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Magic links (and other anonymous requests) per email hash.
    Email,
    /// Magic links (and other anonymous requests) per client IP.
    Ip,
    /// Client-API requests per API key.
    ApiKey,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Email => "email",
            KeyKind::Ip => "ip",
            KeyKind::ApiKey => "api_key",
        }
    }
}

/// `burst` requests per `period`, refilled evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub burst: u32,
    pub period: Duration,
}

impl Quota {
    pub fn per_hour(n: u32) -> Quota {
        Quota {
            burst: n.max(1),
            period: Duration::from_secs(3600),
        }
    }

    pub fn per_minute(n: u32) -> Quota {
        Quota {
            burst: n.max(1),
            period: Duration::from_secs(60),
        }
    }

    /// `T`: one request's worth of refill, in microseconds (at least 1).
    pub fn interval_us(&self) -> i64 {
        (self.period.as_micros() as i64 / i64::from(self.burst.max(1))).max(1)
    }

    /// `n·T`: how far TAT may run ahead of now, in microseconds.
    pub fn tolerance_us(&self) -> i64 {
        self.interval_us() * i64::from(self.burst.max(1))
    }
}

/// The configured quotas, one per key kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub email: Quota,
    pub ip: Quota,
    pub api_key: Quota,
}

impl Quotas {
    pub fn of(&self, kind: KeyKind) -> Quota {
        match kind {
            KeyKind::Email => self.email,
            KeyKind::Ip => self.ip,
            KeyKind::ApiKey => self.api_key,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Limited { retry_after: Duration },
}

/// The GCRA decision from a TAT as stored after the check, for backends that return it.
pub(crate) fn limited_after(quota: Quota, tat_us: i64, now_us: i64) -> Decision {
    let wait = tat_us + quota.interval_us() - quota.tolerance_us() - now_us;
    Decision::Limited {
        retry_after: Duration::from_micros(wait.max(0) as u64),
    }
}

/// Where the limiter keeps its state.
#[async_trait]
pub trait LimiterBackend: Send + Sync {
    /// `memory`, `postgres` or `redis` (logged at start-up).
    fn name(&self) -> &'static str;
    /// One atomic check-and-count of `key` under `quota`.
    async fn check(&self, kind: KeyKind, quota: Quota, key: &str) -> Result<Decision>;
    /// Drops state of keys that are fully refilled (equivalent to unseen keys).
    async fn prune(&self) -> Result<()>;
}

/// The rate limiter every instance consults; see the module documentation.
#[derive(Clone)]
pub struct RateLimiter {
    quotas: Quotas,
    /// Keys the HMAC that names a key in a shared store.
    pepper: Arc<Vec<u8>>,
    backend: Arc<dyn LimiterBackend>,
    /// Used when `backend` fails (and as the backend itself on SQLite).
    fallback: Arc<memory::Memory>,
}

/// Where the shared state goes: Redis if configured, else the database if it is Postgres,
/// else memory.
pub struct Settings<'a> {
    pub quotas: Quotas,
    pub redis_url: Option<&'a str>,
    /// Prepended to every Redis key, so that several deployments (or tests) can share one
    /// Redis.
    pub redis_prefix: &'a str,
    /// The server pepper (HMAC key for the stored key names).
    pub pepper: &'a [u8],
}

impl RateLimiter {
    /// An in-process limiter only (single instance, and unit tests).
    pub fn in_memory(quotas: Quotas) -> RateLimiter {
        let memory = Arc::new(memory::Memory::new(quotas));
        RateLimiter {
            quotas,
            pepper: Arc::new(Vec::new()),
            backend: memory.clone(),
            fallback: memory,
        }
    }

    /// Picks and connects the backend, and logs which.
    pub async fn connect(db: &Db, settings: Settings<'_>) -> Result<RateLimiter> {
        let fallback = Arc::new(memory::Memory::new(settings.quotas));
        let backend: Arc<dyn LimiterBackend> = match (settings.redis_url, db.backend) {
            (Some(url), _) => Arc::new(
                redis::Redis::connect(url, settings.redis_prefix)
                    .await
                    .context("cannot connect to Redis (redis_url) for the rate limits")?,
            ),
            (None, DbBackend::Postgres) => Arc::new(postgres::Postgres::new(db)?),
            (None, DbBackend::Sqlite) => fallback.clone(),
        };
        tracing::info!(
            limiter = backend.name(),
            "rate limits kept in {}",
            match backend.name() {
                "memory" => "this process (single instance)",
                "postgres" => "the Postgres database (shared by every instance)",
                _ => "Redis (shared by every instance)",
            }
        );
        Ok(RateLimiter {
            quotas: settings.quotas,
            pepper: Arc::new(settings.pepper.to_vec()),
            backend,
            fallback,
        })
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Counts one request of `key` against its kind's quota.
    pub async fn check(&self, kind: KeyKind, key: &str) -> Decision {
        let quota = self.quotas.of(kind);
        let shared = if self.backend.name() == "memory" {
            key.to_string()
        } else {
            bucket(&self.pepper, kind, key)
        };
        match self.backend.check(kind, quota, &shared).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    limiter = self.backend.name(),
                    "shared rate limiter unavailable; this instance's own limit applies"
                );
                self.fallback
                    .check(kind, quota, key)
                    .await
                    .unwrap_or(Decision::Allowed)
            }
        }
    }

    /// Ok, or how long the API key must wait (its per-minute budget is spent).
    pub async fn api_key(&self, key_id: &str) -> Result<(), Duration> {
        allowed(self.check(KeyKind::ApiKey, key_id).await)
    }

    /// Ok, or how long to wait before another magic link (or anonymous report) may be
    /// requested: the client IP's budget first, then the address's.
    pub async fn magic_link(&self, email_hash: &str, ip: Option<&str>) -> Result<(), Duration> {
        if let Some(ip) = ip {
            allowed(self.check(KeyKind::Ip, ip).await)?;
        }
        allowed(self.check(KeyKind::Email, email_hash).await)
    }

    /// Drops refilled state (called periodically by the server); memory stays bounded by
    /// the keys seen within the last period.
    pub async fn prune(&self) {
        if let Err(e) = self.backend.prune().await {
            tracing::warn!(error = %e, "could not prune rate-limit state");
        }
        if self.backend.name() != "memory" {
            let _ = self.fallback.prune().await;
        }
    }
}

/// A key's name in a shared store: 128 bits of HMAC-SHA256(pepper, kind:key), hex.
fn bucket(pepper: &[u8], kind: KeyKind, key: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(pepper).expect("any key length");
    mac.update(kind.as_str().as_bytes());
    mac.update(b":");
    mac.update(key.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

fn allowed(d: Decision) -> Result<(), Duration> {
    match d {
        Decision::Allowed => Ok(()),
        Decision::Limited { retry_after } => Err(retry_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_figures() {
        let q = Quota::per_minute(600);
        assert_eq!(q.interval_us(), 100_000);
        assert_eq!(q.tolerance_us(), 60_000_000);
        // A refused check waits for one interval past the tolerance.
        let now = 1_000_000_000;
        assert_eq!(
            limited_after(q, now + q.tolerance_us(), now),
            Decision::Limited {
                retry_after: Duration::from_micros(100_000)
            }
        );
    }

    #[test]
    fn shared_keys_are_keyed_hashes() {
        let b = bucket(b"pepper", KeyKind::Ip, "203.0.113.9");
        assert_eq!(b.len(), 32);
        assert!(!b.contains("203.0.113.9"));
        assert_ne!(b, bucket(b"pepper", KeyKind::Email, "203.0.113.9"));
        assert_ne!(b, bucket(b"other", KeyKind::Ip, "203.0.113.9"));
    }

    #[tokio::test]
    async fn memory_allows_the_burst_then_limits() {
        let l = RateLimiter::in_memory(Quotas {
            email: Quota::per_hour(2),
            ip: Quota::per_hour(100),
            api_key: Quota::per_minute(3),
        });
        for _ in 0..3 {
            assert!(l.api_key("k").await.is_ok());
        }
        let wait = l.api_key("k").await.unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20));
        assert!(l.api_key("other").await.is_ok(), "keys are independent");
        assert!(l.magic_link("e", Some("1.2.3.4")).await.is_ok());
        assert!(l.magic_link("e", Some("1.2.3.4")).await.is_ok());
        assert!(l.magic_link("e", Some("1.2.3.4")).await.is_err());
    }
}
