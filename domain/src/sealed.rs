//! Sealed personal data. A `Sealed<T>` is ciphertext plus a reference to the data key it
//! was sealed under; the key belongs to one subject × category × period, so destroying
//! the key erases every copy of the value wherever events, snapshots or exports hold it.
//! Sealing and opening happen in the vault (commands crate); this type only carries bytes.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;

/// Kinds of personal data, each with its own retention rule (see `retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DataCategory {
    /// Identity: email, Google name/picture/subject. Kept while the account is open.
    Account,
    /// Request metadata such as client IP addresses. 90 days.
    Usage,
    /// Prompt text and generation parameters. 90 days.
    Prompts,
    /// Billing metadata (card brand/last4/country). 7 years, survives account erasure.
    Billing,
    /// Support correspondence. 3 years after the ticket closes.
    Support,
}

impl DataCategory {
    pub const ALL: [DataCategory; 5] = [
        DataCategory::Account,
        DataCategory::Usage,
        DataCategory::Prompts,
        DataCategory::Billing,
        DataCategory::Support,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DataCategory::Account => "account",
            DataCategory::Usage => "usage",
            DataCategory::Prompts => "prompts",
            DataCategory::Billing => "billing",
            DataCategory::Support => "support",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Categories an erasure request destroys; billing records stay for their legal term.
    pub fn erasable() -> impl Iterator<Item = DataCategory> {
        Self::ALL
            .into_iter()
            .filter(|c| *c != DataCategory::Billing)
    }
}

/// Ciphertext of a `T` (AES-256-GCM), serialized as `{"sealed":"v1","k":..,"n":..,"c":..}`.
#[derive(Serialize, Deserialize)]
pub struct Sealed<T> {
    /// Format marker, so scanners and exports recognise sealed values in any JSON.
    pub sealed: SealedVersion,
    /// Data-key id (the key table maps it to subject, category and period).
    pub k: String,
    /// Nonce, base64.
    pub n: String,
    /// Ciphertext with tag, base64.
    pub c: String,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SealedVersion {
    #[serde(rename = "v1")]
    V1,
}

impl<T> Sealed<T> {
    pub fn from_parts(key_id: String, nonce_b64: String, ciphertext_b64: String) -> Self {
        Sealed {
            sealed: SealedVersion::V1,
            k: key_id,
            n: nonce_b64,
            c: ciphertext_b64,
            _t: PhantomData,
        }
    }

    pub fn key_id(&self) -> &str {
        &self.k
    }
}

impl<T> Clone for Sealed<T> {
    fn clone(&self) -> Self {
        Sealed::from_parts(self.k.clone(), self.n.clone(), self.c.clone())
    }
}

impl<T> PartialEq for Sealed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.k == other.k && self.n == other.n && self.c == other.c
    }
}

impl<T> fmt::Debug for Sealed<T> {
    // Never print ciphertext in logs: it is noise, and the key id is what matters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed(key={})", self.k)
    }
}

/// The result of opening a sealed value: the value, or the explicit fact that it was erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened<T> {
    Value(T),
    Erased,
}

impl<T> Opened<T> {
    pub fn value(self) -> Option<T> {
        match self {
            Opened::Value(v) => Some(v),
            Opened::Erased => None,
        }
    }

    pub fn as_ref(&self) -> Opened<&T> {
        match self {
            Opened::Value(v) => Opened::Value(v),
            Opened::Erased => Opened::Erased,
        }
    }
}

impl<T: Serialize> Serialize for Opened<T> {
    /// Erased values render as the string `"[erased]"` so exports and audits stay readable.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Opened::Value(v) => v.serialize(s),
            Opened::Erased => s.serialize_str(ERASED_MARKER),
        }
    }
}

pub const ERASED_MARKER: &str = "[erased]";

/// Returns true when a JSON value is a sealed envelope.
pub fn is_sealed_json(v: &serde_json::Value) -> bool {
    v.get("sealed").and_then(|s| s.as_str()) == Some("v1") && v.get("k").is_some()
}

/// Where a sealed envelope sits in a JSON tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// As a JSON object.
    Object,
    /// Serialized inside a JSON string (command metadata maps hold values as strings).
    InString,
}

/// Calls `f` on every sealed envelope in a JSON tree; where it returns a value, that value
/// replaces the envelope (or the string holding it). Returns whether anything changed.
/// The one walk shared by opening (exports, audits) and tombstoning (retention).
pub fn map_sealed<E>(
    v: &mut serde_json::Value,
    f: &mut impl FnMut(&serde_json::Value, Embedding) -> Result<Option<serde_json::Value>, E>,
) -> Result<bool, E> {
    use serde_json::Value;
    let mut changed = false;
    let mut stack = vec![v];
    while let Some(node) = stack.pop() {
        if is_sealed_json(node) {
            if let Some(new) = f(node, Embedding::Object)? {
                *node = new;
                changed = true;
            }
            continue;
        }
        match node {
            Value::Object(m) => stack.extend(m.values_mut()),
            Value::Array(a) => stack.extend(a.iter_mut()),
            Value::String(s) if s.contains("\"sealed\":\"v1\"") => {
                let inner = serde_json::from_str::<Value>(s).ok();
                if let Some(inner) = inner.filter(is_sealed_json) {
                    if let Some(new) = f(&inner, Embedding::InString)? {
                        *node = new;
                        changed = true;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(changed)
}
