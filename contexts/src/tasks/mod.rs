//! Image-generation tasks: validation of client requests, acceptance (credits, events,
//! upstream submission), upstream reports, the background worker and customer webhooks.

crate::app::service!(
    /// The tasks context: accepting tasks (one unit of work), relaying them upstream, the
    /// worker, customer webhooks and the usage log.
    Tasks
);

pub mod create;
pub mod relay;
pub mod requests;
pub mod upstreams;
pub mod usage;
pub mod view;
pub mod webhooks;
pub mod worker;
