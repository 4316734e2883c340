//! Subcommands for people: send an event and work incidents against a running server.
//! They speak the public HTTP API, nothing else, and print its answers as JSON or, for
//! lists, as a table. Output cut short by its reader (`| head`) ends the command quietly.

use std::io::{self, IsTerminal, Write};

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
        /// Incidents per page, 1 to 500.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Start at this page (the `next_cursor` of the previous one).
        #[arg(long)]
        cursor: Option<String>,
        /// Follow every page to the last.
        #[arg(long)]
        all: bool,
        /// `table` or `json` (default: a table on a terminal, JSON otherwise).
        #[arg(long, value_enum)]
        output: Option<Output>,
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

#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// List background jobs, newest first (`--state dead` for those whose attempts ran out).
    List {
        /// Comma-separated states: queued, running, done, dead.
        #[arg(long)]
        state: Option<String>,
        /// Comma-separated kinds: notify, escalate, llm_classify, llm_insights, housekeeping.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Queue a dead job again, with its attempts reset.
    Retry { id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
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
    print_json(&post(server, "/v1/events", event).await?)
}

pub async fn run_incident(server: &ServerArgs, command: IncidentCommand) -> anyhow::Result<()> {
    let answer = match command {
        IncidentCommand::List {
            state,
            severity,
            source,
            category,
            limit,
            cursor,
            all,
            output,
        } => {
            let filters = [
                ("state", state),
                ("severity", severity),
                ("source", source),
                ("category", category),
            ];
            let filters: Vec<(&str, String)> = filters
                .into_iter()
                .filter_map(|(key, value)| value.map(|value| (key, value)))
                .collect();
            let output = output.unwrap_or(if io::stdout().is_terminal() {
                Output::Table
            } else {
                Output::Json
            });
            return list_incidents(server, &filters, limit, cursor, all, output).await;
        }
        IncidentCommand::Show { id } => {
            let incident = get(server, &format!("/v1/incidents/{id}"), &[]).await?;
            let timeline = get(server, &format!("/v1/incidents/{id}/timeline"), &[]).await?;
            json!({
                "incident": incident,
                "timeline": timeline["entries"],
                "timeline_next_cursor": timeline["next_cursor"],
            })
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
    print_json(&answer)
}

/// One page, or with `all` every page from `cursor` on, printed as it arrives.
async fn list_incidents(
    server: &ServerArgs,
    filters: &[(&str, String)],
    limit: u32,
    mut cursor: Option<String>,
    all: bool,
    output: Output,
) -> anyhow::Result<()> {
    let mut first = true;
    loop {
        let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
        query.extend(filters.iter().cloned());
        query.extend(cursor.iter().map(|cursor| ("cursor", cursor.clone())));
        let page = get(server, "/v1/incidents", &query).await?;
        let next = page["next_cursor"].as_str().map(str::to_owned);
        let written = match output {
            // With --all, JSON is one page object per line; one page prints as the API answers.
            Output::Json if all => write_out(&format!("{page}\n")),
            Output::Json => return print_json(&page),
            Output::Table => write_out(&incident_table(&page, first, !all)),
        };
        if !written? {
            return Ok(());
        }
        first = false;
        match next {
            Some(next) if all => cursor = Some(next),
            _ => return Ok(()),
        }
    }
}

/// The incidents of a page as aligned columns, the header on the first page, and the
/// next cursor after the last row when the listing stops there.
fn incident_table(page: &Value, header: bool, with_cursor: bool) -> String {
    let text = |value: &Value| value.as_str().unwrap_or("-").to_owned();
    let mut out = String::new();
    if header {
        out.push_str(&format!(
            "{:<36}  {:<3}  {:<12}  {:<11}  {:<20}  {}\n",
            "ID", "SEV", "STATE", "SOURCE", "CREATED", "TITLE"
        ));
    }
    for incident in page["incidents"].as_array().into_iter().flatten() {
        let created = text(&incident["created_at"]);
        out.push_str(&format!(
            "{:<36}  {:<3}  {:<12}  {:<11}  {:<20}  {}\n",
            text(&incident["id"]),
            text(&incident["severity"]),
            text(&incident["state"]),
            text(&incident["source"]),
            created.get(..19).unwrap_or(&created),
            lim_domain::text::excerpt(&text(&incident["title"])),
        ));
    }
    if with_cursor && let Some(next) = page["next_cursor"].as_str() {
        out.push_str(&format!("(more: --cursor {next}, or --all)\n"));
    }
    out
}

pub async fn run_job(server: &ServerArgs, command: JobCommand) -> anyhow::Result<()> {
    let answer = match command {
        JobCommand::List { state, kind, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(state.map(|state| ("state", state)));
            query.extend(kind.map(|kind| ("kind", kind)));
            get(server, "/v1/jobs", &query).await?
        }
        JobCommand::Retry { id } => post(server, &format!("/v1/jobs/{id}/retry"), json!({})).await?,
    };
    print_json(&answer)
}

async fn get(server: &ServerArgs, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
    let mut url = reqwest::Url::parse(&format!("{}{path}", server.server.trim_end_matches('/')))
        .context("--server is not a URL")?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
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

fn print_json(value: &Value) -> anyhow::Result<()> {
    write_out(&format!("{}\n", serde_json::to_string_pretty(value)?))?;
    Ok(())
}

/// Writes to stdout; `false` when its reader has gone (a closed pipe), which ends the
/// command quietly rather than with a panic.
fn write_out(text: &str) -> anyhow::Result<bool> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(error).context("cannot write to standard output"),
    }
}
