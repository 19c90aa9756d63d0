//! Image-generation tasks: validation of client requests, acceptance (credits, events,
//! upstream submission), upstream reports, the background worker and customer webhooks.

pub mod create;
pub mod relay;
pub mod requests;
pub mod view;
pub mod webhooks;
pub mod worker;
