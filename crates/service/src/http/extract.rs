//! Request extractors: JSON bodies (content type, size, deadline, strict fields), the
//! incident id of a path and query strings, each turning every kind of bad input into
//! an [`ApiError`] (never a 500, never a text body).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use lim_domain::event::ObjectOnly;
use lim_domain::text::excerpt;
use lim_domain::{ErrorKind, IncidentId};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::error::ApiError;

/// When the request's body must have arrived (set by the HTTP layer for every request).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Instant);

/// A JSON object as the request body. Refuses a non-JSON content type (415), a body over
/// the limit (413), one that arrives too slowly (408), malformed JSON, anything but an
/// object, fields of the wrong type and unknown fields (400, naming the field's path).
/// With `T: Default`, use [`OptionalJson`] for actions whose body may be empty.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(request).await?;
        parse_json(&bytes).map(|ObjectOnly(body)| JsonBody(body))
    }
}

/// Like [`JsonBody`], but an empty body (no bytes at all, with or without a content type)
/// means `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let declared_json = declares_json(request.headers());
        let bytes = read_body(request).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        if !declared_json {
            return Err(unsupported_media_type());
        }
        parse_json(&bytes).map(|ObjectOnly(body)| OptionalJson(body))
    }
}

/// The body of a JSON request, after the content-type, size and deadline checks.
pub async fn json_bytes(request: Request) -> Result<Bytes, ApiError> {
    if !declares_json(request.headers()) {
        return Err(unsupported_media_type());
    }
    read_body(request).await
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

async fn read_body(request: Request) -> Result<Bytes, ApiError> {
    let deadline = request.extensions().get::<BodyDeadline>().copied();
    let reading = Bytes::from_request(request, &());
    let read = match deadline {
        Some(BodyDeadline(deadline)) => tokio::time::timeout_at(deadline, reading).await.map_err(|_| {
            ApiError::new(
                ErrorKind::RequestTimeout,
                "the request body did not arrive in time (http.body_timeout)",
            )
        })?,
        None => reading.await,
    };
    read.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                "the request body is larger than the configured limit (http.max_body_bytes)",
            )
        } else {
            ApiError::new(
                ErrorKind::MalformedJson,
                format!("cannot read the request body: {rejection}"),
            )
        }
    })
}

/// Parses JSON, naming the path of a field of the wrong type (`[3].severity: …`) and of
/// a field the body type does not know (`[0].severty: unknown field; did you mean …`).
///
/// Tracking the path slows every field down, so a body is parsed without it first, and
/// again with it only when that fails.
pub fn parse_json<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, ApiError> {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                ApiError::new(ErrorKind::InvalidField, describe_data_error(&path, &inner))
            }
            _ => ApiError::new(ErrorKind::MalformedJson, format!("malformed JSON: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::new(ErrorKind::MalformedJson, format!("malformed JSON: {error}")))?;
    Ok(value)
}

/// `path: problem` for a value JSON could carry but the body type cannot take.
fn describe_data_error(path: &str, error: &serde_json::Error) -> String {
    let text = strip_position(error);
    if let Some((field, known)) = unknown_field(&text) {
        // The path already ends in the unknown field's name.
        let at = match path.strip_suffix(field) {
            Some(parent) => format!("{parent}{}", excerpt(field)),
            None => excerpt(field),
        };
        return match closest(field, &known) {
            Some(suggestion) => format!("{at}: unknown field; did you mean `{suggestion}`?"),
            None if known.is_empty() => format!("{at}: unknown field; this object takes no fields"),
            None => format!("{at}: unknown field; the known fields are {}", known.join(", ")),
        };
    }
    let field = if path == "." { "body" } else { path };
    format!("{field}: {text}")
}

/// The field and the known fields of serde's "unknown field `x`, expected one of `a`, `b`"
/// (or "expected `a`", or "there are no fields").
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    let known = expected.split('`').skip(1).step_by(2).collect();
    Some((field, known))
}

/// The known field a misspelling most likely meant, if one is close enough.
fn closest<'a>(field: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(field, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
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

/// The `{id}` of an incident route. Any id axum cannot even read (bad percent-encoding,
/// not UTF-8) gets the same JSON 400 as one that is not a UUID.
pub struct IncidentIdPath(pub IncidentId);

impl<S: Send + Sync> FromRequestParts<S> for IncidentIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(ErrorKind::InvalidField, format!("id: {}", rejection.body_text())))?;
        text.parse().map(IncidentIdPath).map_err(|_| {
            ApiError::new(
                ErrorKind::InvalidField,
                format!("id: `{}` is not an incident id (a UUID)", excerpt(&text)),
            )
        })
    }
}

/// A query string, refused with a JSON 400 that names the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| {
                let text = rejection.body_text();
                let text = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                ApiError::new(ErrorKind::InvalidField, format!("query: {text}"))
            })
    }
}

/// `limit` of a list within 1..=500, 100 when absent.
pub fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(lim_domain::incident::DEFAULT_PAGE_SIZE);
    let max = lim_domain::incident::MAX_PAGE_SIZE;
    if limit == 0 || limit > max {
        return Err(ApiError::new(
            ErrorKind::InvalidField,
            format!("limit: must be 1 to {max}"),
        ));
    }
    Ok(limit)
}

/// The `cursor` of a list, read by `parse`; refused when it is not one the list gave.
pub fn cursor<T>(cursor: Option<&str>, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, ApiError> {
    cursor
        .map(|cursor| parse(cursor).ok_or_else(|| invalid_cursor(cursor)))
        .transpose()
}

pub fn invalid_cursor(cursor: &str) -> ApiError {
    ApiError::new(
        ErrorKind::InvalidField,
        format!("cursor: `{}` is not a cursor this list gave", excerpt(cursor)),
    )
}

/// A page read one past its `limit` (so that a next cursor is given only when a next page
/// has something on it): the page, and the cursor of the next one, made by `cursor_of`
/// from the page's last item.
pub fn one_page<T>(mut items: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = more.then(|| items.last().map(cursor_of)).flatten();
    (items, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        severity: Option<String>,
        title: Option<String>,
    }

    fn message<T: DeserializeOwned>(json: &str) -> String {
        parse_json::<T>(json.as_bytes()).err().expect("refused").message
    }

    #[test]
    fn an_unknown_field_is_named_with_the_field_it_probably_meant() {
        assert_eq!(
            message::<Body>(r#"{"severty": "P0"}"#),
            "severty: unknown field; did you mean `severity`?"
        );
        assert_eq!(
            message::<Vec<Body>>(r#"[{"title": "t"}, {"tilte": "t"}]"#),
            "[1].tilte: unknown field; did you mean `title`?"
        );
        assert_eq!(
            message::<Body>(r#"{"zzz": 1}"#),
            "zzz: unknown field; the known fields are severity, title"
        );
    }

    #[test]
    fn type_errors_are_named_by_their_path() {
        assert_eq!(
            message::<Vec<Body>>(r#"[{"title": 5}]"#),
            "[0].title: invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            message::<Body>("null"),
            "body: invalid type: null, expected struct Body"
        );
    }
}
