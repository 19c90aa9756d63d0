//! Consent, objection and restriction of processing, per account (id = account id).
//!
//! `necessary` processing (running the service the holder asked for, and legal duties) needs
//! no consent and is not stored. `analytics_cookies` and `marketing_email` are off until the
//! holder turns them on. Objecting to direct marketing withdraws that consent and is recorded.
//! While processing is restricted, data is kept but used only for the holder's own explicit
//! requests and legal duties: `may_process` answers no for every optional purpose.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    AnalyticsCookies,
    MarketingEmail,
}

impl Purpose {
    pub const ALL: [Purpose; 2] = [Purpose::AnalyticsCookies, Purpose::MarketingEmail];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::AnalyticsCookies => "analytics_cookies",
            Purpose::MarketingEmail => "marketing_email",
        }
    }
}

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The holder, through the account API.
    Holder,
    /// Staff, recording a request that arrived another way.
    Staff,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConsentCommand {
    Set {
        purpose: Purpose,
        granted: bool,
        source: Source,
        policy_version: String,
        at: DateTime<Utc>,
    },
    ObjectToMarketing {
        source: Source,
        policy_version: String,
        at: DateTime<Utc>,
    },
    Restrict {
        source: Source,
        at: DateTime<Utc>,
    },
    /// Staff only.
    LiftRestriction {
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConsentEvent {
    ConsentGiven {
        purpose: Purpose,
        source: Source,
        policy_version: String,
        at: DateTime<Utc>,
    },
    ConsentWithdrawn {
        purpose: Purpose,
        source: Source,
        policy_version: String,
        at: DateTime<Utc>,
    },
    MarketingObjected {
        source: Source,
        policy_version: String,
        at: DateTime<Utc>,
    },
    ProcessingRestricted {
        source: Source,
        at: DateTime<Utc>,
    },
    RestrictionLifted {
        reason: String,
        at: DateTime<Utc>,
    },
}

crate::domain_event!(ConsentEvent, "1", {
    ConsentGiven, ConsentWithdrawn, MarketingObjected, ProcessingRestricted, RestrictionLifted
});

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConsentError {
    #[error("processing is not restricted")]
    NotRestricted,
    #[error("a reason is required")]
    NoReason,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Consents {
    pub granted: BTreeSet<Purpose>,
    /// The holder objected to direct marketing (until they consent to it again).
    pub marketing_objection: bool,
    pub restricted: bool,
}

impl Consents {
    /// Whether data may be used for an optional purpose now.
    pub fn may_process(&self, purpose: Purpose) -> bool {
        !self.restricted
            && self.granted.contains(&purpose)
            && !(purpose == Purpose::MarketingEmail && self.marketing_objection)
    }
}

impl Aggregate for Consents {
    const TYPE: &'static str = "consent";
    type Command = ConsentCommand;
    type Event = ConsentEvent;
    type Error = ConsentError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ConsentCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ConsentError> {
        match command {
            ConsentCommand::Set {
                purpose,
                granted,
                source,
                policy_version,
                at,
            } => {
                let event = match (granted, self.granted.contains(&purpose)) {
                    // After an objection marketing is withdrawn, so a new consent is recorded
                    // and ends the objection.
                    (true, false) => ConsentEvent::ConsentGiven {
                        purpose,
                        source,
                        policy_version,
                        at,
                    },
                    (false, true) => ConsentEvent::ConsentWithdrawn {
                        purpose,
                        source,
                        policy_version,
                        at,
                    },
                    _ => return Ok(()),
                };
                sink.write(event, self).await;
            }
            ConsentCommand::ObjectToMarketing {
                source,
                policy_version,
                at,
            } => {
                if self.granted.contains(&Purpose::MarketingEmail) {
                    let withdrawn = ConsentEvent::ConsentWithdrawn {
                        purpose: Purpose::MarketingEmail,
                        source,
                        policy_version: policy_version.clone(),
                        at,
                    };
                    sink.write(withdrawn, self).await;
                }
                if !self.marketing_objection {
                    let objected = ConsentEvent::MarketingObjected {
                        source,
                        policy_version,
                        at,
                    };
                    sink.write(objected, self).await;
                }
            }
            ConsentCommand::Restrict { source, at } => {
                if !self.restricted {
                    sink.write(ConsentEvent::ProcessingRestricted { source, at }, self)
                        .await;
                }
            }
            ConsentCommand::LiftRestriction { reason, at } => {
                if !self.restricted {
                    return Err(ConsentError::NotRestricted);
                }
                if reason.trim().is_empty() {
                    return Err(ConsentError::NoReason);
                }
                sink.write(ConsentEvent::RestrictionLifted { reason, at }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ConsentEvent) {
        match event {
            ConsentEvent::ConsentGiven { purpose, .. } => {
                self.granted.insert(purpose);
                if purpose == Purpose::MarketingEmail {
                    self.marketing_objection = false;
                }
            }
            ConsentEvent::ConsentWithdrawn { purpose, .. } => {
                self.granted.remove(&purpose);
            }
            ConsentEvent::MarketingObjected { .. } => self.marketing_objection = true,
            ConsentEvent::ProcessingRestricted { .. } => self.restricted = true,
            ConsentEvent::RestrictionLifted { .. } => self.restricted = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(events: Vec<ConsentEvent>) -> Consents {
        let mut c = Consents::default();
        for e in events {
            c.apply(e);
        }
        c
    }

    fn gave(p: Purpose) -> ConsentEvent {
        ConsentEvent::ConsentGiven {
            purpose: p,
            source: Source::Holder,
            policy_version: "v1".into(),
            at: Utc::now(),
        }
    }

    #[test]
    fn restriction_and_objection_stop_optional_processing() {
        let c = given(vec![
            gave(Purpose::AnalyticsCookies),
            gave(Purpose::MarketingEmail),
        ]);
        assert!(c.may_process(Purpose::AnalyticsCookies) && c.may_process(Purpose::MarketingEmail));
        let restricted = given(vec![
            gave(Purpose::AnalyticsCookies),
            ConsentEvent::ProcessingRestricted {
                source: Source::Holder,
                at: Utc::now(),
            },
        ]);
        assert!(!restricted.may_process(Purpose::AnalyticsCookies));
        let objected = given(vec![
            gave(Purpose::MarketingEmail),
            ConsentEvent::MarketingObjected {
                source: Source::Holder,
                policy_version: "v1".into(),
                at: Utc::now(),
            },
        ]);
        assert!(!objected.may_process(Purpose::MarketingEmail));
        assert!(
            !Consents::default().may_process(Purpose::AnalyticsCookies),
            "off by default"
        );
    }
}
