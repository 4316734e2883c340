//! Anthropic Messages. The answer's schema is given as a tool the model must call
//! (`tool_choice`), Anthropic's way to a structured answer; the tool call's input is the
//! answer, parsed strictly afterwards.

use serde_json::{Value, json};

use super::{Prompt, Reply, WireFormat};

/// The API version every request names.
pub const VERSION: &str = "2023-06-01";

pub struct Anthropic {
    url: reqwest::Url,
    model: String,
    key: String,
}

impl Anthropic {
    /// `base_url` without `/v1`, as the SDK takes it; the request goes to
    /// `{base_url}/v1/messages`.
    pub fn new(base_url: &str, model: &str, key: String) -> anyhow::Result<Anthropic> {
        Ok(Anthropic {
            url: reqwest::Url::parse(&format!("{base_url}/v1/messages"))?,
            model: model.to_owned(),
            key,
        })
    }
}

impl WireFormat for Anthropic {
    fn request(&self, http: &reqwest::Client, prompt: &Prompt) -> reqwest::RequestBuilder {
        let tool = format!("record_{}", prompt.operation);
        let body = json!({
            "model": self.model,
            "max_tokens": 1024,
            "temperature": 0,
            "system": prompt.system,
            "messages": [{"role": "user", "content": prompt.user}],
            "tools": [{
                "name": tool,
                "description": "Record the answer.",
                "input_schema": prompt.schema,
            }],
            "tool_choice": {"type": "tool", "name": tool},
        });
        http.post(self.url.clone())
            .header("x-api-key", &self.key)
            .header("anthropic-version", VERSION)
            .json(&body)
    }

    fn reply(&self, body: &[u8]) -> Result<Reply, String> {
        let body: Value = serde_json::from_slice(body).map_err(|_| "the answer is not JSON".to_owned())?;
        if body["stop_reason"] == "max_tokens" {
            return Err("the answer was cut at its token limit".into());
        }
        let input = body["content"]
            .as_array()
            .and_then(|blocks| blocks.iter().find(|block| block["type"] == "tool_use"))
            .map(|block| &block["input"])
            .ok_or("the answer has no tool_use block")?;
        let usage = &body["usage"];
        Ok(Reply {
            text: input.to_string(),
            prompt_tokens: usage["input_tokens"].as_u64().unwrap_or(0),
            completion_tokens: usage["output_tokens"].as_u64().unwrap_or(0),
        })
    }
}
