//! A fake of the Stripe API on loopback, plus builders for signed webhook payloads.
//!
//! The server answers the three calls the app makes (`POST /v1/customers`,
//! `POST /v1/checkout/sessions`, `POST /v1/billing_portal/sessions`) with full objects that
//! async-stripe (API version [`API_VERSION`]) parses, checks the secret key, honours
//! `Idempotency-Key` as Stripe does, and records every request it receives.
//!
//! The builders return complete Stripe objects as the webhook would deliver them, carrying
//! fixed, distinctive personal data (listed in [`PII_MARKERS`]) so tests can check that none
//! of it ends up stored. Wrap an object with [`event`] and sign the result with [`sign`].

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The secret key the fake accepts (`Authorization: Bearer <key>`).
pub const SECRET_KEY: &str = "sk_test_journey_fake";
/// The webhook signing secret the tests sign events with.
pub const WEBHOOK_SECRET: &str = "whsec_journey_test_secret";
/// The API version async-stripe 1.0.0-rc.10 is generated for (`stripe_shared::version::VERSION`).
pub const API_VERSION: &str = "2026-09-30.endive";

/// Cardholder / customer name.
pub const CARDHOLDER_NAME: &str = "Jennifer Q. Marchetti";
/// Billing and receipt email (never the account's sign-in email).
pub const BILLING_EMAIL: &str = "jennifer.marchetti@example.org";
/// Billing phone number.
pub const PHONE: &str = "+14155550187";
/// Billing address, first line.
pub const ADDRESS_LINE1: &str = "1427 Larkspur Lane";
/// Billing address, second line.
pub const ADDRESS_LINE2: &str = "Garden Unit 7R";
/// Billing address postal code.
pub const POSTAL_CODE: &str = "94110-3321";
/// Billing address city.
pub const CITY: &str = "Sausalito";
/// Card fingerprint (identifies the card number across accounts).
pub const CARD_FINGERPRINT: &str = "Xt5EWLLDS7FJjR1c";
/// The customer's IP address, wherever an object carries one.
pub const IP_ADDRESS: &str = "203.0.113.77";
/// Card expiry month (a number in Stripe's objects, so not a marker).
pub const CARD_EXP_MONTH: i64 = 11;
/// Card expiry year (a number in Stripe's objects, so not a marker).
pub const CARD_EXP_YEAR: i64 = 2031;
/// Every personal-data string the builders embed; none of them should be stored by the app.
pub const PII_MARKERS: &[&str] = &[
    CARDHOLDER_NAME,
    BILLING_EMAIL,
    PHONE,
    ADDRESS_LINE1,
    ADDRESS_LINE2,
    POSTAL_CODE,
    CITY,
    CARD_FINGERPRINT,
    IP_ADDRESS,
];

/// Unit amount (cents) of the price the [`subscription`] builder puts on its item.
pub const PRICE_UNIT_AMOUNT: i64 = 1900;
/// The `default_payment_method` of subscriptions built by [`subscription`].
pub const DEFAULT_PAYMENT_METHOD: &str = "pm_1RkT2vLkdIwHu7ixQ8fL0c3Z";

/// The merchant account the objects belong to.
const ACCOUNT: &str = "acct_1JourneyFakeAcct";

/// One API call the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path, e.g. `/v1/checkout/sessions`.
    pub path: String,
    /// The decoded form body, in order (bracketed keys as sent, e.g. `metadata[account_id]`).
    pub form: Vec<(String, String)>,
    /// The `Idempotency-Key` header, if sent.
    pub idempotency_key: Option<String>,
}

/// A response kept for an idempotency key, with what produced it.
struct Saved {
    path: String,
    form: Vec<(String, String)>,
    status: u16,
    body: Value,
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    customers_created: usize,
    idempotent: HashMap<String, Saved>,
}

/// A running fake Stripe API; point the SDK's base URL at `base`.
#[derive(Clone)]
pub struct FakeStripe {
    /// `http://127.0.0.1:PORT`, no trailing slash; the SDK appends `/v1/...`.
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl FakeStripe {
    /// Starts the server on an ephemeral loopback port.
    pub async fn start() -> FakeStripe {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .default_service(web::to(handle))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        FakeStripe { base, state }
    }

    /// Every API call received so far, in order (including rejected ones).
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many distinct customers were actually created (idempotent replays don't count).
    pub fn customers_created(&self) -> usize {
        self.state.lock().unwrap().customers_created
    }

    /// The first value sent for a form key, e.g. `form_value(r, "metadata[account_id]")`.
    pub fn form_value(r: &Recorded, key: &str) -> Option<String> {
        first(&r.form, key).map(str::to_string)
    }
}

type Shared = web::Data<Arc<Mutex<State>>>;

async fn handle(req: HttpRequest, body: web::Bytes, state: Shared) -> HttpResponse {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let method = req.method().as_str().to_string();
    let path = req.path().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let idempotency_key = header("idempotency-key");
    let mut st = state.lock().unwrap();
    st.requests.push(Recorded {
        method: method.clone(),
        path: path.clone(),
        form: form.clone(),
        idempotency_key: idempotency_key.clone(),
    });

    match header("authorization") {
        Some(auth) if auth == format!("Bearer {SECRET_KEY}") => {}
        Some(_) => {
            return error(
                401,
                "invalid_request_error",
                "Invalid API Key provided: sk_test_********fake",
            )
        }
        None => {
            return error(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the \
                 Authorization header, using Bearer auth \
                 (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        }
    }

    if method == "POST" {
        if let Some(key) = &idempotency_key {
            if let Some(saved) = st.idempotent.get(key) {
                if saved.path != path {
                    return error(
                        400,
                        "idempotency_error",
                        &format!(
                            "Keys for idempotent requests can only be used for the same endpoint \
                             they were first used for ('{}' vs '{path}'). Try using a key other \
                             than '{key}' if you meant to execute a different request.",
                            saved.path
                        ),
                    );
                }
                if saved.form != form {
                    return error(
                        400,
                        "idempotency_error",
                        &format!(
                            "Keys for idempotent requests can only be used with the same \
                             parameters they were first used with. Try using a key other than \
                             '{key}' if you meant to execute a different request."
                        ),
                    );
                }
                return reply(saved.status, &saved.body, true);
            }
        }
    }

    let (status, body) = match (method.as_str(), path.as_str()) {
        ("POST", "/v1/customers") => {
            st.customers_created += 1;
            (200, customer_object(&form))
        }
        ("POST", "/v1/checkout/sessions") => create_checkout_session(&form),
        ("POST", "/v1/billing_portal/sessions") => create_portal_session(&form),
        _ => {
            return error(
                404,
                "invalid_request_error",
                &format!(
                    "Unrecognized request URL ({method}: {path}). Please see \
                     https://stripe.com/docs or we can help at https://support.stripe.com/."
                ),
            )
        }
    };
    if method == "POST" {
        if let Some(key) = idempotency_key {
            let saved = Saved {
                path,
                form,
                status,
                body: body.clone(),
            };
            st.idempotent.insert(key, saved);
        }
    }
    reply(status, &body, false)
}

fn reply(status: u16, body: &Value, replayed: bool) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(status).unwrap();
    let mut resp = HttpResponse::build(code);
    resp.insert_header(("Request-Id", format!("req_{}", rand_id(14))));
    if replayed {
        resp.insert_header(("Idempotent-Replayed", "true"));
    }
    resp.json(body)
}

/// Stripe's error shape: `{"error":{"type":..,"message":..}}`.
fn error(status: u16, kind: &str, message: &str) -> HttpResponse {
    let body = json!({ "error": { "type": kind, "message": message } });
    reply(status, &body, false)
}

/// A 400 with the offending parameter, as Stripe reports missing or invalid params.
fn error_body(kind: &str, param: &str, message: &str) -> (u16, Value) {
    let body = json!({ "error": { "type": kind, "param": param, "message": message } });
    (400, body)
}

fn first<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `prefix[key]=value` pairs (one level, non-empty values) as a JSON object.
fn bracketed(form: &[(String, String)], prefix: &str) -> Value {
    let mut out = Map::new();
    for (k, v) in form {
        let inner = k
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('['))
            .and_then(|r| r.strip_suffix(']'));
        if let Some(inner) = inner {
            if !inner.contains('[') && !v.is_empty() {
                out.insert(inner.to_string(), json!(v));
            }
        }
    }
    Value::Object(out)
}

fn rand_id(len: usize) -> String {
    let mut s = uuid::Uuid::new_v4().simple().to_string();
    s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    s.truncate(len);
    s
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The part of a Stripe id after its type prefix (`sub_123` -> `123`).
fn tail(id: &str) -> &str {
    id.split_once('_').map_or(id, |(_, t)| t)
}

fn customer_object(form: &[(String, String)]) -> Value {
    let opt = |k: &str| first(form, k).filter(|v| !v.is_empty());
    merged([
        json!({
            "id": format!("cus_{}", rand_id(14)),
            "object": "customer",
            "address": null,
            "balance": 0,
            "business_name": null,
            "created": now(),
            "currency": null,
            "customer_account": null,
            "default_source": null,
            "delinquent": false,
            "description": opt("description"),
            "discount": null,
            "email": opt("email"),
            "individual_name": null,
            "invoice_prefix": rand_id(8).to_uppercase(),
            "invoice_settings": {
                "custom_fields": null,
                "default_payment_method": null,
                "footer": null,
                "rendering_options": null
            },
            "livemode": false,
            "metadata": bracketed(form, "metadata")
        }),
        json!({
            "name": opt("name"),
            "next_invoice_sequence": 1,
            "phone": opt("phone"),
            "preferred_locales": [],
            "shipping": null,
            "tax_exempt": "none",
            "test_clock": null
        }),
    ])
}

fn create_checkout_session(form: &[(String, String)]) -> (u16, Value) {
    let Some(mode) = first(form, "mode") else {
        return error_body(
            "invalid_request_error",
            "mode",
            "Missing required param: mode.",
        );
    };
    if !matches!(mode, "payment" | "subscription" | "setup") {
        return error_body(
            "invalid_request_error",
            "mode",
            &format!("Invalid mode: must be one of payment, setup, or subscription (got {mode})."),
        );
    }
    let has_items = form.iter().any(|(k, _)| k.starts_with("line_items["));
    if mode != "setup" && !has_items {
        return error_body(
            "invalid_request_error",
            "line_items",
            &format!("Missing required param: line_items. It is required in `{mode}` mode."),
        );
    }
    let id = format!("cs_test_{}", rand_id(58));
    let created = now();
    let mut s = checkout_session_base(&id, mode, created);
    let opt = |k: &str| first(form, k).filter(|v| !v.is_empty());
    s["url"] = json!(format!("https://checkout.stripe.com/c/pay/{id}"));
    s["status"] = json!("open");
    s["payment_status"] = json!("unpaid");
    s["customer"] = json!(opt("customer"));
    s["customer_email"] = json!(opt("customer_email"));
    s["client_reference_id"] = json!(opt("client_reference_id"));
    s["metadata"] = bracketed(form, "metadata");
    s["success_url"] = json!(opt("success_url"));
    s["cancel_url"] = json!(opt("cancel_url"));
    s["return_url"] = json!(opt("return_url"));
    s["locale"] = json!(opt("locale"));
    s["client_secret"] = Value::Null;
    if let Some(exp) = opt("expires_at").and_then(|v| v.parse::<i64>().ok()) {
        s["expires_at"] = json!(exp);
    }
    if opt("allow_promotion_codes") == Some("true") {
        s["allow_promotion_codes"] = json!(true);
    }
    if opt("customer").is_none() && mode == "payment" {
        s["customer_creation"] = json!(opt("customer_creation").unwrap_or("if_required"));
    }
    if let Some(total) = price_data_total(form) {
        s["amount_subtotal"] = json!(total);
        s["amount_total"] = json!(total);
    }
    if mode == "setup" {
        s["payment_status"] = json!("no_payment_required");
    }
    (200, s)
}

/// Sum of `line_items[i][price_data][unit_amount] * quantity`, when every item has `price_data`.
fn price_data_total(form: &[(String, String)]) -> Option<i64> {
    let mut total = 0;
    for i in 0.. {
        let p = |k: &str| first(form, &format!("line_items[{i}]{k}"));
        if p("[price]").is_none() && p("[price_data][unit_amount]").is_none() {
            return (i > 0).then_some(total);
        }
        let unit: i64 = p("[price_data][unit_amount]")?.parse().ok()?;
        let qty: i64 = p("[quantity]").and_then(|q| q.parse().ok()).unwrap_or(1);
        total += unit * qty;
    }
    None
}

fn create_portal_session(form: &[(String, String)]) -> (u16, Value) {
    let Some(customer) = first(form, "customer").filter(|c| !c.is_empty()) else {
        return error_body(
            "invalid_request_error",
            "customer",
            "Missing required param: customer.",
        );
    };
    let body = json!({
        "id": format!("bps_{}", rand_id(24)),
        "object": "billing_portal.session",
        "configuration": first(form, "configuration").unwrap_or("bpc_1JourneyDefaultPortalCfg"),
        "created": now(),
        "customer": customer,
        "customer_account": null,
        "flow": null,
        "livemode": false,
        "locale": first(form, "locale"),
        "on_behalf_of": first(form, "on_behalf_of"),
        "return_url": first(form, "return_url"),
        "url": format!("https://billing.stripe.com/p/session/test_{}", rand_id(40))
    });
    (200, body)
}

// ---------------------------------------------------------------------------------------
// Webhook signing and envelopes
// ---------------------------------------------------------------------------------------

fn v1_signature(payload: &str, secret: &str, ts: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{ts}.{payload}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Stripe-Signature header value: "t=<ts>,v1=<hex hmac-sha256(secret, "<ts>.<payload>")>".
pub fn sign(payload: &str, secret: &str, ts: i64) -> String {
    format!("t={ts},v1={}", v1_signature(payload, secret, ts))
}

/// Header with several v1 signatures (secret rotation): one per secret, same timestamp.
pub fn sign_multi(payload: &str, secrets: &[&str], ts: i64) -> String {
    let mut header = format!("t={ts}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&v1_signature(payload, secret, ts));
    }
    header
}

/// The event envelope as a JSON string: `{"id","object":"event","api_version":API_VERSION,
/// "created","livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},
/// "type","data":{"object":object}}`.
pub fn event(id: &str, event_type: &str, created: i64, object: Value) -> String {
    envelope(id, event_type, created, json!({ "object": object }))
}

/// Like [`event`], with `data.previous_attributes` as Stripe sends on `*.updated` events.
pub fn event_with_previous(
    id: &str,
    event_type: &str,
    created: i64,
    object: Value,
    previous_attributes: Value,
) -> String {
    let data = json!({ "object": object, "previous_attributes": previous_attributes });
    envelope(id, event_type, created, data)
}

/// Like [`event`], rendered for another Stripe API version (`api_version` in the envelope).
pub fn event_at_version(
    id: &str,
    event_type: &str,
    created: i64,
    object: Value,
    api_version: &str,
) -> String {
    let mut e: Value = serde_json::from_str(&event(id, event_type, created, object)).unwrap();
    e["api_version"] = json!(api_version);
    e.to_string()
}

fn envelope(id: &str, event_type: &str, created: i64, data: Value) -> String {
    json!({
        "id": id,
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": data,
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": event_type
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------
// Full object builders
// ---------------------------------------------------------------------------------------

fn pii_address() -> Value {
    json!({
        "city": CITY,
        "country": "US",
        "line1": ADDRESS_LINE1,
        "line2": ADDRESS_LINE2,
        "postal_code": POSTAL_CODE,
        "state": "CA"
    })
}

fn one_line_address() -> String {
    format!("{ADDRESS_LINE1}, {ADDRESS_LINE2}, {CITY}, CA {POSTAL_CODE}, US")
}

fn billing_details() -> Value {
    json!({
        "address": pii_address(),
        "email": BILLING_EMAIL,
        "name": CARDHOLDER_NAME,
        "phone": PHONE,
        "tax_id": null
    })
}

fn list(url: String, data: Vec<Value>) -> Value {
    json!({
        "object": "list",
        "data": data,
        "has_more": false,
        "total_count": data.len(),
        "url": url
    })
}

/// Joins JSON objects: `json!` hits the recursion limit on objects with many keys.
fn merged<const N: usize>(parts: [Value; N]) -> Value {
    let mut out = Map::new();
    for part in parts {
        if let Value::Object(m) = part {
            out.extend(m);
        }
    }
    Value::Object(out)
}

/// Every field of a Checkout Session with the defaults of a hosted card session.
fn checkout_session_base(id: &str, mode: &str, created: i64) -> Value {
    merged([
        json!({
            "id": id,
            "object": "checkout.session",
            "adaptive_pricing": { "enabled": false },
            "after_expiration": null,
            "allow_promotion_codes": null,
            "amount_subtotal": null,
            "amount_total": null,
            "automatic_tax": {
                "enabled": false,
                "liability": null,
                "provider": null,
                "status": null
            },
            "billing_address_collection": null,
            "branding_settings": {
                "background_color": "#ffffff",
                "border_style": "rounded",
                "button_color": "#0074d4",
                "display_name": "Journey",
                "font_family": "default",
                "icon": null,
                "logo": null
            },
            "cancel_url": null,
            "client_reference_id": null,
            "client_secret": null,
            "collected_information": null,
            "consent": null,
            "consent_collection": null,
            "created": created,
            "currency": "usd"
        }),
        json!({
            "currency_conversion": null,
            "custom_fields": [],
            "custom_text": {
                "after_submit": null,
                "shipping_address": null,
                "submit": null,
                "terms_of_service_acceptance": null
            },
            "customer": null,
            "customer_account": null,
            "customer_creation": null,
            "customer_details": null,
            "customer_email": null,
            "discounts": [],
            "excluded_payment_method_types": [],
            "expires_at": created + 86_400,
            "integration_identifier": null,
            "invoice": null,
            "invoice_creation": if mode == "payment" {
                json!({
                    "enabled": false,
                    "invoice_data": {
                        "account_tax_ids": null,
                        "custom_fields": null,
                        "description": null,
                        "footer": null,
                        "issuer": null,
                        "metadata": {},
                        "rendering_options": null
                    }
                })
            } else {
                Value::Null
            },
            "livemode": false,
            "locale": null,
            "managed_payments": { "enabled": false },
            "metadata": {}
        }),
        json!({
            "mode": mode,
            "name_collection": {
                "business": { "enabled": false, "optional": false },
                "individual": { "enabled": false, "optional": false }
            },
            "optional_items": null,
            "origin_context": null,
            "payment_intent": null,
            "payment_link": null,
            "payment_method_collection": if mode == "payment" { "if_required" } else { "always" },
            "payment_method_configuration_details": {
                "id": "pmc_1JourneyDefaultPmCfg",
                "parent": null
            },
            "payment_method_options": { "card": { "request_three_d_secure": "automatic" } },
            "payment_method_types": ["card", "link"],
            "payment_status": "unpaid",
            "permissions": null,
            "phone_number_collection": { "enabled": false },
            "presentment_details": null,
            "recovered_from": null,
            "redirect_on_completion": null,
            "return_url": null,
            "saved_payment_method_options": {
                "allow_redisplay_filters": ["always"],
                "payment_method_remove": "disabled",
                "payment_method_save": null
            }
        }),
        json!({
            "setup_intent": null,
            "shipping_address_collection": null,
            "shipping_cost": null,
            "shipping_options": [],
            "status": "open",
            "submit_type": null,
            "subscription": null,
            "success_url": null,
            "tax_id_collection": { "enabled": false, "required": "never" },
            "total_details": { "amount_discount": 0, "amount_shipping": 0, "amount_tax": 0 },
            "ui_mode": "hosted_page",
            "url": null,
            "wallet_options": null
        }),
    ])
}

/// A completed Checkout Session (`checkout.session.completed`): status "complete",
/// payment_status "paid", `client_reference_id` = `account_id`, customer_details with PII.
#[allow(clippy::too_many_arguments)]
pub fn checkout_session_completed(
    session_id: &str,
    mode: &str,
    account_id: &str,
    customer: &str,
    payment_intent: Option<&str>,
    subscription: Option<&str>,
    amount_total: i64,
    metadata: Value,
) -> Value {
    let created = now() - 180;
    let mut s = checkout_session_base(session_id, mode, created);
    s["status"] = json!("complete");
    s["payment_status"] = json!("paid");
    s["client_reference_id"] = json!(account_id);
    s["customer"] = json!(customer);
    s["payment_intent"] = json!(payment_intent);
    s["subscription"] = json!(subscription);
    if mode == "subscription" {
        s["invoice"] = json!(format!("in_{}", tail(tail(session_id))));
    }
    s["amount_subtotal"] = json!(amount_total);
    s["amount_total"] = json!(amount_total);
    s["metadata"] = metadata;
    s["billing_address_collection"] = json!("required");
    s["phone_number_collection"] = json!({ "enabled": true });
    s["customer_details"] = json!({
        "address": pii_address(),
        "business_name": null,
        "email": BILLING_EMAIL,
        "individual_name": null,
        "name": CARDHOLDER_NAME,
        "phone": PHONE,
        "tax_exempt": "none",
        "tax_ids": []
    });
    s["collected_information"] = json!({
        "business_name": null,
        "individual_name": null,
        "shipping_details": null
    });
    s["success_url"] =
        json!("https://app.journey.test/billing/success?session_id={CHECKOUT_SESSION_ID}");
    s["cancel_url"] = json!("https://app.journey.test/billing/cancel");
    s
}

fn price_object(price_id: &str, created: i64) -> Value {
    json!({
        "id": price_id,
        "object": "price",
        "active": true,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": "usd",
        "custom_unit_amount": null,
        "livemode": false,
        "lookup_key": null,
        "metadata": {},
        "nickname": null,
        "product": format!("prod_{}", tail(price_id)),
        "recurring": {
            "interval": "month",
            "interval_count": 1,
            "meter": null,
            "trial_period_days": null,
            "usage_type": "licensed"
        },
        "tax_behavior": "unspecified",
        "tiers_mode": null,
        "transform_quantity": null,
        "type": "recurring",
        "unit_amount": PRICE_UNIT_AMOUNT,
        "unit_amount_decimal": PRICE_UNIT_AMOUNT.to_string()
    })
}

fn plan_object(price_id: &str, created: i64) -> Value {
    json!({
        "id": price_id,
        "object": "plan",
        "active": true,
        "amount": PRICE_UNIT_AMOUNT,
        "amount_decimal": PRICE_UNIT_AMOUNT.to_string(),
        "billing_scheme": "per_unit",
        "created": created,
        "currency": "usd",
        "interval": "month",
        "interval_count": 1,
        "livemode": false,
        "metadata": {},
        "meter": null,
        "nickname": null,
        "product": format!("prod_{}", tail(price_id)),
        "tiers_mode": null,
        "transform_usage": null,
        "trial_period_days": null,
        "usage_type": "licensed"
    })
}

/// A Subscription with one item on `price_id`. In this API version the billing period lives
/// on the item (`items.data[0].current_period_start/end`), not on the subscription.
/// `status` is a Stripe value ("active", "past_due", "canceled", ...).
#[allow(clippy::too_many_arguments)]
pub fn subscription(
    sub_id: &str,
    customer: &str,
    price_id: &str,
    status: &str,
    current_period_start: i64,
    current_period_end: i64,
    cancel_at_period_end: bool,
    metadata: Value,
) -> Value {
    let created = current_period_start;
    let canceled = status == "canceled";
    let canceled_at = (cancel_at_period_end || canceled)
        .then(|| (current_period_start + 86_400).min(current_period_end));
    let item_id = format!("si_{}", tail(sub_id));
    let item = json!({
        "id": item_id,
        "object": "subscription_item",
        "billed_until": null,
        "billing_thresholds": null,
        "created": created,
        "current_period_end": current_period_end,
        "current_period_start": current_period_start,
        "discounts": [],
        "metadata": {},
        "plan": plan_object(price_id, created - 86_400),
        "price": price_object(price_id, created - 86_400),
        "quantity": 1,
        "subscription": sub_id,
        "tax_rates": []
    });
    let items = list(
        format!("/v1/subscription_items?subscription={sub_id}"),
        vec![item],
    );
    merged([
        json!({
            "id": sub_id,
            "object": "subscription",
            "application": null,
            "application_fee_percent": null,
            "automatic_tax": { "disabled_reason": null, "enabled": false, "liability": null },
            "billing_cycle_anchor": current_period_start,
            "billing_cycle_anchor_config": null,
            "billing_mode": {
                "flexible": { "proration_discounts": "included" },
                "type": "flexible",
                "updated_at": created
            },
            "billing_schedules": [],
            "billing_thresholds": null,
            "cancel_at": if cancel_at_period_end { json!(current_period_end) } else { Value::Null },
            "cancel_at_period_end": cancel_at_period_end,
            "canceled_at": canceled_at,
            "cancellation_details": {
                "comment": null,
                "feedback": null,
                "reason": canceled_at.map(|_| "cancellation_requested")
            },
            "collection_method": "charge_automatically",
            "created": created,
            "currency": "usd",
            "customer": customer
        }),
        json!({
            "customer_account": null,
            "days_until_due": null,
            "default_payment_method": DEFAULT_PAYMENT_METHOD,
            "default_source": null,
            "default_tax_rates": [],
            "description": null,
            "discounts": [],
            "ended_at": if canceled { json!(canceled_at) } else { Value::Null },
            "invoice_settings": {
                "account_tax_ids": null,
                "custom_fields": null,
                "description": null,
                "footer": null,
                "issuer": { "type": "self" }
            },
            "items": items,
            "latest_invoice": format!("in_{}", tail(sub_id)),
            "livemode": false,
            "managed_payments": null,
            "metadata": metadata,
            "next_pending_invoice_item_invoice": null,
            "on_behalf_of": null,
            "pause_collection": null,
            "payment_settings": {
                "payment_method_options": {
                    "acss_debit": null,
                    "bancontact": null,
                    "card": { "network": null, "request_three_d_secure": "automatic" },
                    "customer_balance": null,
                    "konbini": null,
                    "sepa_debit": null,
                    "us_bank_account": null
                },
                "payment_method_types": null,
                "save_default_payment_method": "on_subscription"
            }
        }),
        json!({
            "pending_invoice_item_interval": null,
            "pending_setup_intent": null,
            "pending_update": null,
            "presentment_details": null,
            "schedule": null,
            "start_date": created,
            "status": status,
            "status_details": null,
            "test_clock": null,
            "transfer_data": null,
            "trial_end": null,
            "trial_settings": { "end_behavior": { "missing_payment_method": "create_invoice" } },
            "trial_start": null
        }),
    ])
}

/// A paid Invoice for one subscription period. The subscription link is where this API
/// version puts it: `parent.subscription_details.subscription` on the invoice and
/// `parent.subscription_item_details.subscription` on its line (no top-level `subscription`).
/// The line's `period` is `[period_start, period_end]`; the invoice-level `period_start/end`
/// follow Stripe (the usage period before the line's, empty for a first invoice).
#[allow(clippy::too_many_arguments)]
pub fn invoice(
    invoice_id: &str,
    customer: &str,
    subscription: &str,
    price_id: &str,
    period_start: i64,
    period_end: i64,
    amount_paid: i64,
    billing_reason: &str,
) -> Value {
    let created = period_start;
    let (inv_start, inv_end) = if billing_reason == "subscription_cycle" {
        (period_start - (period_end - period_start), period_start)
    } else {
        (period_start, period_start)
    };
    let description = format!(
        "1 × Journey Pro (at ${}.{:02} / month)",
        amount_paid / 100,
        amount_paid % 100
    );
    let line = json!({
        "id": format!("il_{}", tail(invoice_id)),
        "object": "line_item",
        "amount": amount_paid,
        "currency": "usd",
        "description": description,
        "discount_amounts": [],
        "discountable": true,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": false,
        "metadata": {},
        "parent": {
            "invoice_item_details": null,
            "subscription_item_details": {
                "invoice_item": null,
                "proration": false,
                "proration_details": { "credited_items": null },
                "subscription": subscription,
                "subscription_item": format!("si_{}", tail(subscription))
            },
            "type": "subscription_item_details"
        },
        "period": { "end": period_end, "start": period_start },
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": { "price": price_id, "product": format!("prod_{}", tail(price_id)) },
            "type": "price_details",
            "unit_amount_decimal": amount_paid.to_string()
        },
        "quantity": 1,
        "quantity_decimal": "1",
        "subtotal": amount_paid,
        "taxes": []
    });
    let mut number = tail(customer).to_uppercase();
    number.truncate(8);
    number.push_str("-0001");
    let lines = list(format!("/v1/invoices/{invoice_id}/lines"), vec![line]);
    let hosted_invoice_url = format!(
        "https://invoice.stripe.com/i/{ACCOUNT}/test_{}?s=ap",
        tail(invoice_id)
    );
    let invoice_pdf = format!(
        "https://pay.stripe.com/invoice/{ACCOUNT}/test_{}/pdf?s=ap",
        tail(invoice_id)
    );
    merged([
        json!({
            "id": invoice_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Journey Labs",
            "account_tax_ids": null,
            "amount_due": amount_paid,
            "amount_overpaid": 0,
            "amount_paid": amount_paid,
            "amount_paid_off_stripe": 0,
            "amount_remaining": 0,
            "amount_shipping": 0,
            "application": null,
            "attempt_count": 1,
            "attempted": true,
            "auto_advance": false,
            "automatic_tax": {
                "disabled_reason": null,
                "enabled": false,
                "liability": null,
                "provider": null,
                "status": null
            },
            "automatically_finalizes_at": null,
            "billing_reason": billing_reason
        }),
        json!({
            "collection_method": "charge_automatically",
            "created": created,
            "currency": "usd",
            "custom_fields": null,
            "customer": customer,
            "customer_account": null,
            "customer_address": pii_address(),
            "customer_email": BILLING_EMAIL,
            "customer_name": CARDHOLDER_NAME,
            "customer_phone": PHONE,
            "customer_shipping": null,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": null,
            "default_source": null,
            "default_tax_rates": [],
            "description": null,
            "discounts": []
        }),
        json!({
            "due_date": null,
            "effective_at": created,
            "ending_balance": 0,
            "footer": null,
            "from_invoice": null,
            "hosted_invoice_url": hosted_invoice_url,
            "invoice_pdf": invoice_pdf,
            "issuer": { "type": "self" },
            "last_finalization_error": null,
            "latest_revision": null,
            "lines": lines,
            "livemode": false,
            "metadata": {},
            "next_payment_attempt": null,
            "number": number,
            "on_behalf_of": null,
            "parent": {
                "quote_details": null,
                "subscription_details": {
                    "metadata": {},
                    "subscription": subscription,
                    "subscription_proration_date": null
                },
                "type": "subscription_details"
            },
            "payment_settings": {
                "default_mandate": null,
                "payment_method_options": null,
                "payment_method_types": null
            }
        }),
        json!({
            "period_end": inv_end,
            "period_start": inv_start,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": null,
            "rendering": null,
            "shipping_cost": null,
            "shipping_details": null,
            "starting_balance": 0,
            "statement_descriptor": null,
            "status": "paid",
            "status_details": null,
            "status_transitions": {
                "finalized_at": created,
                "marked_uncollectible_at": null,
                "paid_at": created + 2,
                "voided_at": null
            },
            "subtotal": amount_paid,
            "subtotal_excluding_tax": amount_paid,
            "test_clock": null,
            "threshold_reason": null,
            "total": amount_paid
        }),
        json!({
            "total_discount_amounts": [],
            "total_excluding_tax": amount_paid,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": created + 1
        }),
    ])
}

fn card_checks() -> Value {
    json!({
        "address_line1_check": "pass",
        "address_postal_code_check": "pass",
        "cvc_check": "pass"
    })
}

/// A succeeded card Charge (`charge.refunded` and friends) with billing details, card
/// details (fingerprint) and receipt email carrying PII.
pub fn charge(
    charge_id: &str,
    customer: &str,
    payment_intent: &str,
    amount: i64,
    amount_refunded: i64,
    refunded: bool,
) -> Value {
    let created = now() - 3_600;
    let receipt_url = format!(
        "https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8x{}",
        tail(charge_id)
    );
    merged([
        json!({
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": amount_refunded,
            "application": null,
            "application_fee": null,
            "application_fee_amount": null,
            "authorization_code": null,
            "balance_transaction": format!("txn_{}", tail(charge_id)),
            "billing_details": billing_details(),
            "calculated_statement_descriptor": "JOURNEY",
            "captured": true,
            "created": created,
            "currency": "usd",
            "customer": customer,
            "description": null,
            "disputed": false
        }),
        json!({
            "failure_balance_transaction": null,
            "failure_code": null,
            "failure_message": null,
            "fraud_details": {},
            "livemode": false,
            "metadata": {},
            "on_behalf_of": null,
            "outcome": {
                "advice_code": null,
                "network_advice_code": null,
                "network_decline_code": null,
                "network_status": "approved_by_network",
                "reason": null,
                "risk_level": "normal",
                "risk_score": 32,
                "seller_message": "Payment complete.",
                "type": "authorized"
            },
            "paid": true,
            "payment_intent": payment_intent,
            "payment_method": format!("pm_{}", tail(payment_intent)),
            "payment_method_details": {
                "card": {
                    "amount_authorized": amount,
                    "authorization_code": "482913",
                    "brand": "visa",
                    "checks": card_checks(),
                    "country": "US",
                    "description": null,
                    "exp_month": CARD_EXP_MONTH,
                    "exp_year": CARD_EXP_YEAR,
                    "extended_authorization": { "status": "disabled" },
                    "fingerprint": CARD_FINGERPRINT,
                    "funding": "credit",
                    "iin": null,
                    "incremental_authorization": { "status": "unavailable" },
                    "installments": null,
                    "issuer": null,
                    "last4": "4242",
                    "mandate": null,
                    "multicapture": { "status": "unavailable" },
                    "network": "visa",
                    "network_token": { "used": false },
                    "network_transaction_id": "104102978678771",
                    "overcapture": { "maximum_amount_capturable": amount, "status": "unavailable" },
                    "regulated_status": "unregulated",
                    "three_d_secure": null,
                    "wallet": null
                },
                "type": "card"
            },
            "radar_options": {},
            "receipt_email": BILLING_EMAIL,
            "receipt_number": null,
            "receipt_url": receipt_url,
            "refunded": refunded,
            "review": null
        }),
        json!({
            "shipping": null,
            "source": null,
            "source_transfer": null,
            "statement_descriptor": null,
            "statement_descriptor_suffix": null,
            "status": "succeeded",
            "transfer_data": null,
            "transfer_group": null
        }),
    ])
}

/// A freshly opened card Dispute (`charge.dispute.created`); `reason` is a Stripe value
/// ("fraudulent", "product_not_received", ...). Its prefilled `evidence` carries PII.
pub fn dispute(
    dispute_id: &str,
    charge_id: &str,
    payment_intent: &str,
    amount: i64,
    reason: &str,
) -> Value {
    let created = now() - 60;
    let network_reason_code = if reason == "fraudulent" {
        "10.4"
    } else {
        "13.1"
    };
    let dispute_fee = json!({
        "amount": 1500,
        "application": null,
        "currency": "usd",
        "description": "Dispute fee",
        "type": "stripe_fee"
    });
    let withdrawal = json!({
        "id": format!("txn_{}", tail(dispute_id)),
        "object": "balance_transaction",
        "amount": -amount,
        "available_on": created,
        "balance_type": "payments",
        "created": created,
        "currency": "usd",
        "description": format!("Chargeback withdrawal for {charge_id}"),
        "exchange_rate": null,
        "fee": 1500,
        "fee_details": [dispute_fee],
        "net": -amount - 1500,
        "reporting_category": "dispute",
        "source": dispute_id,
        "status": "available",
        "type": "adjustment"
    });
    let evidence = merged([
        json!({
            "access_activity_log": null,
            "billing_address": one_line_address(),
            "cancellation_policy": null,
            "cancellation_policy_disclosure": null,
            "cancellation_rebuttal": null,
            "customer_communication": null,
            "customer_email_address": BILLING_EMAIL,
            "customer_name": CARDHOLDER_NAME,
            "customer_purchase_ip": IP_ADDRESS,
            "customer_signature": null,
            "duplicate_charge_documentation": null,
            "duplicate_charge_explanation": null,
            "duplicate_charge_id": null,
            "enhanced_evidence": {}
        }),
        json!({
            "product_description": "Journey Pro image-generation credits",
            "receipt": null,
            "refund_policy": null,
            "refund_policy_disclosure": null,
            "refund_refusal_explanation": null,
            "service_date": null,
            "service_documentation": null,
            "shipping_address": one_line_address(),
            "shipping_carrier": null,
            "shipping_date": null,
            "shipping_documentation": null,
            "shipping_tracking_number": null,
            "uncategorized_file": null,
            "uncategorized_text": null
        }),
    ]);
    json!({
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [withdrawal],
        "charge": charge_id,
        "created": created,
        "currency": "usd",
        "enhanced_eligibility_types": [],
        "evidence": evidence,
        "evidence_details": {
            "due_by": created + 20 * 86_400,
            "enhanced_eligibility": {},
            "has_evidence": false,
            "past_due": false,
            "submission_count": 0
        },
        "is_charge_refundable": false,
        "livemode": false,
        "metadata": {},
        "network_reason_code": network_reason_code,
        "payment_intent": payment_intent,
        "payment_method_details": {
            "card": {
                "brand": "visa",
                "case_type": "chargeback",
                "network": "visa",
                "network_reason_code": network_reason_code
            },
            "type": "card"
        },
        "reason": reason,
        "status": "needs_response"
    })
}

/// A card PaymentMethod attached to `customer` (`payment_method.attached` / `.updated`),
/// with billing details and card fingerprint carrying PII.
pub fn payment_method(
    pm_id: &str,
    customer: &str,
    brand: &str,
    last4: &str,
    country: &str,
) -> Value {
    json!({
        "id": pm_id,
        "object": "payment_method",
        "allow_redisplay": "limited",
        "billing_details": billing_details(),
        "card": {
            "brand": brand,
            "checks": card_checks(),
            "country": country,
            "description": null,
            "display_brand": brand,
            "exp_month": CARD_EXP_MONTH,
            "exp_year": CARD_EXP_YEAR,
            "fingerprint": CARD_FINGERPRINT,
            "funding": "credit",
            "generated_from": null,
            "iin": null,
            "issuer": null,
            "last4": last4,
            "networks": { "available": [brand], "preferred": null },
            "regulated_status": "unregulated",
            "three_d_secure_usage": { "supported": true },
            "wallet": null
        },
        "created": now() - 600,
        "customer": customer,
        "customer_account": null,
        "livemode": false,
        "metadata": {},
        "radar_options": {},
        "type": "card"
    })
}

// ---------------------------------------------------------------------------------------
// Other Stripe API versions
// ---------------------------------------------------------------------------------------

/// An API version before `2025-03-31.basil` (which moved the invoice's subscription under
/// `parent`, the line's price under `pricing`, payments into `payments`, and the period onto
/// subscription items).
pub const OLD_API_VERSION: &str = "2024-06-20";

/// Removes `key` from an object; panics when it was not there (the builders must match).
pub fn remove(v: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let removed = v
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(key));
    assert!(removed.is_some(), "{pointer} was not in the object");
}

/// The current-version [`invoice`] with its payment listed in `payments` (as Stripe does
/// for invoices paid through a payment intent from `2025-03-31.basil` on).
pub fn with_payments(mut invoice: Value, payment_intent: &str) -> Value {
    let id = invoice["id"].as_str().unwrap().to_string();
    let payment = json!({
        "id": format!("inpay_{}", tail(&id)),
        "object": "invoice_payment",
        "amount_paid": invoice["amount_paid"],
        "amount_requested": invoice["amount_paid"],
        "created": invoice["created"],
        "currency": "usd",
        "invoice": id,
        "is_default": true,
        "livemode": false,
        "payment": { "payment_intent": payment_intent, "type": "payment_intent" },
        "status": "paid",
        "status_transitions": { "canceled_at": null, "paid_at": invoice["created"] }
    });
    invoice["payments"] = list(format!("/v1/invoice_payments?invoice={id}"), vec![payment]);
    invoice
}

/// The [`invoice`] as API version [`OLD_API_VERSION`] renders it: `subscription`,
/// `payment_intent` and `charge` on the invoice, `price`, `plan`, `subscription`,
/// `proration` and `type` on the line (which has no `subtotal`, `parent` or `pricing`), and
/// no `parent` on the invoice.
#[allow(clippy::too_many_arguments)]
pub fn invoice_old_version(
    invoice_id: &str,
    customer: &str,
    subscription: &str,
    price_id: &str,
    period_start: i64,
    period_end: i64,
    amount_paid: i64,
    payment_intent: &str,
) -> Value {
    let mut inv = invoice(
        invoice_id,
        customer,
        subscription,
        price_id,
        period_start,
        period_end,
        amount_paid,
        "subscription_cycle",
    );
    for gone in [
        "/parent",
        "/amount_overpaid",
        "/lines/data/0/parent",
        "/lines/data/0/pricing",
        "/lines/data/0/subtotal",
        "/lines/data/0/pretax_credit_amounts",
        "/total_pretax_credit_amounts",
    ] {
        remove(&mut inv, gone);
    }
    let created = inv["created"].as_i64().unwrap();
    inv["subscription"] = json!(subscription);
    inv["payment_intent"] = json!(payment_intent);
    inv["charge"] = json!(format!("ch_{}", tail(payment_intent)));
    inv["paid"] = json!(true);
    inv["tax"] = Value::Null;
    let line = &mut inv["lines"]["data"][0];
    line["price"] = price_object(price_id, created - 86_400);
    line["plan"] = plan_object(price_id, created - 86_400);
    line["subscription"] = json!(subscription);
    line["subscription_item"] = json!(format!("si_{}", tail(subscription)));
    line["proration"] = json!(false);
    line["type"] = json!("subscription");
    line["tax_amounts"] = json!([]);
    inv
}

/// The [`subscription`] as API version [`OLD_API_VERSION`] renders it: the billing period
/// on the subscription (`current_period_start/end`), not on its items.
#[allow(clippy::too_many_arguments)]
pub fn subscription_old_version(
    sub_id: &str,
    customer: &str,
    price_id: &str,
    status: &str,
    current_period_start: i64,
    current_period_end: i64,
    cancel_at_period_end: bool,
) -> Value {
    let mut sub = subscription(
        sub_id,
        customer,
        price_id,
        status,
        current_period_start,
        current_period_end,
        cancel_at_period_end,
        json!({}),
    );
    for gone in [
        "/items/data/0/current_period_start",
        "/items/data/0/current_period_end",
        "/billing_mode",
        "/billing_schedules",
        "/customer_account",
        "/managed_payments",
        "/presentment_details",
    ] {
        remove(&mut sub, gone);
    }
    sub["current_period_start"] = json!(current_period_start);
    sub["current_period_end"] = json!(current_period_end);
    sub
}

/// A completed Checkout Session (from [`checkout_session_completed`]) as an older API
/// version renders it: `ui_mode: "hosted"`, none of the fields added since (branding,
/// adaptive pricing, name collection, managed payments, ...), and a field this version does
/// not know.
pub fn checkout_session_old_version(mut session: Value) -> Value {
    for gone in [
        "/adaptive_pricing",
        "/branding_settings",
        "/collected_information",
        "/customer_account",
        "/excluded_payment_method_types",
        "/integration_identifier",
        "/managed_payments",
        "/name_collection",
        "/optional_items",
        "/origin_context",
        "/permissions",
        "/presentment_details",
        "/wallet_options",
    ] {
        remove(&mut session, gone);
    }
    session["ui_mode"] = json!("hosted");
    session["shipping_rate"] = Value::Null;
    session["a_field_from_the_future"] = json!({ "enabled": true, "nested": [1, 2, 3] });
    session
}
