//! The privacy policy's remaining duties: policy versions and notices, children, the breach
//! register, takedowns, support correspondence, and the sub-processor registry.

pub mod breaches;
pub mod children;
pub mod policies;
pub mod support;
pub mod takedowns;
