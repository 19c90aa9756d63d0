//! The black-box test suite, one binary (one link) for all of it: each module is one
//! area of the system, driven over HTTP, the CLI and the real binary.

mod support;

mod api_keys;
mod backend_contract;
mod billing;
mod browser;
mod browser_console;
mod browser_privacy;
mod browser_usage;
mod consent;
mod crash;
mod credits;
mod event_store;
mod export;
mod input;
mod instances;
mod legal;
mod ops;
mod privacy;
mod reconcile;
mod requests;
mod retention;
mod sign_in;
mod staff;
mod tasks;
mod transport;
mod usage;
mod web;
mod web_console;
mod web_privacy;
mod web_usage;
mod webhooks;
