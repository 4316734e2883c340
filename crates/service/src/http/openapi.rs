//! The OpenAPI document (`GET /openapi.json`): every operation comes from its handler's
//! annotation; this module makes the document exact, so that a client generated from it
//! sends only what the API accepts and knows every answer it can get:
//!
//! - request bodies are written here from the same constants and vocabularies validation
//!   uses (lengths, patterns, enums with every accepted spelling, required fields, no
//!   unknown fields in our own bodies);
//! - path ids, filters, page sizes and cursors get their formats and bounds;
//! - every operation lists every status it can answer with the shared error body: those
//!   any request can get (400 for a request that is not HTTP, 413, 414, 431, 503), and
//!   those of what it reads (a JSON body: 400, 408, 415; an id: 400, 404).
//!
//! The one rule no schema can state is that `occurred_at` may be at most
//! `events.max_clock_skew` ahead of the server's clock; its description says so.

use lim_domain::event::{
    MANUAL_FINGERPRINT_PREFIX, MAX_BATCH_EVENTS, MAX_DESCRIPTION_CHARS, MAX_FINGERPRINT_CHARS, MAX_LABEL_KEY_CHARS,
    MAX_LABEL_VALUE_CHARS, MAX_LABELS, MAX_TITLE_CHARS,
};
use lim_domain::incident::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use lim_domain::lifecycle::MAX_NOTE_CHARS;
use lim_domain::silence::{
    MAX_AUTHOR_CHARS, MAX_COMMENT_CHARS, MAX_MATCHER_CHARS, MAX_MATCHER_VALUES, MAX_MATCHERS, SilenceState,
};
use lim_domain::{Category, ErrorKind, EventStatus, JobKind, JobState, Severity, Source, State};
use serde_json::{Map, Value, json};
use utoipa::OpenApi;

/// `{"status": "ok"}`: the answer of the health routes (its schema is written below).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the wire format only
pub struct Health {
    status: String,
}

use super::{alertmanager, docs, events, incidents, jobs, schedules, silences};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "llm-incident-manager",
        description = "Incident manager for teams that run LLMs in production: events in, incidents \
                       deduplicated and driven to resolution. A 2xx answer to a write means it is stored."
    ),
    paths(
        events::submit_events,
        alertmanager::receive_webhook,
        incidents::list_incidents,
        incidents::open_incident,
        incidents::get_incident,
        incidents::assign,
        incidents::acknowledge,
        incidents::start,
        incidents::resolve,
        incidents::reclassify,
        incidents::add_comment,
        incidents::list_comments,
        incidents::timeline,
        jobs::list_jobs,
        jobs::get_job,
        jobs::retry_job,
        silences::create_silence,
        silences::list_silences,
        silences::get_silence,
        silences::delete_silence,
        schedules::list_schedules,
        schedules::oncall,
        schedules::shifts,
        super::reload,
        super::live,
        super::ready,
        super::openapi,
        docs::reference,
    )
)]
pub struct ApiDoc;

/// The document served at `/openapi.json`.
pub fn document() -> Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    document["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    let schemas = document["components"]["schemas"]
        .as_object_mut()
        .expect("the document has component schemas");
    schemas.extend(exact_schemas());
    schemas["EventResult"]["properties"]["outcome"] = json!({
        "type": "string",
        "enum": ["created", "deduplicated", "redelivered", "resolved", "ignored"],
        "description": "`redelivered`: the same occurrence again (same fingerprint and `occurred_at` as the last \
                        one counted), not counted twice; `ignored`: a `resolved` event with nothing open.",
    });
    document["components"]["parameters"] = parameters();
    document["components"]["responses"] = shared_responses();
    document["components"]["securitySchemes"] = json!({
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`llm-incident-manager keys create`). Needed once any key exists; until \
                            then the API is open. The Alertmanager webhook also takes the key as the password of \
                            HTTP basic authentication.",
        },
        "alertmanagerBasic": {
            "type": "http",
            "scheme": "basic",
            "description": "The API key as the password (Alertmanager's `http_config.basic_auth`).",
        },
    });
    for (path, item) in document["paths"].as_object_mut().expect("the document has paths") {
        for (method, operation) in item.as_object_mut().expect("a path item is an object") {
            make_exact(path, method, operation);
        }
    }
    document
}

/// Every character `str::trim` removes (Unicode `White_Space`), for patterns that must
/// agree with validation, which trims text before it checks that something is left.
const WHITESPACE: &str = r"\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// No NUL anywhere (no PostgreSQL text can hold it).
const NO_NUL: &str = r"^[^\u0000]*$";
/// The form of an incident id that the API reads: a hyphenated UUID.
pub const UUID_PATTERN: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
/// A job id: a positive number, written plainly.
const JOB_ID_PATTERN: &str = "^[1-9][0-9]{0,17}$";
/// An entry cursor: the positive number the previous page ended at.
const ENTRY_CURSOR_PATTERN: &str = "^[1-9][0-9]{0,17}$";

/// Text that must hold something besides whitespace, no NUL, at most `max` characters.
fn required_text(max: usize, description: &str) -> Value {
    json!({
        "type": "string",
        "maxLength": max,
        "pattern": format!("^[^\\u0000]*[^\\u0000{WHITESPACE}][^\\u0000]*$"),
        "description": description,
    })
}

/// Optional text: absent, `null`, or a string of at most `max` characters without NUL.
fn optional_text(max: usize, description: &str) -> Value {
    json!({
        "type": ["string", "null"],
        "maxLength": max,
        "pattern": NO_NUL,
        "description": description,
    })
}

/// Every accepted spelling of a vocabulary (canonical first, then aliases), as an enum.
fn spellings(spellings: &[(&str, &[&str])], nullable: bool, description: &str) -> Value {
    let mut values: Vec<Value> = spellings
        .iter()
        .flat_map(|(text, aliases)| std::iter::once(text).chain(aliases.iter()))
        .map(|text| json!(text))
        .collect();
    if nullable {
        values.push(Value::Null);
    }
    json!({
        "type": if nullable { json!(["string", "null"]) } else { json!("string") },
        "enum": values,
        "description": description,
    })
}

fn with_default(mut schema: Value, default: &str) -> Value {
    schema["default"] = json!(default);
    schema
}

fn labels() -> Value {
    json!({
        "type": "object",
        "description": format!(
            "At most {MAX_LABELS} labels; keys of 1 to {MAX_LABEL_KEY_CHARS} characters, values of at most \
             {MAX_LABEL_VALUE_CHARS}, neither with NUL."
        ),
        "maxProperties": MAX_LABELS,
        "propertyNames": {"minLength": 1, "maxLength": MAX_LABEL_KEY_CHARS, "pattern": NO_NUL},
        "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_VALUE_CHARS, "pattern": NO_NUL},
    })
}

fn actor(field: &str) -> Value {
    optional_text(
        MAX_LABEL_KEY_CHARS,
        &format!("Who does it; `api` when absent or blank. (`{field}`)"),
    )
}

/// The request bodies, written from validation's own limits, and the answers whose
/// derived schemas are looser than what is sent.
fn exact_schemas() -> Map<String, Value> {
    let severity = |nullable| {
        spellings(
            Severity::SPELLINGS,
            nullable,
            "P0 (critical) to P4 (informational), or an alias.",
        )
    };
    let category = |nullable| spellings(Category::SPELLINGS, nullable, "What kind of problem it is.");
    let mut schemas = Map::new();
    schemas.insert(
        "EventBody".into(),
        json!({
            "type": "object",
            "description": "An event as a sender writes it. Unknown fields are refused.",
            "additionalProperties": false,
            "required": ["source", "title"],
            "properties": {
                "source": spellings(Source::SPELLINGS, false, "The system that reports the event."),
                "title": required_text(MAX_TITLE_CHARS, "What happened; trimmed."),
                "description": optional_text(MAX_DESCRIPTION_CHARS, "More detail; trimmed."),
                "severity": with_default(severity(true), "P2"),
                "category": with_default(category(true), "other"),
                "labels": labels(),
                "fingerprint": {
                    "type": ["string", "null"],
                    "maxLength": MAX_FINGERPRINT_CHARS,
                    "pattern": format!("^[^\\u0000]*[^\\u0000{WHITESPACE}][^\\u0000]*$"),
                    "not": {"type": "string", "pattern": format!("^[{WHITESPACE}]*{MANUAL_FINGERPRINT_PREFIX}")},
                    "description": format!(
                        "The dedup key; default: a hash of source, title and sorted labels. The prefix \
                         `{MANUAL_FINGERPRINT_PREFIX}` is reserved for incidents opened by hand."
                    ),
                },
                "status": with_default(
                    spellings(
                        EventStatus::SPELLINGS,
                        true,
                        "`firing`, or `resolved` to resolve the open incident with this fingerprint.",
                    ),
                    "firing",
                ),
                "occurred_at": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "RFC 3339; default: when it was received. At most `events.max_clock_skew` \
                                    (10 minutes by default) ahead of the server's clock. Sent again with the same \
                                    fingerprint and time, the event is a redelivery and is not counted twice.",
                },
            },
            "example": {
                "source": "sentinel", "title": "p95 latency over SLO", "severity": "high",
                "category": "performance", "labels": {"model": "gpt-4o", "region": "eu"}
            },
        }),
    );
    schemas.insert(
        "EventBatch".into(),
        json!({
            "type": "array",
            "description": "Events stored together, or none of them.",
            "minItems": 1,
            "maxItems": MAX_BATCH_EVENTS,
            "items": {"$ref": "#/components/schemas/EventBody"},
        }),
    );
    schemas.insert(
        "NewIncidentBody".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["title"],
            "properties": {
                "title": required_text(MAX_TITLE_CHARS, "What is wrong; trimmed."),
                "description": optional_text(MAX_DESCRIPTION_CHARS, "More detail; trimmed."),
                "severity": with_default(severity(true), "P2"),
                "category": with_default(category(true), "other"),
                "source": with_default(spellings(Source::SPELLINGS, true, "Who reports it."), "manual"),
                "labels": labels(),
            },
            "example": {"title": "Customer reports wrong answers in German", "severity": "P2", "category": "data_quality"},
        }),
    );
    schemas.insert(
        "AssignBody".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["assignee"],
            "properties": {
                "assignee": required_text(MAX_TITLE_CHARS, "The person."),
                "team": optional_text(MAX_TITLE_CHARS, "Their team; kept when absent or blank."),
                "actor": actor("actor"),
            },
            "example": {"assignee": "ana", "team": "ml-oncall"},
        }),
    );
    schemas.insert(
        "ActorBody".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {"actor": actor("actor")},
            "example": {"actor": "ana"},
        }),
    );
    schemas.insert(
        "ResolveBody".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "note": optional_text(MAX_NOTE_CHARS, "How it was resolved."),
                "actor": actor("actor"),
            },
            "example": {"note": "rolled back to v1.2", "actor": "ana"},
        }),
    );
    schemas.insert(
        "ReclassifyBody".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "description": "A severity, a category, or both.",
            "properties": {
                "severity": severity(true),
                "category": category(true),
                "actor": actor("actor"),
            },
            "anyOf": [
                {"required": ["severity"], "properties": {"severity": {"type": "string"}}},
                {"required": ["category"], "properties": {"category": {"type": "string"}}},
            ],
            "example": {"severity": "P0", "actor": "ana"},
        }),
    );
    schemas.insert(
        "CommentBody".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["body"],
            "properties": {
                "author": actor("author"),
                "body": required_text(MAX_DESCRIPTION_CHARS, "The comment; trimmed."),
            },
            "example": {"author": "ana", "body": "rolling back the model"},
        }),
    );
    schemas.insert("SilenceBody".into(), silence_body());
    schemas.insert(
        "AlertmanagerWebhook".into(),
        json!({
            "type": "object",
            "description": "Alertmanager's webhook payload, version 4. Fields this service does not read are \
                            ignored; no alert is refused over a size limit (it is shortened and marked).",
            "required": ["version"],
            "properties": {
                "version": {"type": "string", "enum": ["4"]},
                "alerts": {"type": "array", "items": {"$ref": "#/components/schemas/AlertmanagerAlert"}},
            },
            "example": {
                "version": "4", "status": "firing", "receiver": "incident-manager",
                "alerts": [{
                    "status": "firing",
                    "labels": {"alertname": "LLMLatencyHigh", "severity": "critical"},
                    "annotations": {"summary": "p95 latency high"},
                    "startsAt": "2026-01-01T00:00:00Z",
                    "fingerprint": "a1b2c3d4e5f60718"
                }]
            },
        }),
    );
    let strings = json!({"type": "object", "additionalProperties": {"type": "string"}});
    schemas.insert(
        "AlertmanagerAlert".into(),
        json!({
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "description": "`resolved` (in any case) resolves; anything else fires."},
                "labels": strings,
                "annotations": strings,
                "startsAt": {"type": ["string", "null"], "description": "RFC 3339; anything else is taken as unset."},
                "endsAt": {"type": ["string", "null"], "description": "RFC 3339; anything else is taken as unset."},
                "fingerprint": {"type": ["string", "null"]},
            },
        }),
    );
    schemas.insert(
        "ErrorDetail".into(),
        json!({
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "enum": ErrorKind::ALL.iter().map(|kind| kind.code()).collect::<Vec<_>>(),
                    "description": "Stable machine-readable code.",
                },
                "message": {"type": "string", "description": "What was wrong, naming the field or the state."},
            },
        }),
    );
    schemas.insert(
        "Health".into(),
        json!({
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok"]}},
        }),
    );
    schemas.insert(
        "IncidentId".into(),
        json!({"type": "string", "format": "uuid", "pattern": UUID_PATTERN}),
    );
    schemas
}

/// A silence as the API takes it: matchers of exact spellings, a window, a comment.
fn silence_body() -> Value {
    let one_or_many = |value: Value| {
        json!({"oneOf": [
            value.clone(),
            {"type": "array", "minItems": 1, "maxItems": MAX_MATCHER_VALUES, "items": value},
        ]})
    };
    let text = json!({"type": "string", "maxLength": MAX_MATCHER_CHARS, "pattern": NO_NUL});
    let vocabulary = |spellings: &[(&str, &[&str])]| {
        let values: Vec<&str> = spellings
            .iter()
            .flat_map(|(text, aliases)| std::iter::once(*text).chain(aliases.iter().copied()))
            .collect();
        one_or_many(json!({"type": "string", "enum": values}))
    };
    let label_key = format!("^labels\\.[^\\u0000]{{1,{}}}$", MAX_MATCHER_CHARS - "labels.".len());
    let table = |equal: bool, description: &str| {
        let field = |spellings: &[(&str, &[&str])]| {
            if equal {
                vocabulary(spellings)
            } else {
                one_or_many(text.clone())
            }
        };
        json!({
            "type": "object",
            "description": description,
            "maxProperties": MAX_MATCHERS,
            "properties": {
                "source": field(Source::SPELLINGS),
                "severity": field(Severity::SPELLINGS),
                "category": field(Category::SPELLINGS),
            },
            "patternProperties": {label_key.clone(): one_or_many(text.clone())},
            "additionalProperties": false,
        })
    };
    json!({
        "type": "object",
        "description": "A silence: while it holds, a matching incident is recorded and counted but notifies \
                        and escalates nobody. Unknown fields are refused.",
        "additionalProperties": false,
        "required": ["matchers", "ends_at", "comment"],
        "properties": {
            "matchers": {
                "type": "object",
                "description": "Matchers as in routes, all of which must hold; at least one.",
                "additionalProperties": false,
                "properties": {
                    "match": table(true, "Equality with one of the values: `source`, `severity`, `category` \
                                          (exact spellings) or `labels.NAME`."),
                    "match_re": table(false, "Fully anchored regular expressions over the same keys; each must \
                                              be a valid expression."),
                },
                "anyOf": [
                    {"required": ["match"], "properties": {"match": {"minProperties": 1}}},
                    {"required": ["match_re"], "properties": {"match_re": {"minProperties": 1}}},
                ],
            },
            "starts_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "RFC 3339; default: now.",
            },
            "ends_at": {
                "type": "string",
                "format": "date-time",
                "description": "RFC 3339; after `starts_at`, and in the future.",
            },
            "comment": required_text(MAX_COMMENT_CHARS, "Why; trimmed."),
            "created_by": optional_text(MAX_AUTHOR_CHARS, "Who; `api` when absent or blank."),
        },
        "example": {
            "matchers": {"match": {"labels.model": "gpt-4o"}, "match_re": {"severity": "P[2-4]"}},
            "ends_at": "2030-01-01T02:00:00Z",
            "comment": "model upgrade",
            "created_by": "ana",
        },
    })
}

fn parameters() -> Value {
    let filter = |name: &str, spellings: &[(&str, &[&str])], description: &str| {
        let values: Vec<&str> = spellings
            .iter()
            .flat_map(|(text, aliases)| std::iter::once(*text).chain(aliases.iter().copied()))
            .collect();
        json!({
            "name": name,
            "in": "query",
            "required": false,
            "style": "form",
            "explode": false,
            "description": description,
            "schema": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": values}},
        })
    };
    json!({
        "IncidentId": {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "The incident's id (a hyphenated UUID).",
            "schema": {"type": "string", "format": "uuid", "pattern": UUID_PATTERN},
            "example": "01932f3e-8a4b-7c3d-9e2f-0a1b2c3d4e5f",
        },
        "State": filter("state", State::SPELLINGS, "Comma-separated states; any when absent."),
        "Severity": filter("severity", Severity::SPELLINGS, "Comma-separated severities; any when absent."),
        "Source": filter("source", Source::SPELLINGS, "Comma-separated sources; any when absent."),
        "Category": filter("category", Category::SPELLINGS, "Comma-separated categories; any when absent."),
        "Limit": {
            "name": "limit",
            "in": "query",
            "required": false,
            "description": "Page size.",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
        },
        "JobId": {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "The job's number.",
            "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
            "example": "42",
        },
        "JobState": filter("state", JobState::SPELLINGS, "Comma-separated job states; any when absent."),
        "JobKind": filter("kind", JobKind::SPELLINGS, "Comma-separated job kinds; any when absent."),
        "JobCursor": {
            "name": "cursor",
            "in": "query",
            "required": false,
            "description": "The `next_cursor` of the previous page.",
            "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
        },
        "IncidentCursor": {
            "name": "cursor",
            "in": "query",
            "required": false,
            "description": "The `next_cursor` of the previous page.",
            "schema": {"type": "string", "pattern": UUID_PATTERN},
        },
        "EntryCursor": {
            "name": "cursor",
            "in": "query",
            "required": false,
            "description": "The `next_cursor` of the previous page.",
            "schema": {"type": "string", "pattern": ENTRY_CURSOR_PATTERN},
        },
        "SilenceId": {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "The silence's id (a hyphenated UUID).",
            "schema": {"type": "string", "format": "uuid", "pattern": UUID_PATTERN},
            "example": "01932f3e-8a4b-7c3d-9e2f-0a1b2c3d4e5f",
        },
        "SilenceState": filter("state", SilenceState::SPELLINGS, "Comma-separated silence states now; any when absent."),
        "SilenceCursor": {
            "name": "cursor",
            "in": "query",
            "required": false,
            "description": "The `next_cursor` of the previous page.",
            "schema": {"type": "string", "pattern": UUID_PATTERN},
        },
        "ScheduleName": {
            "name": "name",
            "in": "path",
            "required": true,
            "description": "The schedule's name, as configured (`[schedules.NAME]`).",
            "schema": {"type": "string", "minLength": 1, "maxLength": 256},
            "example": "primary",
        },
        "At": time_parameter("at", "The moment to ask about; default: now."),
        "From": time_parameter("from", "The window's start; default: a week before `to`, or now."),
        "To": time_parameter("to", "The window's end; default: a week after `from`. A window that ends before it \
                                     starts holds no shift; an answer lists 1,000 at most (see `next_from`)."),
    })
}

/// An optional RFC 3339 time in the query.
fn time_parameter(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "required": false,
        "description": description,
        "schema": {"type": "string", "format": "date-time"},
    })
}

/// OpenAPI links from an answer that names an incident to what can be done with it, so
/// that clients (and schemathesis' stateful phase) can follow them.
fn links_to_the_incident(id: &str) -> Value {
    let operations = [
        ("GetIncident", "get_incident"),
        ("Timeline", "timeline"),
        ("Comments", "list_comments"),
        ("AddComment", "add_comment"),
        ("Assign", "assign"),
        ("Acknowledge", "acknowledge"),
        ("Start", "start"),
        ("Resolve", "resolve"),
        ("Reclassify", "reclassify"),
    ];
    operations
        .into_iter()
        .map(|(name, operation_id)| {
            (
                name.to_owned(),
                json!({"operationId": operation_id, "parameters": {"id": id}}),
            )
        })
        .collect::<Map<_, _>>()
        .into()
}

/// The answers any operation may share, each with the error body.
fn shared_responses() -> Value {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        })
    };
    let mut unavailable = error(
        "The store is overloaded (`overloaded`) or unreachable (`unavailable`), or the request took longer than \
         `http.request_timeout`; retry after `Retry-After` seconds.",
    );
    unavailable["headers"] = json!({
        "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 0}}
    });
    json!({
        "BadRequest": error(
            "Malformed JSON (`malformed_json`), an invalid field, id, query or unknown field (`invalid_field`), or \
             a request that is not HTTP (`malformed_request`); the message names the problem."
        ),
        "NotFound": error("No incident, job, silence or schedule with that id or name (`not_found`)."),
        "InvalidConfiguration": error(
            "The configuration file was refused (`invalid_configuration`); the message says why, and the running \
             configuration stays."
        ),
        "RequestTimeout": error("The body did not arrive within `http.body_timeout` (`request_timeout`)."),
        "Conflict": error(
            "The incident's state does not allow this action, or the job is not dead (`illegal_transition`); \
             nothing changed."
        ),
        "PayloadTooLarge": error("The body, or its declared length, is over `http.max_body_bytes` (`payload_too_large`)."),
        "UriTooLong": error("The path and query are over `http.max_uri_bytes` (`uri_too_long`)."),
        "UnsupportedMediaType": error("The body is not declared as JSON (`unsupported_media_type`)."),
        "HeadersTooLarge": error("The request headers are too large (`headers_too_large`)."),
        "Unavailable": unavailable,
        "Unauthenticated": error(
            "No API key, or one that is unknown or revoked (`unauthenticated`); sent only once some key exists."
        ),
        "Forbidden": error("The API key lacks the scope this operation needs (`forbidden`)."),
        "RateLimited": {
            "description": "Too many failed attempts from this client (`rate_limited`); retry after `Retry-After` seconds.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            "headers": {
                "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 0}}
            },
        },
    })
}

/// The component parameter of a path's `{id}` or `{name}`.
fn path_parameter(path: &str) -> &'static str {
    if path.starts_with("/v1/jobs/") {
        "JobId"
    } else if path.starts_with("/v1/silences/") {
        "SilenceId"
    } else if path.starts_with("/v1/schedules/") {
        "ScheduleName"
    } else {
        "IncidentId"
    }
}

/// One operation: its parameters and every answer it can give.
fn make_exact(path: &str, method: &str, operation: &mut Value) {
    let with_id = path.contains("{id}") || path.contains("{name}");
    let mut parameters: Vec<Value> = Vec::new();
    if with_id {
        parameters.push(json!({"$ref": format!("#/components/parameters/{}", path_parameter(path))}));
    }
    let query: &[&str] = match (method, path) {
        ("get", "/v1/incidents") => &["State", "Severity", "Source", "Category", "Limit", "IncidentCursor"],
        ("get", "/v1/incidents/{id}/timeline" | "/v1/incidents/{id}/comments") => &["Limit", "EntryCursor"],
        ("get", "/v1/jobs") => &["JobState", "JobKind", "Limit", "JobCursor"],
        ("get", "/v1/silences") => &["SilenceState", "Limit", "SilenceCursor"],
        ("get", "/v1/schedules/{name}/oncall") => &["At"],
        ("get", "/v1/schedules/{name}/shifts") => &["From", "To"],
        _ => &[],
    };
    for name in query {
        parameters.push(json!({"$ref": format!("#/components/parameters/{name}")}));
    }
    if parameters.is_empty() {
        operation.as_object_mut().expect("an operation").remove("parameters");
    } else {
        operation["parameters"] = Value::Array(parameters);
    }
    match (method, path) {
        ("post", "/v1/events") => {
            operation["requestBody"]["content"]["application/json"]["schema"] = json!({"oneOf": [
                {"$ref": "#/components/schemas/EventBody"},
                {"$ref": "#/components/schemas/EventBatch"},
            ]});
            operation["responses"]["200"]["content"]["application/json"]["schema"] = json!({"oneOf": [
                {"$ref": "#/components/schemas/EventResult"},
                {"$ref": "#/components/schemas/BatchResult"},
            ]});
        }
        ("post", "/v1/incidents") => {
            operation["responses"]["201"]["links"] = links_to_the_incident("$response.body#/id");
        }
        ("post", "/v1/silences") => {
            operation["requestBody"]["content"]["application/json"]["schema"] =
                json!({"$ref": "#/components/schemas/SilenceBody"});
            operation["responses"]["201"]["links"] = json!({
                "GetSilence": {"operationId": "get_silence", "parameters": {"id": "$response.body#/id"}},
                "DeleteSilence": {"operationId": "delete_silence", "parameters": {"id": "$response.body#/id"}},
            });
        }
        ("get", "/v1/schedules") => {
            operation["responses"]["200"]["links"] = json!({
                "OnCall": {"operationId": "oncall", "parameters": {"name": "$response.body#/schedules/0/name"}},
                "Shifts": {"operationId": "shifts", "parameters": {"name": "$response.body#/schedules/0/name"}},
            });
        }
        ("post", "/-/reload") => {
            operation["responses"]["422"] = json!({"$ref": "#/components/responses/InvalidConfiguration"});
        }
        ("post", "/v1/integrations/alertmanager") => {
            operation["requestBody"]["content"]["application/json"]["schema"] =
                json!({"$ref": "#/components/schemas/AlertmanagerWebhook"});
        }
        // Actions whose body may be left out.
        ("post", "/v1/incidents/{id}/acknowledge" | "/v1/incidents/{id}/start" | "/v1/incidents/{id}/resolve") => {
            operation["requestBody"]["required"] = json!(false);
        }
        _ => {}
    }
    let reads_body = operation.get("requestBody").is_some();
    let mut shared = vec![
        ("413", "PayloadTooLarge"),
        ("414", "UriTooLong"),
        ("431", "HeadersTooLarge"),
        ("503", "Unavailable"),
        ("400", "BadRequest"),
    ];
    if with_id {
        shared.push(("404", "NotFound"));
    }
    if let Some(scope) = crate::auth::http_scope(&method.to_uppercase(), path) {
        shared.push(("401", "Unauthenticated"));
        shared.push(("403", "Forbidden"));
        shared.push(("429", "RateLimited"));
        // An empty requirement too: while no key exists, none is needed.
        let mut security = vec![json!({"apiKey": []})];
        if path == "/v1/integrations/alertmanager" {
            security.push(json!({"alertmanagerBasic": []}));
        }
        security.push(json!({}));
        operation["security"] = Value::Array(security);
        let description = operation["description"].as_str().unwrap_or_default().to_owned();
        let needs = format!("Needs a key with the `{scope}` scope once any key exists.");
        operation["description"] = json!(if description.is_empty() {
            needs
        } else {
            format!("{description}\n\n{needs}")
        });
    }
    if reads_body {
        shared.push(("408", "RequestTimeout"));
        shared.push(("415", "UnsupportedMediaType"));
    }
    let transitions = ["assign", "acknowledge", "start", "resolve", "reclassify", "retry"];
    if transitions.iter().any(|action| path.ends_with(&format!("/{action}"))) {
        shared.push(("409", "Conflict"));
    }
    let responses = operation["responses"]
        .as_object_mut()
        .expect("an operation has responses");
    for (status, name) in shared {
        responses.insert(
            status.to_owned(),
            json!({"$ref": format!("#/components/responses/{name}")}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_answers_with_the_shared_errors_and_every_id_is_typed() {
        let document = document();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                for status in ["400", "413", "414", "431", "503"] {
                    assert!(responses.contains_key(status), "{method} {path} lacks {status}");
                }
                if path.contains("{id}") || path.contains("{name}") {
                    assert!(responses.contains_key("404"), "{method} {path} lacks 404");
                    assert_eq!(
                        operation["parameters"][0]["$ref"],
                        format!("#/components/parameters/{}", path_parameter(path)).as_str()
                    );
                }
                if operation.get("requestBody").is_some() {
                    for status in ["408", "415"] {
                        assert!(responses.contains_key(status), "{method} {path} lacks {status}");
                    }
                }
            }
        }
        let title = &document["components"]["schemas"]["EventBody"]["properties"]["title"];
        assert_eq!(title["maxLength"], MAX_TITLE_CHARS);
    }
}
