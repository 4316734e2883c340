//! Spawns the application on free ports with a fresh database, driven by a manual clock.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use llm_incident_manager::Application;
use llm_incident_manager::clock::ManualClock;
use llm_incident_manager::config::{Overrides, Settings};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestApp {
    pub address: String,
    /// `http://127.0.0.1:PORT` of the gRPC API.
    pub grpc_address: String,
    pub metrics_address: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    /// The configuration file the application reads (again, at a reload).
    pub config: tempfile::TempPath,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

pub use lim_store::testing::TestDatabase;

pub fn start_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap() // 2026-01-01T00:00:00Z
}

impl TestApp {
    pub async fn spawn(database: &TestDatabase) -> TestApp {
        Self::spawn_with(database, Arc::new(ManualClock::new(start_time())), |_| {}).await
    }

    pub async fn spawn_with(
        database: &TestDatabase,
        clock: Arc<ManualClock>,
        adjust: impl FnOnce(&mut Settings),
    ) -> TestApp {
        Self::spawn_configured(database, clock, "", adjust).await
    }

    /// With `toml` as the configuration file (routes, channels, jobs), then `adjust`.
    pub async fn spawn_configured(
        database: &TestDatabase,
        clock: Arc<ManualClock>,
        toml: &str,
        adjust: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let file = tempfile::NamedTempFile::new()
            .expect("a configuration file")
            .into_temp_path();
        std::fs::write(&file, toml).expect("write the configuration");
        let overrides = Overrides {
            config: Some(file.to_path_buf()),
            http_addr: Some("127.0.0.1:0".into()),
            grpc_addr: Some("127.0.0.1:0".into()),
            metrics_addr: Some("127.0.0.1:0".into()),
            database_url: Some(database.url()),
            log_level: Some("warn".into()),
            log_format: None,
        };
        let mut settings = Settings::load(&overrides).expect("test settings are valid");
        adjust(&mut settings);
        let application = Application::build(&settings, overrides, clock.clone())
            .await
            .expect("application builds");
        let address = format!("http://{}", application.http_addr());
        let grpc_address = format!("http://{}", application.grpc_addr());
        let metrics_address = format!("http://{}", application.metrics_addr());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        TestApp {
            address,
            grpc_address,
            metrics_address,
            client: reqwest::Client::new(),
            clock,
            config: file,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// Stops the application gracefully and waits until its store is closed.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server stopped cleanly");
        }
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(TimeDelta::seconds(seconds));
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.address))
            .json(&body)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.address)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        read(request.send().await.expect("request")).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        read(
            self.client
                .delete(format!("{}{path}", self.address))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        read(
            self.client
                .get(format!("{}{path}", self.address))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn send_event(&self, event: Value) -> Value {
        let (status, body) = self.post("/v1/events", event).await;
        assert_eq!(status, 200, "event refused: {body}");
        body
    }

    pub async fn incident(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/incidents/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn timeline_kinds(&self, id: &str) -> Vec<String> {
        let (status, body) = self.get(&format!("/v1/incidents/{id}/timeline")).await;
        assert_eq!(status, 200, "{body}");
        body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["kind"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn all_incidents(&self) -> Vec<Value> {
        let (status, body) = self.get("/v1/incidents?limit=500").await;
        assert_eq!(status, 200, "{body}");
        body["incidents"].as_array().unwrap().clone()
    }

    /// Every timeline entry of an incident.
    pub async fn timeline(&self, id: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/incidents/{id}/timeline?limit=500")).await;
        assert_eq!(status, 200, "{body}");
        body["entries"].as_array().unwrap().clone()
    }

    pub async fn scrape(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.metrics_address))
            .send()
            .await
            .expect("scrape");
        assert_eq!(response.status(), 200);
        response.text().await.expect("metrics text")
    }

    /// The value of one sample in a scrape, e.g. `incidents_active{severity="P1",…}`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        sample(&self.scrape().await, series)
    }

    /// Waits (10 s at most) until the series `series` reads `expected`.
    pub async fn wait_for_metric(&self, series: &str, expected: f64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let current = self.metric(series).await;
            if current == Some(expected) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{series} is {current:?}, not {expected}, after 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(json!({ "raw": text }))
    };
    (status, body)
}

pub fn event(title: &str) -> Value {
    json!({"source": "sentinel", "title": title, "severity": "high", "category": "performance", "labels": {"model": "gpt-4o"}})
}

pub fn id_of(result: &Value) -> String {
    result["incident_id"].as_str().expect("an incident id").to_owned()
}
