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
