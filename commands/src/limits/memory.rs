//! The in-process limiter: governor's keyed GCRA, one limiter per key kind. The only
//! backend on SQLite (one instance), and every instance's fallback while a shared backend
//! is unreachable.

use super::{Decision, KeyKind, LimiterBackend, Quota, Quotas};
use anyhow::Result;
use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use std::num::NonZeroU32;
use std::time::Duration;

type Keyed = governor::RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

pub struct Memory {
    email: Keyed,
    ip: Keyed,
    api_key: Keyed,
    clock: DefaultClock,
}

fn keyed(q: Quota) -> Keyed {
    let burst = NonZeroU32::new(q.burst.max(1)).expect("non-zero");
    let quota = governor::Quota::with_period(Duration::from_micros(q.interval_us() as u64))
        .expect("a non-zero period")
        .allow_burst(burst);
    governor::RateLimiter::keyed(quota)
}

impl Memory {
    pub fn new(q: Quotas) -> Memory {
        Memory {
            email: keyed(q.email),
            ip: keyed(q.ip),
            api_key: keyed(q.api_key),
            clock: DefaultClock::default(),
        }
    }

    fn of(&self, kind: KeyKind) -> &Keyed {
        match kind {
            KeyKind::Email => &self.email,
            KeyKind::Ip => &self.ip,
            KeyKind::ApiKey => &self.api_key,
        }
    }
}

#[async_trait]
impl LimiterBackend for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    // The quota was fixed when the limiter was built (governor keeps it per limiter).
    async fn check(&self, kind: KeyKind, _quota: Quota, key: &str) -> Result<Decision> {
        Ok(match self.of(kind).check_key(&key.to_string()) {
            Ok(()) => Decision::Allowed,
            Err(n) => Decision::Limited {
                retry_after: n.wait_time_from(self.clock.now()),
            },
        })
    }

    async fn prune(&self) -> Result<()> {
        self.email.retain_recent();
        self.ip.retain_recent();
        self.api_key.retain_recent();
        Ok(())
    }
}
