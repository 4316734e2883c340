//! What the writer runs: events prepared on the async threads, the statements of an
//! ingest, and the writes every write job shares (incidents and their timeline chains).

use lim_domain::jobs::GroupWindow;
use lim_domain::triage::Classification;

use super::*;
use crate::chains::JobChains;
use jobs::PreparedJob;

/// An event ready for the writer: everything that needs no database (the fingerprint
/// key, and for a firing event the incident it would open) is done beforehand.
#[allow(
    clippy::large_enum_variant,
    reason = "lives only in one request's vector; boxing would cost an allocation per event"
)]
pub(super) enum PreparedEvent {
    Firing { event: Event, opens: NewIncident },
    Resolved { event: Event, fingerprint_key: [u8; 16] },
}

/// An incident to insert as routing left it, with its dedup key, labels, timeline
/// entries and jobs ready.
pub(super) struct NewIncident {
    pub(super) incident: Incident,
    fingerprint_key: [u8; 16],
    labels: String,
    /// The classification as its column holds it ([`Classification::to_column`]), made
    /// off the writer.
    classification: Option<String>,
    pub(super) entries: Vec<TimelineEntry>,
    pub(super) jobs: Vec<PreparedJob>,
    /// The route's grouped notification the incident belongs in, with the jobs that tell
    /// of it when the incident opens the group.
    pub(super) group: Option<(GroupWindow, Vec<PreparedJob>)>,
}

impl NewIncident {
    pub(super) fn new(opening: Opening) -> Result<Self, StoreError> {
        let labels =
            serde_json::to_string(&opening.incident.labels).map_err(|error| StoreError::Internal(error.to_string()))?;
        let group = opening.group.map(|group| (group.window, PreparedJob::all(&group.jobs)));
        let classification = opening.incident.classification.as_ref().map(Classification::to_column);
        Ok(NewIncident {
            classification,
            fingerprint_key: fingerprint_key(&opening.incident.fingerprint),
            entries: opening.entries,
            jobs: PreparedJob::all(&opening.jobs),
            labels,
            incident: opening.incident,
            group,
        })
    }
}

impl PreparedEvent {
    pub(super) fn new(event: Event, now: DateTime<Utc>, reactions: &Reactions) -> Result<Self, StoreError> {
        if event.status == EventStatus::Resolved {
            let fingerprint_key = fingerprint_key(&event.fingerprint);
            return Ok(PreparedEvent::Resolved { event, fingerprint_key });
        }
        let opening = reactions.open(Incident::open(IncidentId::generate(), &event, now), now);
        let opens = NewIncident::new(opening)?;
        Ok(PreparedEvent::Firing { event, opens })
    }
}

const SELECT_OPEN_COUNT: &str = "SELECT id, occurrence_count, last_entry, entry_count, severity, category, last_seen \
     FROM incidents WHERE fingerprint_key = ?1 AND state <> 'RESOLVED'";
const COUNT_OCCURRENCE: &str = "UPDATE incidents SET occurrence_count = occurrence_count + 1, \
     last_seen = max(last_seen, ?2), updated_at = ?3, last_entry = ?4, entry_count = ?5 WHERE id = ?1";
/// Separate from `COUNT_OCCURRENCE`, which leaves the indexed severity alone.
const COUNT_OCCURRENCE_RAISING: &str = "UPDATE incidents SET occurrence_count = occurrence_count + 1, \
     last_seen = max(last_seen, ?2), updated_at = ?3, last_entry = ?4, entry_count = ?5, severity = ?6 WHERE id = ?1";
pub(super) const INSERT_INCIDENT: &str = "INSERT INTO incidents (id, title, description, severity, category, source, state, \
     fingerprint, fingerprint_key, labels, occurrence_count, first_seen, last_seen, created_at, updated_at, assignee, team, \
     route, last_entry, entry_count, job_chains, escalation_policy, escalation_level, escalation_due_at, classification) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, \
     ?25)";
pub(super) const UPDATE_INCIDENT: &str = "UPDATE incidents SET state = ?2, assignee = ?3, team = ?4, updated_at = ?5, \
     acknowledged_at = ?6, resolved_at = ?7, resolution_note = ?8, severity = ?9, category = ?10, last_entry = ?11, \
     entry_count = ?12, job_chains = ?13, escalation_level = ?14, escalation_due_at = ?15 WHERE id = ?1";
pub(super) const INSERT_ENTRY: &str = "INSERT INTO timeline (seq, incident_id, at, kind, actor, message, previous, n) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
pub(super) const INSERT_MARK: &str = "INSERT INTO timeline_marks (incident_id, n, seq) VALUES (?1, ?2, ?3)";

/// Every this many entries of an incident, one gets a mark (see migration 4).
pub(super) const MARK_EVERY: i64 = 64;

const SELECT_OPEN: &str = concat!(
    "SELECT ",
    incident_columns!(),
    ", last_entry, entry_count, job_chains FROM incidents WHERE fingerprint_key = ?1 AND state <> 'RESOLVED'"
);

/// The statements of an ingest, each taken from the connection's statement cache at
/// its first use in a request rather than once per event (a look-up hashes the SQL text).
pub(super) struct IngestStatements<'c> {
    connection: &'c Connection,
    cached: [Option<CachedStatement<'c>>; IngestSql::COUNT],
    /// The `seq` of the next timeline entry, once read.
    next_seq: Option<i64>,
    /// The number of the next job, once read.
    next_job: Option<i64>,
    /// The jobs the request's changes cause, numbered and linked, written together at its
    /// end.
    jobs: Vec<PreparedJob>,
}

#[derive(Clone, Copy)]
enum IngestSql {
    SelectOpenCount,
    CountOccurrence,
    CountOccurrenceRaising,
    InsertIncident,
    SelectOpen,
    UpdateIncident,
    InsertEntry,
    InsertMark,
}

impl IngestSql {
    const COUNT: usize = 8;

    fn text(self) -> &'static str {
        match self {
            IngestSql::SelectOpenCount => SELECT_OPEN_COUNT,
            IngestSql::CountOccurrence => COUNT_OCCURRENCE,
            IngestSql::CountOccurrenceRaising => COUNT_OCCURRENCE_RAISING,
            IngestSql::InsertIncident => INSERT_INCIDENT,
            IngestSql::SelectOpen => SELECT_OPEN,
            IngestSql::UpdateIncident => UPDATE_INCIDENT,
            IngestSql::InsertEntry => INSERT_ENTRY,
            IngestSql::InsertMark => INSERT_MARK,
        }
    }
}

/// The open incident an event's fingerprint names, as the writer needs it.
struct OpenIncident {
    id: IncidentId,
    occurrence_count: i64,
    last_entry: Option<i64>,
    entry_count: i64,
    severity: Severity,
    category: Category,
    last_seen: i64,
}

impl<'c> IngestStatements<'c> {
    /// Statements for a request of `events` events.
    pub(super) fn new(connection: &'c Connection, events: usize) -> Self {
        IngestStatements {
            connection,
            cached: Default::default(),
            next_seq: None,
            next_job: None,
            jobs: Vec::with_capacity(events),
        }
    }

    /// Writes the jobs the request's events caused, and answers their kinds; the caller
    /// commits after this.
    pub(super) fn finish(self, now: DateTime<Utc>) -> Result<Vec<JobKind>, StoreError> {
        jobs::insert_prepared(self.connection, &self.jobs, now)?;
        Ok(self.jobs.iter().map(|job| job.kind).collect())
    }

    fn take_seq(&mut self) -> Result<i64, StoreError> {
        let seq = match self.next_seq {
            Some(seq) => seq,
            None => next_seq(self.connection)?,
        };
        self.next_seq = Some(seq + 1);
        Ok(seq)
    }

    /// Numbers `jobs` after the request's earlier ones, links them to `chains`, and keeps
    /// them to be written at the request's end.
    fn queue_jobs(&mut self, mut jobs: Vec<PreparedJob>, chains: &mut JobChains) -> Result<(), StoreError> {
        jobs::link(self.connection, &mut jobs, chains, &mut self.next_job)?;
        self.jobs.append(&mut jobs);
        Ok(())
    }

    fn get(&mut self, sql: IngestSql) -> Result<&mut Statement<'c>, StoreError> {
        let slot = &mut self.cached[sql as usize];
        if slot.is_none() {
            *slot = Some(self.connection.prepare_cached(sql.text()).map_err(internal)?);
        }
        Ok(slot.as_mut().expect("prepared above"))
    }

    /// Appends `entry` to the timeline as the incident's entry number `n`, after its
    /// `previous` last entry; the caller makes the incident point to the returned number
    /// (and count `n` entries) in the same transaction.
    fn append(&mut self, entry: &TimelineEntry, previous: Option<i64>, n: i64) -> Result<i64, StoreError> {
        let seq = self.take_seq()?;
        insert_entry(self.get(IngestSql::InsertEntry)?, entry, seq, previous, n)?;
        if n % MARK_EVERY == 0 {
            insert_mark(self.get(IngestSql::InsertMark)?, entry.incident_id, n, seq)?;
        }
        Ok(seq)
    }

    pub(super) fn ingest(
        &mut self,
        prepared: PreparedEvent,
        now: DateTime<Utc>,
        reactions: &Reactions,
    ) -> Result<IngestOutcome, StoreError> {
        let (event, fingerprint_key) = match prepared {
            PreparedEvent::Firing { event, opens } => return self.fire(opens, &event, now),
            PreparedEvent::Resolved { event, fingerprint_key } => (event, fingerprint_key),
        };
        let Some(tracked) = self
            .get(IngestSql::SelectOpen)?
            .query_row([fingerprint_key], row_to_tracked_incident)
            .optional()
            .map_err(internal)?
        else {
            return Ok(IngestOutcome::Ignored);
        };
        // Every open state may be resolved; were one not, this event could not be refused
        // alone without undoing the batch's earlier events, so the whole group rolls back.
        let transition = lifecycle::resolve_by_event(&tracked.incident, &event, now)
            .map_err(|error| StoreError::Internal(format!("incident {}: {error}", tracked.incident.id)))?;
        let chain = tracked.chain;
        let chain = chain.appended(self.append(&transition.entry, chain.last_entry, chain.entry_count + 1)?);
        let mut job_chains = tracked.job_chains()?;
        jobs::stop_escalation(self.connection, &transition, &job_chains, now)?;
        self.queue_jobs(PreparedJob::all(&reactions.after(&transition, now)), &mut job_chains)?;
        update_incident(
            self.get(IngestSql::UpdateIncident)?,
            &transition.after,
            chain,
            job_chains.to_text().as_deref(),
        )?;
        Ok(IngestOutcome::Resolved(Box::new(transition)))
    }

    /// Opens an incident, or counts the event on the open one with its fingerprint
    /// (raising its severity when the event's is higher), or recognises a redelivery.
    fn fire(&mut self, opens: NewIncident, event: &Event, now: DateTime<Utc>) -> Result<IngestOutcome, StoreError> {
        let open = self
            .get(IngestSql::SelectOpenCount)?
            .query_row([opens.fingerprint_key], |row| {
                Ok(OpenIncident {
                    id: id_from(row.get(0)?),
                    occurrence_count: row.get(1)?,
                    last_entry: row.get(2)?,
                    entry_count: row.get(3)?,
                    severity: parse_column(row, 4, "severity")?,
                    category: parse_column(row, 5, "category")?,
                    last_seen: row.get(6)?,
                })
            })
            .optional()
            .map_err(internal)?;
        let Some(open) = open else {
            let mut opens = opens;
            let mut chain = Chain {
                last_entry: None,
                entry_count: 0,
            };
            for entry in &opens.entries {
                chain = chain.appended(self.append(entry, chain.last_entry, chain.entry_count + 1)?);
            }
            let mut chains = JobChains::default();
            self.queue_jobs(std::mem::take(&mut opens.jobs), &mut chains)?;
            insert_incident(
                self.get(IngestSql::InsertIncident)?,
                &opens,
                chain,
                chains.to_text().as_deref(),
            )?;
            if let Some((window, jobs)) = opens.group.take()
                && let Some(jobs) = groups::join(self.connection, &window, jobs, opens.incident.id, now)?
            {
                self.queue_jobs(jobs, &mut JobChains::default())?;
            }
            return Ok(IngestOutcome::Created(Box::new(opens.incident)));
        };
        if event.occurred_at_given && event.occurred_at.timestamp_micros() == open.last_seen {
            return Ok(IngestOutcome::Redelivered {
                incident_id: open.id,
                occurrence_count: open.occurrence_count,
                severity: open.severity,
                category: open.category,
            });
        }
        let occurrence_count = open.occurrence_count + 1;
        let attached = lifecycle::attached_entry(open.id, occurrence_count, event, now);
        let mut entry_count = open.entry_count + 1;
        let mut last_entry = self.append(&attached, open.last_entry, entry_count)?;
        let raised = lifecycle::raised_severity(open.severity, event);
        if let Some(severity) = raised {
            let entry = lifecycle::severity_raised_entry(open.id, open.severity, severity, event, now);
            entry_count += 1;
            last_entry = self.append(&entry, Some(last_entry), entry_count)?;
        }
        let occurred_at = event.occurred_at.timestamp_micros();
        let statement = match raised {
            Some(_) => IngestSql::CountOccurrenceRaising,
            None => IngestSql::CountOccurrence,
        };
        let statement = self.get(statement)?;
        let result = match raised {
            Some(severity) => statement.execute(params![
                id_bytes(open.id),
                occurred_at,
                now.timestamp_micros(),
                last_entry,
                entry_count,
                severity.as_str()
            ]),
            None => statement.execute(params![
                id_bytes(open.id),
                occurred_at,
                now.timestamp_micros(),
                last_entry,
                entry_count
            ]),
        };
        result.map_err(internal)?;
        Ok(IngestOutcome::Deduplicated {
            incident_id: open.id,
            occurrence_count,
            source: event.source,
            severity: raised.unwrap_or(open.severity),
            category: open.category,
            raised_from: raised.map(|_| open.severity),
        })
    }
}

/// Inserts a new incident. The unique index on open fingerprints refuses it when its
/// fingerprint is already open.
///
/// Ingest looks the open incident up first: the one writer runs one statement at a
/// time, so nothing comes between the look-up and the insert. (A manual incident's
/// fingerprint, `manual:<id>`, is never open already.) (One `INSERT … ON CONFLICT
/// … DO UPDATE … RETURNING` would do both, but RETURNING makes SQLite journal every page
/// the statement touches so that it could undo that statement alone.)
pub(super) fn insert_incident(
    statement: &mut Statement<'_>,
    new: &NewIncident,
    chain: Chain,
    job_chains: Option<&str>,
) -> Result<(), StoreError> {
    let incident = &new.incident;
    statement
        .execute(params![
            id_bytes(incident.id),
            incident.title,
            incident.description,
            incident.severity.as_str(),
            incident.category.as_str(),
            incident.source.as_str(),
            incident.state.as_str(),
            incident.fingerprint,
            new.fingerprint_key,
            new.labels,
            incident.occurrence_count,
            incident.first_seen.timestamp_micros(),
            incident.last_seen.timestamp_micros(),
            incident.created_at.timestamp_micros(),
            incident.updated_at.timestamp_micros(),
            incident.assignee,
            incident.team,
            incident.route,
            chain.last_entry,
            chain.entry_count,
            job_chains,
            incident.escalation_policy,
            incident.next_escalation.map(|next| next.level),
            incident.next_escalation.map(|next| next.due_at.timestamp_micros()),
            new.classification,
        ])
        .map_err(|error| match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => {
                StoreError::Internal(format!("fingerprint `{}` is already open", incident.fingerprint))
            }
            _ => internal(error),
        })?;
    Ok(())
}

/// Where an incident's timeline ends: its last entry (none only in a database written by
/// a bug) and how many entries it has.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chain {
    pub(super) last_entry: Option<i64>,
    pub(super) entry_count: i64,
}

impl Chain {
    /// The chain once entry `seq` is appended.
    pub(super) fn appended(self, seq: i64) -> Chain {
        Chain {
            last_entry: Some(seq),
            entry_count: self.entry_count + 1,
        }
    }
}

/// A value of a JSON column (none stays NULL).
pub(super) fn json_text<T: serde::Serialize>(value: Option<&T>) -> Result<Option<String>, StoreError> {
    value
        .map(|value| serde_json::to_string(value).map_err(|error| StoreError::Internal(error.to_string())))
        .transpose()
}

/// Writes what triage decided when a transition changed it (its own statement: most
/// changes leave it alone, and serializing it on the writer for each would cost).
pub(super) fn update_triage(connection: &Connection, transition: &Transition) -> Result<(), StoreError> {
    let (before, after) = (&transition.before, &transition.after);
    if before.classification == after.classification && before.insights == after.insights {
        return Ok(());
    }
    prepare(
        connection,
        "UPDATE incidents SET classification = ?2, insights = ?3 WHERE id = ?1",
    )?
    .execute(params![
        id_bytes(after.id),
        after.classification.as_ref().map(Classification::to_column),
        json_text(after.insights.as_ref())?
    ])
    .map_err(internal)?;
    Ok(())
}

/// Writes the fields an action can change, and where the incident's timeline now ends.
pub(super) fn update_incident(
    statement: &mut Statement<'_>,
    incident: &Incident,
    chain: Chain,
    job_chains: Option<&str>,
) -> Result<(), StoreError> {
    statement
        .execute(params![
            id_bytes(incident.id),
            incident.state.as_str(),
            incident.assignee,
            incident.team,
            incident.updated_at.timestamp_micros(),
            incident.acknowledged_at.map(|at| at.timestamp_micros()),
            incident.resolved_at.map(|at| at.timestamp_micros()),
            incident.resolution_note,
            incident.severity.as_str(),
            incident.category.as_str(),
            chain.last_entry,
            chain.entry_count,
            job_chains,
            incident.next_escalation.map(|next| next.level),
            incident.next_escalation.map(|next| next.due_at.timestamp_micros()),
        ])
        .map_err(internal)?;
    Ok(())
}

/// Appends `entry` as number `seq`, the incident's entry number `n`, pointing back to its
/// incident's `previous` last entry. The caller makes the incident point to `seq` in the
/// same transaction.
pub(super) fn insert_entry(
    statement: &mut Statement<'_>,
    entry: &TimelineEntry,
    seq: i64,
    previous: Option<i64>,
    n: i64,
) -> Result<(), StoreError> {
    statement
        .execute(params![
            seq,
            id_bytes(entry.incident_id),
            entry.at.timestamp_micros(),
            entry.kind.as_str(),
            entry.actor,
            entry.message,
            previous,
            n,
        ])
        .map_err(internal)?;
    Ok(())
}

fn insert_mark(statement: &mut Statement<'_>, incident: IncidentId, n: i64, seq: i64) -> Result<(), StoreError> {
    statement
        .execute(params![id_bytes(incident), n, seq])
        .map_err(internal)?;
    Ok(())
}

/// Appends `entry` to an incident's timeline outside an ingest (statements from the
/// connection's cache); returns where the timeline then ends.
pub(super) fn append_entry(connection: &Connection, entry: &TimelineEntry, chain: Chain) -> Result<Chain, StoreError> {
    let seq = next_seq(connection)?;
    let n = chain.entry_count + 1;
    insert_entry(
        &mut *prepare(connection, INSERT_ENTRY)?,
        entry,
        seq,
        chain.last_entry,
        n,
    )?;
    if n % MARK_EVERY == 0 {
        insert_mark(&mut *prepare(connection, INSERT_MARK)?, entry.incident_id, n, seq)?;
    }
    Ok(chain.appended(seq))
}

/// The number of the next timeline entry. The writer numbers entries itself (it is the
/// only one), so that an incident can point to its new last entry in the statement that
/// changes it, instead of in one more.
pub(super) fn next_seq(connection: &Connection) -> Result<i64, StoreError> {
    prepare(connection, "SELECT coalesce(max(seq), 0) + 1 FROM timeline")?
        .query_row([], |row| row.get(0))
        .map_err(internal)
}

/// An incident with where its timeline ends and its job chains, for the writer.
pub(super) fn select_for_update(connection: &Connection, id: IncidentId) -> Result<Option<Tracked>, StoreError> {
    const SELECT: &str = concat!(
        "SELECT ",
        incident_columns!(),
        ", last_entry, entry_count, job_chains FROM incidents WHERE id = ?1"
    );
    prepare(connection, SELECT)?
        .query_row([id_bytes(id)], row_to_tracked_incident)
        .optional()
        .map_err(internal)
}

/// An incident as the writer changes it: where its timeline ends, and the last job of
/// each of its job chains (as stored).
pub(super) struct Tracked {
    pub(super) incident: Incident,
    pub(super) chain: Chain,
    pub(super) job_chains: Option<String>,
}

impl Tracked {
    /// The incident's job chains, to link its new jobs to.
    pub(super) fn job_chains(&self) -> Result<JobChains, StoreError> {
        JobChains::parse(self.job_chains.as_deref())
    }
}

fn row_to_tracked_incident(row: &Row<'_>) -> rusqlite::Result<Tracked> {
    Ok(Tracked {
        chain: Chain {
            last_entry: row.get(25)?,
            entry_count: row.get(26)?,
        },
        job_chains: row.get(27)?,
        incident: row_to_incident(row)?,
    })
}
