//! One error type for every handler. Bodies follow the reference's decision:
//! `{"errors":[{"msg":"..."}]}` for 4xx, `{}` for 401 on the client API and for 500.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use journey_commands::StoreError;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// Client API: missing, malformed, unknown or revoked key. Body `{}` per the reference.
    #[error("unauthorized")]
    BadApiKey,
    #[error("sign in required")]
    SignInRequired,
    #[error("{0}")]
    PaymentRequired(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("too many requests")]
    TooManyRequests(Duration),
    /// The account's tasks in flight are at the configured limit.
    #[error("too many tasks in flight: at most {0} at once; wait for one to finish")]
    TooManyInFlight(u32),
    #[error("{0}")]
    Unavailable(String),
    /// The body is larger than the route accepts (bytes).
    #[error("the request body is larger than the {0} bytes this endpoint accepts")]
    PayloadTooLarge(usize),
    /// The path exists, with the methods listed (the `Allow` header).
    #[error("method not allowed here; allowed: {0}")]
    MethodNotAllowed(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// Error body for every 4xx response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub errors: Vec<ErrorItem>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorItem {
    pub msg: String,
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }
}

/// For commands whose refusals mean "not in this state any more" (decided, closed,
/// notified): 409 with the aggregate's reason instead of the default 400.
pub fn refused_as_conflict<E: std::error::Error>(e: StoreError<E>) -> ApiError {
    match e {
        StoreError::Rejected(e) => ApiError::Conflict(e.to_string()),
        other => other.into(),
    }
}

/// Staff actions that change a subject's state record why; an empty reason is refused.
pub fn require_reason(reason: &str) -> Result<(), ApiError> {
    if reason.trim().is_empty() {
        return Err(ApiError::bad("a reason is required"));
    }
    Ok(())
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::BadApiKey | ApiError::SignInRequired => StatusCode::UNAUTHORIZED,
            ApiError::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests(_) | ApiError::TooManyInFlight(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        match self {
            ApiError::BadApiKey => resp.json(serde_json::json!({})),
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "internal error");
                resp.json(serde_json::json!({}))
            }
            ApiError::TooManyRequests(wait) => {
                let secs = wait.as_secs().max(1);
                resp.insert_header((header::RETRY_AFTER, secs.to_string()));
                resp.json(ErrorBody {
                    errors: vec![ErrorItem {
                        msg: format!("too many requests; retry after {secs} seconds"),
                    }],
                })
            }
            ApiError::TooManyInFlight(_) => {
                // Tasks take seconds to minutes; a short wait before retrying is right.
                resp.insert_header((header::RETRY_AFTER, "5"));
                resp.json(ErrorBody {
                    errors: vec![ErrorItem {
                        msg: self.to_string(),
                    }],
                })
            }
            other => resp.json(ErrorBody {
                errors: vec![ErrorItem {
                    msg: other.to_string(),
                }],
            }),
        }
    }
}

impl<E: std::error::Error> From<StoreError<E>> for ApiError {
    fn from(e: StoreError<E>) -> Self {
        match e {
            StoreError::Rejected(e) => ApiError::BadRequest(e.to_string()),
            StoreError::Conflict => {
                ApiError::Conflict("too many concurrent changes, try again".into())
            }
            StoreError::Storage(s) => ApiError::Internal(anyhow::anyhow!(s)),
        }
    }
}

impl From<journey_commands::VaultError> for ApiError {
    fn from(e: journey_commands::VaultError) -> Self {
        match e {
            journey_commands::VaultError::SubjectErased => {
                ApiError::Forbidden("this account has been erased".into())
            }
            journey_commands::VaultError::PeriodClosed => {
                ApiError::Conflict("the data this belongs to was destroyed".into())
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

/// Turns actix's own extractor failures (bad JSON, bad query) into our 400 body.
/// JSON bodies of the account-holder and staff APIs (the client API allows more).
pub const JSON_LIMIT: usize = 64 * 1024;

pub fn json_config() -> actix_web::web::JsonConfig {
    use actix_web::error::JsonPayloadError;
    actix_web::web::JsonConfig::default()
        .limit(JSON_LIMIT)
        .error_handler(|err, _| match err {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                ApiError::PayloadTooLarge(JSON_LIMIT).into()
            }
            other => ApiError::bad(format!("invalid JSON body: {other}")).into(),
        })
}

pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default()
        .error_handler(|err, _| ApiError::bad(format!("invalid query: {err}")).into())
}

pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default()
        .error_handler(|err, _| ApiError::bad(format!("invalid path: {err}")).into())
}

const FORM_LIMIT: usize = 16 * 1024;

pub fn form_config() -> actix_web::web::FormConfig {
    use actix_web::error::UrlencodedError;
    actix_web::web::FormConfig::default()
        .limit(FORM_LIMIT)
        .error_handler(|err, _| match err {
            UrlencodedError::Overflow { .. } => ApiError::PayloadTooLarge(FORM_LIMIT).into(),
            other => ApiError::bad(format!("invalid form body: {other}")).into(),
        })
}
