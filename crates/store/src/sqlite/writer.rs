//! The writer thread, its group commit, the syncer that makes groups durable before
//! they are answered, and the checkpointer (see the parent module's documentation).

use super::*;

/// Writes queued behind a commit in progress join the next one, up to this many.
const MAX_GROUP: usize = 512;

pub(super) type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// What running a queued write did to the group's transaction.
pub(super) struct Ran {
    /// True when the write failed in the database: the group must roll back.
    pub(super) poisoned: bool,
    pub(super) completion: Completion,
}

/// A queued write: run against the group's transaction, or told why the group could not start.
pub(super) type WriteJob = Box<dyn FnOnce(Result<&Connection, &StoreError>) -> Ran + Send>;

/// Copies committed WAL frames back into the database file on its own thread and
/// connection (a passive checkpoint never blocks the writer or the readers), so the
/// writer spends its time on statements and commits only.
pub(super) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

impl Checkpointer {
    pub(super) fn start(path: &str) -> Result<Self, StoreError> {
        let connection = Connection::open(path).map_err(|error| unavailable(path, error))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|error| unavailable(path, error))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpointer".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_INTERVAL) {
                    if let Err(error) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(%error, "SQLite checkpoint failed");
                    }
                }
            })
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        Ok(Checkpointer { stop, thread })
    }

    pub(super) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

pub(super) fn run_writer(mut connection: Connection, jobs: mpsc::Receiver<WriteJob>, syncer: mpsc::Sender<Committed>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let committed = commit_group(&mut connection, group);
        // A group that was not stored needs no fsync before its answers.
        if committed.error.is_some() {
            committed.answer(None);
            continue;
        }
        if let Err(mpsc::SendError(committed)) = syncer.send(committed) {
            committed.answer(Some(&closed()));
        }
    }
}

/// A group whose transaction is over, waiting for its answers.
pub(super) struct Committed {
    completions: Vec<Completion>,
    /// Set when the group was not stored; then no fsync is needed to answer.
    error: Option<StoreError>,
}

impl Committed {
    pub(super) fn answer(self, error: Option<&StoreError>) {
        let error = self.error.as_ref().or(error);
        for completion in self.completions {
            completion(error);
        }
    }
}

fn commit_group(connection: &mut Connection, group: Vec<WriteJob>) -> Committed {
    let transaction = match connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(transaction) => transaction,
        Err(error) => {
            let error = internal(error);
            let completions = group.into_iter().map(|job| job(Err(&error)).completion).collect();
            return Committed {
                completions,
                error: None,
            };
        }
    };
    let ran: Vec<Ran> = group.into_iter().map(|job| run_job(job, &transaction)).collect();
    let error = if ran.iter().any(|ran| ran.poisoned) {
        let _ = transaction.rollback();
        Some(StoreError::Internal(
            "a database error rolled back this group of writes".into(),
        ))
    } else {
        transaction.commit().err().map(internal)
    };
    Committed {
        completions: ran.into_iter().map(|ran| ran.completion).collect(),
        error,
    }
}

/// Runs one write of the group. A write that panics (a bug) rolls the group back like a
/// database failure, instead of taking the writer thread, and every later write, with it;
/// its caller is told the write was not stored.
fn run_job(job: WriteJob, transaction: &Connection) -> Ran {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Ok(transaction)))) {
        Ok(ran) => ran,
        Err(_) => {
            tracing::error!("a write panicked in the SQLite writer; its group is rolled back");
            Ran {
                poisoned: true,
                completion: Box::new(|_| {}),
            }
        }
    }
}

/// Makes committed groups durable, then answers them: every group waiting when an fsync
/// starts shares it.
pub(super) fn run_syncer(wal_path: String, groups: mpsc::Receiver<Committed>) {
    while let Ok(first) = groups.recv() {
        let mut waiting = vec![first];
        waiting.extend(groups.try_iter());
        let sync_error = sync_wal(&wal_path).err();
        for committed in waiting {
            committed.answer(sync_error.as_ref());
        }
    }
}

/// fsyncs the WAL file (any descriptor of the file flushes all of its written pages).
/// No WAL file means nothing was written since the last checkpoint truncated it.
fn sync_wal(wal_path: &str) -> Result<(), StoreError> {
    match std::fs::File::open(wal_path) {
        Ok(wal) => wal
            .sync_data()
            .map_err(|error| StoreError::Unavailable(format!("cannot fsync {wal_path}: {error}"))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StoreError::Unavailable(format!("cannot open {wal_path}: {error}"))),
    }
}
