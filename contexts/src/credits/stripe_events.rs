//! Applying verified Stripe events. Each event is routed to one account and applied in
//! two steps, both idempotent: credit effects first (grants keyed by the Stripe object,
//! claw-backs keyed by the payment), then one billing command that records the billing
//! effects together with the Stripe event id. A failure in either answers 500, so Stripe
//! redelivers; a redelivery after success finds the id recorded and changes nothing.

use super::Credits;
use crate::error::ServiceError;
use crate::identity::Ctx;
use chrono::{DateTime, Utc};
use journey_commands::mailer::Mail;
use journey_commands::stripe_webhook::{self, Notice, Rejection, Verified};
use journey_domain::billing::{
    BillingAccount, BillingChange, BillingCommand, RecordDetail, RecordKind, SubscriptionState,
    SubscriptionStatus,
};
use journey_domain::catalog::expiry;
use journey_domain::credits::{CreditCommand, CreditLedger, GrantSource};
use journey_domain::meta::{Actor, CommandMeta};
use journey_domain::stripe_event_log::{IgnoredStripeEvent, StripeEventLog, StripeEventLogCommand};
use journey_domain::DataCategory;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, PartialEq)]
pub enum WebhookOutcome {
    Applied,
    Duplicate,
    /// Verified, but nothing for us (unknown type, unpaid checkout), or of a type we handle
    /// but unusable (a field we need is missing, or no account matches): the latter is
    /// recorded in the `stripe_event` log for staff.
    Ignored,
}

/// What a verified event comes to.
enum Planned {
    Apply(Box<Plan>),
    /// Nothing for us: a type we do not handle, an unpaid checkout, a payment method that
    /// is not a card.
    Ignore,
    /// A type we handle that we cannot use; recorded for staff.
    Unusable {
        reason: String,
        missing: Vec<String>,
    },
}

fn unrouted(by: &str) -> Planned {
    Planned::Unusable {
        reason: format!("no account of ours matches its {by}"),
        missing: vec![],
    }
}

/// What a credit pack purchase is called on its receipt and billing record: the pack id
/// and the credits granted, both from the session's metadata (written by our checkout), so
/// the name can never disagree with the grant.
pub fn pack_item(pack: Option<&str>, credits: u64) -> String {
    match pack {
        Some(p) if !p.is_empty() => format!("Credit pack {p}: {credits} credits"),
        _ => format!("{credits} credits"),
    }
}

/// One Stripe event we verified but could not use (`GET /admin/v1/billing/ignored-events`).
#[derive(Debug, Serialize, ToSchema)]
pub struct IgnoredEventView {
    /// Stripe's event id (`evt_…`): look it up in the Stripe dashboard.
    pub event_id: String,
    pub event_type: String,
    pub reason: String,
    /// Payload paths we needed and did not find (alternatives joined by " or ").
    pub missing: Vec<String>,
    /// When it was first received.
    pub at: DateTime<Utc>,
}

/// A credit effect of a Stripe event.
enum CreditEffect {
    Grant {
        source: GrantSource,
        amount: u64,
        expires_at: Option<DateTime<Utc>>,
        key: String,
        purchase_ref: String,
    },
    ClawBack {
        purchase_ref: String,
    },
}

/// What one Stripe event does to one account.
struct Plan {
    account: Uuid,
    /// Stripe ids to route later events by.
    refs: Vec<String>,
    credit: Option<CreditEffect>,
    changes: Vec<Change>,
    receipt: Option<Receipt>,
}

/// A billing change before its sealed parts are sealed.
enum Change {
    Ready(BillingChange),
    Record {
        kind: RecordKind,
        stripe_id: String,
        detail: RecordDetail,
    },
    Card(journey_domain::billing::CardSummary),
}

struct Receipt {
    /// The billing record it acknowledges: sent only by the delivery that recorded it.
    record: (RecordKind, String),
    item: String,
    amount_cents: i64,
    currency: String,
    credits: Option<u64>,
    reference: String,
}

fn ts(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}

impl Credits<'_> {
    pub async fn handle_stripe_webhook(
        &self,
        payload: &[u8],
        signature: Option<&str>,
        ctx: &Ctx,
    ) -> Result<WebhookOutcome, ServiceError> {
        let event = stripe_webhook::verify(
            payload,
            signature,
            &self.cfg.webhook_secrets(),
            ctx.at.timestamp(),
        )
        .map_err(|r| match r {
            Rejection::NotConfigured => {
                ServiceError::Unavailable("Stripe webhooks are not configured".into())
            }
            other => ServiceError::bad(other.to_string()),
        })?;
        let plan = match self.plan_event(&event).await? {
            Planned::Apply(plan) => *plan,
            Planned::Ignore => {
                tracing::info!(event_id = %event.id, event_type = %event.event_type, "Stripe event ignored");
                return Ok(WebhookOutcome::Ignored);
            }
            Planned::Unusable { reason, missing } => {
                self.record_ignored(&event, reason, missing, ctx).await?;
                return Ok(WebhookOutcome::Ignored);
            }
        };
        let subject = plan.account.to_string();
        let (billing, _) = self.stores.credits.billing.load(&subject).await?;
        if billing.processed.contains_key(&event.id) {
            return Ok(WebhookOutcome::Duplicate);
        }
        let at_ms = ctx.at.timestamp_millis();
        for r in &plan.refs {
            self.refs.link(r, plan.account, at_ms).await?;
        }
        let meta = CommandMeta {
            actor: Actor::System,
            request_id: ctx.request_id.clone(),
            client_ip: None,
            at: ctx.at,
        };
        if let Some(effect) = plan.credit {
            let cmd = match effect {
                CreditEffect::Grant {
                    source,
                    amount,
                    expires_at,
                    key,
                    purchase_ref,
                } => CreditCommand::Grant {
                    grant_id: Uuid::new_v4(),
                    source,
                    amount,
                    expires_at,
                    idempotency_key: Some(key),
                    purchase_ref: Some(purchase_ref),
                    note: None,
                    at: ctx.at,
                },
                CreditEffect::ClawBack { purchase_ref } => CreditCommand::ClawBack {
                    purchase_ref,
                    at: ctx.at,
                },
            };
            self.stores
                .credits
                .credits
                .execute(&subject, cmd, &meta)
                .await?;
        }
        let mut changes = Vec::with_capacity(plan.changes.len());
        for c in plan.changes {
            changes.push(match c {
                Change::Ready(c) => c,
                Change::Record {
                    kind,
                    stripe_id,
                    detail,
                } => BillingChange::Record {
                    kind,
                    stripe_id,
                    detail: self
                        .vault
                        .seal(&subject, DataCategory::Billing, ctx.at, &detail)
                        .await?,
                },
                Change::Card(card) => BillingChange::Card(
                    self.vault
                        .seal(&subject, DataCategory::Billing, ctx.at, &card)
                        .await?,
                ),
            });
        }
        self.stores
            .credits
            .billing
            .execute(
                &subject,
                BillingCommand::ApplyStripeEvent {
                    event_id: event.id.clone(),
                    event_type: event.event_type.clone(),
                    stripe_created: event.created,
                    request_id: ctx.request_id.clone(),
                    changes,
                    at: ctx.at,
                },
                &meta,
            )
            .await?;
        self.identity().settle::<CreditLedger>(&subject).await?;
        self.identity().settle::<BillingAccount>(&subject).await?;
        // A dispute suspends API access: this process stops reusing the account's keys now.
        self.identity().forget_cached_keys_of(plan.account);
        let (billing, _) = self.stores.credits.billing.load(&subject).await?;
        let won = billing.processed.get(&event.id) == Some(&ctx.request_id);
        let receipt = plan.receipt.filter(|r| {
            billing.first_recorded_by(r.record.0, &r.record.1, &event.id, &ctx.request_id)
        });
        if let Some(receipt) = receipt {
            // The payment is recorded; a lost receipt must not make Stripe redeliver.
            if let Err(e) = self.send_receipt(plan.account, &receipt).await {
                tracing::warn!(error = %format!("{e:#}"), "could not send receipt");
            }
        }
        Ok(if won {
            WebhookOutcome::Applied
        } else {
            WebhookOutcome::Duplicate
        })
    }

    /// Our account for a Stripe event: the id we put on the session, else the routing
    /// table for the customer or payment.
    async fn route(
        &self,
        direct: Option<&str>,
        refs: &[Option<&str>],
    ) -> Result<Option<Uuid>, ServiceError> {
        if let Some(id) = direct.and_then(|d| Uuid::parse_str(d).ok()) {
            return Ok(Some(id));
        }
        for r in refs.iter().flatten() {
            if let Some(a) = self.refs.find(r).await? {
                return Ok(Some(a));
            }
        }
        Ok(None)
    }

    async fn plan_event(&self, event: &Verified) -> Result<Planned, ServiceError> {
        let plan = match &event.notice {
            Notice::Ignored => return Ok(Planned::Ignore),
            Notice::Unusable { missing } => {
                return Ok(Planned::Unusable {
                    reason: "a field it needs is missing".into(),
                    missing: missing.clone(),
                })
            }
            Notice::CheckoutPaid {
                session_id,
                client_reference_id,
                customer,
                subscription_mode,
                payment_intent,
                subscription,
                amount_total,
                currency,
                metadata,
            } => {
                let direct = client_reference_id
                    .as_deref()
                    .or(metadata.get("account_id").map(String::as_str));
                let Some(account) = self.route(direct, &[customer.as_deref()]).await? else {
                    return Ok(unrouted(
                        "client_reference_id, metadata.account_id or customer",
                    ));
                };
                let mut refs: Vec<String> = [customer, payment_intent, subscription]
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect();
                refs.push(session_id.clone());
                if *subscription_mode {
                    let Some(sub) = subscription else {
                        return Ok(Planned::Unusable {
                            reason: "a field it needs is missing".into(),
                            missing: vec!["data.object.subscription".into()],
                        });
                    };
                    let state = SubscriptionState {
                        subscription_id: sub.clone(),
                        plan: metadata.get("plan").cloned(),
                        status: SubscriptionStatus::Active,
                        current_period_end: None,
                        cancel_at_period_end: false,
                    };
                    Plan {
                        account,
                        refs,
                        credit: None,
                        changes: vec![Change::Ready(BillingChange::Subscription(state))],
                        receipt: None,
                    }
                } else {
                    // What was bought is what our checkout wrote on the session: the
                    // credits granted name the item too (the catalogue may have changed).
                    let pack = metadata.get("pack").map(String::as_str);
                    let credits = metadata
                        .get("credits")
                        .and_then(|c| c.parse::<u64>().ok())
                        .or_else(|| self.catalog.packs.get(pack?).map(|p| p.credits));
                    let Some(credits) = credits else {
                        // Not a session we created: nothing says what to grant.
                        return Ok(Planned::Unusable {
                            reason: "a paid checkout that does not say which credits it bought"
                                .into(),
                            missing: vec![
                                "data.object.metadata.credits or data.object.metadata.pack".into(),
                            ],
                        });
                    };
                    let days = metadata
                        .get("credits_expire_after_days")
                        .and_then(|d| d.parse::<u32>().ok());
                    let purchase_ref = payment_intent.clone().unwrap_or(session_id.clone());
                    let item = pack_item(pack, credits);
                    Plan {
                        account,
                        refs,
                        credit: Some(CreditEffect::Grant {
                            source: GrantSource::Purchase,
                            amount: credits,
                            expires_at: expiry(ts(event.created).unwrap_or_default(), days),
                            key: format!("checkout:{session_id}"),
                            purchase_ref: purchase_ref.clone(),
                        }),
                        changes: vec![Change::Record {
                            kind: RecordKind::Payment,
                            stripe_id: session_id.clone(),
                            detail: RecordDetail {
                                item: Some(item.clone()),
                                credits: Some(credits),
                                ..RecordDetail::of(
                                    *amount_total,
                                    currency,
                                    vec![purchase_ref.clone()],
                                )
                            },
                        }],
                        receipt: Some(Receipt {
                            record: (RecordKind::Payment, session_id.clone()),
                            item,
                            amount_cents: *amount_total,
                            currency: currency.clone(),
                            credits: Some(credits),
                            reference: purchase_ref,
                        }),
                    }
                }
            }
            Notice::InvoicePaid {
                invoice_id,
                customer,
                subscription,
                price_id,
                period_start,
                period_end,
                amount_paid,
                currency,
                payment_intents,
            } => {
                let Some(account) = self
                    .route(None, &[customer.as_deref(), subscription.as_deref()])
                    .await?
                else {
                    return Ok(unrouted("customer or subscription"));
                };
                let plan_id = match price_id
                    .as_deref()
                    .and_then(|p| self.catalog.plan_for_price(p))
                {
                    Some(p) => Some(p.to_string()),
                    None => self
                        .billing_state(account)
                        .await?
                        .subscription
                        .and_then(|s| s.state.plan),
                };
                let plan = plan_id.as_ref().and_then(|p| self.catalog.plans.get(p));
                let purchase_ref = payment_intents
                    .first()
                    .cloned()
                    .unwrap_or(invoice_id.clone());
                let mut refs = payment_intents.clone();
                refs.push(invoice_id.clone());
                refs.extend(subscription.clone());
                let credit = match (plan, subscription, period_start) {
                    (Some(p), Some(sub), Some(start)) => Some(CreditEffect::Grant {
                        source: GrantSource::SubscriptionPeriod,
                        amount: p.monthly_credits,
                        expires_at: expiry(
                            ts(*start).unwrap_or_default(),
                            p.credits_expire_after_days,
                        ),
                        key: format!("period:{sub}:{start}"),
                        purchase_ref: purchase_ref.clone(),
                    }),
                    _ => {
                        tracing::warn!(
                            invoice_id,
                            "paid invoice for no known plan: no credits granted"
                        );
                        None
                    }
                };
                let item = plan_id.as_ref().map(|p| format!("plan:{p}"));
                Plan {
                    account,
                    refs,
                    changes: vec![Change::Record {
                        kind: RecordKind::Invoice,
                        stripe_id: invoice_id.clone(),
                        detail: RecordDetail {
                            item: item.clone(),
                            credits: plan.map(|p| p.monthly_credits),
                            period_start: period_start.and_then(ts),
                            period_end: period_end.and_then(ts),
                            ..RecordDetail::of(*amount_paid, currency, vec![purchase_ref.clone()])
                        },
                    }],
                    receipt: (*amount_paid > 0).then(|| Receipt {
                        record: (RecordKind::Invoice, invoice_id.clone()),
                        item: plan
                            .map(|p| format!("{} plan, monthly", p.name))
                            .unwrap_or_else(|| "Subscription".into()),
                        amount_cents: *amount_paid,
                        currency: currency.clone(),
                        credits: plan.map(|p| p.monthly_credits),
                        reference: invoice_id.clone(),
                    }),
                    credit,
                }
            }
            Notice::Subscription {
                subscription_id,
                customer,
                status,
                price_id,
                current_period_end,
                cancel_at_period_end,
                metadata,
            } => {
                let direct = metadata.get("account_id").map(String::as_str);
                let Some(account) = self
                    .route(
                        direct,
                        &[customer.as_deref(), Some(subscription_id.as_str())],
                    )
                    .await?
                else {
                    return Ok(unrouted("metadata.account_id, customer or id"));
                };
                let Some(status) = SubscriptionStatus::parse(status) else {
                    let shown: String = status.chars().take(40).collect();
                    return Ok(Planned::Unusable {
                        reason: format!(
                            "subscription status {shown:?} is not one this version knows"
                        ),
                        missing: vec![],
                    });
                };
                let plan = price_id
                    .as_deref()
                    .and_then(|p| self.catalog.plan_for_price(p))
                    .map(String::from)
                    .or_else(|| metadata.get("plan").cloned());
                Plan {
                    account,
                    refs: [customer.clone(), Some(subscription_id.clone())]
                        .into_iter()
                        .flatten()
                        .collect(),
                    credit: None,
                    changes: vec![Change::Ready(BillingChange::Subscription(
                        SubscriptionState {
                            subscription_id: subscription_id.clone(),
                            plan,
                            status,
                            current_period_end: current_period_end.and_then(ts),
                            cancel_at_period_end: *cancel_at_period_end,
                        },
                    ))],
                    receipt: None,
                }
            }
            Notice::SubscriptionDeleted {
                subscription_id,
                customer,
                paid_until,
            } => {
                let Some(account) = self
                    .route(None, &[customer.as_deref(), Some(subscription_id.as_str())])
                    .await?
                else {
                    return Ok(unrouted("customer or id"));
                };
                Plan {
                    account,
                    refs: vec![],
                    credit: None,
                    changes: vec![Change::Ready(BillingChange::SubscriptionEnded {
                        subscription_id: subscription_id.clone(),
                        paid_until: paid_until.and_then(ts),
                    })],
                    receipt: None,
                }
            }
            Notice::ChargeRefunded {
                charge_id,
                customer,
                payment_intent,
                amount_refunded,
                currency,
            } => {
                let Some(account) = self
                    .route(None, &[payment_intent.as_deref(), customer.as_deref()])
                    .await?
                else {
                    return Ok(unrouted("payment_intent or customer"));
                };
                let purchase_ref = payment_intent.clone().unwrap_or(charge_id.clone());
                Plan {
                    account,
                    refs: vec![charge_id.clone()],
                    credit: Some(CreditEffect::ClawBack {
                        purchase_ref: purchase_ref.clone(),
                    }),
                    changes: vec![Change::Record {
                        kind: RecordKind::Refund,
                        stripe_id: format!("{charge_id}:{amount_refunded}"),
                        detail: RecordDetail::of(
                            *amount_refunded,
                            currency,
                            vec![charge_id.clone(), purchase_ref],
                        ),
                    }],
                    receipt: None,
                }
            }
            Notice::DisputeCreated {
                dispute_id,
                charge_id,
                payment_intent,
                amount,
                currency,
                reason,
            } => {
                let Some(account) = self
                    .route(None, &[payment_intent.as_deref(), Some(charge_id.as_str())])
                    .await?
                else {
                    return Ok(unrouted("payment_intent or charge"));
                };
                Plan {
                    account,
                    refs: vec![dispute_id.clone()],
                    credit: None,
                    changes: vec![
                        Change::Record {
                            kind: RecordKind::Dispute,
                            stripe_id: dispute_id.clone(),
                            detail: RecordDetail {
                                reason: reason.clone(),
                                ..RecordDetail::of(
                                    *amount,
                                    currency,
                                    [Some(charge_id.clone()), payment_intent.clone()]
                                        .into_iter()
                                        .flatten()
                                        .collect(),
                                )
                            },
                        },
                        Change::Ready(BillingChange::Suspend {
                            dispute_id: dispute_id.clone(),
                        }),
                    ],
                    receipt: None,
                }
            }
            Notice::PaymentMethod { customer, card } => {
                let Some(account) = self.route(None, &[Some(customer.as_str())]).await? else {
                    return Ok(unrouted("customer"));
                };
                Plan {
                    account,
                    refs: vec![],
                    credit: None,
                    changes: vec![Change::Card(card.clone())],
                    receipt: None,
                }
            }
        };
        Ok(Planned::Apply(Box::new(plan)))
    }

    /// Logs and records (once per Stripe event id) a verified event we cannot use.
    async fn record_ignored(
        &self,
        event: &Verified,
        reason: String,
        missing: Vec<String>,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        tracing::warn!(
            event_id = %event.id,
            event_type = %event.event_type,
            reason = %reason,
            missing = %missing.join("; "),
            "Stripe event ignored: it cannot be used"
        );
        let meta = CommandMeta {
            actor: Actor::System,
            request_id: ctx.request_id.clone(),
            client_ip: None,
            at: ctx.at,
        };
        let record = IgnoredStripeEvent {
            event_type: event.event_type.clone(),
            reason,
            missing,
            at: ctx.at,
        };
        self.stores
            .credits
            .stripe_events
            .execute(
                &event.id,
                StripeEventLogCommand::RecordIgnored(record),
                &meta,
            )
            .await?;
        Ok(())
    }

    /// Verified Stripe events we could not use, newest first; at most `limit`, and whether
    /// there are more.
    pub async fn ignored_stripe_events(
        &self,
        limit: u32,
    ) -> Result<(Vec<IgnoredEventView>, bool), ServiceError> {
        use cqrs_es::Aggregate;
        let limit = i64::from(limit);
        let mut ids =
            journey_projections::events::stream_ids(&self.db, StripeEventLog::TYPE, limit + 1)
                .await?;
        let more = ids.len() as i64 > limit;
        ids.truncate(limit as usize);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (log, _) = self.stores.credits.stripe_events.load(&id).await?;
            if let Some(r) = log.ignored {
                out.push(IgnoredEventView {
                    event_id: id,
                    event_type: r.event_type,
                    reason: r.reason,
                    missing: r.missing,
                    at: r.at,
                });
            }
        }
        Ok((out, more))
    }

    async fn send_receipt(&self, account: Uuid, r: &Receipt) -> anyhow::Result<()> {
        let me = match self.identity().me(account).await {
            Ok(me) => me,
            // Erased or never completed: nobody to send a receipt to.
            Err(_) => return Ok(()),
        };
        let amount = format!(
            "{}.{:02} {}",
            r.amount_cents / 100,
            r.amount_cents % 100,
            r.currency.to_uppercase()
        );
        let credits = r
            .credits
            .map(|c| format!("Credits added: {c}\n"))
            .unwrap_or_default();
        self.mailer
            .send(Mail {
                to: me.email,
                subject: format!("JourneyAPI receipt: {}", r.item),
                body: format!(
                    "Thank you for your payment.\n\nItem: {}\nAmount paid: {amount}\n{credits}Reference: {}\n\n\
                     Payments are non-refundable except case by case (billing errors, long outages) on \
                     request within 7 days. Your billing details: {}/v1/billing\n",
                    r.item,
                    r.reference,
                    self.cfg.public_url()
                ),
            })
            .await
    }
}
