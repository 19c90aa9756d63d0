//! Verifies Stripe webhooks with async-stripe (HMAC-SHA256 over `t.payload`, any of the
//! header's `v1` signatures, 300 s tolerance against our clock) and reduces the typed
//! Stripe objects to the few facts billing acts on. Everything else in the payload —
//! names, addresses, emails, card expiry and fingerprint — is dropped here and never
//! leaves this module.

use journey_domain::billing::CardSummary;
use std::collections::HashMap;
use stripe_shared::{CheckoutSessionMode, CheckoutSessionPaymentStatus};
use stripe_types::Expandable;
use stripe_webhook::{EventObject, Webhook, WebhookError};

/// Why a delivery was refused; all are answered 400 and change nothing.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Rejection {
    #[error("missing Stripe-Signature header")]
    MissingSignature,
    #[error("Stripe-Signature does not match the payload")]
    BadSignature,
    #[error("Stripe-Signature timestamp is outside the 300 s tolerance")]
    Stale,
    #[error("malformed Stripe-Signature header")]
    BadHeader,
    #[error("payload is not a Stripe event this version can read: {0}")]
    Unreadable(String),
    #[error("webhook secret is not configured")]
    NotConfigured,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub id: String,
    pub event_type: String,
    pub created: i64,
    pub notice: Notice,
}

/// The facts of one Stripe event that billing uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A paid Checkout Session (`checkout.session.completed` with payment, or
    /// `checkout.session.async_payment_succeeded`).
    CheckoutPaid {
        session_id: String,
        client_reference_id: Option<String>,
        customer: Option<String>,
        subscription_mode: bool,
        payment_intent: Option<String>,
        subscription: Option<String>,
        amount_total: i64,
        currency: String,
        metadata: HashMap<String, String>,
    },
    InvoicePaid {
        invoice_id: String,
        customer: Option<String>,
        subscription: Option<String>,
        price_id: Option<String>,
        period_start: i64,
        period_end: i64,
        amount_paid: i64,
        currency: String,
        payment_intents: Vec<String>,
    },
    Subscription {
        subscription_id: String,
        customer: String,
        status: String,
        price_id: Option<String>,
        current_period_end: Option<i64>,
        cancel_at_period_end: bool,
        metadata: HashMap<String, String>,
    },
    SubscriptionDeleted {
        subscription_id: String,
        customer: String,
        paid_until: Option<i64>,
    },
    ChargeRefunded {
        charge_id: String,
        customer: Option<String>,
        payment_intent: Option<String>,
        amount_refunded: i64,
        currency: String,
    },
    DisputeCreated {
        dispute_id: String,
        charge_id: String,
        payment_intent: Option<String>,
        amount: i64,
        currency: String,
        reason: String,
    },
    PaymentMethod {
        customer: Option<String>,
        card: Option<CardSummary>,
    },
    /// Acknowledged and ignored (unknown types, unpaid checkouts, ...).
    Ignored,
}

fn id_of<T: stripe_types::Object>(e: &Expandable<T>) -> String
where
    T::Id: AsRef<str>,
{
    e.id().as_ref().to_string()
}

/// Verifies the signature (against any configured secret) and reads the event.
pub fn verify(
    payload: &str,
    signature: Option<&str>,
    secrets: &[String],
    now: i64,
) -> Result<Verified, Rejection> {
    let sig = signature.ok_or(Rejection::MissingSignature)?;
    if secrets.is_empty() {
        return Err(Rejection::NotConfigured);
    }
    let mut last = Rejection::BadSignature;
    for secret in secrets {
        match Webhook::construct_event_with_timestamp(payload, sig, secret, now) {
            Ok(event) => {
                return Ok(Verified {
                    id: event.id.as_str().to_string(),
                    event_type: event.type_.as_str().to_string(),
                    created: event.created,
                    notice: notice(event.data.object),
                })
            }
            Err(WebhookError::BadSignature) | Err(WebhookError::BadKey) => {
                last = Rejection::BadSignature
            }
            Err(WebhookError::BadTimestamp(_)) => return Err(Rejection::Stale),
            Err(WebhookError::BadHeader(_)) => return Err(Rejection::BadHeader),
            Err(WebhookError::BadParse(m)) => return Err(Rejection::Unreadable(m)),
        }
    }
    Err(last)
}

fn notice(object: EventObject) -> Notice {
    match object {
        EventObject::CheckoutSessionCompleted(s)
        | EventObject::CheckoutSessionAsyncPaymentSucceeded(s) => {
            if !matches!(
                s.payment_status,
                CheckoutSessionPaymentStatus::Paid
                    | CheckoutSessionPaymentStatus::NoPaymentRequired
            ) {
                // Delayed payment methods: wait for `async_payment_succeeded`.
                return Notice::Ignored;
            }
            Notice::CheckoutPaid {
                session_id: s.id.as_str().to_string(),
                client_reference_id: s.client_reference_id.clone(),
                customer: s.customer.as_ref().map(id_of),
                subscription_mode: s.mode == CheckoutSessionMode::Subscription,
                payment_intent: s.payment_intent.as_ref().map(id_of),
                subscription: s.subscription.as_ref().map(id_of),
                amount_total: s.amount_total.unwrap_or(0),
                currency: s.currency.map(|c| c.to_string()).unwrap_or_default(),
                metadata: s.metadata.clone().unwrap_or_default(),
            }
        }
        EventObject::InvoicePaid(inv) => {
            let line = inv.lines.data.first();
            let price_id = line
                .and_then(|l| l.pricing.as_ref())
                .and_then(|p| p.price_details.as_ref())
                .map(|d| id_of(&d.price));
            let subscription = inv
                .parent
                .as_ref()
                .and_then(|p| p.subscription_details.as_ref())
                .map(|d| id_of(&d.subscription))
                .or_else(|| inv.subscription.as_ref().map(id_of))
                .or_else(|| line.and_then(|l| l.subscription.as_ref()).map(id_of));
            let (period_start, period_end) = line
                .map(|l| (l.period.start, l.period.end))
                .unwrap_or((inv.period_start, inv.period_end));
            let payment_intents = inv
                .payments
                .as_ref()
                .map(|p| {
                    p.data
                        .iter()
                        .filter_map(|x| x.payment.payment_intent.as_ref().map(id_of))
                        .collect()
                })
                .unwrap_or_default();
            Notice::InvoicePaid {
                invoice_id: inv
                    .id
                    .as_ref()
                    .map(|i| i.as_str().to_string())
                    .unwrap_or_default(),
                customer: inv.customer.as_ref().map(id_of),
                subscription,
                price_id,
                period_start,
                period_end,
                amount_paid: inv.amount_paid,
                currency: inv.currency.to_string(),
                payment_intents,
            }
        }
        EventObject::CustomerSubscriptionCreated(s)
        | EventObject::CustomerSubscriptionUpdated(s)
        | EventObject::CustomerSubscriptionPaused(s)
        | EventObject::CustomerSubscriptionResumed(s) => {
            let item = s.items.data.first();
            Notice::Subscription {
                subscription_id: s.id.as_str().to_string(),
                customer: id_of(&s.customer),
                status: s.status.as_str().to_string(),
                price_id: item.map(|i| i.price.id.as_str().to_string()),
                current_period_end: item.map(|i| i.current_period_end),
                cancel_at_period_end: s.cancel_at_period_end,
                metadata: s.metadata.clone(),
            }
        }
        EventObject::CustomerSubscriptionDeleted(s) => Notice::SubscriptionDeleted {
            subscription_id: s.id.as_str().to_string(),
            customer: id_of(&s.customer),
            paid_until: s.items.data.first().map(|i| i.current_period_end),
        },
        EventObject::ChargeRefunded(c) => Notice::ChargeRefunded {
            charge_id: c.id.as_str().to_string(),
            customer: c.customer.as_ref().map(id_of),
            payment_intent: c.payment_intent.as_ref().map(id_of),
            amount_refunded: c.amount_refunded,
            currency: c.currency.to_string(),
        },
        EventObject::ChargeDisputeCreated(d) => Notice::DisputeCreated {
            dispute_id: d.id.as_str().to_string(),
            charge_id: id_of(&d.charge),
            payment_intent: d.payment_intent.as_ref().map(id_of),
            amount: d.amount,
            currency: d.currency.to_string(),
            reason: d.reason.clone(),
        },
        EventObject::PaymentMethodAttached(pm)
        | EventObject::PaymentMethodUpdated(pm)
        | EventObject::PaymentMethodAutomaticallyUpdated(pm) => Notice::PaymentMethod {
            customer: pm.customer.as_ref().map(id_of),
            card: pm.card.as_ref().map(|c| CardSummary {
                brand: c.brand.clone(),
                last4: c.last4.clone(),
                country: c.country.clone(),
            }),
        },
        _ => Notice::Ignored,
    }
}
