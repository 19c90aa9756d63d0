//! Stripe events we verified but could not use (aggregate `stripe_event`, id = the Stripe
//! event id), kept so that staff see them: a type we handle whose payload lacks a field we
//! need, or that no account of ours matches. The record holds the event type, our reason
//! and the names of the missing fields, never a value from the payload, so it is about no
//! one. It is written once, however often Stripe redelivers the event.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IgnoredStripeEvent {
    /// Stripe's event type, e.g. `invoice.paid`.
    pub event_type: String,
    /// Why it could not be used, in our words.
    pub reason: String,
    /// The payload paths we needed and did not find (alternatives joined by " or ").
    pub missing: Vec<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StripeEventLogCommand {
    RecordIgnored(IgnoredStripeEvent),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StripeEventLogEvent {
    StripeEventIgnored(IgnoredStripeEvent),
}

crate::domain_event!(StripeEventLogEvent, "1", { StripeEventIgnored });

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StripeEventLogError {}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StripeEventLog {
    pub ignored: Option<IgnoredStripeEvent>,
}

impl Aggregate for StripeEventLog {
    const TYPE: &'static str = "stripe_event";
    type Command = StripeEventLogCommand;
    type Event = StripeEventLogEvent;
    type Error = StripeEventLogError;
    type Services = ();

    async fn handle(
        &mut self,
        command: StripeEventLogCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), StripeEventLogError> {
        match command {
            // A redelivery finds it recorded and writes nothing.
            StripeEventLogCommand::RecordIgnored(_) if self.ignored.is_some() => {}
            StripeEventLogCommand::RecordIgnored(r) => {
                sink.write(StripeEventLogEvent::StripeEventIgnored(r), self)
                    .await
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: StripeEventLogEvent) {
        match event {
            StripeEventLogEvent::StripeEventIgnored(r) => self.ignored = Some(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ignored_event_is_recorded_once() {
        let mut log = StripeEventLog::default();
        let record = |reason: &str| {
            StripeEventLogCommand::RecordIgnored(IgnoredStripeEvent {
                event_type: "invoice.paid".into(),
                reason: reason.into(),
                missing: vec!["data.object.customer".into()],
                at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            })
        };
        let sink = EventSink::default();
        log.handle(record("first"), &(), &sink).await.unwrap();
        assert_eq!(sink.collect().await.len(), 1);
        let sink = EventSink::default();
        log.handle(record("again"), &(), &sink).await.unwrap();
        assert!(
            sink.collect().await.is_empty(),
            "a redelivery writes nothing"
        );
        assert_eq!(log.ignored.unwrap().reason, "first");
    }
}
