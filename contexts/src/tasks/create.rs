//! Accepting a task. Input images are fetched and personal values sealed first; then one
//! unit of work commits the Idempotency-Key claim, the credit reservation, `TaskCreated`
//! and the task's row in the work queue together (a crash before that commit leaves
//! nothing, so the retry creates the task; after it, the worker finishes or fails the task
//! and settles its credits). The upstream submission follows.

use super::requests::{Downloads, ImagesJob, MjInput, Prepared, Run};
use super::worker::enqueue_work_in;
use super::Tasks;
use crate::error::ServiceError;
use crate::identity::Ctx;
use chrono::{DateTime, Utc};
use journey_commands::net_guard::{download, DownloadLimits};
use journey_commands::secrets::{hmac_hex, random_bytes};
use journey_commands::upstream::images::{Edit, Generate, GeneratedImage};
use journey_commands::upstream::mj_proxy::{data_url, Submit, SubmitOutcome};
use journey_commands::{fault, UnitError, UnitOfWork};
use journey_domain::credits::CreditCommand;
use journey_domain::meta::{Actor, CommandMeta};
use journey_domain::task::{FailCause, Task, TaskCommand, TaskResult, TaskSpec, TaskStatus};
use journey_domain::DataCategory;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;

/// Images fetched from client URLs (blend, describe, face swap, edits, upscales).
pub const IMAGE_LIMITS: DownloadLimits = DownloadLimits {
    max_bytes: 10 * 1024 * 1024,
    allowed_types: &["image/png", "image/jpeg", "image/webp", "image/gif"],
    timeout: Duration::from_secs(20),
};

/// How long an Idempotency-Key names its task.
pub const IDEMPOTENCY_HOURS: i64 = 24;

/// A client's `Idempotency-Key` and a fingerprint of the request it came with.
pub struct IdempotencyKey {
    pub key: String,
    pub fingerprint: String,
}

impl IdempotencyKey {
    pub fn new(key: &str, endpoint: &str, body: &[u8]) -> Result<Self, ServiceError> {
        let key = key.trim();
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ServiceError::bad(
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            ));
        }
        let mut h = Sha256::new();
        h.update(endpoint.as_bytes());
        h.update([0]);
        h.update(body);
        Ok(IdempotencyKey {
            key: key.to_string(),
            fingerprint: hex::encode(h.finalize()),
        })
    }
}

/// The create call's answer: `{"task_id","status"}`, plus `image_url` when a synchronous
/// model finished, or `error` when the task failed at once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Created {
    pub task_id: Uuid,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Credits this request reserved (for the usage log; not part of the body).
    #[serde(skip)]
    pub charged: u64,
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub account_id: Uuid,
    pub key_id: Uuid,
}

enum Accepted {
    New(Box<Task>),
    /// Another request with the same Idempotency-Key created this task first.
    Claimed(Uuid),
}

/// Attempts at the accepting commit before answering 409 (each loses only to a concurrent
/// writer on the same ledger from another process, or to the same key).
const ACCEPT_ATTEMPTS: u32 = 8;

fn unit_error(e: UnitError) -> ServiceError {
    match e {
        UnitError::Conflict => {
            ServiceError::Conflict("too many concurrent changes, try again".into())
        }
        UnitError::Storage(e) => e.into(),
    }
}

impl Tasks<'_> {
    fn notify_hash(&self, token: &str) -> String {
        hmac_hex(&self.pepper, "upstream-notify", token)
    }

    /// The notifyHook URL for a task: the task id plus a per-task secret; only its HMAC
    /// is stored, so the URL cannot be rebuilt from the database.
    fn new_notify_token(task_id: Uuid) -> String {
        format!("{}{}", task_id.simple(), hex::encode(random_bytes(24)))
    }

    /// The task a notifyHook token belongs to, if the token is genuine.
    pub fn notify_token_task(&self, token: &str, task: &Task) -> bool {
        task.spec.as_ref().is_some_and(|s| {
            journey_commands::secrets::ct_eq(&self.notify_hash(token), &s.notify_token_hash)
        })
    }

    fn notify_url(&self, provider: &str, token: &str) -> String {
        let base = match (&self.cfg.public_url, self.listen_addr.get()) {
            (None, Some(addr)) => format!("{}://{addr}", self.cfg.scheme()),
            _ => self.cfg.public_url(),
        };
        format!("{base}/webhooks/upstream/{provider}/{token}")
    }

    /// The task an earlier request with this key created, if any (within the window).
    /// The claim is written in the same commit as the task, so a claim always names a task
    /// that exists: a crash before that commit leaves no claim, and the retry creates it.
    async fn claimed_task(
        &self,
        conn: &mut sqlx::AnyConnection,
        caller: Caller,
        key: &IdempotencyKey,
        at: DateTime<Utc>,
    ) -> Result<Option<Uuid>, ServiceError> {
        let key_hash = hmac_hex(&self.pepper, "idempotency", &key.key);
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT fingerprint, task_id, created_at FROM idempotency_keys WHERE account_id = $1 AND key_hash = $2",
        )
        .bind(caller.account_id.to_string())
        .bind(&key_hash)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((fingerprint, task_id, created)) = row else {
            return Ok(None);
        };
        if created < (at - chrono::Duration::hours(IDEMPOTENCY_HOURS)).timestamp_millis() {
            // Forgotten after a day (the retention run also deletes such rows).
            return Ok(None);
        }
        if fingerprint != key.fingerprint {
            return Err(ServiceError::bad(
                "this Idempotency-Key was used for a different request",
            ));
        }
        Ok(Some(
            Uuid::parse_str(&task_id).map_err(|e| ServiceError::Internal(e.into()))?,
        ))
    }

    /// Writes the claim inside the accepting unit of work (an expired claim under the same
    /// key is replaced). A concurrent request that claimed the key first makes this fail
    /// with a conflict, and the retry of the whole unit finds its task.
    async fn write_claim(
        &self,
        conn: &mut sqlx::AnyConnection,
        caller: Caller,
        key: &IdempotencyKey,
        task_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), UnitError> {
        let key_hash = hmac_hex(&self.pepper, "idempotency", &key.key);
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE account_id = $1 AND key_hash = $2 AND created_at < $3",
        )
        .bind(caller.account_id.to_string())
        .bind(&key_hash)
        .bind((at - chrono::Duration::hours(IDEMPOTENCY_HOURS)).timestamp_millis())
        .execute(&mut *conn)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (account_id, key_hash, fingerprint, task_id, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, key_hash) DO NOTHING",
        )
        .bind(caller.account_id.to_string())
        .bind(&key_hash)
        .bind(&key.fingerprint)
        .bind(task_id.to_string())
        .bind(at.timestamp_millis())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(UnitError::Conflict);
        }
        Ok(())
    }

    /// Accepts a prepared task: reserve, record, submit. See the module comment.
    pub async fn create_task(
        &self,
        caller: Caller,
        ctx: &Ctx,
        idempotency: Option<IdempotencyKey>,
        prepared: Prepared,
    ) -> Result<Created, ServiceError> {
        if !self.upstreams.is_configured(&prepared.provider) {
            return Err(ServiceError::Unavailable(format!(
                "upstream provider {} is not configured on this server",
                prepared.provider
            )));
        }
        if let Some(hook) = &prepared.hook {
            // Literal addresses were refused with the request's other rules; a host name
            // is resolved now, so that a destination we would never deliver to is the
            // client's 400 rather than a charged task whose webhook silently fails.
            self.guard
                .check_url_resolved(&hook.url)
                .await
                .map_err(|e| ServiceError::bad(format!("webhook_url: {e}")))?;
        }
        if let Some(key) = &idempotency {
            let mut conn = self.db.any.acquire().await?;
            if let Some(existing) = self.claimed_task(&mut conn, caller, key, ctx.at).await? {
                return self.replay(caller, existing).await;
            }
        }
        self.accept(caller, ctx, idempotency.as_ref(), prepared)
            .await
    }

    /// A retried request with a known Idempotency-Key: the same task, no new charge.
    async fn replay(&self, caller: Caller, task_id: Uuid) -> Result<Created, ServiceError> {
        let Some(task) = self.owned_task(caller.account_id, task_id).await? else {
            return Err(ServiceError::Internal(anyhow::anyhow!(
                "idempotency claim names task {task_id}, which does not exist"
            )));
        };
        self.created(task_id, &task, 0).await
    }

    async fn accept(
        &self,
        caller: Caller,
        ctx: &Ctx,
        idempotency: Option<&IdempotencyKey>,
        prepared: Prepared,
    ) -> Result<Created, ServiceError> {
        // Inputs sent as URLs are fetched before anything is charged: a bad URL is the
        // client's 400, not a failed task.
        let submit = match &prepared.run {
            Run::Mj { input, .. } => Some(match input {
                MjInput::Download(d) => self.fetch_inputs(d).await?,
                MjInput::Submit(s) => s.clone(),
            }),
            Run::Images { .. } => None,
        };
        let actor = Actor::ApiKey(caller.key_id);
        let meta = self
            .identity()
            .meta(actor, Some(caller.account_id), ctx)
            .await?;
        let task_id = Uuid::new_v4();
        let (spec, token) = self.new_spec(caller, ctx, task_id, &prepared).await?;
        fault::crash_point("accept.sealed");
        let task = match self
            .commit_acceptance(caller, ctx, task_id, spec, &prepared, idempotency, &meta)
            .await?
        {
            Accepted::New(task) => *task,
            Accepted::Claimed(existing) => return self.replay(caller, existing).await,
        };
        fault::crash_point("accept.committed");
        self.runner.nudge();
        let charged = prepared.credits;
        let task = match (prepared.run, submit) {
            (Run::Mj { modal, .. }, Some(submit)) => {
                let hook = self.notify_url(&prepared.provider, &token);
                self.submit_mj(
                    task_id,
                    task,
                    &prepared.provider,
                    (submit, modal),
                    &hook,
                    ctx.at,
                )
                .await?
            }
            (Run::Images { job, sync: true }, _) => {
                self.run_images(task_id, task, &prepared.provider, &job, ctx.at)
                    .await?
            }
            // Asynchronous images models and upscales: the worker runs them.
            _ => {
                self.reschedule(task_id, ctx.at).await?;
                self.wake_worker();
                task
            }
        };
        if task.is_terminal() {
            // Ended during the request: its webhook is due now, not at the submit grace.
            self.reschedule(task_id, self.clock.now()).await?;
            self.wake_worker();
        }
        self.created(task_id, &task, charged).await
    }

    /// The one commit that accepts a task: the Idempotency-Key claim, the credit
    /// reservation, `TaskCreated` and the task's work row. Nothing of it exists until all
    /// of it does. A lost race (another writer on the ledger, or the same key claimed
    /// meanwhile) is decided again against fresh state.
    #[allow(clippy::too_many_arguments)]
    async fn commit_acceptance(
        &self,
        caller: Caller,
        ctx: &Ctx,
        task_id: Uuid,
        spec: TaskSpec,
        p: &Prepared,
        idempotency: Option<&IdempotencyKey>,
        meta: &CommandMeta,
    ) -> Result<Accepted, ServiceError> {
        let subject = caller.account_id.to_string();
        let grace = self.upstreams.request_timeout(&p.provider) + chrono::Duration::seconds(30);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let reserve = CreditCommand::Reserve {
                task_id,
                amount: p.credits,
                max_open: Some(self.cfg.max_tasks_in_flight),
                at: ctx.at,
            };
            let reservation = self.credits().decide_reservation(&subject, reserve).await?;
            let create = TaskCommand::Create {
                spec: Box::new(spec.clone()),
                at: ctx.at,
            };
            let created = self
                .stores
                .tasks
                .tasks
                .decide_new(&task_id.to_string(), create)
                .await?;
            let mut unit = UnitOfWork::begin(&self.db).await.map_err(unit_error)?;
            let written = async {
                if let Some(key) = idempotency {
                    self.write_claim(unit.tx(), caller, key, task_id, ctx.at)
                        .await?;
                }
                unit.append(&reservation, meta);
                unit.append(&created, meta);
                enqueue_work_in(
                    unit.tx(),
                    task_id,
                    caller.account_id,
                    &p.provider,
                    ctx.at + grace,
                    ctx.at,
                )
                .await?;
                fault::crash_point("accept.before_commit");
                unit.commit().await
            }
            .await;
            match written {
                Ok(()) => {
                    reservation.committed();
                    return Ok(Accepted::New(Box::new(created.committed())));
                }
                Err(UnitError::Conflict) => {
                    drop((reservation, created));
                    if let Some(key) = idempotency {
                        let mut conn = self.db.any.acquire().await?;
                        if let Some(existing) =
                            self.claimed_task(&mut conn, caller, key, ctx.at).await?
                        {
                            return Ok(Accepted::Claimed(existing));
                        }
                    }
                    if attempt >= ACCEPT_ATTEMPTS {
                        return Err(ServiceError::Conflict(
                            "too many concurrent changes, try again".into(),
                        ));
                    }
                }
                Err(e) => return Err(unit_error(e)),
            }
        }
    }

    /// The create call's answer for a task (first answer and idempotent replays alike).
    async fn created(
        &self,
        task_id: Uuid,
        task: &Task,
        charged: u64,
    ) -> Result<Created, ServiceError> {
        let view = self.task_object(task_id, task).await?;
        Ok(Created {
            task_id,
            status: view.status,
            image_url: if task.status() == TaskStatus::Finished {
                view.image_url
            } else {
                None
            },
            error: view.error,
            charged,
        })
    }

    /// The new task's spec: parameters and webhook target sealed, a fresh notifyHook
    /// token (returned; only its HMAC is kept).
    async fn new_spec(
        &self,
        caller: Caller,
        ctx: &Ctx,
        task_id: Uuid,
        p: &Prepared,
    ) -> Result<(TaskSpec, String), ServiceError> {
        let subject = caller.account_id.to_string();
        let params = self
            .vault
            .seal(&subject, DataCategory::Prompts, ctx.at, &p.params)
            .await?;
        let webhook = match &p.hook {
            Some(h) => Some(
                self.vault
                    .seal(&subject, DataCategory::Usage, ctx.at, h)
                    .await?,
            ),
            None => None,
        };
        let token = Self::new_notify_token(task_id);
        let spec = TaskSpec {
            account_id: caller.account_id,
            key_id: caller.key_id,
            task_type: p.task_type,
            model: p.model.clone(),
            provider: p.provider.clone(),
            credits: p.credits,
            result_kind: p.result_kind,
            parent_task_id: p.parent,
            params,
            webhook,
            notify_token_hash: self.notify_hash(&token),
        };
        Ok((spec, token))
    }

    /// Downloads a request's input images (through the address guard) into the submit.
    async fn fetch_inputs(&self, d: &Downloads) -> Result<Submit, ServiceError> {
        let get = |field: String, url: String| async move {
            let got = download(&self.guard, &self.download_client, &url, &IMAGE_LIMITS)
                .await
                .map_err(|e| ServiceError::bad(e.message(&field)))?;
            Ok::<_, ServiceError>(data_url(&got.content_type, &got.bytes))
        };
        Ok(match d {
            Downloads::Blend(urls, dims) => {
                let mut base64_array = Vec::new();
                for (i, u) in urls.iter().enumerate() {
                    base64_array.push(get(format!("image_urls[{i}]"), u.clone()).await?);
                }
                Submit::Blend {
                    base64_array,
                    dimensions: *dims,
                }
            }
            Downloads::Describe(u) => Submit::Describe {
                base64: get("image_url".into(), u.clone()).await?,
            },
            Downloads::Faceswap { target, swap } => Submit::FaceSwap {
                target_base64: get("target_image_url".into(), target.clone()).await?,
                source_base64: get("swap_image_url".into(), swap.clone()).await?,
            },
        })
    }

    /// Sends a task to midjourney-proxy. Codes 1/21/22 accept it (21 on an action that
    /// opens a modal is followed by the modal); anything else fails it and releases.
    async fn submit_mj(
        &self,
        task_id: Uuid,
        task: Task,
        provider: &str,
        (submit, modal): (Submit, Option<super::requests::ModalFollow>),
        hook: &str,
        at: DateTime<Utc>,
    ) -> Result<Task, ServiceError> {
        let client = self.upstreams.mj(provider).ok_or_else(|| {
            ServiceError::Unavailable(format!("provider {provider} is not configured"))
        })?;
        let state = task_id.to_string();
        let unreachable = |e: journey_commands::upstream::UpstreamError| {
            let task = task.clone();
            async move {
                self.fail_task(
                    task_id,
                    &task,
                    FailCause::Unreachable,
                    &e.to_string(),
                    self.clock.now(),
                )
                .await
            }
        };
        let mut outcome = match client.submit(&submit, Some(hook), Some(&state)).await {
            Ok(r) => r.outcome(),
            Err(e) => return unreachable(e).await,
        };
        if let (
            SubmitOutcome::Accepted {
                upstream_id,
                code: 21,
            },
            Some(m),
        ) = (&outcome, &modal)
        {
            let follow = Submit::Modal {
                task_id: upstream_id.clone(),
                prompt: m.prompt.clone(),
                mask_base64: m.mask_base64.clone(),
            };
            outcome = match client.submit(&follow, Some(hook), Some(&state)).await {
                Ok(r) => r.outcome(),
                Err(e) => return unreachable(e).await,
            };
        }
        match outcome {
            SubmitOutcome::Accepted { upstream_id, .. } => {
                fault::crash_point("submit.accepted");
                let now = self.clock.now().max(at);
                self.record_submission(task_id, upstream_id, now).await
            }
            SubmitOutcome::Rejected { message, .. } => {
                self.fail_task(
                    task_id,
                    &task,
                    FailCause::Rejected,
                    &message,
                    self.clock.now(),
                )
                .await
            }
        }
    }

    /// The provider accepted the task: `TaskSubmitted` and the next poll time of its work
    /// row, in one commit.
    async fn record_submission(
        &self,
        task_id: Uuid,
        upstream_id: String,
        now: DateTime<Utc>,
    ) -> Result<Task, ServiceError> {
        let next_poll = now + self.poll_interval();
        let meta = CommandMeta::system(now);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let cmd = TaskCommand::MarkSubmitted {
                upstream_id: upstream_id.clone(),
                at: now,
            };
            let submitted = self
                .stores
                .tasks
                .tasks
                .decide(&task_id.to_string(), cmd)
                .await?;
            let mut unit = UnitOfWork::begin(&self.db).await.map_err(unit_error)?;
            let written = async {
                unit.append(&submitted, &meta);
                sqlx::query(
                    "UPDATE task_work SET due_at = $1, lease_owner = NULL, lease_until = 0 WHERE task_id = $2",
                )
                .bind(next_poll.timestamp_millis())
                .bind(task_id.to_string())
                .execute(unit.tx())
                .await?;
                unit.commit().await
            }
            .await;
            match written {
                Ok(()) => {
                    self.runner.nudge();
                    return Ok(submitted.committed());
                }
                // A provider report about the task may have been recorded meanwhile.
                Err(UnitError::Conflict) if attempt < ACCEPT_ATTEMPTS => continue,
                Err(e) => return Err(unit_error(e)),
            }
        }
    }

    /// Runs an OpenAI-style images call to the end: finished with its image, or failed.
    pub(crate) async fn run_images(
        &self,
        task_id: Uuid,
        task: Task,
        provider: &str,
        job: &ImagesJob,
        at: DateTime<Utc>,
    ) -> Result<Task, ServiceError> {
        let client = self.upstreams.images(provider).ok_or_else(|| {
            ServiceError::Unavailable(format!("provider {provider} is not configured"))
        })?;
        let reply = if job.edit {
            let url = job.image_url.clone().unwrap_or_default();
            let image =
                match download(&self.guard, &self.download_client, &url, &IMAGE_LIMITS).await {
                    Ok(i) => i,
                    Err(e) => {
                        let error = e.message("image_url");
                        return self
                            .fail_task(
                                task_id,
                                &task,
                                FailCause::BadInput,
                                &error,
                                self.clock.now(),
                            )
                            .await;
                    }
                };
            client
                .edit(&Edit {
                    model: job.upstream_model.clone(),
                    prompt: job.prompt.clone(),
                    image: image.bytes,
                    image_mime: image.content_type,
                    aspect_ratio: job.aspect_ratio.clone(),
                    output_format: job.output_format.clone(),
                    resolution: job.resolution.clone(),
                })
                .await
        } else {
            client
                .generate(&Generate {
                    model: job.upstream_model.clone(),
                    prompt: job.prompt.clone(),
                    size: None,
                    aspect_ratio: job.aspect_ratio.clone(),
                    output_format: job.output_format.clone(),
                    negative_prompt: job.negative_prompt.clone(),
                    resolution: job.resolution.clone(),
                })
                .await
        };
        let now = self.clock.now().max(at);
        match reply {
            Ok(image) => {
                let url = match image {
                    GeneratedImage::Url(u) => u,
                    // No file store of our own: a base64 answer is passed on as a data URL.
                    GeneratedImage::Base64 { data } => {
                        let mime = match job.output_format.as_deref() {
                            Some("jpg") => "image/jpeg",
                            _ => "image/png",
                        };
                        format!("data:{mime};base64,{data}")
                    }
                };
                let result = TaskResult {
                    image_url: Some(url),
                    ..TaskResult::default()
                };
                self.finish_task(task_id, &task, result, vec![], now).await
            }
            Err(e) => {
                if let journey_commands::upstream::UpstreamError::Http { status, body } = &e {
                    tracing::warn!(provider, status, body = %body, %task_id, "images provider refused");
                }
                let cause = match &e {
                    journey_commands::upstream::UpstreamError::Http { status, .. }
                        if (400..500).contains(status) =>
                    {
                        FailCause::Rejected
                    }
                    _ => FailCause::Unreachable,
                };
                self.fail_task(task_id, &task, cause, &e.to_string(), now)
                    .await
            }
        }
    }
}
