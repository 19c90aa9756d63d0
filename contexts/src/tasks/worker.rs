//! Background work on tasks, safe with several instances on one database: each due row of
//! `task_work` is claimed with a lease (an UPDATE that only succeeds while no other
//! instance holds it), so no task is polled, timed out, settled or webhooked by two at
//! once. The work for a claimed task follows from its state:
//! - staged OpenAI-style jobs (async models, upscales) are run;
//! - tasks staged past the submit grace, or in flight past their provider's timeout,
//!   fail and release their credits;
//! - tasks in flight are polled, batched per provider with `list-by-condition`;
//! - ended tasks get their credits settled and their customer webhook delivered (with
//!   retries); then the row goes.

use super::requests::ImagesJob;
use super::Tasks;
use crate::error::ServiceError;
use chrono::{DateTime, Duration, Utc};
use journey_domain::task::{FailCause, Task, TaskStatus};
use journey_domain::Opened;
use std::collections::HashMap;
use uuid::Uuid;

/// How long a claim lasts without renewal: another instance takes over a dead instance's
/// rows this long after its last heartbeat. docs/operations.md quotes both figures (a
/// test checks the docs against these constants).
pub const LEASE_SECS: i64 = 15;
const LEASE: Duration = Duration::seconds(LEASE_SECS);
/// While a pass works on its rows (an images call may take minutes), their leases are
/// renewed this often, so that only a dead instance loses them.
pub const HEARTBEAT_SECS: u64 = 5;
const BATCH: i64 = 200;
/// list-by-condition ids per call.
const POLL_CHUNK: usize = 50;

/// Puts a new task in the work queue, inside the unit of work that accepts it.
pub(crate) async fn enqueue_work_in(
    conn: &mut sqlx::AnyConnection,
    task_id: Uuid,
    account_id: Uuid,
    provider: &str,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO task_work (task_id, account_id, provider, due_at, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(task_id.to_string())
    .bind(account_id.to_string())
    .bind(provider)
    .bind(due_at.timestamp_millis())
    .bind(now.timestamp_millis())
    .execute(conn)
    .await?;
    Ok(())
}

struct Claimed {
    task_id: Uuid,
    provider: String,
}

impl Tasks<'_> {
    pub(crate) fn poll_interval(&self) -> Duration {
        Duration::seconds(self.cfg.task_poll_interval_secs.max(1) as i64)
    }

    pub fn wake_worker(&self) {
        self.worker_wake.notify_one();
    }

    /// Sets when the task next needs attention and gives up any lease on it.
    pub async fn reschedule(
        &self,
        task_id: Uuid,
        due_at: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        sqlx::query(
            "UPDATE task_work SET due_at = $1, lease_owner = NULL, lease_until = 0 WHERE task_id = $2",
        )
        .bind(due_at.timestamp_millis())
        .bind(task_id.to_string())
        .execute(&self.db.any)
        .await?;
        Ok(())
    }

    async fn done_with(&self, task_id: Uuid) -> Result<(), ServiceError> {
        sqlx::query("DELETE FROM task_work WHERE task_id = $1 AND lease_owner = $2")
            .bind(task_id.to_string())
            .bind(&self.instance_id)
            .execute(&self.db.any)
            .await?;
        Ok(())
    }

    /// Claims up to `BATCH` due rows for this instance.
    async fn claim(&self, now: DateTime<Utc>) -> Result<Vec<Claimed>, ServiceError> {
        let now_ms = now.timestamp_millis();
        // The inner SELECT may race with another instance; the outer WHERE re-checks the
        // lease under the row lock, so only one UPDATE takes each row.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "UPDATE task_work SET lease_owner = $1, lease_until = $2
             WHERE task_id IN (SELECT task_id FROM task_work
                               WHERE due_at <= $3 AND lease_until < $3
                               ORDER BY due_at LIMIT $4)
               AND due_at <= $3 AND lease_until < $3
             RETURNING task_id, provider",
        )
        .bind(&self.instance_id)
        .bind((now + LEASE).timestamp_millis())
        .bind(now_ms)
        .bind(BATCH)
        .fetch_all(&self.db.any)
        .await?;
        rows.into_iter()
            .map(|(id, provider)| {
                Ok(Claimed {
                    task_id: Uuid::parse_str(&id).map_err(|e| ServiceError::Internal(e.into()))?,
                    provider,
                })
            })
            .collect()
    }

    /// Extends the leases this instance still holds (a heartbeat).
    async fn renew_leases(&self) -> Result<(), ServiceError> {
        let now = self.clock.now();
        // Only rows still ours: a row another instance claimed (after our lease ran out)
        // has its owner, and reschedule/done clear or delete ours.
        sqlx::query("UPDATE task_work SET lease_until = $1 WHERE lease_owner = $2")
            .bind((now + LEASE).timestamp_millis())
            .bind(&self.instance_id)
            .execute(&self.db.any)
            .await?;
        Ok(())
    }

    /// One pass over due work; returns how many tasks it looked at. The pass's leases are
    /// renewed every `HEARTBEAT_SECS` until it ends.
    pub async fn work_once(&self) -> Result<usize, ServiceError> {
        let now = self.clock.now();
        let claimed = self.claim(now).await?;
        let n = claimed.len();
        if n == 0 {
            return Ok(0);
        }
        let work = self.work_on(claimed, now);
        tokio::pin!(work);
        let mut beat = tokio::time::interval(std::time::Duration::from_secs(HEARTBEAT_SECS));
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await;
        loop {
            tokio::select! {
                done = &mut work => return done.map(|()| n),
                _ = beat.tick() => {
                    if let Err(e) = self.renew_leases().await {
                        tracing::warn!(error = %e, "could not renew task leases");
                    }
                }
            }
        }
    }

    /// Works on each claimed task on its own: one task's error (a malformed upstream
    /// report, a refused command) sets that task aside for the next round and never stops
    /// its neighbours.
    async fn work_on(&self, claimed: Vec<Claimed>, now: DateTime<Utc>) -> Result<(), ServiceError> {
        let mut to_poll: HashMap<String, Vec<(Uuid, Task)>> = HashMap::new();
        for c in claimed {
            let advanced = async {
                let (task, _) = self.stores.tasks.tasks.load(&c.task_id.to_string()).await?;
                self.advance(c.task_id, &c.provider, task, now).await
            };
            match advanced.await {
                Ok(Some(t)) => to_poll.entry(c.provider).or_default().push((c.task_id, t)),
                Ok(None) => {}
                Err(e) => self.set_aside(c.task_id, &e, now).await,
            }
        }
        for (provider, tasks) in to_poll {
            self.poll(&provider, tasks, now).await?;
        }
        Ok(())
    }

    /// A task whose work failed this round: logged, and due again after a poll interval
    /// (its own timeout still runs).
    async fn set_aside(&self, task_id: Uuid, error: &ServiceError, now: DateTime<Utc>) {
        tracing::error!(%task_id, error = %error, "task work failed; retrying next round");
        if let Err(e) = self.reschedule(task_id, now + self.poll_interval()).await {
            tracing::error!(%task_id, error = %e, "could not reschedule task");
        }
    }

    /// Does the task's due work; returns it when it waits on the provider (to poll).
    async fn advance(
        &self,
        task_id: Uuid,
        provider: &str,
        task: Task,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, ServiceError> {
        let Some(spec) = task.spec.clone() else {
            // A work row without its task. Accepting a task commits both at once, so only a
            // version before that could leave one (a crash between its two commits); its
            // reservation, if any, is released after an hour.
            let grace = now - Duration::hours(1);
            let row: Option<(i64, String)> =
                sqlx::query_as("SELECT created_at, account_id FROM task_work WHERE task_id = $1")
                    .bind(task_id.to_string())
                    .fetch_optional(&self.db.any)
                    .await?;
            match row {
                Some((created, account)) if created < grace.timestamp_millis() => {
                    self.release_orphan(&account, task_id, now).await?;
                    self.done_with(task_id).await?;
                }
                _ => self.reschedule(task_id, now + Duration::minutes(1)).await?,
            }
            return Ok(None);
        };
        let created = task.created_at.unwrap_or(now);
        if task.is_terminal() {
            self.settle_task(task_id, &task, now).await?;
            return match self.deliver_webhook(task_id, &task, now).await? {
                Some(next) => {
                    self.reschedule(task_id, next).await?;
                    Ok(None)
                }
                None => {
                    self.done_with(task_id).await?;
                    Ok(None)
                }
            };
        }
        let timeout = self.upstreams.task_timeout(provider);
        if now - created >= timeout {
            let error = format!(
                "timed out: no result from the upstream provider within {} seconds",
                timeout.num_seconds()
            );
            let task = self
                .fail_task(task_id, &task, FailCause::TimedOut, &error, now)
                .await?;
            self.after_end(task_id, &task, now).await?;
            return Ok(None);
        }
        if task.status() == TaskStatus::Staged && task.upstream_id.is_none() {
            if self.upstreams.images(provider).is_some() {
                let job: Option<ImagesJob> = match self.vault.open(&spec.params).await? {
                    Opened::Value(p) => self.images_job_of(&spec.model, &p),
                    Opened::Erased => None,
                };
                let task = match job {
                    Some(job) => {
                        self.run_images_job(task_id, task, provider, &job, now)
                            .await?
                    }
                    None => {
                        self.fail_task(
                            task_id,
                            &task,
                            FailCause::BadInput,
                            "the task's parameters are gone",
                            now,
                        )
                        .await?
                    }
                };
                self.after_end(task_id, &task, now).await?;
                return Ok(None);
            }
            // A midjourney task never recorded as submitted: the request died mid-way.
            let error = "the task could not be submitted upstream";
            let task = self
                .fail_task(task_id, &task, FailCause::Unreachable, error, now)
                .await?;
            self.after_end(task_id, &task, now).await?;
            return Ok(None);
        }
        Ok(Some(task))
    }

    /// Releases a reservation whose task never came into being (see `advance`).
    async fn release_orphan(
        &self,
        account: &str,
        task_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let release = journey_domain::credits::CreditCommand::Release { task_id, at: now };
        self.credits()
            .settle_reservation(account, release, now)
            .await
    }

    /// A task that just ended: deliver its webhook now, or finish with its row.
    async fn after_end(
        &self,
        task_id: Uuid,
        task: &Task,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        match self.deliver_webhook(task_id, task, now).await? {
            Some(next) => self.reschedule(task_id, next).await,
            None => self.done_with(task_id).await,
        }
    }

    async fn run_images_job(
        &self,
        task_id: Uuid,
        task: Task,
        provider: &str,
        job: &ImagesJob,
        now: DateTime<Utc>,
    ) -> Result<Task, ServiceError> {
        let cmd = journey_domain::task::TaskCommand::RecordProgress {
            status: TaskStatus::Starting,
            percentage: 0,
            at: now,
        };
        let task = match self
            .task_command(
                task_id,
                cmd,
                &journey_domain::meta::CommandMeta::system(now),
            )
            .await
        {
            Ok(t) => t,
            Err(_) => task,
        };
        self.run_images(task_id, task, provider, job, now).await
    }

    /// Rebuilds an images job from a task's sealed parameters.
    fn images_job_of(&self, model: &str, params: &serde_json::Value) -> Option<ImagesJob> {
        let s = |k: &str| params.get(k).and_then(|v| v.as_str()).map(str::to_string);
        if let Some(kind) = s("type").filter(|k| k == "2x" || k == "4x") {
            // upscale-2x-4x: the source image was resolved when the task was accepted.
            return Some(ImagesJob {
                upstream_model: model.to_string(),
                prompt: format!("upscale {kind}"),
                image_url: s("source_image_url"),
                edit: true,
                aspect_ratio: None,
                output_format: None,
                negative_prompt: None,
                resolution: None,
            });
        }
        let spec = self.models.model(model)?;
        Some(ImagesJob {
            upstream_model: spec.upstream_model.clone(),
            prompt: s("prompt")?,
            image_url: s("image_url"),
            edit: spec.edit,
            aspect_ratio: s("aspect_ratio"),
            output_format: s("output_format"),
            negative_prompt: s("negative_prompt"),
            resolution: s("resolution"),
        })
    }

    /// Polls a provider for its tasks in flight, in batches; an unreachable provider
    /// leaves them for the next round (their timeout still runs).
    async fn poll(
        &self,
        provider: &str,
        tasks: Vec<(Uuid, Task)>,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let next = now + self.poll_interval();
        let Some(client) = self.upstreams.mj(provider) else {
            for (id, _) in tasks {
                self.reschedule(id, next).await?;
            }
            return Ok(());
        };
        for chunk in tasks.chunks(POLL_CHUNK) {
            let ids: Vec<String> = chunk
                .iter()
                .filter_map(|(_, t)| t.upstream_id.clone())
                .collect();
            let reports = match client.poll(&ids).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(provider, error = %e, "poll failed; retrying next round");
                    vec![]
                }
            };
            let by_id: HashMap<&str, _> = reports.iter().map(|r| (r.id.as_str(), r)).collect();
            for (task_id, task) in chunk {
                let report = task.upstream_id.as_deref().and_then(|u| by_id.get(u));
                let applied = async {
                    let task = match report {
                        Some(r) => self.apply_mj_report(*task_id, task.clone(), r, now).await?,
                        None => task.clone(),
                    };
                    if task.is_terminal() {
                        self.after_end(*task_id, &task, now).await
                    } else {
                        self.reschedule(*task_id, next).await
                    }
                };
                if let Err(e) = applied.await {
                    self.set_aside(*task_id, &e, now).await;
                }
            }
        }
        Ok(())
    }
}

/// Runs the worker until `stop` changes: a pass every tick, or at once when woken.
pub async fn run_worker(app: crate::App, mut stop: tokio::sync::watch::Receiver<bool>) {
    let tick = std::time::Duration::from_millis(app.cfg.task_worker_tick_ms.max(10));
    loop {
        match app.tasks().work_once().await {
            Ok(n) if n as i64 >= BATCH => continue,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "task worker pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = app.worker_wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The operators' and clients' docs quote the lease and heartbeat; they must be these.
    #[test]
    fn the_docs_quote_the_lease_and_heartbeat_in_force() {
        let ops = include_str!("../../../docs/operations.md");
        let api = include_str!("../../../docs/api.md");
        for doc in [ops, api] {
            assert!(doc.contains(&format!("{} s lease", super::LEASE_SECS)));
            assert!(doc.contains(&format!("every {} s", super::HEARTBEAT_SECS)));
            assert!(!doc.contains("120 s lease") && !doc.contains("120-second lease"));
        }
    }
}
