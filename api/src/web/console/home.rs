//! `/console`: the console's home, and finding a subject by email (through the identity
//! index, in a POST body) or by account id.

use super::{field, uuid_field, Chrome, ADMIN_OR_COMPLIANCE, ANY_STAFF, CONSOLE};
use crate::auth::Ctx;
use crate::error::ApiError;
use crate::web::see_other;
use crate::web::FormBody;
use crate::web::{error_page, render, Form};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;

#[derive(Template)]
#[template(path = "console/home.html")]
struct Home {
    chrome: Chrome,
    /// May find subjects, read the audit trail and work requests.
    compliance: bool,
    /// May set staff roles.
    admin: bool,
    /// May work support tickets.
    support: bool,
}

pub async fn home(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let staff = staff_page!(app, req, ANY_STAFF);
    render(
        StatusCode::OK,
        &Home {
            chrome: staff.chrome("Compliance console", "home"),
            compliance: staff.may(ADMIN_OR_COMPLIANCE),
            admin: staff.may(super::ADMIN_ONLY),
            support: staff.may(super::SUPPORT_OR_ADMIN),
        },
    )
}

/// `POST /console/find`: `email` (looked up through the identity index, as
/// `POST /admin/v1/requests` does) or `id`; then to the subject's page, whose URL holds the
/// account id only.
pub async fn find(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_OR_COMPLIANCE, CONSOLE);
    let found: Result<uuid::Uuid, ApiError> = async {
        if let Some(email) = field(&form, "email") {
            // Whether an address holds an account is itself personal data: the lookup
            // needs a reason and is recorded (`subject.find`, with the subject when one
            // was found) before the answer is shown, as `POST /admin/v1/requests` records
            // its lookup.
            let reason = form.get("reason").unwrap_or_default().trim().to_string();
            super::check_reason(&reason)?;
            let found = app.identity().account_by_email(email).await;
            let subject = found.as_ref().ok().copied();
            app.identity()
                .audit_read(
                    staff.staff.account_id,
                    subject,
                    "subject.find",
                    Some(&reason),
                    &ctx,
                )
                .await?;
            return Ok(found?);
        }
        uuid_field(&form, "id", "account id")?
            .ok_or_else(|| super::bad("give an email address or an account id"))
    }
    .await;
    match found {
        Ok(id) => see_other(format!("/console/subjects/{id}")),
        Err(e) => error_page(&e, CONSOLE),
    }
}
