//! Wiring: settings in, listeners bound, servers run until a shutdown signal.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use lim_domain::JobKind;
use lim_store::StoreOptions;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{Overrides, Settings};
use crate::grpc::{GrpcOptions, WatchHub};
use crate::http::server::{self, ConnectionLimits};
use crate::http::{self, HttpOptions};
use crate::incidents::IncidentManager;
use crate::jobs::{Escalator, Executor, Handler, Housekeeping, Notifier, SilenceCache, Triage};
use crate::live::{Live, LiveConfig, Reloader};
use crate::telemetry::{Metrics, exporter};

pub struct Application {
    keys: Arc<crate::auth::Keys>,
    metrics_token: Option<Arc<str>>,
    http_listener: TcpListener,
    grpc_listener: TcpListener,
    grpc_options: GrpcOptions,
    hub: Arc<WatchHub>,
    metrics_listener: TcpListener,
    manager: Arc<IncidentManager>,
    reloader: Arc<Reloader>,
    metrics: Arc<Metrics>,
    executor: Arc<Executor>,
    http_options: HttpOptions,
    connection_limits: ConnectionLimits,
}

impl Application {
    /// Opens and migrates the store and binds every listener (port 0 picks a free port).
    /// `source` is where `settings` were read from: a reload (SIGHUP, `POST /-/reload`)
    /// reads them from there again.
    pub async fn build(settings: &Settings, source: Overrides, clock: Arc<dyn Clock>) -> anyhow::Result<Application> {
        let backend = if settings.database.url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        };
        let metrics = Arc::new(Metrics::new(backend));
        let observer_metrics = Arc::clone(&metrics);
        let options = StoreOptions {
            max_connections: settings.database.max_connections,
            max_queued_events: settings.database.max_queued_events,
            ingest_writers: settings.database.ingest_writers,
            statement_cache: settings.database.statement_cache,
            observer: Some(Arc::new(move |operation, elapsed| {
                observer_metrics.query_finished(operation, elapsed)
            })),
        };
        let store = lim_store::connect(&settings.database.url, options)
            .await
            .with_context(|| format!("cannot open the store at {}", redact(&settings.database.url)))?;
        crate::tls::install_crypto_provider();
        let live = Arc::new(LiveConfig::new(Live::from_settings(settings, Arc::clone(&metrics))?));
        let silences = Arc::new(SilenceCache::new());
        let handlers: BTreeMap<JobKind, Arc<dyn Handler>> = BTreeMap::from([
            (
                JobKind::Notify,
                Arc::new(Notifier::new(
                    Arc::clone(&store),
                    Arc::clone(&live),
                    Arc::clone(&silences),
                    settings.http.public_url.clone(),
                )) as Arc<dyn Handler>,
            ),
            (
                JobKind::Escalate,
                Arc::new(Escalator::new(
                    Arc::clone(&store),
                    Arc::clone(&live),
                    Arc::clone(&silences),
                )),
            ),
            (
                JobKind::LlmClassify,
                Arc::new(Triage::new(Arc::clone(&store), Arc::clone(&live), Arc::clone(&metrics))),
            ),
            (
                JobKind::LlmInsights,
                Arc::new(Triage::new(Arc::clone(&store), Arc::clone(&live), Arc::clone(&metrics))),
            ),
            (
                JobKind::Housekeeping,
                Arc::new(Housekeeping::new(
                    Arc::clone(&store),
                    Arc::clone(&metrics),
                    settings.jobs.retention,
                )),
            ),
        ]);
        let executor = Arc::new(Executor::new(
            Arc::clone(&store),
            Arc::clone(&metrics),
            Arc::clone(&clock),
            settings.jobs.clone(),
            handlers,
            settings.http.drain_timeout,
        ));
        let reloader = Arc::new(Reloader::new(
            source,
            settings,
            Arc::clone(&live),
            Arc::clone(&metrics),
            Arc::clone(&clock),
        ));
        let keys = crate::auth::Keys::load(Arc::clone(&store), Arc::clone(&metrics), settings.auth_max_failures)
            .await
            .context("cannot read the API keys")?;
        let exposed = settings.exposed_listeners();
        if !keys.required() && !settings.allow_anonymous && !exposed.is_empty() {
            let listeners: Vec<String> = exposed.iter().map(|(key, addr)| format!("{key} {addr}")).collect();
            anyhow::bail!(
                "refusing to serve the API on {} with no API key: anyone who can reach it could resolve \
                 incidents. Create a key first (`llm-incident-manager keys create --name NAME --scope admin`, \
                 with the same --config or --database-url), listen on a loopback address, or set \
                 `auth.allow_anonymous = true` to serve it open on purpose",
                listeners.join(" and ")
            );
        }
        let hub = WatchHub::new(Arc::clone(&store));
        let manager = Arc::new(
            IncidentManager::new(store, clock, Arc::clone(&metrics), live, silences)
                .with_reloader(Arc::clone(&reloader)),
        );
        // incidents_active starts from the store's truth, not from zero.
        manager.refresh_metrics().await.context("cannot count open incidents")?;

        let http_listener = TcpListener::bind(settings.http.addr)
            .await
            .with_context(|| format!("cannot listen on http.addr {}", settings.http.addr))?;
        let grpc_listener = TcpListener::bind(settings.grpc_addr)
            .await
            .with_context(|| format!("cannot listen on grpc.addr {}", settings.grpc_addr))?;
        let grpc_options = GrpcOptions {
            max_message_bytes: settings.grpc_max_message_bytes,
            idle_timeout: settings.http.body_timeout,
        };
        let metrics_listener = TcpListener::bind(settings.metrics_addr)
            .await
            .with_context(|| format!("cannot listen on metrics.addr {}", settings.metrics_addr))?;
        let http_options = HttpOptions {
            max_body_bytes: settings.http.max_body_bytes,
            max_uri_bytes: settings.http.max_uri_bytes,
            request_timeout: settings.http.request_timeout,
            body_timeout: settings.http.body_timeout,
        };
        let connection_limits = ConnectionLimits {
            header_timeout: settings.http.header_timeout,
            drain_timeout: settings.http.drain_timeout,
        };
        Ok(Application {
            keys,
            metrics_token: settings.metrics_token.as_ref().map(|token| Arc::from(token.expose())),
            http_listener,
            grpc_listener,
            grpc_options,
            hub,
            metrics_listener,
            manager,
            reloader,
            metrics,
            executor,
            http_options,
            connection_limits,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_listener.local_addr().expect("bound listener has an address")
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener.local_addr().expect("bound listener has an address")
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight
    /// finish (for at most `http.drain_timeout`), and closes the store (the SQLite writer
    /// commits what it holds).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let until = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let api = http::router(
            Arc::clone(&self.manager),
            Arc::clone(&self.metrics),
            Arc::clone(&self.keys),
            &self.http_options,
        );
        let metrics_api = exporter::metrics_router(Arc::clone(&self.manager), self.metrics_token.clone());
        let key_refreshes = tokio::spawn(Arc::clone(&self.keys).run(stopped.clone()));
        let (grpc_api, reporter) = crate::grpc::router(
            Arc::clone(&self.manager),
            Arc::clone(&self.hub),
            Arc::clone(&self.metrics),
            Arc::clone(&self.keys),
            self.grpc_options,
        );
        // Every service has its health status before the first gRPC call is served.
        let mut health = crate::grpc::Health::new(Arc::clone(&self.manager), reporter);
        health.report().await;
        tracing::info!(http = %self.http_addr(), grpc = %self.grpc_addr(), metrics = %self.metrics_addr(), "serving");
        let limits = self.connection_limits;
        let api_server = server::serve(self.http_listener, api, limits, until(stopped.clone()));
        // Watches end at the signal (UNAVAILABLE), so that none holds the drain.
        let hub = Arc::clone(&self.hub);
        let grpc_stopped = until(stopped.clone());
        let grpc_server = server::serve(self.grpc_listener, grpc_api, limits, async move {
            grpc_stopped.await;
            hub.close();
        });
        let health_reports = tokio::spawn(health.keep(stopped.clone()));
        let metrics_server = server::serve(self.metrics_listener, metrics_api, limits, until(stopped.clone()));
        // SIGHUP reads the configuration again, as `POST /-/reload` does.
        let reloads = tokio::spawn(reload_on_hangup(Arc::clone(&self.reloader), stopped.clone()));
        // The executor stops claiming at the signal too; its running jobs get the same
        // drain period, then are handed back.
        let jobs = Arc::clone(&self.executor).run(stopped);
        let (api_result, grpc_result, metrics_result, ()) = tokio::join!(api_server, grpc_server, metrics_server, jobs);
        reloads.abort();
        health_reports.abort();
        key_refreshes.abort();
        api_result.context("HTTP API server failed")?;
        grpc_result.context("gRPC API server failed")?;
        metrics_result.context("metrics server failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Reloads the configuration at every SIGHUP until `stopped`.
async fn reload_on_hangup(reloader: Arc<Reloader>, mut stopped: watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        };
        loop {
            tokio::select! {
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP received; reloading the configuration");
                    // The outcome is logged and in the reload metrics.
                    let _ = reloader.reload().await;
                }
                changed = stopped.changed() => {
                    if changed.is_err() || *stopped.borrow() {
                        return;
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
        let _ = stopped.changed().await;
    }
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
