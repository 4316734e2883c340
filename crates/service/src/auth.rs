//! API keys (DESIGN §9): made and hashed here, checked on every request of both APIs.
//!
//! - A key is `lim_` and 43 characters (32 random bytes, base64url); the store keeps its
//!   SHA-256 only. A presented key is hashed and compared with every known hash in
//!   constant time (keys are random, so a fast hash is enough: there is nothing to guess).
//! - Every process keeps the store's keys in memory and reads them again every
//!   [`REFRESH`], so a key created or revoked on one replica is accepted or refused on
//!   every one within a second; when a key is accepted is written back at the same pace.
//! - While no key exists at all the API is open (a fresh machine listens on loopback
//!   only; see `Application::build`); once one does (revoked ones count), every route but
//!   `/health/*` and the documentation wants one, with the scope the route needs.
//! - A client (an IP address) that fails `auth.max_failures` times (default
//!   [`MAX_FAILURES`]) within [`FAILURE_WINDOW`] gets 429 instead of 401 for every
//!   further failure until the window ends; a valid key from the same address still
//!   passes (clients behind one NAT or ingress share it, and a stale key of one must not
//!   lock the others out, nor make Alertmanager drop alerts).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use lim_domain::auth::{ApiKey, Scope, granted};
use lim_store::{Store, StoreError};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::telemetry::Metrics;

/// How often every process reads the keys again (and writes when they were last used).
pub const REFRESH: Duration = Duration::from_millis(500);
/// Failed attempts a client may make within [`FAILURE_WINDOW`] before it is refused
/// (the default of `auth.max_failures`).
pub const MAX_FAILURES: u32 = 20;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Clients whose failures are remembered at once; past it the oldest windows are dropped.
const MAX_TRACKED_CLIENTS: usize = 10_000;
const KEY_PREFIX: &str = "lim_";

/// Why a request was refused (the `reason` of `auth_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No key was sent.
    Missing,
    /// The key is not one of ours.
    Invalid,
    Revoked,
    /// The key lacks the scope the route needs.
    Forbidden(Scope),
    /// The client failed too often; it may try again after this many seconds.
    RateLimited(u64),
}

impl Refusal {
    pub const fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Invalid => "invalid",
            Refusal::Revoked => "revoked",
            Refusal::Forbidden(_) => "forbidden",
            Refusal::RateLimited(_) => "rate_limited",
        }
    }

    /// What the client is told (never anything of the key it sent).
    pub fn message(self) -> String {
        match self {
            Refusal::Missing => "this API wants a key: send `Authorization: Bearer KEY`".into(),
            Refusal::Invalid => "the key is not valid".into(),
            Refusal::Revoked => "the key has been revoked".into(),
            Refusal::Forbidden(scope) => format!("the key lacks the `{scope}` scope this route needs"),
            Refusal::RateLimited(seconds) => {
                format!("too many failed attempts from this client; try again in {seconds} s")
            }
        }
    }
}

/// A new key and the hash the store keeps of it.
pub fn new_key() -> (String, String) {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    (key, hash)
}

/// Equal in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0_u8, |difference, (x, y)| difference | (x ^ y)) == 0
}

/// A key as the check holds it.
struct Known {
    name: String,
    hash: [u8; 32],
    scopes: Vec<Scope>,
    revoked: bool,
}

struct Failures {
    started: Instant,
    count: u32,
}

pub struct Keys {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    known: RwLock<Arc<Vec<Known>>>,
    /// Names accepted since the last write-back.
    used: Mutex<HashSet<String>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    max_failures: u32,
    /// Bumped whenever a refresh finds that a key which held no longer does: long calls
    /// made with a key (a watch, an event stream) look again whether theirs still holds.
    revocations: watch::Sender<u64>,
}

/// The key a call was accepted with (a request extension, set by the gRPC check), so
/// that a long call can end when its key is revoked.
#[derive(Debug, Clone)]
pub struct AcceptedKey(pub String);

impl Keys {
    /// The store's keys, read now.
    pub async fn load(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        max_failures: u32,
    ) -> Result<Arc<Keys>, StoreError> {
        let keys = Arc::new(Keys {
            store,
            metrics,
            max_failures,
            known: RwLock::new(Arc::new(Vec::new())),
            used: Mutex::default(),
            failures: Mutex::default(),
            revocations: watch::Sender::new(0),
        });
        keys.refresh().await?;
        Ok(keys)
    }

    /// Whether any key exists (revoked ones included): the API then wants one.
    pub fn required(&self) -> bool {
        !self.snapshot().is_empty()
    }

    fn snapshot(&self) -> Arc<Vec<Known>> {
        Arc::clone(&self.known.read().unwrap_or_else(PoisonError::into_inner))
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        let known: Vec<Known> = self
            .store
            .api_keys()
            .await?
            .into_iter()
            .map(|key| {
                // A stored hash that cannot be read matches no key but still counts as a
                // key: the API must not open because a row is damaged.
                let mut hash = [0_u8; 32];
                let readable = hex::decode_to_slice(&key.hash, &mut hash).is_ok();
                if !readable {
                    tracing::error!(key = %key.name, "the stored hash of this API key cannot be read; it matches nothing");
                }
                Known {
                    name: key.name,
                    hash,
                    scopes: key.scopes,
                    revoked: key.revoked_at.is_some() || !readable,
                }
            })
            .collect();
        // A key that held and no longer does (revoked, or its row gone): the calls made
        // with it look again (`holds`).
        let lost = {
            let mut current = self.known.write().unwrap_or_else(PoisonError::into_inner);
            let lost = current
                .iter()
                .filter(|key| !key.revoked)
                .any(|key| !known.iter().any(|now| now.name == key.name && !now.revoked));
            *current = Arc::new(known);
            lost
        };
        if lost {
            self.revocations.send_modify(|generation| *generation += 1);
        }
        Ok(())
    }

    /// Signals each time a refresh finds that a key which held no longer does.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Whether the key called `name` is still accepted (it exists and is not revoked).
    pub fn holds(&self, name: &str) -> bool {
        self.snapshot().iter().any(|key| key.name == name && !key.revoked)
    }

    /// Reads the keys again and writes when keys were used, every [`REFRESH`], until `stopped`.
    pub async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(REFRESH);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped.changed() => return,
            }
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "cannot read the API keys; the last ones read stay");
            }
            let used: Vec<String> = std::mem::take(&mut *self.used.lock().unwrap_or_else(PoisonError::into_inner))
                .into_iter()
                .collect();
            if !used.is_empty()
                && let Err(error) = self.store.touch_api_keys(used, Utc::now()).await
            {
                tracing::warn!(%error, "cannot record when the API keys were last used");
            }
        }
    }

    /// Whether `credential` (the key a request sent, if any) from `client` may do what
    /// `needed` allows; the name of the key when one was needed and accepted.
    pub fn check(
        &self,
        client: Option<IpAddr>,
        credential: Option<&str>,
        needed: Scope,
    ) -> Result<Option<String>, Refusal> {
        let known = self.snapshot();
        if known.is_empty() {
            return Ok(None);
        }
        let Some(credential) = credential.filter(|credential| !credential.is_empty()) else {
            return self.refuse(Refusal::Missing, client);
        };
        let presented: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
        // Every hash is compared, whichever matches.
        let mut matched = None;
        for key in known.iter() {
            if constant_time_eq(&key.hash, &presented) {
                matched = Some(key);
            }
        }
        let Some(key) = matched else {
            return self.refuse(Refusal::Invalid, client);
        };
        if key.revoked {
            return self.refuse(Refusal::Revoked, client);
        }
        if !granted(&key.scopes, needed) {
            // A valid key on the wrong route is no guess: it does not count towards the limit.
            return self.refuse(Refusal::Forbidden(needed), None);
        }
        self.used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.name.clone());
        Ok(Some(key.name.clone()))
    }

    /// Refuses a request; a failure `counted_against` a client that has failed too often
    /// already is answered 429 instead (a valid key from the same address still passes:
    /// many clients may share one, behind a NAT or an ingress).
    fn refuse(&self, refusal: Refusal, counted_against: Option<IpAddr>) -> Result<Option<String>, Refusal> {
        let refusal = match counted_against.and_then(|client| self.blocked(client)) {
            Some(seconds) => Refusal::RateLimited(seconds),
            None => refusal,
        };
        self.metrics.auth_failed(refusal.reason());
        if let Some(client) = counted_against {
            // At most two lines a client a minute, whatever it sends: its first failure,
            // and the one that holds it off.
            let failures = self.failed(client);
            if failures == 1 {
                tracing::info!(
                    %client,
                    reason = refusal.reason(),
                    "refused an API request for its key; this client's further failures within a minute are not logged unless it is held off"
                );
            }
            if failures == self.max_failures {
                tracing::warn!(
                    %client,
                    failures,
                    "a client failed to authenticate auth.max_failures times within a minute; its further failures are answered 429 until the minute ends"
                );
            }
        }
        Err(refusal)
    }

    /// Seconds left of the client's block, when it has failed too often.
    fn blocked(&self, client: IpAddr) -> Option<u64> {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let window = failures.get(&client)?;
        let elapsed = window.started.elapsed();
        (window.count >= self.max_failures && elapsed < FAILURE_WINDOW)
            .then(|| (FAILURE_WINDOW - elapsed).as_secs().max(1))
    }

    /// Counts a failure of `client`; how many it has made in its current window.
    fn failed(&self, client: IpAddr) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_TRACKED_CLIENTS && !failures.contains_key(&client) {
            failures.retain(|_, window| window.started.elapsed() < FAILURE_WINDOW);
            if failures.len() >= MAX_TRACKED_CLIENTS {
                failures.clear();
            }
        }
        let window = failures.entry(client).or_insert(Failures {
            started: Instant::now(),
            count: 0,
        });
        if window.started.elapsed() >= FAILURE_WINDOW {
            *window = Failures {
                started: Instant::now(),
                count: 0,
            };
        }
        window.count += 1;
        window.count
    }
}

/// The key of an `Authorization` header: `Bearer KEY`, or `Basic` with the key as the
/// password (what Alertmanager's `http_config.basic_auth` sends).
pub fn credential(authorization: Option<&str>) -> Option<String> {
    let value = authorization?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        return decoded.split_once(':').map(|(_, password)| password.to_owned());
    }
    None
}

/// The scope an HTTP route needs (`path` is its template); `None` for the open ones.
pub fn http_scope(method: &str, path: &str) -> Option<Scope> {
    if path.starts_with("/health/") || path == "/openapi.json" || path.starts_with("/docs") {
        return None;
    }
    Some(match (method, path) {
        ("POST", "/v1/events" | "/v1/integrations/alertmanager") => Scope::Ingest,
        ("POST", "/-/reload") => Scope::Admin,
        ("GET" | "HEAD", _) => Scope::Read,
        _ => Scope::Write,
    })
}

/// The scope a gRPC method needs (`/package.Service/Method`); `None` for the open ones.
pub fn grpc_scope(path: &str) -> Option<Scope> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    match service {
        "grpc.health.v1.Health" => None,
        "incident_manager.v1.EventService" => Some(Scope::Ingest),
        "incident_manager.v1.IncidentService" => Some(match method {
            "GetIncident" | "ListIncidents" | "GetTimeline" | "WatchIncidents" => Scope::Read,
            _ => Scope::Write,
        }),
        // Reflection, and any path no service answers.
        _ => Some(Scope::Read),
    }
}

/// A key as `keys list` shows it: never the key, nor its hash.
pub fn listed(key: &ApiKey) -> serde_json::Value {
    let time = |at: Option<DateTime<Utc>>| at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    serde_json::json!({
        "name": key.name,
        "scopes": key.scopes.iter().map(|scope| scope.as_str()).collect::<Vec<_>>(),
        "created_at": time(Some(key.created_at)),
        "last_used_at": time(key.last_used_at),
        "revoked_at": time(key.revoked_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_their_hash_is_sha256() {
        let (key, hash) = new_key();
        let (other, _) = new_key();
        assert_ne!(key, other);
        assert!(key.starts_with("lim_") && key.len() == 47, "{key}");
        assert_eq!(hash, hex::encode(Sha256::digest(key.as_bytes())));
        assert_eq!(hash.len(), 64);
    }

    #[test]
    fn the_key_is_read_from_bearer_or_basic() {
        assert_eq!(credential(Some("Bearer lim_x")).as_deref(), Some("lim_x"));
        assert_eq!(credential(Some("bearer   lim_x ")).as_deref(), Some("lim_x"));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alertmanager:lim_y")
        );
        assert_eq!(credential(Some(&basic)).as_deref(), Some("lim_y"));
        assert_eq!(credential(Some("Token lim_x")), None);
        assert_eq!(credential(Some("Basic !!!")), None);
        assert_eq!(credential(None), None);
    }

    #[test]
    fn routes_need_the_scopes_of_design_9() {
        assert_eq!(http_scope("POST", "/v1/events"), Some(Scope::Ingest));
        assert_eq!(http_scope("POST", "/v1/integrations/alertmanager"), Some(Scope::Ingest));
        assert_eq!(http_scope("GET", "/v1/incidents/{id}"), Some(Scope::Read));
        assert_eq!(http_scope("POST", "/v1/incidents/{id}/acknowledge"), Some(Scope::Write));
        assert_eq!(http_scope("DELETE", "/v1/silences/{id}"), Some(Scope::Write));
        assert_eq!(http_scope("POST", "/v1/jobs/{id}/retry"), Some(Scope::Write));
        assert_eq!(http_scope("POST", "/-/reload"), Some(Scope::Admin));
        assert_eq!(http_scope("GET", "/health/ready"), None);
        assert_eq!(
            grpc_scope("/incident_manager.v1.EventService/StreamEvents"),
            Some(Scope::Ingest)
        );
        assert_eq!(
            grpc_scope("/incident_manager.v1.IncidentService/WatchIncidents"),
            Some(Scope::Read)
        );
        assert_eq!(
            grpc_scope("/incident_manager.v1.IncidentService/ResolveIncident"),
            Some(Scope::Write)
        );
        assert_eq!(grpc_scope("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            grpc_scope("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Some(Scope::Read)
        );
    }

    #[test]
    fn equal_hashes_and_unequal_ones() {
        let a = [7_u8; 32];
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
    }
}

/// The HTTP API's check: the route's scope (from its template), the key of the
/// `Authorization` header, the client's address.
pub async fn require_key(
    axum::extract::State(keys): axum::extract::State<Arc<Keys>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;

    let path = request.extensions().get::<axum::extract::MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |matched| matched.as_str().to_owned(),
    );
    let Some(needed) = http_scope(request.method().as_str(), &path) else {
        return next.run(request).await;
    };
    let authorization = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match keys.check(client_of(&request), credential(authorization).as_deref(), needed) {
        Ok(_) => next.run(request).await,
        Err(refusal) => {
            let mut response = crate::http::error::ApiError::new(kind_of(refusal), refusal.message()).into_response();
            if let Refusal::RateLimited(seconds) = refusal {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, seconds.into());
            }
            if matches!(refusal, Refusal::Missing | Refusal::Invalid | Refusal::Revoked) {
                response.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            response
        }
    }
}

/// The gRPC API's check: the method's scope, the key of the `authorization` metadata.
pub async fn require_grpc_key(
    axum::extract::State(keys): axum::extract::State<Arc<Keys>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(needed) = grpc_scope(request.uri().path()) else {
        return next.run(request).await;
    };
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok());
    match keys.check(client_of(&request), credential(authorization).as_deref(), needed) {
        Ok(accepted) => {
            let mut request = request;
            if let Some(name) = accepted {
                request.extensions_mut().insert(AcceptedKey(name));
            }
            next.run(request).await
        }
        Err(refusal) => {
            let kind = kind_of(refusal);
            crate::grpc::status::status(kind, &refusal.message()).into_http::<axum::body::Body>()
        }
    }
}

fn kind_of(refusal: Refusal) -> lim_domain::ErrorKind {
    match refusal {
        Refusal::Missing | Refusal::Invalid | Refusal::Revoked => lim_domain::ErrorKind::Unauthenticated,
        Refusal::Forbidden(_) => lim_domain::ErrorKind::Forbidden,
        Refusal::RateLimited(_) => lim_domain::ErrorKind::RateLimited,
    }
}

/// The address the request came from (set by the connection loop, `http/server.rs`).
fn client_of(request: &axum::extract::Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

/// The `/metrics` listener's check when `metrics.token` is set: `Authorization: Bearer TOKEN`.
pub async fn require_metrics_token(
    axum::extract::State((token, metrics)): axum::extract::State<(Arc<str>, Arc<Metrics>)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;

    let sent = credential(
        request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok()),
    );
    let expected: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let refusal = match sent {
        None => Refusal::Missing,
        Some(sent) if constant_time_eq(&Sha256::digest(sent.as_bytes()).into(), &expected) => {
            return next.run(request).await;
        }
        Some(_) => Refusal::Invalid,
    };
    metrics.auth_failed(refusal.reason());
    let mut response = (
        axum::http::StatusCode::UNAUTHORIZED,
        "this listener wants `Authorization: Bearer TOKEN` (metrics.token)\n",
    )
        .into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// `keys create|list|revoke`: the operator's commands, run against the store itself (as
/// `migrate` is), so that the first key needs no key.
#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Create a key and print it once (only its hash is stored).
    Create {
        /// A name for the key, e.g. `alertmanager` or `ci-deploy`.
        #[arg(long)]
        name: String,
        /// Comma-separated: ingest, read, write (includes read), admin (everything).
        #[arg(long = "scope", value_name = "SCOPE[,SCOPE…]")]
        scopes: String,
        #[command(flatten)]
        store: crate::config::Overrides,
    },
    /// List the keys: names, scopes, creation, last use, revocation; never a key.
    List {
        #[command(flatten)]
        store: crate::config::Overrides,
    },
    /// Revoke a key: every replica refuses it within a second.
    Revoke {
        name: String,
        #[command(flatten)]
        store: crate::config::Overrides,
    },
}

impl KeyCommand {
    pub fn overrides(&self) -> &crate::config::Overrides {
        match self {
            KeyCommand::Create { store, .. } | KeyCommand::List { store } | KeyCommand::Revoke { store, .. } => store,
        }
    }
}

/// Runs a key command against the store `settings` name; what it prints goes to stdout.
pub async fn run_key_command(command: KeyCommand, settings: &crate::config::Settings) -> anyhow::Result<String> {
    let options = lim_store::StoreOptions {
        max_connections: 1,
        ..lim_store::StoreOptions::default()
    };
    let store = lim_store::connect(&settings.database.url, options).await?;
    let now = Utc::now();
    Ok(match command {
        KeyCommand::Create { name, scopes, .. } => {
            let name = lim_domain::auth::key_name(&name).map_err(|reason| anyhow::anyhow!("--name: {reason}"))?;
            let scopes = lim_domain::auth::scopes(&scopes).map_err(|reason| anyhow::anyhow!("--scope: {reason}"))?;
            let (key, hash) = new_key();
            store
                .create_api_key(ApiKey {
                    name: name.clone(),
                    hash,
                    scopes: scopes.clone(),
                    created_at: now,
                    last_used_at: None,
                    revoked_at: None,
                })
                .await?;
            eprintln!(
                "created key `{name}` ({}); it is shown once, here: keep it now",
                lim_domain::auth::scopes_text(&scopes)
            );
            format!("{key}\n")
        }
        KeyCommand::List { .. } => {
            let keys: Vec<serde_json::Value> = store.api_keys().await?.iter().map(listed).collect();
            format!("{}\n", serde_json::to_string_pretty(&keys)?)
        }
        KeyCommand::Revoke { name, .. } => {
            let key = store.revoke_api_key(&name, now).await?;
            format!("{}\n", serde_json::to_string_pretty(&listed(&key))?)
        }
    })
}
