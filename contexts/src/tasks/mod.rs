//! Image-generation tasks: validation of client requests, acceptance (credits, events,
//! upstream submission), upstream reports, the background worker and customer webhooks.

crate::app::service!(
    /// The tasks context: accepting tasks (one unit of work), relaying them upstream, the
    /// worker, customer webhooks and the usage log.
    Tasks
);

/// The event stores of the aggregates this context owns. The fields are private to this
/// context's modules: another context reaches these aggregates only through the service.
pub struct Stores {
    tasks: journey_commands::Store<journey_domain::task::Task>,
}

impl Stores {
    pub(crate) fn new(db: &journey_commands::Db) -> Self {
        Stores {
            tasks: journey_commands::Store::new(db),
        }
    }
}

pub mod create;
pub mod relay;
pub mod requests;
pub mod upstreams;
pub mod usage;
pub mod view;
pub mod webhooks;
pub mod worker;

impl Tasks<'_> {
    /// A task's current state, loaded from its stream (an unknown id loads as a task that
    /// was never created). Ownership is the caller's to check (`view::owned_task`).
    pub async fn task(&self, id: &str) -> Result<journey_domain::task::Task, crate::ServiceError> {
        Ok(self.stores.tasks.tasks.load(id).await?.0)
    }
}
