//! Metadata every command carries: who acted, which request, from where, and when.
//! cqrs-es stores metadata as a string map; the client IP is personal data and is kept
//! as a sealed envelope serialized into its string.

use crate::sealed::Sealed;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    Account(Uuid),
    ApiKey(Uuid),
    Staff(Uuid),
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Account(id) => write!(f, "account:{id}"),
            Actor::ApiKey(id) => write!(f, "api_key:{id}"),
            Actor::Staff(id) => write!(f, "staff:{id}"),
            Actor::System => write!(f, "system"),
        }
    }
}

impl FromStr for Actor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "system" {
            return Ok(Actor::System);
        }
        let (kind, id) = s
            .split_once(':')
            .ok_or_else(|| format!("bad actor {s:?}"))?;
        let id = Uuid::parse_str(id).map_err(|e| format!("bad actor id: {e}"))?;
        match kind {
            "account" => Ok(Actor::Account(id)),
            "api_key" => Ok(Actor::ApiKey(id)),
            "staff" => Ok(Actor::Staff(id)),
            _ => Err(format!("unknown actor kind {kind:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandMeta {
    pub actor: Actor,
    pub request_id: String,
    pub client_ip: Option<Sealed<String>>,
    pub at: DateTime<Utc>,
}

impl CommandMeta {
    pub fn system(at: DateTime<Utc>) -> Self {
        CommandMeta {
            actor: Actor::System,
            request_id: format!("sys-{}", Uuid::new_v4()),
            client_ip: None,
            at,
        }
    }

    pub fn to_map(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert("actor".into(), self.actor.to_string());
        m.insert("request_id".into(), self.request_id.clone());
        m.insert("at".into(), self.at.to_rfc3339());
        if let Some(ip) = &self.client_ip {
            m.insert(
                "client_ip".into(),
                serde_json::to_string(ip).expect("sealed serializes"),
            );
        }
        m
    }

    pub fn from_map(m: &HashMap<String, String>) -> Option<Self> {
        Some(CommandMeta {
            actor: m.get("actor")?.parse().ok()?,
            request_id: m.get("request_id")?.clone(),
            client_ip: m
                .get("client_ip")
                .and_then(|s| serde_json::from_str(s).ok()),
            at: DateTime::parse_from_rfc3339(m.get("at")?)
                .ok()?
                .with_timezone(&Utc),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_keeps_ip_sealed() {
        let meta = CommandMeta {
            actor: Actor::Account(Uuid::new_v4()),
            request_id: "r1".into(),
            client_ip: Some(Sealed::from_parts(
                "k1".into(),
                "bm9uY2U=".into(),
                "Y3Q=".into(),
            )),
            at: Utc::now(),
        };
        let map = meta.to_map();
        assert!(map["client_ip"].contains("\"sealed\":\"v1\""));
        let back = CommandMeta::from_map(&map).unwrap();
        assert_eq!(back.actor, meta.actor);
        assert_eq!(back.client_ip, meta.client_ip);
    }
}
