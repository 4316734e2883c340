//! Subcommands for people: send an event and work incidents against a running server.
//! They speak the public HTTP API, nothing else, and print its JSON answers.

use anyhow::{Context, bail};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Base URL of a running service.
    #[arg(long, env = "LIM_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    pub server: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum EventCommand {
    /// Send one event (it opens, joins or resolves an incident).
    Send {
        #[arg(long)]
        source: String,
        #[arg(long)]
        title: String,
        #[arg(long)]
        description: Option<String>,
        /// P0..P4 or critical/high/medium/low/info.
        #[arg(long)]
        severity: Option<String>,
        #[arg(long)]
        category: Option<String>,
        /// A label as KEY=VALUE; repeat for more.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        #[arg(long)]
        fingerprint: Option<String>,
        /// Send a `resolved` event instead of a firing one.
        #[arg(long)]
        resolved: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum IncidentCommand {
    /// List incidents, newest first.
    List {
        /// Comma-separated states, e.g. NEW,ASSIGNED.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        severity: Option<String>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one incident and its timeline.
    Show { id: String },
    /// Assign to a person (and optionally a team).
    Assign {
        id: String,
        #[arg(long)]
        assignee: String,
        #[arg(long)]
        team: Option<String>,
    },
    /// Acknowledge.
    Ack {
        id: String,
        #[arg(long)]
        actor: Option<String>,
    },
    /// Resolve, with an optional note.
    Resolve {
        id: String,
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        actor: Option<String>,
    },
}

pub async fn run_event(server: &ServerArgs, command: EventCommand) -> anyhow::Result<()> {
    let EventCommand::Send {
        source,
        title,
        description,
        severity,
        category,
        labels,
        fingerprint,
        resolved,
    } = command;
    let labels = labels
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .with_context(|| format!("label `{pair}` is not KEY=VALUE"))
        })
        .map(|pair| pair.map(|(key, value)| (key.to_owned(), Value::String(value.to_owned()))))
        .collect::<anyhow::Result<serde_json::Map<_, _>>>()?;
    let event = json!({
        "source": source, "title": title, "description": description, "severity": severity,
        "category": category, "labels": labels, "fingerprint": fingerprint,
        "status": if resolved { "resolved" } else { "firing" },
    });
    print(post(server, "/v1/events", event).await?)
}

pub async fn run_incident(server: &ServerArgs, command: IncidentCommand) -> anyhow::Result<()> {
    let answer = match command {
        IncidentCommand::List {
            state,
            severity,
            source,
            category,
            limit,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            let filters = [
                ("state", state),
                ("severity", severity),
                ("source", source),
                ("category", category),
            ];
            query.extend(
                filters
                    .into_iter()
                    .filter_map(|(key, value)| value.map(|value| (key, value))),
            );
            let mut url = reqwest::Url::parse(&format!("{}/v1/incidents", server.server.trim_end_matches('/')))
                .context("--server is not a URL")?;
            url.query_pairs_mut().extend_pairs(query);
            answer_of(reqwest::get(url).await)?.await?
        }
        IncidentCommand::Show { id } => {
            let incident = get(server, &format!("/v1/incidents/{id}")).await?;
            let timeline = get(server, &format!("/v1/incidents/{id}/timeline")).await?;
            json!({"incident": incident, "timeline": timeline["entries"]})
        }
        IncidentCommand::Assign { id, assignee, team } => {
            post(
                server,
                &format!("/v1/incidents/{id}/assign"),
                json!({"assignee": assignee, "team": team}),
            )
            .await?
        }
        IncidentCommand::Ack { id, actor } => {
            post(
                server,
                &format!("/v1/incidents/{id}/acknowledge"),
                json!({"actor": actor}),
            )
            .await?
        }
        IncidentCommand::Resolve { id, note, actor } => {
            post(
                server,
                &format!("/v1/incidents/{id}/resolve"),
                json!({"note": note, "actor": actor}),
            )
            .await?
        }
    };
    print(answer)
}

async fn get(server: &ServerArgs, path: &str) -> anyhow::Result<Value> {
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    answer_of(reqwest::get(url).await)?.await
}

async fn post(server: &ServerArgs, path: &str, body: Value) -> anyhow::Result<Value> {
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    answer_of(reqwest::Client::new().post(url).json(&body).send().await)?.await
}

/// The JSON answer, or the API's error message as the command's error.
fn answer_of(
    response: reqwest::Result<reqwest::Response>,
) -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<Value>>> {
    let response = response.context("cannot reach the server (is it running? see --server)")?;
    Ok(async move {
        let status = response.status();
        let body: Value = response.json().await.context("the server's answer is not JSON")?;
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            bail!("{status}: {message}");
        }
        Ok(body)
    })
}

fn print(value: Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
