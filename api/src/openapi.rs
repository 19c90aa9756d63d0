//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use crate::routes::{
    account_api, admin_api, auth, billing_api, client_api, legal_api, ops, privacy_api,
    requests_api, support_api, upstream_hooks, usage_api,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "JourneyAPI backend", description = "JourneyAPI-compatible client API, account-holder API and operations endpoints."),
    paths(
        auth::request_magic_link, auth::confirm_page, auth::consume, auth::google_start,
        auth::google_callback, auth::logout,
        account_api::get_me, account_api::patch_me, account_api::create_key,
        account_api::list_keys, account_api::revoke_key,
        client_api::account, client_api::fetch, client_api::fetch_many, client_api::imagine,
        client_api::upscale_1x, client_api::upscale_alt, client_api::upscale_2x_4x,
        client_api::variations, client_api::reroll, client_api::pan, client_api::blend,
        client_api::describe, client_api::faceswap, client_api::imagine_video,
        client_api::extend_video, client_api::inpaint, client_api::outpaint,
        upstream_hooks::notify, usage_api::usage, usage_api::tasks,
        legal_api::privacy_policy, legal_api::subprocessors, legal_api::age_requirement,
        legal_api::child_report, legal_api::takedown, legal_api::my_policy,
        legal_api::publish_policy, legal_api::subject_policy, legal_api::child_reports,
        legal_api::decide_child_report, legal_api::record_breach, legal_api::breaches,
        legal_api::notify_holders, legal_api::regulator_notified, legal_api::takedowns,
        legal_api::decide_takedown, admin_api::correct_subject,
        support_api::open, support_api::list, support_api::get, support_api::delete,
        support_api::reply, support_api::close, support_api::staff_list, support_api::staff_get,
        support_api::staff_reply, support_api::staff_close,
        billing_api::catalog, billing_api::overview, billing_api::checkout,
        billing_api::portal, billing_api::ledger, billing_api::stripe_webhook,
        billing_api::ignored_events,
        admin_api::subject_events, admin_api::audit,
        privacy_api::get_consents, privacy_api::put_consents, privacy_api::object,
        privacy_api::restrict, privacy_api::lift_restriction,
        privacy_api::start_export, privacy_api::export_status, privacy_api::export_download,
        privacy_api::staff_export, privacy_api::delete_me, privacy_api::retention_runs,
        requests_api::submit, requests_api::mine, requests_api::verify_mine, requests_api::resend_mine,
        requests_api::record, requests_api::worklist, requests_api::verify_staff, requests_api::step,
        requests_api::resend_staff, privacy_api::staff_restrict, privacy_api::staff_object,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorItem)),
    modifiers(&Security, &CommonResponses),
    tags(
        (name = "auth", description = "Sign-in by magic link or Google; no passwords"),
        (name = "account", description = "The signed-in holder's profile"),
        (name = "api-keys", description = "API key management"),
        (name = "client-api", description = "JourneyAPI-compatible API (API key)"),
        (name = "billing", description = "Plans, credit packs, Stripe and the credit ledger"),
        (name = "privacy", description = "Consents, objection and restriction of processing"),
        (name = "admin", description = "Staff API: a staff role is required; every read of a subject's data is audited"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "The raw key (`japi_live_...`), optionally prefixed by `Bearer `",
            ))),
        );
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "journey_session",
                "Session cookie; state-changing requests also need the `x-csrf-token` header",
            ))),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as this server serves it: `imagine`'s `model` lists the model catalogue
/// the server loaded (an operator's edited catalogue included).
pub fn document_for(models: &journey_domain::models::ModelCatalog) -> serde_json::Value {
    let mut doc = serde_json::to_value(document()).expect("the document serializes");
    let ids: Vec<&String> = models.models.keys().collect();
    // `ImagineRequest` flattens the webhook fields in, so its own part may sit in `allOf`.
    let schema = doc.pointer_mut("/components/schemas/ImagineRequest");
    let model = schema.and_then(|s| {
        if s["properties"]["model"].is_object() {
            return Some(&mut s["properties"]["model"]);
        }
        s["allOf"]
            .as_array_mut()?
            .iter_mut()
            .find(|part| part["properties"]["model"].is_object())
            .map(|part| &mut part["properties"]["model"])
    });
    if let Some(model) = model {
        model["enum"] = serde_json::json!(ids);
        model["default"] = serde_json::json!(models.default_model);
    }
    doc
}

/// The answers every operation of a kind can give, added where an annotation left them
/// out, so that the document lists every status an operation can answer:
/// - a request body: 400 (unreadable, or a field with a refused character — see
///   `input`) and 413 (over the endpoint's limit);
/// - path or query parameters: 400 (malformed, e.g. an id that is not a UUID, or a refused
///   character).
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{Operation, ParameterIn};
        use utoipa::openapi::{Content, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build()
        };
        let add = |op: &mut Operation, status: &str, description: &str| {
            op.responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| error(description).into());
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let client_api = path.starts_with("/api/v1/");
            let creates_task = !matches!(
                path.as_str(),
                "/api/v1/account" | "/api/v1/fetch" | "/api/v1/fetch-many"
            );
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                let params = op.parameters.as_deref().unwrap_or_default();
                let has_path = params
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Path));
                let has_query = params
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Query));
                if op.request_body.is_some() {
                    add(
                        op,
                        "400",
                        "The body cannot be read or breaks a rule (the message names the field)",
                    );
                    add(op, "413", "The body is larger than this endpoint accepts");
                }
                if has_path {
                    add(op, "400", "A path parameter is malformed (e.g. not a UUID)");
                }
                if has_query {
                    add(op, "400", "A query parameter is malformed or breaks a rule");
                }
                if client_api {
                    add(
                        op,
                        "403",
                        "The account is suspended after a payment dispute",
                    );
                }
                if path.starts_with("/admin/v1/") {
                    add(op, "401", "Not signed in");
                    add(
                        op,
                        "403",
                        "Not staff, or a staff role this route does not allow (checked before the request is read)",
                    );
                }
                if client_api && creates_task {
                    add(op, "409", "Concurrent changes to the account kept winning; retry (nothing was charged)");
                }
            }
        }
    }
}
