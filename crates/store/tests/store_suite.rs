//! The one test suite of the `Store` contract, run against both backends: every test
//! below exists twice, as `sqlite::name` and `postgres::name`, on a fresh database.
//!
//! PostgreSQL comes from `LIM_TEST_POSTGRES_URL` (default: the local trust-auth server);
//! when it cannot be reached the PostgreSQL tests fail, they never skip.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use lim_domain::PendingEscalation;
use lim_domain::escalation::{EscalationPolicy, Level, Target};
use lim_domain::jobs::Notification;
use lim_domain::matcher::Matchers;
use lim_domain::matcher::OneOrMany;
use lim_domain::routing::{Route, Routes};
use lim_domain::silence::{NewSilence, Silence, SilenceId, SilenceMatchers, SilenceState};
use lim_domain::triage::{Classification, ClassificationStatus, Insights};
use lim_domain::{
    Action, Category, EntryPageRequest, Event, EventStatus, Incident, IncidentFilter, IncidentId, Job, JobId, JobKind,
    JobPayload, JobResult, JobState, NewJob, NotifyEvent, Opening, PageRequest, Reactions, Severity, Source, State,
    TimelineEntry, TimelineKind,
};
use lim_store::testing::TestDatabase;
use lim_store::{
    ChangeKind, ChangeNotice, Finished, IngestOutcome, JobCount, JobFilter, JobFinish, JobPageRequest, OpenCount,
    QueryObserver, SilenceFilter, SilencePageRequest, Store, StoreError, StoreOptions, operation,
};
use sqlx::{Connection, PgConnection};

/// Each test runs once per backend, each time on a database of its own. Multi-threaded
/// runtimes everywhere: the concurrency test needs one, and a backend may block in place.
macro_rules! store_tests {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::run(super::Backend::Sqlite, super::$test).await;
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::run(super::Backend::Postgres, super::$test).await;
                }
            )+
        }
    };
}

store_tests!(
    past_its_queue_of_waiting_events_a_store_refuses_writes_as_overloaded,
    an_event_creates_an_incident_with_a_created_entry,
    a_second_event_with_the_same_fingerprint_is_deduplicated,
    two_events_of_one_fingerprint_in_one_batch_make_one_incident,
    a_mixed_batch_keeps_the_order_of_each_fingerprint_and_reports_in_event_order,
    a_resolved_event_resolves_the_open_incident_and_a_later_event_opens_a_new_one,
    a_resolved_event_with_nothing_open_is_ignored,
    a_manual_incident_is_stored_with_its_created_entry,
    the_full_lifecycle_is_recorded_in_order,
    a_reclassification_is_stored_with_its_entry,
    an_illegal_transition_is_refused_and_changes_nothing,
    unknown_ids_are_not_found,
    comments_appear_in_the_timeline,
    lists_filter_by_state_severity_source_and_category,
    pages_of_two_walk_five_incidents_newest_first_without_duplicates,
    count_open_groups_by_labels_and_drops_resolved_incidents,
    a_hundred_concurrent_events_of_one_fingerprint_make_one_incident,
    concurrent_batches_touching_the_same_fingerprints_in_opposite_orders_all_succeed,
    incidents_and_timelines_survive_reconnecting,
    ping_answers_and_the_store_names_its_backend,
    the_observer_hears_every_operation_by_name,
    a_redelivered_event_is_recognised_and_not_counted,
    a_repeat_event_raises_the_severity_and_never_lowers_it,
    repeats_of_an_open_incident_count_in_order_beside_its_other_entries,
    repeats_in_the_batch_that_opens_an_incident_count_and_raise_in_order,
    a_long_timeline_is_read_page_by_page_oldest_first,
    comments_are_read_page_by_page,
    a_routed_incident_is_assigned_with_its_deliveries_in_the_same_transaction,
    acknowledging_and_resolving_write_the_routes_deliveries,
    jobs_are_claimed_once_and_finished_by_their_worker_only,
    a_failed_attempt_waits_for_its_retry_and_a_dead_job_can_be_retried,
    a_deferred_job_waits_and_gives_its_attempt_back,
    the_jobs_of_one_chain_run_one_at_a_time_in_order,
    an_expired_lease_lets_another_worker_claim_the_job,
    released_jobs_are_queued_again_without_the_attempt,
    a_recurring_job_is_ensured_once,
    finished_jobs_are_pruned_after_their_retention,
    an_escalating_incident_shows_its_next_level_and_acknowledging_cancels_it,
    a_level_that_finishes_after_an_acknowledgement_writes_nothing_more,
    a_levels_follow_up_becomes_the_incidents_next_level,
    silences_are_stored_listed_by_state_and_deleted,
    deleting_a_silence_resumes_the_escalations_it_held,
    incidents_a_grouping_route_opens_within_its_wait_share_one_group,
    a_classification_and_insights_are_stored_with_the_incident,
    llm_answers_are_kept_replaced_and_pruned,
    every_committed_change_reaches_the_feed_and_a_refused_one_does_not,
    incidents_are_read_by_their_ids,
    api_keys_are_created_once_listed_revoked_and_touched,
);

/// On PostgreSQL a change made through one replica reaches the watchers of another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_through_one_replica_reaches_the_feed_of_another() {
    run(Backend::Postgres, |db: TestDb| async move {
        let (writer, watcher) = (db.connect().await, db.connect().await);
        let mut feed = watcher.changes().subscribe();
        // The listener of the second replica may still be connecting: send until it hears.
        let start = now();
        let mut heard = None;
        for attempt in 0..100 {
            let outcomes = writer
                .ingest(vec![firing(&format!("fp-{attempt}"), start)], start, no_reactions())
                .await
                .unwrap();
            let id = created_id(&outcomes[0]);
            if let Ok(Ok(notices)) = tokio::time::timeout(std::time::Duration::from_millis(100), feed.recv()).await {
                heard = Some((id, notices));
                break;
            }
        }
        let (id, notices) = heard.expect("the second replica never heard of a change");
        // What it heard first may be an earlier attempt's incident; the last one follows.
        let mut all: Vec<ChangeNotice> = notices.to_vec();
        while !all.iter().any(|notice| notice.incident_id == id) {
            let more = tokio::time::timeout(std::time::Duration::from_secs(5), feed.recv())
                .await
                .expect("the change arrives")
                .unwrap();
            all.extend(more.iter().copied());
        }
        assert!(
            all.iter()
                .all(|notice| notice.kind == ChangeKind::Created && notice.at == start)
        );
        // Its own changes reach its watchers once, not again through the database.
        let mut own = writer.changes().subscribe();
        writer
            .transition(id, Action::Acknowledge, "ana".into(), start, no_reactions())
            .await
            .unwrap();
        assert_eq!(own.recv().await.unwrap()[0].kind, ChangeKind::StateChanged);
        let acknowledged = tokio::time::timeout(std::time::Duration::from_secs(5), feed.recv())
            .await
            .expect("the acknowledgement arrives")
            .unwrap();
        assert_eq!(
            acknowledged[0],
            ChangeNotice {
                kind: ChangeKind::StateChanged,
                incident_id: id,
                at: start
            }
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(own.try_recv().is_err(), "a replica's own change came back to it");
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

async fn every_committed_change_reaches_the_feed_and_a_refused_one_does_not(db: TestDb) {
    let store = db.connect().await;
    let mut feed = store.changes().subscribe();
    let start = now();
    let again = || Event {
        occurred_at_given: true,
        ..firing("a", start + Duration::seconds(1))
    };
    let outcomes = store
        .ingest(
            vec![firing("a", start), again(), firing("b", start)],
            start,
            no_reactions(),
        )
        .await
        .unwrap();
    let (a, b) = (created_id(&outcomes[0]), created_id(&outcomes[2]));
    let notice = |kind, incident_id| ChangeNotice {
        kind,
        incident_id,
        at: start,
    };
    assert_eq!(
        &*feed.recv().await.unwrap(),
        &[
            notice(ChangeKind::Created, a),
            notice(ChangeKind::Deduplicated, a),
            notice(ChangeKind::Created, b)
        ]
    );
    // A redelivery changes nothing, so tells nothing.
    let redelivered = store.ingest(vec![again()], start, no_reactions()).await.unwrap();
    assert!(matches!(redelivered[0], IngestOutcome::Redelivered { .. }));
    store
        .transition(a, Action::Acknowledge, "ana".into(), start, no_reactions())
        .await
        .unwrap();
    assert_eq!(&*feed.recv().await.unwrap(), &[notice(ChangeKind::StateChanged, a)]);
    let reclassify = Action::reclassify(Some("P0".into()), None).unwrap();
    store
        .transition(a, reclassify, "ana".into(), start, no_reactions())
        .await
        .unwrap();
    assert_eq!(&*feed.recv().await.unwrap(), &[notice(ChangeKind::Classified, a)]);
    store
        .add_comment(TimelineEntry::new(b, start, TimelineKind::Comment, "ana", "looking"))
        .await
        .unwrap();
    assert_eq!(&*feed.recv().await.unwrap(), &[notice(ChangeKind::Commented, b)]);
    let mut event = firing("manual", start);
    event.source = Source::Manual;
    let manual = Incident::open(IncidentId::generate(), &event, start);
    store.create_incident(unrouted(manual.clone())).await.unwrap();
    assert_eq!(&*feed.recv().await.unwrap(), &[notice(ChangeKind::Created, manual.id)]);
    store
        .ingest(vec![resolved("b", start)], start, no_reactions())
        .await
        .unwrap();
    assert_eq!(&*feed.recv().await.unwrap(), &[notice(ChangeKind::StateChanged, b)]);

    // Refused changes tell nothing.
    let illegal = store
        .transition(b, Action::Acknowledge, "ana".into(), start, no_reactions())
        .await;
    assert!(illegal.is_err());
    let unknown = IncidentId::generate();
    assert!(
        store
            .add_comment(TimelineEntry::new(unknown, start, TimelineKind::Comment, "ana", "?"))
            .await
            .is_err()
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(matches!(
        feed.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Empty)
    ));
}

async fn api_keys_are_created_once_listed_revoked_and_touched(db: TestDb) {
    use lim_domain::auth::{ApiKey, Scope};
    let store = db.connect().await;
    let start = now();
    let key = |name: &str, hash: &str| ApiKey {
        name: name.into(),
        hash: hash.into(),
        scopes: vec![Scope::Ingest, Scope::Read],
        created_at: start,
        last_used_at: None,
        revoked_at: None,
    };
    store.create_api_key(key("ci", "aa")).await.unwrap();
    store.create_api_key(key("admin", "bb")).await.unwrap();
    assert!(matches!(
        store.create_api_key(key("ci", "cc")).await,
        Err(StoreError::KeyExists(name)) if name == "ci"
    ));
    assert_eq!(store.api_keys().await.unwrap(), [key("admin", "bb"), key("ci", "aa")]);

    let later = start + Duration::seconds(5);
    store.touch_api_keys(vec!["ci".into()], later).await.unwrap();
    let revoked = store.revoke_api_key("ci", later).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(later));
    assert_eq!(revoked.last_used_at, Some(later));
    // Revoked once: a second revocation keeps the first time.
    let again = store.revoke_api_key("ci", later + Duration::seconds(1)).await.unwrap();
    assert_eq!(again.revoked_at, Some(later));
    assert!(matches!(
        store.revoke_api_key("nobody", later).await,
        Err(StoreError::KeyNotFound(_))
    ));
    let keys = store.api_keys().await.unwrap();
    assert_eq!(keys[0].revoked_at, None);
    assert_eq!(keys[1].revoked_at, Some(later));
}

async fn incidents_are_read_by_their_ids(db: TestDb) {
    let store = db.connect().await;
    let start = now();
    let events: Vec<Event> = (0..250).map(|index| firing(&format!("fp-{index}"), start)).collect();
    let outcomes = store.ingest(events, start, no_reactions()).await.unwrap();
    let mut ids: Vec<IncidentId> = outcomes.iter().map(created_id).collect();
    ids.push(IncidentId::generate());
    let mut read = store.get_incidents(&ids).await.unwrap();
    assert_eq!(read.len(), 250, "every stored one, and not the unknown id");
    read.sort_by_key(|incident| incident.id);
    let mut expected = ids[..250].to_vec();
    expected.sort();
    assert_eq!(read.iter().map(|incident| incident.id).collect::<Vec<_>>(), expected);
    assert_eq!(read[0], store.get_incident(read[0].id).await.unwrap().unwrap());
    assert!(store.get_incidents(&[]).await.unwrap().is_empty());
}

async fn a_classification_and_insights_are_stored_with_the_incident(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let mut event = firing("fp", now);
    // The offline classifier's verdict is kept as a mark and worked out again on read.
    let verdict = lim_domain::classifier::classify(&event.title, &event.description, &event.labels);
    event.severity = verdict.severity;
    event.classification = Some(Classification {
        status: ClassificationStatus::Pending,
        severity: Some(verdict.severity),
        category: None,
        confidence: f64::from(verdict.confidence),
        reasoning: verdict.reasoning,
        provider: "offline".into(),
        model: lim_domain::classifier::MODEL.into(),
    });
    let id = created_id(&store.ingest(vec![event.clone()], now, no_reactions()).await.unwrap()[0]);
    let stored = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!(stored.classification, event.classification);
    assert_eq!(stored.insights, None);

    let answer = Classification {
        status: ClassificationStatus::Done,
        severity: Some(Severity::P0),
        category: None,
        confidence: 0.9,
        reasoning: "total outage".into(),
        provider: "openai".into(),
        model: "gpt-4o".into(),
    };
    let classified = store
        .transition(
            id,
            Action::Classify(Ok(answer.clone())),
            "openai/gpt-4o".into(),
            now,
            no_reactions(),
        )
        .await
        .unwrap();
    assert_eq!(classified.after.severity, Severity::P0);
    let insights = Insights {
        summary: "GPU memory exhausted".into(),
        probable_cause: "a batch too large".into(),
        remediation: vec!["lower the batch size".into(), "restart the worker".into()],
        provider: "openai".into(),
        model: "gpt-4o".into(),
    };
    store
        .transition(
            id,
            Action::Explain(Ok(insights.clone())),
            "openai/gpt-4o".into(),
            now,
            no_reactions(),
        )
        .await
        .unwrap();

    let stored = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!(stored.severity, Severity::P0);
    assert_eq!(stored.classification, Some(answer));
    assert_eq!(stored.insights, Some(insights));
    let kinds = kinds(&whole_timeline(&*store, id).await);
    assert_eq!(kinds[1..], [TimelineKind::Classified, TimelineKind::Insights]);
    // A later resolve keeps them.
    store
        .ingest(vec![resolved("fp", now)], now, no_reactions())
        .await
        .unwrap();
    assert!(store.get_incident(id).await.unwrap().unwrap().insights.is_some());
}

async fn llm_answers_are_kept_replaced_and_pruned(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    assert_eq!(store.llm_cache_get("k").await.unwrap(), None);
    store.llm_cache_put("k", "{\"a\":1}", now).await.unwrap();
    store
        .llm_cache_put("k", "{\"a\":2}", now + Duration::seconds(1))
        .await
        .unwrap();
    store
        .llm_cache_put("old", "{}", now - Duration::days(10))
        .await
        .unwrap();
    assert_eq!(store.llm_cache_get("k").await.unwrap().as_deref(), Some("{\"a\":2}"));
    assert_eq!(store.prune_llm_cache(now - Duration::days(1)).await.unwrap(), 1);
    assert_eq!(store.llm_cache_get("old").await.unwrap(), None);
    assert!(store.llm_cache_get("k").await.unwrap().is_some());
}

fn escalating() -> Arc<Reactions> {
    let mut reactions = (*routed(&[], None)).clone();
    let levels = vec![
        Level {
            after: std::time::Duration::from_secs(60),
            notify: vec![Target::Channel("ops".into())],
        },
        Level {
            after: std::time::Duration::from_secs(300),
            notify: vec![Target::Person("bo".into())],
        },
    ];
    let policy = EscalationPolicy::new("urgent", levels, 0, None).unwrap();
    reactions.policies.insert("urgent".into(), policy);
    let mut routes: Vec<Route> = reactions.routes.iter().cloned().collect();
    routes[0].escalation_policy = Some("urgent".into());
    reactions.routes = Routes::new(routes);
    Arc::new(reactions)
}

async fn an_escalating_incident_shows_its_next_level_and_acknowledging_cancels_it(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let reactions = escalating();
    let id = created_id(
        &store
            .ingest(vec![firing("fp", now)], now, reactions.clone())
            .await
            .unwrap()[0],
    );
    let incident = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!(incident.escalation_policy.as_deref(), Some("urgent"));
    assert_eq!(
        incident.next_escalation,
        Some(PendingEscalation {
            level: 1,
            due_at: now + Duration::seconds(60)
        })
    );
    assert_eq!(
        store
            .claim_jobs(JobKind::Escalate, 10, WORKER, lease(now), now)
            .await
            .unwrap(),
        [],
        "not due before its delay"
    );

    store
        .transition(id, Action::Acknowledge, "ana".into(), now, reactions.clone())
        .await
        .unwrap();

    let incident = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!(incident.next_escalation, None);
    let later = now + Duration::seconds(61);
    assert_eq!(
        store
            .claim_jobs(JobKind::Escalate, 10, WORKER, lease(later), later)
            .await
            .unwrap(),
        []
    );
    let cancelled = store
        .list_jobs(
            &JobFilter {
                states: vec![JobState::Cancelled],
                kinds: vec![JobKind::Escalate],
            },
            JobPageRequest {
                limit: 10,
                before: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].incident_id, Some(id));
    assert_eq!(
        store.count_jobs().await.unwrap(),
        [],
        "a cancelled level is no longer queued"
    );
}

async fn a_level_that_finishes_after_an_acknowledgement_writes_nothing_more(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let reactions = escalating();
    let id = created_id(
        &store
            .ingest(vec![firing("fp", now)], now, reactions.clone())
            .await
            .unwrap()[0],
    );
    let due = now + Duration::seconds(60);
    let level = store
        .claim_jobs(JobKind::Escalate, 10, WORKER, lease(due), due)
        .await
        .unwrap();
    assert_eq!(level.len(), 1);
    // Acknowledged while the level runs: the running level is not cancelled, but it stops.
    store
        .transition(id, Action::Acknowledge, "ana".into(), due, reactions.clone())
        .await
        .unwrap();

    let entry = TimelineEntry::new(id, due, TimelineKind::Escalated, "escalation", "escalated to level 1");
    let finished = store
        .finish_job(JobFinish {
            entries: vec![entry],
            follow_ups: vec![NewJob::notify(id, "ops", NotifyEvent::Escalated, Some(1), 3, due)],
            escalating: Some(id),
            ..finish(&level[0], WORKER, JobResult::Done, due)
        })
        .await
        .unwrap();

    assert_eq!(finished, Finished::Stopped);
    assert_eq!(store.count_jobs().await.unwrap(), [], "no delivery was written");
    let timeline = whole_timeline(&*store, id).await;
    assert!(!kinds(&timeline).contains(&TimelineKind::Escalated), "{timeline:?}");
    assert_eq!(store.get_job(level[0].id).await.unwrap().unwrap().state, JobState::Done);
}

async fn a_levels_follow_up_becomes_the_incidents_next_level(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let reactions = escalating();
    let id = created_id(
        &store
            .ingest(vec![firing("fp", now)], now, reactions.clone())
            .await
            .unwrap()[0],
    );
    let due = now + Duration::seconds(60);
    let level = store
        .claim_jobs(JobKind::Escalate, 10, WORKER, lease(due), due)
        .await
        .unwrap();
    let JobPayload::Escalate(escalation) = &level[0].payload else {
        panic!("{:?}", level[0].payload)
    };
    let next_due = now + Duration::seconds(300);
    let next = NewJob::escalate(
        id,
        lim_domain::jobs::Escalation {
            level: 2,
            ..escalation.clone()
        },
        next_due,
        3,
    );
    let entry = TimelineEntry::new(id, due, TimelineKind::Escalated, "escalation", "escalated to level 1");

    let finished = store
        .finish_job(JobFinish {
            entries: vec![entry],
            follow_ups: vec![NewJob::notify(id, "ops", NotifyEvent::Escalated, Some(1), 3, due), next],
            escalating: Some(id),
            ..finish(&level[0], WORKER, JobResult::Done, due)
        })
        .await
        .unwrap();

    assert_eq!(finished, Finished::Recorded);
    let incident = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!(
        incident.next_escalation,
        Some(PendingEscalation {
            level: 2,
            due_at: next_due
        })
    );
    let timeline = whole_timeline(&*store, id).await;
    assert_eq!(kinds(&timeline).last(), Some(&TimelineKind::Escalated));
    let delivery = store
        .claim_jobs(JobKind::Notify, 10, WORKER, lease(due), due)
        .await
        .unwrap();
    assert_eq!(notification(&delivery[0]).level, Some(1));
    // Resolving cancels the second level.
    store
        .transition(id, Action::Resolve { note: None }, "ana".into(), due, reactions)
        .await
        .unwrap();
    let later = next_due + Duration::seconds(1);
    assert_eq!(
        store
            .claim_jobs(JobKind::Escalate, 10, WORKER, lease(later), later)
            .await
            .unwrap(),
        []
    );
}

fn silence_of(equal: &[(&str, &str)], from: DateTime<Utc>, minutes: i64) -> Silence {
    NewSilence {
        matchers: SilenceMatchers {
            equal: equal
                .iter()
                .map(|(key, value)| (key.to_string(), OneOrMany::One(value.to_string())))
                .collect(),
            match_re: BTreeMap::new(),
        },
        starts_at: Some(from),
        ends_at: Some(from + Duration::minutes(minutes)),
        comment: Some("maintenance".into()),
        created_by: Some("ana".into()),
    }
    .validate(from.min(now()))
    .unwrap()
}

async fn silences_are_stored_listed_by_state_and_deleted(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let active = silence_of(&[("severity", "P1")], now, 60);
    let pending = silence_of(&[("labels.model", "gpt-4o")], now + Duration::minutes(30), 60);
    store.create_silence(active.clone()).await.unwrap();
    store.create_silence(pending.clone()).await.unwrap();
    assert_eq!(store.get_silence(active.id).await.unwrap(), Some(active.clone()));
    assert_eq!(store.active_silences(now).await.unwrap(), std::slice::from_ref(&active));
    let listed = |states: Vec<SilenceState>, at: DateTime<Utc>| {
        let store = Arc::clone(&store);
        async move {
            store
                .list_silences(
                    &SilenceFilter { states, now: at },
                    SilencePageRequest {
                        limit: 10,
                        before: None,
                    },
                )
                .await
                .unwrap()
                .into_iter()
                .map(|silence| silence.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(vec![], now).await, [pending.id, active.id], "newest first");
    assert_eq!(listed(vec![SilenceState::Pending], now).await, [pending.id]);
    assert_eq!(listed(vec![SilenceState::Active], now).await, [active.id]);
    let page = store
        .list_silences(
            &SilenceFilter { states: vec![], now },
            SilencePageRequest {
                limit: 10,
                before: Some(pending.id),
            },
        )
        .await
        .unwrap();
    assert_eq!(page, std::slice::from_ref(&active));

    // One that ends by its own time stays listed, as expired.
    let ended = now + Duration::minutes(61);
    assert_eq!(listed(vec![SilenceState::Expired], ended).await, [active.id]);
    assert_eq!(
        store.active_silences(ended).await.unwrap(),
        std::slice::from_ref(&pending),
        "the other one has started"
    );

    let later = now + Duration::minutes(5);
    let deleted = store.delete_silence(pending.id, later).await.unwrap();
    assert_eq!(deleted.ends_at, later);
    assert_eq!(store.get_silence(pending.id).await.unwrap(), None);
    assert_eq!(listed(vec![], later).await, [active.id]);
    let again = store.delete_silence(pending.id, later).await;
    assert!(matches!(again, Err(StoreError::SilenceNotFound(_))), "{again:?}");
    let unknown = store.delete_silence(SilenceId::generate(), later).await;
    assert!(matches!(unknown, Err(StoreError::SilenceNotFound(_))), "{unknown:?}");
}

async fn deleting_a_silence_resumes_the_escalations_it_held(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let reactions = escalating();
    let id = created_id(
        &store
            .ingest(vec![firing("fp", now)], now, reactions.clone())
            .await
            .unwrap()[0],
    );
    let silence = silence_of(&[("source", "sentinel")], now, 120);
    store.create_silence(silence.clone()).await.unwrap();
    let due = now + Duration::seconds(60);
    let level = store
        .claim_jobs(JobKind::Escalate, 10, WORKER, lease(due), due)
        .await
        .unwrap();
    let JobPayload::Escalate(escalation) = &level[0].payload else {
        panic!()
    };
    // The level finds the silence and waits for its end, from level 1.
    let held = NewJob::escalate(
        id,
        lim_domain::jobs::Escalation {
            level: 1,
            run: 0,
            started_at: silence.ends_at,
            held_by: Some(silence.id),
            ..escalation.clone()
        },
        silence.ends_at,
        3,
    );
    store
        .finish_job(JobFinish {
            follow_ups: vec![held],
            escalating: Some(id),
            ..finish(&level[0], WORKER, JobResult::Done, due)
        })
        .await
        .unwrap();
    assert_eq!(
        store.get_incident(id).await.unwrap().unwrap().next_escalation,
        Some(PendingEscalation {
            level: 1,
            due_at: silence.ends_at
        })
    );

    let expired_at = due + Duration::seconds(30);
    store.delete_silence(silence.id, expired_at).await.unwrap();

    let incident = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!(incident.next_escalation.map(|next| next.due_at), Some(expired_at));
    let resumed = store
        .claim_jobs(JobKind::Escalate, 10, WORKER, lease(expired_at), expired_at)
        .await
        .unwrap();
    assert_eq!(resumed.len(), 1);
    let JobPayload::Escalate(escalation) = &resumed[0].payload else {
        panic!()
    };
    assert_eq!(
        (escalation.level, escalation.started_at, escalation.held_by),
        (1, expired_at, None)
    );
}

async fn incidents_a_grouping_route_opens_within_its_wait_share_one_group(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let mut reactions = (*routed(&["ops", "pager"], None)).clone();
    reactions.ungrouped_channels.insert("pager".into());
    let mut routes: Vec<Route> = reactions.routes.iter().cloned().collect();
    routes[0].group_wait = Some(std::time::Duration::from_secs(30));
    reactions.routes = Routes::new(routes);
    let reactions = Arc::new(reactions);

    let first = store
        .ingest(vec![firing("a", now), firing("b", now)], now, reactions.clone())
        .await
        .unwrap();
    let later = now + Duration::seconds(10);
    let third = store
        .ingest(vec![firing("c", later)], later, reactions.clone())
        .await
        .unwrap();
    // A manual incident of the route joins too.
    let manual = reactions.open(
        Incident::open(IncidentId::generate(), &firing("manual:x", later), later),
        later,
    );
    let manual_id = manual.incident.id;
    store.create_incident(manual).await.unwrap();
    let after_wait = now + Duration::seconds(31);
    let fourth = store
        .ingest(vec![firing("d", after_wait)], after_wait, reactions.clone())
        .await
        .unwrap();

    // Each incident alone to the pager; two groups to ops (the second opened by `d`).
    let due = after_wait + Duration::seconds(31);
    let jobs = store
        .claim_jobs(JobKind::Notify, 100, WORKER, lease(due), due)
        .await
        .unwrap();
    let pager = jobs.iter().filter(|job| notification(job).channel == "pager").count();
    assert_eq!(pager, 5);
    let groups: Vec<&Job> = jobs.iter().filter(|job| notification(job).group.is_some()).collect();
    assert_eq!(groups.len(), 2, "{jobs:?}");
    let window = notification(groups[0]).group.clone().unwrap();
    assert_eq!((window.from, window.to), (now, now + Duration::seconds(30)));
    assert_eq!(groups[0].due_at, window.to);
    assert_eq!(groups[0].incident_id, None);
    let members = store.group_members(window.id, 100).await.unwrap();
    let mut expected = vec![
        created_id(&first[0]),
        created_id(&first[1]),
        created_id(&third[0]),
        manual_id,
    ];
    expected.sort();
    assert_eq!(
        members.incidents.iter().map(|incident| incident.id).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(members.total, 4);
    assert_eq!(store.group_members(window.id, 2).await.unwrap().incidents.len(), 2);
    let second = notification(groups[1]).group.clone().unwrap();
    let members = store.group_members(second.id, 100).await.unwrap();
    assert_eq!(members.incidents[0].id, created_id(&fourth[0]));
}

async fn an_event_creates_an_incident_with_a_created_entry(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let event = firing("fp-latency", now);

    let outcomes = store.ingest(vec![event.clone()], now, no_reactions()).await.unwrap();

    let [IngestOutcome::Created(created)] = outcomes.as_slice() else {
        panic!("expected one Created outcome, got {outcomes:?}");
    };
    assert_eq!(created.state, State::New);
    assert_eq!(created.occurrence_count, 1);
    assert_eq!(created.fingerprint, "fp-latency");
    assert_eq!(created.labels, event.labels);
    assert_eq!(created.first_seen, event.occurred_at);
    assert_eq!(created.created_at, now);
    assert_eq!(store.get_incident(created.id).await.unwrap().as_ref(), Some(&**created));
    let timeline = whole_timeline(&*store, created.id).await;
    assert_eq!(timeline, vec![lim_domain::lifecycle::created_entry(created)]);
    assert_eq!(timeline[0].kind, TimelineKind::Created);
    assert_eq!(timeline[0].actor, "sentinel");
}

async fn a_second_event_with_the_same_fingerprint_is_deduplicated(db: TestDb) {
    let store = db.connect().await;
    let first_at = now();
    let id = created_id(
        &store
            .ingest(vec![firing("fp", first_at)], first_at, no_reactions())
            .await
            .unwrap()[0],
    );
    let later = first_at + Duration::seconds(30);

    let outcomes = store
        .ingest(vec![firing("fp", later)], later, no_reactions())
        .await
        .unwrap();

    assert_eq!(outcomes, vec![deduplicated(id, 2)]);
    assert_eq!(list_all(&*store).await.len(), 1);
    let incident = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!(incident.occurrence_count, 2);
    assert_eq!(incident.first_seen, first_at);
    assert_eq!(incident.last_seen, later);
    assert_eq!(incident.updated_at, later);
    let timeline = whole_timeline(&*store, id).await;
    assert_eq!(kinds(&timeline), [TimelineKind::Created, TimelineKind::EventAttached]);
    assert_eq!(timeline[1].actor, "sentinel");
    assert_eq!(timeline[1].message, "occurrence 2 of `latency high`");
    assert_eq!(timeline[1].at, later);
}

async fn two_events_of_one_fingerprint_in_one_batch_make_one_incident(db: TestDb) {
    let store = db.connect().await;
    let now = now();

    let outcomes = store
        .ingest(vec![firing("fp", now), firing("fp", now)], now, no_reactions())
        .await
        .unwrap();

    let id = created_id(&outcomes[0]);
    assert_eq!(outcomes[1], deduplicated(id, 2));
    let all = list_all(&*store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].occurrence_count, 2);
}

async fn a_mixed_batch_keeps_the_order_of_each_fingerprint_and_reports_in_event_order(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let batch = vec![
        firing("b", now),
        firing("a", now),
        resolved("b", now),
        firing("b", now),
        firing("a", now),
    ];

    let outcomes = store.ingest(batch, now, no_reactions()).await.unwrap();

    let first_b = created_id(&outcomes[0]);
    let a = created_id(&outcomes[1]);
    let IngestOutcome::Resolved(transition) = &outcomes[2] else {
        panic!("expected the third event to resolve, got {outcomes:?}");
    };
    assert_eq!(transition.after.id, first_b);
    let second_b = created_id(&outcomes[3]);
    assert_eq!(outcomes[4], deduplicated(a, 2));
    assert_eq!(
        ids(&list_all(&*store).await),
        [second_b, a, first_b],
        "newest first, in event order"
    );
    assert_eq!(
        store.get_incident(first_b).await.unwrap().unwrap().state,
        State::Resolved
    );
    // Each incident's timeline holds its own entries only, in order, though the batch
    // wrote them interleaved.
    let timeline = |id| {
        let store = store.clone();
        async move { kinds(&whole_timeline(&*store, id).await) }
    };
    assert_eq!(timeline(first_b).await, [TimelineKind::Created, TimelineKind::Resolved]);
    assert_eq!(timeline(a).await, [TimelineKind::Created, TimelineKind::EventAttached]);
    assert_eq!(timeline(second_b).await, [TimelineKind::Created]);
}

async fn a_resolved_event_resolves_the_open_incident_and_a_later_event_opens_a_new_one(db: TestDb) {
    let store = db.connect().await;
    let opened_at = now();
    let first = created_id(
        &store
            .ingest(vec![firing("fp", opened_at)], opened_at, no_reactions())
            .await
            .unwrap()[0],
    );
    let resolved_at = opened_at + Duration::minutes(5);

    let outcomes = store
        .ingest(vec![resolved("fp", resolved_at)], resolved_at, no_reactions())
        .await
        .unwrap();

    let [IngestOutcome::Resolved(transition)] = outcomes.as_slice() else {
        panic!("expected one Resolved outcome, got {outcomes:?}");
    };
    assert_eq!(transition.before.state, State::New);
    assert_eq!(transition.after.state, State::Resolved);
    let incident = store.get_incident(first).await.unwrap().unwrap();
    assert_eq!(incident.state, State::Resolved);
    assert_eq!(incident.resolved_at, Some(resolved_at));
    let timeline = whole_timeline(&*store, first).await;
    assert_eq!(kinds(&timeline), [TimelineKind::Created, TimelineKind::Resolved]);
    assert_eq!(timeline[1], transition.entry);

    let reopened_at = resolved_at + Duration::minutes(1);
    let second = ingest_at(&*store, firing("fp", reopened_at), reopened_at).await;
    assert_ne!(second, first);
    assert_eq!(store.get_incident(first).await.unwrap().unwrap().state, State::Resolved);
    assert_eq!(list_all(&*store).await.len(), 2);
}

async fn a_resolved_event_with_nothing_open_is_ignored(db: TestDb) {
    let store = db.connect().await;
    let now = now();

    let outcomes = store
        .ingest(vec![resolved("never-fired", now)], now, no_reactions())
        .await
        .unwrap();

    assert_eq!(outcomes, vec![IngestOutcome::Ignored]);
    assert!(list_all(&*store).await.is_empty());
}

async fn a_manual_incident_is_stored_with_its_created_entry(db: TestDb) {
    let store = db.connect().await;
    let mut event = firing("manual-1", now());
    event.source = Source::Manual;
    event.labels.clear();
    let incident = Incident::open(IncidentId::generate(), &event, now());

    store.create_incident(unrouted(incident.clone())).await.unwrap();

    assert_eq!(store.get_incident(incident.id).await.unwrap(), Some(incident.clone()));
    assert_eq!(
        whole_timeline(&*store, incident.id).await,
        vec![lim_domain::lifecycle::created_entry(&incident)]
    );
}

async fn a_reclassification_is_stored_with_its_entry(db: TestDb) {
    let store = db.connect().await;
    let start = now();
    let id = created_id(
        &store
            .ingest(vec![firing("fp", start)], start, no_reactions())
            .await
            .unwrap()[0],
    );
    let action = Action::reclassify(Some("P0".into()), Some("security".into())).unwrap();

    let change = store
        .transition(id, action, "ana".into(), start, no_reactions())
        .await
        .unwrap();

    let stored = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!(stored, change.after);
    assert_eq!((stored.severity, stored.category), (Severity::P0, Category::Security));
    let kinds: Vec<_> = whole_timeline(&*store, id)
        .await
        .iter()
        .map(|entry| entry.kind)
        .collect();
    assert_eq!(kinds, [TimelineKind::Created, TimelineKind::Classified]);
    let open = store.count_open().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].severity, open[0].category), (Severity::P0, Category::Security));
}

async fn the_full_lifecycle_is_recorded_in_order(db: TestDb) {
    let store = db.connect().await;
    let start = now();
    let id = created_id(
        &store
            .ingest(vec![firing("fp", start)], start, no_reactions())
            .await
            .unwrap()[0],
    );
    let assign = Action::assign(Some("ana".into()), Some("ml-oncall".into())).unwrap();
    let resolve = Action::resolve(Some("rolled back".into())).unwrap();
    let steps = [
        (assign, "lead", 10, State::Assigned),
        (Action::Acknowledge, "ana", 70, State::Acknowledged),
        (Action::Start, "ana", 80, State::InProgress),
        (resolve, "ana", 300, State::Resolved),
    ];

    let mut entries = Vec::new();
    for (action, actor, seconds, expected) in steps {
        let transition = store
            .transition(
                id,
                action,
                actor.into(),
                start + Duration::seconds(seconds),
                no_reactions(),
            )
            .await
            .unwrap();
        assert_eq!(transition.after.state, expected);
        assert_eq!(store.get_incident(id).await.unwrap().unwrap(), transition.after);
        entries.push(transition.entry);
    }

    let incident = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!(incident.assignee.as_deref(), Some("ana"));
    assert_eq!(incident.team.as_deref(), Some("ml-oncall"));
    assert_eq!(incident.acknowledged_at, Some(start + Duration::seconds(70)));
    assert_eq!(incident.resolved_at, Some(start + Duration::seconds(300)));
    assert_eq!(incident.resolution_note.as_deref(), Some("rolled back"));
    let timeline = whole_timeline(&*store, id).await;
    assert_eq!(timeline[0].kind, TimelineKind::Created);
    assert_eq!(timeline[1..], entries[..]);
    assert_eq!(
        kinds(&timeline),
        [
            TimelineKind::Created,
            TimelineKind::Assigned,
            TimelineKind::Acknowledged,
            TimelineKind::Started,
            TimelineKind::Resolved
        ]
    );
}

async fn an_illegal_transition_is_refused_and_changes_nothing(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let id = ingest_at(&*store, firing("fp", now), now).await;
    let before = store.get_incident(id).await.unwrap().unwrap();
    let timeline_before = whole_timeline(&*store, id).await;

    let error = store
        .transition(id, Action::Start, "ana".into(), now, no_reactions())
        .await
        .unwrap_err();

    let StoreError::IllegalTransition(refusal) = error else {
        panic!("expected IllegalTransition, got {error:?}");
    };
    assert_eq!((refusal.action, refusal.from), ("start", State::New));
    assert_eq!(store.get_incident(id).await.unwrap().unwrap(), before);
    assert_eq!(whole_timeline(&*store, id).await, timeline_before);

    store
        .transition(id, Action::Resolve { note: None }, "ana".into(), now, no_reactions())
        .await
        .unwrap();
    let resolved = store.get_incident(id).await.unwrap().unwrap();
    let error = store
        .transition(id, Action::Acknowledge, "ana".into(), now, no_reactions())
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::IllegalTransition(_)), "{error:?}");
    assert_eq!(store.get_incident(id).await.unwrap().unwrap(), resolved);
    assert_eq!(whole_timeline(&*store, id).await.len(), 2);
}

async fn unknown_ids_are_not_found(db: TestDb) {
    let store = db.connect().await;
    let unknown = IncidentId::generate();
    let comment = TimelineEntry::new(unknown, now(), TimelineKind::Comment, "ana", "hello?");

    assert!(store.get_incident(unknown).await.unwrap().is_none());
    let transition = store
        .transition(unknown, Action::Acknowledge, "ana".into(), now(), no_reactions())
        .await;
    assert!(
        matches!(transition, Err(StoreError::NotFound(id)) if id == unknown),
        "{transition:?}"
    );
    let timeline = store.timeline(unknown, entries(10)).await;
    assert!(
        matches!(timeline, Err(StoreError::NotFound(id)) if id == unknown),
        "{timeline:?}"
    );
    let comment = store.add_comment(comment).await;
    assert!(
        matches!(comment, Err(StoreError::NotFound(id)) if id == unknown),
        "{comment:?}"
    );
}

async fn comments_appear_in_the_timeline(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let id = ingest_at(&*store, firing("fp", now), now).await;
    let comment = TimelineEntry::new(
        id,
        now + Duration::seconds(5),
        TimelineKind::Comment,
        "ana",
        "looking into it",
    );

    store.add_comment(comment.clone()).await.unwrap();

    let timeline = whole_timeline(&*store, id).await;
    assert_eq!(kinds(&timeline), [TimelineKind::Created, TimelineKind::Comment]);
    assert_eq!(timeline[1], comment);
}

async fn lists_filter_by_state_severity_source_and_category(db: TestDb) {
    let store = db.connect().await;
    let a = ingest_one(
        &*store,
        event("a", Severity::P0, Source::Sentinel, Category::Performance),
    )
    .await;
    let b = ingest_one(&*store, event("b", Severity::P1, Source::Shield, Category::Security)).await;
    let c = ingest_one(
        &*store,
        event("c", Severity::P2, Source::Alertmanager, Category::Availability),
    )
    .await;
    let d = ingest_one(&*store, event("d", Severity::P1, Source::Sentinel, Category::Security)).await;
    store
        .transition(c, Action::Acknowledge, "ana".into(), now(), no_reactions())
        .await
        .unwrap();
    store
        .transition(d, Action::Resolve { note: None }, "ana".into(), now(), no_reactions())
        .await
        .unwrap();

    let listed = |filter: IncidentFilter| {
        let store = store.clone();
        async move { ids(&store.list_incidents(&filter, first_page(50)).await.unwrap()) }
    };
    assert_eq!(listed(IncidentFilter::default()).await, [d, c, b, a]);
    let states = |states: &[State]| IncidentFilter {
        states: states.to_vec(),
        ..IncidentFilter::default()
    };
    assert_eq!(listed(states(&[State::Acknowledged])).await, [c]);
    assert_eq!(listed(states(&[State::New, State::Acknowledged])).await, [c, b, a]);
    assert_eq!(listed(states(&[State::New, State::Resolved])).await, [d, b, a]);
    let severities = IncidentFilter {
        severities: vec![Severity::P1],
        ..IncidentFilter::default()
    };
    assert_eq!(listed(severities).await, [d, b]);
    let sources = IncidentFilter {
        sources: vec![Source::Sentinel],
        ..IncidentFilter::default()
    };
    assert_eq!(listed(sources).await, [d, a]);
    let categories = IncidentFilter {
        categories: vec![Category::Security],
        ..IncidentFilter::default()
    };
    assert_eq!(listed(categories).await, [d, b]);
    let combined = IncidentFilter {
        states: vec![State::New],
        severities: vec![Severity::P1],
        sources: vec![Source::Shield],
        categories: vec![Category::Security],
    };
    assert_eq!(listed(combined).await, [b]);
    let nothing = IncidentFilter {
        sources: vec![Source::Governance],
        ..IncidentFilter::default()
    };
    assert!(listed(nothing).await.is_empty());
}

async fn pages_of_two_walk_five_incidents_newest_first_without_duplicates(db: TestDb) {
    let store = db.connect().await;
    let mut created = Vec::new();
    for index in 0..5 {
        created.push(ingest_one(&*store, firing(&format!("fp-{index}"), now())).await);
    }

    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_incidents(&IncidentFilter::default(), PageRequest { limit: 2, before })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2, "a page holds at most its limit");
        before = page.last().map(|incident| incident.id);
        pages.push(ids(&page));
    }

    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let walked: Vec<IncidentId> = pages.concat();
    created.reverse();
    assert_eq!(walked, created, "newest first, each incident exactly once");
}

async fn count_open_groups_by_labels_and_drops_resolved_incidents(db: TestDb) {
    let store = db.connect().await;
    let acknowledged_alone = ingest_one(&*store, event("p4", Severity::P4, Source::Api, Category::Other)).await;
    // Acknowledged, then handed over: ASSIGNED again, but somebody did acknowledge it.
    for action in [
        Action::Acknowledge,
        Action::Assign {
            assignee: "bo".into(),
            team: None,
        },
    ] {
        store
            .transition(acknowledged_alone, action, "ana".into(), now(), no_reactions())
            .await
            .unwrap();
    }
    let unacknowledged = ingest_one(
        &*store,
        event("p1-a", Severity::P1, Source::Sentinel, Category::Performance),
    )
    .await;
    let acknowledged = ingest_one(
        &*store,
        event("p1-b", Severity::P1, Source::Sentinel, Category::Performance),
    )
    .await;
    let resolved_twin = ingest_one(
        &*store,
        event("p1-c", Severity::P1, Source::Sentinel, Category::Performance),
    )
    .await;
    // Younger than p1-a: the oldest is p1-a's time, not this one's.
    ingest_one(
        &*store,
        event("p1-d", Severity::P1, Source::Sentinel, Category::Performance),
    )
    .await;
    let p2 = ingest_one(&*store, event("p2", Severity::P2, Source::Shield, Category::Security)).await;
    let resolved_alone = ingest_one(&*store, event("p3", Severity::P3, Source::Api, Category::Cost)).await;
    store
        .transition(acknowledged, Action::Acknowledge, "ana".into(), now(), no_reactions())
        .await
        .unwrap();
    for id in [resolved_twin, resolved_alone] {
        store
            .transition(id, Action::Resolve { note: None }, "ana".into(), now(), no_reactions())
            .await
            .unwrap();
    }

    let mut counts = store.count_open().await.unwrap();
    let created = |id| {
        let store = store.clone();
        async move { store.get_incident(id).await.unwrap().unwrap().created_at }
    };

    counts.sort();
    let mut expected = vec![
        OpenCount {
            severity: Severity::P1,
            source: Source::Sentinel,
            category: Category::Performance,
            count: 3,
            // p1-a, older than p1-d; p1-b is acknowledged.
            oldest_unacknowledged: Some(created(unacknowledged).await),
        },
        OpenCount {
            severity: Severity::P2,
            source: Source::Shield,
            category: Category::Security,
            count: 1,
            oldest_unacknowledged: Some(created(p2).await),
        },
        OpenCount {
            severity: Severity::P4,
            source: Source::Api,
            category: Category::Other,
            count: 1,
            oldest_unacknowledged: None,
        },
    ];
    expected.sort();
    assert_eq!(counts, expected);
}

async fn past_its_queue_of_waiting_events_a_store_refuses_writes_as_overloaded(db: TestDb) {
    let store = db
        .connect_with(StoreOptions {
            max_queued_events: 1,
            ..StoreOptions::default()
        })
        .await;
    let now = now();
    let tasks: Vec<_> = (0..50)
        .map(|index| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .ingest(vec![firing(&format!("queued-{index}"), now)], now, no_reactions())
                    .await
            })
        })
        .collect();
    let (mut stored, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => stored += 1,
            Err(StoreError::Overloaded(message)) => {
                assert!(message.contains("queue is full"), "{message}");
                refused += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(refused > 0, "50 writes at once into a queue of 1: none refused");
    assert!(stored > 0, "the first write fits");
    // What was answered stored is stored; nothing refused is.
    let open: i64 = store.count_open().await.unwrap().iter().map(|count| count.count).sum();
    assert_eq!(open, stored);
    // A write larger than the whole queue still fits into an empty one.
    let batch = vec![firing("big-1", now), firing("big-2", now)];
    store.ingest(batch, now, no_reactions()).await.unwrap();
}

async fn a_hundred_concurrent_events_of_one_fingerprint_make_one_incident(db: TestDb) {
    let store = db.connect().await;
    let now = now();

    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.ingest(vec![firing("storm", now)], now, no_reactions()).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.unwrap().expect("no concurrent ingest may fail"));
    }

    let created: Vec<_> = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, IngestOutcome::Created(_)))
        .collect();
    assert_eq!(created.len(), 1, "exactly one event opens the incident");
    let counts: HashSet<i64> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            IngestOutcome::Deduplicated { occurrence_count, .. } => Some(*occurrence_count),
            _ => None,
        })
        .collect();
    assert_eq!(
        counts,
        (2..=100).collect(),
        "each attached event sees its own occurrence number"
    );
    let all = list_all(&*store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].occurrence_count, 100);
    assert_eq!(whole_timeline(&*store, all[0].id).await.len(), 100);
}

async fn concurrent_batches_touching_the_same_fingerprints_in_opposite_orders_all_succeed(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    store
        .ingest(vec![firing("a", now), firing("b", now)], now, no_reactions())
        .await
        .unwrap();

    let tasks: Vec<_> = (0..20)
        .map(|index| {
            let store = store.clone();
            let batch = if index % 2 == 0 {
                vec![firing("a", now), firing("b", now)]
            } else {
                vec![firing("b", now), firing("a", now)]
            };
            tokio::spawn(async move { store.ingest(batch, now, no_reactions()).await })
        })
        .collect();
    for task in tasks {
        task.await
            .unwrap()
            .expect("a batch that races another one is retried, not refused");
    }

    let all = list_all(&*store).await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|incident| incident.occurrence_count == 21), "{all:?}");
    for incident in &all {
        let timeline = whole_timeline(&*store, incident.id).await;
        assert_eq!(timeline.len(), 21, "one entry per event of {}", incident.fingerprint);
        assert_eq!(timeline[0].kind, TimelineKind::Created);
        assert!(timeline.iter().all(|entry| entry.incident_id == incident.id));
        let occurrences: Vec<_> = timeline[1..].iter().map(|entry| entry.message.as_str()).collect();
        let expected: Vec<_> = (2..=21)
            .map(|count| format!("occurrence {count} of `{}`", incident.title))
            .collect();
        assert_eq!(occurrences, expected, "attached entries in the order of their counts");
    }
}

async fn incidents_and_timelines_survive_reconnecting(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let open = ingest_one(&*store, firing("still-open", now)).await;
    let closed = ingest_one(&*store, firing("closed", now)).await;
    store
        .ingest(vec![firing("still-open", now)], now, no_reactions())
        .await
        .unwrap();
    store
        .transition(
            closed,
            Action::Resolve {
                note: Some("fixed".into()),
            },
            "ana".into(),
            now,
            no_reactions(),
        )
        .await
        .unwrap();
    store
        .add_comment(TimelineEntry::new(open, now, TimelineKind::Comment, "ana", "watching"))
        .await
        .unwrap();
    let incidents_before = list_all(&*store).await;
    let mut timelines_before = Vec::new();
    for id in [open, closed] {
        timelines_before.push(whole_timeline(&*store, id).await);
    }
    drop(store);

    let store = db.connect().await;

    assert_eq!(list_all(&*store).await, incidents_before);
    for (id, timeline) in [open, closed].into_iter().zip(timelines_before) {
        assert_eq!(whole_timeline(&*store, id).await, timeline);
    }
    let outcomes = store
        .ingest(vec![firing("still-open", now)], now, no_reactions())
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![deduplicated(open, 3)],
        "dedup still holds after a restart"
    );
}

async fn ping_answers_and_the_store_names_its_backend(db: TestDb) {
    let options = StoreOptions {
        max_connections: 3,
        ..StoreOptions::default()
    };
    let store = db.connect_with(options).await;

    store.ping().await.unwrap();

    assert_eq!(store.backend(), db.backend.name());
    let stats = store.pool_stats();
    // PostgreSQL's pool holds exactly the configured connections; SQLite adds its
    // dedicated writer (always in use) to that many readers, all idle between calls.
    match db.backend {
        Backend::Sqlite => assert_eq!((stats.max, stats.in_use, stats.idle), (4, 1, 3), "{stats:?}"),
        Backend::Postgres => {
            assert_eq!(stats.max, 3, "{stats:?}");
            assert!(stats.in_use + stats.idle <= stats.max, "{stats:?}");
        }
    }
}

async fn the_observer_hears_every_operation_by_name(db: TestDb) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let recorder = heard.clone();
    let observer: QueryObserver = Arc::new(move |name, _elapsed| recorder.lock().unwrap().push(name));
    let store = db
        .connect_with(StoreOptions {
            observer: Some(observer),
            ..StoreOptions::default()
        })
        .await;
    heard.lock().unwrap().clear();
    let now = now();

    let id = ingest_one(&*store, firing("fp", now)).await;
    let manual = Incident::open(IncidentId::generate(), &firing("manual", now), now);
    store.create_incident(unrouted(manual)).await.unwrap();
    store
        .transition(id, Action::Acknowledge, "ana".into(), now, no_reactions())
        .await
        .unwrap();
    store
        .add_comment(TimelineEntry::new(id, now, TimelineKind::Comment, "ana", "hi"))
        .await
        .unwrap();
    store.get_incident(id).await.unwrap();
    store
        .list_incidents(&IncidentFilter::default(), first_page(10))
        .await
        .unwrap();
    store.timeline(id, entries(10)).await.unwrap();
    store.comments(id, entries(10)).await.unwrap();
    store.count_open().await.unwrap();
    store.ping().await.unwrap();
    let unknown = IncidentId::generate();
    let refused = store
        .transition(unknown, Action::Start, "ana".into(), now, no_reactions())
        .await;
    assert!(
        matches!(refused, Err(StoreError::NotFound(id)) if id == unknown),
        "{refused:?}"
    );

    let heard = heard.lock().unwrap().clone();
    assert_eq!(
        heard,
        [
            operation::INGEST,
            operation::CREATE_INCIDENT,
            operation::TRANSITION,
            operation::ADD_COMMENT,
            operation::GET_INCIDENT,
            operation::LIST_INCIDENTS,
            operation::TIMELINE,
            operation::COMMENTS,
            operation::COUNT_OPEN,
            operation::PING,
            operation::TRANSITION,
        ],
        "one observation per call, failed calls included"
    );
}

async fn a_redelivered_event_is_recognised_and_not_counted(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let stated = |occurred_at| Event {
        occurred_at_given: true,
        classification: None,
        ..firing("fp", occurred_at)
    };
    let first = now - Duration::minutes(5);
    let id = created_id(&store.ingest(vec![stated(first)], now, no_reactions()).await.unwrap()[0]);

    // Alertmanager re-sends the group: same fingerprint, same time.
    let outcomes = store
        .ingest(vec![stated(first), stated(first)], now, no_reactions())
        .await
        .unwrap();

    let redelivered = IngestOutcome::Redelivered {
        incident_id: id,
        occurrence_count: 1,
        severity: Severity::P1,
        category: Category::Performance,
    };
    assert_eq!(outcomes, vec![redelivered.clone(), redelivered]);
    assert_eq!(store.get_incident(id).await.unwrap().unwrap().occurrence_count, 1);
    assert_eq!(
        whole_timeline(&*store, id).await.len(),
        1,
        "a redelivery writes nothing"
    );

    // A new occurrence counts, and is itself recognised when it comes again; an event
    // that does not say when it occurred always counts.
    let later = now - Duration::minutes(1);
    let outcomes = store
        .ingest(
            vec![stated(later), stated(later), firing("fp", later)],
            now,
            no_reactions(),
        )
        .await
        .unwrap();
    assert_eq!(outcomes[0], deduplicated(id, 2));
    assert!(
        matches!(
            outcomes[1],
            IngestOutcome::Redelivered {
                occurrence_count: 2,
                ..
            }
        ),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2], deduplicated(id, 3));
    assert_eq!(whole_timeline(&*store, id).await.len(), 3);
}

/// PostgreSQL stores a fingerprint's consecutive firing events of one transaction as one
/// candidate that counts them all: each still gets its own outcome, occurrence number,
/// entry and raise, as on SQLite.
async fn repeats_in_the_batch_that_opens_an_incident_count_and_raise_in_order(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let with_severity = |severity| Event {
        severity,
        ..firing("fp", now)
    };

    let outcomes = store
        .ingest(
            vec![
                with_severity(Severity::P2),
                with_severity(Severity::P1),
                firing("other", now),
                with_severity(Severity::P3),
                with_severity(Severity::P0),
            ],
            now,
            no_reactions(),
        )
        .await
        .unwrap();

    let id = created_id(&outcomes[0]);
    created_id(&outcomes[2]);
    let deduplicated = |occurrence_count, severity, raised_from| IngestOutcome::Deduplicated {
        incident_id: id,
        occurrence_count,
        source: Source::Sentinel,
        severity,
        category: Category::Performance,
        raised_from,
    };
    assert_eq!(outcomes[1], deduplicated(2, Severity::P1, Some(Severity::P2)));
    assert_eq!(outcomes[3], deduplicated(3, Severity::P1, None));
    assert_eq!(outcomes[4], deduplicated(4, Severity::P0, Some(Severity::P1)));
    let incident = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!((incident.occurrence_count, incident.severity), (4, Severity::P0));
    let timeline = whole_timeline(&*store, id).await;
    assert_eq!(
        kinds(&timeline),
        [
            TimelineKind::Created,
            TimelineKind::EventAttached,
            TimelineKind::Classified,
            TimelineKind::EventAttached,
            TimelineKind::EventAttached,
            TimelineKind::Classified,
        ]
    );
    assert_eq!(timeline[1].message, "occurrence 2 of `latency high`");
    assert_eq!(timeline[4].message, "occurrence 4 of `latency high`");
    assert_eq!(timeline[5].message, "severity raised P1 → P0 by a repeat event");
}

/// Repeats of an incident the store already saw open (on PostgreSQL, counted with one
/// `UPDATE` of the open incident, not the upsert), several in one batch and beside other
/// entries: each has its occurrence number, in order, its own time and source, and the
/// severity stays.
async fn repeats_of_an_open_incident_count_in_order_beside_its_other_entries(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let id = ingest_at(&*store, firing("fp", now), now).await;
    store
        .add_comment(TimelineEntry::new(
            id,
            now + Duration::seconds(1),
            TimelineKind::Comment,
            "alice",
            "looking",
        ))
        .await
        .unwrap();
    let later = now + Duration::seconds(2);
    let repeat = |severity, source, title: &str| Event {
        severity,
        source,
        title: title.into(),
        ..firing("fp", later)
    };

    let outcomes = store
        .ingest(
            vec![
                repeat(Severity::P3, Source::Sentinel, "latency high"),
                firing("other", later),
                repeat(Severity::P1, Source::Alertmanager, "it's `back`; again"),
                repeat(Severity::P4, Source::Sentinel, "latency high"),
            ],
            later,
            no_reactions(),
        )
        .await
        .unwrap();

    let deduplicated = |occurrence_count, source| IngestOutcome::Deduplicated {
        incident_id: id,
        occurrence_count,
        source,
        severity: Severity::P1,
        category: Category::Performance,
        raised_from: None,
    };
    assert_eq!(outcomes[0], deduplicated(2, Source::Sentinel));
    created_id(&outcomes[1]);
    assert_eq!(outcomes[2], deduplicated(3, Source::Alertmanager));
    assert_eq!(outcomes[3], deduplicated(4, Source::Sentinel));
    let incident = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!((incident.occurrence_count, incident.severity), (4, Severity::P1));
    assert_eq!(incident.last_seen, later);
    let timeline = whole_timeline(&*store, id).await;
    let written: Vec<(&str, &str)> = timeline
        .iter()
        .skip(1)
        .map(|entry| (entry.actor.as_str(), entry.message.as_str()))
        .collect();
    assert_eq!(
        written,
        [
            ("alice", "looking"),
            ("sentinel", "occurrence 2 of `latency high`"),
            ("alertmanager", "occurrence 3 of `it's `back`; again`"),
            ("sentinel", "occurrence 4 of `latency high`"),
        ]
    );
    assert!(timeline[2..].iter().all(|entry| entry.at == later));
}

async fn a_repeat_event_raises_the_severity_and_never_lowers_it(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let id = ingest_at(&*store, firing("fp", now), now).await;
    let with_severity = |severity| Event {
        severity,
        ..firing("fp", now)
    };

    let outcomes = store
        .ingest(
            vec![with_severity(Severity::P0), with_severity(Severity::P3)],
            now,
            no_reactions(),
        )
        .await
        .unwrap();

    assert_eq!(
        outcomes[0],
        IngestOutcome::Deduplicated {
            incident_id: id,
            occurrence_count: 2,
            source: Source::Sentinel,
            severity: Severity::P0,
            category: Category::Performance,
            raised_from: Some(Severity::P1),
        }
    );
    assert_eq!(
        outcomes[1],
        IngestOutcome::Deduplicated {
            incident_id: id,
            occurrence_count: 3,
            source: Source::Sentinel,
            severity: Severity::P0,
            category: Category::Performance,
            raised_from: None,
        }
    );
    assert_eq!(store.get_incident(id).await.unwrap().unwrap().severity, Severity::P0);
    let timeline = whole_timeline(&*store, id).await;
    assert_eq!(
        kinds(&timeline),
        [
            TimelineKind::Created,
            TimelineKind::EventAttached,
            TimelineKind::Classified,
            TimelineKind::EventAttached
        ]
    );
    assert_eq!(timeline[2].message, "severity raised P1 → P0 by a repeat event");
    let open = store.count_open().await.unwrap();
    assert_eq!(
        open.iter()
            .map(|count| (count.severity, count.count))
            .collect::<Vec<_>>(),
        [(Severity::P0, 1)]
    );
}

async fn a_long_timeline_is_read_page_by_page_oldest_first(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let batch = (0..251).map(|_| firing("fp", now)).collect();
    let id = created_id(&store.ingest(batch, now, no_reactions()).await.unwrap()[0]);
    // Another incident's entries interleave with this one's.
    store
        .ingest(vec![firing("other", now)], now, no_reactions())
        .await
        .unwrap();
    store
        .ingest(vec![firing("fp", now)], now, no_reactions())
        .await
        .unwrap();

    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .timeline(id, EntryPageRequest { limit: 100, after })
            .await
            .unwrap();
        pages.push(page.entries);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }

    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [100, 100, 52]);
    let messages: Vec<String> = pages.concat().into_iter().skip(1).map(|entry| entry.message).collect();
    let expected: Vec<String> = (2..=252).map(|n| format!("occurrence {n} of `latency high`")).collect();
    assert_eq!(messages, expected, "oldest first, no entry twice, none missed");
    let exact = store.timeline(id, entries(252)).await.unwrap();
    assert_eq!(
        (exact.entries.len(), exact.next),
        (252, None),
        "no cursor to an empty page"
    );
}

async fn comments_are_read_page_by_page(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let id = ingest_at(&*store, firing("fp", now), now).await;
    for n in 0..5 {
        store
            .add_comment(TimelineEntry::new(
                id,
                now,
                TimelineKind::Comment,
                "ana",
                format!("note {n}"),
            ))
            .await
            .unwrap();
        store
            .ingest(vec![firing("fp", now)], now, no_reactions())
            .await
            .unwrap();
    }

    let first = store.comments(id, entries(2)).await.unwrap();
    let second = store
        .comments(
            id,
            EntryPageRequest {
                limit: 2,
                after: first.next,
            },
        )
        .await
        .unwrap();
    let third = store
        .comments(
            id,
            EntryPageRequest {
                limit: 2,
                after: second.next,
            },
        )
        .await
        .unwrap();

    let messages = |entries: &[TimelineEntry]| entries.iter().map(|entry| entry.message.clone()).collect::<Vec<_>>();
    assert_eq!(messages(&first.entries), ["note 0", "note 1"]);
    assert_eq!(messages(&second.entries), ["note 2", "note 3"]);
    assert_eq!(messages(&third.entries), ["note 4"]);
    assert_eq!(third.next, None);
    let none = created_id(
        &store
            .ingest(vec![firing("quiet", now)], now, no_reactions())
            .await
            .unwrap()[0],
    );
    assert_eq!(store.comments(none, entries(10)).await.unwrap().entries, []);
    let unknown = store.comments(IncidentId::generate(), entries(10)).await;
    assert!(matches!(unknown, Err(StoreError::NotFound(_))), "{unknown:?}");
}

fn routed(channels: &[&str], assignee: Option<&str>) -> Arc<Reactions> {
    Arc::new(Reactions {
        routes: Routes::new(vec![Route {
            name: "everything".into(),
            matchers: Matchers::default(),
            team: Some("ml-oncall".into()),
            assignee: assignee.map(Into::into),
            escalation_policy: None,
            channels: channels.iter().map(|channel| channel.to_string()).collect(),
            notify_on: Route::DEFAULT_NOTIFY_ON.to_vec(),
            group_wait: None,
        }]),
        channel_attempts: Default::default(),
        default_attempts: 5,
        ..Reactions::default()
    })
}

const WORKER: &str = "worker-1";

fn lease(now: DateTime<Utc>) -> DateTime<Utc> {
    now + Duration::seconds(60)
}

fn notification(job: &Job) -> &Notification {
    match &job.payload {
        JobPayload::Notify(notification) => notification,
        other => panic!("a notification job, got {other:?}"),
    }
}

/// A delivery job. The jobs given a chain are of one incident, so that each chain's run
/// in order; a job of no chain waits for none.
fn plain_job(now: DateTime<Utc>, chain: Option<&str>) -> NewJob {
    static CHAINED: std::sync::LazyLock<IncidentId> = std::sync::LazyLock::new(IncidentId::generate);
    match chain {
        Some(chain) => NewJob::notify(*CHAINED, chain, NotifyEvent::Created, None, 3, now),
        None => NewJob {
            chain: None,
            ..NewJob::notify(IncidentId::generate(), "ops", NotifyEvent::Created, None, 3, now)
        },
    }
}

fn finish(job: &Job, worker: &str, result: JobResult, now: DateTime<Utc>) -> JobFinish {
    JobFinish {
        id: job.id,
        worker: worker.into(),
        result,
        entries: Vec::new(),
        escalating: None,
        follow_ups: Vec::new(),
        now,
    }
}

async fn a_routed_incident_is_assigned_with_its_deliveries_in_the_same_transaction(db: TestDb) {
    let store = db.connect().await;
    let now = now();

    let outcomes = store
        .ingest(vec![firing("fp", now)], now, routed(&["ops", "slack"], Some("ana")))
        .await
        .unwrap();

    let IngestOutcome::Created(incident) = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(incident.state, State::Assigned);
    assert_eq!(incident.assignee.as_deref(), Some("ana"));
    assert_eq!(incident.route.as_deref(), Some("everything"));
    assert_eq!(
        store.get_incident(incident.id).await.unwrap().as_ref(),
        Some(&**incident)
    );
    let timeline = whole_timeline(&*store, incident.id).await;
    assert_eq!(kinds(&timeline), [TimelineKind::Created, TimelineKind::Assigned]);
    assert_eq!(timeline[1].actor, "route everything");
    assert_eq!(
        store.count_jobs().await.unwrap(),
        [JobCount {
            kind: JobKind::Notify,
            queued: 2
        }]
    );
    let jobs = store
        .claim_jobs(JobKind::Notify, 10, WORKER, lease(now), now)
        .await
        .unwrap();
    let channels: Vec<&str> = jobs.iter().map(|job| notification(job).channel.as_str()).collect();
    assert_eq!(channels, ["ops", "slack"]);
    assert!(
        jobs.iter()
            .all(|job| job.incident_id == Some(incident.id) && job.max_attempts == 5)
    );
    // A repeat event causes nothing more.
    store
        .ingest(vec![firing("fp", now)], now, routed(&["ops", "slack"], Some("ana")))
        .await
        .unwrap();
    assert_eq!(store.count_jobs().await.unwrap(), []);
}

async fn acknowledging_and_resolving_write_the_routes_deliveries(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let reactions = routed(&["ops"], None);
    let id = created_id(
        &store
            .ingest(vec![firing("fp", now)], now, reactions.clone())
            .await
            .unwrap()[0],
    );
    let created = store
        .claim_jobs(JobKind::Notify, 10, WORKER, lease(now), now)
        .await
        .unwrap();

    store
        .transition(id, Action::Acknowledge, "ana".into(), now, reactions.clone())
        .await
        .unwrap();
    store.ingest(vec![resolved("fp", now)], now, reactions).await.unwrap();

    for job in &created {
        assert_eq!(
            store
                .finish_job(finish(job, WORKER, JobResult::Done, now))
                .await
                .unwrap(),
            Finished::Recorded
        );
    }
    let later = store
        .claim_jobs(JobKind::Notify, 10, WORKER, lease(now), now)
        .await
        .unwrap();
    assert_eq!(later.len(), 1, "one at a time per incident and channel: {later:?}");
    assert_eq!(notification(&later[0]).event, NotifyEvent::Acknowledged);
    store
        .finish_job(finish(&later[0], WORKER, JobResult::Done, now))
        .await
        .unwrap();
    let last = store
        .claim_jobs(JobKind::Notify, 10, WORKER, lease(now), now)
        .await
        .unwrap();
    assert_eq!(notification(&last[0]).event, NotifyEvent::Resolved);
}

async fn jobs_are_claimed_once_and_finished_by_their_worker_only(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    store
        .enqueue_jobs((0..3).map(|_| plain_job(now, None)).collect())
        .await
        .unwrap();

    let first = store
        .claim_jobs(JobKind::Notify, 2, WORKER, lease(now), now)
        .await
        .unwrap();
    let second = store
        .claim_jobs(JobKind::Notify, 2, "worker-2", lease(now), now)
        .await
        .unwrap();
    let none = store
        .claim_jobs(JobKind::Notify, 2, WORKER, lease(now), now)
        .await
        .unwrap();

    assert_eq!((first.len(), second.len(), none.len()), (2, 1, 0));
    assert!(
        first
            .iter()
            .chain(&second)
            .all(|job| job.state == JobState::Running && job.attempts == 1)
    );
    assert!(
        store
            .claim_jobs(JobKind::Housekeeping, 2, WORKER, lease(now), now)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .finish_job(finish(&second[0], WORKER, JobResult::Done, now))
            .await
            .unwrap(),
        Finished::Lost,
        "not its job"
    );
    assert_eq!(
        store
            .finish_job(finish(&second[0], "worker-2", JobResult::Done, now))
            .await
            .unwrap(),
        Finished::Recorded
    );
    assert_eq!(
        store
            .finish_job(finish(&second[0], "worker-2", JobResult::Done, now))
            .await
            .unwrap(),
        Finished::Lost,
        "finished already"
    );
    let job = store.get_job(second[0].id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Done);
    let done = JobFilter {
        states: vec![JobState::Done],
        ..JobFilter::default()
    };
    let listed = store
        .list_jobs(
            &done,
            JobPageRequest {
                limit: 10,
                before: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed, vec![job]);
}

async fn a_deferred_job_waits_and_gives_its_attempt_back(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    store.enqueue_jobs(vec![plain_job(now, None)]).await.unwrap();
    let claimed = store
        .claim_jobs(JobKind::Notify, 1, WORKER, lease(now), now)
        .await
        .unwrap();
    assert_eq!(claimed[0].attempts, 1);
    let later = now + Duration::seconds(20);

    let recorded = store
        .finish_job(finish(
            &claimed[0],
            WORKER,
            JobResult::Deferred {
                due_at: later,
                reason: "the circuit is open".into(),
            },
            now,
        ))
        .await
        .unwrap();

    assert_eq!(recorded, Finished::Recorded);
    assert!(
        store
            .claim_jobs(JobKind::Notify, 1, WORKER, lease(now), now)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let again = store
        .claim_jobs(JobKind::Notify, 1, WORKER, lease(later), later)
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 1, "the deferral did not count");
    assert_eq!(again[0].last_error.as_deref(), Some("the circuit is open"));
}

async fn a_failed_attempt_waits_for_its_retry_and_a_dead_job_can_be_retried(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let incident = created_id(
        &store
            .ingest(vec![firing("fp", now)], now, no_reactions())
            .await
            .unwrap()[0],
    );
    let mut job = plain_job(now, None);
    job.incident_id = Some(incident);
    store.enqueue_jobs(vec![job]).await.unwrap();
    let claimed = store
        .claim_jobs(JobKind::Notify, 1, WORKER, lease(now), now)
        .await
        .unwrap();
    let retry_at = now + Duration::seconds(30);
    let entry = TimelineEntry::new(incident, now, TimelineKind::Notified, "notifier", "ops: 500, retrying");

    let recorded = store
        .finish_job(JobFinish {
            entries: vec![entry.clone()],
            ..finish(
                &claimed[0],
                WORKER,
                JobResult::Retry {
                    due_at: retry_at,
                    error: "500".into(),
                },
                now,
            )
        })
        .await
        .unwrap();

    assert_eq!(recorded, Finished::Recorded);
    assert_eq!(whole_timeline(&*store, incident).await.last(), Some(&entry));
    assert!(
        store
            .claim_jobs(JobKind::Notify, 1, WORKER, lease(now), now)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let again = store
        .claim_jobs(JobKind::Notify, 1, WORKER, lease(retry_at), retry_at)
        .await
        .unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 2));
    assert_eq!(again[0].last_error.as_deref(), Some("500"));
    store
        .finish_job(finish(
            &again[0],
            WORKER,
            JobResult::Dead {
                error: "still 500".into(),
            },
            retry_at,
        ))
        .await
        .unwrap();
    let dead = store.get_job(again[0].id).await.unwrap().unwrap();
    assert_eq!(
        (dead.state, dead.last_error.as_deref()),
        (JobState::Dead, Some("still 500"))
    );
    assert_eq!(store.count_jobs().await.unwrap(), []);

    let retried = store.retry_job(dead.id, retry_at).await.unwrap();

    assert_eq!((retried.state, retried.attempts), (JobState::Queued, 0));
    let refused = store.retry_job(dead.id, retry_at).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::NotDead {
                state: JobState::Queued,
                ..
            })
        ),
        "{refused:?}"
    );
    let unknown = store.retry_job(JobId(999_999), retry_at).await;
    assert!(matches!(unknown, Err(StoreError::JobNotFound(_))), "{unknown:?}");
}

async fn the_jobs_of_one_chain_run_one_at_a_time_in_order(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    store
        .enqueue_jobs(vec![
            plain_job(now, Some("k")),
            plain_job(now, Some("k")),
            plain_job(now, Some("other")),
        ])
        .await
        .unwrap();

    let claimed = store
        .claim_jobs(JobKind::Notify, 10, WORKER, lease(now), now)
        .await
        .unwrap();

    assert_eq!(claimed.len(), 2, "the first of `k` and the one of `other`");
    let first = claimed.iter().min_by_key(|job| job.id).unwrap();
    assert!(
        store
            .claim_jobs(JobKind::Notify, 10, WORKER, lease(now), now)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .finish_job(finish(first, WORKER, JobResult::Done, now))
        .await
        .unwrap();
    let next = store
        .claim_jobs(JobKind::Notify, 10, WORKER, lease(now), now)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0].id > first.id);
}

async fn an_expired_lease_lets_another_worker_claim_the_job(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    store.enqueue_jobs(vec![plain_job(now, Some("k"))]).await.unwrap();
    let first = store
        .claim_jobs(JobKind::Notify, 1, WORKER, now + Duration::seconds(1), now)
        .await
        .unwrap();

    let later = now + Duration::seconds(2);
    let second = store
        .claim_jobs(JobKind::Notify, 1, "worker-2", lease(later), later)
        .await
        .unwrap();

    assert_eq!(second.len(), 1);
    assert_eq!((second[0].id, second[0].attempts), (first[0].id, 2));
    assert_eq!(
        store
            .finish_job(finish(&first[0], WORKER, JobResult::Done, later))
            .await
            .unwrap(),
        Finished::Lost,
        "the lease is gone"
    );
    assert_eq!(
        store
            .finish_job(finish(&second[0], "worker-2", JobResult::Done, later))
            .await
            .unwrap(),
        Finished::Recorded
    );
}

async fn released_jobs_are_queued_again_without_the_attempt(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    store
        .enqueue_jobs(vec![plain_job(now, None), plain_job(now, None)])
        .await
        .unwrap();
    store
        .claim_jobs(JobKind::Notify, 2, WORKER, lease(now), now)
        .await
        .unwrap();

    let released = store.release_jobs(WORKER, now).await.unwrap();

    assert_eq!(released, 2);
    let again = store
        .claim_jobs(JobKind::Notify, 2, "worker-2", lease(now), now)
        .await
        .unwrap();
    assert_eq!(again.iter().map(|job| job.attempts).collect::<Vec<_>>(), [1, 1]);
}

async fn a_recurring_job_is_ensured_once(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    let housekeeping = || NewJob {
        payload: JobPayload::Housekeeping,
        incident_id: None,
        due_at: now,
        max_attempts: 1,
        chain: None,
    };

    let written = [
        store.ensure_job(housekeeping()).await.unwrap(),
        store.ensure_job(housekeeping()).await.unwrap(),
    ];

    assert_eq!(written, [true, false]);
    let claimed = store
        .claim_jobs(JobKind::Housekeeping, 5, WORKER, lease(now), now)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(!store.ensure_job(housekeeping()).await.unwrap(), "running counts too");
    store
        .finish_job(finish(&claimed[0], WORKER, JobResult::Done, now))
        .await
        .unwrap();
    assert!(store.ensure_job(housekeeping()).await.unwrap());
}

async fn finished_jobs_are_pruned_after_their_retention(db: TestDb) {
    let store = db.connect().await;
    let now = now();
    store
        .enqueue_jobs(vec![plain_job(now, None), plain_job(now, None)])
        .await
        .unwrap();
    let claimed = store
        .claim_jobs(JobKind::Notify, 1, WORKER, lease(now), now)
        .await
        .unwrap();
    store
        .finish_job(finish(&claimed[0], WORKER, JobResult::Done, now))
        .await
        .unwrap();

    assert_eq!(store.prune_jobs(now).await.unwrap(), 0, "done at `now`, not before");
    assert_eq!(store.prune_jobs(now + Duration::seconds(1)).await.unwrap(), 1);
    assert!(store.get_job(claimed[0].id).await.unwrap().is_none());
    assert_eq!(store.count_jobs().await.unwrap()[0].queued, 1, "the queued one stays");
}

/// What only the PostgreSQL backend promises: it is the one several replicas share.
mod postgres_only {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_starting_together_migrate_once() {
        run(Backend::Postgres, |db: TestDb| async move {
            let starts: Vec<_> = (0..4)
                .map(|_| {
                    let db = db.clone();
                    tokio::spawn(async move { db.connect().await })
                })
                .collect();
            let mut replicas = Vec::new();
            for start in starts {
                replicas.push(start.await.expect("every replica starts"));
            }

            let id = ingest_one(&*replicas[0], firing("fp", now())).await;
            assert!(replicas[3].get_incident(id).await.unwrap().is_some());
            let mut admin = PgConnection::connect(&db.url).await.unwrap();
            let versions: Vec<i32> = sqlx::query_scalar("SELECT version FROM schema_migrations")
                .fetch_all(&mut admin)
                .await
                .unwrap();
            assert_eq!(versions, (1..=11).collect::<Vec<i32>>());
        })
        .await;
    }

    /// A replica attaches a repeat to the incident it last saw open with a plain update;
    /// when another replica has resolved that incident meanwhile, the repeat opens a new one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_repeat_after_another_replica_resolved_the_incident_opens_a_new_one() {
        run(Backend::Postgres, |db: TestDb| async move {
            let (one, other) = (db.connect().await, db.connect().await);
            let at = now();
            let first = ingest_one(&*one, firing("fp", at)).await;
            // Seen open by `one`: these repeats attach through its update.
            let repeats = one
                .ingest(vec![firing("fp", at), firing("fp", at)], at, no_reactions())
                .await
                .unwrap();
            assert_eq!(repeats, [deduplicated(first, 2), deduplicated(first, 3)]);
            assert_eq!(one.get_incident(first).await.unwrap().unwrap().occurrence_count, 3);

            let resolved_at = at + Duration::minutes(1);
            other
                .ingest(vec![resolved("fp", resolved_at)], resolved_at, no_reactions())
                .await
                .unwrap();
            let again = at + Duration::minutes(2);
            let second = ingest_at(&*one, firing("fp", again), again).await;
            assert_ne!(second, first);
            let stored = one.get_incident(first).await.unwrap().unwrap();
            assert_eq!((stored.state, stored.occurrence_count), (State::Resolved, 3));
            assert_eq!(one.get_incident(second).await.unwrap().unwrap().occurrence_count, 1);
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_claiming_at_once_take_each_job_once() {
        run(Backend::Postgres, |db: TestDb| async move {
            let now = now();
            let replicas = [db.connect().await, db.connect().await, db.connect().await];
            replicas[0]
                .enqueue_jobs((0..600).map(|_| plain_job(now, None)).collect())
                .await
                .unwrap();

            let claims: Vec<_> = (0..12)
                .map(|worker| {
                    let store = replicas[worker % 3].clone();
                    tokio::spawn(async move {
                        let mut mine = Vec::new();
                        loop {
                            let name = format!("worker-{worker}");
                            let jobs = store
                                .claim_jobs(JobKind::Notify, 7, &name, lease(now), now)
                                .await
                                .unwrap();
                            if jobs.is_empty() {
                                return mine;
                            }
                            mine.extend(jobs.into_iter().map(|job| job.id));
                        }
                    })
                })
                .collect();
            let mut all = Vec::new();
            for claim in claims {
                all.extend(claim.await.unwrap());
            }

            let distinct: HashSet<JobId> = all.iter().copied().collect();
            assert_eq!((all.len(), distinct.len()), (600, 600), "every job claimed, none twice");
        })
        .await;
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_and_the_error_keeps_the_password_secret() {
        let result = lim_store::connect("postgres://lim:hunter2@127.0.0.1:1/lim", StoreOptions::default()).await;

        let message = match result {
            Err(StoreError::Unavailable(message)) => message,
            Err(other) => panic!("expected Unavailable, got {other:?}"),
            Ok(_) => panic!("connected to a closed port"),
        };
        assert!(message.contains("127.0.0.1:1"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}

// ---------------------------------------------------------------------------------------
// Data helpers
// ---------------------------------------------------------------------------------------

/// Both backends keep microseconds, so tests work with times that survive the round trip.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn firing(fingerprint: &str, occurred_at: DateTime<Utc>) -> Event {
    Event {
        source: Source::Sentinel,
        title: "latency high".into(),
        description: "p99 above 2 s".into(),
        severity: Severity::P1,
        category: Category::Performance,
        labels: BTreeMap::from([("model".into(), "gpt-x".into()), ("env".into(), "prod".into())]),
        fingerprint: fingerprint.into(),
        status: EventStatus::Firing,
        occurred_at,
        // Tests send many events at one instant; the redelivery tests say when they name it.
        occurred_at_given: false,
        classification: None,
    }
}

fn resolved(fingerprint: &str, occurred_at: DateTime<Utc>) -> Event {
    Event {
        status: EventStatus::Resolved,
        ..firing(fingerprint, occurred_at)
    }
}

fn event(fingerprint: &str, severity: Severity, source: Source, category: Category) -> Event {
    Event {
        severity,
        source,
        category,
        ..firing(fingerprint, now())
    }
}

async fn ingest_one(store: &dyn Store, event: Event) -> IncidentId {
    ingest_at(store, event, now()).await
}

/// Ingests `event` alone at `at`, and returns the id of the incident it opens.
async fn ingest_at(store: &dyn Store, event: Event, at: DateTime<Utc>) -> IncidentId {
    let outcomes = store.ingest(vec![event], at, no_reactions()).await.unwrap();
    created_id(&outcomes[0])
}

/// What counting an event of `firing()` on incident `id` reports.
fn deduplicated(incident_id: IncidentId, occurrence_count: i64) -> IngestOutcome {
    IngestOutcome::Deduplicated {
        incident_id,
        occurrence_count,
        source: Source::Sentinel,
        severity: Severity::P1,
        category: Category::Performance,
        raised_from: None,
    }
}

fn created_id(outcome: &IngestOutcome) -> IncidentId {
    match outcome {
        IngestOutcome::Created(incident) => incident.id,
        other => panic!("expected Created, got {other:?}"),
    }
}

fn first_page(limit: u32) -> PageRequest {
    PageRequest { limit, before: None }
}

async fn list_all(store: &dyn Store) -> Vec<Incident> {
    store
        .list_incidents(&IncidentFilter::default(), first_page(500))
        .await
        .unwrap()
}

/// No routes, no channels: changes cause nothing.
fn no_reactions() -> Arc<Reactions> {
    Arc::new(Reactions::default())
}

/// A new incident as a store without routes keeps it.
fn unrouted(incident: Incident) -> Opening {
    let now = incident.created_at;
    Reactions::default().open(incident, now)
}

fn entries(limit: u32) -> EntryPageRequest {
    EntryPageRequest { limit, after: None }
}

/// The whole timeline, read in pages of three (so that most tests also walk pages).
async fn whole_timeline(store: &dyn Store, id: IncidentId) -> Vec<TimelineEntry> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.timeline(id, EntryPageRequest { limit: 3, after }).await.unwrap();
        assert!(page.entries.len() <= 3);
        all.extend(page.entries);
        match page.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
}

fn ids(incidents: &[Incident]) -> Vec<IncidentId> {
    incidents.iter().map(|incident| incident.id).collect()
}

fn kinds(timeline: &[TimelineEntry]) -> Vec<TimelineKind> {
    timeline.iter().map(|entry| entry.kind).collect()
}

// ---------------------------------------------------------------------------------------
// Fixtures: a fresh database per test, removed afterwards whether the test passed or not
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where a test's database lives; connect to it as often as the test likes.
#[derive(Debug, Clone)]
struct TestDb {
    backend: Backend,
    url: String,
}

impl TestDb {
    async fn connect(&self) -> Arc<dyn Store> {
        self.connect_with(StoreOptions::default()).await
    }

    async fn connect_with(&self, options: StoreOptions) -> Arc<dyn Store> {
        match lim_store::connect(&self.url, options).await {
            Ok(store) => store,
            Err(error) => panic!("cannot open the {} test store: {error}", self.backend.name()),
        }
    }
}

/// Runs `test` on a fresh database of `backend`, then removes the database, even when
/// the test panicked (its panic is re-raised afterwards).
async fn run<T, F>(backend: Backend, test: T)
where
    T: FnOnce(TestDb) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let database = match backend {
        Backend::Sqlite => TestDatabase::sqlite(),
        Backend::Postgres => TestDatabase::postgres().await,
    };
    let db = TestDb {
        backend,
        url: database.url(),
    };
    let outcome = tokio::spawn(test(db)).await;
    database.drop_database().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
