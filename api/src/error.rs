//! One error type for every handler. Bodies follow the reference's decision:
//! `{"errors":[{"msg":"..."}]}` for 4xx, `{}` for 401 on the client API and for 500.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use journey_commands::StoreError;
pub use journey_contexts::error::ServiceError;
use serde::Serialize;
use utoipa::ToSchema;

/// An HTTP error: a use case's `ServiceError`, or one of the transport's own refusals.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The body is larger than the route accepts (bytes).
    #[error("the request body is larger than the {0} bytes this endpoint accepts")]
    PayloadTooLarge(usize),
    /// The path exists, with the methods listed (the `Allow` header).
    #[error("method not allowed here; allowed: {0}")]
    MethodNotAllowed(String),
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
        ApiError::Service(ServiceError::bad(msg))
    }
}

/// Every error a use case can return converts the way its `ServiceError` does.
macro_rules! via_service_error {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                ApiError::Service(e.into())
            }
        }
    )*};
}
via_service_error!(
    anyhow::Error,
    journey_commands::VaultError,
    sqlx::Error,
    journey_contexts::identity::ConsumeError
);

impl<E: std::error::Error> From<StoreError<E>> for ApiError {
    fn from(e: StoreError<E>) -> Self {
        ApiError::Service(e.into())
    }
}

/// The HTTP status of a use case's error.
pub fn status_of(e: &ServiceError) -> StatusCode {
    match e {
        ServiceError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ServiceError::BadApiKey | ServiceError::SignInRequired => StatusCode::UNAUTHORIZED,
        ServiceError::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
        ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::Conflict(_) => StatusCode::CONFLICT,
        ServiceError::TooManyRequests(_) | ServiceError::TooManyInFlight(_) => {
            StatusCode::TOO_MANY_REQUESTS
        }
        ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Service(e) => status_of(e),
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        let message = |msg: String| ErrorBody {
            errors: vec![ErrorItem { msg }],
        };
        match self {
            ApiError::Service(ServiceError::BadApiKey) => resp.json(serde_json::json!({})),
            ApiError::Service(ServiceError::Internal(e)) => {
                tracing::error!(error = %format!("{e:#}"), "internal error");
                resp.json(serde_json::json!({}))
            }
            ApiError::Service(ServiceError::TooManyRequests(wait)) => {
                let secs = wait.as_secs().max(1);
                resp.insert_header((header::RETRY_AFTER, secs.to_string()));
                resp.json(message(format!(
                    "too many requests; retry after {secs} seconds"
                )))
            }
            ApiError::Service(ServiceError::TooManyInFlight(_)) => {
                // Tasks take seconds to minutes; a short wait before retrying is right.
                resp.insert_header((header::RETRY_AFTER, "5"));
                resp.json(message(self.to_string()))
            }
            other => resp.json(message(other.to_string())),
        }
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
