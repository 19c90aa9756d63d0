//! The `journey` command line.

use crate::{server, telemetry};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use journey_contexts::app::Core;
use journey_contexts::config::Config;
use journey_contexts::credits::ManualGrant;
use journey_contexts::identity::Ctx;
use journey_contexts::privacy::retention::RunMode;
use journey_domain::credits::GrantSource;
use journey_domain::meta::Actor;
use journey_domain::staff::Role;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "journey",
    version,
    about = "JourneyAPI backend: event-sourced image-generation API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP server (embedded SQLite under ./data unless JOURNEY_DATABASE_URL is set).
    Serve {
        /// Listen address (also JOURNEY_BIND).
        #[arg(long)]
        bind: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Print the effective configuration, secrets masked.
    Config,
    /// Inspect or rebuild read-model projections.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Print a stream's events as JSON lines; sealed fields stay sealed. Audited
    /// (`stream.events`, with the stream's subject).
    Events {
        /// TYPE/ID, e.g. account/6f1c...
        #[arg(long)]
        stream: String,
        /// The staff member's own account id (admin or compliance; the read is audited).
        #[arg(long)]
        by: Uuid,
        /// Why (e.g. a ticket or request id); recorded in the audit trail.
        #[arg(long)]
        reason: String,
    },
    /// Erase a data subject now: destroy their keys and make every projection forget them.
    /// Audited (`subject.erase`).
    Erase {
        /// Account id.
        #[arg(long)]
        subject: Uuid,
        /// Why (recorded in the audit trail, on the erasure event and its certificate).
        #[arg(long)]
        reason: String,
        /// The staff member's own account id (admin or compliance), recorded as the
        /// requester.
        #[arg(long)]
        by: Uuid,
    },
    /// Staff operations on an account's credits.
    Credits {
        #[command(subcommand)]
        command: CreditsCommand,
    },
    /// Staff operations on an account's billing.
    Billing {
        #[command(subcommand)]
        command: BillingCliCommand,
    },
    /// Grant or revoke staff roles (admin, compliance, support).
    Staff {
        #[command(subcommand)]
        command: StaffCliCommand,
    },
    /// Email a marketing message to every account that consented, did not object and is
    /// not restricted.
    Marketing {
        #[arg(long)]
        subject: String,
        /// File holding the message body.
        #[arg(long)]
        body_file: std::path::PathBuf,
        /// Count the recipients without sending.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the retention schedule: purge accounts whose deletion window ended, destroy
    /// expired keys, compact their events into tombstones. Recorded as an event.
    Retention {
        #[command(subcommand)]
        command: RetentionCliCommand,
    },
    /// Privacy-policy notices.
    Policy {
        #[command(subcommand)]
        command: PolicyCliCommand,
    },
    /// Cancel a pending account deletion (the holder asked support within the window).
    Deletion {
        #[command(subcommand)]
        command: DeletionCliCommand,
    },
    /// Export everything held about a data subject (access and portability). Audited
    /// (`subject.export`).
    Export {
        #[arg(long)]
        subject: Uuid,
        #[arg(long)]
        /// File to write, or `-` for standard output.
        out: std::path::PathBuf,
        /// The staff member's own account id (admin or compliance; the read is audited).
        #[arg(long)]
        by: Uuid,
        /// Why (e.g. the request id); recorded in the audit trail.
        #[arg(long)]
        reason: String,
        /// json or html.
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// Write pseudonymous per-account analytics (JSON lines) for accounts that allow it.
    Analytics {
        #[arg(long)]
        /// File to write, or `-` for standard output.
        out: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
pub enum RetentionCliCommand {
    Run {
        /// Evaluate the schedule at this instant (RFC 3339 or YYYY-MM-DD); default now.
        #[arg(long)]
        as_of: Option<String>,
        /// Report what would happen without changing anything (the run is still recorded).
        #[arg(long, conflicts_with = "simulate")]
        dry_run: bool,
        /// Allow an --as-of in the future and destroy as if that day had come, keys of
        /// periods still running included: for tests and rehearsals on a COPY of the data.
        #[arg(long)]
        simulate: bool,
    },
}

#[derive(Subcommand)]
pub enum PolicyCliCommand {
    /// Email the notice of a published version to every open account not yet told (each
    /// holder once; finishes a run that stopped).
    Notify {
        #[arg(long)]
        version: String,
    },
}

#[derive(Subcommand)]
pub enum DeletionCliCommand {
    /// Audited (`deletion.cancel`).
    Cancel {
        #[arg(long)]
        subject: Uuid,
        /// Why (in clear on the event and in the audit trail).
        #[arg(long)]
        reason: String,
        /// The staff member's own account id (any staff role; recorded as the actor).
        #[arg(long)]
        by: Uuid,
    },
}

fn parse_instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("--as-of {s:?}: use RFC 3339 or YYYY-MM-DD"))?;
    Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
}

#[derive(Subcommand)]
pub enum StaffCliCommand {
    /// Give the account registered under EMAIL a staff role.
    Grant { email: String, role: String },
    /// Take a staff role away.
    Revoke { email: String, role: String },
}

#[derive(Subcommand)]
pub enum CreditsCommand {
    /// Grant credits to an account (recorded with the staff member and the reason).
    /// Audited (`credits.grant`).
    Grant {
        #[arg(long)]
        account: Uuid,
        #[arg(long)]
        amount: u64,
        /// Why (sealed on the grant; in clear in the audit trail: a ticket id, no personal
        /// data).
        #[arg(long)]
        reason: String,
        /// The staff member's own account id (any staff role; recorded as the actor).
        #[arg(long)]
        by: Uuid,
        /// The credits expire this many days from now (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// Re-running with the same key grants nothing more.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Record the grant as a promotion instead of an admin grant.
        #[arg(long)]
        promotion: bool,
    },
}

#[derive(Subcommand)]
pub enum BillingCliCommand {
    /// Restore API access after a payment dispute suspended the account. Audited
    /// (`billing.lift_suspension`).
    LiftSuspension {
        #[arg(long)]
        account: Uuid,
        /// Why (sealed on the event; in clear in the audit trail: a ticket id, no personal
        /// data).
        #[arg(long)]
        reason: String,
        /// The staff member's own account id (any staff role; recorded as the actor).
        #[arg(long)]
        by: Uuid,
    },
}

#[derive(Subcommand)]
pub enum ProjectionsCommand {
    /// Each projection's checkpoint and lag.
    Status,
    /// Empty a projection's tables and replay it from the first event.
    Rebuild { name: String },
}

pub async fn run(cli: Cli) -> Result<()> {
    let mut cfg = Config::load()?;
    telemetry::init_logging(&cfg.log_format);
    match cli.command {
        Command::Config => {
            print!("{}", cfg.masked());
            // Then the transport findings: warnings, or (production) the refusal.
            journey_contexts::transport::check(&cfg)?;
        }
        Command::Migrate => {
            journey_contexts::transport::check(&cfg)?;
            let db = journey_commands::Db::connect(&cfg.database_url()).await?;
            db.migrate().await?;
            println!(
                "migrations applied; pending: {}",
                db.pending_migrations().await?
            );
        }
        Command::Serve { bind } => {
            if let Some(b) = bind {
                cfg.bind = b;
            }
            let bind = cfg.bind.clone();
            let app = Core::build(cfg, None).await?;
            let running = server::start(app.clone(), &bind).await?;
            let db = match app.db.backend {
                journey_commands::Backend::Sqlite => app.cfg.database_url(),
                journey_commands::Backend::Postgres => "postgres".into(),
            };
            println!(
                "JourneyAPI listening on {}://{} (database: {db})",
                running.scheme, running.addr
            );
            running.done.await??;
            println!("JourneyAPI stopped");
        }
        Command::Projections { command } => {
            let app = Core::build(cfg, None).await?;
            match command {
                ProjectionsCommand::Status => {
                    println!(
                        "{:<12} {:>10} {:>12} {:>8}",
                        "projection", "position", "txid", "lag"
                    );
                    for s in app.runner.status().await? {
                        println!(
                            "{:<12} {:>10} {:>12} {:>8}",
                            s.name, s.cursor.position, s.cursor.txid, s.lag
                        );
                    }
                }
                ProjectionsCommand::Rebuild { name } => {
                    let bar = ProgressBar::new(0);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{msg} [{bar:40}] {pos}/{len} events ({per_sec})",
                        )
                        .expect("template")
                        .progress_chars("=> "),
                    );
                    bar.set_message(format!("rebuilding {name}"));
                    let applied = app
                        .runner
                        .rebuild(&name, |done, total| {
                            bar.set_length(total);
                            bar.set_position(done);
                        })
                        .await?;
                    bar.finish();
                    println!("rebuilt {name}: {applied} events replayed");
                }
            }
            app.db.close().await;
        }
        Command::Events { stream, by, reason } => {
            let (ty, id) = stream
                .split_once('/')
                .context("--stream must be TYPE/ID, e.g. account/<uuid>")?;
            audit_reason(&reason)?;
            let app = Core::build(cfg, None).await?;
            staff(&app, by, SUBJECT_ROLES).await?;
            let ctx = Ctx::system(app.clock.now());
            let subject = app.identity().stream_subject(ty, id).await?;
            let events = journey_projections::events::read_stream(&app.db, ty, id).await?;
            if events.is_empty() {
                bail!("no events in stream {stream}");
            }
            app.identity()
                .audit_read(by, subject, "stream.events", Some(&reason), &ctx)
                .await?;
            for e in events {
                println!("{}", serde_json::to_string(&e)?);
            }
            app.db.close().await;
        }
        Command::Erase {
            subject,
            reason,
            by,
        } => {
            audit_reason(&reason)?;
            let app = Core::build(cfg, None).await?;
            let ctx = Ctx::system(app.clock.now());
            let actor = staff(&app, by, SUBJECT_ROLES).await?;
            app.identity().ensure_erasable(subject).await?;
            app.identity()
                .audit_read(by, Some(subject), "subject.erase", Some(&reason), &ctx)
                .await?;
            let report = app
                .identity()
                .erase_account(subject, &reason, actor, &ctx)
                .await?;
            app.privacy()
                .certify_erasure(&report, &reason, actor.to_string(), ctx.at, &ctx)
                .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            app.db.close().await;
        }
        Command::Credits {
            command:
                CreditsCommand::Grant {
                    account,
                    amount,
                    reason,
                    by,
                    expires_in_days,
                    idempotency_key,
                    promotion,
                },
        } => {
            audit_reason(&reason)?;
            if amount == 0 || amount > journey_domain::credits::MAX_AMOUNT {
                bail!(
                    "amount must be between 1 and {}",
                    journey_domain::credits::MAX_AMOUNT
                );
            }
            let app = Core::build(cfg, None).await?;
            let ctx = Ctx::system(app.clock.now());
            let actor = staff(&app, by, ANY_ROLE).await?;
            if !app.identity().account_is_active(account).await? {
                bail!("no active account {account}");
            }
            app.identity()
                .audit_read(by, Some(account), "credits.grant", Some(&reason), &ctx)
                .await?;
            let grant = ManualGrant {
                account_id: account,
                amount,
                source: if promotion {
                    GrantSource::Promotion
                } else {
                    GrantSource::Admin
                },
                reason: &reason,
                expires_at: journey_domain::catalog::expiry(ctx.at, expires_in_days),
                idempotency_key,
            };
            let grant_id = app.credits().grant_credits(grant, actor, &ctx).await?;
            let balance = app.credits().balance(account).await?;
            println!(
                "{}",
                serde_json::json!({
                    "grant_id": grant_id,
                    "granted": grant_id.is_some(),
                    "account_id": account,
                    "available": balance.available,
                })
            );
            app.db.close().await;
        }
        Command::Billing {
            command:
                BillingCliCommand::LiftSuspension {
                    account,
                    reason,
                    by,
                },
        } => {
            audit_reason(&reason)?;
            let app = Core::build(cfg, None).await?;
            let ctx = Ctx::system(app.clock.now());
            let actor = staff(&app, by, ANY_ROLE).await?;
            app.identity()
                .audit_read(
                    by,
                    Some(account),
                    "billing.lift_suspension",
                    Some(&reason),
                    &ctx,
                )
                .await?;
            app.credits()
                .lift_suspension(account, &reason, actor, &ctx)
                .await?;
            println!("suspension lifted for account {account}");
            app.db.close().await;
        }
        Command::Marketing {
            subject,
            body_file,
            dry_run,
        } => {
            let body = std::fs::read_to_string(&body_file)
                .with_context(|| format!("cannot read {}", body_file.display()))?;
            let app = Core::build(cfg, None).await?;
            let report = app
                .privacy()
                .send_marketing(&subject, &body, dry_run)
                .await?;
            println!("{}", serde_json::to_string(&report)?);
            app.db.close().await;
        }
        Command::Retention {
            command:
                RetentionCliCommand::Run {
                    as_of,
                    dry_run,
                    simulate,
                },
        } => {
            let as_of = as_of.as_deref().map(parse_instant).transpose()?;
            let mode = match (dry_run, simulate) {
                (true, _) => RunMode::DryRun,
                (false, true) => RunMode::Simulate,
                (false, false) => RunMode::Apply,
            };
            let app = Core::build(cfg, None).await?;
            let ctx = Ctx::system(app.clock.now());
            let report = app
                .privacy()
                .retention_run(as_of.unwrap_or(ctx.at), mode, &ctx)
                .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            app.db.close().await;
        }
        Command::Deletion {
            command:
                DeletionCliCommand::Cancel {
                    subject,
                    reason,
                    by,
                },
        } => {
            audit_reason(&reason)?;
            let app = Core::build(cfg, None).await?;
            let ctx = Ctx::system(app.clock.now());
            let actor = staff(&app, by, ANY_ROLE).await?;
            app.identity()
                .audit_read(by, Some(subject), "deletion.cancel", Some(&reason), &ctx)
                .await?;
            app.privacy()
                .cancel_deletion(subject, &reason, actor, &ctx)
                .await?;
            println!("deletion of {subject} cancelled");
            app.db.close().await;
        }
        Command::Policy {
            command: PolicyCliCommand::Notify { version },
        } => {
            let app = Core::build(cfg, None).await?;
            let holders = app.legal().holders_now().await?;
            // Under the same job lease as the servers' notices: never two senders at once.
            let legal = app.legal();
            let send = legal.send_policy_notices(&version, &holders);
            let sent = match app.leases.run_when_free("policy-notices", send).await? {
                journey_commands::leases::Ran::Done(sent) => sent?,
                _ => anyhow::bail!("the policy-notices lease was lost; run the command again"),
            };
            println!("{sent} notices sent for version {version}");
            app.db.close().await;
        }
        Command::Export {
            subject,
            out,
            by,
            reason,
            format,
        } => {
            let format = journey_contexts::privacy::export_jobs::ExportFormat::parse(&format)
                .with_context(|| format!("unknown format {format:?}: use json or html"))?;
            audit_reason(&reason)?;
            let app = Core::build(cfg, None).await?;
            staff(&app, by, SUBJECT_ROLES).await?;
            let ctx = Ctx::system(app.clock.now());
            app.identity()
                .audit_read(by, Some(subject), "subject.export", Some(&reason), &ctx)
                .await?;
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("exporting [{bar:40}] {pos}/{len} events ({per_sec})")
                    .expect("template")
                    .progress_chars("=> "),
            );
            let progress = |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            };
            if format == journey_contexts::privacy::export_jobs::ExportFormat::Json {
                // Streamed to the file as it is read: bounded memory however long the
                // history (issue 12).
                write_export_streamed(&app, subject, &out, progress).await?;
                bar.finish();
            } else {
                let text = app
                    .privacy()
                    .export_document(subject, format, progress)
                    .await?;
                bar.finish();
                write_out(&out, text.as_bytes(), |to| {
                    format!("export of {subject} written to {to}")
                })?;
            }
            app.db.close().await;
        }
        Command::Analytics { out } => {
            let app = Core::build(cfg, None).await?;
            let rows = app.privacy().analytics_rows().await?;
            let mut text = String::new();
            for r in &rows {
                text.push_str(&serde_json::to_string(r)?);
                text.push('\n');
            }
            write_out(&out, text.as_bytes(), |to| {
                format!("{} accounts written to {to}", rows.len())
            })?;
            app.db.close().await;
        }
        Command::Staff { command } => {
            let (email, role, grant) = match command {
                StaffCliCommand::Grant { email, role } => (email, role, true),
                StaffCliCommand::Revoke { email, role } => (email, role, false),
            };
            let role = Role::parse(&role).with_context(|| {
                format!("unknown role {role:?}: use admin, compliance or support")
            })?;
            let app = Core::build(cfg, None).await?;
            let ctx = Ctx::system(app.clock.now());
            let id = app
                .identity()
                .set_role(&email, role, grant, Actor::System, &ctx)
                .await?;
            let roles: Vec<&str> = app
                .identity()
                .staff_member(id)
                .await?
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect();
            println!(
                "{}",
                serde_json::json!({ "account_id": id, "roles": roles })
            );
            app.db.close().await;
        }
    }
    Ok(())
}

/// Who may read a subject's history, export or erase it: not support, who sees only what
/// a ticket needs (docs/privacy-operations.md, "Staff roles").
const SUBJECT_ROLES: &[Role] = &[Role::Admin, Role::Compliance];
/// Changes made at a holder's request (credits, a suspension, a pending deletion): any role.
const ANY_ROLE: &[Role] = &[Role::Admin, Role::Compliance, Role::Support];

/// Every staff command that reads or changes a subject's data is recorded in the audit
/// trail with its `--reason`, in clear: checked before anything is read or changed.
fn audit_reason(reason: &str) -> Result<()> {
    let n = reason.trim().chars().count();
    if n == 0 || n > journey_domain::staff::MAX_REASON_LEN {
        bail!(
            "a reason is required: --reason, 1 to {} characters, recorded in clear in the audit \
             trail (write a ticket or request id, no personal data)",
            journey_domain::staff::MAX_REASON_LEN
        );
    }
    Ok(())
}

/// The acting staff member: an active account holding one of `roles`.
async fn staff(app: &Core, by: Uuid, roles: &[Role]) -> Result<Actor> {
    app.identity()
        .me(by)
        .await
        .map_err(|_| anyhow::anyhow!("--by {by} is not an active account"))?;
    let member = app.identity().staff_member(by).await?;
    if member.roles.is_empty() {
        bail!("--by {by} holds no staff role (journey staff grant EMAIL ROLE)");
    }
    if !member.has_any(roles) {
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        bail!(
            "--by {by}: this needs one of the staff roles: {}",
            names.join(", ")
        );
    }
    Ok(Actor::Staff(by))
}

/// The JSON export written as it is read (`Privacy::write_export_json`) to `out` or, for
/// `-`, standard output.
async fn write_export_streamed(
    app: &Core,
    subject: Uuid,
    out: &std::path::Path,
    progress: impl FnMut(u64, u64),
) -> Result<()> {
    if out.as_os_str() == "-" {
        let mut w = std::io::BufWriter::new(std::io::stdout());
        app.privacy()
            .write_export_json(subject, &mut w, progress)
            .await?;
        eprintln!("export of {subject} written to standard output");
    } else {
        let file = std::fs::File::create(out)
            .with_context(|| format!("cannot write {}", out.display()))?;
        let mut w = std::io::BufWriter::new(file);
        app.privacy()
            .write_export_json(subject, &mut w, progress)
            .await?;
        println!("export of {subject} written to {}", out.display());
    }
    Ok(())
}

/// Writes a command's document to `out`, or to standard output when `out` is `-` (then
/// the summary line goes to standard error, so the output stays the document alone).
fn write_out(
    out: &std::path::Path,
    bytes: &[u8],
    summary: impl FnOnce(&str) -> String,
) -> Result<()> {
    use std::io::Write;
    if out.as_os_str() == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(bytes)?;
        stdout.flush()?;
        eprintln!("{}", summary("standard output"));
    } else {
        std::fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
        println!("{}", summary(&out.display().to_string()));
    }
    Ok(())
}
