//! The bounded contexts of JourneyAPI, one folder each: `identity`, `credits` (and
//! billing), `tasks`, `privacy`, `legal`. Each context's service holds its use cases and
//! returns a transport-free `ServiceError`; `api` is the HTTP surface and CLI over them.
//!
//! `app` builds the shared `Core` (configuration, database, stores, vault, clients) and
//! hands out each context's service.

pub mod app;
pub mod config;
pub mod error;
pub mod rate_limit;
pub mod text;
pub mod transport;

pub mod credits;
pub mod identity;
pub mod legal;
pub mod privacy;
pub mod tasks;

pub use app::{App, Core};
pub use error::ServiceError;
