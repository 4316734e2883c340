//! On-call schedules over HTTP (DESIGN §7): who is on call at a moment, and the shifts of
//! a window. Times are answered in the offset the schedule's `start` is written in.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use lim_domain::ErrorKind;
use lim_domain::oncall::{Schedule, Shift};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::ApiQuery;
use super::silences::time_field;
use crate::incidents::IncidentManager;

type Manager = State<Arc<IncidentManager>>;

/// Who is on call from when to when; `person`, `from` and `to` are null when nobody is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OnCall {
    pub schedule: String,
    pub person: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub from: Option<DateTime<FixedOffset>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub to: Option<DateTime<FixedOffset>>,
}

impl OnCall {
    fn of(schedule: &str, shift: Option<Shift>) -> OnCall {
        OnCall {
            schedule: schedule.to_owned(),
            person: shift.as_ref().map(|shift| shift.person.clone()),
            from: shift.as_ref().map(|shift| shift.from),
            to: shift.map(|shift| shift.to),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ShiftList {
    pub schedule: String,
    /// In order; each shift whole, also where it reaches beyond the window. At most 1,000.
    pub shifts: Vec<OnCall>,
    /// When the window holds more shifts: pass as `from` (with the same `to`) for the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_from: Option<DateTime<Utc>>,
}

/// A schedule as configured, with who is on call now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub name: String,
    /// `daily`, `weekly`, or a length such as `12h`.
    pub rotation: String,
    pub participants: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub start: DateTime<FixedOffset>,
    pub oncall: OnCall,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnCallParams {
    at: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftParams {
    from: Option<String>,
    to: Option<String>,
}

/// The `{name}` of a schedule route.
pub struct ScheduleName(pub String);

/// The longest schedule name read (a configuration key, never this long in practice).
const MAX_NAME_CHARS: usize = 256;

impl<S: Send + Sync> FromRequestParts<S> for ScheduleName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(ErrorKind::InvalidField, format!("name: {}", rejection.body_text())))?;
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(ApiError::new(
                ErrorKind::InvalidField,
                format!("name: longer than {MAX_NAME_CHARS} characters"),
            ));
        }
        Ok(ScheduleName(name))
    }
}

/// The configured on-call schedules, with who is on call on each now.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses((status = 200, description = "Every schedule", body = ScheduleList)))]
pub async fn list_schedules(State(manager): Manager) -> Json<ScheduleList> {
    let now = manager.now();
    let schedules = manager
        .schedules()
        .into_iter()
        .map(|schedule: Schedule| ScheduleView {
            oncall: OnCall::of(schedule.name(), schedule.oncall(now)),
            name: schedule.name().to_owned(),
            rotation: schedule.rotation().to_string(),
            participants: schedule.participants().to_vec(),
            start: schedule.start(),
        })
        .collect();
    Json(ScheduleList { schedules })
}

/// Who is on call at `at` (default now).
#[utoipa::path(get, path = "/v1/schedules/{name}/oncall", tag = "schedules",
    responses((status = 200, description = "Who is on call, from when to when", body = OnCall)))]
pub async fn oncall(
    State(manager): Manager,
    ScheduleName(name): ScheduleName,
    ApiQuery(params): ApiQuery<OnCallParams>,
) -> Result<Json<OnCall>, ApiError> {
    let at = time_field(params.at, "at")?;
    let (schedule, shift) = manager.oncall(&name, at)?;
    Ok(Json(OnCall::of(schedule.name(), shift)))
}

/// The shifts that overlap `from` to `to` (a week from `from`, a week up to `to`, or the
/// coming week when neither is given), 1,000 at most: `next_from` says where the rest
/// starts.
#[utoipa::path(get, path = "/v1/schedules/{name}/shifts", tag = "schedules",
    responses((status = 200, description = "The shifts of the window, in order", body = ShiftList)))]
pub async fn shifts(
    State(manager): Manager,
    ScheduleName(name): ScheduleName,
    ApiQuery(params): ApiQuery<ShiftParams>,
) -> Result<Json<ShiftList>, ApiError> {
    let week = TimeDelta::days(7);
    let (from, to) = match (time_field(params.from, "from")?, time_field(params.to, "to")?) {
        (Some(from), Some(to)) => (from, to),
        (Some(from), None) => (from, from.checked_add_signed(week).unwrap_or(DateTime::<Utc>::MAX_UTC)),
        (None, Some(to)) => (to.checked_sub_signed(week).unwrap_or(DateTime::<Utc>::MIN_UTC), to),
        (None, None) => {
            let now = manager.now();
            (now, now + week)
        }
    };
    let (shifts, next_from) = manager.shifts(&name, from, to)?;
    Ok(Json(ShiftList {
        shifts: shifts.into_iter().map(|shift| OnCall::of(&name, Some(shift))).collect(),
        schedule: name.clone(),
        next_from,
    }))
}
