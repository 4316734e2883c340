//! Incident routes: list, show, open by hand, lifecycle actions, comments, timeline.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use lim_domain::incident::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use lim_domain::{Action, ErrorKind, Incident, IncidentId, PageRequest, TimelineEntry, TimelineKind};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, JsonBody, OptionalJson};
use crate::incidents::{IncidentManager, NewIncident, incident_filter};

type Manager = State<Arc<IncidentManager>>;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// Comma-separated states, e.g. `NEW,ASSIGNED`.
    state: Option<String>,
    /// Comma-separated severities, e.g. `P0,P1`.
    severity: Option<String>,
    /// Comma-separated sources.
    source: Option<String>,
    /// Comma-separated categories.
    category: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentPage {
    pub incidents: Vec<Incident>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    pub entries: Vec<TimelineEntry>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct NewIncidentBody {
    title: Option<String>,
    description: Option<String>,
    /// P0..P4 (or critical/high/medium/low/info). Default P2.
    severity: Option<String>,
    category: Option<String>,
    /// Default `manual`.
    source: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct AssignBody {
    assignee: Option<String>,
    team: Option<String>,
    actor: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ActorBody {
    /// Who acts; default `api`.
    actor: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ResolveBody {
    note: Option<String>,
    actor: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ReclassifyBody {
    /// P0..P4 (or critical/high/medium/low/info).
    severity: Option<String>,
    category: Option<String>,
    actor: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct CommentBody {
    author: Option<String>,
    body: Option<String>,
}

/// The `{id}` of an incident route. Any id axum cannot even read (bad percent-encoding,
/// not UTF-8) gets the same JSON 400 as one that is not a UUID.
pub struct IncidentIdPath(IncidentId);

impl<S: Send + Sync> FromRequestParts<S> for IncidentIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(ErrorKind::InvalidField, format!("id: {}", rejection.body_text())))?;
        text.parse().map(IncidentIdPath).map_err(|_| {
            ApiError::new(
                ErrorKind::InvalidField,
                format!("id: `{text}` is not an incident id (a UUID)"),
            )
        })
    }
}

/// List incidents, newest first, with filters and cursor pagination.
#[utoipa::path(get, path = "/v1/incidents", tag = "incidents", params(ListParams),
    responses((status = 200, body = IncidentPage), (status = 400, body = super::error::ErrorBody)))]
pub async fn list_incidents(
    State(manager): Manager,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<IncidentPage>, ApiError> {
    let Query(params) = query.map_err(|rejection| ApiError::new(ErrorKind::InvalidField, rejection.body_text()))?;
    let filter = incident_filter(
        params.state.as_deref(),
        params.severity.as_deref(),
        params.source.as_deref(),
        params.category.as_deref(),
    )?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(ApiError::new(
            ErrorKind::InvalidField,
            format!("limit: must be 1 to {MAX_PAGE_SIZE}"),
        ));
    }
    let before = params
        .cursor
        .as_deref()
        .map(|cursor| {
            cursor
                .parse()
                .map_err(|_| ApiError::new(ErrorKind::InvalidField, format!("cursor: `{cursor}` is not valid")))
        })
        .transpose()?;
    let incidents = manager.list(&filter, PageRequest { limit, before }).await?;
    let next_cursor = (incidents.len() == limit as usize)
        .then(|| incidents.last().map(|incident| incident.id.to_string()))
        .flatten();
    Ok(Json(IncidentPage { incidents, next_cursor }))
}

/// Open an incident by hand.
#[utoipa::path(post, path = "/v1/incidents", tag = "incidents", request_body = NewIncidentBody,
    responses((status = 201, body = Incident), (status = 400, body = super::error::ErrorBody)))]
pub async fn open_incident(
    State(manager): Manager,
    JsonBody(body): JsonBody<NewIncidentBody>,
) -> Result<(StatusCode, Json<Incident>), ApiError> {
    let request = NewIncident {
        title: body.title,
        description: body.description,
        severity: body.severity,
        category: body.category,
        source: body.source,
        labels: body.labels,
    };
    Ok((StatusCode::CREATED, Json(manager.open_incident(request).await?)))
}

/// One incident.
#[utoipa::path(get, path = "/v1/incidents/{id}", tag = "incidents", params(("id" = String, Path, description = "Incident id (a UUID)")),
    responses((status = 200, body = Incident), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_incident(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
) -> Result<Json<Incident>, ApiError> {
    Ok(Json(manager.get(id).await?))
}

/// Assign (or reassign, or hand over) to a person and optionally a team.
#[utoipa::path(post, path = "/v1/incidents/{id}/assign", tag = "lifecycle", params(("id" = String, Path, description = "Incident id (a UUID)")), request_body = AssignBody,
    responses((status = 200, body = Incident), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn assign(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    JsonBody(body): JsonBody<AssignBody>,
) -> Result<Json<Incident>, ApiError> {
    let action = Action::assign(body.assignee, body.team)?;
    Ok(Json(manager.act(id, action, body.actor).await?))
}

/// Acknowledge: someone is on it.
#[utoipa::path(post, path = "/v1/incidents/{id}/acknowledge", tag = "lifecycle", params(("id" = String, Path, description = "Incident id (a UUID)")), request_body = ActorBody,
    responses((status = 200, body = Incident), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn acknowledge(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    OptionalJson(body): OptionalJson<ActorBody>,
) -> Result<Json<Incident>, ApiError> {
    Ok(Json(manager.act(id, Action::Acknowledge, body.actor).await?))
}

/// Start work (from ACKNOWLEDGED).
#[utoipa::path(post, path = "/v1/incidents/{id}/start", tag = "lifecycle", params(("id" = String, Path, description = "Incident id (a UUID)")), request_body = ActorBody,
    responses((status = 200, body = Incident), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn start(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    OptionalJson(body): OptionalJson<ActorBody>,
) -> Result<Json<Incident>, ApiError> {
    Ok(Json(manager.act(id, Action::Start, body.actor).await?))
}

/// Resolve, with an optional note.
#[utoipa::path(post, path = "/v1/incidents/{id}/resolve", tag = "lifecycle", params(("id" = String, Path, description = "Incident id (a UUID)")), request_body = ResolveBody,
    responses((status = 200, body = Incident), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn resolve(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    OptionalJson(body): OptionalJson<ResolveBody>,
) -> Result<Json<Incident>, ApiError> {
    let action = Action::resolve(body.note)?;
    Ok(Json(manager.act(id, action, body.actor).await?))
}

/// Change the severity and/or category of an open incident.
#[utoipa::path(post, path = "/v1/incidents/{id}/reclassify", tag = "lifecycle", params(("id" = String, Path, description = "Incident id (a UUID)")), request_body = ReclassifyBody,
    responses((status = 200, body = Incident), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn reclassify(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    JsonBody(body): JsonBody<ReclassifyBody>,
) -> Result<Json<Incident>, ApiError> {
    let action = Action::reclassify(body.severity, body.category)?;
    Ok(Json(manager.act(id, action, body.actor).await?))
}

/// Add a comment to the timeline.
#[utoipa::path(post, path = "/v1/incidents/{id}/comments", tag = "incidents", params(("id" = String, Path, description = "Incident id (a UUID)")), request_body = CommentBody,
    responses((status = 201, body = TimelineEntry), (status = 404, body = super::error::ErrorBody)))]
pub async fn add_comment(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    JsonBody(body): JsonBody<CommentBody>,
) -> Result<(StatusCode, Json<TimelineEntry>), ApiError> {
    let entry = manager.comment(id, body.author, body.body).await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

/// The comments of an incident, oldest first.
#[utoipa::path(get, path = "/v1/incidents/{id}/comments", tag = "incidents", params(("id" = String, Path, description = "Incident id (a UUID)")),
    responses((status = 200, body = Timeline), (status = 404, body = super::error::ErrorBody)))]
pub async fn list_comments(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
) -> Result<Json<Timeline>, ApiError> {
    let mut entries = manager.timeline(id).await?;
    entries.retain(|entry| entry.kind == TimelineKind::Comment);
    Ok(Json(Timeline { entries }))
}

/// Every change to the incident, oldest first.
#[utoipa::path(get, path = "/v1/incidents/{id}/timeline", tag = "incidents", params(("id" = String, Path, description = "Incident id (a UUID)")),
    responses((status = 200, body = Timeline), (status = 404, body = super::error::ErrorBody)))]
pub async fn timeline(State(manager): Manager, IncidentIdPath(id): IncidentIdPath) -> Result<Json<Timeline>, ApiError> {
    Ok(Json(Timeline {
        entries: manager.timeline(id).await?,
    }))
}
