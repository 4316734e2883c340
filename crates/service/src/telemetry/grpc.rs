//! gRPC call metrics: a layer around every gRPC route that records
//! `grpc_requests_total{service,method,code}` and `grpc_request_duration_seconds` when the
//! call ends, errors included: the code is read from the answer's `grpc-status`, in its
//! headers (an error answered at once) or its trailers (after a body or a stream). A call
//! whose client went away first is counted as `CANCELLED`.
//!
//! Names come from a closed table, so unknown paths cannot create series. The layer also
//! gives an oversize request message the code DESIGN §8 names, `RESOURCE_EXHAUSTED`
//! (tonic answers `OUT_OF_RANGE`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

use super::Metrics;

/// Every service and method served, as the labels name them.
pub const METHODS: &[(&str, &[&str])] = &[
    ("incident_manager.v1.EventService", &["SubmitEvent", "StreamEvents"]),
    (
        "incident_manager.v1.IncidentService",
        &[
            "GetIncident",
            "ListIncidents",
            "CreateIncident",
            "AssignIncident",
            "AcknowledgeIncident",
            "StartIncident",
            "ResolveIncident",
            "AddComment",
            "GetTimeline",
            "WatchIncidents",
        ],
    ),
    ("grpc.health.v1.Health", &["Check", "Watch"]),
    ("grpc.reflection.v1.ServerReflection", &["ServerReflectionInfo"]),
    ("grpc.reflection.v1alpha.ServerReflection", &["ServerReflectionInfo"]),
];

/// The labels of a path no service answers.
pub const UNKNOWN: &str = "unknown";

/// The canonical names of the status codes, by number.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// `/package.Service/Method` as label values.
pub fn labels_of(path: &str) -> (&'static str, &'static str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (Some(service), Some(method)) = (parts.next(), parts.next()) else {
        return (UNKNOWN, UNKNOWN);
    };
    METHODS
        .iter()
        .find(|(name, _)| *name == service)
        .and_then(|(name, methods)| {
            methods
                .iter()
                .find(|each| **each == method)
                .map(|method| (*name, *method))
        })
        .unwrap_or((UNKNOWN, UNKNOWN))
}

/// The code name of a `grpc-status` header, if it has one.
fn code_of(headers: &HeaderMap) -> Option<&'static str> {
    let number: usize = headers.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    Some(CODES.get(number).copied().unwrap_or("UNKNOWN"))
}

pub async fn track_grpc(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let (service, method) = labels_of(request.uri().path());
    // Recorded as CANCELLED should the client go away before the answer starts (this
    // future is then dropped), unless the answer below takes it over.
    let mut unanswered = Unanswered(Some(Call {
        metrics,
        service,
        method,
        started: Instant::now(),
    }));
    let mut response = next.run(request).await;
    oversize_is_resource_exhausted(response.headers_mut());
    let call = unanswered.0.take().expect("the call is taken once");
    // An error answered at once carries its status in the headers ("trailers only").
    if let Some(code) = code_of(response.headers()) {
        call.finish(code);
        return response;
    }
    response.map(|body| {
        Body::new(Metered {
            inner: body,
            call: Some(call),
        })
    })
}

/// Rewrites tonic's `OUT_OF_RANGE` for a request message over the size limit.
fn oversize_is_resource_exhausted(headers: &mut HeaderMap) {
    let oversize = headers.get("grpc-status").is_some_and(|status| status == "11")
        && headers
            .get("grpc-message")
            .and_then(|message| message.to_str().ok())
            .is_some_and(|message| message.contains("too%20large") || message.contains("too large"));
    if !oversize {
        return;
    }
    let limit = headers
        .get("grpc-message")
        .and_then(|message| message.to_str().ok())
        .and_then(|message| message.rsplit("limit%20is:%20").next())
        .map(|rest| rest.trim_end_matches("%20bytes").to_owned())
        .unwrap_or_default();
    let status = tonic::Status::resource_exhausted(format!(
        "the request message is larger than the limit of {limit} bytes (grpc.max_message_bytes)"
    ));
    let answer = status.into_http::<Body>();
    for name in ["grpc-status", "grpc-message"] {
        if let Some(value) = answer.headers().get(name) {
            headers.insert(name, value.clone());
        }
    }
}

/// One call, recorded once.
struct Call {
    metrics: Arc<Metrics>,
    service: &'static str,
    method: &'static str,
    started: Instant,
}

impl Call {
    fn finish(self, code: &'static str) {
        self.metrics
            .grpc_finished(self.service, self.method, code, self.started.elapsed());
    }
}

/// An answer's body that records its call when the trailers pass, when it ends without
/// them, or when it is dropped unfinished (the client went away).
struct Metered {
    inner: Body,
    call: Option<Call>,
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(code_of)
                    && let Some(call) = self.call.take()
                {
                    call.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.call.take() {
                    call.finish("INTERNAL");
                }
            }
            Poll::Ready(None) => {
                // A body that ends without trailers carried no status.
                if let Some(call) = self.call.take() {
                    call.finish("UNKNOWN");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A call whose answer has not started yet.
struct Unanswered(Option<Call>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(call) = self.0.take() {
            call.finish("CANCELLED");
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish("CANCELLED");
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn only_served_methods_name_their_series() {
        assert_eq!(
            labels_of("/incident_manager.v1.IncidentService/GetIncident"),
            ("incident_manager.v1.IncidentService", "GetIncident")
        );
        assert_eq!(
            labels_of("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            labels_of("/incident_manager.v1.IncidentService/Nope"),
            (UNKNOWN, UNKNOWN)
        );
        assert_eq!(labels_of("/x"), (UNKNOWN, UNKNOWN));
        assert_eq!(labels_of("/a/b/c"), (UNKNOWN, UNKNOWN));
    }

    #[test]
    fn codes_are_read_by_their_canonical_names() {
        let mut headers = HeaderMap::new();
        assert_eq!(code_of(&headers), None);
        headers.insert("grpc-status", HeaderValue::from_static("5"));
        assert_eq!(code_of(&headers), Some("NOT_FOUND"));
        headers.insert("grpc-status", HeaderValue::from_static("99"));
        assert_eq!(code_of(&headers), Some("UNKNOWN"));
    }

    #[test]
    fn tonics_oversize_answer_becomes_resource_exhausted() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static("11"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static(
                "Error,%20decoded%20message%20length%20too%20large:%20found%205000%20bytes,%20the%20limit%20is:%201024%20bytes",
            ),
        );
        oversize_is_resource_exhausted(&mut headers);
        assert_eq!(headers["grpc-status"], "8");
        let message = headers["grpc-message"].to_str().unwrap();
        assert!(message.contains("1024"), "{message}");
        // Any other OUT_OF_RANGE stays.
        let mut other = HeaderMap::new();
        other.insert("grpc-status", HeaderValue::from_static("11"));
        other.insert("grpc-message", HeaderValue::from_static("page%20past%20the%20end"));
        oversize_is_resource_exhausted(&mut other);
        assert_eq!(other["grpc-status"], "11");
    }
}
