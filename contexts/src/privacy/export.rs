//! Access and portability export: one versioned JSON document of everything held about a
//! subject, built by replaying every stream of the subject (`subject_streams`) in commit
//! order and opening sealed fields (destroyed keys read `"[erased]"`), plus an HTML
//! rendering of the same document. docs/export-format.md describes the format.

use super::Privacy;
use crate::error::ServiceError;
use crate::identity::from_ms;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use journey_commands::vault::KeyRing;
use journey_projections::events::StoredEvent;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sqlx::Row;
use std::mem::take;
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

/// Events between two progress reports.
const PROGRESS_EVERY: u64 = 5000;

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

    /// What every export does first: flush buffered usage, let the projections catch up,
    /// count the subject's events (none: not found), find the taken-down tasks.
    async fn export_start(&self, subject: Uuid) -> Result<Started, ServiceError> {
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
        let taken_down = self.taken_down_tasks_of(&id).await?;
        Ok(Started {
            id,
            total,
            taken_down,
        })
    }

    /// The top-level fields other than `sections` and `usage_log`.
    async fn export_fields(&self, subject: Uuid) -> Result<Map<String, Value>, ServiceError> {
        let accessed = self.staff_reads_of(subject).await?;
        let profile = match self.identity().me(subject).await {
            Ok(me) => serde_json::to_value(me).map_err(|e| ServiceError::Internal(e.into()))?,
            Err(_) => Value::Null,
        };
        let balance = self.credits().balance(subject).await?;
        let fields = json!({
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
            "accessed_by_staff": accessed,
            "not_held": {
                "prompts_older_than_90_days": "prompts, parameters, results and webhook addresses are destroyed 90 days after the day they were sent; older tasks read [erased] (see sections.tasks)",
                "card_details": "only card brand, last four digits and country are kept (see billing)",
            },
        });
        match fields {
            Value::Object(m) => Ok(m),
            _ => unreachable!("json! of an object literal"),
        }
    }

    /// Replays the subject's history for an export: one streamed query in position order
    /// (read once, sorted once; paging re-read it per page), stopping after `upto` when
    /// given. Each event is opened in place (the ring fetches each data key once for the
    /// whole export) and handed to `sink` as its section, its section entry and its
    /// `usage_log` entry. `progress` is told every `PROGRESS_EVERY` events; returns how many
    /// were handed over.
    async fn replay(
        &self,
        started: &Started,
        upto: Option<i64>,
        progress: &mut impl FnMut(u64, u64),
        mut sink: impl FnMut(&'static str, SectionEntry<'_>, UsageEntry<'_>) -> Result<(), ServiceError>,
    ) -> Result<u64, ServiceError> {
        use journey_projections::events::{subject_events, subject_events_sql};
        let sql = subject_events_sql(&self.db);
        let mut events = subject_events(&self.db, &sql, &started.id);
        let mut ring = KeyRing::default();
        let mut done = 0u64;
        while let Some(e) = events.next().await {
            let mut e = e?;
            if upto.is_some_and(|upto| e.cursor.position > upto) {
                break;
            }
            let data = self
                .vault
                .open_json_with(take(&mut e.payload), &mut ring)
                .await?;
            let meta = self
                .vault
                .open_json_with(take(&mut e.metadata), &mut ring)
                .await?;
            let section = section_of(&e.aggregate_type, &e.event_type).unwrap_or("unmapped");
            let stream = stream_name(&e);
            sink(
                section,
                section_entry(&e, &stream, data, &started.taken_down),
                usage_entry(&e, &stream, meta),
            )?;
            done += 1;
            if done.is_multiple_of(PROGRESS_EVERY) {
                progress(done, started.total.max(done));
            }
        }
        Ok(done)
    }

    /// Builds the export as a `Value` (what the HTML rendering starts from). JSON goes out
    /// through `write_export_json` / `export_document` instead, which print the same
    /// document without building it.
    /// `progress(done, total)` is called every `PROGRESS_EVERY` events and at the end.
    pub async fn build_export(
        &self,
        subject: Uuid,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Value, ServiceError> {
        let started = self.export_start(subject).await?;
        let mut sections: Map<String, Value> = SECTIONS
            .iter()
            .map(|s| (s.to_string(), Value::Array(vec![])))
            .collect();
        let mut usage = Vec::new();
        let done = self
            .replay(&started, None, &mut progress, |section, entry, used| {
                sections[section]
                    .as_array_mut()
                    .expect("sections are arrays")
                    .push(entry.into_value());
                usage.push(used.into_value());
                Ok(())
            })
            .await?;
        progress(done, started.total.max(done));
        let mut doc = self.export_fields(subject).await?;
        doc.insert("sections".into(), Value::Object(sections));
        doc.insert("usage_log".into(), Value::Array(usage));
        Ok(Value::Object(doc))
    }

    /// Writes the JSON export to `out` as it reads it: the same document, byte for byte,
    /// as `serde_json::to_string_pretty(&build_export(..))`, with bounded memory (the CLI).
    ///
    /// The document groups events by section (sections in key order) and repeats every
    /// event in `usage_log`, so one pass in position order cannot write it front to back.
    /// The history is read once and each entry is written, as it is made, to its part (one
    /// per section and one for `usage_log`), each spilled to a temporary file unlinked at
    /// creation, so nothing outlives the process; the parts are then copied into `out` in
    /// document order. Memory holds one entry at a time and the parts' buffers. (Reading
    /// the history once per part, as an earlier version did, read every row twice.) The
    /// pass stops at the position the export started at, so an event appended while it
    /// runs is left out of every part alike. `progress(done, total)` counts events.
    pub async fn write_export_json(
        &self,
        subject: Uuid,
        out: &mut impl ExportOut,
        progress: impl FnMut(u64, u64),
    ) -> Result<(), ServiceError> {
        self.write_json(subject, out, Keep::Spilled, progress).await
    }

    /// The export as a document to send: JSON written as `write_export_json` writes it,
    /// with the parts kept in memory (the document is held whole anyway, and a server
    /// keeps personal data off its disk); HTML rendered from `build_export`.
    pub async fn export_document(
        &self,
        subject: Uuid,
        format: super::export_jobs::ExportFormat,
        progress: impl FnMut(u64, u64),
    ) -> Result<String, ServiceError> {
        use super::export_jobs::ExportFormat;
        match format {
            ExportFormat::Json => {
                let mut out = Vec::new();
                self.write_json(subject, &mut out, Keep::InMemory, progress)
                    .await?;
                String::from_utf8(out).map_err(|e| ServiceError::Internal(e.into()))
            }
            ExportFormat::Html => Ok(render_html(&self.build_export(subject, progress).await?)),
        }
    }

    async fn write_json(
        &self,
        subject: Uuid,
        out: &mut impl ExportOut,
        keep: Keep,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(), ServiceError> {
        let io = |e: std::io::Error| ServiceError::Internal(e.into());
        let started = self.export_start(subject).await?;
        let upto: i64 = sqlx::query("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&self.db.any)
            .await?
            .try_get(0)?;
        let fields = self.export_fields(subject).await?;
        let mut sections: std::collections::BTreeMap<&str, Part> = SECTIONS
            .iter()
            .map(|name| Ok((*name, Part::new(3, keep)?)))
            .collect::<std::io::Result<_>>()
            .map_err(io)?;
        let mut usage = Some(Part::new(2, keep).map_err(io)?);
        let done = self
            .replay(
                &started,
                Some(upto),
                &mut progress,
                |section, entry, used| {
                    let part = sections.get_mut(section).expect("every section has a part");
                    part.push(&entry).map_err(io)?;
                    if let Some(usage) = usage.as_mut() {
                        usage.push(&used).map_err(io)?;
                    }
                    Ok(())
                },
            )
            .await?;
        // The parts, and room for the other fields (a summary, a few notes, staff reads).
        out.reserve(
            sections
                .values()
                .chain(&usage)
                .map(Part::len)
                .sum::<usize>()
                + (1 << 16),
        );
        let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
        keys.extend(["sections", "usage_log"]);
        keys.sort_unstable();
        out.write_all(b"{\n").map_err(io)?;
        for (i, key) in keys.iter().enumerate() {
            write!(out, "  {}: ", Value::from(*key)).map_err(io)?;
            match *key {
                "sections" => {
                    out.write_all(b"{\n").map_err(io)?;
                    let count = sections.len();
                    // BTreeMap: sections in key order, as serde_json writes a Map.
                    for (j, (name, part)) in std::mem::take(&mut sections).into_iter().enumerate() {
                        write!(out, "    {}: ", Value::from(name)).map_err(io)?;
                        part.copy_to(out).map_err(io)?;
                        let comma = if j + 1 < count { "," } else { "" };
                        writeln!(out, "{comma}").map_err(io)?;
                    }
                    out.write_all(b"  }").map_err(io)?;
                }
                "usage_log" => {
                    if let Some(usage) = usage.take() {
                        usage.copy_to(out).map_err(io)?;
                    }
                }
                other => write_nested(&mut *out, 1, &fields[other]).map_err(io)?,
            }
            let comma = if i + 1 < keys.len() { "," } else { "" };
            writeln!(out, "{comma}").map_err(io)?;
        }
        out.write_all(b"}").map_err(io)?;
        out.flush().map_err(io)?;
        progress(done, started.total.max(done));
        Ok(())
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

/// What `export_start` found.
struct Started {
    id: String,
    total: u64,
    taken_down: std::collections::HashSet<String>,
}

fn stream_name(e: &StoredEvent) -> String {
    if HASH_NAMED_STREAMS.contains(&e.aggregate_type.as_str()) {
        format!("{}/{WITHHELD}", e.aggregate_type)
    } else {
        format!("{}/{}", e.aggregate_type, e.aggregate_id)
    }
}

/// An instant as the document writes every instant (a `DateTime<Utc>` through serde).
fn instant(ms: i64) -> Value {
    json!(from_ms(ms))
}

/// An entry object from its fields. Built directly, not with `json!`, which serializes
/// every value it is given (a deep copy of the event's data, per event, per export).
fn entry<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// One event's entry in its section. Serialized straight into the streamed document, or
/// turned into a `Value` for the in-memory one. Fields are declared in key order, the
/// order serde_json writes a `Map` in, so both documents come out byte for byte the same.
#[derive(Serialize)]
struct SectionEntry<'a> {
    data: Value,
    event: &'a str,
    recorded_at: DateTime<Utc>,
    stream: &'a str,
}

impl SectionEntry<'_> {
    fn into_value(self) -> Value {
        entry([
            ("data", self.data),
            ("event", self.event.into()),
            ("recorded_at", json!(self.recorded_at)),
            ("stream", self.stream.into()),
        ])
    }
}

/// One event's entry in `usage_log` (fields in key order, as `SectionEntry`'s).
#[derive(Serialize)]
struct UsageEntry<'a> {
    actor: Value,
    at: Value,
    client_ip: Value,
    event: &'a str,
    request_id: Value,
    stream: &'a str,
}

impl UsageEntry<'_> {
    fn into_value(self) -> Value {
        entry([
            ("actor", self.actor),
            ("at", self.at),
            ("client_ip", self.client_ip),
            ("event", self.event.into()),
            ("request_id", self.request_id),
            ("stream", self.stream.into()),
        ])
    }
}

/// The entry of a section for `e` (in stream `stream`), whose payload opened to `data`.
fn section_entry<'a>(
    e: &'a StoredEvent,
    stream: &'a str,
    data: Value,
    taken_down: &std::collections::HashSet<String>,
) -> SectionEntry<'a> {
    // Payloads are `{"EventType": {...}}`: keep the inner object.
    let mut data = match data {
        Value::Object(mut m) if m.contains_key(&e.event_type) => {
            m.remove(&e.event_type).unwrap_or(Value::Null)
        }
        other => other,
    };
    withhold_secrets(&mut data);
    if e.event_type == "TaskFinished" && taken_down.contains(&e.aggregate_id) {
        // A takedown removes the results from exports too.
        data["result"] = json!(TAKEN_DOWN);
    }
    SectionEntry {
        data,
        event: &e.event_type,
        recorded_at: from_ms(e.committed_at),
        stream,
    }
}

/// The `usage_log` entry for `e` (in stream `stream`), whose metadata opened to `meta`.
fn usage_entry<'a>(e: &'a StoredEvent, stream: &'a str, mut meta: Value) -> UsageEntry<'a> {
    let mut field = |name: &str| meta.get_mut(name).map(take);
    UsageEntry {
        at: field("at").unwrap_or_else(|| instant(e.committed_at)),
        actor: field("actor").unwrap_or_default(),
        request_id: field("request_id").unwrap_or_default(),
        client_ip: field("client_ip").unwrap_or_default(),
        event: &e.event_type,
        stream,
    }
}

/// serde_json's `PrettyFormatter` (two spaces) started `level` deep, so that a value
/// written on its own is laid out as `to_string_pretty` lays it out at that depth of a
/// larger document. The same state machine as serde_json's, whose depth cannot be set.
struct Nested {
    level: usize,
    has_value: bool,
}

fn pad(out: &mut (impl std::io::Write + ?Sized), level: usize) -> std::io::Result<()> {
    (0..level).try_for_each(|_| out.write_all(b"  "))
}

impl serde_json::ser::Formatter for Nested {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W>(&mut self, w: &mut W, first: bool) -> std::io::Result<()>
    where
        W: ?Sized + std::io::Write,
    {
        self.next(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W>(&mut self, w: &mut W, first: bool) -> std::io::Result<()>
    where
        W: ?Sized + std::io::Write,
    {
        self.next(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

impl Nested {
    fn open<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(bracket)
    }
    fn close<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            w.write_all(b"\n")?;
            pad(w, self.level)?;
        }
        w.write_all(bracket)
    }
    fn next<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        pad(w, self.level)
    }
}

/// `v` pretty-printed into `out` as it sits `level` deep in its document.
fn write_nested(
    out: &mut impl std::io::Write,
    level: usize,
    v: &impl Serialize,
) -> std::io::Result<()> {
    let formatter = Nested {
        level,
        has_value: false,
    };
    v.serialize(&mut serde_json::Serializer::with_formatter(out, formatter))
        .map_err(std::io::Error::other)
}

/// Where a streamed JSON export goes. Told the size of the parts before they are copied,
/// so that a document built in memory grows once instead of doubling its way up (each
/// doubling copied what it held, and faulted in fresh pages).
pub trait ExportOut: std::io::Write {
    fn reserve(&mut self, _additional: usize) {}
}

impl ExportOut for Vec<u8> {
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional)
    }
}

impl<W: std::io::Write> ExportOut for std::io::BufWriter<W> {}

/// Where a streamed export keeps its parts until their turn.
#[derive(Clone, Copy)]
enum Keep {
    /// In unlinked temporary files (bounded memory: the CLI, any length of history).
    Spilled,
    /// In memory (a document that is to be held whole anyway: the HTTP paths).
    InMemory,
}

/// Bytes a spilled part gathers before it writes them to its file.
const SPILL_EVERY: usize = 1 << 16;

/// One part of a streamed export (a section's array, or `usage_log`), laid out as
/// `to_string_pretty` lays out that array `indent` levels deep in the document.
struct Part {
    indent: usize,
    written: usize,
    /// The part's text not yet spilled (all of it when kept in memory). Entries are
    /// printed here, then written out in large pieces: serde_json writes a few bytes at a
    /// time, and each small write into a `BufWriter` showed in profiles.
    buf: Vec<u8>,
    /// Where full buffers go: a spill file, or a list of them kept in memory (a list, not
    /// one growing buffer, which would copy the part each time it outgrew itself).
    full: Full,
    /// Bytes in `full`.
    full_len: usize,
}

enum Full {
    File(std::fs::File),
    Kept(Vec<Vec<u8>>),
}

impl Part {
    fn new(indent: usize, keep: Keep) -> std::io::Result<Part> {
        Ok(Part {
            indent,
            written: 0,
            buf: Vec::new(),
            full: match keep {
                Keep::Spilled => Full::File(tempfile::tempfile()?),
                Keep::InMemory => Full::Kept(Vec::new()),
            },
            full_len: 0,
        })
    }

    fn push(&mut self, v: &impl Serialize) -> std::io::Result<()> {
        use std::io::Write;
        self.buf
            .write_all(if self.written == 0 { b"[\n" } else { b",\n" })?;
        pad(&mut self.buf, self.indent)?;
        write_nested(&mut self.buf, self.indent, v)?;
        self.written += 1;
        if self.buf.len() >= SPILL_EVERY {
            self.full_len += self.buf.len();
            match &mut self.full {
                Full::File(file) => {
                    file.write_all(&self.buf)?;
                    self.buf.clear();
                }
                Full::Kept(kept) => kept.push(std::mem::replace(
                    &mut self.buf,
                    Vec::with_capacity(SPILL_EVERY),
                )),
            }
        }
        Ok(())
    }

    /// Bytes written so far (spilled or kept), less the closing bracket.
    fn len(&self) -> usize {
        self.full_len + self.buf.len()
    }

    /// The whole array, closed, into `out`.
    fn copy_to(self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        use std::io::Seek;
        if self.written == 0 {
            return out.write_all(b"[]");
        }
        match self.full {
            Full::File(mut file) => {
                file.rewind()?;
                std::io::copy(&mut file, out)?;
            }
            Full::Kept(kept) => kept.iter().try_for_each(|b| out.write_all(b))?,
        }
        out.write_all(&self.buf)?;
        out.write_all(b"\n")?;
        pad(out, self.indent - 1)?;
        out.write_all(b"]")
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
    fn parts_are_laid_out_like_serde_json() {
        let entries = vec![
            json!({ "event": "E", "data": { "a": [1, 2], "b": {} , "c": "x\ny" } }),
            json!({ "event": "F", "data": [] }),
        ];
        // Enough entries for a spilled part to go through its file more than once.
        let many: Vec<Value> = (0..3000).map(|i| json!({ "n": i, "e": entries })).collect();
        for items in [vec![], entries, many] {
            let doc =
                json!({ "a": { "b": [1, {}] }, "s": { "x": items.clone() }, "u": items.clone() });
            for keep in [Keep::InMemory, Keep::Spilled] {
                let mut out = Vec::new();
                out.extend_from_slice(b"{\n  \"a\": ");
                write_nested(&mut out, 1, &doc["a"]).unwrap();
                out.extend_from_slice(b",\n  \"s\": {\n    \"x\": ");
                let mut part = Part::new(3, keep).unwrap();
                items.iter().for_each(|v| part.push(v).unwrap());
                part.copy_to(&mut out).unwrap();
                out.extend_from_slice(b"\n  },\n  \"u\": ");
                let mut part = Part::new(2, keep).unwrap();
                items.iter().for_each(|v| part.push(v).unwrap());
                part.copy_to(&mut out).unwrap();
                out.extend_from_slice(b"\n}");
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    serde_json::to_string_pretty(&doc).unwrap()
                );
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
