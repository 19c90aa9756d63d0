//! Access and portability export: one versioned JSON document of everything held about a
//! subject, built by replaying every stream of the subject (`subject_streams`) in commit
//! order and opening sealed fields (destroyed keys read `"[erased]"`), plus an HTML
//! rendering of the same document. docs/export-format.md describes the format.

use super::Privacy;
use crate::error::ServiceError;
use crate::identity::from_ms;
use chrono::{DateTime, Utc};
use journey_commands::vault::KeyRing;
use serde_json::{json, Map, Value};
use sqlx::Row;
use uuid::Uuid;

pub const FORMAT: &str = "journeyapi.subject-export";
pub const VERSION: u32 = 1;

/// Where an event goes in the export. Every event type this version writes must be listed
/// here (a test checks `journey_domain::all_event_types()` against it), so a new kind of
/// data cannot be left out of exports silently.
pub fn section_of(aggregate_type: &str, event_type: &str) -> Option<&'static str> {
    Some(match (aggregate_type, event_type) {
        (
            "account",
            "AccountRegistered"
            | "GoogleLinked"
            | "NameCorrected"
            | "EmailChanged"
            | "SignUpTermsAccepted",
        ) => "profile",
        (
            "account",
            "AccountErased" | "DeletionRequested" | "DeletionCancelled" | "ErasureCertified",
        ) => "erasure",
        ("magic_link", "MagicLinkIssued" | "MagicLinkConsumed") => "sign_in_links",
        ("session", "SessionStarted" | "SessionEnded") => "sessions",
        ("api_key", "ApiKeyCreated" | "ApiKeyUsed" | "ApiKeyRevoked") => "api_keys",
        (
            "credit_ledger",
            "CreditsGranted"
            | "CreditsReserved"
            | "ReservationCaptured"
            | "ReservationReleased"
            | "CreditsExpired"
            | "PurchaseRefunded"
            | "CreditsClawedBack",
        ) => "credit_ledger",
        (
            "billing",
            "StripeCustomerLinked"
            | "SubscriptionChanged"
            | "SubscriptionEnded"
            | "BillingRecorded"
            | "PaymentMethodUpdated"
            | "AccountSuspended"
            | "SuspensionLifted"
            | "StripeEventProcessed",
        ) => "billing",
        (
            "consent",
            "ConsentGiven"
            | "ConsentWithdrawn"
            | "MarketingObjected"
            | "ProcessingRestricted"
            | "RestrictionLifted",
        ) => "consents",
        (
            "task",
            "TaskCreated" | "TaskSubmitted" | "TaskProgressed" | "TaskFinished" | "TaskFailed"
            | "WebhookAttempted" | "ResultsTakenDown",
        ) => "tasks",
        ("usage", "ApiRequestRecorded") => "api_requests",
        ("ticket", "TicketOpened" | "TicketMessagePosted" | "TicketClosed" | "TicketErased") => {
            "support"
        }
        ("policy_ack", "PolicyNoticeSent" | "PolicyAccepted") => "policy",
        ("staff", "RoleGranted" | "RoleRevoked") => "staff_roles",
        ("staff", "StaffRead") => "staff_activity",
        (
            "dsr",
            "RequestReceived"
            | "VerificationCodeIssued"
            | "VerificationFailed"
            | "RequestVerified"
            | "RequestStarted"
            | "RequestCompleted"
            | "RequestRejected"
            | "DueReminderSent",
        ) => "requests",
        _ => return None,
    })
}

/// Event types that hold no data about any subject (with why); everything else must map.
pub const NO_SUBJECT_DATA: [(&str, &str, &str); 14] = [
    (
        "retention",
        "RetentionRunRecorded",
        "counts of a retention run, not about a person",
    ),
    (
        "retention",
        "TaskLogsTrimmed",
        "the cut-off instant of a retention run, not about a person",
    ),
    ("policy", "PolicyPublished", "a policy text, not about a person"),
    (
        "child_report",
        "ChildReportFiled",
        "a reporter's case, sealed under the report; the reported holder's erasure certificate is in their export",
    ),
    ("child_report", "ChildReportConfirmed", "staff decision on a report (see ChildReportFiled)"),
    ("child_report", "ChildReportRejected", "staff decision on a report (see ChildReportFiled)"),
    (
        "breach",
        "BreachRecorded",
        "the breach register: names affected accounts by id only; the notice itself reached the holder by email",
    ),
    ("breach", "BreachSubjectNotified", "register entry (see BreachRecorded)"),
    ("breach", "RegulatorNotified", "register entry (see BreachRecorded)"),
    (
        "takedown",
        "TakedownFiled",
        "a claimant's case, sealed under the case; the holder's side is ResultsTakenDown in their tasks",
    ),
    ("takedown", "TakedownActioned", "staff decision on a case (see TakedownFiled)"),
    ("takedown", "TakedownRejected", "staff decision on a case (see TakedownFiled)"),
    ("takedown", "TakedownNoticeSent", "a notice on a case (see TakedownFiled)"),
    (
        "stripe_event",
        "StripeEventIgnored",
        "a Stripe event we could not use: its type and the names of missing fields, no payload value",
    ),
];

/// Sections in document order (also the HTML order).
pub const SECTIONS: [&str; 16] = [
    "profile",
    "sign_in_links",
    "sessions",
    "api_keys",
    "consents",
    "policy",
    "credit_ledger",
    "billing",
    "tasks",
    "api_requests",
    "support",
    "staff_roles",
    "staff_activity",
    "requests",
    "erasure",
    "unmapped",
];

/// Events per read; each read scans the subject's remaining events once, so fewer,
/// larger reads are cheaper for long histories.
const BATCH: i64 = 5000;

/// Secret-derived values are never exported, not even hashed: HMACs of API keys and of
/// verification codes and of upstream notification tokens, and streams named by a hash
/// of a sign-in or session token.
const SECRET_FIELDS: [&str; 3] = ["key_hash", "code_hash", "notify_token_hash"];
const HASH_NAMED_STREAMS: [&str; 2] = ["session", "magic_link"];
const WITHHELD: &str = "[withheld]";
const TAKEN_DOWN: &str = "[taken down]";

fn withhold_secrets(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if SECRET_FIELDS.contains(&k.as_str()) {
                    *val = Value::String(WITHHELD.into());
                } else {
                    withhold_secrets(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(withhold_secrets),
        _ => {}
    }
}

impl Privacy<'_> {
    async fn subject_event_count(&self, subject: &str) -> Result<u64, ServiceError> {
        let n: i64 = sqlx::query(
            "SELECT count(*) FROM events WHERE (aggregate_type, aggregate_id) IN
             (SELECT aggregate_type, aggregate_id FROM subject_streams WHERE subject = $1)",
        )
        .bind(subject)
        .fetch_one(&self.db.any)
        .await?
        .try_get(0)?;
        Ok(n as u64)
    }

    /// Tasks of the subject whose results a takedown removed.
    async fn taken_down_tasks_of(
        &self,
        subject: &str,
    ) -> Result<std::collections::HashSet<String>, ServiceError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT e.aggregate_id FROM events e
             JOIN subject_streams s ON s.aggregate_type = e.aggregate_type AND s.aggregate_id = e.aggregate_id
             WHERE s.subject = $1 AND e.aggregate_type = 'task' AND e.event_type = 'ResultsTakenDown'",
        )
        .bind(subject)
        .fetch_all(&self.db.any)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Builds the export. `progress(done, total)` is called after each batch of events.
    pub async fn build_export(
        &self,
        subject: Uuid,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Value, ServiceError> {
        // Usage records still buffered in this process belong in the export (their stream
        // is found through `subject_streams`, so wait for the projection to have it).
        self.usage_log
            .flush()
            .await
            .map_err(|e| ServiceError::Internal(e.into()))?;
        let usage = self.usage_log.stream_of(subject, self.clock.now());
        self.identity()
            .settle::<journey_domain::usage::UsageDay>(&usage)
            .await?;
        self.runner.catch_up().await?;
        let id = subject.to_string();
        let total = self.subject_event_count(&id).await?;
        if total == 0 {
            return Err(ServiceError::NotFound(format!(
                "no data held about {subject}"
            )));
        }
        let mut ring = KeyRing::default();
        let mut sections: Map<String, Value> = SECTIONS
            .iter()
            .map(|s| (s.to_string(), Value::Array(vec![])))
            .collect();
        let mut usage = Vec::new();
        let taken_down = self.taken_down_tasks_of(&id).await?;
        let (mut after, mut done) = (0i64, 0u64);
        loop {
            let batch =
                journey_projections::events::read_subject(&self.db, &id, after, BATCH).await?;
            if batch.is_empty() {
                break;
            }
            for e in &batch {
                let data = self.vault.open_json_with(&e.payload, &mut ring).await?;
                let meta = self.vault.open_json_with(&e.metadata, &mut ring).await?;
                let at = from_ms(e.committed_at);
                let stream = if HASH_NAMED_STREAMS.contains(&e.aggregate_type.as_str()) {
                    format!("{}/{WITHHELD}", e.aggregate_type)
                } else {
                    format!("{}/{}", e.aggregate_type, e.aggregate_id)
                };
                let section = section_of(&e.aggregate_type, &e.event_type).unwrap_or("unmapped");
                // Payloads are `{"EventType": {...}}`: keep the inner object.
                let mut data = data.get(&e.event_type).cloned().unwrap_or(data);
                withhold_secrets(&mut data);
                if e.event_type == "TaskFinished" && taken_down.contains(&e.aggregate_id) {
                    // A takedown removes the results from exports too.
                    data["result"] = json!(TAKEN_DOWN);
                }
                sections[section]
                    .as_array_mut()
                    .expect("sections are arrays")
                    .push(json!({
                        "event": e.event_type,
                        "stream": stream,
                        "recorded_at": at,
                        "data": data,
                    }));
                usage.push(json!({
                    "at": meta.get("at").cloned().unwrap_or(json!(at)),
                    "actor": meta.get("actor"),
                    "request_id": meta.get("request_id"),
                    "client_ip": meta.get("client_ip"),
                    "stream": stream,
                    "event": e.event_type,
                }));
                after = e.cursor.position;
            }
            done += batch.len() as u64;
            progress(done, total);
        }
        let accessed = self.staff_reads_of(subject).await?;
        let profile = match self.identity().me(subject).await {
            Ok(me) => serde_json::to_value(me).map_err(|e| ServiceError::Internal(e.into()))?,
            Err(_) => Value::Null,
        };
        let balance = self.credits().balance(subject).await?;
        Ok(json!({
            "format": FORMAT,
            "version": VERSION,
            "subject": subject,
            "generated_at": self.clock.now(),
            "summary": {
                "profile": profile,
                "plan": self.credits().plan_of(subject).await?,
                "credits": balance,
                "consents": self.consents(subject).await.map(|c| json!({
                    "granted": c.granted.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                    "marketing_objection": c.marketing_objection,
                    "restricted": c.restricted,
                }))?,
            },
            "sections": sections,
            "usage_log": usage,
            "accessed_by_staff": accessed,
            "not_held": {
                "prompts_older_than_90_days": "prompts, parameters, results and webhook addresses are destroyed 90 days after the day they were sent; older tasks read [erased] (see sections.tasks)",
                "card_details": "only card brand, last four digits and country are kept (see billing)",
            },
        }))
    }

    /// Staff reads of this subject's data (who, what, why, when).
    async fn staff_reads_of(&self, subject: Uuid) -> Result<Vec<Value>, ServiceError> {
        let rows = sqlx::query(
            "SELECT actor, action, reason, at FROM rm_audit WHERE subject = $1 ORDER BY position",
        )
        .bind(subject.to_string())
        .fetch_all(&self.db.any)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(json!({
                    "staff": r.try_get::<String, _>(0)?,
                    "action": r.try_get::<String, _>(1)?,
                    "reason": r.try_get::<String, _>(2)?,
                    "at": DateTime::<Utc>::from_timestamp_millis(r.try_get(3)?),
                }))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ServiceError::from)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => esc(s),
        other => format!("<code>{}</code>", esc(&other.to_string())),
    }
}

fn table(rows: &[Value]) -> String {
    if rows.is_empty() {
        return "<p>None.</p>\n".into();
    }
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        if let Value::Object(m) = r {
            for k in m.keys() {
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
    }
    let mut out = String::from("<table>\n<tr>");
    for c in &cols {
        out.push_str(&format!("<th>{}</th>", esc(c)));
    }
    out.push_str("</tr>\n");
    for r in rows {
        out.push_str("<tr>");
        for c in &cols {
            out.push_str(&format!(
                "<td>{}</td>",
                cell(r.get(c).unwrap_or(&Value::Null))
            ));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// The same document as readable HTML (every value escaped).
pub fn render_html(doc: &Value) -> String {
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Your JourneyAPI data</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px;vertical-align:top;text-align:left}}code{{white-space:pre-wrap}}</style></head><body>\n\
         <h1>Your JourneyAPI data</h1>\n<p>Subject {} · generated {} · format {} v{}</p>\n",
        cell(&doc["subject"]),
        cell(&doc["generated_at"]),
        FORMAT,
        VERSION
    );
    out.push_str("<h2>Summary</h2>\n");
    if let Value::Object(m) = &doc["summary"] {
        let rows: Vec<Value> = m
            .iter()
            .map(|(k, v)| json!({ "item": k, "value": v }))
            .collect();
        out.push_str(&table(&rows));
    }
    for s in SECTIONS {
        let rows = doc["sections"][s].as_array().cloned().unwrap_or_default();
        out.push_str(&format!("<h2>{}</h2>\n", esc(&s.replace('_', " "))));
        out.push_str(&table(&rows));
    }
    for (key, title) in [
        ("usage_log", "Usage log (request metadata)"),
        ("accessed_by_staff", "Staff access to your data"),
    ] {
        out.push_str(&format!("<h2>{title}</h2>\n"));
        out.push_str(&table(
            doc[key].as_array().map(Vec::as_slice).unwrap_or(&[]),
        ));
    }
    out.push_str("<h2>Not held</h2>\n");
    if let Value::Object(m) = &doc["not_held"] {
        let rows: Vec<Value> = m
            .iter()
            .map(|(k, v)| json!({ "item": k, "note": v }))
            .collect();
        out.push_str(&table(&rows));
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_an_export_mapping() {
        let missing: Vec<String> = journey_domain::all_event_types()
            .into_iter()
            .filter(|(a, e)| section_of(a, e).is_none())
            .filter(|(a, e)| !NO_SUBJECT_DATA.iter().any(|(na, ne, _)| na == a && ne == e))
            .map(|(a, e)| format!("{a}/{e}"))
            .collect();
        assert!(
            missing.is_empty(),
            "event types without an export mapping (add them to export::section_of): {missing:?}"
        );
        for (a, e) in journey_domain::all_event_types() {
            if let Some(s) = section_of(a, e) {
                assert!(SECTIONS.contains(&s), "{a}/{e}");
            }
        }
    }

    #[test]
    fn html_escapes_everything() {
        let doc = json!({
            "subject": "<script>",
            "generated_at": "now",
            "summary": { "profile": { "name": "<b>x</b>" } },
            "sections": { "profile": [ { "event": "E", "data": { "name": "<img src=x>" } } ] },
            "usage_log": [],
            "accessed_by_staff": [],
            "not_held": {},
        });
        let html = render_html(&doc);
        assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<b>x"));
        assert!(html.contains("&lt;img src=x&gt;"));
    }
}
