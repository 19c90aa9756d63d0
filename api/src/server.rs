//! Builds and runs the HTTP server with the projection runner beside it.

use crate::error::{form_config, json_config, path_config, query_config};
use crate::{http_middleware, input, routes, telemetry};
use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpServer};
use anyhow::{Context, Result};
use journey_contexts::app::App;
use std::net::SocketAddr;
use tokio::sync::watch;

pub struct Running {
    pub addr: SocketAddr,
    /// `https` with native TLS (`tls_cert_path`), else `http`.
    pub scheme: &'static str,
    pub handle: ServerHandle,
    pub done: tokio::task::JoinHandle<Result<()>>,
}

/// Binds, starts serving and returns at once (tests bind to port 0).
pub async fn start(app: App, bind: &str) -> Result<Running> {
    let handle = telemetry::metrics_handle();
    let data = web::Data::from(app.clone());
    let server = HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .app_data(web::Data::new(handle.clone()))
            .app_data(json_config())
            .app_data(query_config())
            .app_data(path_config())
            .app_data(form_config())
            .configure(routes::auth::routes)
            .configure(routes::account_api::routes)
            .configure(routes::client_api::routes)
            .configure(routes::billing_api::routes)
            .configure(routes::admin_api::routes)
            .configure(routes::privacy_api::routes)
            .configure(routes::privacy_api::export_routes)
            .configure(routes::privacy_api::deletion_routes)
            .configure(routes::requests_api::routes)
            .configure(routes::upstream_hooks::routes)
            .configure(routes::usage_api::routes)
            .configure(routes::legal_api::routes)
            .configure(routes::support_api::routes)
            .configure(routes::ops::routes)
            // The web pages (HTML, not in the OpenAPI document).
            .configure(crate::web::routes)
            .default_service(web::to(input::not_found_or_method))
            .wrap(from_fn(input::screen))
            .wrap(from_fn(crate::auth::staff_gate))
            .wrap(from_fn(http_middleware::observe))
    })
    .workers(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .min(8),
    )
    .shutdown_timeout(10);
    // Native TLS: the certificate is reloaded in place (SIGHUP, changed files).
    let tls = match (&app.cfg.tls_cert_path, &app.cfg.tls_key_path) {
        (Some(cert), Some(key)) => Some(crate::tls::CertStore::load(cert, key)?),
        _ => None,
    };
    let server = match &tls {
        Some(store) => server.bind_rustls_0_23(bind, store.server_config()?),
        None => server.bind(bind),
    }
    .with_context(|| format!("cannot listen on {bind}"))?;
    let addr = *server.addrs().first().context("no listening address")?;
    let _ = app.listen_addr.set(addr);
    let server = server.run();
    let handle = server.handle();
    let (stop_tx, stop_rx) = watch::channel(false);
    let runner = tokio::spawn(app.runner.clone().run(stop_rx.clone()));
    let cert_watcher = tls.map(|store| {
        let poll = std::time::Duration::from_millis(app.cfg.tls_poll_interval_ms);
        store.spawn_watcher(poll, stop_rx.clone())
    });
    let worker = tokio::spawn(journey_contexts::tasks::worker::run_worker(
        app.clone(),
        stop_rx.clone(),
    ));
    let pruner = {
        let app = app.clone();
        let mut stop = stop_rx;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => app.limits.prune().await,
                    _ = stop.changed() => return,
                }
            }
        })
    };
    let retention = {
        let app = app.clone();
        let stop = stop_tx.subscribe();
        let every = app.cfg.retention_interval_secs;
        tokio::spawn(async move {
            if every == 0 {
                return;
            }
            // Every instance offers the run; the job lease (journey_commands::leases) lets
            // one of them run it once per interval, and another take over if it dies.
            let leases = app.leases.clone();
            let job = move || {
                let app = app.clone();
                async move {
                    let ctx = journey_contexts::identity::Ctx::system(app.clock.now());
                    match app
                        .privacy()
                        .retention_run(
                            ctx.at,
                            journey_contexts::privacy::retention::RunMode::Apply,
                            &ctx,
                        )
                        .await
                    {
                        Ok(r) => tracing::info!(
                            purged = r.accounts_purged,
                            tombstoned = r.events_tombstoned,
                            "retention run"
                        ),
                        Err(e) => tracing::error!(error = %e, "retention run failed"),
                    }
                }
            };
            let every = std::time::Duration::from_secs(every);
            leases.periodically("retention", every, stop, job).await
        })
    };
    let db = app.db.clone();
    let app_for_shutdown = app.clone();
    let done = tokio::spawn(async move {
        // actix handles SIGTERM/SIGINT: it stops accepting, drains in-flight requests,
        // then resolves; we then stop the runner and close the pools.
        let result = server.await;
        // Usage records of the last requests are still in the buffer: write them.
        if let Err(e) = app_for_shutdown.usage_log.flush().await {
            tracing::error!(error = %e, "could not write the last usage records");
        }
        let _ = stop_tx.send(true);
        let _ = runner.await;
        let _ = worker.await;
        let _ = pruner.await;
        let _ = retention.await;
        if let Some(w) = cert_watcher {
            let _ = w.await;
        }
        db.close().await;
        result.map_err(Into::into)
    });
    Ok(Running {
        addr,
        scheme: app.cfg.scheme(),
        handle,
        done,
    })
}
