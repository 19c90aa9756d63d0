//! The error of every use case: what went wrong in the service's own terms. No transport
//! here: `api` maps each variant to an HTTP status and body, the CLI to a message.

use journey_commands::StoreError;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
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
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ServiceError {
    pub fn bad(msg: impl Into<String>) -> Self {
        ServiceError::BadRequest(msg.into())
    }
}

/// For commands whose refusals mean "not in this state any more" (decided, closed,
/// notified): 409 with the aggregate's reason instead of the default 400.
pub fn refused_as_conflict<E: std::error::Error>(e: StoreError<E>) -> ServiceError {
    match e {
        StoreError::Rejected(e) => ServiceError::Conflict(e.to_string()),
        other => other.into(),
    }
}

/// Staff actions that change a subject's state record why; an empty reason is refused.
pub fn require_reason(reason: &str) -> Result<(), ServiceError> {
    if reason.trim().is_empty() {
        return Err(ServiceError::bad("a reason is required"));
    }
    Ok(())
}

impl<E: std::error::Error> From<StoreError<E>> for ServiceError {
    fn from(e: StoreError<E>) -> Self {
        match e {
            StoreError::Rejected(e) => ServiceError::BadRequest(e.to_string()),
            StoreError::Conflict => {
                ServiceError::Conflict("too many concurrent changes, try again".into())
            }
            StoreError::Storage(s) => ServiceError::Internal(anyhow::anyhow!(s)),
        }
    }
}

impl From<journey_commands::VaultError> for ServiceError {
    fn from(e: journey_commands::VaultError) -> Self {
        match e {
            journey_commands::VaultError::SubjectErased => {
                ServiceError::Forbidden("this account has been erased".into())
            }
            journey_commands::VaultError::PeriodClosed => {
                ServiceError::Conflict("the data this belongs to was destroyed".into())
            }
            other => ServiceError::Internal(other.into()),
        }
    }
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        ServiceError::Internal(e.into())
    }
}
