//! Deletion with a 30-day window, and the retention run.
//!
//! `DELETE /v1/me` disables the account at once (sessions ended, API keys revoked) and
//! schedules the purge for 30 days later, as the privacy policy states. Within the window
//! the holder can cancel only through support (`journey deletion cancel`): they can no
//! longer sign in. The retention run (daily in the server, or `journey retention run`)
//! purges accounts whose window ended, destroys periodic keys past their term, and rewrites
//! events sealed under destroyed keys into tombstones (ciphertext removed, key id kept).

use super::Privacy;
use crate::error::{require_reason, ServiceError};
use crate::identity::Ctx;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use journey_commands::event_rewrite::{rewrite_events, Rewrite, REWRITE_BATCH};
use journey_commands::mailer::Mail;
use journey_domain::account::{Account, AccountCommand, AccountStatus, ErasureCertificate};
use journey_domain::meta::{Actor, CommandMeta};
use journey_domain::retention::key_expires_at;
use journey_domain::retention_log::{RetentionCommand, RunReport};
use journey_domain::sealed::{map_sealed, Embedding};
use journey_domain::DataCategory;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Subjects compacted at once on Postgres (each holds one connection for its read and
/// takes another for each write).
const COMPACT_SUBJECTS_AT_ONCE: usize = 3;

/// The window between a deletion request and the purge (privacy policy, section 5).
/// How a retention run treats its `as_of` (see `retention_run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Destroy and compact; `as_of` must not lie in the future.
    Apply,
    /// Report what would happen; nothing changes.
    DryRun,
    /// Apply at a future `as_of` (tests, rehearsals on a copy of the data).
    Simulate,
}

pub const DELETION_WINDOW_DAYS: i64 = 30;
/// What the holder must send to confirm `DELETE /v1/me`.
pub const CONFIRMATION: &str = "delete my account";

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeletionScheduled {
    /// `pending_deletion`.
    pub status: String,
    /// When everything but the billing records is destroyed.
    pub purge_after: DateTime<Utc>,
    pub sessions_ended: usize,
    pub api_keys_revoked: usize,
}

/// Replaces sealed envelopes under `destroyed` keys by tombstones (same key id, no
/// ciphertext); returns whether anything changed.
fn tombstone(v: &mut Value, destroyed: &HashSet<String>) -> bool {
    let outcome = map_sealed(v, &mut |env, embedding| {
        let hit = env["k"].as_str().is_some_and(|k| destroyed.contains(k))
            && (env["c"].as_str() != Some("") || env["n"].as_str() != Some(""));
        if !hit {
            return Ok::<_, std::convert::Infallible>(None);
        }
        let mut t = env.clone();
        t["n"] = Value::String(String::new());
        t["c"] = Value::String(String::new());
        Ok(Some(match embedding {
            Embedding::Object => t,
            Embedding::InString => Value::String(t.to_string()),
        }))
    });
    match outcome {
        Ok(changed) => changed,
        Err(never) => match never {},
    }
}

impl Privacy<'_> {
    /// Ends every open session and revokes every key of the account; returns the counts.
    async fn cut_access(
        &self,
        subject: &str,
        meta: &CommandMeta,
    ) -> Result<(usize, usize), ServiceError> {
        self.runner.catch_up().await?;
        let sessions = self.identity().open_sessions_of(subject).await?;
        for s in &sessions {
            self.identity().end_session_for_erasure(s, meta).await?;
        }
        let keys = self.identity().live_keys_of(subject).await?;
        for k in &keys {
            self.identity().revoke_key_for_erasure(k, meta).await?;
        }
        Ok((sessions.len(), keys.len()))
    }

    /// The holder's deletion request: disabled now, purged after the window.
    pub async fn request_deletion(
        &self,
        account_id: Uuid,
        confirm: Option<&str>,
        ctx: &Ctx,
    ) -> Result<DeletionScheduled, ServiceError> {
        if confirm.map(|c| c.trim().to_lowercase()) != Some(CONFIRMATION.into()) {
            return Err(ServiceError::bad(format!(
                "to delete your account, send {{\"confirm\": \"{CONFIRMATION}\"}}"
            )));
        }
        let me = self.identity().me(account_id).await?;
        if self
            .credits()
            .subscription_renews(account_id, ctx.at)
            .await?
        {
            return Err(ServiceError::Conflict(
                "your subscription would keep renewing: cancel it in the billing portal (POST /v1/billing/portal) first"
                    .into(),
            ));
        }
        let subject = account_id.to_string();
        let purge_after = ctx.at + Duration::days(DELETION_WINDOW_DAYS);
        let meta = self
            .identity()
            .meta(Actor::Account(account_id), Some(account_id), ctx)
            .await?;
        self.identity()
            .account_lifecycle(
                &subject,
                AccountCommand::RequestDeletion {
                    purge_after,
                    at: ctx.at,
                },
                &meta,
            )
            .await?;
        sqlx::query(
            "INSERT INTO deletion_queue (account_id, purge_after, requested_at) VALUES ($1, $2, $3)
             ON CONFLICT (account_id) DO UPDATE SET purge_after = EXCLUDED.purge_after",
        )
        .bind(&subject)
        .bind(purge_after.timestamp_millis())
        .bind(ctx.at.timestamp_millis())
        .execute(&self.db.any)
        .await?;
        let (sessions_ended, api_keys_revoked) = self.cut_access(&subject, &meta).await?;
        self.identity().settle::<Account>(&subject).await?;
        if let Err(e) = self
            .mailer
            .send(Mail {
                to: me.email,
                subject: "Your JourneyAPI account will be deleted".into(),
                body: format!(
                    "We received your request to delete your JourneyAPI account.\n\n\
                     Your account is disabled now: you are signed out everywhere and your API keys no \
                     longer work. On {} we will delete your account data, usage logs and prompts. \
                     Billing records are kept, separately from your identity, for up to 7 years as the \
                     law requires.\n\nChanged your mind? Contact support before that date.\n",
                    purge_after.format("%Y-%m-%d %H:%M UTC")
                ),
            })
            .await
        {
            tracing::warn!(error = %format!("{e:#}"), "deletion notice not sent");
        }
        Ok(DeletionScheduled {
            status: "pending_deletion".into(),
            purge_after,
            sessions_ended,
            api_keys_revoked,
        })
    }

    /// Staff cancel a pending deletion within the window (the holder asked support).
    pub async fn cancel_deletion(
        &self,
        account_id: Uuid,
        reason: &str,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        require_reason(reason)?;
        let meta = self.identity().meta(actor, None, ctx).await?;
        let subject = account_id.to_string();
        self.identity()
            .account_lifecycle(
                &subject,
                AccountCommand::CancelDeletion {
                    reason: reason.to_string(),
                    at: ctx.at,
                },
                &meta,
            )
            .await?;
        self.dequeue_deletion(&subject).await?;
        self.identity().settle::<Account>(&subject).await
    }

    /// Accounts whose window has ended and whose purge is not certified yet (a purge that
    /// stopped half-way is found again and finished).
    async fn due_purges(&self, as_of: DateTime<Utc>) -> Result<Vec<Uuid>, ServiceError> {
        let rows = sqlx::query(
            "SELECT account_id FROM deletion_queue WHERE purge_after <= $1 ORDER BY purge_after",
        )
        .bind(as_of.timestamp_millis())
        .fetch_all(&self.db.any)
        .await?;
        let mut due = Vec::new();
        for r in rows {
            let id: String = r.try_get(0)?;
            let a = self.identity().account_state(&id).await?;
            let pending = a.status == AccountStatus::PendingDeletion
                && a.purge_after.is_some_and(|p| p <= as_of);
            let unfinished = a.status == AccountStatus::Erased && !a.certified;
            if pending || unfinished {
                due.push(Uuid::parse_str(&id).map_err(|e| ServiceError::Internal(e.into()))?);
            } else if a.status != AccountStatus::PendingDeletion {
                // Cancelled, or finished by an earlier run.
                self.dequeue_deletion(&id).await?;
            }
        }
        Ok(due)
    }

    async fn dequeue_deletion(&self, account_id: &str) -> Result<(), ServiceError> {
        sqlx::query("DELETE FROM deletion_queue WHERE account_id = $1")
            .bind(account_id)
            .execute(&self.db.any)
            .await?;
        Ok(())
    }

    /// Purges one account whose window ended: erasure, tombstones, certificate, email.
    async fn purge(&self, account_id: Uuid, ctx: &Ctx) -> Result<u64, ServiceError> {
        let subject = account_id.to_string();
        // Capture the address before its key is destroyed.
        let email = self.identity().email_of(account_id).await?;
        let stream =
            journey_projections::events::read_stream(&self.db, "account", &subject).await?;
        let request = stream
            .iter()
            .rev()
            .find(|e| e.event_type == "DeletionRequested");
        let requested_by = request
            .and_then(|e| e.metadata.get("actor"))
            .and_then(Value::as_str)
            .unwrap_or("system")
            .to_string();
        let requested_at = request
            .and_then(|e| DateTime::from_timestamp_millis(e.committed_at))
            .unwrap_or(ctx.at);
        let reason = "deletion requested by the account holder; 30-day window ended";
        let report = self
            .identity()
            .erase_account(account_id, reason, Actor::System, ctx)
            .await?;
        let tombstoned = self
            .certify_erasure(&report, reason, requested_by, requested_at, ctx)
            .await?;
        self.dequeue_deletion(&subject).await?;
        if let Some(to) = email {
            if let Err(e) = self
                .mailer
                .send(Mail {
                    to,
                    subject: "Your JourneyAPI account has been deleted".into(),
                    body: "Your JourneyAPI account data, usage logs and prompts have been deleted. \
                           Billing records are kept, separately from your identity, for up to 7 years \
                           as the law requires.\n"
                        .into(),
                })
                .await
            {
                tracing::warn!(error = %format!("{e:#}"), "deletion confirmation not sent");
            }
        }
        Ok(tombstoned)
    }

    /// After an erasure: rewrites the subject's events into tombstones and records the
    /// erasure certificate (categories, counts, time, reason, requester; never content).
    /// Returns how many events were tombstoned.
    pub async fn certify_erasure(
        &self,
        report: &crate::identity::ErasureReport,
        reason: &str,
        requested_by: String,
        requested_at: DateTime<Utc>,
        ctx: &Ctx,
    ) -> Result<u64, ServiceError> {
        let subject = report.account_id.to_string();
        let tombstoned = self.compact(Some(&subject), ctx).await?;
        let certificate = ErasureCertificate {
            categories: report.categories.clone(),
            keys_destroyed: report.keys_destroyed,
            sessions_ended: report.sessions_ended as u64,
            api_keys_revoked: report.api_keys_revoked as u64,
            identity_claims_dropped: report.identity_claims_dropped,
            events_tombstoned: tombstoned,
            retained: vec!["billing records (sealed under billing keys, up to 7 years)".into()],
            reason: reason.into(),
            requested_by,
            requested_at,
            erased_at: ctx.at,
        };
        let meta = CommandMeta::system(ctx.at);
        self.identity()
            .account_lifecycle(&subject, AccountCommand::Certify { certificate }, &meta)
            .await?;
        self.identity().settle::<Account>(&subject).await?;
        Ok(tombstoned)
    }

    /// Rewrites events sealed under destroyed, not yet compacted keys (of `only` subject,
    /// or all) into tombstones; returns how many events changed.
    pub async fn compact(&self, only: Option<&str>, ctx: &Ctx) -> Result<u64, ServiceError> {
        // A subject's events are found through `subject_streams`: let it include every
        // stream written so far, or a stream it has not seen yet would keep its ciphertext.
        self.runner.catch_up().await?;
        let mut by_subject: HashMap<String, Vec<String>> = HashMap::new();
        for k in self.vault.uncompacted_destroyed().await? {
            if only.is_none_or(|s| s == k.subject) {
                by_subject.entry(k.subject).or_default().push(k.key_id);
            }
        }
        let sql = journey_projections::events::subject_events_sql(&self.db);
        // Subjects are independent (disjoint events, their own keys), so on Postgres several
        // are compacted at once: one subject's pipeline is a read, then a write, then the
        // next read, and alone it left the machine half idle (a `perf` profile of the
        // benchmark: 43 % idle). SQLite has one writer; it takes them one at a time.
        let parallel = match self.db.backend {
            journey_commands::db::Backend::Sqlite => 1,
            journey_commands::db::Backend::Postgres => COMPACT_SUBJECTS_AT_ONCE,
        };
        let mut done = futures::stream::iter(by_subject)
            .map(|(subject, keys)| self.compact_subject(&sql, subject, keys, ctx))
            .buffer_unordered(parallel);
        let mut changed = 0;
        while let Some(n) = done.next().await {
            changed += n?;
        }
        Ok(changed)
    }

    /// Compaction of one subject's events sealed under `keys` (destroyed, not yet
    /// compacted); marks the keys compacted after the last write.
    async fn compact_subject(
        &self,
        sql: &str,
        subject: String,
        keys: Vec<String>,
        ctx: &Ctx,
    ) -> Result<u64, ServiceError> {
        let destroyed: HashSet<String> = keys.iter().cloned().collect();
        let mut changed = 0;
        // Read the subject's history once (one streamed query), tombstone in memory, and
        // write back every `REWRITE_BATCH` changed events in one set-based statement
        // (`event_rewrite`): no round trip per event, no page re-reading the history.
        let mut events = journey_projections::events::subject_events(&self.db, sql, &subject);
        let mut rewrites = Vec::with_capacity(REWRITE_BATCH);
        while let Some(e) = events.next().await {
            let mut e = e?;
            let p = tombstone(&mut e.payload, &destroyed);
            let m = tombstone(&mut e.metadata, &destroyed);
            if p || m {
                rewrites.push(Rewrite {
                    payload: e.payload.to_string(),
                    metadata: e.metadata.to_string(),
                    aggregate_type: e.aggregate_type,
                    aggregate_id: e.aggregate_id,
                    sequence: e.sequence,
                });
                if rewrites.len() == REWRITE_BATCH {
                    rewrite_events(&self.db, &rewrites).await?;
                    changed += rewrites.len() as u64;
                    rewrites.clear();
                }
            }
        }
        drop(events);
        rewrite_events(&self.db, &rewrites).await?;
        changed += rewrites.len() as u64;
        for k in &keys {
            self.vault.mark_compacted(k, ctx.at).await?;
        }
        Ok(changed)
    }

    /// One retention run at `as_of`. A dry run changes nothing but is recorded too.
    ///
    /// A run dated in the future would destroy the keys of periods that are still running
    /// (today's usage and prompts): data the policy promises to keep 90 days would go
    /// early. So `as_of` may lie past now only in a dry run or a `Simulate` run (for tests
    /// and rehearsals on a copy of the data); otherwise the run is refused.
    pub async fn retention_run(
        &self,
        as_of: DateTime<Utc>,
        mode: RunMode,
        ctx: &Ctx,
    ) -> Result<RunReport, ServiceError> {
        let started_at = self.clock.now();
        if as_of > started_at + chrono::Duration::minutes(1) && mode == RunMode::Apply {
            return Err(ServiceError::bad(format!(
                "--as-of {} is in the future: a run would destroy data whose term has not ended. \
                 Use --dry-run to preview, or --simulate on a copy of the data",
                as_of.to_rfc3339()
            )));
        }
        let dry_run = mode == RunMode::DryRun;
        let due = self.due_purges(as_of).await?;
        let mut keys_destroyed: BTreeMap<String, u64> = BTreeMap::new();
        let mut events_tombstoned = 0;
        let run_ctx = Ctx {
            at: as_of,
            ..ctx.clone()
        };
        if !dry_run {
            for id in &due {
                events_tombstoned += self.purge(*id, &run_ctx).await?;
            }
        }
        for k in self.vault.live_periodic_keys().await? {
            let Some(category) = DataCategory::parse(&k.category) else {
                continue;
            };
            if key_expires_at(category, &k.period).is_some_and(|t| t <= as_of) {
                let destroyed = dry_run
                    || self
                        .vault
                        .destroy_key(&k.key_id, "retention: term ended", as_of)
                        .await?;
                if destroyed {
                    *keys_destroyed.entry(k.category).or_default() += 1;
                }
            }
        }
        let support = self.legal().expire_support_keys(as_of, dry_run).await?;
        if support > 0 {
            *keys_destroyed.entry("support".to_string()).or_default() += support;
        }
        let (mut requests_reminded, mut exports_deleted, mut log_rows_deleted) = (0, 0, 0);
        let mut logs_before = None;
        if !dry_run {
            events_tombstoned += self.compact(None, &run_ctx).await?;
            requests_reminded = self.remind_due_requests(as_of).await?;
            exports_deleted = self.delete_stale_exports(as_of).await?;
            (logs_before, log_rows_deleted) = self.trim_task_logs(as_of).await?;
        }
        let report = RunReport {
            as_of,
            dry_run,
            simulated: mode == RunMode::Simulate,
            // A dry run reports what it would purge.
            accounts_purged: due.len() as u64,
            exports_deleted,
            log_rows_deleted,
            keys_destroyed,
            events_tombstoned,
            requests_reminded,
            started_at,
            finished_at: self.clock.now(),
        };
        let meta = CommandMeta::system(ctx.at);
        self.stores
            .privacy
            .retention
            .execute(
                &Uuid::new_v4().to_string(),
                RetentionCommand::Record {
                    report: report.clone(),
                    logs_before,
                },
                &meta,
            )
            .await?;
        // Applied before the run returns, so that the trimmed rows are gone when the caller
        // (often the one-shot CLI) looks; a server's runner would otherwise apply it later.
        self.runner.catch_up().await?;
        Ok(report)
    }

    /// The task list and usage log are kept 90 days (their sealed fields go with the
    /// daily keys; these rows hold ids and counts); idempotency keys a day.
    ///
    /// The read-model rows are not deleted here: only a projection writes its read model,
    /// so the run returns the cut-off, records it as `TaskLogsTrimmed`, and the `tasks` and
    /// `usage` projections delete their rows older than it when they apply that event.
    /// Returns the cut-off and how many rows go (the read-model rows as of now, counted,
    /// plus the idempotency keys deleted).
    async fn trim_task_logs(
        &self,
        as_of: DateTime<Utc>,
    ) -> Result<(Option<DateTime<Utc>>, u64), ServiceError> {
        let mut n: u64 = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind((as_of - chrono::Duration::hours(24)).timestamp_millis())
            .execute(&self.db.any)
            .await?
            .rows_affected();
        let term = journey_domain::retention::rule(DataCategory::Usage);
        let journey_domain::retention::Keep::For(keep) = term.keep else {
            return Ok((None, n));
        };
        let cutoff = as_of - keep;
        // Count what the projections will delete, once they stand where this run started.
        self.runner.catch_up().await?;
        for q in [
            "SELECT COUNT(*) FROM rm_usage WHERE at < $1",
            "SELECT COUNT(*) FROM rm_tasks WHERE created_at < $1",
        ] {
            let count: i64 = sqlx::query(q)
                .bind(cutoff.timestamp_millis())
                .fetch_one(&self.db.any)
                .await?
                .try_get(0)?;
            n += count as u64;
        }
        Ok((Some(cutoff), n))
    }

    /// Export documents whose link expired, and jobs that never finished within a day.
    async fn delete_stale_exports(&self, as_of: DateTime<Utc>) -> Result<u64, ServiceError> {
        let now = as_of.timestamp_millis();
        Ok(sqlx::query(
            "DELETE FROM export_jobs WHERE expires_at < $1 OR (status <> 'ready' AND created_at < $2)",
        )
        .bind(now)
        .bind(now - 24 * 3600 * 1000)
        .execute(&self.db.any)
        .await?
        .rows_affected())
    }

    /// Accounts waiting for their purge (`deletion_queue`), soonest first: account id,
    /// when the deletion was requested, when the purge is due.
    pub async fn deletion_queue(
        &self,
    ) -> Result<Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)>, ServiceError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT account_id, requested_at, purge_after FROM deletion_queue
             ORDER BY purge_after, account_id",
        )
        .fetch_all(&self.db.any)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, requested, purge)| {
                Some((
                    Uuid::parse_str(&id).ok()?,
                    DateTime::from_timestamp_millis(requested)?,
                    DateTime::from_timestamp_millis(purge)?,
                ))
            })
            .collect())
    }

    /// Erasure certificates (`ErasureCertified`), newest first: the subject's account id
    /// and the certificate (categories, counts, reason, requester, times; never content).
    pub async fn erasure_certificates(
        &self,
        limit: i64,
    ) -> Result<Vec<(Uuid, journey_domain::account::ErasureCertificate)>, ServiceError> {
        let rows = sqlx::query(self.db.pick(
            "SELECT aggregate_id, payload FROM events WHERE aggregate_type = 'account'
             AND event_type = 'ErasureCertified' ORDER BY position DESC LIMIT $1",
            "SELECT aggregate_id, payload::text FROM events WHERE aggregate_type = 'account'
             AND event_type = 'ErasureCertified' ORDER BY position DESC LIMIT $1",
        ))
        .bind(limit)
        .fetch_all(&self.db.any)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get(0)?;
            let text: String = r.try_get(1)?;
            let event: journey_domain::account::AccountEvent =
                serde_json::from_str(&text).map_err(|e| ServiceError::Internal(e.into()))?;
            if let (
                Ok(id),
                journey_domain::account::AccountEvent::ErasureCertified { certificate },
            ) = (Uuid::parse_str(&id), event)
            {
                out.push((id, certificate));
            }
        }
        Ok(out)
    }

    /// Recorded runs, newest first.
    pub async fn retention_runs(&self, limit: i64) -> Result<Vec<Value>, ServiceError> {
        let rows = sqlx::query(self.db.pick(
            "SELECT payload FROM events WHERE aggregate_type = 'retention'
             AND event_type = 'RetentionRunRecorded' ORDER BY position DESC LIMIT $1",
            "SELECT payload::text FROM events WHERE aggregate_type = 'retention'
             AND event_type = 'RetentionRunRecorded' ORDER BY position DESC LIMIT $1",
        ))
        .bind(limit)
        .fetch_all(&self.db.any)
        .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get(0)?;
                let v: Value =
                    serde_json::from_str(&text).map_err(|e| ServiceError::Internal(e.into()))?;
                Ok(v.get("RetentionRunRecorded").cloned().unwrap_or(v))
            })
            .collect()
    }
}
