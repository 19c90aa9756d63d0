//! Per-request plumbing: a request id (echoed as `x-request-id`), Prometheus metrics by
//! route pattern and status, one structured log line per request, and the security headers
//! (`X-Content-Type-Options: nosniff` always, `Strict-Transport-Security` on TLS listeners). Logs carry the route
//! pattern, never the raw path or query, so tokens in URLs never reach the logs.

use crate::auth::RequestId;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use std::time::Instant;
use tracing::Instrument;

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let started = Instant::now();
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    let mut res = next.call(req).instrument(span.clone()).await?;
    let status = res.status().as_u16();
    record_usage(&res, &route, status, &request_id)
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!("journey_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("journey_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone()).record(elapsed);
    span.in_scope(|| tracing::info!(status, elapsed_ms = (elapsed * 1000.0) as u64, "request"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    security_headers(&mut res);
    Ok(res)
}

/// HSTS for one year, without `includeSubDomains` or `preload`: this server cannot know
/// whether every sibling host of its domain speaks HTTPS.
pub const HSTS: &str = "max-age=31536000";

/// `nosniff` on every response; HSTS only when this connection is TLS (a listener bound with
/// native TLS — never inferred from `X-Forwarded-Proto`, which a client can send).
fn security_headers<B>(res: &mut ServiceResponse<B>) {
    let tls = res.request().app_config().secure();
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
}

/// Appends an authenticated client-API request to its account's usage log. A failure is
/// logged, not turned into an error: the response was already decided.
async fn record_usage<B>(res: &ServiceResponse<B>, route: &str, status: u16, request_id: &str) {
    let req = res.request();
    let Some(who) = req
        .extensions()
        .get::<journey_contexts::tasks::usage::ApiUsage>()
        .copied()
    else {
        return;
    };
    let charge = req
        .extensions()
        .get::<journey_contexts::tasks::usage::UsageCharge>()
        .copied();
    let Some(app) = req.app_data::<actix_web::web::Data<journey_contexts::app::Core>>() else {
        return;
    };
    let ctx = journey_contexts::identity::Ctx {
        request_id: request_id.to_string(),
        ip: crate::auth::client_ip(req, app.cfg.trust_forwarded_for),
        at: app.clock.now(),
        sealed_ip: crate::auth::request_sealed_ip(req),
    };
    if let Err(e) = app
        .tasks()
        .record_usage(who, charge, route, status, &ctx)
        .await
    {
        tracing::error!(error = %e, "usage log write failed");
    }
}
