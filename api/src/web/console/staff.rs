//! `/console/staff` (admin only): who holds which staff role, and granting or revoking a
//! role by the member's email address (in the form body), through `identity().set_role`
//! as `journey staff grant|revoke` does, recorded with the admin as the actor.

use super::{field, Chrome, ADMIN_ONLY, STAFF};
use crate::auth::Ctx;
use crate::error::ApiError;
use crate::web::see_other_or_error;
use crate::web::FormBody;
use crate::web::{error_page, render, when, Form};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;
use journey_domain::meta::Actor;
use journey_domain::staff::Role;

pub struct GrantRow {
    pub account_id: String,
    pub role: &'static str,
    pub granted: String,
    pub me: bool,
}

#[derive(Template)]
#[template(path = "console/staff.html")]
struct StaffPage {
    chrome: Chrome,
    grants: Vec<GrantRow>,
}

pub async fn list(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let staff = staff_page!(app, req, ADMIN_ONLY);
    match app.identity().staff_roster().await {
        Ok(grants) => render(
            StatusCode::OK,
            &StaffPage {
                chrome: staff.chrome("Staff roles", "staff"),
                grants: grants
                    .into_iter()
                    .map(|g| GrantRow {
                        me: g.account_id == staff.staff.account_id,
                        account_id: g.account_id.to_string(),
                        role: g.role.as_str(),
                        granted: when(g.granted_at),
                    })
                    .collect(),
            },
        ),
        Err(e) => error_page(&e.into(), STAFF),
    }
}

/// `POST /console/staff`: `email`, `role`, `change` (`grant` or `revoke`).
pub async fn change(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_ONLY, STAFF);
    let done: Result<(), ApiError> = async {
        let role = field(&form, "role")
            .and_then(Role::parse)
            .ok_or_else(|| super::bad("choose a role: admin, compliance or support"))?;
        let grant = match field(&form, "change") {
            Some("grant") => true,
            Some("revoke") => false,
            _ => return Err(super::bad("choose grant or revoke")),
        };
        let email = field(&form, "email").unwrap_or_default();
        app.identity()
            .set_role(
                email,
                role,
                grant,
                Actor::Staff(staff.staff.account_id),
                &ctx,
            )
            .await?;
        Ok(())
    }
    .await;
    see_other_or_error(done, "/console/staff", STAFF)
}
