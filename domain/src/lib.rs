//! The pure core of JourneyAPI: aggregates, their commands and events, and the value
//! types and policies they share. No database, no HTTP and no clock reads live here:
//! time always arrives inside a command.

pub mod account;
pub mod api_key;
pub mod billing;
pub mod catalog;
pub mod consent;
pub mod credits;
pub mod magic_link;
pub mod meta;
pub mod retention;
pub mod sealed;
pub mod session;
pub mod staff;

pub use sealed::{DataCategory, Opened, Sealed};

/// Implements `cqrs_es::DomainEvent` for an event enum whose variant names are the event types.
#[macro_export]
macro_rules! domain_event {
    ($ty:ty, $version:literal, { $($variant:ident),+ $(,)? }) => {
        impl cqrs_es::DomainEvent for $ty {
            fn event_type(&self) -> String {
                match self { $(Self::$variant { .. } => stringify!($variant).to_string(),)+ }
            }
            fn event_version(&self) -> String {
                $version.to_string()
            }
        }
    };
}
