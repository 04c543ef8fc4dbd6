//! API errors as `{"error": "..."}` with the status codes of SPEC 6. Bad input is always a
//! 4xx: a 500 means dpsd itself is at fault.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::broker::{BrokerError, QueueRefusal};
use crate::scheduler::SchedulerError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(serde_json::json!({"error": self.to_string()}))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                ApiError::Unavailable(format!("the store is unreachable: {m}"))
            }
            StoreError::Invalid(m) => ApiError::Internal(m),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            // RabbitMQ answered, and refused what was asked (a reply code): bad input.
            BrokerError::Refused { .. } => ApiError::BadRequest(e.to_string()),
            _ => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<QueueRefusal> for ApiError {
    /// RabbitMQ answered, and refused the queue: bad input, 400 naming it, with its reason.
    fn from(refusal: QueueRefusal) -> Self {
        ApiError::BadRequest(refusal.to_string())
    }
}

impl From<SchedulerError> for ApiError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::NotFound(_) => ApiError::NotFound(e.to_string()),
            SchedulerError::Running(_) => ApiError::Conflict(e.to_string()),
            SchedulerError::BadSchedule(m) => ApiError::BadRequest(m),
            SchedulerError::Store(e) => e.into(),
        }
    }
}
