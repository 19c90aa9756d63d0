//! The privacy policy's remaining duties: policy versions and notices, children, the breach
//! register, takedowns, support correspondence, and the sub-processor registry.

crate::app::service!(
    /// The legal context: policy versions and notices, children, breaches, takedowns and
    /// support correspondence.
    Legal
);

/// The event stores of the aggregates this context owns. The fields are private to this
/// context's modules: another context reaches these aggregates only through the service.
pub struct Stores {
    policies: journey_commands::Store<journey_domain::policy::PolicyVersion>,
    policy_acks: journey_commands::Store<journey_domain::policy::PolicyAck>,
    child_reports: journey_commands::Store<journey_domain::child_report::ChildReport>,
    breaches: journey_commands::Store<journey_domain::breach::Breach>,
    takedowns: journey_commands::Store<journey_domain::takedown::Takedown>,
    tickets: journey_commands::Store<journey_domain::ticket::Ticket>,
}

impl Stores {
    pub(crate) fn new(db: &journey_commands::Db) -> Self {
        Stores {
            policies: journey_commands::Store::new(db),
            policy_acks: journey_commands::Store::new(db),
            child_reports: journey_commands::Store::new(db),
            breaches: journey_commands::Store::new(db),
            takedowns: journey_commands::Store::new(db),
            tickets: journey_commands::Store::new(db),
        }
    }
}

pub mod breaches;
pub mod children;
pub mod policies;
pub mod support;
pub mod takedowns;

/// Cases and tickets listed at most (newest first): the registers load each aggregate.
pub const REGISTER_LIMIT: i64 = 500;
