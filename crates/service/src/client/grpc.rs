//! The people's subcommands over the gRPC API (`--grpc`): the same commands and the same
//! output as over HTTP (answers are read back into the domain's types and printed as the
//! HTTP API writes them), and `incidents watch`, which only gRPC can serve.

use std::collections::HashMap;
use std::str::FromStr;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use lim_domain::{Category, EventStatus, Severity, Source, State, UnknownValue};
use lim_proto::v1::event_service_client::EventServiceClient;
use lim_proto::v1::incident_service_client::IncidentServiceClient;
use lim_proto::v1::{
    AcknowledgeIncidentRequest, AssignIncidentRequest, GetIncidentRequest, GetTimelineRequest, ListIncidentsRequest,
    ResolveIncidentRequest, SubmitEventRequest, WatchIncidentsRequest,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::{
    EventCommand, IncidentCommand, ServerArgs, incident_table, key_value, output_or_default, print_json, print_pages,
    write_out,
};
use crate::grpc::convert::{self, Mirrored, to_proto};

async fn channel(server: &ServerArgs) -> anyhow::Result<Channel> {
    Channel::from_shared(server.grpc_server.clone())
        .context("--grpc-server is not a URL")?
        .connect()
        .await
        .with_context(|| {
            format!(
                "cannot reach the gRPC server at {} (is it running? see --grpc-server)",
                server.grpc_server
            )
        })
}

/// Adds the `--key` to every call, when one is given.
fn with_key(
    server: &ServerArgs,
) -> anyhow::Result<impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone> {
    let value: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = server
        .key
        .as_ref()
        .map(|key| format!("Bearer {key}").parse())
        .transpose()
        .map_err(|_| anyhow::anyhow!("--key: not a key this command can send"))?;
    Ok(move |mut request: tonic::Request<()>| {
        if let Some(value) = &value {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    })
}

/// A refusal as the command's error: its code and message.
fn refused(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

/// A flag's value in one of the vocabulary's spellings, as the proto's number.
fn number<T: Mirrored + FromStr<Err = UnknownValue>>(value: Option<&str>, flag: &str) -> anyhow::Result<i32> {
    match value {
        None => Ok(0),
        Some(value) => match value.parse::<T>() {
            Ok(value) => Ok(to_proto(value)),
            Err(error) => bail!("--{flag}: {error}"),
        },
    }
}

/// A comma-separated filter flag as the proto's numbers.
fn numbers<T: Mirrored + FromStr<Err = UnknownValue>>(value: Option<&str>, flag: &str) -> anyhow::Result<Vec<i32>> {
    Ok(crate::incidents::parse_list::<T>(value, flag)
        .map_err(|error| anyhow::anyhow!("--{error}"))?
        .into_iter()
        .map(to_proto)
        .collect())
}

fn incident_json(message: lim_proto::v1::Incident) -> anyhow::Result<Value> {
    let incident = convert::incident_from(message).map_err(|error| anyhow::anyhow!("the server sent {error}"))?;
    Ok(serde_json::to_value(incident)?)
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
        .map(|pair| key_value(pair, "label").map(|(key, value)| (key.to_owned(), value.to_owned())))
        .collect::<anyhow::Result<HashMap<_, _>>>()?;
    let status = if resolved {
        EventStatus::Resolved
    } else {
        EventStatus::Firing
    };
    let event = lim_proto::v1::Event {
        source: number::<Source>(Some(&source), "source")?,
        title,
        description: description.unwrap_or_default(),
        severity: number::<Severity>(severity.as_deref(), "severity")?,
        category: number::<Category>(category.as_deref(), "category")?,
        labels,
        fingerprint: fingerprint.unwrap_or_default(),
        status: to_proto(status),
        occurred_at: None,
    };
    let mut client = EventServiceClient::with_interceptor(channel(server).await?, with_key(server)?);
    let result = client
        .submit_event(SubmitEventRequest { event: Some(event) })
        .await
        .map_err(refused)?
        .into_inner()
        .result
        .context("the server sent no result")?;
    let outcome = result
        .outcome()
        .as_str_name()
        .trim_start_matches("OUTCOME_")
        .to_lowercase();
    let mut answer = json!({
        "incident_id": (!result.incident_id.is_empty()).then_some(&result.incident_id),
        "outcome": outcome,
        "deduplicated": result.deduplicated,
    });
    if !result.incident_id.is_empty() {
        answer["occurrence_count"] = json!(result.occurrence_count);
        answer["severity"] = json!(convert::from_proto::<Severity>(result.severity, "severity")?);
        answer["category"] = json!(convert::from_proto::<Category>(result.category, "category")?);
    }
    print_json(&answer)
}

pub async fn run_incident(server: &ServerArgs, command: IncidentCommand) -> anyhow::Result<()> {
    let mut client = IncidentServiceClient::with_interceptor(channel(server).await?, with_key(server)?);
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
            let request = ListIncidentsRequest {
                states: numbers::<State>(state.as_deref(), "state")?,
                severities: numbers::<Severity>(severity.as_deref(), "severity")?,
                sources: numbers::<Source>(source.as_deref(), "source")?,
                categories: numbers::<Category>(category.as_deref(), "category")?,
                limit,
                cursor: String::new(),
            };
            let fetch = async |cursor: Option<String>| {
                let page = client
                    .list_incidents(ListIncidentsRequest {
                        cursor: cursor.unwrap_or_default(),
                        ..request.clone()
                    })
                    .await
                    .map_err(refused)?
                    .into_inner();
                let incidents = page
                    .incidents
                    .into_iter()
                    .map(incident_json)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let mut json = json!({ "incidents": incidents });
                if !page.next_cursor.is_empty() {
                    json["next_cursor"] = json!(page.next_cursor);
                }
                Ok(json)
            };
            return print_pages(fetch, cursor, all, output_or_default(output), incident_table).await;
        }
        IncidentCommand::Show { id } => {
            let incident = client
                .get_incident(GetIncidentRequest { id: id.clone() })
                .await
                .map_err(refused)?
                .into_inner();
            let timeline = client
                .get_timeline(GetTimelineRequest {
                    id,
                    ..GetTimelineRequest::default()
                })
                .await
                .map_err(refused)?
                .into_inner();
            let entries = timeline
                .entries
                .into_iter()
                .map(|entry| {
                    let entry =
                        convert::entry_from(entry).map_err(|error| anyhow::anyhow!("the server sent {error}"))?;
                    Ok(serde_json::to_value(entry)?)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            json!({
                "incident": incident_json(incident)?,
                "timeline": entries,
                "timeline_next_cursor": (!timeline.next_cursor.is_empty()).then_some(timeline.next_cursor),
            })
        }
        IncidentCommand::Assign { id, assignee, team } => incident_json(
            client
                .assign_incident(AssignIncidentRequest {
                    id,
                    assignee,
                    team: team.unwrap_or_default(),
                    actor: String::new(),
                })
                .await
                .map_err(refused)?
                .into_inner(),
        )?,
        IncidentCommand::Ack { id, actor } => incident_json(
            client
                .acknowledge_incident(AcknowledgeIncidentRequest {
                    id,
                    actor: actor.unwrap_or_default(),
                })
                .await
                .map_err(refused)?
                .into_inner(),
        )?,
        IncidentCommand::Resolve { id, note, actor } => incident_json(
            client
                .resolve_incident(ResolveIncidentRequest {
                    id,
                    note: note.unwrap_or_default(),
                    actor: actor.unwrap_or_default(),
                })
                .await
                .map_err(refused)?
                .into_inner(),
        )?,
        IncidentCommand::Watch {
            state,
            severity,
            source,
            category,
        } => {
            let request = WatchIncidentsRequest {
                states: numbers::<State>(state.as_deref(), "state")?,
                severities: numbers::<Severity>(severity.as_deref(), "severity")?,
                sources: numbers::<Source>(source.as_deref(), "source")?,
                categories: numbers::<Category>(category.as_deref(), "category")?,
            };
            let mut changes = client.watch_incidents(request).await.map_err(refused)?.into_inner();
            // The server subscribed before it answered: every change from here on is shown.
            eprintln!("watching incidents: one JSON line per change");
            // One JSON object per line, as each change arrives, until the server ends it.
            while let Some(change) = changes.next().await {
                let change = change.map_err(refused)?;
                let kind = change
                    .kind()
                    .as_str_name()
                    .trim_start_matches("CHANGE_KIND_")
                    .to_lowercase();
                let at = change
                    .at
                    .map(|at| chrono::DateTime::from_timestamp(at.seconds, at.nanos.max(0) as u32))
                    .unwrap_or_default();
                let incident = change.incident.map(incident_json).transpose()?;
                let line = json!({ "kind": kind, "at": at, "incident": incident });
                if !write_out(&format!("{line}\n"))? {
                    return Ok(());
                }
            }
            return Ok(());
        }
    };
    print_json(&answer)
}
