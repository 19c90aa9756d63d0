//! Verifies Stripe webhooks and reads the few facts billing acts on.
//!
//! The signature is checked first and on its own, over the raw body: HMAC-SHA256 under each
//! configured secret over `<t>.<payload>`, any of the header's `v1` signatures may match
//! (compared in constant time), and `t` must be within [`TOLERANCE_SECS`] of our clock.
//!
//! Only then is the payload read, as plain JSON and leniently: a verified event is refused
//! (400) only when it is not JSON or has no `id` or `type`. Every other field is looked up
//! where the Stripe API versions we know put it (see [`Notice`]); unknown fields are
//! ignored, ids may be strings or expanded objects, and a field we need that is missing
//! makes the event [`Notice::Unusable`], naming the paths looked at. Everything else in the
//! payload — names, addresses, emails, card expiry and fingerprint — is dropped here and
//! never leaves this module.

use hmac::{Hmac, Mac};
use journey_domain::billing::CardSummary;
use serde_json::Value;
use sha2::Sha256;
use std::collections::HashMap;

/// How far (seconds, either way) the signature's timestamp may be from our clock.
pub const TOLERANCE_SECS: i64 = 300;

/// Event types we act on; any other verified event is acknowledged and ignored.
pub const HANDLED: [&str; 13] = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "invoice.paid",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.deleted",
    "charge.refunded",
    "charge.dispute.created",
    "payment_method.attached",
    "payment_method.updated",
    "payment_method.automatically_updated",
];

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
    #[error("payload is not a Stripe event: {0}")]
    Unreadable(String),
    #[error("webhook secret is not configured")]
    NotConfigured,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub id: String,
    pub event_type: String,
    /// Stripe's `created`; the time of receipt when the event has none.
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
        /// Present whenever `subscription` is.
        period_start: Option<i64>,
        period_end: Option<i64>,
        amount_paid: i64,
        currency: String,
        payment_intents: Vec<String>,
    },
    Subscription {
        subscription_id: String,
        customer: Option<String>,
        status: String,
        price_id: Option<String>,
        current_period_end: Option<i64>,
        cancel_at_period_end: bool,
        metadata: HashMap<String, String>,
    },
    SubscriptionDeleted {
        subscription_id: String,
        customer: Option<String>,
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
        reason: Option<String>,
    },
    PaymentMethod {
        customer: String,
        card: CardSummary,
    },
    /// A type we handle, but a field we need is missing: each entry names the path (or the
    /// alternative paths, joined by " or ") that was looked at.
    Unusable {
        missing: Vec<String>,
    },
    /// Acknowledged and ignored (unknown types, unpaid checkouts, non-card payment methods).
    Ignored,
}

/// Verifies the signature (against any configured secret), then reads the event.
pub fn verify(
    payload: &[u8],
    signature: Option<&str>,
    secrets: &[String],
    now: i64,
) -> Result<Verified, Rejection> {
    let header = signature.ok_or(Rejection::MissingSignature)?;
    if secrets.is_empty() {
        return Err(Rejection::NotConfigured);
    }
    let (t, v1) = parse_header(header)?;
    let signed = [t.to_string().as_bytes(), b".", payload].concat();
    let matches = secrets.iter().any(|secret| {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(&signed);
        v1.iter().any(|candidate| {
            hex::decode(candidate).is_ok_and(|sig| mac.clone().verify_slice(&sig).is_ok())
        })
    });
    if !matches {
        return Err(Rejection::BadSignature);
    }
    if (now - t).abs() > TOLERANCE_SECS {
        return Err(Rejection::Stale);
    }
    read(payload, now)
}

/// `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`; other schemes (`v0`) are skipped.
fn parse_header(header: &str) -> Result<(i64, Vec<&str>), Rejection> {
    let mut t = None;
    let mut v1 = Vec::new();
    for pair in header.split(',') {
        let (key, value) = pair.trim().split_once('=').ok_or(Rejection::BadHeader)?;
        match key {
            "t" => t = Some(value.parse::<i64>().map_err(|_| Rejection::BadHeader)?),
            "v1" => v1.push(value),
            _ => {}
        }
    }
    let t = t.ok_or(Rejection::BadHeader)?;
    if v1.is_empty() {
        return Err(Rejection::BadSignature);
    }
    Ok((t, v1))
}

/// Reads a verified payload: only the envelope's `id` and `type` are required.
fn read(payload: &[u8], now: i64) -> Result<Verified, Rejection> {
    let event: Value = serde_json::from_slice(payload)
        .map_err(|e| Rejection::Unreadable(format!("not JSON ({e})")))?;
    let text = |k: &str| {
        event
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let id = text("id").ok_or_else(|| Rejection::Unreadable("no `id`".into()))?;
    let event_type = text("type").ok_or_else(|| Rejection::Unreadable("no `type`".into()))?;
    let created = event.get("created").and_then(Value::as_i64).unwrap_or(now);
    let notice = if !HANDLED.contains(&event_type.as_str()) {
        Notice::Ignored
    } else {
        match event.pointer("/data/object") {
            Some(object) if object.is_object() => notice(&event_type, object),
            _ => Notice::Unusable {
                missing: vec!["data.object".into()],
            },
        }
    };
    Ok(Verified {
        id,
        event_type,
        created,
        notice,
    })
}

/// Lenient lookups in `data.object`, remembering what was needed and missing.
struct Fields<'a> {
    object: &'a Value,
    missing: Vec<String>,
}

/// `lines.data[0].period.start` → `/lines/data/0/period/start`.
fn pointer(path: &str) -> String {
    let mut p = String::with_capacity(path.len() + 1);
    for part in path.split('.') {
        match part.split_once('[') {
            Some((name, index)) => {
                p.push('/');
                p.push_str(name);
                p.push('/');
                p.push_str(index.trim_end_matches(']'));
            }
            None => {
                p.push('/');
                p.push_str(part);
            }
        }
    }
    p
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl<'a> Fields<'a> {
    fn new(object: &'a Value) -> Self {
        Fields {
            object,
            missing: Vec::new(),
        }
    }

    /// The first of `paths` whose value `pick` accepts.
    fn first<T>(&self, paths: &[&str], pick: impl Fn(&Value) -> Option<T>) -> Option<T> {
        paths
            .iter()
            .filter_map(|p| self.object.pointer(&pointer(p)))
            .find_map(pick)
    }

    fn text(&self, paths: &[&str]) -> Option<String> {
        self.first(paths, |v| v.as_str().and_then(non_empty))
    }

    /// A Stripe id: a string, or an expanded object's `id`.
    fn id(&self, paths: &[&str]) -> Option<String> {
        self.first(paths, |v| match v {
            Value::String(s) => non_empty(s),
            Value::Object(o) => o.get("id").and_then(Value::as_str).and_then(non_empty),
            _ => None,
        })
    }

    fn int(&self, paths: &[&str]) -> Option<i64> {
        self.first(paths, Value::as_i64)
    }

    fn flag(&self, paths: &[&str]) -> Option<bool> {
        self.first(paths, Value::as_bool)
    }

    /// String values of an object (metadata); other values are skipped.
    fn strings(&self, path: &str) -> HashMap<String, String> {
        self.object
            .pointer(&pointer(path))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn note_missing(&mut self, paths: &[&str]) {
        let names: Vec<String> = paths.iter().map(|p| format!("data.object.{p}")).collect();
        self.missing.push(names.join(" or "));
    }

    fn need<T>(&mut self, got: Option<T>, paths: &[&str]) -> Option<T> {
        if got.is_none() {
            self.note_missing(paths);
        }
        got
    }

    fn need_text(&mut self, paths: &[&str]) -> String {
        let got = self.text(paths);
        self.need(got, paths).unwrap_or_default()
    }

    fn need_id(&mut self, paths: &[&str]) -> String {
        let got = self.id(paths);
        self.need(got, paths).unwrap_or_default()
    }

    fn need_int(&mut self, paths: &[&str]) -> i64 {
        let got = self.int(paths);
        self.need(got, paths).unwrap_or_default()
    }

    /// At least one of `present` must be there to route the event to an account.
    fn need_any(&mut self, present: &[&Option<String>], paths: &[&str]) {
        if present.iter().all(|p| p.is_none()) {
            self.note_missing(paths);
        }
    }

    fn done(self, notice: Notice) -> Notice {
        if self.missing.is_empty() {
            notice
        } else {
            Notice::Unusable {
                missing: self.missing,
            }
        }
    }
}

// Where the API versions put what we read. The newest shape (2025-03-31 onwards, e.g.
// `parent.subscription_details`, `pricing.price_details`, `payments`, period on subscription
// items) comes first, the older ones after it.
const INVOICE_SUBSCRIPTION: [&str; 4] = [
    "parent.subscription_details.subscription",
    "subscription",
    "lines.data[0].parent.subscription_item_details.subscription",
    "lines.data[0].subscription",
];
const INVOICE_PRICE: [&str; 3] = [
    "lines.data[0].pricing.price_details.price",
    "lines.data[0].price",
    "lines.data[0].plan",
];
const INVOICE_PERIOD_START: [&str; 2] = ["lines.data[0].period.start", "period_start"];
const INVOICE_PERIOD_END: [&str; 2] = ["lines.data[0].period.end", "period_end"];
const SUBSCRIPTION_PRICE: [&str; 3] = ["items.data[0].price", "items.data[0].plan", "plan"];
const SUBSCRIPTION_PERIOD_END: [&str; 2] =
    ["items.data[0].current_period_end", "current_period_end"];

fn notice(event_type: &str, object: &Value) -> Notice {
    let mut f = Fields::new(object);
    match event_type {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            let session_id = f.need_text(&["id"]);
            let paid = f.text(&["payment_status"]);
            match f.need(paid, &["payment_status"]).as_deref() {
                // Delayed payment methods: wait for `async_payment_succeeded`.
                Some(s) if s != "paid" && s != "no_payment_required" => return Notice::Ignored,
                _ => {}
            }
            let metadata = f.strings("metadata");
            let client_reference_id = f.text(&["client_reference_id"]);
            let customer = f.id(&["customer"]);
            let subscription = f.id(&["subscription"]);
            let subscription_mode = match f.text(&["mode"]) {
                Some(mode) => mode == "subscription",
                None => subscription.is_some(),
            };
            if subscription_mode {
                f.need(subscription.as_ref(), &["subscription"]);
            }
            let account = metadata.get("account_id").cloned();
            f.need_any(
                &[&client_reference_id, &account, &customer],
                &["client_reference_id", "metadata.account_id", "customer"],
            );
            let notice = Notice::CheckoutPaid {
                session_id,
                client_reference_id,
                customer,
                subscription_mode,
                payment_intent: f.id(&["payment_intent"]),
                subscription,
                amount_total: f.int(&["amount_total"]).unwrap_or(0),
                currency: f.text(&["currency"]).unwrap_or_default(),
                metadata,
            };
            f.done(notice)
        }
        "invoice.paid" => {
            let invoice_id = f.need_text(&["id"]);
            let customer = f.id(&["customer"]);
            let subscription = f.id(&INVOICE_SUBSCRIPTION);
            let mut routes = vec!["customer"];
            routes.extend(INVOICE_SUBSCRIPTION);
            f.need_any(&[&customer, &subscription], &routes);
            let period_start = f.int(&INVOICE_PERIOD_START);
            if subscription.is_some() {
                // The period keys the subscription's grant.
                f.need(period_start, &INVOICE_PERIOD_START);
            }
            let payments: Vec<String> = object
                .pointer("/payments/data")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|p| Fields::new(p).id(&["payment.payment_intent"]))
                        .collect()
                })
                .unwrap_or_default();
            let payment_intents = if payments.is_empty() {
                f.id(&["payment_intent"]).into_iter().collect()
            } else {
                payments
            };
            let notice = Notice::InvoicePaid {
                invoice_id,
                customer,
                subscription,
                price_id: f.id(&INVOICE_PRICE),
                period_start,
                period_end: f.int(&INVOICE_PERIOD_END),
                amount_paid: f.need_int(&["amount_paid"]),
                currency: f.need_text(&["currency"]),
                payment_intents,
            };
            f.done(notice)
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.paused"
        | "customer.subscription.resumed" => {
            let notice = Notice::Subscription {
                subscription_id: f.need_text(&["id"]),
                customer: f.id(&["customer"]),
                status: f.need_text(&["status"]),
                price_id: f.id(&SUBSCRIPTION_PRICE),
                current_period_end: f.int(&SUBSCRIPTION_PERIOD_END),
                cancel_at_period_end: f.flag(&["cancel_at_period_end"]).unwrap_or(false),
                metadata: f.strings("metadata"),
            };
            f.done(notice)
        }
        "customer.subscription.deleted" => {
            let notice = Notice::SubscriptionDeleted {
                subscription_id: f.need_text(&["id"]),
                customer: f.id(&["customer"]),
                paid_until: f.int(&SUBSCRIPTION_PERIOD_END),
            };
            f.done(notice)
        }
        "charge.refunded" => {
            let charge_id = f.need_text(&["id"]);
            let customer = f.id(&["customer"]);
            let payment_intent = f.id(&["payment_intent"]);
            f.need_any(
                &[&payment_intent, &customer],
                &["payment_intent", "customer"],
            );
            let notice = Notice::ChargeRefunded {
                charge_id,
                customer,
                payment_intent,
                amount_refunded: f.need_int(&["amount_refunded"]),
                currency: f.need_text(&["currency"]),
            };
            f.done(notice)
        }
        "charge.dispute.created" => {
            let notice = Notice::DisputeCreated {
                dispute_id: f.need_text(&["id"]),
                charge_id: f.need_id(&["charge"]),
                payment_intent: f.id(&["payment_intent"]),
                amount: f.need_int(&["amount"]),
                currency: f.need_text(&["currency"]),
                reason: f.text(&["reason"]),
            };
            f.done(notice)
        }
        "payment_method.attached"
        | "payment_method.updated"
        | "payment_method.automatically_updated" => {
            if f.text(&["type"]).is_some_and(|t| t != "card") {
                // Not a card: there is nothing of it we keep.
                return Notice::Ignored;
            }
            let customer = f.need_id(&["customer"]);
            let card = CardSummary {
                brand: f.need_text(&["card.brand"]),
                last4: f.need_text(&["card.last4"]),
                country: f.text(&["card.country"]),
            };
            f.done(Notice::PaymentMethod { customer, card })
        }
        _ => Notice::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "whsec_unit";

    fn sign(payload: &str, secret: &str, t: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{payload}").as_bytes());
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn check(payload: &str, header: &str, now: i64) -> Result<Verified, Rejection> {
        verify(payload.as_bytes(), Some(header), &[SECRET.to_string()], now)
    }

    #[test]
    fn signature_is_checked_before_and_apart_from_the_shape() {
        let t = 1_800_000_000;
        let odd = r#"{"id":"evt_1","type":"invoice.paid","data":{"object":{"id":"in_1"}}}"#;
        assert_eq!(
            check(odd, &sign(odd, "whsec_other", t), t),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(odd, &sign(odd, SECRET, t - 301), t),
            Err(Rejection::Stale)
        );
        assert_eq!(
            check(odd, &sign(odd, SECRET, t + 301), t),
            Err(Rejection::Stale)
        );
        assert_eq!(check(odd, "nonsense", t), Err(Rejection::BadHeader));
        assert_eq!(check(odd, "v1=00", t), Err(Rejection::BadHeader));
        assert_eq!(
            check(odd, &format!("t={t}"), t),
            Err(Rejection::BadSignature)
        );
        let header = format!("t={t},v1=zz,v0=00,{}", &sign(odd, SECRET, t)[13..]);
        let v = check(odd, &header, t).unwrap();
        assert_eq!(v.created, t, "no `created`: the time of receipt");
        let Notice::Unusable { missing } = v.notice else {
            panic!("{v:?}")
        };
        assert!(
            missing.contains(&"data.object.amount_paid".to_string()),
            "{missing:?}"
        );
        for (payload, why) in [
            ("not json", "not JSON"),
            (r#"{"type":"x"}"#, "no `id`"),
            (r#"{"id":"evt_2"}"#, "no `type`"),
        ] {
            let Err(Rejection::Unreadable(m)) = check(payload, &sign(payload, SECRET, t), t) else {
                panic!("{payload}")
            };
            assert!(m.contains(why), "{m}");
        }
        let other = r#"{"id":"evt_3","type":"customer.created"}"#;
        assert_eq!(
            check(other, &sign(other, SECRET, t), t).unwrap().notice,
            Notice::Ignored
        );
    }

    #[test]
    fn ids_may_be_expanded_and_old_and_new_shapes_read_alike() {
        let new = json!({
            "id": "in_1", "customer": {"id": "cus_1", "object": "customer"},
            "amount_paid": 1000, "currency": "usd",
            "parent": {"subscription_details": {"subscription": "sub_1"}},
            "lines": {"data": [{"period": {"start": 10, "end": 20},
                "pricing": {"price_details": {"price": "price_a"}}}]},
            "payments": {"data": [{"payment": {"payment_intent": {"id": "pi_1"}}}]}
        });
        let old = json!({
            "id": "in_1", "customer": "cus_1", "subscription": "sub_1",
            "amount_paid": 1000, "currency": "usd", "payment_intent": "pi_1",
            "period_start": 10, "period_end": 20,
            "lines": {"data": [{"price": {"id": "price_a", "object": "price"}}]}
        });
        let a = notice("invoice.paid", &new);
        assert_eq!(a, notice("invoice.paid", &old));
        assert_eq!(
            a,
            Notice::InvoicePaid {
                invoice_id: "in_1".into(),
                customer: Some("cus_1".into()),
                subscription: Some("sub_1".into()),
                price_id: Some("price_a".into()),
                period_start: Some(10),
                period_end: Some(20),
                amount_paid: 1000,
                currency: "usd".into(),
                payment_intents: vec!["pi_1".into()],
            }
        );
        let sub_new = json!({"id": "sub_1", "customer": "cus_1", "status": "active",
            "items": {"data": [{"current_period_end": 99, "price": {"id": "price_a"}}]}});
        let sub_old = json!({"id": "sub_1", "customer": "cus_1", "status": "active",
            "current_period_end": 99, "items": {"data": [{"plan": {"id": "price_a"}}]}});
        let s = notice("customer.subscription.updated", &sub_new);
        assert_eq!(s, notice("customer.subscription.updated", &sub_old));
        let Notice::Subscription {
            current_period_end,
            price_id,
            ..
        } = s
        else {
            panic!("{s:?}")
        };
        assert_eq!(
            (current_period_end, price_id.as_deref()),
            (Some(99), Some("price_a"))
        );
    }

    #[test]
    fn what_is_missing_is_named() {
        let n = notice(
            "invoice.paid",
            &json!({"id": "in_1", "amount_paid": 5, "currency": "usd"}),
        );
        let Notice::Unusable { missing } = n else {
            panic!("{n:?}")
        };
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].starts_with("data.object.customer or data.object.parent."));
        let n = notice(
            "invoice.paid",
            &json!({"id": "in_1", "customer": "cus_1", "subscription": "sub_1",
                    "amount_paid": 5, "currency": "usd"}),
        );
        assert_eq!(
            n,
            Notice::Unusable {
                missing: vec![
                    "data.object.lines.data[0].period.start or data.object.period_start".into()
                ]
            }
        );
        let pm = json!({"id": "pm_1", "type": "sepa_debit", "customer": "cus_1"});
        assert_eq!(notice("payment_method.attached", &pm), Notice::Ignored);
        let unpaid = json!({"id": "cs_1", "payment_status": "unpaid"});
        assert_eq!(
            notice("checkout.session.completed", &unpaid),
            Notice::Ignored
        );
    }
}
