//! Subcommands for people: send an event, work incidents, silence them, ask who is on
//! call and reload the configuration of a running server. They speak the public HTTP API
//! (events and incidents also the gRPC API, with `--grpc`: see `client/grpc.rs`), and
//! print its answers as JSON or, for lists, as a table. Output cut short by its reader
//! (`| head`) ends the command quietly.

mod grpc;

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Base URL of a running service.
    #[arg(long, env = "LIM_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    pub server: String,
    /// Speak the gRPC API (at --grpc-server) instead of HTTP: events and incidents only.
    #[arg(long, global = true)]
    pub grpc: bool,
    /// gRPC address of a running service, for --grpc and `incidents watch`.
    #[arg(
        long,
        env = "LIM_GRPC_SERVER",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    pub grpc_server: String,
    /// The API key to send (`keys create`), when the server has keys.
    #[arg(long, env = "LIM_API_KEY", global = true, hide_env_values = true)]
    pub key: Option<String>,
}

impl ServerArgs {
    /// Refuses `--grpc` for a command the gRPC API does not serve.
    fn http_only(&self, command: &str) -> anyhow::Result<()> {
        if self.grpc {
            bail!("`{command}` is served by the HTTP API only; leave out --grpc");
        }
        Ok(())
    }
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
    /// Print every change to an incident as it happens, one JSON object per line (over
    /// the gRPC API, at --grpc-server), until interrupted.
    Watch {
        /// Comma-separated states the incident must be in after the change.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        severity: Option<String>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        category: Option<String>,
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

#[derive(Debug, clap::Subcommand)]
pub enum SilenceCommand {
    /// Silence the incidents that match, from now (or --starts-at) until --ends-at or for
    /// --duration: they are recorded but notify and escalate nobody.
    #[command(group(clap::ArgGroup::new("end").required(true).args(["ends_at", "duration"])))]
    Create {
        /// Equality on `source`, `severity`, `category` or `labels.NAME`, as KEY=VALUE;
        /// repeat a key to match any of several values.
        #[arg(long = "match", value_name = "KEY=VALUE")]
        equal: Vec<String>,
        /// A fully anchored regular expression on the same keys, as KEY=REGEX; repeat a key
        /// to match any of several.
        #[arg(long = "match-re", value_name = "KEY=REGEX")]
        match_re: Vec<String>,
        /// Why (required).
        #[arg(long)]
        comment: String,
        #[arg(long)]
        created_by: Option<String>,
        /// When it starts (default: now).
        #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
        starts_at: Option<DateTime<FixedOffset>>,
        /// When it ends.
        #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
        ends_at: Option<DateTime<FixedOffset>>,
        /// How long it holds from its start (this machine's clock when it starts now),
        /// e.g. 2h or 1h30m.
        #[arg(long, value_parser = lim_domain::duration::parse_duration)]
        duration: Option<Duration>,
    },
    /// List silences, newest first.
    List {
        /// Comma-separated states: pending, active, expired.
        #[arg(long)]
        state: Option<String>,
        /// Silences per page, 1 to 500.
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
    /// Show one silence.
    Show { id: String },
    /// Delete a silence: it no longer holds (a pending one never starts), and the
    /// escalations it held start now.
    #[command(alias = "expire")]
    Delete { id: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// List the on-call schedules, with who is on call on each now.
    List {
        /// `table` or `json` (default: a table on a terminal, JSON otherwise).
        #[arg(long, value_enum)]
        output: Option<Output>,
    },
    /// Who is on call on a schedule, from when to when.
    Oncall {
        name: String,
        /// The moment to ask about (default: now).
        #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
        at: Option<DateTime<FixedOffset>>,
    },
    /// The shifts of a schedule that overlap a window, in order.
    Shifts {
        name: String,
        /// Start of the window (default: now).
        #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
        from: Option<DateTime<FixedOffset>>,
        /// End of the window (default: a week after its start).
        #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
        to: Option<DateTime<FixedOffset>>,
        /// `table` or `json` (default: a table on a terminal, JSON otherwise).
        #[arg(long, value_enum)]
        output: Option<Output>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

pub async fn run_event(server: &ServerArgs, command: EventCommand) -> anyhow::Result<()> {
    if server.grpc {
        return grpc::run_event(server, command).await;
    }
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
        .map(|pair| key_value(pair, "label"))
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
    if server.grpc || matches!(command, IncidentCommand::Watch { .. }) {
        return grpc::run_incident(server, command).await;
    }
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
            let mut query = vec![("limit", limit.to_string())];
            query.extend(
                filters
                    .into_iter()
                    .filter_map(|(key, value)| value.map(|value| (key, value))),
            );
            let output = output_or_default(output);
            return list_pages(server, "/v1/incidents", &query, cursor, all, output, incident_table).await;
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
        IncidentCommand::Watch { .. } => unreachable!("a watch is served over gRPC, above"),
    };
    print_json(&answer)
}

/// A table on a terminal, JSON for a program, unless the person said.
fn output_or_default(output: Option<Output>) -> Output {
    output.unwrap_or(if io::stdout().is_terminal() {
        Output::Table
    } else {
        Output::Json
    })
}

/// One page of a list at `path`, or with `all` every page from `cursor` on, printed as it
/// arrives; `table` writes a page's rows (with the header first, with the cursor last).
async fn list_pages(
    server: &ServerArgs,
    path: &str,
    query: &[(&str, String)],
    cursor: Option<String>,
    all: bool,
    output: Output,
    table: fn(&Value, bool, bool) -> String,
) -> anyhow::Result<()> {
    let fetch = async |cursor: Option<String>| {
        let mut query = query.to_vec();
        query.extend(cursor.map(|cursor| ("cursor", cursor)));
        get(server, path, &query).await
    };
    print_pages(fetch, cursor, all, output, table).await
}

/// Pages that `fetch` reads (given the cursor of each), printed as [`list_pages`] says.
async fn print_pages(
    mut fetch: impl AsyncFnMut(Option<String>) -> anyhow::Result<Value>,
    mut cursor: Option<String>,
    all: bool,
    output: Output,
    table: fn(&Value, bool, bool) -> String,
) -> anyhow::Result<()> {
    let mut first = true;
    loop {
        let page = fetch(cursor.clone()).await?;
        let next = page["next_cursor"].as_str().map(str::to_owned);
        let written = match output {
            // With --all, JSON is one page object per line; one page prints as the API answers.
            Output::Json if all => write_out(&format!("{page}\n")),
            Output::Json => return print_json(&page),
            Output::Table => write_out(&table(&page, first, !all)),
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
    server.http_only("jobs")?;
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

pub async fn run_silence(server: &ServerArgs, command: SilenceCommand) -> anyhow::Result<()> {
    server.http_only("silences")?;
    let answer = match command {
        SilenceCommand::Create {
            equal,
            match_re,
            comment,
            created_by,
            starts_at,
            ends_at,
            duration,
        } => {
            let ends_at = match (ends_at, duration) {
                (Some(ends_at), _) => ends_at,
                (None, Some(duration)) => {
                    let start = starts_at.unwrap_or_else(|| Utc::now().fixed_offset());
                    TimeDelta::from_std(duration)
                        .ok()
                        .and_then(|duration| start.checked_add_signed(duration))
                        .context("--duration reaches beyond the last time there is")?
                }
                (None, None) => bail!("give --ends-at or --duration"),
            };
            let silence = json!({
                "matchers": {
                    "match": matcher_table(&equal, "--match")?,
                    "match_re": matcher_table(&match_re, "--match-re")?,
                },
                "starts_at": starts_at.map(|time| time.to_rfc3339()),
                "ends_at": ends_at.to_rfc3339(),
                "comment": comment,
                "created_by": created_by,
            });
            post(server, "/v1/silences", silence).await?
        }
        SilenceCommand::List {
            state,
            limit,
            cursor,
            all,
            output,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(state.map(|state| ("state", state)));
            let output = output_or_default(output);
            return list_pages(server, "/v1/silences", &query, cursor, all, output, silence_table).await;
        }
        SilenceCommand::Show { id } => get(server, &format!("/v1/silences/{id}"), &[]).await?,
        SilenceCommand::Delete { id } => send(server, Method::DELETE, &format!("/v1/silences/{id}"), None).await?,
    };
    print_json(&answer)
}

/// `KEY=VALUE` pairs as a matcher table; a key given twice matches any of its values.
fn matcher_table(pairs: &[String], flag: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut table: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for pair in pairs {
        let (key, value) = key_value(pair, flag)?;
        table.entry(key).or_default().push(value);
    }
    Ok(table
        .into_iter()
        .map(|(key, values)| {
            let values = match values.as_slice() {
                [one] => json!(one),
                many => json!(many),
            };
            (key.to_owned(), values)
        })
        .collect())
}

/// The silences of a page as aligned columns, like [`incident_table`].
fn silence_table(page: &Value, header: bool, with_cursor: bool) -> String {
    let text = |value: &Value| value.as_str().unwrap_or("-").to_owned();
    let mut out = String::new();
    if header {
        out.push_str(&format!(
            "{:<36}  {:<7}  {:<20}  {:<30}  {}\n",
            "ID", "STATE", "ENDS", "MATCHERS", "COMMENT"
        ));
    }
    for silence in page["silences"].as_array().into_iter().flatten() {
        let ends = text(&silence["ends_at"]);
        out.push_str(&format!(
            "{:<36}  {:<7}  {:<20}  {:<30}  {}\n",
            text(&silence["id"]),
            text(&silence["state"]),
            ends.get(..19).unwrap_or(&ends),
            lim_domain::text::excerpt(&compact_matchers(&silence["matchers"])),
            lim_domain::text::excerpt(&text(&silence["comment"])),
        ));
    }
    if with_cursor && let Some(next) = page["next_cursor"].as_str() {
        out.push_str(&format!("(more: --cursor {next}, or --all)\n"));
    }
    out
}

/// Matchers on one line: `source=shield severity=[P0,P1] labels.model=~gpt-.*`.
fn compact_matchers(matchers: &Value) -> String {
    let mut parts = Vec::new();
    for (table, operator) in [("match", "="), ("match_re", "=~")] {
        for (key, values) in matchers[table].as_object().into_iter().flatten() {
            let values = match values {
                Value::Array(values) => {
                    let values: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
                    format!("[{}]", values.join(","))
                }
                value => value.as_str().unwrap_or_default().to_owned(),
            };
            parts.push(format!("{key}{operator}{values}"));
        }
    }
    parts.join(" ")
}

pub async fn run_schedule(server: &ServerArgs, command: ScheduleCommand) -> anyhow::Result<()> {
    server.http_only("schedules")?;
    let answer = match command {
        ScheduleCommand::List { output } => {
            let list = get(server, "/v1/schedules", &[]).await?;
            match output_or_default(output) {
                Output::Json => list,
                Output::Table => return write_out(&schedule_table(&list)).map(drop),
            }
        }
        ScheduleCommand::Oncall { name, at } => {
            let query: Vec<_> = at.map(|at| ("at", at.to_rfc3339())).into_iter().collect();
            get(server, &schedule_path(&name, "oncall"), &query).await?
        }
        ScheduleCommand::Shifts { name, from, to, output } => {
            let mut query = Vec::new();
            query.extend(from.map(|from| ("from", from.to_rfc3339())));
            query.extend(to.map(|to| ("to", to.to_rfc3339())));
            let shifts = get(server, &schedule_path(&name, "shifts"), &query).await?;
            match output_or_default(output) {
                Output::Json => shifts,
                Output::Table => return write_out(&shift_table(&shifts)).map(drop),
            }
        }
    };
    print_json(&answer)
}

/// `/v1/schedules/{name}/{what}`, the name escaped as one path segment.
fn schedule_path(name: &str, what: &str) -> String {
    let mut url = reqwest::Url::parse("http://server/v1/schedules").expect("a valid URL");
    url.path_segments_mut()
        .expect("an http URL has a path")
        .extend([name, what]);
    url.path().to_owned()
}

fn schedule_table(list: &Value) -> String {
    let text = |value: &Value| value.as_str().unwrap_or("-").to_owned();
    let mut out = format!("{:<20}  {:<8}  {:<20}  {}\n", "NAME", "ROTATION", "ON CALL", "UNTIL");
    for schedule in list["schedules"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<20}  {:<8}  {:<20}  {}\n",
            lim_domain::text::excerpt(&text(&schedule["name"])),
            text(&schedule["rotation"]),
            lim_domain::text::excerpt(&text(&schedule["oncall"]["person"])),
            text(&schedule["oncall"]["to"]),
        ));
    }
    out
}

fn shift_table(shifts: &Value) -> String {
    let text = |value: &Value| value.as_str().unwrap_or("-").to_owned();
    let mut out = format!("{:<20}  {:<25}  {}\n", "PERSON", "FROM", "TO");
    for shift in shifts["shifts"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<20}  {:<25}  {}\n",
            lim_domain::text::excerpt(&text(&shift["person"])),
            text(&shift["from"]),
            text(&shift["to"]),
        ));
    }
    out
}

/// Has the server read its configuration file again; a file it refuses is the error.
pub async fn run_reload(server: &ServerArgs) -> anyhow::Result<()> {
    server.http_only("reload")?;
    print_json(&send(server, Method::POST, "/-/reload", None).await?)
}

/// `pair` split at its first `=`; `what` names the flag in the error.
fn key_value<'a>(pair: &'a str, what: &str) -> anyhow::Result<(&'a str, &'a str)> {
    pair.split_once('=')
        .with_context(|| format!("{what} `{pair}` is not KEY=VALUE"))
}

/// An RFC 3339 time given on the command line.
fn parse_time(text: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(text)
        .map_err(|_| format!("`{text}` is not an RFC 3339 time such as 2026-01-01T09:00:00Z"))
}

async fn get(server: &ServerArgs, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
    let mut url = reqwest::Url::parse(&format!("{}{path}", server.server.trim_end_matches('/')))
        .context("--server is not a URL")?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    let mut request = reqwest::Client::new().get(url);
    if let Some(key) = &server.key {
        request = request.bearer_auth(key);
    }
    answer_of(request.send().await)?.await
}

async fn post(server: &ServerArgs, path: &str, body: Value) -> anyhow::Result<Value> {
    send(server, Method::POST, path, Some(body)).await
}

async fn send(server: &ServerArgs, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(key) = &server.key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer_of(request.send().await)?.await
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
