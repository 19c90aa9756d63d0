//! Named job leases: one instance at a time runs a periodic job (the retention run with
//! its due reminders) or a one-shot job (policy notices), on any number of instances
//! sharing one database.
//!
//! A lease is one row of `job_leases`: who holds it and until when, plus when the job last
//! completed. Taking it is one statement (an upsert whose `WHERE` only lets it through if
//! the lease is free or expired — and, for a periodic job, if its last
//! completed run is at least one period old), so two instances can never both get it.
//! While the job runs its holder renews the lease every third of its length; a holder
//! that dies (kill -9) stops renewing, and another instance takes the job over once the
//! lease has run out. The job is marked done only when it completes, so a run cut short
//! is run again: no work is lost, and none is done twice at once. A holder that cannot
//! renew in time abandons its job (the job future is dropped) at its next heartbeat. There
//! is no fencing token: a holder stalled past its lease (a paused process, a renewal stuck
//! longer than the lease) can overlap for that moment with the instance that took over;
//! the jobs run under leases are idempotent step by step, so such an overlap repeats work
//! but does not corrupt it.
//!
//! Times are the database's clock (the same for every instance). On SQLite the same table
//! serves the single instance, which keeps "once per period" across restarts.

use crate::db::{Backend, Db};
use anyhow::Result;
use std::future::Future;
use std::time::Duration;

#[derive(Clone)]
pub struct Leases {
    db: Db,
    holder: String,
    ttl: Duration,
}

/// What became of a job offered to `Leases::run`.
#[derive(Debug, PartialEq, Eq)]
pub enum Ran<T> {
    /// This instance held the lease and the job completed.
    Done(T),
    /// Another instance holds the lease, or the job is not due yet.
    NotOurs,
    /// The lease was lost mid-run (renewal failed past its expiry): the job was dropped and
    /// will be run again by whoever takes the lease.
    Abandoned,
}

impl Leases {
    /// `holder` names this process (unique per process); `ttl` is how long a lease lasts
    /// without renewal, i.e. how soon another instance takes over a dead holder's job.
    pub fn new(db: Db, holder: impl Into<String>, ttl: Duration) -> Leases {
        Leases {
            db,
            holder: holder.into(),
            ttl: ttl.max(Duration::from_secs(1)),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The database's now, in milliseconds since the epoch.
    fn now(&self) -> &'static str {
        match self.db.backend {
            Backend::Postgres => "(extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        }
    }

    fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }

    /// Takes lease `name` if it is free (released or expired), and (when `every` is not
    /// zero) the job last completed at least `every` ago. True if this instance now holds
    /// it. A live lease is not re-entrant, even for its holder: two jobs of one instance
    /// under one name wait for each other too.
    pub async fn claim(&self, name: &str, every: Duration) -> Result<bool> {
        let now = self.now();
        let sql = format!(
            "INSERT INTO job_leases (name, holder, expires_at, last_done_at)
             VALUES ($1, $2, {now} + $3, NULL)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE job_leases.expires_at <= {now}
               AND (job_leases.last_done_at IS NULL OR job_leases.last_done_at <= {now} - $4)
             RETURNING holder"
        );
        let row: Option<(String,)> = sqlx::query_as(&sql)
            .bind(name)
            .bind(&self.holder)
            .bind(self.ttl_ms())
            .bind(every.as_millis() as i64)
            .fetch_optional(&self.db.any)
            .await?;
        Ok(row.is_some())
    }

    /// Extends our lease; false if it is no longer ours (another instance took it).
    pub async fn renew(&self, name: &str) -> Result<bool> {
        let now = self.now();
        let sql = format!(
            "UPDATE job_leases SET expires_at = {now} + $3 WHERE name = $1 AND holder = $2
             RETURNING name"
        );
        let row: Option<(String,)> = sqlx::query_as(&sql)
            .bind(name)
            .bind(&self.holder)
            .bind(self.ttl_ms())
            .fetch_optional(&self.db.any)
            .await?;
        Ok(row.is_some())
    }

    /// Gives the lease up; with `done`, records that the job completed now.
    pub async fn release(&self, name: &str, done: bool) -> Result<()> {
        let now = self.now();
        let set_done = if done {
            format!(", last_done_at = {now}")
        } else {
            String::new()
        };
        let sql = format!(
            "UPDATE job_leases SET expires_at = {now}{set_done} WHERE name = $1 AND holder = $2"
        );
        sqlx::query(&sql)
            .bind(name)
            .bind(&self.holder)
            .execute(&self.db.any)
            .await?;
        Ok(())
    }

    /// Runs `job` if this instance gets lease `name` (and, for `every` > 0, the job is
    /// due), renewing the lease while it runs and releasing it after. The job counts as
    /// done when it returns, whatever it returns (a failed run waits for the next period,
    /// as a completed one does).
    pub async fn run<T, F>(&self, name: &str, every: Duration, job: F) -> Result<Ran<T>>
    where
        F: Future<Output = T>,
    {
        if !self.claim(name, every).await? {
            return Ok(Ran::NotOurs);
        }
        self.hold_while(name, job).await
    }

    /// Like `run` for a one-shot job that must run (policy notices): waits for the lease
    /// while another instance holds it, instead of skipping.
    pub async fn run_when_free<T, F>(&self, name: &str, job: F) -> Result<Ran<T>>
    where
        F: Future<Output = T>,
    {
        while !self.claim(name, Duration::ZERO).await? {
            tokio::time::sleep(self.ttl / 3).await;
        }
        self.hold_while(name, job).await
    }

    /// Offers periodic job `name` every `min(every, 60 s)` until `stop` turns true: the
    /// instance that gets the lease runs it, at most once per `every` over all instances
    /// (and across restarts), and a run cut short by a crash is taken over by another
    /// instance once the lease runs out. `job` reports its own outcome.
    pub async fn periodically<F, Fut>(
        &self,
        name: &str,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
        mut job: F,
    ) where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let look = every.min(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(look) => {
                    if let Err(e) = self.run(name, every, job()).await {
                        tracing::warn!(job = name, error = %e, "could not take or release the job lease");
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Runs `job` under lease `name`, which this instance has just claimed.
    async fn hold_while<T, F>(&self, name: &str, job: F) -> Result<Ran<T>>
    where
        F: Future<Output = T>,
    {
        let mut beat = tokio::time::interval(self.ttl / 3);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await;
        let mut renewed = tokio::time::Instant::now();
        tokio::pin!(job);
        let out = loop {
            tokio::select! {
                out = &mut job => break out,
                _ = beat.tick() => match self.renew(name).await {
                    Ok(true) => renewed = tokio::time::Instant::now(),
                    Ok(false) => {
                        tracing::warn!(job = name, "job lease taken over; abandoning this run");
                        return Ok(Ran::Abandoned);
                    }
                    // Keep working while the lease we hold has not run out yet.
                    Err(e) if renewed.elapsed() < self.ttl => {
                        tracing::warn!(job = name, error = %e, "could not renew the job lease");
                    }
                    Err(e) => {
                        tracing::error!(job = name, error = %e, "job lease expired unrenewed; abandoning this run");
                        return Ok(Ran::Abandoned);
                    }
                }
            }
        };
        self.release(name, true).await?;
        Ok(Ran::Done(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sqlite() -> Db {
        let dir = std::env::temp_dir().join(format!("leases-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.join("t.db").display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        db
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_once_per_period() {
        let db = sqlite().await;
        let hour = Duration::from_secs(3600);
        let a = Leases::new(db.clone(), "a", hour);
        let b = Leases::new(db.clone(), "b", hour);
        assert!(a.claim("job", hour).await.unwrap());
        assert!(!b.claim("job", hour).await.unwrap(), "a holds it");
        assert!(!a.claim("job", hour).await.unwrap(), "not re-entrant");
        assert!(a.renew("job").await.unwrap());
        assert!(!b.renew("job").await.unwrap(), "b holds nothing to renew");
        a.release("job", true).await.unwrap();
        // Free now, but done less than a period ago: not due for anyone.
        assert!(!b.claim("job", hour).await.unwrap());
        assert!(!a.claim("job", hour).await.unwrap());
        // A one-shot use of the same row (no period) gets it.
        assert!(b.claim("job", Duration::ZERO).await.unwrap());
        b.release("job", false).await.unwrap();
        // A run released without completing (cut short) is due again at once.
        assert!(a.claim("other", hour).await.unwrap());
        a.release("other", false).await.unwrap();
        assert_eq!(
            b.run("other", hour, async { 8 }).await.unwrap(),
            Ran::Done(8)
        );
        assert_eq!(
            a.run("other", hour, async { 7 }).await.unwrap(),
            Ran::NotOurs,
            "done this period"
        );
    }
}
