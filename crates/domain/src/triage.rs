//! What triage decided about an incident (DESIGN §5): its `classification` (severity,
//! category, how sure, why, and by whom) and, once generated, its `insights` (a summary,
//! the probable cause and remediation steps). The offline classifier decides inline at
//! ingest; a configured LLM provider refines it later, in a background job. A model's
//! reply is parsed strictly here: one that does not parse, or names a value outside the
//! vocabularies, is refused and never applied.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::text::shortened;
use crate::vocabulary::{Category, Severity};

closed_vocabulary! {
    /// Where a classification stands: waiting for a provider's answer, decided, or given
    /// up (the offline classifier's values then stay).
    ClassificationStatus, "classification status" {
        Pending => "pending",
        Done => "done",
        Failed => "failed",
    }
}

closed_vocabulary! {
    /// Who triages (the `provider` metric label and `[llm] provider`).
    LlmProvider, "LLM provider" {
        Offline => "offline",
        OpenAi => "openai",
        Azure => "azure",
        Anthropic => "anthropic",
        OpenAiCompatible => "openai-compatible",
    }
}

closed_vocabulary! {
    /// What is asked of a provider (the `operation` metric label).
    LlmOperation, "LLM operation" {
        Classify => "classify",
        Insights => "insights",
    }
}

closed_vocabulary! {
    /// Why a provider request failed (the `error_type` metric label): 429; 401 or 403; any
    /// other 4xx; 5xx, 529 or no connection; no answer in time; an answer that does not
    /// parse or names a value outside the vocabularies; failed fast while the provider's
    /// circuit breaker is open.
    LlmErrorType, "LLM error type" {
        RateLimit => "rate_limit",
        Authentication => "authentication",
        InvalidRequest => "invalid_request",
        ServiceUnavailable => "service_unavailable",
        Timeout => "timeout",
        InvalidResponse => "invalid_response",
        CircuitOpen => "circuit_open",
    }
}

/// The provider name of a classification a person made (by reclassifying), which no
/// model's answer overwrites.
pub const MANUAL_PROVIDER: &str = "manual";
/// The provider name of the rules that run inline at ingest.
pub const OFFLINE_PROVIDER: &str = "offline";
/// How the store marks an offline classification (see [`Classification::to_column`]).
const OFFLINE_MARK: &str = "offline:";
/// The offline classifier's name and version, as a model would be named.
pub const OFFLINE_MODEL: &str = crate::classifier::MODEL;

/// Longest `reasoning` kept (characters); a longer one is shortened.
pub const MAX_REASONING_CHARS: usize = 500;
/// Longest summary and probable cause kept (characters).
pub const MAX_INSIGHT_CHARS: usize = 2000;
/// Most remediation steps kept, and the longest step (characters).
pub const MAX_STEPS: usize = 10;
pub const MAX_STEP_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Classification {
    pub status: ClassificationStatus,
    /// The severity triage gave the incident; absent when the sender gave it (triage
    /// never overrides a sender's severity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The category triage gave; absent when the sender gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// 0 to 1.
    pub confidence: f64,
    pub reasoning: String,
    /// `offline`, `openai`, `azure`, `anthropic`, `openai-compatible`, or `manual`.
    pub provider: String,
    pub model: String,
}

impl Classification {
    /// How the store keeps the classification. The offline classifier's is kept as a mark
    /// (`offline:` and its status and what it decided: `offline:done,severity=P1,category=security`),
    /// not as JSON: it is written for most new incidents, on the ingest path, and its
    /// confidence and reasoning follow from the incident's own text, so they are worked
    /// out again when it is read ([`Classification::from_column`]). Any other is JSON.
    pub fn to_column(&self) -> String {
        if self.provider == OFFLINE_PROVIDER && self.model == OFFLINE_MODEL {
            let mut mark = format!("{OFFLINE_MARK}{}", self.status);
            // The values, not only which were decided: a repeat event may raise the
            // incident's severity later, and the classifier did not decide that one.
            if let Some(severity) = self.severity {
                mark.push_str(",severity=");
                mark.push_str(severity.as_str());
            }
            if let Some(category) = self.category {
                mark.push_str(",category=");
                mark.push_str(category.as_str());
            }
            return mark;
        }
        serde_json::to_string(self).expect("a classification always serializes")
    }

    /// A classification as [`Classification::to_column`] kept it, for the incident whose
    /// text, severity and category are given (an offline one's confidence and reasoning
    /// are worked out again from them; a mark written before it held the values, a bare
    /// `severity` or `category`, stands for the incident's own).
    pub fn from_column(
        text: &str,
        title: &str,
        description: &str,
        labels: &std::collections::BTreeMap<String, String>,
        severity: Severity,
        category: Category,
    ) -> Result<Classification, String> {
        let Some(mark) = text.strip_prefix(OFFLINE_MARK) else {
            return serde_json::from_str(text).map_err(|error| error.to_string());
        };
        let mut parts = mark.split(',');
        let status: ClassificationStatus = parts
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|error: crate::vocabulary::UnknownValue| error.to_string())?;
        let (mut decided_severity, mut decided_category) = (None, None);
        let unknown = |error: crate::vocabulary::UnknownValue| error.to_string();
        for part in parts {
            match part.split_once('=') {
                None if part == "severity" => decided_severity = Some(severity),
                None if part == "category" => decided_category = Some(category),
                Some(("severity", value)) => decided_severity = Some(value.parse().map_err(unknown)?),
                Some(("category", value)) => decided_category = Some(value.parse().map_err(unknown)?),
                _ => return Err(format!("`{part}` is not severity or category")),
            }
        }
        let verdict = crate::classifier::classify(title, description, labels);
        Ok(Classification {
            status,
            severity: decided_severity,
            category: decided_category,
            confidence: f64::from(verdict.confidence),
            reasoning: verdict.reasoning,
            provider: OFFLINE_PROVIDER.to_owned(),
            model: OFFLINE_MODEL.to_owned(),
        })
    }

    /// A person's classification (a reclassification), which no model answer overwrites.
    pub fn manual(severity: Severity, category: Category, actor: &str) -> Classification {
        Classification {
            status: ClassificationStatus::Done,
            severity: Some(severity),
            category: Some(category),
            confidence: 1.0,
            reasoning: format!("reclassified by {actor}"),
            provider: MANUAL_PROVIDER.to_owned(),
            model: actor.to_owned(),
        }
    }

    pub fn is_manual(&self) -> bool {
        self.provider == MANUAL_PROVIDER
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Insights {
    pub summary: String,
    pub probable_cause: String,
    /// Steps, in order.
    pub remediation: Vec<String>,
    pub provider: String,
    pub model: String,
}

/// A model's classification, as its reply said it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelClassification {
    pub severity: Severity,
    pub category: Category,
    pub confidence: f64,
    pub reasoning: String,
}

/// A model's insights, as its reply said them.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInsights {
    pub summary: String,
    pub probable_cause: String,
    pub remediation: Vec<String>,
}

/// The reply a classification asks a model for: a JSON object with these keys (others are
/// ignored). Severity and category must be exact spellings of the vocabularies.
pub fn parse_classification(reply: &str) -> Result<ModelClassification, String> {
    let object = object(reply)?;
    // The canonical spellings only: the schema a model is given lists nothing else.
    let severity = text_field(&object, "severity")?;
    let severity = Severity::ALL
        .iter()
        .copied()
        .find(|known| known.as_str() == severity)
        .ok_or_else(|| {
            format!(
                "severity: `{}` is not one of P0, P1, P2, P3, P4",
                crate::text::excerpt(severity)
            )
        })?;
    let category = text_field(&object, "category")?;
    let category = Category::ALL
        .iter()
        .copied()
        .find(|known| known.as_str() == category)
        .ok_or_else(|| format!("category: `{}` is not a category", crate::text::excerpt(category)))?;
    let confidence = object
        .get("confidence")
        .and_then(Value::as_f64)
        .ok_or("confidence: missing or not a number")?;
    if !(0.0..=1.0).contains(&confidence) {
        return Err(format!("confidence: {confidence} is outside 0..1"));
    }
    let reasoning = text_field(&object, "reasoning")?;
    Ok(ModelClassification {
        severity,
        category,
        confidence,
        reasoning: shortened(reasoning.trim(), MAX_REASONING_CHARS),
    })
}

/// The reply insights ask a model for: `summary`, `probable_cause` and `remediation` (a
/// list of steps); others keys are ignored, long texts shortened.
pub fn parse_insights(reply: &str) -> Result<ModelInsights, String> {
    let object = object(reply)?;
    let summary = text_field(&object, "summary")?;
    let probable_cause = text_field(&object, "probable_cause")?;
    let steps = object
        .get("remediation")
        .and_then(Value::as_array)
        .ok_or("remediation: missing or not a list")?;
    let remediation = steps
        .iter()
        .take(MAX_STEPS)
        .map(|step| {
            step.as_str()
                .map(|step| shortened(step.trim(), MAX_STEP_CHARS))
                .ok_or_else(|| "remediation: a step is not text".to_owned())
        })
        .collect::<Result<Vec<_>, _>>()?;
    if summary.trim().is_empty() {
        return Err("summary: empty".into());
    }
    Ok(ModelInsights {
        summary: shortened(summary.trim(), MAX_INSIGHT_CHARS),
        probable_cause: shortened(probable_cause.trim(), MAX_INSIGHT_CHARS),
        remediation,
    })
}

fn object(reply: &str) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_str::<Value>(reply.trim()) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err("the reply is JSON but not an object".into()),
        Err(error) => Err(format!("the reply is not JSON: {error}")),
    }
}

fn text_field<'a>(object: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a str, String> {
    object
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{key}: missing or not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_classification_reply_is_read_and_extra_keys_are_ignored() {
        let reply = r#"{"severity":"P1","category":"security","confidence":0.8,"reasoning":" jailbreak ",
                        "state":"RESOLVED","assignee":"mallory"}"#;
        let parsed = parse_classification(reply).unwrap();
        assert_eq!(parsed.severity, Severity::P1);
        assert_eq!(parsed.category, Category::Security);
        assert_eq!(parsed.reasoning, "jailbreak");
    }

    #[test]
    fn a_reply_outside_the_vocabulary_or_the_shape_is_refused() {
        let refused = |reply: &str| parse_classification(reply).unwrap_err();
        assert!(
            refused(r#"{"severity":"P7","category":"security","confidence":0.5,"reasoning":"x"}"#)
                .starts_with("severity:")
        );
        assert!(
            refused(r#"{"severity":"critical","category":"security","confidence":0.5,"reasoning":"x"}"#)
                .starts_with("severity:"),
            "exact spellings only"
        );
        assert!(
            refused(r#"{"severity":"P1","category":"weather","confidence":0.5,"reasoning":"x"}"#)
                .starts_with("category:")
        );
        assert!(
            refused(r#"{"severity":"P1","category":"cost","confidence":7,"reasoning":"x"}"#).starts_with("confidence:")
        );
        assert!(refused(r#"{"severity":"P1","category":"cost","reasoning":"x"}"#).starts_with("confidence:"));
        assert!(refused("Sure! Here is the JSON").starts_with("the reply is not JSON"));
        assert!(refused("[1, 2]").contains("not an object"));
    }

    #[test]
    fn insights_are_read_with_their_steps_bounded() {
        let steps: Vec<String> = (0..20).map(|n| format!("step {n}")).collect();
        let reply =
            serde_json::json!({"summary": "GPU OOM", "probable_cause": "batch too large", "remediation": steps});
        let parsed = parse_insights(&reply.to_string()).unwrap();
        assert_eq!(parsed.remediation.len(), MAX_STEPS);
        assert_eq!(parsed.summary, "GPU OOM");
        assert!(parse_insights(r#"{"summary":"x","probable_cause":"y","remediation":"reboot"}"#).is_err());
        assert!(parse_insights(r#"{"summary":" ","probable_cause":"y","remediation":[]}"#).is_err());
    }

    #[test]
    fn a_person_classification_is_marked_manual() {
        let manual = Classification::manual(Severity::P0, Category::Security, "ana");
        assert!(manual.is_manual());
        assert_eq!(manual.reasoning, "reclassified by ana");
        let json = serde_json::to_value(&manual).unwrap();
        assert_eq!(json["status"], "done");
        assert_eq!(json["severity"], "P0");
    }

    #[test]
    fn an_offline_classification_is_kept_as_a_mark_and_worked_out_again() {
        let labels = std::collections::BTreeMap::new();
        let title = "Disk 97% full on db-1";
        let verdict = crate::classifier::classify(title, "", &labels);
        let offline = Classification {
            status: ClassificationStatus::Pending,
            severity: Some(verdict.severity),
            category: None,
            confidence: f64::from(verdict.confidence),
            reasoning: verdict.reasoning.clone(),
            provider: OFFLINE_PROVIDER.into(),
            model: OFFLINE_MODEL.into(),
        };
        let column = offline.to_column();
        assert_eq!(column, format!("offline:pending,severity={}", verdict.severity));
        let read = Classification::from_column(&column, title, "", &labels, verdict.severity, Category::Cost).unwrap();
        assert_eq!(read, offline);
        // A repeat event raised the incident's severity since: the classifier's stays.
        let raised = Classification::from_column(&column, title, "", &labels, Severity::P0, Category::Cost).unwrap();
        assert_eq!(raised.severity, Some(verdict.severity));
        assert_ne!(verdict.severity, Severity::P0);
        // A mark written before the values were kept stands for the incident's own.
        let old = Classification::from_column(
            "offline:done,severity",
            title,
            "",
            &labels,
            Severity::P2,
            Category::Cost,
        );
        assert_eq!(old.unwrap().severity, Some(Severity::P2));
        let manual = Classification::manual(Severity::P0, Category::Security, "ana");
        let column = manual.to_column();
        assert!(column.starts_with('{'));
        assert_eq!(
            Classification::from_column(&column, title, "", &labels, Severity::P3, Category::Cost).unwrap(),
            manual
        );
        assert!(
            Classification::from_column("offline:done,colour", title, "", &labels, Severity::P3, Category::Cost)
                .is_err()
        );
    }
}
