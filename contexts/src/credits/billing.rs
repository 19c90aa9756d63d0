//! Billing use cases: the account's billing overview, Stripe Checkout and portal sessions,
//! the one Stripe customer per account, and lifting a dispute suspension. Webhook
//! processing lives in `stripe_events`.

use super::Credits;
use crate::credits::Balance;
use crate::error::{require_reason, ServiceError};
use crate::identity::Ctx;
use chrono::{DateTime, Utc};
use journey_commands::stripe_api::{CheckoutRequest, Purchase};
use journey_domain::billing::{BillingAccount, BillingCommand, CardSummary};
use journey_domain::catalog::FREE_PLAN;
use journey_domain::meta::Actor;
use journey_domain::DataCategory;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BillingOverview {
    /// The plan in force now: `free`, `starter`, `growth` or `enterprise`.
    pub plan: String,
    pub subscription: Option<SubscriptionView>,
    /// Brand, last four digits and country of the card on file; nothing else is kept.
    pub card: Option<CardView>,
    pub balance: Balance,
    /// A payment dispute suspended API access until staff lift it.
    pub suspended: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    /// The subscribed plan (absent if its Stripe price is not in the catalogue).
    pub plan: Option<String>,
    /// Stripe's status: `active`, `past_due`, `canceled`, ...
    pub status: String,
    pub current_period_end: Option<DateTime<Utc>>,
    /// Cancelled: the plan stays until `current_period_end`, then the account is on `free`.
    pub cancel_at_period_end: bool,
    /// Stripe deleted the subscription (the paid period may still be running).
    pub ended: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CardView {
    pub brand: String,
    pub last4: String,
    pub country: Option<String>,
}

/// Exactly one of `pack` or `plan`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    pub pack: Option<String>,
    pub plan: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedirectUrl {
    pub url: String,
}

/// Stripe failed or is unreachable: the holder can retry; nothing was changed here.
fn provider_down(e: anyhow::Error) -> ServiceError {
    tracing::error!(error = %format!("{e:#}"), "Stripe call failed");
    ServiceError::Unavailable("the payment provider could not be reached; please try again".into())
}

impl Credits<'_> {
    pub fn stripe_required(&self) -> Result<(), ServiceError> {
        if self.stripe.is_configured() {
            Ok(())
        } else {
            Err(ServiceError::Unavailable(
                "billing is not configured on this server".into(),
            ))
        }
    }

    pub(crate) async fn billing_state(
        &self,
        account_id: Uuid,
    ) -> Result<BillingAccount, ServiceError> {
        Ok(self
            .stores
            .credits
            .billing
            .load(&account_id.to_string())
            .await?
            .0)
    }

    /// The plan in force now (`free` without an entitling subscription).
    pub async fn plan_of(&self, account_id: Uuid) -> Result<String, ServiceError> {
        let b = self.billing_state(account_id).await?;
        Ok(b.plan_at(self.clock.now()).unwrap_or(FREE_PLAN).to_string())
    }

    pub async fn billing_overview(
        &self,
        account_id: Uuid,
    ) -> Result<BillingOverview, ServiceError> {
        let b = self.billing_state(account_id).await?;
        let card = match &b.card {
            Some(sealed) => self
                .vault
                .open::<CardSummary>(sealed)
                .await?
                .value()
                .map(|c| CardView {
                    brand: c.brand,
                    last4: c.last4,
                    country: c.country,
                }),
            None => None,
        };
        Ok(BillingOverview {
            plan: b.plan_at(self.clock.now()).unwrap_or(FREE_PLAN).to_string(),
            subscription: b.subscription.as_ref().map(|s| SubscriptionView {
                plan: s.state.plan.clone(),
                status: s.state.status.as_str().to_string(),
                current_period_end: s.state.current_period_end,
                cancel_at_period_end: s.state.cancel_at_period_end,
                ended: s.ended,
            }),
            card,
            balance: self.balance(account_id).await?,
            suspended: b.suspended_by.is_some(),
        })
    }

    /// The account's Stripe customer, created on first need. Stripe's idempotency key is
    /// derived from the account, so concurrent first calls still make one customer.
    async fn ensure_customer(&self, account_id: Uuid, ctx: &Ctx) -> Result<String, ServiceError> {
        if let Some(c) = self.billing_state(account_id).await?.customer_id {
            return Ok(c);
        }
        let customer = self
            .stripe
            .create_customer(account_id)
            .await
            .map_err(provider_down)?;
        self.refs
            .link(&customer, account_id, ctx.at.timestamp_millis())
            .await?;
        let meta = self
            .identity()
            .meta(Actor::Account(account_id), Some(account_id), ctx)
            .await?;
        self.stores
            .credits
            .billing
            .execute(
                &account_id.to_string(),
                BillingCommand::LinkCustomer {
                    customer_id: customer.clone(),
                    at: ctx.at,
                },
                &meta,
            )
            .await?;
        Ok(customer)
    }

    /// A Checkout session that returns the browser to `GET /v1/billing`.
    pub async fn start_checkout(
        &self,
        account_id: Uuid,
        body: CheckoutBody,
        ctx: &Ctx,
    ) -> Result<RedirectUrl, ServiceError> {
        self.start_checkout_returning(account_id, body, "/v1/billing", ctx)
            .await
    }

    /// A Checkout session that returns the browser to `return_path` (a path of ours, e.g.
    /// the dashboard's `/billing`) with `?checkout=success` or `?checkout=cancelled`.
    pub async fn start_checkout_returning(
        &self,
        account_id: Uuid,
        body: CheckoutBody,
        return_path: &str,
        ctx: &Ctx,
    ) -> Result<RedirectUrl, ServiceError> {
        let purchase = match (body.pack, body.plan) {
            (Some(pack_id), None) => {
                let pack = self.catalog.packs.get(&pack_id).ok_or_else(|| {
                    ServiceError::bad(format!(
                        "unknown pack {pack_id:?}; see GET /v1/billing/catalog"
                    ))
                })?;
                Purchase::Pack {
                    pack_id: pack_id.clone(),
                    name: pack.name.clone(),
                    price_cents: pack.price_cents,
                    currency: self.catalog.currency.clone(),
                    credits: pack.credits,
                    expire_after_days: pack.credits_expire_after_days,
                }
            }
            (None, Some(plan_id)) => {
                let plan = self.catalog.plans.get(&plan_id).ok_or_else(|| {
                    ServiceError::bad(format!(
                        "unknown plan {plan_id:?}; see GET /v1/billing/catalog"
                    ))
                })?;
                let b = self.billing_state(account_id).await?;
                if b.plan_at(ctx.at).is_some() && b.subscription.as_ref().is_some_and(|s| !s.ended)
                {
                    return Err(ServiceError::Conflict(
                        "a subscription is already active; change plans in the billing portal (POST /v1/billing/portal)".into(),
                    ));
                }
                Purchase::Plan {
                    plan_id: plan_id.clone(),
                    price_id: plan.stripe_price_id.clone(),
                }
            }
            _ => return Err(ServiceError::bad("give exactly one of `pack` or `plan`")),
        };
        self.stripe_required()?;
        let customer = self.ensure_customer(account_id, ctx).await?;
        let base = self.cfg.public_url();
        let url = self
            .stripe
            .checkout(CheckoutRequest {
                account_id,
                customer_id: &customer,
                purchase,
                success_url: format!("{base}{return_path}?checkout=success"),
                cancel_url: format!("{base}{return_path}?checkout=cancelled"),
                idempotency_key: format!("journey-checkout-{}", ctx.request_id),
            })
            .await
            .map_err(provider_down)?;
        Ok(RedirectUrl { url })
    }

    /// A customer-portal session that returns the browser to `GET /v1/billing`.
    pub async fn portal_url(
        &self,
        account_id: Uuid,
        ctx: &Ctx,
    ) -> Result<RedirectUrl, ServiceError> {
        self.portal_url_returning(account_id, "/v1/billing", ctx)
            .await
    }

    /// A customer-portal session that returns the browser to `return_path` (a path of ours).
    pub async fn portal_url_returning(
        &self,
        account_id: Uuid,
        return_path: &str,
        ctx: &Ctx,
    ) -> Result<RedirectUrl, ServiceError> {
        self.stripe_required()?;
        let customer = self.ensure_customer(account_id, ctx).await?;
        let url = self
            .stripe
            .portal(
                &customer,
                &format!("{}{return_path}", self.cfg.public_url()),
            )
            .await
            .map_err(provider_down)?;
        Ok(RedirectUrl { url })
    }

    /// Staff lift a dispute suspension; the reason is kept with the billing records.
    pub async fn lift_suspension(
        &self,
        account_id: Uuid,
        reason: &str,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        require_reason(reason)?;
        let subject = account_id.to_string();
        let reason = self
            .vault
            .seal(&subject, DataCategory::Billing, ctx.at, &reason.to_string())
            .await?;
        let meta = self.identity().meta(actor, None, ctx).await?;
        self.stores
            .credits
            .billing
            .execute(
                &subject,
                BillingCommand::LiftSuspension { reason, at: ctx.at },
                &meta,
            )
            .await?;
        self.identity().settle::<BillingAccount>(&subject).await
    }
}
