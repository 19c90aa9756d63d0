//! An account's billing state, fed by Stripe: its customer, its subscription, the card
//! summary, suspension after a dispute, and the billing records the law makes us keep.
//! One aggregate per account (id = account id).
//!
//! Stripe delivers webhooks at least once and in any order. Each Stripe event is applied
//! in one command that also records its id (`StripeEventProcessed`), so a redelivery
//! changes nothing; subscription and card state only move forward in Stripe time.
//! Billing records carry no identity (no email, no name) and are sealed under the
//! subject's `billing` keys, which erasure keeps for the 7-year retention.

use crate::sealed::Sealed;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Stripe subscription statuses, as Stripe spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Incomplete,
    IncompleteExpired,
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
    Paused,
}

impl SubscriptionStatus {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Incomplete => "incomplete",
            SubscriptionStatus::IncompleteExpired => "incomplete_expired",
            SubscriptionStatus::Trialing => "trialing",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Canceled => "canceled",
            SubscriptionStatus::Unpaid => "unpaid",
            SubscriptionStatus::Paused => "paused",
        }
    }

    /// Whether the subscriber gets the plan's service while in this state.
    fn entitles(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Active | SubscriptionStatus::Trialing | SubscriptionStatus::PastDue
        )
    }
}

/// All we keep of a card: never the number, expiry, fingerprint or holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardSummary {
    pub brand: String,
    pub last4: String,
    pub country: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Payment,
    Invoice,
    Refund,
    Dispute,
}

/// The sealed body of a billing record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordDetail {
    pub amount_cents: i64,
    pub currency: String,
    /// What was bought: `pack:<id>` or `plan:<id>`, when known.
    pub item: Option<String>,
    pub credits: Option<u64>,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    /// Related Stripe objects (payment intent, charge, invoice, subscription).
    pub refs: Vec<String>,
    pub reason: Option<String>,
}

impl RecordDetail {
    /// A record of an amount and its related Stripe objects; the rest is filled in where known.
    pub fn of(amount_cents: i64, currency: &str, refs: Vec<String>) -> Self {
        RecordDetail {
            amount_cents,
            currency: currency.to_string(),
            item: None,
            credits: None,
            period_start: None,
            period_end: None,
            refs,
            reason: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionState {
    pub subscription_id: String,
    /// `None` when the Stripe price is not in our catalogue.
    pub plan: Option<String>,
    pub status: SubscriptionStatus,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
}

/// One effect of a Stripe event on this account, already translated from Stripe's objects.
#[derive(Debug, Clone, PartialEq)]
pub enum BillingChange {
    Subscription(SubscriptionState),
    SubscriptionEnded {
        subscription_id: String,
        paid_until: Option<DateTime<Utc>>,
    },
    Record {
        kind: RecordKind,
        stripe_id: String,
        detail: Sealed<RecordDetail>,
    },
    Card(Sealed<CardSummary>),
    Suspend {
        dispute_id: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum BillingCommand {
    LinkCustomer {
        customer_id: String,
        at: DateTime<Utc>,
    },
    ApplyStripeEvent {
        event_id: String,
        event_type: String,
        /// Stripe's `created` (seconds): orders state changes that arrive out of order.
        stripe_created: i64,
        /// Identifies the delivery that won, e.g. to send a receipt exactly once.
        request_id: String,
        changes: Vec<BillingChange>,
        at: DateTime<Utc>,
    },
    LiftSuspension {
        reason: Sealed<String>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BillingEvent {
    StripeCustomerLinked {
        customer_id: String,
        at: DateTime<Utc>,
    },
    SubscriptionChanged {
        state: SubscriptionState,
        stripe_created: i64,
        at: DateTime<Utc>,
    },
    SubscriptionEnded {
        subscription_id: String,
        paid_until: Option<DateTime<Utc>>,
        stripe_created: i64,
        at: DateTime<Utc>,
    },
    BillingRecorded {
        kind: RecordKind,
        stripe_id: String,
        detail: Sealed<RecordDetail>,
        /// The Stripe event that first reported it.
        stripe_event_id: String,
        at: DateTime<Utc>,
    },
    PaymentMethodUpdated {
        card: Sealed<CardSummary>,
        stripe_created: i64,
        at: DateTime<Utc>,
    },
    AccountSuspended {
        dispute_id: String,
        at: DateTime<Utc>,
    },
    SuspensionLifted {
        reason: Sealed<String>,
        at: DateTime<Utc>,
    },
    StripeEventProcessed {
        event_id: String,
        event_type: String,
        request_id: String,
        at: DateTime<Utc>,
    },
}

crate::domain_event!(BillingEvent, "1", {
    StripeCustomerLinked, SubscriptionChanged, SubscriptionEnded, BillingRecorded,
    PaymentMethodUpdated, AccountSuspended, SuspensionLifted, StripeEventProcessed
});

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BillingError {
    #[error("account already has Stripe customer {0}")]
    OtherCustomer(String),
    #[error("account is not suspended")]
    NotSuspended,
}

fn record_key(kind: RecordKind, stripe_id: &str) -> String {
    format!("{kind:?}:{stripe_id}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub state: SubscriptionState,
    pub ended: bool,
    /// Stripe time of the newest change applied.
    pub as_of: i64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct BillingAccount {
    pub customer_id: Option<String>,
    pub subscription: Option<Subscription>,
    pub card: Option<Sealed<CardSummary>>,
    card_as_of: i64,
    pub suspended_by: Option<String>,
    /// Stripe event id → the request that applied it.
    pub processed: HashMap<String, String>,
    /// Billing records by (kind, Stripe object id) → the Stripe event that reported it.
    recorded: HashMap<String, String>,
}

impl BillingAccount {
    /// The plan in force at `at`: a cancelled subscription keeps its plan to the end of the
    /// period already paid.
    pub fn plan_at(&self, at: DateTime<Utc>) -> Option<&str> {
        let sub = self.subscription.as_ref()?;
        let s = &sub.state;
        let paid_through = s.current_period_end.is_some_and(|end| at < end);
        let in_force = if sub.ended {
            paid_through
        } else {
            s.status.entitles() || (s.status == SubscriptionStatus::Canceled && paid_through)
        };
        if in_force {
            s.plan.as_deref()
        } else {
            None
        }
    }

    /// Whether this delivery (`request_id`) applied Stripe event `event_id` and that event
    /// is the one that recorded the billing record (`kind`, `stripe_id`): the moment to
    /// send its receipt, exactly once.
    pub fn first_recorded_by(
        &self,
        kind: RecordKind,
        stripe_id: &str,
        event_id: &str,
        request_id: &str,
    ) -> bool {
        self.processed.get(event_id).map(String::as_str) == Some(request_id)
            && self
                .recorded
                .get(&record_key(kind, stripe_id))
                .map(String::as_str)
                == Some(event_id)
    }

    fn takes(&self, subscription_id: &str, stripe_created: i64) -> bool {
        match &self.subscription {
            None => true,
            Some(s) if s.state.subscription_id != subscription_id => stripe_created >= s.as_of,
            Some(s) => !s.ended && stripe_created >= s.as_of,
        }
    }
}

impl Aggregate for BillingAccount {
    const TYPE: &'static str = "billing";
    type Command = BillingCommand;
    type Event = BillingEvent;
    type Error = BillingError;
    type Services = ();

    async fn handle(
        &mut self,
        command: BillingCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), BillingError> {
        match command {
            BillingCommand::LinkCustomer { customer_id, at } => match &self.customer_id {
                Some(c) if *c == customer_id => {}
                Some(c) => return Err(BillingError::OtherCustomer(c.clone())),
                None => {
                    sink.write(BillingEvent::StripeCustomerLinked { customer_id, at }, self)
                        .await
                }
            },
            BillingCommand::ApplyStripeEvent {
                event_id,
                event_type,
                stripe_created,
                request_id,
                changes,
                at,
            } => {
                if self.processed.contains_key(&event_id) {
                    return Ok(());
                }
                for change in changes {
                    let event = match change {
                        BillingChange::Subscription(state) => {
                            if !self.takes(&state.subscription_id, stripe_created) {
                                continue;
                            }
                            BillingEvent::SubscriptionChanged {
                                state,
                                stripe_created,
                                at,
                            }
                        }
                        BillingChange::SubscriptionEnded {
                            subscription_id,
                            paid_until,
                        } => {
                            let current = self.subscription.as_ref().is_some_and(|s| {
                                s.state.subscription_id == subscription_id && !s.ended
                            });
                            // An ending for a subscription we never saw still counts: the
                            // deletion may be the first event to arrive.
                            if !current && !self.takes(&subscription_id, stripe_created) {
                                continue;
                            }
                            BillingEvent::SubscriptionEnded {
                                subscription_id,
                                paid_until,
                                stripe_created,
                                at,
                            }
                        }
                        BillingChange::Record {
                            kind,
                            stripe_id,
                            detail,
                        } => {
                            if self.recorded.contains_key(&record_key(kind, &stripe_id)) {
                                continue;
                            }
                            BillingEvent::BillingRecorded {
                                kind,
                                stripe_id,
                                detail,
                                stripe_event_id: event_id.clone(),
                                at,
                            }
                        }
                        BillingChange::Card(card) => {
                            if stripe_created < self.card_as_of {
                                continue;
                            }
                            BillingEvent::PaymentMethodUpdated {
                                card,
                                stripe_created,
                                at,
                            }
                        }
                        BillingChange::Suspend { dispute_id } => {
                            if self.suspended_by.is_some() {
                                continue;
                            }
                            BillingEvent::AccountSuspended { dispute_id, at }
                        }
                    };
                    sink.write(event, self).await;
                }
                let done = BillingEvent::StripeEventProcessed {
                    event_id,
                    event_type,
                    request_id,
                    at,
                };
                sink.write(done, self).await;
            }
            BillingCommand::LiftSuspension { reason, at } => {
                if self.suspended_by.is_none() {
                    return Err(BillingError::NotSuspended);
                }
                sink.write(BillingEvent::SuspensionLifted { reason, at }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: BillingEvent) {
        match event {
            BillingEvent::StripeCustomerLinked { customer_id, .. } => {
                self.customer_id = Some(customer_id)
            }
            BillingEvent::SubscriptionChanged {
                state,
                stripe_created,
                ..
            } => {
                self.subscription = Some(Subscription {
                    state,
                    ended: false,
                    as_of: stripe_created,
                })
            }
            BillingEvent::SubscriptionEnded {
                subscription_id,
                paid_until,
                stripe_created,
                ..
            } => {
                let same = self
                    .subscription
                    .as_ref()
                    .is_some_and(|s| s.state.subscription_id == subscription_id);
                let plan = if same {
                    self.subscription
                        .as_ref()
                        .and_then(|s| s.state.plan.clone())
                } else {
                    None
                };
                self.subscription = Some(Subscription {
                    state: SubscriptionState {
                        subscription_id,
                        plan,
                        status: SubscriptionStatus::Canceled,
                        current_period_end: paid_until,
                        cancel_at_period_end: false,
                    },
                    ended: true,
                    as_of: stripe_created,
                });
            }
            BillingEvent::BillingRecorded {
                kind,
                stripe_id,
                stripe_event_id,
                ..
            } => {
                self.recorded
                    .insert(record_key(kind, &stripe_id), stripe_event_id);
            }
            BillingEvent::PaymentMethodUpdated {
                card,
                stripe_created,
                ..
            } => {
                self.card = Some(card);
                self.card_as_of = stripe_created;
            }
            BillingEvent::AccountSuspended { dispute_id, .. } => {
                self.suspended_by = Some(dispute_id)
            }
            BillingEvent::SuspensionLifted { .. } => self.suspended_by = None,
            BillingEvent::StripeEventProcessed {
                event_id,
                request_id,
                ..
            } => {
                self.processed.insert(event_id, request_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + s, 0).unwrap()
    }

    fn sub(status: SubscriptionStatus, cancel: bool) -> SubscriptionState {
        SubscriptionState {
            subscription_id: "sub_1".into(),
            plan: Some("growth".into()),
            status,
            current_period_end: Some(at(0) + Duration::days(30)),
            cancel_at_period_end: cancel,
        }
    }

    async fn apply(b: &mut BillingAccount, id: &str, created: i64, changes: Vec<BillingChange>) {
        let sink = EventSink::default();
        b.handle(
            BillingCommand::ApplyStripeEvent {
                event_id: id.into(),
                event_type: "t".into(),
                stripe_created: created,
                request_id: "r".into(),
                changes,
                at: at(created),
            },
            &(),
            &sink,
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn older_subscription_news_does_not_override_newer() {
        let mut b = BillingAccount::default();
        let updated = sub(SubscriptionStatus::Active, true);
        apply(
            &mut b,
            "evt_2",
            20,
            vec![BillingChange::Subscription(updated.clone())],
        )
        .await;
        apply(
            &mut b,
            "evt_1",
            10,
            vec![BillingChange::Subscription(sub(
                SubscriptionStatus::Active,
                false,
            ))],
        )
        .await;
        assert_eq!(b.subscription.as_ref().unwrap().state, updated);
        assert_eq!(b.plan_at(at(100)), Some("growth"));
    }

    #[tokio::test]
    async fn ended_subscription_keeps_plan_until_paid_period_ends() {
        let mut b = BillingAccount::default();
        apply(
            &mut b,
            "evt_1",
            10,
            vec![BillingChange::Subscription(sub(
                SubscriptionStatus::Active,
                true,
            ))],
        )
        .await;
        let end = at(0) + Duration::days(30);
        let ended = BillingChange::SubscriptionEnded {
            subscription_id: "sub_1".into(),
            paid_until: Some(end),
        };
        apply(&mut b, "evt_2", 20, vec![ended]).await;
        // A stale update after the deletion changes nothing.
        apply(
            &mut b,
            "evt_3",
            20,
            vec![BillingChange::Subscription(sub(
                SubscriptionStatus::Active,
                false,
            ))],
        )
        .await;
        assert_eq!(b.plan_at(end - Duration::seconds(1)), Some("growth"));
        assert_eq!(b.plan_at(end), None);
    }

    #[tokio::test]
    async fn a_stripe_event_applies_once() {
        let mut b = BillingAccount::default();
        let suspend = || {
            vec![BillingChange::Suspend {
                dispute_id: "dp_1".into(),
            }]
        };
        apply(&mut b, "evt_1", 10, suspend()).await;
        let sink = EventSink::default();
        b.handle(
            BillingCommand::ApplyStripeEvent {
                event_id: "evt_1".into(),
                event_type: "t".into(),
                stripe_created: 10,
                request_id: "other".into(),
                changes: suspend(),
                at: at(10),
            },
            &(),
            &sink,
        )
        .await
        .unwrap();
        assert!(
            sink.collect().await.is_empty(),
            "a redelivery writes nothing"
        );
        assert_eq!(b.processed.get("evt_1").map(String::as_str), Some("r"));
    }
}
