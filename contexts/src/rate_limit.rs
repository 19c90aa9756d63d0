//! In-process rate limits (governor). With several instances each enforces its own
//! budget; the limits are per-instance ceilings, documented in docs/operations.md.

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

pub struct RateLimits {
    per_email: Keyed,
    per_ip: Keyed,
    per_api_key: Keyed,
    clock: DefaultClock,
}

fn hourly(n: u32) -> Keyed {
    RateLimiter::keyed(Quota::per_hour(
        NonZeroU32::new(n.max(1)).expect("non-zero"),
    ))
}

impl RateLimits {
    pub fn new(per_email_hour: u32, per_ip_hour: u32, per_key_minute: u32) -> Self {
        RateLimits {
            per_email: hourly(per_email_hour),
            per_ip: hourly(per_ip_hour),
            per_api_key: RateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(per_key_minute.max(1)).expect("non-zero"),
            )),
            clock: DefaultClock::default(),
        }
    }

    /// Drops state for keys whose budget has fully refilled, so memory stays bounded by
    /// the addresses seen within the last hour (called periodically by the server).
    pub fn prune(&self) {
        self.per_email.retain_recent();
        self.per_ip.retain_recent();
        self.per_api_key.retain_recent();
    }

    /// Ok, or how long the key must wait (its per-minute budget is spent).
    pub fn api_key(&self, key_id: &str) -> Result<(), Duration> {
        self.per_api_key
            .check_key(&key_id.to_string())
            .map_err(|n| n.wait_time_from(self.clock.now()))
    }

    /// Ok, or how long to wait before another magic link may be requested.
    pub fn magic_link(&self, email_hash: &str, ip: Option<&str>) -> Result<(), Duration> {
        if let Some(ip) = ip {
            self.per_ip
                .check_key(&ip.to_string())
                .map_err(|n| n.wait_time_from(self.clock.now()))?;
        }
        self.per_email
            .check_key(&email_hash.to_string())
            .map_err(|n| n.wait_time_from(self.clock.now()))
    }
}
