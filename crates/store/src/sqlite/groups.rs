//! Grouped notifications on SQLite (a route's `group_wait`): each route has its latest
//! group, open until it closes; an incident the route opens joins the open group, or opens
//! a new one whose jobs tell of every incident that joins it before it closes. The writer
//! runs it, so nothing comes between the look-up and the write.

use lim_domain::jobs::GroupWindow;
use uuid::Uuid;

use super::jobs::PreparedJob;
use super::*;

/// Puts `incident` in its route's open group; when none is open, opens `window` and
/// answers its `jobs`, to be written with the incident.
pub(super) fn join(
    connection: &Connection,
    window: &GroupWindow,
    jobs: Vec<PreparedJob>,
    incident: IncidentId,
    now: DateTime<Utc>,
) -> Result<Option<Vec<PreparedJob>>, StoreError> {
    let open: Option<[u8; 16]> = prepare(
        connection,
        "SELECT group_id FROM notify_groups WHERE route = ?1 AND closes_at > ?2",
    )?
    .query_row(params![window.route, now.timestamp_micros()], |row| row.get(0))
    .optional()
    .map_err(internal)?;
    let (group, opened) = match open {
        Some(group) => (group, None),
        None => {
            prepare(
                connection,
                "INSERT OR REPLACE INTO notify_groups (route, group_id, opened_at, closes_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                window.route,
                window.id.as_bytes(),
                window.from.timestamp_micros(),
                window.to.timestamp_micros()
            ])
            .map_err(internal)?;
            (*window.id.as_bytes(), Some(jobs))
        }
    };
    prepare(
        connection,
        "INSERT OR IGNORE INTO notify_group_members (group_id, incident_id) VALUES (?1, ?2)",
    )?
    .execute(params![group, id_bytes(incident)])
    .map_err(internal)?;
    Ok(opened)
}

pub(super) fn members(connection: &Connection, group: Uuid, limit: u32) -> Result<GroupMembers, StoreError> {
    let total: i64 = prepare(
        connection,
        "SELECT count(*) FROM notify_group_members WHERE group_id = ?1",
    )?
    .query_row([group.as_bytes()], |row| row.get(0))
    .map_err(internal)?;
    const SELECT: &str = concat!(
        "SELECT ",
        incident_columns!(),
        " FROM notify_group_members JOIN incidents ON incidents.id = notify_group_members.incident_id \
         WHERE notify_group_members.group_id = ?1 ORDER BY notify_group_members.incident_id LIMIT ?2"
    );
    let incidents = prepare(connection, SELECT)?
        .query_map(params![group.as_bytes(), limit], row_to_incident)
        .map_err(internal)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(internal)?;
    Ok(GroupMembers {
        incidents,
        total: total.max(0) as u64,
    })
}
