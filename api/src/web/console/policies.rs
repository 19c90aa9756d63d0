//! `/console/policies`: the published privacy-policy versions (`legal().policies`) and
//! publishing a new one (as `POST /admin/v1/policies`: a material change must take effect
//! at least 30 days after publication; every holder is emailed).

use super::{field, Chrome, ADMIN_OR_COMPLIANCE, POLICIES};
use crate::auth::Ctx;
use crate::error::ApiError;
use crate::web::see_other_or_error;
use crate::web::FormBody;
use crate::web::{error_page, render, when, Form};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::NaiveDateTime;
use journey_contexts::app::Core;
use journey_contexts::legal::policies::PublishPolicy;

pub struct PolicyRow {
    pub version: String,
    pub effective: String,
    pub published: String,
    pub material: bool,
    /// In force now, upcoming, or past.
    pub state: &'static str,
    pub url: String,
}

#[derive(Template)]
#[template(path = "console/policies.html")]
struct PoliciesPage {
    chrome: Chrome,
    policies: Vec<PolicyRow>,
    /// The earliest day a material change may take effect (30 days from now).
    earliest_material: String,
}

pub async fn list(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let staff = staff_page!(app, req, ADMIN_OR_COMPLIANCE);
    let now = app.clock.now();
    match app.legal().policies().await {
        Ok(list) => {
            // The one in force is the last whose date has come.
            let current = list.iter().rposition(|p| p.effective_at <= now);
            let mut rows: Vec<PolicyRow> = list
                .iter()
                .enumerate()
                .map(|(i, p)| PolicyRow {
                    version: p.version.clone(),
                    effective: when(p.effective_at),
                    published: when(p.published_at),
                    material: p.material,
                    state: if Some(i) == current {
                        "in force"
                    } else if p.effective_at > now {
                        "upcoming"
                    } else {
                        "superseded"
                    },
                    url: p.url.clone().unwrap_or_default(),
                })
                .collect();
            rows.reverse();
            render(
                StatusCode::OK,
                &PoliciesPage {
                    chrome: staff.chrome("Policy versions", "policies"),
                    policies: rows,
                    earliest_material: (now
                        + chrono::Duration::days(journey_domain::policy::MATERIAL_NOTICE_DAYS))
                    .format("%Y-%m-%d")
                    .to_string(),
                },
            )
        }
        Err(e) => error_page(&e.into(), POLICIES),
    }
}

/// `POST /console/policies`: `version`, `text` or `url`, `effective_at`
/// (`YYYY-MM-DDTHH:MM`, UTC), `material` (a checkbox).
pub async fn publish(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let staff = staff_form!(app, req, form, ADMIN_OR_COMPLIANCE, POLICIES);
    let done: Result<(), ApiError> = async {
        let effective_at = field(&form, "effective_at")
            .and_then(|v| {
                NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M")
                    .or_else(|_| NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S"))
                    .ok()
            })
            .map(|t| t.and_utc())
            .ok_or_else(|| {
                super::bad("the effective date must be a date and time such as 2027-01-01T00:00")
            })?;
        let input = PublishPolicy {
            version: form.get("version").unwrap_or_default().to_string(),
            text: field(&form, "text").map(str::to_string),
            url: field(&form, "url").map(str::to_string),
            effective_at,
            material: form.get("material").is_some(),
        };
        app.legal()
            .publish_policy(staff.staff.account_id, input, &ctx)
            .await?;
        Ok::<_, ApiError>(())
    }
    .await;
    see_other_or_error(done, "/console/policies", POLICIES)
}
