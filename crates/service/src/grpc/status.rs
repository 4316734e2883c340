//! Errors as the gRPC API answers them: the code of the error's kind (the same table as
//! HTTP's statuses, `ErrorKind::grpc_code`) and a message that names the problem.

use lim_domain::{ErrorKind, FieldError};
use tonic::{Code, Status};

use crate::http::error::ApiError;
use crate::incidents::CoreError;

/// The longest message a status carries; the rest is cut (a message may quote what a
/// client sent).
const MAX_MESSAGE_CHARS: usize = 1024;

pub fn status(kind: ErrorKind, message: &str) -> Status {
    Status::new(
        Code::from_i32(kind.grpc_code()),
        lim_domain::text::shortened(message, MAX_MESSAGE_CHARS),
    )
}

/// `INVALID_ARGUMENT` naming the field.
pub fn invalid(error: FieldError) -> Status {
    status(ErrorKind::InvalidField, &error.to_string())
}

pub fn from_api(error: ApiError) -> Status {
    status(error.kind, &error.message)
}

pub fn from_core(error: CoreError) -> Status {
    // The same message as HTTP's, an internal error's cause logged and not sent.
    from_api(ApiError::from(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_the_codes_of_design_8() {
        assert_eq!(status(ErrorKind::InvalidField, "x").code(), Code::InvalidArgument);
        assert_eq!(status(ErrorKind::NotFound, "x").code(), Code::NotFound);
        assert_eq!(
            status(ErrorKind::IllegalTransition, "x").code(),
            Code::FailedPrecondition
        );
        assert_eq!(status(ErrorKind::PayloadTooLarge, "x").code(), Code::ResourceExhausted);
        assert_eq!(status(ErrorKind::Overloaded, "x").code(), Code::Unavailable);
        assert_eq!(status(ErrorKind::Unavailable, "x").code(), Code::Unavailable);
        let long = status(ErrorKind::InvalidField, &"x".repeat(10_000));
        assert!(long.message().len() < 1100);
    }
}
