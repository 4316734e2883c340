//! OpenAI Chat Completions, as OpenAI, Azure OpenAI and OpenAI-compatible servers (Ollama,
//! vLLM, LiteLLM) speak it. OpenAI and Azure are asked for an answer that follows the JSON
//! schema (`response_format: json_schema`, strict); other servers for JSON (`json_object`),
//! which they support more widely. Either way the answer is parsed strictly afterwards.

use serde_json::{Value, json};

use super::{Prompt, Reply, WireFormat};

pub struct OpenAi {
    url: reqwest::Url,
    /// Sent in the body (Azure names the model by its deployment, in the path).
    model: Option<String>,
    auth: Auth,
    /// The server follows a JSON schema (OpenAI and Azure); otherwise JSON mode.
    schema: bool,
}

enum Auth {
    Bearer(Option<String>),
    /// Azure's `api-key` header.
    ApiKey(String),
}

impl OpenAi {
    /// `base_url` includes `/v1`, as the SDKs take it; the request goes to
    /// `{base_url}/chat/completions`.
    pub fn new(base_url: &str, model: &str, key: Option<String>, schema: bool) -> anyhow::Result<OpenAi> {
        Ok(OpenAi {
            url: reqwest::Url::parse(&format!("{base_url}/chat/completions"))?,
            model: Some(model.to_owned()),
            auth: Auth::Bearer(key),
            schema,
        })
    }

    /// Azure OpenAI: `{base_url}/openai/deployments/{deployment}/chat/completions`, the
    /// API version as a query parameter, the key in `api-key`.
    pub fn azure(base_url: &str, deployment: &str, api_version: &str, key: String) -> anyhow::Result<OpenAi> {
        let mut url = reqwest::Url::parse(base_url)?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("the base URL cannot take a path"))?
            .pop_if_empty()
            .extend(["openai", "deployments", deployment, "chat", "completions"]);
        url.query_pairs_mut().append_pair("api-version", api_version);
        Ok(OpenAi {
            url,
            model: None,
            auth: Auth::ApiKey(key),
            schema: true,
        })
    }
}

impl WireFormat for OpenAi {
    fn request(&self, http: &reqwest::Client, prompt: &Prompt) -> reqwest::RequestBuilder {
        let response_format = if self.schema {
            json!({"type": "json_schema", "json_schema": {
                "name": prompt.operation.as_str(), "strict": true, "schema": prompt.schema}})
        } else {
            json!({"type": "json_object"})
        };
        let mut body = json!({
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
            "temperature": 0,
            "response_format": response_format,
        });
        if let Some(model) = &self.model {
            body["model"] = json!(model);
        }
        // OpenAI's newer models take `max_completion_tokens` only; other servers
        // `max_tokens`.
        let limit = if self.schema {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body[limit] = json!(1024);
        let request = http.post(self.url.clone()).json(&body);
        match &self.auth {
            Auth::Bearer(Some(key)) => request.bearer_auth(key),
            Auth::Bearer(None) => request,
            Auth::ApiKey(key) => request.header("api-key", key),
        }
    }

    fn reply(&self, body: &[u8]) -> Result<Reply, String> {
        let body: Value = serde_json::from_slice(body).map_err(|_| "the answer is not JSON".to_owned())?;
        let choice = &body["choices"][0];
        if choice["finish_reason"] == "length" {
            return Err("the answer was cut at its token limit".into());
        }
        let text = choice["message"]["content"]
            .as_str()
            .ok_or("the answer has no choices[0].message.content")?;
        let usage = &body["usage"];
        Ok(Reply {
            text: text.to_owned(),
            prompt_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
            completion_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
        })
    }
}
