//! Incident routes: list, show, open by hand, lifecycle actions, comments, timeline.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lim_domain::{Action, EntryCursor, EntryPage, EntryPageRequest, Incident, IncidentId, PageRequest, TimelineEntry};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiQuery, IncidentIdPath, JsonBody, OptionalJson, cursor, one_page, page_size};
use crate::incidents::{IncidentManager, NewIncident, incident_filter};

type Manager = State<Arc<IncidentManager>>;

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    /// Comma-separated states, e.g. `NEW,ASSIGNED`.
    state: Option<String>,
    /// Comma-separated severities, e.g. `P0,P1`.
    severity: Option<String>,
    /// Comma-separated sources.
    source: Option<String>,
    /// Comma-separated categories.
    category: Option<String>,
    /// Page size, 1 to 500 (default 100).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of a timeline or of comments.
#[derive(Debug, Default, Deserialize)]
pub struct EntryParams {
    /// Page size, 1 to 500 (default 100).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentPage {
    pub incidents: Vec<Incident>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    /// Oldest first.
    pub entries: Vec<TimelineEntry>,
    /// Pass as `cursor` for the next (newer) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl From<EntryPage> for Timeline {
    fn from(page: EntryPage) -> Self {
        Timeline {
            entries: page.entries,
            next_cursor: page.next.map(|cursor| cursor.0.to_string()),
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIncidentBody {
    title: Option<String>,
    description: Option<String>,
    /// P0..P4 (or critical/high/medium/low/info). Default P2.
    severity: Option<String>,
    category: Option<String>,
    /// Default `manual`.
    source: Option<String>,
    #[serde(default, deserialize_with = "lim_domain::event::bounded_labels")]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    assignee: Option<String>,
    team: Option<String>,
    actor: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorBody {
    /// Who acts; default `api`.
    actor: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    note: Option<String>,
    actor: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReclassifyBody {
    /// P0..P4 (or critical/high/medium/low/info).
    severity: Option<String>,
    category: Option<String>,
    actor: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    author: Option<String>,
    body: Option<String>,
}

/// The page of entries `params` asks for.
fn entry_page(params: EntryParams) -> Result<EntryPageRequest, ApiError> {
    let limit = page_size(params.limit)?;
    let after = cursor(params.cursor.as_deref(), |cursor| {
        cursor.parse::<i64>().ok().filter(|seq| *seq > 0).map(EntryCursor)
    })?;
    Ok(EntryPageRequest { limit, after })
}

/// List incidents, newest first, with filters and cursor pagination.
#[utoipa::path(get, path = "/v1/incidents", tag = "incidents",
    responses((status = 200, description = "A page of incidents, newest first", body = IncidentPage)))]
pub async fn list_incidents(
    State(manager): Manager,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<IncidentPage>, ApiError> {
    let filter = incident_filter(
        params.state.as_deref(),
        params.severity.as_deref(),
        params.source.as_deref(),
        params.category.as_deref(),
    )?;
    let limit = page_size(params.limit)?;
    let before = cursor(params.cursor.as_deref(), |cursor| cursor.parse::<IncidentId>().ok())?;
    let incidents = manager
        .list(
            &filter,
            PageRequest {
                limit: limit + 1,
                before,
            },
        )
        .await?;
    let (incidents, next_cursor) = one_page(incidents, limit, |incident| incident.id.to_string());
    Ok(Json(IncidentPage { incidents, next_cursor }))
}

/// Open an incident by hand.
#[utoipa::path(post, path = "/v1/incidents", tag = "incidents", request_body = NewIncidentBody,
    responses((status = 201, description = "Opened (NEW)", body = Incident)))]
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
#[utoipa::path(get, path = "/v1/incidents/{id}", tag = "incidents",
    responses((status = 200, description = "The incident", body = Incident)))]
pub async fn get_incident(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
) -> Result<Json<Incident>, ApiError> {
    Ok(Json(manager.get(id).await?))
}

/// Assign (or reassign, or hand over) to a person and optionally a team.
#[utoipa::path(post, path = "/v1/incidents/{id}/assign", tag = "lifecycle", request_body = AssignBody,
    responses((status = 200, description = "Assigned (ASSIGNED)", body = Incident)))]
pub async fn assign(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    JsonBody(body): JsonBody<AssignBody>,
) -> Result<Json<Incident>, ApiError> {
    let action = Action::assign(body.assignee, body.team)?;
    Ok(Json(manager.act(id, action, body.actor).await?))
}

/// Acknowledge: someone is on it.
#[utoipa::path(post, path = "/v1/incidents/{id}/acknowledge", tag = "lifecycle", request_body = ActorBody,
    responses((status = 200, description = "Acknowledged (ACKNOWLEDGED)", body = Incident)))]
pub async fn acknowledge(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    OptionalJson(body): OptionalJson<ActorBody>,
) -> Result<Json<Incident>, ApiError> {
    Ok(Json(manager.act(id, Action::Acknowledge, body.actor).await?))
}

/// Start work (from ACKNOWLEDGED).
#[utoipa::path(post, path = "/v1/incidents/{id}/start", tag = "lifecycle", request_body = ActorBody,
    responses((status = 200, description = "Work started (IN_PROGRESS)", body = Incident)))]
pub async fn start(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    OptionalJson(body): OptionalJson<ActorBody>,
) -> Result<Json<Incident>, ApiError> {
    Ok(Json(manager.act(id, Action::Start, body.actor).await?))
}

/// Resolve, with an optional note.
#[utoipa::path(post, path = "/v1/incidents/{id}/resolve", tag = "lifecycle", request_body = ResolveBody,
    responses((status = 200, description = "Resolved (RESOLVED)", body = Incident)))]
pub async fn resolve(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    OptionalJson(body): OptionalJson<ResolveBody>,
) -> Result<Json<Incident>, ApiError> {
    let action = Action::resolve(body.note)?;
    Ok(Json(manager.act(id, action, body.actor).await?))
}

/// Change the severity and/or category of an open incident.
#[utoipa::path(post, path = "/v1/incidents/{id}/reclassify", tag = "lifecycle", request_body = ReclassifyBody,
    responses((status = 200, description = "Reclassified; the state is unchanged", body = Incident)))]
pub async fn reclassify(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    JsonBody(body): JsonBody<ReclassifyBody>,
) -> Result<Json<Incident>, ApiError> {
    let action = Action::reclassify(body.severity, body.category)?;
    Ok(Json(manager.act(id, action, body.actor).await?))
}

/// Add a comment to the timeline.
#[utoipa::path(post, path = "/v1/incidents/{id}/comments", tag = "incidents", request_body = CommentBody,
    responses((status = 201, description = "Added to the timeline", body = TimelineEntry)))]
pub async fn add_comment(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    JsonBody(body): JsonBody<CommentBody>,
) -> Result<(StatusCode, Json<TimelineEntry>), ApiError> {
    let entry = manager.comment(id, body.author, body.body).await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

/// The comments of an incident, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/incidents/{id}/comments", tag = "incidents",
    responses((status = 200, description = "A page of comments, oldest first", body = Timeline)))]
pub async fn list_comments(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    ApiQuery(params): ApiQuery<EntryParams>,
) -> Result<Json<Timeline>, ApiError> {
    let page = entry_page(params)?;
    Ok(Json(manager.comments(id, page).await?.into()))
}

/// Every change to the incident, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/incidents/{id}/timeline", tag = "incidents",
    responses((status = 200, description = "A page of the timeline, oldest first", body = Timeline)))]
pub async fn timeline(
    State(manager): Manager,
    IncidentIdPath(id): IncidentIdPath,
    ApiQuery(params): ApiQuery<EntryParams>,
) -> Result<Json<Timeline>, ApiError> {
    let page = entry_page(params)?;
    Ok(Json(manager.timeline(id, page).await?.into()))
}
