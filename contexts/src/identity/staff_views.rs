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

/// Narrows a subject's history (the console's timeline filters); the default is all of it.
#[derive(Debug, Default, Clone)]
pub struct HistoryFilter {
    /// One aggregate type (`account`, `session`, `dsr`, …): the event's category.
    pub category: Option<String>,
    /// Committed at or after.
    pub from: Option<DateTime<Utc>>,
    /// Committed at or before.
    pub to: Option<DateTime<Utc>>,
}

impl HistoryFilter {
    fn is_all(&self) -> bool {
        self.category.is_none() && self.from.is_none() && self.to.is_none()
    }
}

/// A page of a subject's history and the categories (aggregate types) the subject has
/// streams of, to filter by.
#[derive(Debug)]
pub struct SubjectTimeline {
    pub page: EventPage,
    pub categories: Vec<String>,
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
        Ok(self
            .subject_timeline(
                staff,
                subject,
                reason,
                &HistoryFilter::default(),
                after,
                limit,
                ctx,
            )
            .await?
            .page)
    }

    /// `subject_history` with filters (the console's timeline): audited the same way
    /// (`subject.events`) before anything is read.
    #[allow(clippy::too_many_arguments)]
    pub async fn subject_timeline(
        &self,
        staff: &StaffAuth,
        subject: Uuid,
        reason: Option<&str>,
        filter: &HistoryFilter,
        after: i64,
        limit: u32,
        ctx: &Ctx,
    ) -> Result<SubjectTimeline, ServiceError> {
        if let (Some(f), Some(t)) = (filter.from, filter.to) {
            if f > t {
                return Err(ServiceError::bad("the start date is after the end date"));
            }
        }
        self.audit_read(
            staff.account_id,
            Some(subject),
            "subject.events",
            reason,
            ctx,
        )
        .await?;
        self.runner.catch_up().await?;
        let subject_id = subject.to_string();
        let events = if filter.is_all() {
            journey_projections::events::read_subject(
                &self.db,
                &subject_id,
                after,
                i64::from(limit) + 1,
            )
            .await?
        } else {
            journey_projections::events::read_subject_filtered(
                &self.db,
                &subject_id,
                filter.category.as_deref().unwrap_or_default(),
                filter.from.map_or(i64::MIN, |t| t.timestamp_millis()),
                filter.to.map_or(i64::MAX, |t| t.timestamp_millis()),
                after,
                i64::from(limit) + 1,
            )
            .await?
        };
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
        let categories: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT aggregate_type FROM subject_streams WHERE subject = $1
             ORDER BY aggregate_type",
        )
        .bind(&subject_id)
        .fetch_all(&self.db.any)
        .await?;
        Ok(SubjectTimeline {
            page: EventPage {
                next_after: if more {
                    out.last().map(|e| e.position)
                } else {
                    None
                },
                events: out,
            },
            categories: categories.into_iter().map(|(c,)| c).collect(),
        })
    }
}
