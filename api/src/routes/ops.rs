//! Operational endpoints: liveness, readiness, Prometheus metrics, OpenAPI document.

use actix_web::{web, HttpResponse};
use journey_contexts::app::Core;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use utoipa::ToSchema;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi.json", web::get().to(openapi));
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub database: bool,
    pub pending_migrations: i64,
    /// Largest projection lag, in events.
    pub projection_lag: i64,
    pub projection_lag_bound: i64,
}

/// Readiness: database reachable, migrations applied, projections within the lag bound.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Readiness), (status = 503, description = "Not ready", body = Readiness)))]
pub async fn readyz(app: web::Data<Core>) -> HttpResponse {
    let database = app.db.ping().await.is_ok();
    let pending = if database {
        app.db
            .pending_migrations()
            .await
            .map(|n| n as i64)
            .unwrap_or(-1)
    } else {
        -1
    };
    let lag = if database {
        app.runner
            .status()
            .await
            .map(|s| s.iter().map(|p| p.lag).max().unwrap_or(0))
            .unwrap_or(-1)
    } else {
        -1
    };
    let ready = database && pending == 0 && (0..=app.cfg.projection_lag_bound).contains(&lag);
    let body = Readiness {
        ready,
        database,
        pending_migrations: pending,
        projection_lag: lag,
        projection_lag_bound: app.cfg.projection_lag_bound,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(app: web::Data<Core>, handle: web::Data<PrometheusHandle>) -> HttpResponse {
    // Refresh projection-lag gauges at scrape time.
    let _ = app.runner.status().await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi(app: web::Data<Core>) -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document_for(&app.models))
}
