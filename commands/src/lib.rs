//! The write side: event-store backends behind one trait (`event_store`), the aggregate stores,
//! the vault for sealed personal data, and the services commands need (mail, OIDC, clock).

pub mod billing_refs;
pub mod clock;
pub mod db;
pub mod event_rewrite;
pub mod event_store;
pub mod fault;
pub mod identity_index;
pub mod leases;
pub mod limits;
pub mod mailer;
pub mod net_guard;
pub mod oidc;
pub mod secrets;
pub mod store;
pub mod stripe_api;
pub mod stripe_webhook;
pub mod unit_of_work;
pub mod upstream;
pub mod usage_log;
pub mod vault;

pub use clock::{Clock, SharedClock};
pub use db::{Backend, Db};
pub use store::{Decided, Store, StoreError};
pub use unit_of_work::{UnitError, UnitOfWork};
pub use vault::{Vault, VaultError};
