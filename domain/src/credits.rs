//! The credit ledger: one aggregate per account (id = account id). Credits arrive in lots
//! (grants), are reserved for a task, then captured when it finishes or released when it
//! fails. Every invariant lives here so that it holds on both backends and under any retry:
//! the optimistic lock on the stream serializes writers, and `handle` re-validates.
//!
//! - The available balance never goes negative: a reservation needs that many unexpired,
//!   unreserved credits.
//! - A grant with a known idempotency key is applied once.
//! - A reservation is captured or released exactly once; repeating the same settlement is a
//!   no-op, the opposite one is refused.
//! - Credits nearest to expiry are spent first; credits without expiry last.
//! - Expired credits stop counting at their expiry instant, whether or not the
//!   `CreditsExpired` event has been written yet (it is written by the next command).

use crate::sealed::Sealed;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Largest single grant or reservation: keeps sums far from overflow.
pub const MAX_AMOUNT: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantSource {
    Purchase,
    SubscriptionPeriod,
    Admin,
    Promotion,
}

impl GrantSource {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantSource::Purchase => "purchase",
            GrantSource::SubscriptionPeriod => "subscription_period",
            GrantSource::Admin => "admin",
            GrantSource::Promotion => "promotion",
        }
    }
}

/// Part of a reservation drawn from one lot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub grant_id: Uuid,
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CreditCommand {
    Grant {
        grant_id: Uuid,
        source: GrantSource,
        amount: u64,
        expires_at: Option<DateTime<Utc>>,
        /// Applied once per key (a Stripe object id, a subscription period, a CLI request).
        idempotency_key: Option<String>,
        /// The payment this grant came from, so a refund can claw it back.
        purchase_ref: Option<String>,
        /// Staff's reason for an admin grant (free text, so sealed).
        note: Option<Sealed<String>>,
        at: DateTime<Utc>,
    },
    Reserve {
        task_id: Uuid,
        amount: u64,
        /// Most reservations the account may hold open at once (tasks in flight).
        max_open: Option<u32>,
        at: DateTime<Utc>,
    },
    Capture {
        task_id: Uuid,
        at: DateTime<Utc>,
    },
    Release {
        task_id: Uuid,
        at: DateTime<Utc>,
    },
    /// A purchase was refunded: its unused credits are taken back, now or when it arrives.
    ClawBack {
        purchase_ref: String,
        at: DateTime<Utc>,
    },
    /// Writes `CreditsExpired` for every lot past its expiry.
    ExpireDue {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CreditEvent {
    CreditsGranted {
        grant_id: Uuid,
        source: GrantSource,
        amount: u64,
        expires_at: Option<DateTime<Utc>>,
        idempotency_key: Option<String>,
        purchase_ref: Option<String>,
        note: Option<Sealed<String>>,
        at: DateTime<Utc>,
    },
    CreditsReserved {
        task_id: Uuid,
        amount: u64,
        allocations: Vec<Allocation>,
        at: DateTime<Utc>,
    },
    ReservationCaptured {
        task_id: Uuid,
        amount: u64,
        at: DateTime<Utc>,
    },
    /// The reserved credits go back to their lots, except to lots closed meanwhile
    /// (expired or clawed back): `returned` is what came back.
    ReservationReleased {
        task_id: Uuid,
        amount: u64,
        returned: u64,
        at: DateTime<Utc>,
    },
    CreditsExpired {
        grant_id: Uuid,
        amount: u64,
        expired_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    PurchaseRefunded {
        purchase_ref: String,
        at: DateTime<Utc>,
    },
    CreditsClawedBack {
        grant_id: Uuid,
        amount: u64,
        purchase_ref: String,
        at: DateTime<Utc>,
    },
}

crate::domain_event!(CreditEvent, "1", {
    CreditsGranted, CreditsReserved, ReservationCaptured, ReservationReleased,
    CreditsExpired, PurchaseRefunded, CreditsClawedBack
});

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CreditError {
    #[error("amount must be between 1 and {MAX_AMOUNT}")]
    InvalidAmount,
    #[error("insufficient credits: {needed} needed, {available} available")]
    InsufficientCredits { needed: u64, available: u64 },
    #[error("task {0} already holds a different reservation")]
    ReservationMismatch(Uuid),
    #[error("no reservation for task {0}")]
    NoReservation(Uuid),
    #[error("the reservation for task {0} was already {1}")]
    AlreadySettled(Uuid, &'static str),
    #[error("grant id already used")]
    DuplicateGrant,
    #[error("too many tasks in flight: at most {0} at once")]
    TooManyInFlight(u32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lot {
    pub grant_id: Uuid,
    pub source: GrantSource,
    pub granted_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Unreserved credits left in the lot.
    pub remaining: u64,
    pub purchase_ref: Option<String>,
    /// Expired or clawed back: nothing returns to it.
    pub closed: bool,
}

impl Lot {
    fn live_at(&self, at: DateTime<Utc>) -> bool {
        !self.closed && self.expires_at.is_none_or(|e| e > at)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settlement {
    Open,
    Captured,
    Released,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub amount: u64,
    pub allocations: Vec<Allocation>,
    pub state: Settlement,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct CreditLedger {
    pub lots: BTreeMap<Uuid, Lot>,
    pub grant_keys: HashSet<String>,
    pub reservations: HashMap<Uuid, Reservation>,
    pub refunded_refs: HashSet<String>,
    /// Reservations neither captured nor released: the account's tasks in flight.
    pub open_reservations: u32,
}

impl CreditLedger {
    /// Credits that can be reserved at `at`.
    pub fn available(&self, at: DateTime<Utc>) -> u64 {
        self.lots
            .values()
            .filter(|l| l.live_at(at))
            .map(|l| l.remaining)
            .sum()
    }

    /// Credits held by open reservations.
    pub fn reserved(&self) -> u64 {
        self.reservations
            .values()
            .filter(|r| r.state == Settlement::Open)
            .map(|r| r.amount)
            .sum()
    }

    /// Live lots in spending order: soonest expiry first, never-expiring last, then oldest.
    fn spending_order(&self, at: DateTime<Utc>) -> Vec<&Lot> {
        let mut lots: Vec<&Lot> = self
            .lots
            .values()
            .filter(|l| l.live_at(at) && l.remaining > 0)
            .collect();
        lots.sort_by_key(|l| {
            (
                l.expires_at.is_none(),
                l.expires_at,
                l.granted_at,
                l.grant_id,
            )
        });
        lots
    }

    async fn expire_due(&mut self, at: DateTime<Utc>, sink: &EventSink<Self>) {
        let due: Vec<(Uuid, u64, DateTime<Utc>)> = self
            .lots
            .values()
            .filter_map(|l| match l.expires_at {
                Some(e) if !l.closed && e <= at => Some((l.grant_id, l.remaining, e)),
                _ => None,
            })
            .collect();
        for (grant_id, amount, expired_at) in due {
            let event = CreditEvent::CreditsExpired {
                grant_id,
                amount,
                expired_at,
                at,
            };
            sink.write(event, self).await;
        }
    }

    async fn claw_back(&mut self, purchase_ref: &str, at: DateTime<Utc>, sink: &EventSink<Self>) {
        let open: Vec<(Uuid, u64)> = self
            .lots
            .values()
            .filter(|l| !l.closed && l.purchase_ref.as_deref() == Some(purchase_ref))
            .map(|l| (l.grant_id, l.remaining))
            .collect();
        for (grant_id, amount) in open {
            let event = CreditEvent::CreditsClawedBack {
                grant_id,
                amount,
                purchase_ref: purchase_ref.to_string(),
                at,
            };
            sink.write(event, self).await;
        }
    }
}

fn check_amount(amount: u64) -> Result<(), CreditError> {
    if amount == 0 || amount > MAX_AMOUNT {
        return Err(CreditError::InvalidAmount);
    }
    Ok(())
}

impl Aggregate for CreditLedger {
    const TYPE: &'static str = "credit_ledger";
    type Command = CreditCommand;
    type Event = CreditEvent;
    type Error = CreditError;
    type Services = ();

    async fn handle(
        &mut self,
        command: CreditCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CreditError> {
        match command {
            CreditCommand::Grant {
                grant_id,
                source,
                amount,
                expires_at,
                idempotency_key,
                purchase_ref,
                note,
                at,
            } => {
                check_amount(amount)?;
                if let Some(k) = &idempotency_key {
                    if self.grant_keys.contains(k) {
                        return Ok(());
                    }
                }
                if self.lots.contains_key(&grant_id) {
                    return Err(CreditError::DuplicateGrant);
                }
                self.expire_due(at, sink).await;
                let refunded = purchase_ref
                    .as_ref()
                    .is_some_and(|r| self.refunded_refs.contains(r));
                let event = CreditEvent::CreditsGranted {
                    grant_id,
                    source,
                    amount,
                    expires_at,
                    idempotency_key,
                    purchase_ref: purchase_ref.clone(),
                    note,
                    at,
                };
                sink.write(event, self).await;
                // The refund overtook the purchase: take the credits straight back.
                if let (true, Some(r)) = (refunded, purchase_ref) {
                    self.claw_back(&r, at, sink).await;
                }
            }
            CreditCommand::Reserve {
                task_id,
                amount,
                max_open,
                at,
            } => {
                check_amount(amount)?;
                if let Some(r) = self.reservations.get(&task_id) {
                    // A retried reserve for the same task is a no-op; anything else is a bug.
                    return match (r.state, r.amount == amount) {
                        (Settlement::Open, true) => Ok(()),
                        (Settlement::Open, false) => Err(CreditError::ReservationMismatch(task_id)),
                        (Settlement::Captured, _) => {
                            Err(CreditError::AlreadySettled(task_id, "captured"))
                        }
                        (Settlement::Released, _) => {
                            Err(CreditError::AlreadySettled(task_id, "released"))
                        }
                    };
                }
                if let Some(limit) = max_open.filter(|l| self.open_reservations >= *l) {
                    return Err(CreditError::TooManyInFlight(limit));
                }
                let available = self.available(at);
                if available < amount {
                    return Err(CreditError::InsufficientCredits {
                        needed: amount,
                        available,
                    });
                }
                self.expire_due(at, sink).await;
                let mut left = amount;
                let mut allocations = Vec::new();
                for lot in self.spending_order(at) {
                    let take = lot.remaining.min(left);
                    allocations.push(Allocation {
                        grant_id: lot.grant_id,
                        amount: take,
                    });
                    left -= take;
                    if left == 0 {
                        break;
                    }
                }
                let event = CreditEvent::CreditsReserved {
                    task_id,
                    amount,
                    allocations,
                    at,
                };
                sink.write(event, self).await;
            }
            CreditCommand::Capture { task_id, at } => {
                let r = self
                    .reservations
                    .get(&task_id)
                    .ok_or(CreditError::NoReservation(task_id))?;
                match r.state {
                    Settlement::Captured => return Ok(()),
                    Settlement::Released => {
                        return Err(CreditError::AlreadySettled(task_id, "released"))
                    }
                    Settlement::Open => {}
                }
                let amount = r.amount;
                let event = CreditEvent::ReservationCaptured {
                    task_id,
                    amount,
                    at,
                };
                sink.write(event, self).await;
            }
            CreditCommand::Release { task_id, at } => {
                let r = self
                    .reservations
                    .get(&task_id)
                    .ok_or(CreditError::NoReservation(task_id))?;
                match r.state {
                    Settlement::Released => return Ok(()),
                    Settlement::Captured => {
                        return Err(CreditError::AlreadySettled(task_id, "captured"))
                    }
                    Settlement::Open => {}
                }
                let amount = r.amount;
                let returned = r
                    .allocations
                    .iter()
                    .filter(|a| self.lots.get(&a.grant_id).is_some_and(|l| !l.closed))
                    .map(|a| a.amount)
                    .sum();
                let event = CreditEvent::ReservationReleased {
                    task_id,
                    amount,
                    returned,
                    at,
                };
                sink.write(event, self).await;
                // Credits returned to a lot that expired meanwhile expire now.
                self.expire_due(at, sink).await;
            }
            CreditCommand::ClawBack { purchase_ref, at } => {
                if self.refunded_refs.contains(&purchase_ref) {
                    return Ok(());
                }
                let event = CreditEvent::PurchaseRefunded {
                    purchase_ref: purchase_ref.clone(),
                    at,
                };
                sink.write(event, self).await;
                self.claw_back(&purchase_ref, at, sink).await;
            }
            CreditCommand::ExpireDue { at } => self.expire_due(at, sink).await,
        }
        Ok(())
    }

    fn apply(&mut self, event: CreditEvent) {
        match event {
            CreditEvent::CreditsGranted {
                grant_id,
                source,
                amount,
                expires_at,
                idempotency_key,
                purchase_ref,
                at,
                ..
            } => {
                if let Some(k) = idempotency_key {
                    self.grant_keys.insert(k);
                }
                self.lots.insert(
                    grant_id,
                    Lot {
                        grant_id,
                        source,
                        granted_at: at,
                        expires_at,
                        remaining: amount,
                        purchase_ref,
                        closed: false,
                    },
                );
            }
            CreditEvent::CreditsReserved {
                task_id,
                amount,
                allocations,
                ..
            } => {
                for a in &allocations {
                    if let Some(lot) = self.lots.get_mut(&a.grant_id) {
                        lot.remaining = lot.remaining.saturating_sub(a.amount);
                    }
                }
                self.reservations.insert(
                    task_id,
                    Reservation {
                        amount,
                        allocations,
                        state: Settlement::Open,
                    },
                );
                self.open_reservations += 1;
            }
            CreditEvent::ReservationCaptured { task_id, .. } => {
                if let Some(r) = self.reservations.get_mut(&task_id) {
                    r.state = Settlement::Captured;
                    self.open_reservations = self.open_reservations.saturating_sub(1);
                }
            }
            CreditEvent::ReservationReleased { task_id, .. } => {
                if let Some(r) = self.reservations.get_mut(&task_id) {
                    r.state = Settlement::Released;
                    self.open_reservations = self.open_reservations.saturating_sub(1);
                    for a in &r.allocations {
                        if let Some(lot) = self.lots.get_mut(&a.grant_id) {
                            if !lot.closed {
                                lot.remaining += a.amount;
                            }
                        }
                    }
                }
            }
            CreditEvent::CreditsExpired { grant_id, .. }
            | CreditEvent::CreditsClawedBack { grant_id, .. } => {
                if let Some(lot) = self.lots.get_mut(&grant_id) {
                    lot.remaining = 0;
                    lot.closed = true;
                }
            }
            CreditEvent::PurchaseRefunded { purchase_ref, .. } => {
                self.refunded_refs.insert(purchase_ref);
            }
        }
    }
}

impl CreditEvent {
    /// The change to the available balance this event records (reservations count as spent).
    pub fn delta(&self) -> i64 {
        match self {
            CreditEvent::CreditsGranted { amount, .. } => *amount as i64,
            CreditEvent::ReservationReleased { returned, .. } => *returned as i64,
            CreditEvent::CreditsReserved { amount, .. }
            | CreditEvent::CreditsExpired { amount, .. }
            | CreditEvent::CreditsClawedBack { amount, .. } => -(*amount as i64),
            CreditEvent::ReservationCaptured { .. } | CreditEvent::PurchaseRefunded { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use cqrs_es::test::TestFramework;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn granted(n: u128, amount: u64, expires_at: Option<DateTime<Utc>>) -> CreditEvent {
        CreditEvent::CreditsGranted {
            grant_id: Uuid::from_u128(n),
            source: GrantSource::Purchase,
            amount,
            expires_at,
            idempotency_key: Some(format!("k{n}")),
            purchase_ref: Some(format!("pi_{n}")),
            note: None,
            at: t0(),
        }
    }

    fn task(n: u128) -> Uuid {
        Uuid::from_u128(1000 + n)
    }

    #[test]
    fn reservation_needs_enough_unexpired_credits() {
        TestFramework::<CreditLedger>::with(())
            .given(vec![granted(1, 5, None)])
            .when(CreditCommand::Reserve {
                task_id: task(1),
                amount: 6,
                max_open: None,
                at: t0(),
            })
            .then_expect_error(CreditError::InsufficientCredits {
                needed: 6,
                available: 5,
            });
    }

    #[test]
    fn nearest_expiry_is_spent_first() {
        let soon = t0() + Duration::days(3);
        let later = t0() + Duration::days(30);
        TestFramework::<CreditLedger>::with(())
            .given(vec![
                granted(1, 10, None),
                granted(2, 4, Some(later)),
                granted(3, 3, Some(soon)),
            ])
            .when(CreditCommand::Reserve {
                task_id: task(1),
                amount: 9,
                max_open: None,
                at: t0(),
            })
            .then_expect_events(vec![CreditEvent::CreditsReserved {
                task_id: task(1),
                amount: 9,
                allocations: vec![
                    Allocation {
                        grant_id: Uuid::from_u128(3),
                        amount: 3,
                    },
                    Allocation {
                        grant_id: Uuid::from_u128(2),
                        amount: 4,
                    },
                    Allocation {
                        grant_id: Uuid::from_u128(1),
                        amount: 2,
                    },
                ],
                at: t0(),
            }]);
    }

    #[test]
    fn expired_credits_stop_counting_at_expiry_and_are_written_off() {
        let exp = t0() + Duration::days(1);
        let after = exp + Duration::seconds(1);
        TestFramework::<CreditLedger>::with(())
            .given(vec![granted(1, 5, Some(exp)), granted(2, 2, None)])
            .when(CreditCommand::Reserve {
                task_id: task(1),
                amount: 3,
                max_open: None,
                at: after,
            })
            .then_expect_error(CreditError::InsufficientCredits {
                needed: 3,
                available: 2,
            });
        TestFramework::<CreditLedger>::with(())
            .given(vec![granted(1, 5, Some(exp)), granted(2, 2, None)])
            .when(CreditCommand::Reserve {
                task_id: task(1),
                amount: 2,
                max_open: None,
                at: after,
            })
            .then_expect_events(vec![
                CreditEvent::CreditsExpired {
                    grant_id: Uuid::from_u128(1),
                    amount: 5,
                    expired_at: exp,
                    at: after,
                },
                CreditEvent::CreditsReserved {
                    task_id: task(1),
                    amount: 2,
                    allocations: vec![Allocation {
                        grant_id: Uuid::from_u128(2),
                        amount: 2,
                    }],
                    at: after,
                },
            ]);
    }

    #[test]
    fn grant_with_known_key_is_applied_once() {
        TestFramework::<CreditLedger>::with(())
            .given(vec![granted(1, 5, None)])
            .when(CreditCommand::Grant {
                grant_id: Uuid::from_u128(9),
                source: GrantSource::Purchase,
                amount: 5,
                expires_at: None,
                idempotency_key: Some("k1".into()),
                purchase_ref: None,
                note: None,
                at: t0(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn settlement_happens_once() {
        let reserved = CreditEvent::CreditsReserved {
            task_id: task(1),
            amount: 2,
            allocations: vec![Allocation {
                grant_id: Uuid::from_u128(1),
                amount: 2,
            }],
            at: t0(),
        };
        let captured = CreditEvent::ReservationCaptured {
            task_id: task(1),
            amount: 2,
            at: t0(),
        };
        TestFramework::<CreditLedger>::with(())
            .given(vec![
                granted(1, 5, None),
                reserved.clone(),
                captured.clone(),
            ])
            .when(CreditCommand::Capture {
                task_id: task(1),
                at: t0(),
            })
            .then_expect_events(vec![]);
        TestFramework::<CreditLedger>::with(())
            .given(vec![granted(1, 5, None), reserved.clone(), captured])
            .when(CreditCommand::Release {
                task_id: task(1),
                at: t0(),
            })
            .then_expect_error(CreditError::AlreadySettled(task(1), "captured"));
        TestFramework::<CreditLedger>::with(())
            .given(vec![granted(1, 5, None), reserved.clone()])
            .when(CreditCommand::Reserve {
                task_id: task(1),
                amount: 2,
                max_open: None,
                at: t0(),
            })
            .then_expect_events(vec![]);
        TestFramework::<CreditLedger>::with(())
            .given(vec![granted(1, 5, None)])
            .when(CreditCommand::Capture {
                task_id: task(1),
                at: t0(),
            })
            .then_expect_error(CreditError::NoReservation(task(1)));
    }

    #[test]
    fn release_returns_credits_but_not_to_a_clawed_back_lot() {
        let mut ledger = CreditLedger::default();
        ledger.apply(granted(1, 5, None));
        ledger.apply(CreditEvent::CreditsReserved {
            task_id: task(1),
            amount: 3,
            allocations: vec![Allocation {
                grant_id: Uuid::from_u128(1),
                amount: 3,
            }],
            at: t0(),
        });
        assert_eq!(ledger.available(t0()), 2);
        let mut refunded = ledger.clone();
        ledger.apply(CreditEvent::ReservationReleased {
            task_id: task(1),
            amount: 3,
            returned: 3,
            at: t0(),
        });
        assert_eq!(ledger.available(t0()), 5);
        refunded.apply(CreditEvent::CreditsClawedBack {
            grant_id: Uuid::from_u128(1),
            amount: 2,
            purchase_ref: "pi_1".into(),
            at: t0(),
        });
        refunded.apply(CreditEvent::ReservationReleased {
            task_id: task(1),
            amount: 3,
            returned: 0,
            at: t0(),
        });
        assert_eq!(refunded.available(t0()), 0);
    }

    #[test]
    fn refund_before_purchase_claws_back_on_arrival() {
        let refunded = CreditEvent::PurchaseRefunded {
            purchase_ref: "pi_1".into(),
            at: t0(),
        };
        let grant = granted(1, 5, None);
        TestFramework::<CreditLedger>::with(())
            .given(vec![refunded])
            .when(CreditCommand::Grant {
                grant_id: Uuid::from_u128(1),
                source: GrantSource::Purchase,
                amount: 5,
                expires_at: None,
                idempotency_key: Some("k1".into()),
                purchase_ref: Some("pi_1".into()),
                note: None,
                at: t0(),
            })
            .then_expect_events(vec![
                grant,
                CreditEvent::CreditsClawedBack {
                    grant_id: Uuid::from_u128(1),
                    amount: 5,
                    purchase_ref: "pi_1".into(),
                    at: t0(),
                },
            ]);
    }
}
