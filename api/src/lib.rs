//! The HTTP surface, the OpenAPI document and the `journey` command line.

pub mod admin;
pub mod auth;
pub mod billing;
pub mod cli;
pub mod config;
pub mod consents;
pub mod credits;
pub mod error;
pub mod export;
pub mod export_jobs;
pub mod http_middleware;
pub mod identity;
pub mod legal;
pub mod openapi;
pub mod rate_limit;
pub mod requests;
pub mod retention;
pub mod routes;
pub mod server;
pub mod staff;
pub mod state;
pub mod stripe_events;
pub mod tasks;
pub mod telemetry;
pub mod upstreams;
pub mod usage;
