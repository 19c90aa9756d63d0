//! Data-subject request use cases: submission (by the holder, or by staff for requests that
//! arrive by email), verification by a one-time code sent to the account's email, staff
//! steps, the due-date worklist and reminders to staff before a request falls due.

use super::Privacy;
use crate::error::ServiceError;
use crate::identity::{from_ms, Ctx};
use chrono::{DateTime, Duration, Utc};
use journey_commands::mailer::Mail;
use journey_commands::secrets::{hmac_hex, random_bytes};
use journey_commands::StoreError;
use journey_domain::meta::Actor;
use journey_domain::requests::{
    Channel, DataSubjectRequest, RequestCommand, RequestError, RequestStatus, RequestType,
};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

/// Staff are reminded of open requests due within this many days.
pub const REMIND_DAYS_BEFORE_DUE: i64 = 3;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestView {
    pub request_id: Uuid,
    pub subject: Uuid,
    #[schema(value_type = String)]
    pub kind: RequestType,
    /// received, verified, in_progress, completed or rejected.
    pub status: String,
    pub due_at: Option<DateTime<Utc>>,
    pub overdue: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestRow {
    pub request_id: String,
    pub subject: String,
    pub kind: String,
    pub channel: String,
    pub status: String,
    pub received_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Open and past its due date.
    pub overdue: bool,
}

/// Staff steps on a request.
pub enum Step {
    Start,
    Complete(String),
    Reject(String),
}

fn request_error(e: StoreError<RequestError>) -> ServiceError {
    match e {
        StoreError::Rejected(RequestError::NotFound) => {
            ServiceError::NotFound("no such request".into())
        }
        StoreError::Rejected(e @ RequestError::WrongState(_)) => {
            ServiceError::Conflict(e.to_string())
        }
        StoreError::Rejected(e) => ServiceError::bad(e.to_string()),
        other => other.into(),
    }
}

impl Privacy<'_> {
    fn code_hash(&self, request: Uuid, code: &str) -> String {
        hmac_hex(&self.pepper, "dsr-code", &format!("{request}:{code}"))
    }

    fn new_code() -> String {
        let b = random_bytes(4);
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) % 1_000_000;
        format!("{n:06}")
    }

    async fn request_command(
        &self,
        id: Uuid,
        cmd: RequestCommand,
        meta: &journey_domain::meta::CommandMeta,
    ) -> Result<(), ServiceError> {
        self.stores
            .privacy
            .requests
            .execute(&id.to_string(), cmd, meta)
            .await
            .map_err(request_error)
    }

    async fn request_state(&self, id: Uuid) -> Result<DataSubjectRequest, ServiceError> {
        Ok(self.stores.privacy.requests.load(&id.to_string()).await?.0)
    }

    fn view(&self, id: Uuid, r: &DataSubjectRequest) -> Result<RequestView, ServiceError> {
        let (Some(subject), Some(kind)) = (r.subject, r.kind) else {
            return Err(ServiceError::NotFound("no such request".into()));
        };
        Ok(RequestView {
            request_id: id,
            subject,
            kind,
            status: r.status.as_str().into(),
            due_at: r.due_at,
            overdue: !r.status.is_closed() && r.due_at.is_some_and(|d| self.clock.now() > d),
        })
    }

    async fn send_code(
        &self,
        subject: Uuid,
        id: Uuid,
        kind: RequestType,
        code: &str,
    ) -> Result<(), ServiceError> {
        let me = self.identity().me(subject).await?;
        self.mailer
            .send(Mail {
                to: me.email,
                subject: "Your JourneyAPI privacy request: verification code".into(),
                body: format!(
                    "We received a {kind:?} request for your JourneyAPI account (request {id}).\n\n\
                     Verification code: {code}\n\nIt is valid for 10 minutes and 3 attempts. If you did \
                     not make this request, ignore this email; nothing happens without the code.\n"
                ),
            })
            .await?;
        Ok(())
    }

    /// Records a request and emails the account a one-time code.
    pub async fn submit_request(
        &self,
        subject: Uuid,
        kind: RequestType,
        channel: Channel,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<RequestView, ServiceError> {
        // Only existing, active accounts can be verified by email.
        self.identity().me(subject).await.map_err(|_| {
            ServiceError::NotFound("no active account to verify the request against".into())
        })?;
        let id = Uuid::new_v4();
        let code = Self::new_code();
        let meta = self.identity().meta(actor, Some(subject), ctx).await?;
        let cmd = RequestCommand::Receive {
            subject,
            kind,
            channel,
            code_hash: self.code_hash(id, &code),
            at: ctx.at,
        };
        self.request_command(id, cmd, &meta).await?;
        self.send_code(subject, id, kind, &code).await?;
        self.identity()
            .settle::<DataSubjectRequest>(&id.to_string())
            .await?;
        self.view(id, &self.request_state(id).await?)
    }

    /// The request, if `holder` (when given) is its subject.
    async fn owned(
        &self,
        id: Uuid,
        holder: Option<Uuid>,
    ) -> Result<DataSubjectRequest, ServiceError> {
        let r = self.request_state(id).await?;
        match (r.subject, holder) {
            (None, _) => Err(ServiceError::NotFound("no such request".into())),
            (Some(s), Some(h)) if s != h => Err(ServiceError::NotFound("no such request".into())),
            _ => Ok(r),
        }
    }

    /// Records a staff member's work on a request (`action`, the request id as the reason)
    /// in the audit trail, with the request's subject, before the work is done.
    pub async fn audit_request_work(
        &self,
        staff: Uuid,
        id: Uuid,
        action: &str,
        ctx: &Ctx,
    ) -> Result<(), ServiceError> {
        let subject = self.owned(id, None).await?.subject;
        let reason = format!("request {id}");
        self.identity()
            .audit_read(staff, subject, action, Some(&reason), ctx)
            .await
    }

    pub async fn verify_request(
        &self,
        id: Uuid,
        code: &str,
        holder: Option<Uuid>,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<RequestView, ServiceError> {
        let r = self.owned(id, holder).await?;
        let meta = self.identity().meta(actor, r.subject, ctx).await?;
        let cmd = RequestCommand::Verify {
            code_hash: self.code_hash(id, code.trim()),
            at: ctx.at,
        };
        self.request_command(id, cmd, &meta).await?;
        self.identity()
            .settle::<DataSubjectRequest>(&id.to_string())
            .await?;
        let r = self.request_state(id).await?;
        if r.status == RequestStatus::Received {
            return Err(ServiceError::bad(
                RequestError::WrongCode(r.attempts_left()).to_string(),
            ));
        }
        self.view(id, &r)
    }

    pub async fn resend_code(
        &self,
        id: Uuid,
        holder: Option<Uuid>,
        actor: Actor,
        ctx: &Ctx,
    ) -> Result<RequestView, ServiceError> {
        let r = self.owned(id, holder).await?;
        let (Some(subject), Some(kind)) = (r.subject, r.kind) else {
            return Err(ServiceError::NotFound("no such request".into()));
        };
        let code = Self::new_code();
        let meta = self.identity().meta(actor, Some(subject), ctx).await?;
        let cmd = RequestCommand::ReissueCode {
            code_hash: self.code_hash(id, &code),
            at: ctx.at,
        };
        self.request_command(id, cmd, &meta).await?;
        self.send_code(subject, id, kind, &code).await?;
        self.view(id, &self.request_state(id).await?)
    }

    pub async fn request_step(
        &self,
        id: Uuid,
        step: Step,
        staff: Uuid,
        ctx: &Ctx,
    ) -> Result<RequestView, ServiceError> {
        self.owned(id, None).await?;
        let cmd = match step {
            Step::Start => RequestCommand::Start { at: ctx.at },
            Step::Complete(note) => RequestCommand::Complete { note, at: ctx.at },
            Step::Reject(reason) => RequestCommand::Reject { reason, at: ctx.at },
        };
        let meta = self.identity().meta(Actor::Staff(staff), None, ctx).await?;
        self.request_command(id, cmd, &meta).await?;
        self.identity()
            .settle::<DataSubjectRequest>(&id.to_string())
            .await?;
        self.view(id, &self.request_state(id).await?)
    }

    /// The worklist, soonest due first.
    pub async fn list_requests(
        &self,
        status: Option<&str>,
        due_before: Option<DateTime<Utc>>,
        subject: Option<Uuid>,
    ) -> Result<Vec<RequestRow>, ServiceError> {
        self.runner.catch_up().await?;
        let rows = sqlx::query(
            "SELECT request_id, subject, kind, channel, status, received_at, due_at, closed_at
             FROM rm_requests
             WHERE ($1 = '' OR status = $1) AND due_at < $2 AND ($3 = '' OR subject = $3)
             ORDER BY due_at, request_id",
        )
        .bind(status.unwrap_or_default())
        .bind(due_before.map_or(i64::MAX, |t| t.timestamp_millis()))
        .bind(subject.map(|s| s.to_string()).unwrap_or_default())
        .fetch_all(&self.db.any)
        .await?;
        let now = self.clock.now();
        rows.iter()
            .map(|r| {
                let status: String = r.try_get(4)?;
                let due = from_ms(r.try_get(6)?);
                let closed = status == "completed" || status == "rejected";
                Ok(RequestRow {
                    request_id: r.try_get(0)?,
                    subject: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    channel: r.try_get(3)?,
                    overdue: !closed && now > due,
                    status,
                    received_at: from_ms(r.try_get(5)?),
                    due_at: due,
                    closed_at: r.try_get::<Option<i64>, _>(7)?.map(from_ms),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ServiceError::from)
    }

    /// Emails admin and compliance staff about open requests due within three days (once
    /// per request); returns how many requests were reminded.
    pub async fn remind_due_requests(&self, as_of: DateTime<Utc>) -> Result<u64, ServiceError> {
        self.runner.catch_up().await?;
        let rows = sqlx::query(
            "SELECT request_id, kind, due_at FROM rm_requests
             WHERE status NOT IN ('completed', 'rejected') AND reminded = 0 AND due_at <= $1
             ORDER BY due_at",
        )
        .bind((as_of + Duration::days(REMIND_DAYS_BEFORE_DUE)).timestamp_millis())
        .fetch_all(&self.db.any)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let staff = sqlx::query(
            "SELECT DISTINCT account_id FROM rm_staff_roles WHERE role IN ('admin', 'compliance')",
        )
        .fetch_all(&self.db.any)
        .await?;
        let mut to = Vec::new();
        for s in staff {
            let id = Uuid::parse_str(&s.try_get::<String, _>(0)?)
                .map_err(|e| ServiceError::Internal(e.into()))?;
            if let Ok(me) = self.identity().me(id).await {
                to.push(me.email);
            }
        }
        if to.is_empty() {
            tracing::warn!("requests fall due but no admin or compliance staff can be emailed");
            return Ok(0);
        }
        let mut reminded = 0;
        for r in rows {
            let id: String = r.try_get(0)?;
            let kind: String = r.try_get(1)?;
            let due = from_ms(r.try_get(2)?);
            for addr in &to {
                self.mailer
                    .send(Mail {
                        to: addr.clone(),
                        subject: format!("Privacy request {id} is due {}", due.format("%Y-%m-%d")),
                        body: format!(
                            "The {kind} request {id} is due on {} and is still open.\n\
                             Worklist: {}/admin/v1/requests?status=\n",
                            due.format("%Y-%m-%d %H:%M UTC"),
                            self.cfg.public_url()
                        ),
                    })
                    .await?;
            }
            let meta = journey_domain::meta::CommandMeta::system(as_of);
            self.stores
                .privacy
                .requests
                .execute(&id, RequestCommand::Remind { at: as_of }, &meta)
                .await
                .map_err(request_error)?;
            reminded += 1;
        }
        Ok(reminded)
    }
}
