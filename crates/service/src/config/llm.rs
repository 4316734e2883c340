//! The `[llm]` table (DESIGN §5): which provider triages incidents beyond the offline
//! classifier, how to reach it, how hard to try, and what its tokens cost. Every refusal
//! names its key (`llm.base_url`, `llm.prices.gpt-4o.prompt_per_million`).

use std::collections::BTreeMap;
use std::time::Duration;

use lim_domain::triage::LlmProvider;
use serde::Deserialize;

use super::secret::Secret;
use super::{ConfigError, duration_key};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLlm {
    provider: Option<String>,
    model: Option<String>,
    base_url: Option<String>,
    api_key: Option<String>,
    deployment: Option<String>,
    api_version: Option<String>,
    timeout: Option<String>,
    max_retries: Option<u32>,
    max_concurrency: Option<u32>,
    breaker_failures: Option<u32>,
    breaker_cooldown: Option<String>,
    operations: Option<Vec<String>>,
    #[serde(default)]
    prices: BTreeMap<String, FilePrice>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePrice {
    prompt_per_million: Option<f64>,
    completion_per_million: Option<f64>,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub prompt_per_million: f64,
    pub completion_per_million: f64,
}

impl Price {
    /// What `prompt` and `completion` tokens cost, in USD.
    pub fn cost(&self, prompt: u64, completion: u64) -> f64 {
        (prompt as f64 * self.prompt_per_million + completion as f64 * self.completion_per_million) / 1e6
    }
}

/// Prices of common models (USD per million prompt and completion tokens, as the providers
/// list them), used unless `[llm.prices.MODEL]` says otherwise.
pub const DEFAULT_PRICES: &[(&str, f64, f64)] = &[
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("o3-mini", 1.10, 4.40),
    ("claude-3-5-haiku-latest", 0.80, 4.00),
    ("claude-3-5-haiku-20241022", 0.80, 4.00),
    ("claude-3-5-sonnet-latest", 3.00, 15.00),
    ("claude-3-7-sonnet-latest", 3.00, 15.00),
    ("claude-sonnet-4-20250514", 3.00, 15.00),
    ("claude-3-haiku-20240307", 0.25, 1.25),
];

#[derive(Debug, Clone, PartialEq)]
pub struct LlmSettings {
    pub provider: LlmProvider,
    pub model: String,
    /// The API root as each provider's own SDK takes it (DESIGN §5).
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// Azure: the deployment the path names, and the API version.
    pub deployment: Option<String>,
    pub api_version: String,
    /// How long one request may take.
    pub timeout: Duration,
    /// Attempts of one operation beyond the first.
    pub max_retries: u32,
    /// Requests to the provider at once, in this process.
    pub max_concurrency: u32,
    /// Consecutive failures that open the circuit breaker, and how long it stays open.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub classify: bool,
    pub insights: bool,
    /// The price of the configured model, when known.
    pub price: Option<Price>,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            provider: LlmProvider::Offline,
            model: lim_domain::triage::OFFLINE_MODEL.to_owned(),
            base_url: String::new(),
            api_key: None,
            deployment: None,
            api_version: AZURE_API_VERSION.to_owned(),
            timeout: Duration::from_secs(30),
            max_retries: 2,
            max_concurrency: 4,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            classify: true,
            insights: true,
            price: None,
        }
    }
}

/// Azure OpenAI's API version unless `[llm] api_version` says another.
pub const AZURE_API_VERSION: &str = "2024-10-21";

pub(super) fn llm(file: FileLlm) -> Result<LlmSettings, ConfigError> {
    let defaults = LlmSettings::default();
    let provider: LlmProvider = match file.provider.as_deref() {
        None => LlmProvider::Offline,
        Some(text) => text
            .parse()
            .map_err(|error: lim_domain::UnknownValue| invalid("llm.provider", error.to_string()))?,
    };
    let (default_model, default_url) = match provider {
        LlmProvider::Offline => (Some(defaults.model.as_str()), None),
        LlmProvider::OpenAi => (Some("gpt-4o-mini"), Some("https://api.openai.com/v1")),
        LlmProvider::Anthropic => (Some("claude-3-5-haiku-latest"), Some("https://api.anthropic.com")),
        LlmProvider::Azure => (file.deployment.as_deref(), None),
        LlmProvider::OpenAiCompatible => (None, None),
    };
    let model_given = file.model.is_some();
    let model = file
        .model
        .or_else(|| default_model.map(str::to_owned))
        .filter(|model| !model.trim().is_empty())
        .ok_or_else(|| invalid("llm.model", format!("is required with provider {provider}")))?;
    if provider == LlmProvider::Offline {
        if (model_given && model != defaults.model) || file.base_url.is_some() || file.api_key.is_some() {
            return Err(invalid(
                "llm.provider",
                "is offline (the default), which takes no model, base_url or api_key; name a provider".into(),
            ));
        }
        return Ok(defaults);
    }
    let base_url = file
        .base_url
        .or_else(|| default_url.map(str::to_owned))
        .ok_or_else(|| invalid("llm.base_url", format!("is required with provider {provider}")))?;
    match reqwest::Url::parse(&base_url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        _ => {
            return Err(invalid(
                "llm.base_url",
                format!("`{}` is not an http(s) URL", lim_domain::text::excerpt(&base_url)),
            ));
        }
    }
    let api_key = file
        .api_key
        .map(|key| Secret::resolve(&key).map_err(|problem| invalid("llm.api_key", problem)))
        .transpose()?;
    if api_key.is_none() && provider != LlmProvider::OpenAiCompatible {
        return Err(invalid("llm.api_key", format!("is required with provider {provider}")));
    }
    let deployment = file.deployment;
    if provider == LlmProvider::Azure && deployment.as_deref().is_none_or(|name| name.trim().is_empty()) {
        return Err(invalid("llm.deployment", "is required with provider azure".into()));
    }
    let bounded = |key: &str, value: Option<u32>, default: u32, range: std::ops::RangeInclusive<u32>| {
        let value = value.unwrap_or(default);
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(invalid(
                key,
                format!("{value} is outside {}..={}", range.start(), range.end()),
            ))
        }
    };
    let (classify, insights) = match file.operations {
        None => (true, true),
        Some(operations) => {
            let mut chosen = (false, false);
            for operation in &operations {
                match operation.as_str() {
                    "classify" => chosen.0 = true,
                    "insights" => chosen.1 = true,
                    other => {
                        return Err(invalid(
                            "llm.operations",
                            format!("`{}` is not classify or insights", lim_domain::text::excerpt(other)),
                        ));
                    }
                }
            }
            chosen
        }
    };
    let mut prices: BTreeMap<String, Price> = DEFAULT_PRICES
        .iter()
        .map(|(model, prompt, completion)| {
            (
                (*model).to_owned(),
                Price {
                    prompt_per_million: *prompt,
                    completion_per_million: *completion,
                },
            )
        })
        .collect();
    for (name, price) in file.prices {
        let key = |field: &str| format!("llm.prices.{name}.{field}");
        let amount = |field: &str, value: Option<f64>| match value {
            Some(value) if value.is_finite() && value >= 0.0 => Ok(value),
            Some(value) => Err(invalid(key(field), format!("{value} is not a price (USD, 0 or more)"))),
            None => Err(invalid(key(field), "is required (USD per million tokens)".into())),
        };
        prices.insert(
            name.clone(),
            Price {
                prompt_per_million: amount("prompt_per_million", price.prompt_per_million)?,
                completion_per_million: amount("completion_per_million", price.completion_per_million)?,
            },
        );
    }
    Ok(LlmSettings {
        price: prices.get(&model).copied(),
        provider,
        model,
        base_url: base_url.trim_end_matches('/').to_owned(),
        api_key,
        deployment,
        api_version: file.api_version.unwrap_or(defaults.api_version),
        timeout: duration_key("llm.timeout", file.timeout, "30s", 1, 600)?,
        max_retries: bounded("llm.max_retries", file.max_retries, defaults.max_retries, 0..=10)?,
        max_concurrency: bounded(
            "llm.max_concurrency",
            file.max_concurrency,
            defaults.max_concurrency,
            1..=256,
        )?,
        breaker_failures: bounded(
            "llm.breaker_failures",
            file.breaker_failures,
            defaults.breaker_failures,
            1..=1000,
        )?,
        breaker_cooldown: duration_key("llm.breaker_cooldown", file.breaker_cooldown, "30s", 1, 3600)?,
        classify,
        insights,
    })
}

fn invalid(key: impl Into<String>, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason,
    }
}
