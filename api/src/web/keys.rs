//! `/keys`: the holder's API keys: list, create (the raw key shown once), revoke after a
//! confirmation page. The same use cases as `/v1/api-keys`.

use super::{error_page, render, see_other_or_error, when, Chrome, Form, KEYS};
use crate::auth::{Ctx, SessionAuth};
use crate::error::{ApiError, ServiceError};
use crate::web::FormBody;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use journey_contexts::app::Core;
use uuid::Uuid;

pub struct KeyRow {
    pub id: Uuid,
    pub name: String,
    pub display: String,
    pub created: String,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    chrome: Chrome,
    csrf: String,
    keys: Vec<KeyRow>,
}

#[derive(Template)]
#[template(path = "key_created.html")]
struct KeyCreated {
    chrome: Chrome,
    name: String,
    key: String,
}

#[derive(Template)]
#[template(path = "key_revoke.html")]
struct ConfirmRevoke {
    chrome: Chrome,
    csrf: String,
    id: Uuid,
    name: String,
    display: String,
}

pub async fn list(app: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let s = page_holder!(app, req, KEYS);
    match app.identity().list_api_keys(s.account_id).await {
        Ok(keys) => render(
            StatusCode::OK,
            &KeysPage {
                chrome: Chrome::signed_in(&app, &s, "API keys", "keys"),
                csrf: app.identity().csrf_token(&s.token),
                keys: keys
                    .into_iter()
                    .map(|k| KeyRow {
                        id: k.id,
                        name: k.name,
                        display: k.display,
                        created: when(k.created_at),
                        last_used: k.last_used_at.map(when).unwrap_or_else(|| "never".into()),
                    })
                    .collect(),
            },
        ),
        Err(e) => error_page(&e.into(), KEYS),
    }
}

/// `POST /keys`: creates a key and shows it, once. The page is not cached (`no-store`).
pub async fn create(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, KEYS);
    let name = form.get("name").unwrap_or_default();
    match app
        .identity()
        .create_api_key(s.account_id, name, &ctx)
        .await
    {
        Ok(created) => {
            let mut page = render(
                StatusCode::CREATED,
                &KeyCreated {
                    chrome: Chrome::signed_in(&app, &s, "Your new API key", "keys"),
                    name: created.name,
                    key: created.key,
                },
            );
            // The copy button's script.
            super::holder::allow_script(&mut page);
            page
        }
        Err(e) => error_page(&e.into(), KEYS),
    }
}

/// The key `id` names, if it is one of the holder's active keys. Another account's key
/// and a malformed id are "not found" alike, as in the JSON API.
async fn own_key(
    app: &Core,
    s: &SessionAuth,
    id: &str,
) -> Result<journey_contexts::identity::ApiKeyView, ApiError> {
    let not_found = || {
        ApiError::Service(ServiceError::NotFound(
            "no such API key on your account".into(),
        ))
    };
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    app.identity()
        .list_api_keys(s.account_id)
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(not_found)
}

/// `GET /keys/{id}/revoke`: "are you sure?" Changes nothing.
pub async fn confirm_revoke(
    app: web::Data<Core>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let s = page_holder!(app, req, KEYS);
    match own_key(&app, &s, &id).await {
        Ok(key) => render(
            StatusCode::OK,
            &ConfirmRevoke {
                chrome: Chrome::signed_in(&app, &s, "Revoke this API key?", "keys"),
                csrf: app.identity().csrf_token(&s.token),
                id: key.id,
                name: key.name,
                display: key.display,
            },
        ),
        Err(e) => error_page(&e, KEYS),
    }
}

/// `POST /keys/{id}/revoke`: revokes at once, then back to the list.
pub async fn revoke(
    app: web::Data<Core>,
    ctx: Ctx,
    req: HttpRequest,
    id: web::Path<String>,
    body: FormBody,
) -> HttpResponse {
    let form = Form::parse(&body);
    let s = form_holder!(app, req, form, KEYS);
    let Ok(key_id) = Uuid::parse_str(&id) else {
        return error_page(
            &ApiError::Service(ServiceError::NotFound(
                "no such API key on your account".into(),
            )),
            KEYS,
        );
    };
    see_other_or_error(
        app.identity()
            .revoke_api_key(s.account_id, key_id, &ctx)
            .await,
        "/keys",
        KEYS,
    )
}
