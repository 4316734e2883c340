//! Grouped notifications on PostgreSQL (a route's `group_wait`). Replicas open incidents
//! of one route at once, so the route's row decides: an upsert that replaces the route's
//! group only when it has closed opens a new one (and its jobs are written), under the
//! row's lock; otherwise the incident joins the group that is open.

use chrono::{DateTime, Utc};
use lim_domain::reactions::GroupRequest;
use lim_domain::{IncidentId, JobKind};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::jobs;
use super::row_to_incident;
use crate::GroupMembers;

pub(super) async fn join(
    tx: &mut PgConnection,
    group: &GroupRequest,
    incident: IncidentId,
    now: DateTime<Utc>,
    wrote: &mut Vec<JobKind>,
) -> Result<(), sqlx::Error> {
    let window = &group.window;
    let opened: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO notify_groups (route, group_id, opened_at, closes_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (route) DO UPDATE SET group_id = EXCLUDED.group_id, opened_at = EXCLUDED.opened_at, \
         closes_at = EXCLUDED.closes_at WHERE notify_groups.closes_at <= $5 RETURNING group_id",
    )
    .bind(&window.route)
    .bind(window.id)
    .bind(window.from)
    .bind(window.to)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let group_id = match opened {
        Some(id) => {
            jobs::write_jobs(tx, None, &group.jobs, None, now).await?;
            wrote.extend(group.jobs.iter().map(|job| job.payload.kind()));
            id
        }
        // The conflict locked the route's row: its group is the open one.
        None => {
            sqlx::query_scalar("SELECT group_id FROM notify_groups WHERE route = $1")
                .bind(&window.route)
                .fetch_one(&mut *tx)
                .await?
        }
    };
    sqlx::query("INSERT INTO notify_group_members (group_id, incident_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(group_id)
        .bind(incident.0)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub(super) async fn members(pool: &PgPool, group: Uuid, limit: u32) -> Result<GroupMembers, sqlx::Error> {
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM notify_group_members WHERE group_id = $1")
        .bind(group)
        .fetch_one(pool)
        .await?;
    let rows = sqlx::query(concat!(
        "SELECT ",
        incident_columns!(),
        " FROM notify_group_members JOIN incidents ON incidents.id = notify_group_members.incident_id \
         WHERE notify_group_members.group_id = $1 ORDER BY notify_group_members.incident_id LIMIT $2"
    ))
    .bind(group)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(GroupMembers {
        incidents: rows.iter().map(row_to_incident).collect::<Result<_, _>>()?,
        total: total.max(0) as u64,
    })
}
