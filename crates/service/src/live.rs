//! The part of the configuration that changes while the service runs (DESIGN §7): routes,
//! channels, people, schedules, escalation policies and the event rules. SIGHUP and
//! `POST /-/reload` read the file again; a file that does not load keeps the running
//! configuration, says why, and sets `config_last_reload_successful` to 0.
//!
//! Every user of these settings takes the current snapshot once per request or job, so a
//! reload never changes them halfway through one.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::Context;
use lim_domain::{EventRules, Reactions};
use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::config::{self, Overrides, Person, Settings};
use crate::llm::LlmClient;
use crate::notify::Channels;
use crate::telemetry::Metrics;

/// One consistent snapshot of what can be reloaded.
pub struct Live {
    pub reactions: Arc<Reactions>,
    pub channels: Arc<Channels>,
    pub people: BTreeMap<String, Person>,
    /// The channels that reach each person, one per contact.
    pub contact_channels: BTreeMap<String, Vec<String>>,
    pub rules: EventRules,
    /// The configured LLM provider; none with the offline classifier alone.
    pub llm: Option<Arc<LlmClient>>,
}

impl Live {
    /// Reactions and rules alone: no channel, no person (tests of the core).
    pub fn with(reactions: Reactions, rules: EventRules) -> Live {
        Live {
            reactions: Arc::new(reactions),
            channels: Arc::new(Channels::new(&BTreeMap::new()).expect("no channel to set up")),
            people: BTreeMap::new(),
            contact_channels: BTreeMap::new(),
            rules,
            llm: None,
        }
    }

    pub fn from_settings(settings: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Live> {
        Live::build(settings, metrics, None)
    }

    /// The snapshot of `settings`; with `running_llm`, the LLM client already running is
    /// kept (its circuit breaker, its limit of requests at once and its connections) rather
    /// than made anew: a reload that leaves `[llm]` unchanged must not reset them.
    fn build(
        settings: &Settings,
        metrics: Arc<Metrics>,
        running_llm: Option<Option<Arc<LlmClient>>>,
    ) -> anyhow::Result<Live> {
        let channels = Channels::new(&settings.channels).context("cannot set up the channels")?;
        let contact_channels = settings
            .people
            .iter()
            .map(|(name, person)| {
                let channels = person.contact_channels(&settings.channels);
                (name.clone(), channels.into_iter().map(str::to_owned).collect())
            })
            .collect();
        let llm = match running_llm {
            Some(running) => running,
            None => LlmClient::new(&settings.llm, metrics)
                .context("cannot set up the LLM provider")?
                .map(Arc::new),
        };
        Ok(Live {
            llm,
            reactions: Arc::new(config::reactions(settings)),
            channels: Arc::new(channels),
            people: settings.people.clone(),
            contact_channels,
            rules: settings.events,
        })
    }
}

/// The current snapshot, replaced whole by a reload.
pub struct LiveConfig {
    current: RwLock<Arc<Live>>,
}

impl LiveConfig {
    pub fn new(live: Live) -> LiveConfig {
        LiveConfig {
            current: RwLock::new(Arc::new(live)),
        }
    }

    pub fn current(&self) -> Arc<Live> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn replace(&self, live: Live) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(live);
    }
}

/// Reads the configuration again, from where it was read at start.
pub struct Reloader {
    source: Overrides,
    /// What only a restart changes (listeners, database, job executor, log), as it
    /// was loaded, to warn when a reload finds it changed.
    restart_only: std::sync::Mutex<Vec<(&'static str, String)>>,
    /// The `[llm]` settings running, so that a reload keeps its client when they are equal.
    llm: std::sync::Mutex<crate::config::LlmSettings>,
    live: Arc<LiveConfig>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    /// One reload at a time.
    running: Mutex<()>,
}

impl Reloader {
    pub fn new(
        source: Overrides,
        loaded: &Settings,
        live: Arc<LiveConfig>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Reloader {
        metrics.config_reloaded(true, clock.now());
        metrics.set_escalation_policies(last_levels(loaded));
        Reloader {
            source,
            restart_only: std::sync::Mutex::new(restart_only(loaded)),
            llm: std::sync::Mutex::new(loaded.llm.clone()),
            live,
            metrics,
            clock,
            running: Mutex::new(()),
        }
    }

    /// Loads the configuration and, when it is valid, makes its reloadable part current.
    /// The error says why the file was refused; the running configuration then stays.
    pub async fn reload(&self) -> Result<(), String> {
        let _one_at_a_time = self.running.lock().await;
        let (source, metrics) = (self.source.clone(), Arc::clone(&self.metrics));
        let running_llm = (
            self.llm.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            self.live.current().llm.clone(),
        );
        // Reading files and secrets is blocking work.
        let loaded = tokio::task::spawn_blocking(move || {
            let settings = Settings::load(&source).map_err(|error| error.to_string())?;
            let (running_settings, running_client) = running_llm;
            let keep = (settings.llm == running_settings).then_some(running_client);
            let live = Live::build(&settings, metrics, keep).map_err(|error| format!("{error:#}"))?;
            Ok::<_, String>((settings, live))
        })
        .await
        .map_err(|error| format!("the reload failed: {error}"))
        .and_then(|result| result);
        let (settings, live) = match loaded {
            Ok(loaded) => loaded,
            Err(reason) => {
                self.metrics.config_reloaded(false, self.clock.now());
                tracing::error!(%reason, "configuration reload refused; the running configuration stays");
                return Err(reason);
            }
        };
        let changed = {
            let mut before = self.restart_only.lock().unwrap_or_else(PoisonError::into_inner);
            let now = restart_only(&settings);
            let changed: Vec<&str> = before
                .iter()
                .zip(&now)
                .filter(|(old, new)| old.1 != new.1)
                .map(|(old, _)| old.0)
                .collect();
            *before = now;
            changed
        };
        if !changed.is_empty() {
            tracing::warn!(
                sections = %changed.join(", "),
                "these settings changed in the file and take effect at the next restart"
            );
        }
        self.live.replace(live);
        *self.llm.lock().unwrap_or_else(PoisonError::into_inner) = settings.llm.clone();
        self.metrics.config_reloaded(true, self.clock.now());
        self.metrics.set_escalation_policies(last_levels(&settings));
        tracing::info!("configuration reloaded");
        Ok(())
    }
}

/// The settings a reload cannot change, each as its section name and a rendering to
/// compare (secrets render as `***`).
fn restart_only(settings: &Settings) -> Vec<(&'static str, String)> {
    vec![
        ("http", format!("{:?}", settings.http)),
        (
            "grpc",
            format!("{:?} {:?}", settings.grpc_addr, settings.grpc_max_message_bytes),
        ),
        // A token is compared by its digest: these renderings are kept, never logged.
        (
            "metrics",
            format!(
                "{:?} {:?}",
                settings.metrics_addr,
                settings
                    .metrics_token
                    .as_ref()
                    .map(|token| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.expose())))
            ),
        ),
        (
            "auth",
            format!("{:?} {:?}", settings.allow_anonymous, settings.auth_max_failures),
        ),
        ("database", format!("{:?}", settings.database)),
        (
            "jobs",
            format!(
                "{:?} {:?} {:?} {:?}",
                settings.jobs.backoff, settings.jobs.concurrency, settings.jobs.retention, settings.jobs.lease
            ),
        ),
        ("log", format!("{:?}", settings.log)),
    ]
}

/// Each escalation policy's name and its number of levels (the last level's number).
fn last_levels(settings: &Settings) -> impl Iterator<Item = (&str, usize)> {
    settings
        .policies
        .iter()
        .map(|(name, policy)| (name.as_str(), policy.levels.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn settings(toml: &str) -> Settings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, toml).unwrap();
        Settings::load(&Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap()
    }

    fn metrics_rendering(settings: &Settings) -> String {
        restart_only(settings)
            .into_iter()
            .find(|(section, _)| *section == "metrics")
            .unwrap()
            .1
    }

    #[test]
    fn a_rotated_metrics_token_is_a_change_that_needs_a_restart_and_is_never_rendered() {
        let first = settings("[metrics]\ntoken = \"first-scrape-token\"\n");
        let same = settings("[metrics]\ntoken = \"first-scrape-token\"\n");
        let rotated = settings("[metrics]\ntoken = \"second-scrape-token\"\n");
        assert_eq!(metrics_rendering(&first), metrics_rendering(&same));
        assert_ne!(metrics_rendering(&first), metrics_rendering(&rotated));
        for settings in [&first, &rotated] {
            assert!(!metrics_rendering(settings).contains("scrape-token"));
        }
    }
}
