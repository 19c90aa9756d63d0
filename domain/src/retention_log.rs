//! The record of retention runs: one aggregate per run (id = run id), so staff can read
//! what each run destroyed and compacted. Holds counts and instants only, no subject data.
//!
//! A run that trims the task list and the usage log records the cut-off as an event
//! (`TaskLogsTrimmed`) instead of deleting read-model rows itself: only a projection writes
//! its read model, so the `tasks` and `usage` projections delete their rows older than the
//! cut-off when they apply it, and a rebuild from zero trims exactly where live catch-up did.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The instant the schedule was evaluated at (`--as-of`, or now).
    pub as_of: DateTime<Utc>,
    pub dry_run: bool,
    /// Run with `--simulate`: `as_of` may lie in the future, and keys of periods still
    /// running were destroyed as if that day had come (meant for a copy of the data).
    #[serde(default)]
    pub simulated: bool,
    /// Accounts whose 30-day deletion window ended and that were purged.
    pub accounts_purged: u64,
    /// Periodic keys destroyed, by category.
    pub keys_destroyed: BTreeMap<String, u64>,
    /// Events rewritten so that values under destroyed keys became tombstones.
    pub events_tombstoned: u64,
    /// Data-subject requests due within 3 days whose staff were reminded.
    #[serde(default)]
    pub requests_reminded: u64,
    /// Expired export documents deleted.
    #[serde(default)]
    pub exports_deleted: u64,
    /// Task-list and usage-log read-model rows past the 90-day term (counted when the run
    /// recorded `TaskLogsTrimmed`; the projections delete them), and idempotency keys past
    /// their day, deleted.
    #[serde(default)]
    pub log_rows_deleted: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RetentionCommand {
    /// Records the run's report; with `logs_before`, first the cut-off below which the
    /// task list and usage log are trimmed (one commit: the trim is never recorded without
    /// its report, nor the report without its trim).
    Record {
        report: RunReport,
        logs_before: Option<DateTime<Utc>>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RetentionEvent {
    /// Task-list rows created before `before` and usage-log rows of requests made before
    /// `before` are past their term: the `tasks` and `usage` projections delete them.
    TaskLogsTrimmed {
        before: DateTime<Utc>,
    },
    RetentionRunRecorded(RunReport),
}

crate::domain_event!(RetentionEvent, "1", { TaskLogsTrimmed, RetentionRunRecorded });

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RetentionError {
    #[error("this run is already recorded")]
    AlreadyRecorded,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct RetentionRun {
    pub recorded: bool,
}

impl Aggregate for RetentionRun {
    const TYPE: &'static str = "retention";
    type Command = RetentionCommand;
    type Event = RetentionEvent;
    type Error = RetentionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: RetentionCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), RetentionError> {
        let RetentionCommand::Record {
            report,
            logs_before,
        } = command;
        if self.recorded {
            return Err(RetentionError::AlreadyRecorded);
        }
        if let Some(before) = logs_before {
            sink.write(RetentionEvent::TaskLogsTrimmed { before }, self)
                .await;
        }
        sink.write(RetentionEvent::RetentionRunRecorded(report), self)
            .await;
        Ok(())
    }

    fn apply(&mut self, event: RetentionEvent) {
        if let RetentionEvent::RetentionRunRecorded(_) = event {
            self.recorded = true;
        }
    }
}
