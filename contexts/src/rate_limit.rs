//! Rate limits: `journey_commands::limits` keeps them (shared by every instance on
//! Postgres or Redis, in process on SQLite); this only builds it from configuration.

use crate::config::Config;
use journey_commands::limits::{Quota, Quotas, RateLimiter, Settings};
use journey_commands::Db;

pub type RateLimits = RateLimiter;

/// The limiter the configuration asks for (see `journey_commands::limits`).
pub async fn connect(cfg: &Config, db: &Db, pepper: &[u8]) -> anyhow::Result<RateLimits> {
    RateLimiter::connect(
        db,
        Settings {
            quotas: Quotas {
                email: Quota::per_hour(cfg.magic_link_per_email_per_hour),
                ip: Quota::per_hour(cfg.magic_link_per_ip_per_hour),
                api_key: Quota::per_minute(cfg.api_requests_per_key_per_minute),
            },
            redis_url: cfg.redis_url.as_deref(),
            redis_prefix: &cfg.redis_key_prefix,
            pepper,
        },
    )
    .await
}
