//! The pure core of JourneyAPI: aggregates, their commands and events, and the value
//! types and policies they share. No database, no HTTP and no clock reads live here:
//! time always arrives inside a command.

pub mod account;
pub mod api_key;
pub mod billing;
pub mod breach;
pub mod catalog;
pub mod child_report;
pub mod consent;
pub mod credits;
pub mod magic_link;
pub mod meta;
pub mod models;
pub mod policy;
pub mod requests;
pub mod retention;
pub mod retention_log;
pub mod sealed;
pub mod session;
pub mod staff;
pub mod stripe_event_log;
pub mod takedown;
pub mod task;
pub mod ticket;
pub mod usage;

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
        impl $ty {
            /// Every event type of this enum, as stored in `events.event_type`.
            pub const EVENT_TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];
        }
    };
}

/// Every (aggregate type, event type) this version writes: the export mapping and other
/// exhaustive tables are checked against it.
pub fn all_event_types() -> Vec<(&'static str, &'static str)> {
    use cqrs_es::Aggregate;
    fn of<A: Aggregate>(types: &'static [&'static str]) -> Vec<(&'static str, &'static str)> {
        types.iter().map(|t| (A::TYPE, *t)).collect()
    }
    [
        of::<account::Account>(account::AccountEvent::EVENT_TYPES),
        of::<magic_link::MagicLink>(magic_link::MagicLinkEvent::EVENT_TYPES),
        of::<session::Session>(session::SessionEvent::EVENT_TYPES),
        of::<api_key::ApiKey>(api_key::ApiKeyEvent::EVENT_TYPES),
        of::<credits::CreditLedger>(credits::CreditEvent::EVENT_TYPES),
        of::<billing::BillingAccount>(billing::BillingEvent::EVENT_TYPES),
        of::<consent::Consents>(consent::ConsentEvent::EVENT_TYPES),
        of::<staff::StaffMember>(staff::StaffEvent::EVENT_TYPES),
        of::<retention_log::RetentionRun>(retention_log::RetentionEvent::EVENT_TYPES),
        of::<requests::DataSubjectRequest>(requests::RequestEvent::EVENT_TYPES),
        of::<task::Task>(task::TaskEvent::EVENT_TYPES),
        of::<usage::UsageDay>(usage::UsageEvent::EVENT_TYPES),
        of::<policy::PolicyVersion>(policy::PolicyEvent::EVENT_TYPES),
        of::<policy::PolicyAck>(policy::AckEvent::EVENT_TYPES),
        of::<child_report::ChildReport>(child_report::ChildReportEvent::EVENT_TYPES),
        of::<breach::Breach>(breach::BreachEvent::EVENT_TYPES),
        of::<takedown::Takedown>(takedown::TakedownEvent::EVENT_TYPES),
        of::<ticket::Ticket>(ticket::TicketEvent::EVENT_TYPES),
        of::<stripe_event_log::StripeEventLog>(stripe_event_log::StripeEventLogEvent::EVENT_TYPES),
    ]
    .concat()
}
