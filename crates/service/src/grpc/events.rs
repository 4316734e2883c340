//! `EventService`: events one at a time, or a client stream of them stored in batches as
//! they come. The same core and the same validation as `POST /v1/events`.

use std::sync::Arc;
use std::time::Duration;

use lim_domain::event::MAX_BATCH_EVENTS;
use lim_domain::{ErrorKind, RawEvent};
use lim_proto::v1::event_service_server::EventService;
use lim_proto::v1::{EventResult, StreamEventsResponse, SubmitEventRequest, SubmitEventResponse};
use tonic::{Code, Request, Response, Status, Streaming};

use super::convert;
use super::status::{from_core, invalid, status};
use crate::auth::{AcceptedKey, Keys};
use crate::incidents::IncidentManager;

/// The most events one stream carries: its answer holds a result for each (about 50 bytes
/// encoded), which must stay under the 4 MiB that gRPC clients receive by default.
pub const MAX_STREAM_EVENTS: usize = 50_000;

pub struct Events {
    manager: Arc<IncidentManager>,
    /// How long a stream may go without sending an event before it is ended.
    idle_timeout: Duration,
    keys: Arc<Keys>,
}

impl Events {
    pub fn new(manager: Arc<IncidentManager>, idle_timeout: Duration, keys: Arc<Keys>) -> Self {
        Events {
            manager,
            idle_timeout,
            keys,
        }
    }

    /// The next event of the stream: `None` at its end.
    async fn next(&self, stream: &mut Streaming<SubmitEventRequest>, index: usize) -> Result<Option<RawEvent>, Status> {
        let message = match tokio::time::timeout(self.idle_timeout, stream.message()).await {
            Ok(message) => message.map_err(|error| stream_error(error, index))?,
            Err(_) => {
                return Err(status(
                    ErrorKind::RequestTimeout,
                    &format!(
                        "no event for {} s; the events before [{index}] are stored",
                        self.idle_timeout.as_secs()
                    ),
                ));
            }
        };
        message.map(|request| raw(request, index)).transpose()
    }
}

/// The event of a request, named by its place in the stream when refused.
fn raw(request: SubmitEventRequest, index: usize) -> Result<RawEvent, Status> {
    let event = request
        .event
        .ok_or_else(|| lim_domain::FieldError::new("event", "is required"))
        .and_then(convert::raw_event)
        .map_err(|error| invalid(error.in_batch(index)))?;
    Ok(event)
}

/// A stream that failed to bring its next event: a message over the size limit is
/// `RESOURCE_EXHAUSTED` (tonic says `OUT_OF_RANGE`), as it is for a single event.
fn stream_error(error: Status, index: usize) -> Status {
    if error.code() == Code::OutOfRange && error.message().contains("message length too large") {
        return status(
            ErrorKind::PayloadTooLarge,
            &format!("[{index}]: {}; the events before it are stored", error.message()),
        );
    }
    error
}

#[tonic::async_trait]
impl EventService for Events {
    async fn submit_event(
        &self,
        request: Request<SubmitEventRequest>,
    ) -> Result<Response<SubmitEventResponse>, Status> {
        let event = request
            .into_inner()
            .event
            .ok_or_else(|| lim_domain::FieldError::new("event", "is required"))
            .and_then(convert::raw_event)
            .map_err(invalid)?;
        let outcome = self.manager.ingest_one(event).await.map_err(from_core)?;
        Ok(Response::new(SubmitEventResponse {
            result: Some(convert::event_result(&outcome)),
        }))
    }

    async fn stream_events(
        &self,
        request: Request<Streaming<SubmitEventRequest>>,
    ) -> Result<Response<StreamEventsResponse>, Status> {
        let key = request
            .extensions()
            .get::<AcceptedKey>()
            .map(|accepted| accepted.0.clone());
        let mut stream = request.into_inner();
        let mut results = Vec::new();
        let mut batch = Vec::new();
        loop {
            // Waits for one event, then takes every event already received, up to a batch;
            // each is validated as it comes. Whatever ends the stream early, the events
            // before the one that ended it are stored first, as the answer says.
            let index = results.len();
            let first = match self.next(&mut stream, index).await {
                Ok(Some(first)) => first,
                Ok(None) => break,
                Err(error) => return Err(error),
            };
            // A stream made with a key that has been revoked since stops taking events.
            if let Some(name) = &key
                && !self.keys.holds(name)
            {
                return Err(Status::unauthenticated(format!(
                    "[{index}]: the API key of this stream was revoked; the events before it are stored"
                )));
            }
            let mut ended = false;
            let mut failed = self.accept(first, index, &mut batch).err();
            while failed.is_none() && batch.len() < MAX_BATCH_EVENTS {
                // A zero timeout polls the next message once: it is there, or not yet.
                let at = index + batch.len();
                match tokio::time::timeout(Duration::ZERO, stream.message()).await {
                    Ok(Ok(Some(request))) => {
                        failed = raw(request, at)
                            .and_then(|event| self.accept(event, at, &mut batch))
                            .err()
                    }
                    Ok(Ok(None)) => {
                        ended = true;
                        break;
                    }
                    Ok(Err(error)) => failed = Some(stream_error(error, at)),
                    Err(_) => break,
                }
            }
            self.store(&mut batch, &mut results).await?;
            if let Some(failed) = failed {
                return Err(failed);
            }
            if ended {
                break;
            }
        }
        Ok(Response::new(StreamEventsResponse { results }))
    }
}

impl Events {
    /// Validates the event at `index` of the stream into the batch.
    fn accept(&self, event: RawEvent, index: usize, batch: &mut Vec<lim_domain::Event>) -> Result<(), Status> {
        if index >= MAX_STREAM_EVENTS {
            return Err(status(
                ErrorKind::PayloadTooLarge,
                &format!(
                    "[{index}]: a stream carries at most {MAX_STREAM_EVENTS} events; the events before it are stored, \
                     send the rest on a new stream"
                ),
            ));
        }
        let event = self
            .manager
            .validate(event)
            .map_err(|error| invalid(error.in_batch(index)))?;
        batch.push(event);
        Ok(())
    }

    /// Stores a batch in one transaction and appends its results.
    async fn store(&self, batch: &mut Vec<lim_domain::Event>, results: &mut Vec<EventResult>) -> Result<(), Status> {
        let outcomes = self
            .manager
            .ingest_valid(std::mem::take(batch))
            .await
            .map_err(from_core)?;
        results.extend(outcomes.iter().map(convert::event_result));
        Ok(())
    }
}
