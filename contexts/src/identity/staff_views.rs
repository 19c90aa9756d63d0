//! Staff views of a subject's data. Each one is audited before anything is read.

use super::staff::StaffAuth;
use super::Identity;
use crate::error::ServiceError;
use crate::identity::{from_ms, Ctx};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OpenedEvent {
    /// Global position; pass the last one as `after` for the next page.
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    /// The event with sealed fields opened, or `"[erased]"` where their key was destroyed.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Actor, request id, time, client IP (opened the same way).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub committed_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    pub events: Vec<OpenedEvent>,
    pub next_after: Option<i64>,
}

impl Identity<'_> {
    /// A subject's history across all of its streams, opened for staff.
    pub async fn subject_history(
        &self,
        staff: &StaffAuth,
        subject: Uuid,
        reason: Option<&str>,
        after: i64,
        limit: u32,
        ctx: &Ctx,
    ) -> Result<EventPage, ServiceError> {
        self.audit_read(
            staff.account_id,
            Some(subject),
            "subject.events",
            reason,
            ctx,
        )
        .await?;
        self.runner.catch_up().await?;
        let events = journey_projections::events::read_subject(
            &self.db,
            &subject.to_string(),
            after,
            i64::from(limit) + 1,
        )
        .await?;
        let more = events.len() > limit as usize;
        let mut out = Vec::with_capacity(events.len().min(limit as usize));
        for e in events.into_iter().take(limit as usize) {
            out.push(OpenedEvent {
                position: e.cursor.position,
                payload: self.vault.open_json(&e.payload).await?,
                metadata: self.vault.open_json(&e.metadata).await?,
                aggregate_type: e.aggregate_type,
                aggregate_id: e.aggregate_id,
                sequence: e.sequence,
                event_type: e.event_type,
                committed_at: from_ms(e.committed_at),
            });
        }
        Ok(EventPage {
            next_after: if more {
                out.last().map(|e| e.position)
            } else {
                None
            },
            events: out,
        })
    }
}
