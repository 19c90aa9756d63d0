//! The API usage log: one event per authenticated `/api/v1` request. It guards no invariant,
//! so the server writes it in batches without an aggregate (`commands::usage_log`); the type
//! `UsageDay` only names the streams' aggregate type (`usage`) and their events. Streams are
//! cut per account, UTC day and writing process (`<account>:<YYYY-MM-DD>:<writer>`), so no
//! stream grows without bound and no two writers share one. The client IP is sealed in the
//! `usage` category (90 days); the rest names no one but the account id.

use crate::sealed::Sealed;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The usage stream of `account` for the UTC day of `at`.
pub fn stream_id(account: Uuid, at: DateTime<Utc>) -> String {
    format!("{account}:{}", at.format("%Y-%m-%d"))
}

/// The account a usage stream id belongs to (`<account>:<day>` or `<account>:<day>:<writer>`).
pub fn account_of(stream_id: &str) -> Option<Uuid> {
    stream_id
        .split_once(':')
        .and_then(|(a, _)| Uuid::parse_str(a).ok())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiRequest {
    pub key_id: Uuid,
    /// The route pattern, e.g. `/api/v1/imagine` (never a URL with values in it).
    pub endpoint: String,
    pub status: u16,
    /// Credits reserved by this request (released again if its task fails).
    pub credits: u64,
    pub task_id: Option<Uuid>,
    pub client_ip: Option<Sealed<String>>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UsageCommand {
    Record(Box<ApiRequest>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UsageEvent {
    ApiRequestRecorded(Box<ApiRequest>),
}

crate::domain_event!(UsageEvent, "1", { ApiRequestRecorded });

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UsageError {}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsageDay {
    pub requests: u64,
}

impl Aggregate for UsageDay {
    const TYPE: &'static str = "usage";
    type Command = UsageCommand;
    type Event = UsageEvent;
    type Error = UsageError;
    type Services = ();

    async fn handle(
        &mut self,
        command: UsageCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), UsageError> {
        let UsageCommand::Record(r) = command;
        sink.write(UsageEvent::ApiRequestRecorded(r), self).await;
        Ok(())
    }

    fn apply(&mut self, _: UsageEvent) {
        self.requests += 1;
    }
}
