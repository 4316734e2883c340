//! Silences over HTTP (DESIGN §7): make one, list them by state, read one, expire one.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use lim_domain::silence::{NewSilence, Silence, SilenceId, SilenceMatchers, SilenceState};
use lim_domain::text::excerpt;
use lim_domain::{ErrorKind, FieldError};
use lim_store::SilencePageRequest;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiQuery, JsonBody, cursor, one_page, page_size};
use crate::incidents::{IncidentManager, parse_list};

type Manager = State<Arc<IncidentManager>>;

/// A silence as a person asks for it (its exact schema is in `openapi.rs`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    #[serde(default)]
    matchers: SilenceMatchers,
    starts_at: Option<String>,
    ends_at: Option<String>,
    comment: Option<String>,
    created_by: Option<String>,
}

/// A silence as the API shows it, with its state now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SilenceView {
    pub id: SilenceId,
    pub matchers: SilenceMatchers,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub comment: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `pending`, `active` or `expired`, now.
    pub state: SilenceState,
}

impl SilenceView {
    fn of(silence: Silence, now: DateTime<Utc>) -> SilenceView {
        SilenceView {
            state: silence.state(now),
            id: silence.id,
            matchers: silence.matchers,
            starts_at: silence.starts_at,
            ends_at: silence.ends_at,
            comment: silence.comment,
            created_by: silence.created_by,
            created_at: silence.created_at,
            updated_at: silence.updated_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SilencePage {
    pub silences: Vec<SilenceView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SilenceListParams {
    state: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// The `{id}` of a silence route: a hyphenated UUID.
pub struct SilenceIdPath(pub SilenceId);

impl<S: Send + Sync> FromRequestParts<S> for SilenceIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(ErrorKind::InvalidField, format!("id: {}", rejection.body_text())))?;
        text.parse().map(SilenceIdPath).map_err(|_| {
            ApiError::new(
                ErrorKind::InvalidField,
                format!("id: `{}` is not a silence id (a UUID)", excerpt(&text)),
            )
        })
    }
}

/// An RFC 3339 time of a body or query, refused naming its field.
pub fn time_field(value: Option<String>, field: &str) -> Result<Option<DateTime<Utc>>, FieldError> {
    value
        .map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|time| time.with_timezone(&Utc))
                .map_err(|_| {
                    FieldError::new(
                        field,
                        format!(
                            "`{}` is not an RFC 3339 time such as 2026-01-01T09:00:00Z",
                            excerpt(&text)
                        ),
                    )
                })
        })
        .transpose()
}

/// Silence incidents: while it holds, a matching incident is recorded and counted but
/// notifies and escalates nobody; when it ends, an incident still open and unacknowledged
/// starts its escalation from level 1.
#[utoipa::path(post, path = "/v1/silences", tag = "silences", request_body = SilenceBody,
    responses((status = 201, description = "Stored", body = SilenceView)))]
pub async fn create_silence(
    State(manager): Manager,
    JsonBody(body): JsonBody<SilenceBody>,
) -> Result<(StatusCode, Json<SilenceView>), ApiError> {
    let request = NewSilence {
        matchers: body.matchers,
        starts_at: time_field(body.starts_at, "starts_at")?,
        ends_at: time_field(body.ends_at, "ends_at")?,
        comment: body.comment,
        created_by: body.created_by,
    };
    let silence = manager.create_silence(request).await?;
    Ok((StatusCode::CREATED, Json(SilenceView::of(silence, manager.now()))))
}

/// Silences, newest first, by their state now.
#[utoipa::path(get, path = "/v1/silences", tag = "silences",
    responses((status = 200, description = "A page of silences, newest first", body = SilencePage)))]
pub async fn list_silences(
    State(manager): Manager,
    ApiQuery(params): ApiQuery<SilenceListParams>,
) -> Result<Json<SilencePage>, ApiError> {
    let states = parse_list(params.state.as_deref(), "state")?;
    let limit = page_size(params.limit)?;
    let before = cursor(params.cursor.as_deref(), |cursor| cursor.parse::<SilenceId>().ok())?;
    let silences = manager
        .silences(
            states,
            SilencePageRequest {
                limit: limit + 1,
                before,
            },
        )
        .await?;
    let (silences, next_cursor) = one_page(silences, limit, |silence| silence.id.to_string());
    let now = manager.now();
    Ok(Json(SilencePage {
        silences: silences
            .into_iter()
            .map(|silence| SilenceView::of(silence, now))
            .collect(),
        next_cursor,
    }))
}

/// One silence.
#[utoipa::path(get, path = "/v1/silences/{id}", tag = "silences",
    responses((status = 200, description = "The silence", body = SilenceView)))]
pub async fn get_silence(
    State(manager): Manager,
    SilenceIdPath(id): SilenceIdPath,
) -> Result<Json<SilenceView>, ApiError> {
    let silence = manager.silence(id).await?;
    Ok(Json(SilenceView::of(silence, manager.now())))
}

/// Delete a silence: it no longer holds (a pending one never starts), and the
/// escalations it held start from level 1 now. Answers the silence as it was, ended now.
/// (A silence that ends by its own `ends_at` stays listed as `expired`.)
#[utoipa::path(delete, path = "/v1/silences/{id}", tag = "silences",
    responses((status = 200, description = "Deleted", body = SilenceView)))]
pub async fn delete_silence(
    State(manager): Manager,
    SilenceIdPath(id): SilenceIdPath,
) -> Result<Json<SilenceView>, ApiError> {
    let silence = manager.delete_silence(id).await?;
    Ok(Json(SilenceView::of(silence, manager.now())))
}
