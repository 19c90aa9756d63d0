//! `/billing`: the holder's plan, card summary and credit balance, the plans and packs on
//! sale, Stripe Checkout and the customer portal (a form post answered with a redirect to
//! Stripe), and the credit ledger, paged. The same use cases as `/v1/billing*` and
//! `/v1/credits/ledger`.

use super::{error_page, render, when, Chrome, Form, Next};
use crate::auth::{Ctx, SessionAuth};
use crate::error::ApiError;
use crate::web::FormBody;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;
use journey_contexts::credits::billing::CheckoutBody;

pub const BILLING: Next = Next {
    href: "/billing",
    label: "Back to billing",
};

/// How many ledger entries a page shows.
const LEDGER_PAGE: u32 = 25;

/// The billing page's policy: as every page's, but its forms may be answered with a
/// redirect to Stripe's hosted Checkout and portal (browsers apply `form-action` to the
/// redirect as well as to the post).
const BILLING_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' https:; \
                           form-action 'self' https://checkout.stripe.com https://billing.stripe.com; \
                           frame-ancestors 'none'; base-uri 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/billing")
            .route(web::get().to(page))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/billing/checkout")
            .route(web::post().to(checkout))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/billing/portal")
            .route(web::post().to(portal))
            .default_service(web::to(super::method_not_allowed)),
    );
}

pub struct Offer {
    pub id: String,
    pub name: String,
    pub credits: u64,
    pub price: String,
    pub expiry: String,
}

pub struct LedgerRow {
    pub at: String,
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub detail: String,
    pub expires: String,
}

pub struct Subscription {
    pub plan: String,
    pub status: String,
    pub period_end: String,
    pub cancel_at_period_end: bool,
    pub ended: bool,
}

pub struct Card {
    pub brand: String,
    pub last4: String,
    pub country: String,
}

#[derive(Template)]
#[template(path = "billing.html")]
struct BillingPage {
    chrome: Chrome,
    csrf: String,
    /// `success` or `cancelled` after returning from Checkout.
    checkout: String,
    plan: String,
    available: u64,
    reserved: u64,
    suspended: bool,
    subscription: Option<Subscription>,
    card: Option<Card>,
    plans: Vec<Offer>,
    packs: Vec<Offer>,
    ledger: Vec<LedgerRow>,
    /// The ledger page shown is not the newest.
    older_page: bool,
    next_before: Option<i64>,
}

/// "6.00 USD"
fn money(cents: u64, currency: &str) -> String {
    format!(
        "{}.{:02} {}",
        cents / 100,
        cents % 100,
        currency.to_uppercase()
    )
}

fn expiry(days: Option<u32>) -> String {
    match days {
        Some(d) => format!("unused credits expire after {d} days"),
        None => "credits do not expire".into(),
    }
}

/// `GET /billing[?before=N][&checkout=success|cancelled]`.
pub async fn page(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let s = page_holder!(app, req, BILLING);
    let q = Form::parse(req.query_string().as_bytes());
    // The same paging rule as `GET /v1/credits/ledger`.
    let before = match q.get("before").filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => match b.parse::<i64>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return error_page(
                    &ApiError::bad("before must be a positive ledger position"),
                    BILLING,
                )
            }
        },
    };
    let checkout = match q.get("checkout") {
        Some(c @ ("success" | "cancelled")) => c.to_string(),
        _ => String::new(),
    };
    match build(&app, &s, before, checkout).await {
        Ok(p) => with_billing_csp(render(StatusCode::OK, &p)),
        Err(e) => error_page(&e, BILLING),
    }
}

fn with_billing_csp(mut resp: HttpResponse) -> HttpResponse {
    resp.headers_mut().insert(
        header::HeaderName::from_static("content-security-policy"),
        header::HeaderValue::from_static(BILLING_CSP),
    );
    resp
}

/// The same reads as `GET /v1/billing`, `GET /v1/billing/catalog` and `GET /v1/credits/ledger`.
async fn build(
    app: &Core,
    s: &SessionAuth,
    before: Option<i64>,
    checkout: String,
) -> Result<BillingPage, ApiError> {
    let overview = app.credits().billing_overview(s.account_id).await?;
    let ledger = app
        .credits()
        .ledger_page(s.account_id, before, LEDGER_PAGE)
        .await?;
    let c = &app.catalog;
    Ok(BillingPage {
        chrome: Chrome::signed_in(app, s, "Billing", "billing"),
        csrf: app.identity().csrf_token(&s.token),
        checkout,
        plan: overview.plan,
        available: overview.balance.available,
        reserved: overview.balance.reserved,
        suspended: overview.suspended,
        subscription: overview.subscription.map(|sub| Subscription {
            plan: sub.plan.unwrap_or_else(|| "unknown".into()),
            status: sub.status,
            period_end: sub.current_period_end.map(when).unwrap_or_default(),
            cancel_at_period_end: sub.cancel_at_period_end,
            ended: sub.ended,
        }),
        card: overview.card.map(|card| Card {
            brand: card.brand,
            last4: card.last4,
            country: card.country.unwrap_or_default(),
        }),
        plans: c
            .plans
            .iter()
            .map(|(id, p)| Offer {
                id: id.clone(),
                name: p.name.clone(),
                credits: p.monthly_credits,
                price: format!("{} a month", money(p.monthly_price_cents, &c.currency)),
                expiry: expiry(p.credits_expire_after_days),
            })
            .collect(),
        packs: c
            .packs
            .iter()
            .map(|(id, p)| Offer {
                id: id.clone(),
                name: p.name.clone(),
                credits: p.credits,
                price: money(p.price_cents, &c.currency),
                expiry: expiry(p.credits_expire_after_days),
            })
            .collect(),
        ledger: ledger
            .entries
            .into_iter()
            .map(|e| LedgerRow {
                at: when(e.at),
                kind: e.kind.replace('_', " "),
                amount: e.amount,
                balance_after: e.balance_after,
                detail: match (e.source, e.task_id) {
                    (Some(source), _) => source.replace('_', " "),
                    (None, Some(task)) => format!("task {task}"),
                    (None, None) => String::new(),
                },
                expires: e.expires_at.map(when).unwrap_or_default(),
            })
            .collect(),
        older_page: before.is_some(),
        next_before: ledger.next_before,
    })
}

/// `303 See Other` to Stripe's hosted page.
fn to_stripe(url: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// `POST /billing/checkout` (`pack` or `plan`): a Checkout session as
/// `POST /v1/billing/checkout` makes, returning here; the browser is sent to it.
pub async fn checkout(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, BILLING);
    let pick = |name: &str| form.get(name).filter(|v| !v.is_empty()).map(str::to_string);
    let body = CheckoutBody {
        pack: pick("pack"),
        plan: pick("plan"),
    };
    match app
        .credits()
        .start_checkout_returning(s.account_id, body, "/billing", &ctx)
        .await
    {
        Ok(r) => to_stripe(&r.url),
        Err(e) => error_page(&e.into(), BILLING),
    }
}

/// `POST /billing/portal`: a customer-portal session as `POST /v1/billing/portal` makes,
/// returning here.
pub async fn portal(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, BILLING);
    match app
        .credits()
        .portal_url_returning(s.account_id, "/billing", &ctx)
        .await
    {
        Ok(r) => to_stripe(&r.url),
        Err(e) => error_page(&e.into(), BILLING),
    }
}
