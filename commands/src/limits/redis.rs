//! The limiter in Redis (`redis_url`): one Lua script per check, run atomically by Redis,
//! on one key per limited key holding its TAT. The key expires when TAT passes (a full
//! budget), so Redis needs no pruning. Time is Redis's `TIME`, the same for every
//! instance. The connection manager reconnects by itself after Redis restarts.

use super::{Decision, KeyKind, LimiterBackend, Quota};
use anyhow::Result;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use std::time::Duration;

/// KEYS[1] the key; ARGV[1] T, ARGV[2] n·T (microseconds). Returns {1, 0} when allowed,
/// {0, wait_us} when not. Numbers are formatted with `%.0f`: Lua would print a large
/// number in exponent notation.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new = tat + interval
if new - now > tolerance then
  return {0, string.format('%.0f', new - tolerance - now)}
end
local ttl_ms = math.ceil((new - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', string.format('%.0f', ttl_ms))
return {1, '0'}
"#;

pub struct Redis {
    conn: ConnectionManager,
    script: redis::Script,
    prefix: String,
}

impl Redis {
    pub async fn connect(url: &str, prefix: &str) -> Result<Redis> {
        let client = redis::Client::open(url)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = ConnectionManager::new_with_config(client, cfg).await?;
        Ok(Redis {
            conn,
            script: redis::Script::new(GCRA),
            prefix: prefix.to_string(),
        })
    }
}

#[async_trait]
impl LimiterBackend for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self, kind: KeyKind, quota: Quota, key: &str) -> Result<Decision> {
        let mut conn = self.conn.clone();
        let (allowed, wait): (i64, String) = self
            .script
            .key(format!("{}rl:{}:{key}", self.prefix, kind.as_str()))
            .arg(quota.interval_us())
            .arg(quota.tolerance_us())
            .invoke_async(&mut conn)
            .await?;
        Ok(if allowed == 1 {
            Decision::Allowed
        } else {
            Decision::Limited {
                retry_after: Duration::from_micros(wait.parse::<i64>()?.max(0) as u64),
            }
        })
    }

    async fn prune(&self) -> Result<()> {
        Ok(())
    }
}
