//! The read side: read-model tables, each owned by one named projection with a durable
//! checkpoint, and the runner that feeds them from the event store in commit order.

pub mod billing_models;
pub mod events;
pub mod read_models;
pub mod runner;
pub mod staff_models;
pub mod task_models;

pub use events::{Cursor, StoredEvent};
pub use runner::{Projection, ProjectionStatus, Runner};
