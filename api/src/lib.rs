//! The HTTP surface, the OpenAPI document and the `journey` command line, over the
//! contexts' services (`journey_contexts`). No SQL and no business rule here: a handler
//! reads the request, calls one service method and shapes the answer.

pub mod auth;
pub mod cli;
pub mod error;
pub mod http_middleware;
pub mod input;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod web;
