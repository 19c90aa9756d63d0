//! Calls to the Stripe API through async-stripe: customers, Checkout Sessions and
//! customer-portal sessions. The base URL is configuration so tests can point it at a
//! local fake. We send Stripe nothing about the person: the customer carries only our
//! account id, and Checkout collects payment details itself.

use anyhow::{anyhow, Context, Result};
use std::collections::HashMap;
use std::time::Duration;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    CreateCheckoutSessionPaymentIntentData, CreateCheckoutSessionSubscriptionData, ProductData,
};
use stripe_core::customer::CreateCustomer;
use stripe_shared::CheckoutSessionMode;
use stripe_types::Currency;
use uuid::Uuid;

/// What a Checkout Session sells.
#[derive(Debug, Clone)]
pub enum Purchase {
    /// One-time payment for a credit pack, priced inline.
    Pack {
        pack_id: String,
        name: String,
        price_cents: u64,
        currency: String,
        /// Recorded on the session so the grant honours what was sold, even if the
        /// catalogue changes before the webhook arrives.
        credits: u64,
        expire_after_days: Option<u32>,
    },
    /// A subscription to a plan's recurring Stripe price.
    Plan { plan_id: String, price_id: String },
}

pub struct CheckoutRequest<'a> {
    pub account_id: Uuid,
    pub customer_id: &'a str,
    pub purchase: Purchase,
    pub success_url: String,
    pub cancel_url: String,
    /// Makes a retried request return the same session instead of a second one.
    pub idempotency_key: String,
}

#[derive(Clone)]
pub struct StripeApi {
    client: Option<Client>,
}

fn idempotent(key: &str) -> Result<RequestStrategy> {
    Ok(RequestStrategy::Idempotent(
        IdempotencyKey::new(key).map_err(|e| anyhow!("idempotency key: {e:?}"))?,
    ))
}

impl StripeApi {
    /// `secret_key` absent: billing is not configured and every call says so.
    pub fn new(secret_key: Option<&str>, api_base: Option<&str>) -> Result<Self> {
        let Some(key) = secret_key else {
            return Ok(StripeApi { client: None });
        };
        // hyper-rustls pulls in both rustls back ends; pick one explicitly (idempotent).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = ClientBuilder::new(key).timeout(Duration::from_secs(20));
        if let Some(base) = api_base {
            b = b.url(base);
        }
        let client = b.build().context("Stripe client configuration")?;
        Ok(StripeApi {
            client: Some(client),
        })
    }

    pub fn is_configured(&self) -> bool {
        self.client.is_some()
    }

    fn client(&self) -> Result<&Client> {
        self.client
            .as_ref()
            .ok_or_else(|| anyhow!("Stripe is not configured (JOURNEY_STRIPE_SECRET_KEY)"))
    }

    /// Creates the account's Stripe customer. The idempotency key is derived from the
    /// account, so concurrent or retried calls yield one customer.
    pub async fn create_customer(&self, account_id: Uuid) -> Result<String> {
        let metadata = HashMap::from([("account_id".to_string(), account_id.to_string())]);
        let customer = CreateCustomer::new()
            .metadata(metadata)
            .customize()
            .request_strategy(idempotent(&format!("journey-customer-{account_id}"))?)
            .send(self.client()?)
            .await
            .context("Stripe: create customer")?;
        Ok(customer.id.to_string())
    }

    /// Creates a Checkout Session and returns its URL.
    pub async fn checkout(&self, req: CheckoutRequest<'_>) -> Result<String> {
        let account = req.account_id.to_string();
        let mut metadata = HashMap::from([("account_id".to_string(), account.clone())]);
        let (mode, item) = match &req.purchase {
            Purchase::Pack {
                pack_id,
                name,
                price_cents,
                currency,
                credits,
                expire_after_days,
            } => {
                metadata.insert("pack".into(), pack_id.clone());
                metadata.insert("credits".into(), credits.to_string());
                if let Some(d) = expire_after_days {
                    metadata.insert("credits_expire_after_days".into(), d.to_string());
                }
                let currency: Currency = currency.parse().expect("infallible");
                let mut price = CreateCheckoutSessionLineItemsPriceData::new(currency);
                price.unit_amount = Some(i64::try_from(*price_cents).context("pack price")?);
                price.product_data = Some(ProductData::new(name.clone()));
                let mut item = CreateCheckoutSessionLineItems::new();
                item.price_data = Some(price);
                item.quantity = Some(1);
                (CheckoutSessionMode::Payment, item)
            }
            Purchase::Plan { plan_id, price_id } => {
                metadata.insert("plan".into(), plan_id.clone());
                let mut item = CreateCheckoutSessionLineItems::new();
                item.price = Some(price_id.clone());
                item.quantity = Some(1);
                (CheckoutSessionMode::Subscription, item)
            }
        };
        let mut create = CreateCheckoutSession::new()
            .mode(mode)
            .customer(req.customer_id)
            .client_reference_id(account)
            .line_items(vec![item])
            .metadata(metadata.clone())
            .success_url(req.success_url)
            .cancel_url(req.cancel_url);
        create = match req.purchase {
            Purchase::Pack { .. } => {
                let mut pi = CreateCheckoutSessionPaymentIntentData::new();
                pi.metadata = Some(metadata);
                create.payment_intent_data(pi)
            }
            Purchase::Plan { .. } => {
                let mut sub = CreateCheckoutSessionSubscriptionData::new();
                sub.metadata = Some(metadata);
                create.subscription_data(sub)
            }
        };
        let session = create
            .customize()
            .request_strategy(idempotent(&req.idempotency_key)?)
            .send(self.client()?)
            .await
            .context("Stripe: create checkout session")?;
        session
            .url
            .ok_or_else(|| anyhow!("Stripe returned a checkout session without a URL"))
    }

    /// Creates a customer-portal session and returns its URL.
    pub async fn portal(&self, customer_id: &str, return_url: &str) -> Result<String> {
        let session = CreateBillingPortalSession::new()
            .customer(customer_id)
            .return_url(return_url)
            .send(self.client()?)
            .await
            .context("Stripe: create portal session")?;
        Ok(session.url)
    }
}
