//! Billing end to end: the catalogue, Stripe Checkout against a local fake of Stripe's
//! API, signed webhooks (verified, applied once, in any order), refunds, disputes, the
//! card summary, and what is (not) stored.

use crate::support;

use reqwest::Method;
use serde_json::{json, Value};
use support::stripe::{self, FakeStripe};
use support::{last_checkout, pack_checkout, scan, Harness, Session};

fn now(h: &Harness) -> i64 {
    journey_commands::Clock::now(h.clock.as_ref()).timestamp()
}

async fn checkout(h: &Harness, s: &Session, body: Value) -> reqwest::Response {
    s.write(h, Method::POST, "/v1/billing/checkout")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn json_of(r: reqwest::Response) -> Value {
    r.json().await.unwrap()
}

async fn billing(h: &Harness, s: &Session) -> Value {
    let r = s.get(h, "/v1/billing").await;
    assert_eq!(r.status(), 200);
    json_of(r).await
}

async fn client_account(h: &Harness, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(h.url("/api/v1/account"))
        .header("Authorization", key)
        .send()
        .await
        .unwrap()
}

async fn ledger(h: &Harness, s: &Session) -> Vec<Value> {
    let r = s.get(h, "/v1/credits/ledger?limit=200").await;
    assert_eq!(r.status(), 200);
    json_of(r).await["entries"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_is_public_and_new_accounts_are_free_with_no_credits() {
    let h = Harness::start().await;
    let r = reqwest::get(h.url("/v1/billing/catalog")).await.unwrap();
    assert_eq!(r.status(), 200);
    let c = json_of(r).await;
    let plans: Vec<&str> = c["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(plans, ["enterprise", "growth", "starter"]);
    assert!(c["packs"].as_array().unwrap().len() >= 2);
    let s = h.sign_in("free@example.com").await;
    let key = s.create_key(&h, "k").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let a = json_of(client_account(&h, &key).await).await;
    assert_eq!(a["plan"], "free");
    assert_eq!(a["credits"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pack_purchase_grants_once_however_often_stripe_delivers() {
    let h = Harness::start().await;
    let s = h.sign_in("buyer@example.com").await;
    let key = s.create_key(&h, "k").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let bought = pack_checkout(&h, &s, "small").await;

    // One customer, created idempotently and carrying only our account id.
    assert_eq!(h.stripe.customers_created(), 1);
    let cust = h
        .stripe
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/customers")
        .unwrap();
    assert_eq!(
        cust.idempotency_key.as_deref(),
        Some(format!("journey-customer-{}", s.account_id).as_str())
    );
    assert_eq!(
        FakeStripe::form_value(&cust, "metadata[account_id]"),
        Some(s.account_id.to_string())
    );
    assert!(FakeStripe::form_value(&cust, "email").is_none());
    let (session_req, _) = last_checkout(&h.stripe);
    assert_eq!(
        FakeStripe::form_value(&session_req, "mode").as_deref(),
        Some("payment")
    );
    assert_eq!(
        FakeStripe::form_value(&session_req, "client_reference_id"),
        Some(s.account_id.to_string())
    );
    // A second checkout reuses the customer.
    let _ = pack_checkout(&h, &s, "small").await;
    assert_eq!(h.stripe.customers_created(), 1);

    let mails_before = h.smtp.count();
    let deliveries = futures::future::join_all((0..10).map(|_| h.deliver(&bought.event))).await;
    for r in deliveries {
        assert_eq!(r.status(), 200);
    }
    let grants: Vec<Value> = ledger(&h, &s)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "grant")
        .collect();
    assert_eq!(grants.len(), 1, "ten deliveries, one grant: {grants:?}");
    assert_eq!(grants[0]["amount"], 500);
    assert_eq!(grants[0]["source"], "purchase");
    assert!(grants[0]["expires_at"].is_string(), "pack credits expire");
    let a = json_of(client_account(&h, &key).await).await;
    assert_eq!(a["credits"], 500);
    assert_eq!(a["plan"], "free");

    // The same session reported again under another event id grants nothing more.
    let again = stripe::event(
        "evt_async_succeeded_1",
        "checkout.session.async_payment_succeeded",
        now(&h),
        serde_json::from_str::<Value>(&bought.event).unwrap()["data"]["object"].clone(),
    );
    assert_eq!(h.deliver(&again).await.status(), 200);
    assert_eq!(
        json_of(client_account(&h, &key).await).await["credits"],
        500
    );

    // Exactly one receipt, to the account's address.
    let mail = h.smtp.wait_for(mails_before + 1).await;
    assert!(mail.contains("buyer@example.com"), "{mail}");
    assert!(mail.contains("6.00 USD"), "{mail}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(h.smtp.count(), mails_before + 1, "one receipt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_stale_signatures_are_refused_and_change_nothing() {
    let h = Harness::start().await;
    let s = h.sign_in("sig@example.com").await;
    let bought = pack_checkout(&h, &s, "small").await;
    let t = now(&h);
    let events_before = journey_projections::events::total_events(&h.app.db)
        .await
        .unwrap();
    let cases = [
        (
            "wrong secret",
            stripe::sign(&bought.event, "whsec_wrong", t),
        ),
        (
            "stale",
            stripe::sign(&bought.event, stripe::WEBHOOK_SECRET, t - 301),
        ),
        (
            "from the future",
            stripe::sign(&bought.event, stripe::WEBHOOK_SECRET, t + 301),
        ),
        (
            "other payload",
            stripe::sign("{\"id\":\"evt_x\"}", stripe::WEBHOOK_SECRET, t),
        ),
        ("garbage", "nonsense".to_string()),
    ];
    for (what, sig) in cases {
        let r = h.deliver_signed(&bought.event, &sig).await;
        assert_eq!(r.status(), 400, "{what}");
        let body = json_of(r).await;
        assert!(body["errors"][0]["msg"].is_string(), "{what}: {body}");
    }
    let r = reqwest::Client::new()
        .post(h.url("/webhooks/stripe"))
        .body(bought.event.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no signature header");
    assert!(ledger(&h, &s).await.is_empty());
    assert_eq!(
        journey_projections::events::total_events(&h.app.db)
            .await
            .unwrap(),
        events_before,
        "refused deliveries append nothing"
    );

    // Secret rotation: Stripe signs with old and new secrets; any matching v1 passes.
    let rotated = stripe::sign_multi(
        &bought.event,
        &["whsec_old_rotated_out", stripe::WEBHOOK_SECRET],
        t,
    );
    assert_eq!(
        h.deliver_signed(&bought.event, &rotated).await.status(),
        200
    );
    assert_eq!(ledger(&h, &s).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_events_out_of_order_reach_the_right_state() {
    let h = Harness::start().await;
    let s = h.sign_in("subscriber@example.com").await;
    let key = s.create_key(&h, "k").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let r = checkout(&h, &s, json!({ "plan": "growth" })).await;
    assert_eq!(r.status(), 200);
    let url = json_of(r).await["url"].as_str().unwrap().to_string();
    let session_id = url.rsplit('/').next().unwrap().to_string();
    let (req, metadata) = last_checkout(&h.stripe);
    assert_eq!(
        FakeStripe::form_value(&req, "mode").as_deref(),
        Some("subscription")
    );
    assert_eq!(
        FakeStripe::form_value(&req, "line_items[0][price]").as_deref(),
        Some("price_journey_growth_monthly")
    );
    let customer = FakeStripe::form_value(&req, "customer").unwrap();
    let sub = "sub_1QxGrowthTest";
    let t = now(&h);
    let (start, end) = (t - 60, t - 60 + 10 * 86_400);

    // Stripe tells us of a cancellation (later) before the checkout completion (earlier).
    let updated = stripe::event(
        "evt_sub_updated",
        "customer.subscription.updated",
        t,
        stripe::subscription(
            sub,
            &customer,
            "price_journey_growth_monthly",
            "active",
            start,
            end,
            true,
            json!({}),
        ),
    );
    assert_eq!(h.deliver(&updated).await.status(), 200);
    let completed = stripe::event(
        "evt_checkout_completed",
        "checkout.session.completed",
        t - 30,
        stripe::checkout_session_completed(
            &session_id,
            "subscription",
            &s.account_id.to_string(),
            &customer,
            None,
            Some(sub),
            3000,
            metadata,
        ),
    );
    assert_eq!(h.deliver(&completed).await.status(), 200);
    let b = billing(&h, &s).await;
    assert_eq!(b["plan"], "growth");
    assert_eq!(b["subscription"]["status"], "active");
    assert_eq!(b["subscription"]["cancel_at_period_end"], true, "{b}");
    assert_eq!(
        b["subscription"]["current_period_end"].as_str().unwrap(),
        chrono::DateTime::from_timestamp(end, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );

    // The period's invoice grants the plan's credits once per subscription and period.
    let invoice = |id: &str| {
        stripe::event(
            id,
            "invoice.paid",
            t - 20,
            stripe::invoice(
                &format!("in_{}", id.trim_start_matches("evt_")),
                &customer,
                sub,
                "price_journey_growth_monthly",
                start,
                end,
                3000,
                "subscription_create",
            ),
        )
    };
    let mails_before = h.smtp.count();
    assert_eq!(h.deliver(&invoice("evt_inv_a")).await.status(), 200);
    assert_eq!(h.deliver(&invoice("evt_inv_b")).await.status(), 200);
    let receipt = h.smtp.wait_for(mails_before + 1).await;
    assert!(
        receipt.contains("Growth plan") && receipt.contains("30.00 USD"),
        "{receipt}"
    );
    let a = json_of(client_account(&h, &key).await).await;
    assert_eq!(a["plan"], "growth");
    assert_eq!(a["credits"], 3500, "one period, one grant");

    // Deleted at the end of the cycle: the plan holds until the paid period ends.
    let deleted = stripe::event(
        "evt_sub_deleted",
        "customer.subscription.deleted",
        t + 10,
        stripe::subscription(
            sub,
            &customer,
            "price_journey_growth_monthly",
            "canceled",
            start,
            end,
            false,
            json!({}),
        ),
    );
    assert_eq!(h.deliver(&deleted).await.status(), 200);
    assert_eq!(
        json_of(client_account(&h, &key).await).await["plan"],
        "growth"
    );
    h.clock.advance(chrono::Duration::days(11));
    let b = billing(&h, &s).await;
    assert_eq!(b["plan"], "free", "{b}");
    assert_eq!(b["subscription"]["ended"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_claws_back_unused_credits_and_dispute_suspends_keys_until_lifted() {
    let h = Harness::start().await;
    let s = h.sign_in("refund@example.com").await;
    let staff = h.sign_in("staff@example.com").await;
    h.cli_ok(&["staff", "grant", "staff@example.com", "support"]);
    let key = s.create_key(&h, "k").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let bought = pack_checkout(&h, &s, "small").await;
    assert_eq!(h.deliver(&bought.event).await.status(), 200);

    // A task holds 100 credits while the purchase is refunded.
    let ctx =
        journey_contexts::identity::Ctx::system(journey_commands::Clock::now(h.clock.as_ref()));
    let task = uuid::Uuid::new_v4();
    let actor = journey_domain::meta::Actor::System;
    h.app
        .credits()
        .reserve_credits(s.account_id, task, 100, actor, &ctx)
        .await
        .unwrap();
    let refunded = stripe::event(
        "evt_refund",
        "charge.refunded",
        now(&h),
        stripe::charge(
            "ch_refund_1",
            &bought.customer,
            &bought.payment_intent,
            600,
            600,
            true,
        ),
    );
    assert_eq!(h.deliver(&refunded).await.status(), 200);
    let entries = ledger(&h, &s).await;
    let claw = entries
        .iter()
        .find(|e| e["kind"] == "claw_back")
        .expect("claw-back entry");
    assert_eq!(claw["amount"], -400);
    // The failed task's credits do not come back either: they belonged to the refund.
    h.app
        .credits()
        .release_credits(s.account_id, task, actor, &ctx)
        .await
        .unwrap();
    assert_eq!(json_of(client_account(&h, &key).await).await["credits"], 0);
    let newest = ledger(&h, &s).await[0].clone();
    assert_eq!(
        (&newest["kind"], &newest["amount"], &newest["balance_after"]),
        (&json!("release"), &json!(0), &json!(0)),
        "the history agrees with the balance: {newest}"
    );

    // A chargeback suspends the account: its keys answer 403 with a clear error.
    let dispute = stripe::event(
        "evt_dispute",
        "charge.dispute.created",
        now(&h),
        stripe::dispute(
            "dp_1",
            "ch_refund_1",
            &bought.payment_intent,
            600,
            "fraudulent",
        ),
    );
    assert_eq!(h.deliver(&dispute).await.status(), 200);
    let r = client_account(&h, &key).await;
    assert_eq!(r.status(), 403);
    let msg = json_of(r).await["errors"][0]["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("suspended"), "{msg}");
    assert_eq!(billing(&h, &s).await["suspended"], true);

    let account = s.account_id.to_string();
    let by = staff.account_id.to_string();
    h.cli_ok(&[
        "billing",
        "lift-suspension",
        "--account",
        &account,
        "--reason",
        "resolved with the bank",
        "--by",
        &by,
    ]);
    // The CLI wrote the event; the server's projection picks it up.
    let mut status = 0;
    for _ in 0..50 {
        status = client_account(&h, &key).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "access restored");
    let out = h.stream_events(&format!("billing/{account}")).await;
    let lifted = out
        .lines()
        .find(|l| l.contains("SuspensionLifted"))
        .expect("lift recorded");
    assert!(lifted.contains(&format!("staff:{by}")), "{lifted}");
    assert!(
        !out.contains("resolved with the bank"),
        "the reason is sealed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_card_brand_last4_and_country_are_kept_from_stripe_payloads() {
    let h = Harness::start().await;
    let s = h.sign_in("cardholder@example.com").await;
    let bought = pack_checkout(&h, &s, "large").await;
    let t = now(&h);
    let sub = "sub_1QPiiTest";
    let events = [
        bought.event.clone(),
        stripe::event(
            "evt_pm",
            "payment_method.attached",
            t,
            stripe::payment_method("pm_1Pii", &bought.customer, "visa", "4242", "US"),
        ),
        stripe::event(
            "evt_sub",
            "customer.subscription.updated",
            t,
            stripe::subscription(
                sub,
                &bought.customer,
                "price_journey_starter_monthly",
                "active",
                t - 60,
                t + 86_400 * 30,
                false,
                json!({}),
            ),
        ),
        stripe::event(
            "evt_inv",
            "invoice.paid",
            t,
            stripe::invoice(
                "in_pii",
                &bought.customer,
                sub,
                "price_journey_starter_monthly",
                t - 60,
                t + 86_400 * 30,
                1000,
                "subscription_create",
            ),
        ),
        stripe::event(
            "evt_ch",
            "charge.refunded",
            t,
            stripe::charge(
                "ch_pii",
                &bought.customer,
                &bought.payment_intent,
                3000,
                3000,
                true,
            ),
        ),
        stripe::event(
            "evt_dp",
            "charge.dispute.created",
            t,
            stripe::dispute(
                "dp_pii",
                "ch_pii",
                &bought.payment_intent,
                3000,
                "fraudulent",
            ),
        ),
    ];
    for e in &events {
        assert_eq!(h.deliver(e).await.status(), 200, "{e}");
    }
    let b = billing(&h, &s).await;
    assert_eq!(
        b["card"],
        json!({ "brand": "visa", "last4": "4242", "country": "US" })
    );
    assert_eq!(b["plan"], "starter");
    h.app.runner.catch_up().await.unwrap();
    let mut needles: Vec<&str> = stripe::PII_MARKERS.to_vec();
    let exp = format!("\"exp_year\":{}", stripe::CARD_EXP_YEAR);
    needles.push(&exp);
    let found = scan::find_plaintext(&h.database_url, &needles).await;
    assert!(found.is_empty(), "card or payer details stored: {found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_refuses_bad_input_without_calling_stripe() {
    let h = Harness::start().await;
    let s = h.sign_in("picky@example.com").await;
    for body in [
        json!({}),
        json!({ "pack": "small", "plan": "growth" }),
        json!({ "pack": "gigantic" }),
        json!({ "plan": "free" }),
        json!({ "pack": "small", "coupon": "x" }),
    ] {
        let r = checkout(&h, &s, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        assert!(json_of(r).await["errors"][0]["msg"].is_string());
    }
    let r = s
        .client
        .post(h.url("/v1/billing/checkout"))
        .json(&json!({ "pack": "small" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "CSRF header required");
    let r = reqwest::Client::new()
        .post(h.url("/v1/billing/checkout"))
        .json(&json!({ "pack": "small" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(h.stripe.requests().is_empty(), "nothing reached Stripe");
    let r = s
        .write(&h, Method::POST, "/v1/billing/portal")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(json_of(r).await["url"]
        .as_str()
        .unwrap()
        .starts_with("https://billing.stripe.com/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_unreachable_or_unconfigured_is_a_clear_503() {
    let h = Harness::start_with(|c| c.stripe_api_base = Some("http://127.0.0.1:9".into())).await;
    let s = h.sign_in("outage@example.com").await;
    let r = checkout(&h, &s, json!({ "pack": "small" })).await;
    assert_eq!(r.status(), 503);
    let msg = json_of(r).await["errors"][0]["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("payment provider"), "{msg}");
    assert_eq!(billing(&h, &s).await["plan"], "free", "nothing changed");

    let h = Harness::start_with(|c| {
        c.stripe_secret_key = None;
        c.stripe_webhook_secret = None;
    })
    .await;
    let s = h.sign_in("unbilled@example.com").await;
    assert_eq!(
        checkout(&h, &s, json!({ "pack": "small" })).await.status(),
        503
    );
    let event = stripe::event("evt_x", "invoice.paid", now(&h), json!({}));
    assert_eq!(h.deliver(&event).await.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_configured_webhook_secret_verifies_during_rotation() {
    let h = Harness::start_with(|c| {
        c.stripe_webhook_secret = Some(format!("whsec_previous_one, {}", stripe::WEBHOOK_SECRET));
    })
    .await;
    let s = h.sign_in("rotation@example.com").await;
    let bought = pack_checkout(&h, &s, "small").await;
    let t = now(&h);
    let old = stripe::sign(&bought.event, "whsec_previous_one", t);
    assert_eq!(h.deliver_signed(&bought.event, &old).await.status(), 200);
    let unknown = stripe::sign(&bought.event, "whsec_never_configured", t);
    assert_eq!(
        h.deliver_signed(&bought.event, &unknown).await.status(),
        400
    );
    assert_eq!(ledger(&h, &s).await.len(), 1);
}

async fn outcome(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 200);
    let body = json_of(r).await;
    assert_eq!(body["received"], true, "{body}");
    body["outcome"].as_str().unwrap().to_string()
}

/// The billing records of an account: (kind, Stripe id, opened detail), in order.
async fn billing_records(h: &Harness, s: &Session) -> Vec<(String, String, Value)> {
    let events =
        journey_projections::events::read_stream(&h.app.db, "billing", &s.account_id.to_string())
            .await
            .unwrap();
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e.event_type == "BillingRecorded") {
        let r = &e.payload["BillingRecorded"];
        let detail = h.app.vault.open_json(&r["detail"]).await.unwrap();
        out.push((
            r["kind"].as_str().unwrap().to_string(),
            r["stripe_id"].as_str().unwrap().to_string(),
            detail,
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_several_stripe_api_versions_are_applied_once() {
    let h = Harness::start().await;
    let s = h.sign_in("versions@example.com").await;
    let t = now(&h);

    // A completed checkout as an older API version renders it: `ui_mode: "hosted"`, fields
    // added since missing, and a field this version has never heard of.
    let bought = pack_checkout(&h, &s, "small").await;
    let mut e: Value = serde_json::from_str(&bought.event).unwrap();
    let session = stripe::checkout_session_old_version(e["data"]["object"].take());
    let session_id = session["id"].as_str().unwrap().to_string();
    let old_checkout = stripe::event_at_version(
        "evt_old_checkout",
        "checkout.session.completed",
        t,
        session,
        stripe::OLD_API_VERSION,
    );
    assert_eq!(outcome(h.deliver(&old_checkout).await).await, "applied");
    assert_eq!(outcome(h.deliver(&old_checkout).await).await, "duplicate");

    // Paid invoices of both shapes: each grants its plan's credits once per subscription
    // and period, whatever else the payload lacks or adds.
    let customer = bought.customer.as_str();
    let (start, end) = (t - 60, t - 60 + 30 * 86_400);
    let growth = "price_journey_growth_monthly";
    let starter = "price_journey_starter_monthly";
    // Current shape, the line without `subtotal`, paid through `payments`.
    let mut no_subtotal = stripe::invoice(
        "in_no_subtotal",
        customer,
        "sub_1New",
        growth,
        start,
        end,
        3000,
        "subscription_create",
    );
    stripe::remove(&mut no_subtotal, "/lines/data/0/subtotal");
    let no_subtotal = stripe::with_payments(no_subtotal, "pi_1NewPaid");
    // Current shape with `subtotal` and `parent.subscription_details`, no `payments`.
    let plain = stripe::invoice(
        "in_plain",
        customer,
        "sub_2New",
        starter,
        start,
        end,
        1000,
        "subscription_create",
    );
    // The old shape: `subscription` and `payment_intent` on the invoice, `price` on the line.
    let old = stripe::invoice_old_version(
        "in_old",
        customer,
        "sub_3Old",
        starter,
        start,
        end,
        1000,
        "pi_3OldPaid",
    );
    let v = stripe::API_VERSION;
    let ov = stripe::OLD_API_VERSION;
    let deliveries = [
        ("evt_inv_no_subtotal", &no_subtotal, v),
        ("evt_inv_plain", &plain, v),
        ("evt_inv_old", &old, ov),
        // The same invoice reported again under another event id.
        ("evt_inv_old_again", &old, ov),
    ];
    for (id, object, version) in deliveries {
        let event = stripe::event_at_version(id, "invoice.paid", t, object.clone(), version);
        assert_eq!(outcome(h.deliver(&event).await).await, "applied", "{id}");
    }
    let redelivered =
        stripe::event_at_version("evt_inv_no_subtotal", "invoice.paid", t, no_subtotal, v);
    assert_eq!(outcome(h.deliver(&redelivered).await).await, "duplicate");

    let mut grants: Vec<(String, i64)> = ledger(&h, &s)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "grant")
        .map(|e| {
            (
                e["source"].as_str().unwrap().into(),
                e["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    grants.sort();
    assert_eq!(
        grants,
        [
            ("purchase".to_string(), 500),
            ("subscription_period".to_string(), 1000),
            ("subscription_period".to_string(), 1000),
            ("subscription_period".to_string(), 3500),
        ],
        "one grant per purchase and per subscription period"
    );
    let records = billing_records(&h, &s).await;
    let ids: Vec<(&str, &str)> = records
        .iter()
        .map(|(k, id, _)| (k.as_str(), id.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("payment", session_id.as_str()),
            ("invoice", "in_no_subtotal"),
            ("invoice", "in_plain"),
            ("invoice", "in_old"),
        ],
        "each payment recorded once"
    );
    let periods = &records[3].2;
    assert_eq!(periods["item"], "plan:starter", "{periods}");
    assert_eq!(
        periods["refs"],
        json!(["pi_3OldPaid"]),
        "the old invoice's payment_intent"
    );
    assert_eq!(
        records[1].2["refs"],
        json!(["pi_1NewPaid"]),
        "from `payments`"
    );

    // The payment intents read from either shape route refunds to their grants.
    for (id, charge, pi, amount) in [
        ("evt_refund_new", "ch_1NewPaid", "pi_1NewPaid", 3000),
        ("evt_refund_old", "ch_3OldPaid", "pi_3OldPaid", 1000),
    ] {
        let refund = stripe::event(
            id,
            "charge.refunded",
            t,
            stripe::charge(charge, customer, pi, amount, amount, true),
        );
        assert_eq!(outcome(h.deliver(&refund).await).await, "applied", "{id}");
    }
    assert_eq!(
        billing(&h, &s).await["balance"]["available"],
        500 + 1000,
        "the two refunded periods' credits were clawed back"
    );

    // A subscription of the old shape: the period end is on the subscription.
    let sub =
        stripe::subscription_old_version("sub_3Old", customer, starter, "active", start, end, true);
    let updated =
        stripe::event_at_version("evt_sub_old", "customer.subscription.updated", t, sub, ov);
    assert_eq!(outcome(h.deliver(&updated).await).await, "applied");
    let b = billing(&h, &s).await;
    assert_eq!(b["plan"], "starter", "{b}");
    assert_eq!(b["subscription"]["cancel_at_period_end"], true, "{b}");
    assert_eq!(
        b["subscription"]["current_period_end"].as_str().unwrap(),
        chrono::DateTime::from_timestamp(end, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
}

async fn ignored_events(h: &Harness, s: &Session, query: &str) -> reqwest::Response {
    s.get(h, &format!("/admin/v1/billing/ignored-events{query}"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_event_we_cannot_use_is_acknowledged_recorded_once_and_shown_to_staff() {
    let h = Harness::start().await;
    let s = h.sign_in("holder@example.com").await;
    let bought = support::buy_pack(&h, &s, "small").await;
    let compliance = h.sign_in("compliance@example.com").await;
    h.cli_ok(&["staff", "grant", "compliance@example.com", "compliance"]);
    let helpdesk = h.sign_in("helpdesk@example.com").await;
    h.cli_ok(&["staff", "grant", "helpdesk@example.com", "support"]);
    let t = now(&h);
    let events_before = journey_projections::events::total_events(&h.app.db)
        .await
        .unwrap();

    // Refused: a bad signature, and signed payloads that are not Stripe events at all.
    let mut orphan = stripe::invoice(
        "in_orphan",
        &bought.customer,
        "sub_1Orphan",
        "price_journey_growth_monthly",
        t - 60,
        t + 30 * 86_400,
        3000,
        "subscription_create",
    );
    orphan["customer"] = Value::Null;
    stripe::remove(&mut orphan, "/parent");
    stripe::remove(&mut orphan, "/lines/data/0/parent");
    let orphan = stripe::event("evt_orphan", "invoice.paid", t, orphan);
    let forged = stripe::sign(&orphan, "whsec_not_ours", t);
    assert_eq!(h.deliver_signed(&orphan, &forged).await.status(), 400);
    for payload in [
        "not json at all",
        r#"{"type":"invoice.paid"}"#,
        r#"{"id":"evt_no_type"}"#,
    ] {
        let r = h.deliver(payload).await;
        assert_eq!(r.status(), 400, "{payload}");
        let msg = json_of(r).await["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.starts_with("payload is not a Stripe event"), "{msg}");
    }
    assert_eq!(
        journey_projections::events::total_events(&h.app.db)
            .await
            .unwrap(),
        events_before,
        "refused deliveries append nothing"
    );

    // A paid invoice with nothing to route it by: acknowledged, recorded, changes nothing,
    // however often Stripe redelivers it.
    for _ in 0..3 {
        assert_eq!(outcome(h.deliver(&orphan).await).await, "ignored");
    }
    // One that no account of ours matches, and a subscription status we do not know.
    let stranger = stripe::invoice(
        "in_stranger",
        "cus_NotOurs",
        "sub_NotOurs",
        "price_journey_growth_monthly",
        t - 60,
        t + 30 * 86_400,
        3000,
        "subscription_create",
    );
    let stranger = stripe::event("evt_stranger", "invoice.paid", t + 1, stranger);
    assert_eq!(outcome(h.deliver(&stranger).await).await, "ignored");
    let frozen = stripe::event(
        "evt_frozen",
        "customer.subscription.updated",
        t + 2,
        stripe::subscription(
            "sub_1Frozen",
            &bought.customer,
            "price_journey_growth_monthly",
            "frozen_solid",
            t - 60,
            t + 30 * 86_400,
            false,
            json!({}),
        ),
    );
    assert_eq!(outcome(h.deliver(&frozen).await).await, "ignored");
    // A type we never handle is acknowledged and not recorded.
    let other = stripe::event(
        "evt_other",
        "customer.created",
        t + 3,
        json!({ "id": "cus_X" }),
    );
    assert_eq!(outcome(h.deliver(&other).await).await, "ignored");

    let grants = ledger(&h, &s).await;
    assert_eq!(grants.len(), 1, "only the pack: {grants:?}");
    assert_eq!(billing(&h, &s).await["balance"]["available"], 500);
    assert!(billing(&h, &s).await["subscription"].is_null());

    // Staff see each unusable event once, newest first, with what was missing.
    let r = ignored_events(&h, &compliance, "").await;
    assert_eq!(r.status(), 200);
    let list = json_of(r).await;
    let events = list["events"].as_array().unwrap();
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["evt_frozen", "evt_stranger", "evt_orphan"], "{list}");
    assert_eq!(list["more"], false);
    let orphan_entry = &events[2];
    assert_eq!(orphan_entry["event_type"], "invoice.paid");
    assert_eq!(orphan_entry["reason"], "a field it needs is missing");
    assert_eq!(
        orphan_entry["missing"],
        json!([
            "data.object.customer or data.object.parent.subscription_details.subscription \
             or data.object.subscription \
             or data.object.lines.data[0].parent.subscription_item_details.subscription \
             or data.object.lines.data[0].subscription"
        ]),
        "{orphan_entry}"
    );
    assert!(orphan_entry["at"].is_string());
    assert!(
        events[1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("no account of ours matches"),
        "{list}"
    );
    assert!(
        events[0]["reason"]
            .as_str()
            .unwrap()
            .contains("frozen_solid"),
        "{list}"
    );
    assert!(
        !list.to_string().contains("cus_NotOurs") && !list.to_string().contains(&bought.customer),
        "no payload values are kept: {list}"
    );
    let page = json_of(ignored_events(&h, &compliance, "?limit=1").await).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["more"], true);

    // Admin and compliance only; the query is read after the role is checked.
    assert_eq!(
        ignored_events(&h, &compliance, "?limit=0").await.status(),
        400
    );
    assert_eq!(
        ignored_events(&h, &compliance, "?page=2").await.status(),
        400
    );
    assert_eq!(
        ignored_events(&h, &helpdesk, "?limit=0").await.status(),
        403
    );
    assert_eq!(ignored_events(&h, &s, "").await.status(), 403);
    let anonymous = reqwest::get(h.url("/admin/v1/billing/ignored-events"))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let doc: Value = reqwest::get(h.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let responses = &doc["paths"]["/admin/v1/billing/ignored-events"]["get"]["responses"];
    for status in ["200", "400", "401", "403"] {
        assert!(responses[status].is_object(), "{status}: {responses}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipt_names_the_credits_granted_not_the_catalogue_name() {
    let h = Harness::start().await;
    let s = h.sign_in("receipt@example.com").await;
    // The session was started when pack `small` gave 100 credits; the catalogue now names
    // it "500 credits". What we wrote on the session is what was bought.
    let bought = pack_checkout(&h, &s, "small").await;
    let mut e: Value = serde_json::from_str(&bought.event).unwrap();
    assert_eq!(e["data"]["object"]["metadata"]["pack"], "small");
    e["data"]["object"]["metadata"]["credits"] = json!("100");
    let mails_before = h.smtp.count();
    assert_eq!(outcome(h.deliver(&e.to_string()).await).await, "applied");
    assert_eq!(billing(&h, &s).await["balance"]["available"], 100);

    let mail = h.smtp.wait_for(mails_before + 1).await;
    let named: Vec<&str> = mail
        .lines()
        .filter(|l| {
            l.starts_with("Subject:") || l.starts_with("Item:") || l.starts_with("Credits added:")
        })
        .collect();
    assert_eq!(named.len(), 3, "{mail}");
    for line in &named {
        assert!(
            line.contains("100") && !line.contains("500"),
            "{line}\n{mail}"
        );
    }
    assert!(
        mail.contains("Item: Credit pack small: 100 credits"),
        "{mail}"
    );
    let records = billing_records(&h, &s).await;
    assert_eq!(records.len(), 1);
    let detail = &records[0].2;
    assert_eq!(detail["item"], "Credit pack small: 100 credits", "{detail}");
    assert_eq!(detail["credits"], 100);
}
