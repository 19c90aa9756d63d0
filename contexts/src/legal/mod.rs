//! The privacy policy's remaining duties: policy versions and notices, children, the breach
//! register, takedowns, support correspondence, and the sub-processor registry.

crate::app::service!(
    /// The legal context: policy versions and notices, children, breaches, takedowns and
    /// support correspondence.
    Legal
);

pub mod breaches;
pub mod children;
pub mod policies;
pub mod support;
pub mod takedowns;

/// Cases and tickets listed at most (newest first): the registers load each aggregate.
pub const REGISTER_LIMIT: i64 = 500;
