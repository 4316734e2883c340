//! Errors as the HTTP API answers them, and the JSON body extractor that turns every
//! kind of bad input into one of them (never a 500, never a text body).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use lim_domain::{ErrorKind, FieldError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::incidents::CoreError;

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
                message: self.message,
            },
        };
        (status, Json(body)).into_response()
    }
}

/// A JSON request body. Refuses a non-JSON content type (415), a body over the limit
/// (413), malformed JSON and fields of the wrong type (400, naming the field's path).
/// With `T: Default`, use [`OptionalJson`] for actions whose body may be empty.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Like [`JsonBody`], but an empty body (with or without a content type) means `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared_json = declares_json(request.headers());
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !declared_json {
            return Err(unsupported_media_type());
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// The body of a JSON request, after the content-type and size checks.
pub async fn json_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    if !declares_json(request.headers()) {
        return Err(unsupported_media_type());
    }
    read_body(request, state).await
}

/// True when the Content-Type is `application/json` or a `+json` type.
fn declares_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"))
}

async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                "the request body is larger than the configured limit",
            )
        } else {
            ApiError::new(
                ErrorKind::MalformedJson,
                format!("cannot read the request body: {rejection}"),
            )
        }
    })
}

/// Parses JSON, naming the path of a field of the wrong type (`[3].severity: …`).
///
/// Tracking the path slows every field down, so a body is parsed without it first, and
/// again with it only when that fails.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::new(
                ErrorKind::InvalidField,
                format!("{}: {}", field_name(&path), strip_position(&inner)),
            ),
            _ => ApiError::new(ErrorKind::MalformedJson, format!("malformed JSON: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::new(ErrorKind::MalformedJson, format!("malformed JSON: {error}")))?;
    Ok(value)
}

fn field_name(path: &str) -> &str {
    if path == "." { "body" } else { path }
}

/// serde's data errors end in "at line L column C"; the field path already says where.
fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        ErrorKind::UnsupportedMediaType,
        "the request body must be JSON (Content-Type: application/json)",
    )
}
