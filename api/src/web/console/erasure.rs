//! `/console/erasure`: the deletion queue (accounts in their 30-day window, with a form to
//! cancel a deletion on the holder's request, as `journey deletion cancel`: any staff
//! role, audited `deletion.cancel`) and the erasure certificates (admin, compliance).
//! The queue names subjects, so it is read with a reason and audited per account listed
//! (`deletions.list`).

use super::{
    page_staff, reason_error, Chrome, ConsoleStaff, ADMIN_OR_COMPLIANCE, ANY_STAFF, ERASURE,
};
use crate::auth::Ctx;
use crate::error::{ApiError, ServiceError};
use crate::web::FormBody;
use crate::web::{error_page, render, when, Form};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;
use journey_domain::meta::Actor;
use uuid::Uuid;

/// How many certificates the page lists.
const CERTIFICATES: i64 = 100;

pub struct QueueRow {
    pub account: Uuid,
    pub requested: String,
    pub purge: String,
}

pub struct CertificateRow {
    pub account: Uuid,
    pub erased: String,
    pub requested: String,
    pub requested_by: String,
    pub reason: String,
    pub categories: String,
    pub counts: String,
    pub retained: String,
}

#[derive(Template)]
#[template(path = "console/erasure.html")]
struct ErasurePage {
    chrome: Chrome,
    shown: bool,
    compliance: bool,
    reason: String,
    notice: String,
    queue: Vec<QueueRow>,
    certificates: Vec<CertificateRow>,
}

fn empty(staff: &ConsoleStaff) -> ErasurePage {
    ErasurePage {
        chrome: staff.chrome("Deletion and erasure", "erasure"),
        shown: false,
        compliance: staff.may(ADMIN_OR_COMPLIANCE),
        reason: String::new(),
        notice: String::new(),
        queue: Vec::new(),
        certificates: Vec::new(),
    }
}

pub async fn form(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    match page_staff(&app, &req, ANY_STAFF).await {
        Ok(staff) => render(StatusCode::OK, &empty(&staff)),
        Err(resp) => resp,
    }
}

async fn read(
    app: &Core,
    staff: &ConsoleStaff,
    form: &Form,
    notice: String,
    ctx: &Ctx,
) -> Result<ErasurePage, ApiError> {
    let reason = form.get("reason").unwrap_or_default().trim().to_string();
    let queue = app.privacy().deletion_queue().await?;
    let page = empty(staff);
    let certificates = if page.compliance {
        app.privacy().erasure_certificates(CERTIFICATES).await?
    } else {
        Vec::new()
    };
    // Everyone the page names is recorded as read before it is shown: the queue's accounts
    // and the certified ones.
    app.identity()
        .audit_reads(
            staff.staff.account_id,
            queue
                .iter()
                .map(|(id, _, _)| *id)
                .chain(certificates.iter().map(|(account, _)| *account)),
            "deletions.list",
            Some(&reason),
            ctx,
        )
        .await
        .map_err(|e| reason_error(e.into()))?;
    let certificates = certificates
        .into_iter()
        .map(|(account, c)| CertificateRow {
            account,
            erased: when(c.erased_at),
            requested: when(c.requested_at),
            requested_by: c.requested_by,
            reason: c.reason,
            categories: c.categories.join(", "),
            counts: format!(
                "{} keys destroyed, {} events tombstoned, {} sessions ended, {} API keys revoked",
                c.keys_destroyed, c.events_tombstoned, c.sessions_ended, c.api_keys_revoked
            ),
            retained: c.retained.join("; "),
        })
        .collect();
    Ok(ErasurePage {
        shown: true,
        reason,
        notice,
        queue: queue
            .into_iter()
            .map(|(account, requested, purge)| QueueRow {
                account,
                requested: when(requested),
                purge: when(purge),
            })
            .collect(),
        certificates,
        ..page
    })
}

/// `POST /console/erasure`: `reason`.
pub async fn list(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ANY_STAFF, ERASURE);
    match read(&app, &staff, &form, String::new(), &ctx).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&e, ERASURE),
    }
}

/// `POST /console/erasure/{id}/cancel`: `note` (why; recorded), and the list's `reason`.
pub async fn cancel(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    id: web::Path<String>,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ANY_STAFF, ERASURE);
    let me = staff.staff.account_id;
    let done: Result<String, ApiError> = async {
        let subject = Uuid::parse_str(&id).map_err(|_| {
            ApiError::Service(ServiceError::NotFound("no such pending deletion".into()))
        })?;
        super::check_reason(form.get("reason").unwrap_or_default())?;
        let note = form.get("note").unwrap_or_default().trim();
        journey_contexts::error::require_reason(note)?;
        app.identity()
            .audit_read(me, Some(subject), "deletion.cancel", Some(note), &ctx)
            .await?;
        app.privacy()
            .cancel_deletion(subject, note, Actor::Staff(me), &ctx)
            .await?;
        Ok::<_, ApiError>(format!("The deletion of {subject} is cancelled."))
    }
    .await;
    let notice = match done {
        Ok(n) => n,
        Err(e) => return error_page(&e, ERASURE),
    };
    match read(&app, &staff, &form, notice, &ctx).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&e, ERASURE),
    }
}
