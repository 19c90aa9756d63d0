//! The limiter in the Postgres database: `rate_limits`, an UNLOGGED table (its state is
//! disposable: a crash of the database server empties it, which only refills every
//! budget, and it costs no WAL).
//!
//! **One statement per batch.** Every request of the client API is checked, so a check
//! per transaction would be a commit per request beside the request's own. Checks are
//! queued instead and one task per instance answers whatever is queued with one upsert
//! (the group commit the ledger uses, applied to the limiter): at one request at a time
//! a batch is that one check, under load it carries every check that arrived while the
//! previous statement ran, so nothing waits for a timer.
//!
//! The statement computes the GCRA step on each row under its lock, with the database's
//! clock, so concurrent batches from any number of instances serialise on a key's row and
//! each sees the TAT the previous one left. `k` checks of one key in a batch arrive at
//! the same instant: the first `granted = min(k, ⌊(n·T − lag)/T⌋)` are allowed (exactly
//! what `k` single checks in a row would answer) and TAT moves `granted · T`; the rest
//! are refused and wait from the TAT the batch left. A refused check changes nothing.

use super::{limited_after, Decision, KeyKind, LimiterBackend, Quota};
use crate::db::{Db, TypedPool};
use anyhow::{anyhow, bail, Result};
use async_trait::async_trait;
use sqlx::PgPool;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

pub struct Postgres {
    pool: PgPool,
    queue: mpsc::Sender<Check>,
}

/// A check waiting for the next batch.
struct Check {
    bucket: String,
    quota: Quota,
    reply: Reply,
}

/// Where a check's answer goes.
type Reply = oneshot::Sender<Result<Decision, String>>;
/// A batch's checks by key: the quota they were asked under and who asked, in order.
type Groups = HashMap<String, (Quota, Vec<Reply>)>;

/// Checks per statement at most (a bound on the statement's size, not a wait).
const BATCH: usize = 512;

/// The database's now in microseconds since the epoch.
const NOW_US: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

impl Postgres {
    /// Also starts the task that answers the queued checks (it ends with the last sender).
    pub fn new(db: &Db) -> Result<Postgres> {
        let pool = match &db.typed {
            TypedPool::Postgres(pool) => pool.clone(),
            TypedPool::Sqlite(_) => bail!("the Postgres rate limiter needs a Postgres database"),
        };
        let (queue, rx) = mpsc::channel(4 * BATCH);
        tokio::spawn(answer_batches(pool.clone(), rx));
        Ok(Postgres { pool, queue })
    }
}

/// Takes whatever is queued (at most `BATCH`), answers it with one statement, repeats.
async fn answer_batches(pool: PgPool, mut rx: mpsc::Receiver<Check>) {
    let sql = check_sql();
    // A key asked under two quotas in one batch (a plan changing under it) cannot be one
    // row's update: the later asks wait for the next batch.
    let mut carried: Vec<Check> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut carried);
        if batch.is_empty() {
            match rx.recv().await {
                Some(c) => batch.push(c),
                None => return,
            }
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut groups = Groups::new();
        for c in batch {
            match groups.get_mut(&c.bucket) {
                Some((q, replies)) if *q == c.quota => replies.push(c.reply),
                Some(_) => carried.push(c),
                None => {
                    groups.insert(c.bucket, (c.quota, vec![c.reply]));
                }
            }
        }
        let answers = run_batch(&pool, &sql, &groups).await;
        for (bucket, (quota, replies)) in groups {
            let answer = match &answers {
                Ok(rows) => rows
                    .get(&bucket)
                    .copied()
                    .ok_or_else(|| "the batch returned no row for a key".to_string()),
                Err(e) => Err(e.to_string()),
            };
            for (i, reply) in replies.into_iter().enumerate() {
                let decision = answer.clone().map(|(granted, tat, now)| {
                    if (i as i64) < granted {
                        Decision::Allowed
                    } else {
                        limited_after(quota, tat, now)
                    }
                });
                // The caller may have gone (its request cancelled); its count stands.
                let _ = reply.send(decision);
            }
        }
    }
}

/// `(granted, tat_us, now_us)` per bucket after the batch.
async fn run_batch(
    pool: &PgPool,
    sql: &str,
    groups: &Groups,
) -> Result<HashMap<String, (i64, i64, i64)>> {
    let mut buckets = Vec::with_capacity(groups.len());
    let mut intervals = Vec::with_capacity(groups.len());
    let mut tolerances = Vec::with_capacity(groups.len());
    let mut requested = Vec::with_capacity(groups.len());
    for (bucket, (quota, replies)) in groups {
        buckets.push(bucket.as_str());
        intervals.push(quota.interval_us());
        tolerances.push(quota.tolerance_us());
        requested.push(i32::try_from(replies.len()).unwrap_or(i32::MAX));
    }
    let rows: Vec<(String, i32, i64, i64)> = sqlx::query_as(sql)
        .bind(&buckets)
        .bind(&intervals)
        .bind(&tolerances)
        .bind(&requested)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(b, granted, tat, now)| (b, (i64::from(granted), tat, now)))
        .collect())
}

fn check_sql() -> String {
    // $1 buckets, $2 T (interval), $3 n·T (tolerance), microseconds, $4 checks per bucket.
    // A bucket's time never runs backwards: a statement that read the clock before another
    // one updated the bucket (it waited for the row's lock) counts from the later reading.
    // Counting from its own, it saw the bucket's TAT up to that gap further ahead, and told
    // a refused caller to wait longer than one refill (72.001 s for a 72 s interval).
    let now = "GREATEST(EXCLUDED.now_us, r.now_us)";
    // `lag` = max(TAT, now) − now; a fresh key has none.
    let lag = format!("GREATEST(r.tat_us, {now}) - {now}");
    let granted = format!(
        "LEAST(EXCLUDED.requested, GREATEST(0, (EXCLUDED.tolerance_us - ({lag})) / EXCLUDED.interval_us))"
    );
    format!(
        "WITH c AS (SELECT {NOW_US} AS now),
         q AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[])
                 AS q(bucket, t, tol, n)),
         g AS (SELECT q.*, LEAST(q.n, q.tol / q.t)::int AS k FROM q)
         INSERT INTO rate_limits AS r
           (bucket, tat_us, now_us, allowed, requested, granted, interval_us, tolerance_us)
         SELECT g.bucket, c.now + g.k * g.t, c.now, g.k > 0, g.n, g.k, g.t, g.tol FROM g, c
         ON CONFLICT (bucket) DO UPDATE SET
           now_us = {now},
           requested = EXCLUDED.requested,
           interval_us = EXCLUDED.interval_us,
           tolerance_us = EXCLUDED.tolerance_us,
           granted = {granted},
           allowed = {granted} > 0,
           tat_us = CASE WHEN {granted} > 0
             THEN GREATEST(r.tat_us, {now}) + {granted} * EXCLUDED.interval_us
             ELSE r.tat_us END
         RETURNING bucket, granted, tat_us, now_us"
    )
}

#[async_trait]
impl LimiterBackend for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn check(&self, kind: KeyKind, quota: Quota, key: &str) -> Result<Decision> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Check {
                bucket: format!("{}:{key}", kind.as_str()),
                quota,
                reply,
            })
            .await
            .map_err(|_| anyhow!("the rate limiter's batch task has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow!("the rate limiter's batch task dropped a check"))?
            .map_err(|e| anyhow!(e))
    }

    async fn prune(&self) -> Result<()> {
        // A TAT in the past means a full budget, the same as no row.
        sqlx::query(&format!("DELETE FROM rate_limits WHERE tat_us < {NOW_US}"))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
