//! The LLM client (DESIGN §5): one small client per wire format (OpenAI Chat Completions,
//! which Azure OpenAI and OpenAI-compatible servers speak too; Anthropic Messages) behind
//! one trait, and the resilience every provider shares in one place: a timeout per
//! request, a concurrency limit, a circuit breaker, the error taxonomy, and the metrics of
//! every request. Retries are the job executor's (each attempt of an `llm_*` job is one
//! request, so an operation makes at most `max_retries + 1` requests in all, whatever
//! fails), and they honour a provider's `Retry-After`.

mod anthropic;
mod openai;
pub mod prompts;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lim_domain::triage::{LlmErrorType, LlmOperation, LlmProvider};
use tokio::sync::Semaphore;

use crate::config::{LlmSettings, Price};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{LlmRequestLabels, LlmUsage};

/// What is sent: instructions, the incident as delimited data, and the JSON schema the
/// answer must follow.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub operation: LlmOperation,
    pub system: String,
    pub user: String,
    /// The answer's schema (an object whose every key is required).
    pub schema: serde_json::Value,
}

/// A provider's answer: the model's text (a JSON object) and the tokens it counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmError {
    pub kind: LlmErrorType,
    /// Safe to show: never the key, nor the provider's URL.
    pub message: String,
    /// How long the provider asked to wait (`Retry-After`), or the breaker's cooldown left.
    pub retry_after: Option<Duration>,
}

impl LlmError {
    fn new(kind: LlmErrorType, message: impl Into<String>) -> LlmError {
        LlmError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Another attempt cannot succeed: the provider refused the key or the request itself.
    pub fn permanent(&self) -> bool {
        matches!(self.kind, LlmErrorType::Authentication | LlmErrorType::InvalidRequest)
    }
}

impl std::fmt::Display for LlmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// One wire format: how a prompt becomes a request, and a response body a reply.
trait WireFormat: Send + Sync {
    fn request(&self, http: &reqwest::Client, prompt: &Prompt) -> reqwest::RequestBuilder;
    /// The model's text and usage in a successful response body; an error names what is
    /// missing (an `invalid_response`).
    fn reply(&self, body: &[u8]) -> Result<Reply, String>;
}

/// The configured provider, with its breaker, its concurrency limit and its metrics.
pub struct LlmClient {
    provider: LlmProvider,
    model: String,
    format: Box<dyn WireFormat>,
    http: reqwest::Client,
    timeout: Duration,
    price: Option<Price>,
    permits: Semaphore,
    breaker: Breaker,
    metrics: std::sync::Arc<Metrics>,
}

impl LlmClient {
    /// The client of `settings`' provider; none for the offline classifier.
    pub fn new(settings: &LlmSettings, metrics: std::sync::Arc<Metrics>) -> anyhow::Result<Option<LlmClient>> {
        let key = || settings.api_key.as_ref().map(|key| key.expose().to_owned());
        let format: Box<dyn WireFormat> = match settings.provider {
            LlmProvider::Offline => return Ok(None),
            LlmProvider::OpenAi | LlmProvider::OpenAiCompatible => Box::new(openai::OpenAi::new(
                &settings.base_url,
                &settings.model,
                key(),
                settings.provider == LlmProvider::OpenAi,
            )?),
            LlmProvider::Azure => Box::new(openai::OpenAi::azure(
                &settings.base_url,
                settings.deployment.as_deref().unwrap_or_default(),
                &settings.api_version,
                key().unwrap_or_default(),
            )?),
            LlmProvider::Anthropic => Box::new(anthropic::Anthropic::new(
                &settings.base_url,
                &settings.model,
                key().unwrap_or_default(),
            )?),
        };
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("llm-incident-manager/", env!("CARGO_PKG_VERSION")))
            .build()?;
        if settings.price.is_none() {
            tracing::warn!(model = %settings.model, "no price for the model; set [llm.prices.MODEL] to count its cost");
        }
        Ok(Some(LlmClient {
            provider: settings.provider,
            model: settings.model.clone(),
            format,
            http,
            timeout: settings.timeout,
            price: settings.price,
            permits: Semaphore::new(settings.max_concurrency as usize),
            breaker: Breaker::new(settings.breaker_failures, settings.breaker_cooldown),
            metrics,
        }))
    }

    pub fn provider(&self) -> LlmProvider {
        self.provider
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Sends `prompt` and reads the answer with `read` (which refuses an answer outside the
    /// schema or the vocabularies: an `invalid_response`); the text is returned beside what
    /// `read` made of it, to be cached.
    pub async fn ask<T>(
        &self,
        prompt: &Prompt,
        read: impl Fn(&str) -> Result<T, String>,
    ) -> Result<(T, String), LlmError> {
        let labels = LlmRequestLabels {
            provider: self.provider.as_str(),
            model: self.model.clone(),
            operation: prompt.operation.as_str(),
            status: "",
        };
        // Held to the end of the request: a probe whose caller goes away mid-request gives
        // its turn back.
        let _probe = match self.breaker.admit() {
            Ok(probe) => probe,
            Err(left) => {
                self.metrics.llm_failed(&labels, LlmErrorType::CircuitOpen);
                return Err(LlmError {
                    retry_after: Some(left),
                    ..LlmError::new(
                        LlmErrorType::CircuitOpen,
                        format!("the {} circuit is open after repeated failures", self.provider),
                    )
                });
            }
        };
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let started = Instant::now();
        let outcome = match tokio::time::timeout(self.timeout, self.request(prompt)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(LlmError::new(
                LlmErrorType::Timeout,
                format!(
                    "no answer within {}",
                    lim_domain::duration::format_duration(self.timeout)
                ),
            )),
        };
        let answer = outcome.and_then(|reply| match read(&reply.text) {
            Ok(value) => Ok((value, reply)),
            Err(problem) => {
                // The provider answered, and bills the answer however unusable it is.
                self.metrics.llm_billed(&labels, self.usage(&reply));
                Err(LlmError::new(LlmErrorType::InvalidResponse, problem))
            }
        });
        let elapsed = started.elapsed();
        match answer {
            Ok((value, reply)) => {
                self.breaker.succeeded();
                self.metrics.llm_requested(&labels, elapsed, Ok(self.usage(&reply)));
                Ok((value, reply.text))
            }
            Err(error) => {
                self.breaker.failed();
                self.metrics.llm_requested(&labels, elapsed, Err(error.kind));
                Err(error)
            }
        }
    }

    /// The tokens of an answer and what they cost.
    fn usage(&self, reply: &Reply) -> LlmUsage {
        LlmUsage {
            prompt_tokens: reply.prompt_tokens,
            completion_tokens: reply.completion_tokens,
            cost: self
                .price
                .map_or(0.0, |price| price.cost(reply.prompt_tokens, reply.completion_tokens)),
        }
    }

    /// One HTTP request and its answer, classified.
    async fn request(&self, prompt: &Prompt) -> Result<Reply, LlmError> {
        let response = self.format.request(&self.http, prompt).send().await.map_err(|error| {
            let kind = if error.is_timeout() {
                LlmErrorType::Timeout
            } else {
                LlmErrorType::ServiceUnavailable
            };
            LlmError::new(kind, format!("{} could not be reached", self.provider))
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(crate::notify::parse_retry_after);
        // A refusal is classified by its status alone (its body, an error page of any size,
        // is neither read nor kept).
        if !status.is_success() {
            let kind = match status.as_u16() {
                429 => LlmErrorType::RateLimit,
                401 | 403 => LlmErrorType::Authentication,
                408 => LlmErrorType::Timeout,
                code if code >= 500 => LlmErrorType::ServiceUnavailable,
                _ => LlmErrorType::InvalidRequest,
            };
            return Err(LlmError {
                retry_after,
                ..LlmError::new(kind, format!("{} answered {status}", self.provider))
            });
        }
        let body = read_bounded(response).await?;
        self.format
            .reply(&body)
            .map_err(|problem| LlmError::new(LlmErrorType::InvalidResponse, problem))
    }
}

/// The most an answer may hold: a classification or insights is a few KB, so a larger body
/// is a misbehaving provider or proxy, not an answer to keep in memory.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The body of `response`, refused past [`MAX_ANSWER_BYTES`] without reading it all.
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, LlmError> {
    let too_large = || {
        LlmError::new(
            LlmErrorType::InvalidResponse,
            format!("the answer is larger than {} KiB", MAX_ANSWER_BYTES >> 10),
        )
    };
    if response
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| LlmError::new(LlmErrorType::ServiceUnavailable, "the answer was cut short"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Fails fast after `threshold` consecutive failures, for `cooldown`; then lets one
/// request through (half open), whose outcome closes or opens it again.
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// A request is trying the provider after the cooldown.
    probing: bool,
    /// Counts probes, so that a probe's guard only ever ends its own.
    probes: u64,
}

/// The turn of the request that tries the provider after the cool-down (inactive for any
/// other request). Dropped without an outcome (its caller went away mid-request: a job
/// handed back at shutdown, say), it gives the turn back; otherwise the breaker would
/// wait for that probe, and refuse every request, until the process restarts.
struct Probe<'a> {
    breaker: Option<(&'a Breaker, u64)>,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if let Some((breaker, probe)) = self.breaker {
            let mut state = breaker.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if state.probing && state.probes == probe {
                state.probing = false;
            }
        }
    }
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            state: Mutex::new(BreakerState::default()),
        }
    }

    /// Lets a request through (the probe's turn, when it is the one trying the provider
    /// after the cool-down), or answers how long the breaker stays open.
    fn admit(&self) -> Result<Probe<'_>, Duration> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(until) = state.open_until else {
            return Ok(Probe { breaker: None });
        };
        let now = Instant::now();
        if now < until {
            return Err(until - now);
        }
        if state.probing {
            // One request tries the provider; the others wait for its outcome.
            return Err(Duration::from_secs(1));
        }
        state.probing = true;
        state.probes += 1;
        Ok(Probe {
            breaker: Some((self, state.probes)),
        })
    }

    fn succeeded(&self) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let probes = state.probes;
        *state = BreakerState {
            probes,
            ..BreakerState::default()
        };
    }

    fn failed(&self) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.consecutive_failures += 1;
        if state.probing || state.consecutive_failures >= self.threshold {
            state.open_until = Some(Instant::now() + self.cooldown);
            state.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_its_threshold_and_lets_one_probe_through_after_the_cooldown() {
        let breaker = Breaker::new(3, Duration::from_millis(50));
        for _ in 0..2 {
            assert!(breaker.admit().is_ok());
            breaker.failed();
        }
        assert!(breaker.admit().is_ok(), "two failures of three");
        breaker.failed();
        assert!(breaker.admit().is_err(), "open");
        std::thread::sleep(Duration::from_millis(60));
        let probe = breaker.admit().expect("the probe");
        assert!(breaker.admit().is_err(), "only one probe at a time");
        breaker.failed();
        drop(probe);
        assert!(breaker.admit().is_err(), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(60));
        let probe = breaker.admit().expect("the next probe");
        breaker.succeeded();
        drop(probe);
        assert!(breaker.admit().is_ok(), "closed");
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn a_probe_whose_caller_went_away_gives_its_turn_back() {
        let breaker = Breaker::new(1, Duration::from_millis(20));
        breaker.failed();
        std::thread::sleep(Duration::from_millis(30));
        let probe = breaker.admit().expect("the probe");
        assert!(breaker.admit().is_err(), "one probe at a time");
        // Its request is cancelled: no outcome is recorded.
        drop(probe);
        let next = breaker.admit().expect("another request may probe");
        // An older probe's guard never ends a newer probe's turn.
        let stale = Probe {
            breaker: Some((&breaker, 0)),
        };
        drop(stale);
        assert!(breaker.admit().is_err(), "the newer probe still holds its turn");
        drop(next);
    }
}
