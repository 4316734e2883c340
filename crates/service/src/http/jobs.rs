//! Background jobs over HTTP: list them (the dead ones, say) and retry a dead one.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use lim_domain::text::excerpt;
use lim_domain::{ErrorKind, IncidentId, Job, JobId, JobKind, JobState};
use lim_store::{JobFilter, JobPageRequest};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiQuery, cursor, one_page, page_size};
use crate::incidents::{IncidentManager, parse_list};

#[derive(Debug, Default, Deserialize)]
pub struct JobListParams {
    state: Option<String>,
    kind: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// A job as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: i64,
    pub kind: JobKind,
    pub state: JobState,
    pub incident_id: Option<IncidentId>,
    /// The work the job carries (`type` and its fields).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// When it runs (or ran, or is tried again).
    pub due_at: DateTime<Utc>,
    /// Attempts started.
    pub attempts: u32,
    pub max_attempts: u32,
    /// Why the last failed attempt failed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        JobView {
            id: job.id.0,
            kind: job.kind,
            state: job.state,
            incident_id: job.incident_id,
            payload: serde_json::to_value(&job.payload).unwrap_or_default(),
            due_at: job.due_at,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            last_error: job.last_error,
            created_at: job.created_at,
            updated_at: job.updated_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The `{id}` of a job route: a positive number.
pub struct JobIdPath(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(ErrorKind::InvalidField, format!("id: {}", rejection.body_text())))?;
        parse_job_id(&text).map(JobIdPath).ok_or_else(|| {
            ApiError::new(
                ErrorKind::InvalidField,
                format!("id: `{}` is not a job id", excerpt(&text)),
            )
        })
    }
}

/// A job id as written in a path or cursor: digits, no sign, no leading zero.
fn parse_job_id(text: &str) -> Option<JobId> {
    let valid = !text.is_empty()
        && text.len() <= 18
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && !text.starts_with('0');
    valid.then(|| text.parse().ok().map(JobId)).flatten()
}

/// Jobs, newest first, by state and kind.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    responses((status = 200, description = "A page of jobs, newest first", body = JobPage)))]
pub async fn list_jobs(
    State(manager): State<Arc<IncidentManager>>,
    ApiQuery(params): ApiQuery<JobListParams>,
) -> Result<Json<JobPage>, ApiError> {
    let filter = JobFilter {
        states: parse_list(params.state.as_deref(), "state")?,
        kinds: parse_list(params.kind.as_deref(), "kind")?,
    };
    let limit = page_size(params.limit)?;
    let before = cursor(params.cursor.as_deref(), parse_job_id)?;
    let jobs = manager
        .jobs(
            &filter,
            JobPageRequest {
                limit: limit + 1,
                before,
            },
        )
        .await?;
    let (jobs, next_cursor) = one_page(jobs, limit, |job| job.id.to_string());
    Ok(Json(JobPage {
        jobs: jobs.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    responses((status = 200, description = "The job", body = JobView)))]
pub async fn get_job(
    State(manager): State<Arc<IncidentManager>>,
    JobIdPath(id): JobIdPath,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(manager.job(id).await?.into()))
}

/// Queue a dead job again, due now, with its attempts reset.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    responses((status = 200, description = "Queued again", body = JobView)))]
pub async fn retry_job(
    State(manager): State<Arc<IncidentManager>>,
    JobIdPath(id): JobIdPath,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(manager.retry_job(id).await?.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_is_a_plain_positive_number() {
        assert_eq!(parse_job_id("42"), Some(JobId(42)));
        for text in ["", "0", "042", "-1", "+1", "1.0", "x", "1234567890123456789"] {
            assert_eq!(parse_job_id(text), None, "{text}");
        }
    }
}
