//! Ingest on PostgreSQL: set-based statements, and commits shared by concurrent requests.
//!
//! - **Shared commits.** Requests queue for a few writer tasks; a writer takes what is
//!   waiting (up to [`MAX_MERGED_EVENTS`] events), passing over each request that shares
//!   a fingerprint with a running transaction until that one sends its commit, and, while
//!   another transaction runs, gathering until it holds enough events (see [`gather`]);
//!   it stores what it took in one transaction. So 64 clients sending one event each pay
//!   for a few commits, not 64; transactions over different incidents run side by side;
//!   and the requests of an alert storm that touch the same open incidents are stored
//!   together once the transaction holding them ends, rather than in several that wait
//!   for each other's row locks. Should the server
//!   refuse a merged transaction for any reason but a lost race, each of its requests is
//!   run again alone, so that one request's failure is never another's: a batch stays all
//!   or nothing. Should the link fail instead (the commit's outcome unknown), every request
//!   is answered unavailable and none runs again, which could store it twice.
//! - **Set-based statements.** The events of a transaction are taken in rounds: round `k`
//!   holds the `k`-th run of each fingerprint, a run being consecutive firing events
//!   (counted by one candidate) or one other event (so a round names a fingerprint once,
//!   as a multi-row upsert requires, and the events of one fingerprint keep their order).
//!   A round's firing events whose fingerprint the process lately saw open are first one
//!   `UPDATE … FROM unnest(…) RETURNING` of their open incidents (see [`OpenFingerprints`]);
//!   the rest are one `INSERT … SELECT FROM unnest(…) ON CONFLICT … DO
//!   UPDATE … RETURNING` (two when some name their time: a redelivery is recognised in
//!   the statement itself), its timeline entries one `INSERT … SELECT FROM unnest(…)`,
//!   its new incidents' jobs one `INSERT`. A round's resolving events lock their open
//!   incidents with one `SELECT … FOR UPDATE`, resolve them with one `UPDATE … FROM
//!   unnest(…)`, and write their entries and jobs with one statement each.
//! - **Lock order.** Each round's rows are sorted by fingerprint, so concurrent
//!   transactions lock the open incidents they share in one order; a deadlock that a
//!   resolution could still cause is detected by PostgreSQL and the transaction run again.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError};

use chrono::{DateTime, Utc};
use lim_domain::triage::Classification;
use lim_domain::{
    Event, EventStatus, Incident, IncidentId, IngestOutcome, JobKind, Opening, Reactions, Severity, TimelineEntry,
    lifecycle,
};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{
    LOCK_OPEN_BY_FINGERPRINTS, groups, is_concurrent_conflict, jobs, json_text, labels_json, parse_column,
    row_to_incident,
};
use crate::StoreError;
use crate::chains::JobChains;

/// The most events one shared transaction takes (a request is never split: one batch of
/// 1,000 events is one transaction, whatever this says).
const MAX_MERGED_EVENTS: usize = 300;
/// How a fingerprint's key is made (see [`Pending::key`]): fast, and the same in every
/// writer; a collision costs a transaction's wait or a hint's wasted lookup, never a
/// wrong answer.
const FINGERPRINT_KEYS: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x6c69_6d5f_6b65_7973);
/// Requests that may wait for a writer (the events they hold are bounded by
/// `database.max_queued_events`).
const QUEUE: usize = 4096;

/// An event ready for the store, with the reactions its request came with.
struct Pending {
    event: Event,
    now: DateTime<Utc>,
    reactions: Arc<Reactions>,
    /// The incident a firing event would open, routed: made on the caller's task, unless
    /// the event's fingerprint was lately seen open (then it most likely attaches, and
    /// the incident is made by the writer only should it not).
    opening: OnceLock<Opening>,
    /// The fingerprint's hash, by which writers tell which incidents a transaction touches.
    key: u64,
}

impl Pending {
    /// A request's events, each firing one whose fingerprint was not lately seen open with
    /// the incident it would open.
    fn all(
        events: Vec<Event>,
        now: DateTime<Utc>,
        reactions: &Arc<Reactions>,
        open: &OpenFingerprints,
    ) -> Vec<Pending> {
        let pending: Vec<Pending> = events
            .into_iter()
            .map(|event| Pending {
                key: FINGERPRINT_KEYS.hash_one(event.fingerprint.as_str()),
                event,
                now,
                reactions: Arc::clone(reactions),
                opening: OnceLock::new(),
            })
            .collect();
        let known = open.known(pending.iter().map(|pending| pending.key));
        for (pending, known) in pending.iter().zip(known) {
            if pending.firing() && !known {
                pending.opening();
            }
        }
        pending
    }

    fn firing(&self) -> bool {
        self.event.status == EventStatus::Firing
    }

    /// The incident a firing event would open.
    fn opening(&self) -> &Opening {
        self.opening.get_or_init(|| {
            let incident = Incident::open(IncidentId::generate(), &self.event, self.now);
            self.reactions.open(incident, self.now)
        })
    }
}

/// What one request stored, and the kinds of the jobs its transaction wrote.
type Stored = (Vec<IngestOutcome>, Vec<JobKind>);

struct Request {
    events: Vec<Pending>,
    answer: oneshot::Sender<Result<Stored, StoreError>>,
    /// The request's share of `database.max_queued_events`, held until it is answered,
    /// whether or not its caller still waits.
    _queued: tokio::sync::OwnedSemaphorePermit,
}

/// The writers, stopped when dropped.
pub(super) struct Ingester {
    queue: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    /// One permit per event waiting or being written, as on SQLite: past
    /// `database.max_queued_events`, a request is refused (503) rather than kept waiting.
    permits: Arc<tokio::sync::Semaphore>,
    max_queued_events: u32,
    writers: Vec<JoinHandle<()>>,
}

impl Drop for Ingester {
    fn drop(&mut self) {
        for writer in &self.writers {
            writer.abort();
        }
    }
}

impl Ingester {
    pub(super) fn start(pool: PgPool, writers: usize, max_queued_events: u32) -> Ingester {
        let (queue, incoming) = mpsc::channel(QUEUE);
        let waiting = Arc::new(Mutex::new(Waiting {
            incoming,
            deferred: VecDeque::new(),
            closed: false,
        }));
        let shared = Arc::new(Shared {
            pool,
            writing: Writing::default(),
            open: OpenFingerprints::default(),
        });
        let writers = (0..writers.max(1))
            .map(|_| tokio::spawn(run_writer(Arc::clone(&shared), Arc::clone(&waiting))))
            .collect();
        let max_queued_events = max_queued_events.max(1);
        Ingester {
            queue,
            shared,
            permits: Arc::new(tokio::sync::Semaphore::new(max_queued_events as usize)),
            max_queued_events,
            writers,
        }
    }

    /// Stores the events in one transaction (perhaps shared with other requests). Routing
    /// a new incident needs no database: it is done here, on the caller's task, for each
    /// firing event that will likely open one (see [`Pending::all`]).
    pub(super) async fn ingest(
        &self,
        events: Vec<Event>,
        now: DateTime<Utc>,
        reactions: &Arc<Reactions>,
    ) -> Result<Stored, StoreError> {
        // A request larger than the whole allowance (an Alertmanager group of many alerts)
        // takes all of it: it fits into an empty queue rather than never.
        let weight = u32::try_from(events.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.max_queued_events);
        let queued = Arc::clone(&self.permits).try_acquire_many_owned(weight).map_err(|_| {
            StoreError::Overloaded(format!(
                "the store's write queue is full ({} events waiting); retry shortly",
                self.max_queued_events
            ))
        })?;
        let events = Pending::all(events, now, reactions, &self.shared.open);
        let (answer, answered) = oneshot::channel();
        let closing = || StoreError::Unavailable("the store is closing".into());
        self.queue
            .send(Request {
                events,
                answer,
                _queued: queued,
            })
            .await
            .map_err(|_| closing())?;
        answered.await.map_err(|_| closing())?
    }
}

/// What the writers share.
struct Shared {
    pool: PgPool,
    writing: Writing,
    open: OpenFingerprints,
}

/// How many writers are in a transaction, the fingerprints their transactions hold, and a
/// signal when one ends. A transaction counts until it sends its commit: a transaction
/// begun then waits only for that commit's row locks, and does its own work meanwhile.
#[derive(Default)]
struct Writing {
    busy: AtomicUsize,
    /// Each fingerprint key of the running transactions, with how many of them hold it.
    held: std::sync::Mutex<foldhash::HashMap<u64, u32>>,
    ended: Notify,
}

impl Writing {
    /// Counts `requests` as being written until the returned hold is let go.
    fn start<'a>(&'a self, requests: &[Request]) -> Hold<'a> {
        let keys: Vec<u64> = keys(requests).collect();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        for &key in &keys {
            *held.entry(key).or_default() += 1;
        }
        self.busy.fetch_add(1, Ordering::AcqRel);
        Hold {
            writing: self,
            keys,
            released: AtomicBool::new(false),
        }
    }
}

/// A group of requests counted as being written: let go when its transaction sends its
/// commit (or fails, or ends), once.
struct Hold<'a> {
    writing: &'a Writing,
    keys: Vec<u64>,
    released: AtomicBool,
}

impl Hold<'_> {
    fn release(&self) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut held = self.writing.held.lock().unwrap_or_else(PoisonError::into_inner);
            for key in &self.keys {
                if let Some(count) = held.get_mut(key) {
                    *count -= 1;
                    if *count == 0 {
                        held.remove(key);
                    }
                }
            }
        }
        self.writing.busy.fetch_sub(1, Ordering::AcqRel);
        self.writing.ended.notify_waiters();
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

fn keys(requests: &[Request]) -> impl Iterator<Item = u64> + '_ {
    requests
        .iter()
        .flat_map(|request| request.events.iter().map(|pending| pending.key))
}

/// The fingerprints this process last saw with an open incident (it opened, attached to
/// or redelivered onto one, and saw no resolution since). Their firing events first try
/// a plain `UPDATE` of the open incident, which costs the server far less than the
/// upsert's whole candidate row; one that finds no open incident (another replica
/// resolved it, or the hint is stale) goes on to the upsert, so the hint is never trusted
/// for an answer. At most [`OPEN_FINGERPRINTS`] are kept: past that the set starts again.
#[derive(Default)]
struct OpenFingerprints(std::sync::Mutex<foldhash::HashSet<u64>>);

/// The most fingerprints [`OpenFingerprints`] keeps (8 bytes each, plus the set's own).
const OPEN_FINGERPRINTS: usize = 1 << 18;

impl OpenFingerprints {
    /// For each key, whether it is known open.
    fn known(&self, keys: impl Iterator<Item = u64>) -> Vec<bool> {
        let open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        keys.map(|key| open.contains(&key)).collect()
    }

    /// Learns from a committed transaction's outcomes.
    fn learn(&self, events: &[&Pending], outcomes: &[IngestOutcome]) {
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() > OPEN_FINGERPRINTS {
            open.clear();
        }
        for (pending, outcome) in events.iter().zip(outcomes) {
            match outcome {
                IngestOutcome::Created(_) | IngestOutcome::Deduplicated { .. } | IngestOutcome::Redelivered { .. } => {
                    open.insert(pending.key);
                }
                IngestOutcome::Resolved(_) | IngestOutcome::Ignored => {
                    open.remove(&pending.key);
                }
            }
        }
    }
}

/// The requests no writer has taken yet: those in the queue, and those a writer passed
/// over because a running transaction holds one of their fingerprints (oldest first).
struct Waiting {
    incoming: mpsc::Receiver<Request>,
    deferred: VecDeque<Request>,
    /// The queue is closed (the ingester is gone): only the deferred requests are left.
    closed: bool,
}

async fn run_writer(shared: Arc<Shared>, waiting: Arc<Mutex<Waiting>>) {
    loop {
        let (requests, hold) = {
            let mut waiting = waiting.lock().await;
            let Some(requests) = gather(&mut waiting, &shared.writing).await else {
                return;
            };
            // Held before the queue is let go, so the next writer's gathering sees them.
            let hold = shared.writing.start(&requests);
            (requests, hold)
        };
        let results = write(&shared, &requests, &hold).await;
        drop(hold);
        for (request, result) in requests.into_iter().zip(results) {
            // A caller that has gone away no longer waits for its answer.
            let _ = request.answer.send(result);
        }
    }
}

/// A writer that finds fewer events waiting than this while another writer's transaction
/// runs gathers more until that transaction ends (see [`gather`]).
const GATHER_UNDER: usize = 32;

/// The requests of one transaction (up to [`MAX_MERGED_EVENTS`] events), or none when
/// the queue is closed and nothing waits. A request none of whose fingerprints a running
/// transaction holds is taken, oldest first; one that shares a fingerprint with a running
/// transaction is passed over until that transaction sends its commit (its statements
/// would only wait for that transaction's row locks), and then stored by the next
/// transaction with whatever else waits, so that each incident an alert storm repeats is
/// updated once per transaction rather than once per request, and transactions over
/// other incidents run beside it. Each transaction costs the server the same few
/// statements and a commit whatever its size, so small ones are what makes single events
/// slow: while another writer's transaction runs, a writer holding fewer than
/// [`GATHER_UNDER`] events goes on gathering until a transaction sends its commit. When
/// no transaction runs, it starts at once.
async fn gather(waiting: &mut Waiting, writing: &Writing) -> Option<Vec<Request>> {
    let mut requests = Vec::new();
    let mut taken = 0;
    loop {
        let ended = writing.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        take(waiting, writing, &mut requests, &mut taken);
        if !requests.is_empty() && (writing.busy.load(Ordering::Acquire) == 0 || taken >= GATHER_UNDER) {
            return Some(requests);
        }
        if waiting.closed {
            if requests.is_empty() && waiting.deferred.is_empty() {
                return None;
            }
            ended.await;
            continue;
        }
        tokio::select! {
            () = &mut ended => {}
            next = waiting.incoming.recv() => match next {
                Some(next) => waiting.deferred.push_back(next),
                None => waiting.closed = true,
            },
        }
    }
}

/// Moves into `requests` what waits and conflicts with no running transaction, the
/// deferred requests first, up to [`MAX_MERGED_EVENTS`] events; the rest stay deferred,
/// in their order. A request that shares a fingerprint with an older one left waiting
/// waits too, so that the events of one fingerprint are stored in the order they came.
fn take(waiting: &mut Waiting, writing: &Writing, requests: &mut Vec<Request>, taken: &mut usize) {
    let held = writing.held.lock().unwrap_or_else(PoisonError::into_inner);
    let mut left = foldhash::HashSet::default();
    let mut passed_over = VecDeque::new();
    let mut consider = |request: Request, requests: &mut Vec<Request>, taken: &mut usize| {
        let blocked = |key: &u64| held.contains_key(key) || left.contains(key);
        if *taken < MAX_MERGED_EVENTS && !request.events.iter().any(|event| blocked(&event.key)) {
            *taken += request.events.len();
            requests.push(request);
        } else {
            left.extend(request.events.iter().map(|event| event.key));
            passed_over.push_back(request);
        }
    };
    while let Some(request) = waiting.deferred.pop_front() {
        consider(request, requests, taken);
    }
    while *taken < MAX_MERGED_EVENTS {
        let Ok(next) = waiting.incoming.try_recv() else {
            break;
        };
        consider(next, requests, taken);
    }
    waiting.deferred = passed_over;
}

/// The requests in one transaction, or, should it fail, each in its own.
async fn write(shared: &Shared, requests: &[Request], hold: &Hold<'_>) -> Vec<Result<Stored, StoreError>> {
    let all: Vec<&Pending> = requests.iter().flat_map(|request| &request.events).collect();
    let result = with_retries(shared, &all, Some(hold)).await;
    hold.release();
    match result {
        Ok((outcomes, wrote)) => {
            let mut outcomes = outcomes.into_iter();
            let mut results = Vec::with_capacity(requests.len());
            for (index, request) in requests.iter().enumerate() {
                let own: Vec<IngestOutcome> = outcomes.by_ref().take(request.events.len()).collect();
                // Every caller wakes the workers of the kinds written: a spare wake-up is cheap.
                let wrote = if index == 0 { wrote.clone() } else { Vec::new() };
                results.push(Ok((own, wrote)));
            }
            results
        }
        Err(error) if requests.len() == 1 => vec![Err(error.into())],
        // The shared transaction failed short of its commit (the server refused a statement
        // or the commit, or a row could not be read): nothing of it is stored, and one
        // request may be the cause, so each runs alone.
        Err(error) if refused_by_server(&error) => {
            let mut results = Vec::with_capacity(requests.len());
            for request in requests {
                let events: Vec<&Pending> = request.events.iter().collect();
                results.push(with_retries(shared, &events, None).await.map_err(StoreError::from));
            }
            results
        }
        // The link failed: the commit may or may not have happened, so running the
        // requests again could store them twice, and would wait on the link once per
        // request. Every caller is answered with the failure (a 503: unconfirmed).
        Err(error) => {
            let message = StoreError::from(error).to_string();
            requests
                .iter()
                .map(|_| Err(StoreError::Unavailable(format!("not confirmed as stored: {message}"))))
                .collect()
        }
    }
}

/// True when the transaction surely did not commit: any failure but trouble with the
/// connection (or a garbled exchange), after which the commit may have happened. A
/// statement the server refused, or a row this code could not read, ends the transaction
/// before its commit, which rolls it back.
fn refused_by_server(error: &sqlx::Error) -> bool {
    !super::is_connection_trouble(error) && !matches!(error, sqlx::Error::Protocol(_))
}

/// Lock ordering and the upsert leave no known conflict between transactions; should one
/// still lose a race (deadlock, unique violation), it is run again, up to this many times.
const MAX_ATTEMPTS: u32 = 5;

async fn with_retries(shared: &Shared, events: &[&Pending], hold: Option<&Hold<'_>>) -> Result<Stored, sqlx::Error> {
    let mut attempt = 1;
    loop {
        match ingest_once(shared, events, hold).await {
            Err(error) if is_concurrent_conflict(&error) && attempt < MAX_ATTEMPTS => attempt += 1,
            result => return result,
        }
    }
}

/// Begins an ingest transaction. Its joins are never hash joins: a hash join would lock the
/// rows of an `UPDATE … FROM unnest(…)` in the order it reads the table, while a nested
/// loop over the candidates (sorted by fingerprint) or a merge join locks them in
/// fingerprint order, the order every ingest transaction locks open incidents in, so that
/// concurrent ones wait for each other rather than deadlock.
const BEGIN: &str = "BEGIN; SET LOCAL enable_hashjoin = off";

/// `hold`: let go as the commit is sent.
async fn ingest_once(shared: &Shared, events: &[&Pending], hold: Option<&Hold<'_>>) -> Result<Stored, sqlx::Error> {
    // Stable: the events of one fingerprint keep their order.
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by(|&a, &b| events[a].event.fingerprint.cmp(&events[b].event.fingerprint));
    // Round `k` holds the `k`-th run of each fingerprint: consecutive firing events that
    // name no time form one run (one candidate counting them all, see `open_or_attach`);
    // a resolving event, or one that names its time (a redelivery is told by it), is a
    // run of its own.
    let joins = |pending: &Pending| pending.firing() && !pending.event.occurred_at_given;
    let mut round_of = vec![0_usize; events.len()];
    for pair in order.windows(2) {
        let (before, after) = (events[pair[0]], events[pair[1]]);
        if before.event.fingerprint == after.event.fingerprint {
            round_of[pair[1]] = round_of[pair[0]] + usize::from(!(joins(before) && joins(after)));
        }
    }
    let rounds = round_of.iter().max().map_or(0, |last| last + 1);
    let mut outcomes = vec![IngestOutcome::Ignored; events.len()];
    let mut wrote = Vec::new();
    let mut tx = shared.pool.begin_with(BEGIN).await?;
    for round in 0..rounds {
        let members: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&index| round_of[index] == round)
            .collect();
        let firing: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&index| events[index].firing())
            .collect();
        open_or_attach(&mut tx, events, &firing, &shared.open, &mut outcomes, &mut wrote).await?;
        let resolving: Vec<usize> = members.into_iter().filter(|&index| !events[index].firing()).collect();
        resolve_all(&mut tx, events, &resolving, &mut outcomes, &mut wrote).await?;
    }
    if let Some(hold) = hold {
        hold.release();
    }
    tx.commit().await?;
    shared.open.learn(events, &outcomes);
    Ok((outcomes, wrote))
}

/// A run of firing events of one fingerprint, as the row update that counts them.
struct Repeats<'a> {
    fingerprint: &'a str,
    count: i64,
    /// The latest time one of them occurred at.
    last_seen: DateTime<Utc>,
    /// The last one's time.
    updated_at: DateTime<Utc>,
}

impl<'a> Repeats<'a> {
    fn of(events: &[&'a Pending], run: &[usize]) -> Repeats<'a> {
        let last = events[run[run.len() - 1]];
        Repeats {
            fingerprint: last.event.fingerprint.as_str(),
            count: run.len() as i64,
            last_seen: run
                .iter()
                .map(|&index| events[index].event.occurred_at)
                .max()
                .unwrap_or(last.event.occurred_at),
            updated_at: last.now,
        }
    }
}

/// What the upsert returns of an incident: enough to tell created from attached.
struct Upserted {
    id: IncidentId,
    occurrence_count: i64,
    severity: Severity,
    category: lim_domain::Category,
}

/// One round's firing events (`firing`, sorted by fingerprint), as runs: the events of
/// one fingerprint in a round are consecutive events that name no time (see
/// [`ingest_once`]), stored as one candidate that counts them all. The run's first event
/// opens the incident or attaches to the open one, the rest attach after it, each with
/// its own occurrence number, entry and severity raise, as if they had come one by one.
async fn open_or_attach(
    tx: &mut PgConnection,
    events: &[&Pending],
    firing: &[usize],
    open: &OpenFingerprints,
    outcomes: &mut [IngestOutcome],
    wrote: &mut Vec<JobKind>,
) -> Result<(), sqlx::Error> {
    if firing.is_empty() {
        return Ok(());
    }
    let runs: Vec<&[usize]> = firing
        .chunk_by(|&a, &b| events[a].event.fingerprint == events[b].event.fingerprint)
        .collect();
    let opening = |index: usize| events[index].opening();
    let fingerprint = |position: usize| events[runs[position][0]].event.fingerprint.as_str();
    // Runs whose fingerprint was lately seen open first try to attach to it; no incident
    // is made for those that do. (Asked again, not taken from the caller's task: a
    // transaction committed since may have opened the incident.)
    let known = open.known(runs.iter().map(|run| events[run[0]].key));
    let likely_open: Vec<usize> = (0..runs.len())
        .filter(|&position| known[position] && !events[runs[position][0]].event.occurred_at_given)
        .collect();
    let mut attached = attach(
        tx,
        likely_open.iter().map(|&position| Repeats::of(events, runs[position])),
    )
    .await?;
    let mut stored: HashMap<&str, Upserted> = HashMap::with_capacity(runs.len());
    let mut by_hint = vec![false; runs.len()];
    for position in likely_open {
        if let Some(row) = attached.remove(fingerprint(position)) {
            stored.insert(fingerprint(position), row);
            by_hint[position] = true;
        }
    }
    // The rest, in fingerprint order (the order the upsert locks rows in), as candidates:
    // each with its jobs numbered and linked before the upsert, so that a new incident's
    // row holds its job chains from the start (an attached event's candidate and its
    // numbers are dropped).
    let rest: Vec<usize> = (0..runs.len()).filter(|&position| !by_hint[position]).collect();
    let job_count = rest.iter().map(|&position| opening(runs[position][0]).jobs.len()).sum();
    let ids = jobs::job_ids(tx, job_count).await?;
    let mut next_id = ids.iter().as_slice();
    let mut chains_text: Vec<Option<String>> = vec![None; runs.len()];
    let mut planned: Vec<Vec<jobs::Planned>> = (0..runs.len()).map(|_| Vec::new()).collect();
    for &position in &rest {
        let jobs_of = &opening(runs[position][0]).jobs;
        let (these, others) = next_id.split_at(jobs_of.len());
        next_id = others;
        let mut chains = JobChains::default();
        planned[position] = jobs::plan(jobs_of, these, &mut chains);
        chains_text[position] = chains.to_text();
    }
    // A run of several events is one candidate counting them all, seen last at its last.
    let counted: Vec<Option<Incident>> = (0..runs.len())
        .map(|position| {
            let run = runs[position];
            (run.len() > 1 && !by_hint[position]).then(|| {
                let repeats = Repeats::of(events, run);
                let mut incident = opening(run[0]).incident.clone();
                incident.occurrence_count = repeats.count;
                incident.last_seen = repeats.last_seen;
                incident.updated_at = repeats.updated_at;
                incident
            })
        })
        .collect();
    let candidate = |position: usize| {
        counted[position]
            .as_ref()
            .unwrap_or(&opening(runs[position][0]).incident)
    };

    for given in [false, true] {
        let subset: Vec<usize> = rest
            .iter()
            .copied()
            .filter(|&position| events[runs[position][0]].event.occurred_at_given == given)
            .collect();
        if subset.is_empty() {
            continue;
        }
        let candidates: Vec<(&Incident, Option<&str>)> = subset
            .iter()
            .map(|&position| (candidate(position), chains_text[position].as_deref()))
            .collect();
        for row in upsert(tx, &candidates, given).await? {
            let fingerprint = &events[runs[subset[row.0]][0]].event.fingerprint;
            stored.insert(fingerprint.as_str(), row.1);
        }
    }

    let mut entries: Vec<TimelineEntry> = Vec::new();
    let mut raises: Vec<(Uuid, &'static str)> = Vec::new();
    let mut new_jobs = Vec::new();
    let mut redelivered = Vec::new();
    for (position, run) in runs.iter().enumerate() {
        let head = run[0];
        let Some(row) = stored.get(events[head].event.fingerprint.as_str()) else {
            // Only an event that names its time is left out, and it runs alone.
            redelivered.extend_from_slice(run);
            continue;
        };
        let mut attached = &run[..];
        // The occurrence number of the run's first attached event.
        let mut occurrence = row.occurrence_count - run.len() as i64 + 1;
        let mut severity = row.severity;
        if !by_hint[position] && row.id == opening(head).incident.id {
            let candidate = opening(head);
            entries.extend(candidate.entries.iter().cloned());
            new_jobs.append(&mut planned[position]);
            wrote.extend(candidate.jobs.iter().map(|job| job.payload.kind()));
            outcomes[head] = IngestOutcome::Created(Box::new(candidate.incident.clone()));
            severity = candidate.incident.severity;
            attached = &run[1..];
            occurrence += 1;
        }
        let mut raised_to = None;
        for &index in attached {
            let (event, now) = (&events[index].event, events[index].now);
            entries.push(lifecycle::attached_entry(row.id, occurrence, event, now));
            // The upsert holds the row's lock, so the severity it returned is the current one.
            let raised = lifecycle::raised_severity(severity, event);
            if let Some(to) = raised {
                entries.push(lifecycle::severity_raised_entry(row.id, severity, to, event, now));
                raised_to = Some(to);
            }
            outcomes[index] = IngestOutcome::Deduplicated {
                incident_id: row.id,
                occurrence_count: occurrence,
                source: event.source,
                severity: raised.unwrap_or(severity),
                category: row.category,
                raised_from: raised.map(|_| severity),
            };
            severity = raised.unwrap_or(severity);
            occurrence += 1;
        }
        // One raise per incident in the statement below (an UPDATE … FROM applies one).
        if let Some(to) = raised_to {
            raises.push((row.id.0, to.as_str()));
        }
    }
    if !redelivered.is_empty() {
        let fingerprints: Vec<&str> = redelivered
            .iter()
            .map(|&index| events[index].event.fingerprint.as_str())
            .collect();
        let rows = sqlx::query(
            "SELECT id, fingerprint, occurrence_count, severity, category FROM incidents \
             WHERE fingerprint = ANY($1) AND state <> 'RESOLVED'",
        )
        .bind(&fingerprints)
        .fetch_all(&mut *tx)
        .await?;
        let mut open = HashMap::with_capacity(rows.len());
        for row in &rows {
            let fingerprint: String = row.try_get("fingerprint")?;
            open.insert(fingerprint, upserted(row)?);
        }
        for index in redelivered {
            let row = open
                .get(&events[index].event.fingerprint)
                .ok_or_else(|| sqlx::Error::RowNotFound)?;
            outcomes[index] = IngestOutcome::Redelivered {
                incident_id: row.id,
                occurrence_count: row.occurrence_count,
                severity: row.severity,
                category: row.category,
            };
        }
    }
    jobs::insert_planned(tx, &new_jobs, events[firing[0]].now).await?;
    // New incidents join their route's grouped notification in the order their events came
    // (the round is in fingerprint order; `events` is in arrival order).
    let mut heads: Vec<usize> = runs.iter().map(|run| run[0]).collect();
    heads.sort_unstable();
    for head in heads {
        if let IngestOutcome::Created(incident) = &outcomes[head]
            && let Some(group) = &opening(head).group
        {
            groups::join(tx, group, incident.id, events[head].now, wrote).await?;
        }
    }
    if !raises.is_empty() {
        let (ids, severities): (Vec<Uuid>, Vec<&str>) = raises.into_iter().unzip();
        sqlx::query(
            "UPDATE incidents SET severity = raised.severity \
             FROM unnest($1::uuid[], $2::text[]) AS raised (id, severity) WHERE incidents.id = raised.id",
        )
        .bind(&ids)
        .bind(&severities)
        .execute(&mut *tx)
        .await?;
    }
    insert_entries(tx, &entries).await
}

/// One round's resolving events (`resolving`, sorted by fingerprint, one per fingerprint):
/// their open incidents locked in one statement and resolved in one, their timeline
/// entries, jobs and cancelled escalation levels written with one statement each.
async fn resolve_all(
    tx: &mut PgConnection,
    events: &[&Pending],
    resolving: &[usize],
    outcomes: &mut [IngestOutcome],
    wrote: &mut Vec<JobKind>,
) -> Result<(), sqlx::Error> {
    if resolving.is_empty() {
        return Ok(());
    }
    let fingerprints: Vec<&str> = resolving
        .iter()
        .map(|&index| events[index].event.fingerprint.as_str())
        .collect();
    let rows = sqlx::query(LOCK_OPEN_BY_FINGERPRINTS)
        .bind(&fingerprints)
        .fetch_all(&mut *tx)
        .await?;
    let mut open: HashMap<String, (Incident, Option<String>)> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let incident = row_to_incident(row)?;
        let chains: Option<String> = row.try_get("job_chains")?;
        open.insert(incident.fingerprint.clone(), (incident, chains));
    }

    let decode = |error: String| sqlx::Error::Decode(error.into());
    let mut resolved = Vec::with_capacity(open.len());
    // Each resolved incident's job chains, beside `resolved`.
    let mut chains_of: Vec<JobChains> = Vec::with_capacity(open.len());
    let mut job_count = 0;
    // The pending escalation level of each incident whose escalation stops.
    let mut cancelled: Vec<(i64, DateTime<Utc>)> = Vec::new();
    for &index in resolving {
        let pending = events[index];
        let Some((incident, chains_text)) = open.remove(pending.event.fingerprint.as_str()) else {
            outcomes[index] = IngestOutcome::Ignored;
            continue;
        };
        // Every open state may be resolved, so a refusal means the row itself is wrong.
        let transition = lifecycle::resolve_by_event(&incident, &pending.event, pending.now)
            .map_err(|error| decode(format!("incident {}: {error}", incident.id)))?;
        let chains = JobChains::parse(chains_text.as_deref()).map_err(|error| decode(error.to_string()))?;
        if let Some(level) = chains.stopped_escalation(&transition) {
            cancelled.push((level, pending.now));
        }
        let jobs = pending.reactions.after(&transition, pending.now);
        job_count += jobs.len();
        resolved.push((index, transition, jobs, chains_text));
        chains_of.push(chains);
    }
    if resolved.is_empty() {
        return Ok(());
    }
    if !cancelled.is_empty() {
        let (ids, times): (Vec<i64>, Vec<DateTime<Utc>>) = cancelled.into_iter().unzip();
        sqlx::query(
            "UPDATE jobs SET state = 'cancelled', updated_at = stopped.at \
             FROM unnest($1::int8[], $2::timestamptz[]) AS stopped (id, at) \
             WHERE jobs.id = stopped.id AND jobs.state = 'queued'",
        )
        .bind(&ids)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
    }

    let ids = jobs::job_ids(tx, job_count).await?;
    let mut next_id = ids.as_slice();
    let mut planned = Vec::with_capacity(job_count);
    let mut chains_after: Vec<Option<String>> = Vec::with_capacity(resolved.len());
    for ((_, _, jobs_of, chains_text), chains) in resolved.iter().zip(&mut chains_of) {
        if jobs_of.is_empty() {
            chains_after.push(chains_text.clone());
            continue;
        }
        let (these, rest) = next_id.split_at(jobs_of.len());
        next_id = rest;
        planned.extend(jobs::plan(jobs_of, these, chains));
        chains_after.push(chains.to_text());
        wrote.extend(jobs_of.iter().map(|job| job.payload.kind()));
    }
    jobs::insert_planned(tx, &planned, events[resolved[0].0].now).await?;

    let after = || resolved.iter().map(|(_, transition, ..)| &transition.after);
    // The escalation level each incident waits for: the last one its new jobs schedule.
    let (levels, level_due): (Vec<Option<i32>>, Vec<Option<DateTime<Utc>>>) = resolved
        .iter()
        .map(|(_, transition, jobs_of, _)| {
            jobs::escalation_level(jobs_of).or_else(|| {
                transition
                    .after
                    .next_escalation
                    .map(|next| (next.level as i32, next.due_at))
            })
        })
        .map(|level| (level.map(|(level, _)| level), level.map(|(_, due)| due)))
        .unzip();
    sqlx::query(
        "UPDATE incidents SET state = changed.state, assignee = changed.assignee, team = changed.team, \
         updated_at = changed.updated_at, acknowledged_at = changed.acknowledged_at, \
         resolved_at = changed.resolved_at, resolution_note = changed.resolution_note, \
         severity = changed.severity, category = changed.category, escalation_level = changed.escalation_level, \
         escalation_due_at = changed.escalation_due_at, classification = changed.classification, \
         insights = changed.insights, job_chains = changed.job_chains \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], \
         $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::int4[], $12::timestamptz[], $13::text[], \
         $14::text[], $15::text[]) AS changed (id, state, assignee, team, updated_at, acknowledged_at, \
         resolved_at, resolution_note, severity, category, escalation_level, escalation_due_at, classification, \
         insights, job_chains) WHERE incidents.id = changed.id",
    )
    .bind(after().map(|incident| incident.id.0).collect::<Vec<_>>())
    .bind(after().map(|incident| incident.state.as_str()).collect::<Vec<_>>())
    .bind(after().map(|incident| incident.assignee.as_deref()).collect::<Vec<_>>())
    .bind(after().map(|incident| incident.team.as_deref()).collect::<Vec<_>>())
    .bind(after().map(|incident| incident.updated_at).collect::<Vec<_>>())
    .bind(after().map(|incident| incident.acknowledged_at).collect::<Vec<_>>())
    .bind(after().map(|incident| incident.resolved_at).collect::<Vec<_>>())
    .bind(
        after()
            .map(|incident| incident.resolution_note.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(after().map(|incident| incident.severity.as_str()).collect::<Vec<_>>())
    .bind(after().map(|incident| incident.category.as_str()).collect::<Vec<_>>())
    .bind(&levels)
    .bind(&level_due)
    .bind(
        after()
            .map(|incident| incident.classification.as_ref().map(Classification::to_column))
            .collect::<Vec<_>>(),
    )
    .bind(
        after()
            .map(|incident| json_text(incident.insights.as_ref()))
            .collect::<Vec<_>>(),
    )
    .bind(&chains_after)
    .execute(&mut *tx)
    .await?;

    let entries: Vec<TimelineEntry> = resolved
        .iter()
        .map(|(_, transition, ..)| transition.entry.clone())
        .collect();
    insert_entries(tx, &entries).await?;
    for (index, transition, ..) in resolved {
        outcomes[index] = IngestOutcome::Resolved(Box::new(transition));
    }
    Ok(())
}

macro_rules! upsert {
    ($condition:literal) => {
        concat!(
            "INSERT INTO incidents (id, title, description, severity, category, source, state, \
         fingerprint, labels, occurrence_count, first_seen, last_seen, assignee, team, created_at, updated_at, \
         acknowledged_at, resolved_at, resolution_note, route, escalation_policy, escalation_level, \
         escalation_due_at, classification, insights, job_chains) \
         SELECT id, title, description, severity, category, source, state, fingerprint, labels::jsonb, \
         occurrence_count, first_seen, last_seen, assignee, team, created_at, updated_at, acknowledged_at, \
         resolved_at, resolution_note, route, escalation_policy, escalation_level, escalation_due_at, \
         classification, insights, job_chains \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::text[], $9::text[], $10::int8[], $11::timestamptz[], $12::timestamptz[], $13::text[], $14::text[], \
         $15::timestamptz[], $16::timestamptz[], $17::timestamptz[], $18::timestamptz[], $19::text[], $20::text[], \
         $21::text[], $22::int4[], $23::timestamptz[], $24::text[], $25::text[], $26::text[]) \
         AS candidate (id, title, description, severity, category, source, state, fingerprint, labels, \
         occurrence_count, first_seen, last_seen, assignee, team, created_at, updated_at, acknowledged_at, \
         resolved_at, resolution_note, route, escalation_policy, escalation_level, escalation_due_at, \
         classification, insights, job_chains) \
         ON CONFLICT (fingerprint) WHERE state <> 'RESOLVED' DO UPDATE SET \
         occurrence_count = incidents.occurrence_count + EXCLUDED.occurrence_count, \
         last_seen = GREATEST(incidents.last_seen, EXCLUDED.last_seen), \
         updated_at = EXCLUDED.updated_at",
            $condition,
            " RETURNING id, fingerprint, occurrence_count, severity, category"
        )
    };
}

/// The firing candidates of a round, the database deciding dedup; see [`upsert`].
const UPSERT: &str = upsert!("");
/// The same, for candidates that name their time: a redelivery changes nothing.
const UPSERT_GIVEN: &str = upsert!(" WHERE incidents.last_seen <> EXCLUDED.last_seen");

/// The firing candidates in one statement; each returned row is the position of its
/// candidate and what the row holds now. `given`: every candidate names its time, and a
/// conflicting row whose last event had that time is a redelivery, locked but neither
/// changed nor returned.
async fn upsert(
    tx: &mut PgConnection,
    candidates: &[(&Incident, Option<&str>)],
    given: bool,
) -> Result<Vec<(usize, Upserted)>, sqlx::Error> {
    let sql = if given { UPSERT_GIVEN } else { UPSERT };
    let incidents = || candidates.iter().map(|(incident, _)| *incident);
    let text = |field: fn(&Incident) -> &str| incidents().map(field).collect::<Vec<_>>();
    let optional = |field: fn(&Incident) -> Option<&str>| incidents().map(field).collect::<Vec<_>>();
    let time = |field: fn(&Incident) -> DateTime<Utc>| incidents().map(field).collect::<Vec<_>>();
    let optional_time = |field: fn(&Incident) -> Option<DateTime<Utc>>| incidents().map(field).collect::<Vec<_>>();
    let rows = sqlx::query(sql)
        .bind(incidents().map(|incident| incident.id.0).collect::<Vec<_>>())
        .bind(text(|incident| &incident.title))
        .bind(text(|incident| &incident.description))
        .bind(text(|incident| incident.severity.as_str()))
        .bind(text(|incident| incident.category.as_str()))
        .bind(text(|incident| incident.source.as_str()))
        .bind(text(|incident| incident.state.as_str()))
        .bind(text(|incident| &incident.fingerprint))
        .bind(incidents().map(labels_json).collect::<Vec<_>>())
        .bind(
            incidents()
                .map(|incident| incident.occurrence_count)
                .collect::<Vec<_>>(),
        )
        .bind(time(|incident| incident.first_seen))
        .bind(time(|incident| incident.last_seen))
        .bind(optional(|incident| incident.assignee.as_deref()))
        .bind(optional(|incident| incident.team.as_deref()))
        .bind(time(|incident| incident.created_at))
        .bind(time(|incident| incident.updated_at))
        .bind(optional_time(|incident| incident.acknowledged_at))
        .bind(optional_time(|incident| incident.resolved_at))
        .bind(optional(|incident| incident.resolution_note.as_deref()))
        .bind(optional(|incident| incident.route.as_deref()))
        .bind(optional(|incident| incident.escalation_policy.as_deref()))
        .bind(
            incidents()
                .map(|incident| incident.next_escalation.map(|next| next.level as i32))
                .collect::<Vec<_>>(),
        )
        .bind(optional_time(|incident| {
            incident.next_escalation.map(|next| next.due_at)
        }))
        .bind(
            incidents()
                .map(|incident| incident.classification.as_ref().map(Classification::to_column))
                .collect::<Vec<_>>(),
        )
        .bind(
            incidents()
                .map(|incident| json_text(incident.insights.as_ref()))
                .collect::<Vec<_>>(),
        )
        .bind(candidates.iter().map(|(_, chains)| *chains).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
    let position: HashMap<&str, usize> = incidents()
        .enumerate()
        .map(|(position, incident)| (incident.fingerprint.as_str(), position))
        .collect();
    rows.iter()
        .map(|row| {
            let fingerprint: &str = row.try_get("fingerprint")?;
            let position = *position
                .get(fingerprint)
                .ok_or_else(|| sqlx::Error::Decode(format!("an upsert returned `{fingerprint}`").into()))?;
            Ok((position, upserted(row)?))
        })
        .collect()
}

/// Candidates attached to their fingerprint's open incident with one `UPDATE`, which
/// counts them as the upsert would; what it returns is by fingerprint, and a candidate
/// without an open incident is left out. The candidates come sorted by fingerprint, and
/// the transaction joins them without hashing (see [`BEGIN`]), so the rows are locked in
/// that order.
async fn attach<'a>(
    tx: &mut PgConnection,
    candidates: impl Iterator<Item = Repeats<'a>>,
) -> Result<HashMap<String, Upserted>, sqlx::Error> {
    let candidates: Vec<Repeats> = candidates.collect();
    if candidates.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "UPDATE incidents SET occurrence_count = incidents.occurrence_count + candidate.occurrence_count, \
         last_seen = GREATEST(incidents.last_seen, candidate.last_seen), updated_at = candidate.updated_at \
         FROM unnest($1::text[], $2::int8[], $3::timestamptz[], $4::timestamptz[]) \
         AS candidate (fingerprint, occurrence_count, last_seen, updated_at) \
         WHERE incidents.fingerprint = candidate.fingerprint AND incidents.state <> 'RESOLVED' \
         RETURNING incidents.id, incidents.fingerprint, incidents.occurrence_count, incidents.severity, \
         incidents.category",
    )
    .bind(candidates.iter().map(|repeats| repeats.fingerprint).collect::<Vec<_>>())
    .bind(candidates.iter().map(|repeats| repeats.count).collect::<Vec<_>>())
    .bind(candidates.iter().map(|repeats| repeats.last_seen).collect::<Vec<_>>())
    .bind(candidates.iter().map(|repeats| repeats.updated_at).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("fingerprint")?, upserted(row)?)))
        .collect()
}

fn upserted(row: &sqlx::postgres::PgRow) -> Result<Upserted, sqlx::Error> {
    Ok(Upserted {
        id: IncidentId(row.try_get("id")?),
        occurrence_count: row.try_get("occurrence_count")?,
        severity: parse_column(row, "severity")?,
        category: parse_column(row, "category")?,
    })
}

/// Timeline entries, in order, in one statement.
pub(super) async fn insert_entries(tx: &mut PgConnection, entries: &[TimelineEntry]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO timeline (incident_id, at, kind, actor, message) \
         SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[])",
    )
    .bind(entries.iter().map(|entry| entry.incident_id.0).collect::<Vec<_>>())
    .bind(entries.iter().map(|entry| entry.at).collect::<Vec<_>>())
    .bind(entries.iter().map(|entry| entry.kind.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|entry| entry.actor.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|entry| entry.message.as_str()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}
