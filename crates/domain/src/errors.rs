//! The one table of error kinds. Every front door (HTTP, gRPC, jobs) maps a failure
//! to exactly one of these, and each kind knows its HTTP status and gRPC code.

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is not valid HTTP (a request line or header that cannot be read).
    MalformedRequest,
    /// The request body is not valid JSON.
    MalformedJson,
    /// A field is missing, has the wrong type, an unknown value or is too long.
    InvalidField,
    /// The request body did not arrive in time.
    RequestTimeout,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// The request target (path and query) is longer than the server reads.
    UriTooLong,
    /// The body is not JSON.
    UnsupportedMediaType,
    /// The request's headers are larger than the server reads.
    HeadersTooLarge,
    /// No incident (or route) with that id.
    NotFound,
    /// The route exists, but not with that method.
    MethodNotAllowed,
    /// The incident's state does not allow that action.
    IllegalTransition,
    /// The store's queue of writes is full; the caller should retry after a pause.
    Overloaded,
    /// The store cannot be reached or is shutting down; the caller may retry.
    Unavailable,
    /// A configuration reload found the file invalid; the running configuration stays.
    InvalidConfiguration,
    /// No API key, or one that is unknown or revoked.
    Unauthenticated,
    /// The API key lacks the scope the route needs.
    Forbidden,
    /// The client failed to authenticate too often; it may retry later.
    RateLimited,
    /// A bug or an unexpected failure; logged with its cause.
    Internal,
}

impl ErrorKind {
    /// Stable machine-readable code used in `{"error":{"code":…}}`.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::MalformedRequest => "malformed_request",
            ErrorKind::MalformedJson => "malformed_json",
            ErrorKind::InvalidField => "invalid_field",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UriTooLong => "uri_too_long",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::IllegalTransition => "illegal_transition",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::InvalidConfiguration => "invalid_configuration",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Internal => "internal",
        }
    }

    pub const fn http_status(self) -> u16 {
        match self {
            ErrorKind::MalformedRequest | ErrorKind::MalformedJson | ErrorKind::InvalidField => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::IllegalTransition => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UriTooLong => 414,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::HeadersTooLarge => 431,
            ErrorKind::InvalidConfiguration => 422,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::RateLimited => 429,
            ErrorKind::Overloaded | ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// Seconds a client should wait before retrying, sent as `Retry-After`.
    pub const fn retry_after_seconds(self) -> Option<u32> {
        match self {
            ErrorKind::Overloaded => Some(1),
            ErrorKind::Unavailable => Some(5),
            ErrorKind::RateLimited => Some(60),
            _ => None,
        }
    }

    /// The gRPC status code number (`tonic::Code` as i32).
    pub const fn grpc_code(self) -> i32 {
        match self {
            ErrorKind::MalformedRequest | ErrorKind::MalformedJson | ErrorKind::InvalidField => 3, // INVALID_ARGUMENT
            ErrorKind::RequestTimeout => 4,                                                        // DEADLINE_EXCEEDED
            ErrorKind::PayloadTooLarge | ErrorKind::UriTooLong | ErrorKind::HeadersTooLarge => 8,  // RESOURCE_EXHAUSTED
            ErrorKind::UnsupportedMediaType => 3,                                                  // INVALID_ARGUMENT
            ErrorKind::NotFound => 5,                                                              // NOT_FOUND
            ErrorKind::MethodNotAllowed => 12,                                                     // UNIMPLEMENTED
            ErrorKind::IllegalTransition | ErrorKind::InvalidConfiguration => 9, // FAILED_PRECONDITION
            ErrorKind::Overloaded | ErrorKind::Unavailable => 14,                // UNAVAILABLE
            ErrorKind::Internal => 13,                                           // INTERNAL
            ErrorKind::Unauthenticated => 16,                                    // UNAUTHENTICATED
            ErrorKind::Forbidden => 7,                                           // PERMISSION_DENIED
            ErrorKind::RateLimited => 8,                                         // RESOURCE_EXHAUSTED
        }
    }

    /// Every kind, for tables that must cover them all (the OpenAPI document, tests).
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::MalformedRequest,
        ErrorKind::MalformedJson,
        ErrorKind::InvalidField,
        ErrorKind::RequestTimeout,
        ErrorKind::PayloadTooLarge,
        ErrorKind::UriTooLong,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::HeadersTooLarge,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::IllegalTransition,
        ErrorKind::Overloaded,
        ErrorKind::Unavailable,
        ErrorKind::InvalidConfiguration,
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::RateLimited,
        ErrorKind::Internal,
    ];
}
