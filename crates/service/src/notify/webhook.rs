//! A generic webhook: the incident as JSON, signed per the Standard Webhooks
//! specification so that the receiver can check it came from us and drop a duplicate.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{About, Deliver, DeliveryError, Message, post_json};
use crate::config::Secret;

pub struct Webhook {
    http: reqwest::Client,
    url: reqwest::Url,
    /// The signing key: after `whsec_`, base64; otherwise the secret's UTF-8 bytes.
    key: Option<Vec<u8>>,
}

impl Webhook {
    pub fn new(http: reqwest::Client, url: &str, secret: Option<Secret>) -> anyhow::Result<Webhook> {
        let key = secret.map(|secret| signing_key(secret.expose())).transpose()?;
        Ok(Webhook {
            http,
            url: reqwest::Url::parse(url)?,
            key,
        })
    }
}

/// The bytes a secret stands for.
pub fn signing_key(secret: &str) -> anyhow::Result<Vec<u8>> {
    match secret.strip_prefix("whsec_") {
        Some(encoded) => STANDARD
            .decode(encoded)
            .map_err(|_| anyhow::anyhow!("a webhook secret that starts with whsec_ must be base64 after it")),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The body: `{"type", "incident", "level", "sent_at"}` (DESIGN §7).
/// `{"type", "incident", "level", "sent_at"}`; a grouped notification has `incidents`
/// (and how many the group holds, `incident_count`, and its `route`) instead of
/// `incident`.
pub fn body(message: &Message) -> String {
    match &message.about {
        About::Incident(incident) => json!({
            "type": format!("incident.{}", message.event),
            "incident": incident,
            "level": message.level,
            "sent_at": message.sent_at,
        }),
        About::Group(group) => json!({
            "type": "incidents.grouped",
            "incidents": group.incidents,
            "incident_count": group.total,
            "route": group.route,
            "level": message.level,
            "sent_at": message.sent_at,
        }),
    }
    .to_string()
}

#[async_trait]
impl Deliver for Webhook {
    async fn deliver(&self, message: &Message) -> Result<(), DeliveryError> {
        let body = body(message);
        let id = format!("msg_{}", message.delivery_id.simple());
        let timestamp = message.sent_at.timestamp();
        let mut request = self
            .http
            .post(self.url.clone())
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = &self.key {
            request = request.header("webhook-signature", signature(key, &id, timestamp, &body));
        }
        post_json(request, &body, "the webhook").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(signing_key("plain").unwrap(), b"plain");
        assert!(signing_key("whsec_***").is_err());
    }
}
