//! `IncidentService`: the incident routes of the HTTP API, over the same core, and the
//! watch of changes.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use lim_domain::{Action, Category, EntryCursor, EntryPageRequest, IncidentId, PageRequest, Severity, Source};
use lim_proto::v1::incident_service_server::IncidentService;
use lim_proto::v1::{
    AcknowledgeIncidentRequest, AddCommentRequest, AssignIncidentRequest, CreateIncidentRequest, GetIncidentRequest,
    GetTimelineRequest, GetTimelineResponse, Incident, IncidentChange, ListIncidentsRequest, ListIncidentsResponse,
    ResolveIncidentRequest, StartIncidentRequest, TimelineEntry, WatchIncidentsRequest,
};
use tonic::{Request, Response, Status};

use super::convert::{self, from_proto};
use super::status::{from_api, from_core, invalid};
use super::watch::{KeyHold, WatchHub};
use crate::auth::{AcceptedKey, Keys};
use crate::http::extract::{cursor, one_page, page_size};
use crate::incidents::{IncidentManager, NewIncident};

pub struct Incidents {
    manager: Arc<IncidentManager>,
    hub: Arc<WatchHub>,
    keys: Arc<Keys>,
}

impl Incidents {
    pub fn new(manager: Arc<IncidentManager>, hub: Arc<WatchHub>, keys: Arc<Keys>) -> Self {
        Incidents { manager, hub, keys }
    }

    async fn act(&self, id: &str, action: Action, actor: String) -> Result<Response<Incident>, Status> {
        let id = convert::incident_id(id, "id").map_err(invalid)?;
        let incident = self.manager.act(id, action, given(actor)).await.map_err(from_core)?;
        Ok(Response::new(convert::incident(&incident)))
    }
}

/// Empty text is "not given", as proto3 sends an unset string.
fn given(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// A page size of a request: 0 (unset) is the default.
fn limit(limit: u32) -> Result<u32, Status> {
    page_size((limit != 0).then_some(limit)).map_err(from_api)
}

fn text_cursor(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

#[tonic::async_trait]
impl IncidentService for Incidents {
    async fn get_incident(&self, request: Request<GetIncidentRequest>) -> Result<Response<Incident>, Status> {
        let id = convert::incident_id(&request.get_ref().id, "id").map_err(invalid)?;
        let incident = self.manager.get(id).await.map_err(from_core)?;
        Ok(Response::new(convert::incident(&incident)))
    }

    async fn list_incidents(
        &self,
        request: Request<ListIncidentsRequest>,
    ) -> Result<Response<ListIncidentsResponse>, Status> {
        let request = request.into_inner();
        let filter = convert::filter(
            &request.states,
            &request.severities,
            &request.sources,
            &request.categories,
        )
        .map_err(invalid)?;
        let limit = limit(request.limit)?;
        let before =
            cursor(text_cursor(&request.cursor), |cursor| cursor.parse::<IncidentId>().ok()).map_err(from_api)?;
        let incidents = self
            .manager
            .list(
                &filter,
                PageRequest {
                    limit: limit + 1,
                    before,
                },
            )
            .await
            .map_err(from_core)?;
        let (incidents, next_cursor) = one_page(incidents, limit, |incident| incident.id.to_string());
        Ok(Response::new(ListIncidentsResponse {
            incidents: incidents.iter().map(convert::incident).collect(),
            next_cursor: next_cursor.unwrap_or_default(),
        }))
    }

    async fn create_incident(&self, request: Request<CreateIncidentRequest>) -> Result<Response<Incident>, Status> {
        let request = request.into_inner();
        if request.labels.len() > lim_domain::event::MAX_LABELS {
            return Err(invalid(lim_domain::FieldError::new(
                "labels",
                format!(
                    "has more than {max} entries; the limit is {max}",
                    max = lim_domain::event::MAX_LABELS
                ),
            )));
        }
        let name = |value: Option<&'static str>| value.map(str::to_owned);
        let new = NewIncident {
            title: given(request.title),
            description: given(request.description),
            severity: name(
                from_proto::<Severity>(request.severity, "severity")
                    .map_err(invalid)?
                    .map(Severity::as_str),
            ),
            category: name(
                from_proto::<Category>(request.category, "category")
                    .map_err(invalid)?
                    .map(Category::as_str),
            ),
            source: name(
                from_proto::<Source>(request.source, "source")
                    .map_err(invalid)?
                    .map(Source::as_str),
            ),
            labels: request.labels.into_iter().collect::<BTreeMap<_, _>>(),
        };
        let incident = self.manager.open_incident(new).await.map_err(from_core)?;
        Ok(Response::new(convert::incident(&incident)))
    }

    async fn assign_incident(&self, request: Request<AssignIncidentRequest>) -> Result<Response<Incident>, Status> {
        let request = request.into_inner();
        let action = Action::assign(given(request.assignee), given(request.team)).map_err(invalid)?;
        self.act(&request.id, action, request.actor).await
    }

    async fn acknowledge_incident(
        &self,
        request: Request<AcknowledgeIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let request = request.into_inner();
        self.act(&request.id, Action::Acknowledge, request.actor).await
    }

    async fn start_incident(&self, request: Request<StartIncidentRequest>) -> Result<Response<Incident>, Status> {
        let request = request.into_inner();
        self.act(&request.id, Action::Start, request.actor).await
    }

    async fn resolve_incident(&self, request: Request<ResolveIncidentRequest>) -> Result<Response<Incident>, Status> {
        let request = request.into_inner();
        let action = Action::resolve(given(request.note)).map_err(invalid)?;
        self.act(&request.id, action, request.actor).await
    }

    async fn add_comment(&self, request: Request<AddCommentRequest>) -> Result<Response<TimelineEntry>, Status> {
        let request = request.into_inner();
        let id = convert::incident_id(&request.id, "id").map_err(invalid)?;
        let entry = self
            .manager
            .comment(id, given(request.author), given(request.body))
            .await
            .map_err(from_core)?;
        Ok(Response::new(convert::entry(&entry)))
    }

    async fn get_timeline(
        &self,
        request: Request<GetTimelineRequest>,
    ) -> Result<Response<GetTimelineResponse>, Status> {
        let request = request.into_inner();
        let id = convert::incident_id(&request.id, "id").map_err(invalid)?;
        let limit = limit(request.limit)?;
        let after = cursor(text_cursor(&request.cursor), |cursor| {
            cursor.parse::<i64>().ok().filter(|seq| *seq > 0).map(EntryCursor)
        })
        .map_err(from_api)?;
        let page = self
            .manager
            .timeline(id, EntryPageRequest { limit, after })
            .await
            .map_err(from_core)?;
        Ok(Response::new(GetTimelineResponse {
            entries: page.entries.iter().map(convert::entry).collect(),
            next_cursor: page.next.map(|cursor| cursor.0.to_string()).unwrap_or_default(),
        }))
    }

    type WatchIncidentsStream = Pin<Box<dyn Stream<Item = Result<IncidentChange, Status>> + Send + 'static>>;

    async fn watch_incidents(
        &self,
        request: Request<WatchIncidentsRequest>,
    ) -> Result<Response<Self::WatchIncidentsStream>, Status> {
        // A watch made with a key ends when the key is revoked.
        let key = request
            .extensions()
            .get::<AcceptedKey>()
            .map(|accepted| KeyHold::new(Arc::clone(&self.keys), accepted.0.clone()));
        let request = request.into_inner();
        let filter = convert::filter(
            &request.states,
            &request.severities,
            &request.sources,
            &request.categories,
        )
        .map_err(invalid)?;
        let stream = self.hub.watch(filter, key)?;
        Ok(Response::new(Box::pin(stream)))
    }
}
