//! Errors as the HTTP API answers them: `{"error":{"code","message"}}` with the status of
//! the error's kind, and `Retry-After` when waiting helps.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lim_domain::{ErrorKind, FieldError};
use serde::Serialize;

use crate::incidents::CoreError;

/// The longest message an error answer carries; the rest is cut (a message may quote
/// what a client sent).
const MAX_MESSAGE_CHARS: usize = 1024;

/// `{"error":{"code","message"}}` with the status of its kind.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_field`, `illegal_transition`.
    #[schema(value_type = String)]
    code: &'static str,
    /// What was wrong, naming the field or the state.
    message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// The JSON body of an error of `kind`, for answers written outside axum.
    pub fn body_json(kind: ErrorKind, message: &str) -> String {
        serde_json::to_string(&ErrorBody {
            error: ErrorDetail {
                code: kind.code(),
                message: lim_domain::text::shortened(message, MAX_MESSAGE_CHARS),
            },
        })
        .expect("an error body always serializes")
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::new(ErrorKind::InvalidField, error.to_string())
    }
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        let kind = error.kind();
        if kind == ErrorKind::Internal {
            tracing::error!(%error, "request failed");
            return ApiError::new(kind, "internal error; the cause is in the service log");
        }
        ApiError::new(kind, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.kind.code(),
                message: lim_domain::text::shortened(&self.message, MAX_MESSAGE_CHARS),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.kind.retry_after_seconds() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overloaded_store_answers_503_with_retry_after() {
        let response = ApiError::new(ErrorKind::Overloaded, "the store's write queue is full").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = ApiError::new(ErrorKind::InvalidField, "x").into_response();
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn a_long_message_is_cut() {
        let body = ApiError::body_json(ErrorKind::InvalidField, &"x".repeat(10_000));
        assert!(body.len() < 1200, "{}", body.len());
    }
}
