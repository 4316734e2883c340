//! The one table of error kinds. Every front door (HTTP, gRPC, jobs) maps a failure
//! to exactly one of these, and each kind knows its HTTP status and gRPC code.

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request body is not valid JSON.
    MalformedJson,
    /// A field is missing, has the wrong type, an unknown value or is too long.
    InvalidField,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// The body is not JSON.
    UnsupportedMediaType,
    /// No incident (or route) with that id.
    NotFound,
    /// The route exists, but not with that method.
    MethodNotAllowed,
    /// The incident's state does not allow that action.
    IllegalTransition,
    /// The store cannot be reached or is shutting down; the caller may retry.
    Unavailable,
    /// A bug or an unexpected failure; logged with its cause.
    Internal,
}

impl ErrorKind {
    /// Stable machine-readable code used in `{"error":{"code":…}}`.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::MalformedJson => "malformed_json",
            ErrorKind::InvalidField => "invalid_field",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::IllegalTransition => "illegal_transition",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    pub const fn http_status(self) -> u16 {
        match self {
            ErrorKind::MalformedJson | ErrorKind::InvalidField => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::IllegalTransition => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// The gRPC status code number (`tonic::Code` as i32).
    pub const fn grpc_code(self) -> i32 {
        match self {
            ErrorKind::MalformedJson | ErrorKind::InvalidField => 3, // INVALID_ARGUMENT
            ErrorKind::PayloadTooLarge => 8,                         // RESOURCE_EXHAUSTED
            ErrorKind::UnsupportedMediaType => 3,                    // INVALID_ARGUMENT
            ErrorKind::NotFound => 5,                                // NOT_FOUND
            ErrorKind::MethodNotAllowed => 12,                       // UNIMPLEMENTED
            ErrorKind::IllegalTransition => 9,                       // FAILED_PRECONDITION
            ErrorKind::Unavailable => 14,                            // UNAVAILABLE
            ErrorKind::Internal => 13,                               // INTERNAL
        }
    }
}
