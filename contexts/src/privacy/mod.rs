//! The privacy context: consent, objection and restriction; data-subject requests; the
//! access and portability export; deletion with its 30-day window; the retention run.

pub mod consents;
pub mod export;
pub mod export_jobs;
pub mod requests;
pub mod retention;

crate::app::service!(
    /// The privacy context's use cases.
    Privacy
);

/// The event stores of the aggregates this context owns. The fields are private to this
/// context's modules: another context reaches these aggregates only through the service.
pub struct Stores {
    consents: journey_commands::Store<journey_domain::consent::Consents>,
    retention: journey_commands::Store<journey_domain::retention_log::RetentionRun>,
    requests: journey_commands::Store<journey_domain::requests::DataSubjectRequest>,
}

impl Stores {
    pub(crate) fn new(db: &journey_commands::Db) -> Self {
        Stores {
            consents: journey_commands::Store::new(db),
            retention: journey_commands::Store::new(db),
            requests: journey_commands::Store::new(db),
        }
    }
}
