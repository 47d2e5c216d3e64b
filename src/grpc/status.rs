//! The one table from core errors to gRPC statuses.

use std::future::Future;

use tonic::{Code, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;

/// Runs a handler's body and answers it: the value, or the status of its error.
pub async fn answer<T>(
    body: impl Future<Output = Result<T, Error>>,
) -> Result<Response<T>, Status> {
    body.await.map(Response::new).map_err(status)
}

/// The status a caller sees for a core error.
pub fn status(error: Error) -> Status {
    match error {
        Error::InvalidArgument(ref violations) => {
            let mut details = ErrorDetails::new();
            for violation in violations {
                details.add_bad_request_violation(&violation.field, &violation.description);
            }
            Status::with_error_details(Code::InvalidArgument, error.to_string(), details)
        }
        Error::NotFound(_) => Status::not_found(error.to_string()),
        Error::FailedPrecondition(_) => Status::failed_precondition(error.to_string()),
        Error::InsufficientStock(ref shortfalls) => {
            let mut details = ErrorDetails::new();
            for shortfall in shortfalls {
                let description = format!(
                    "requested {} available {}",
                    shortfall.requested, shortfall.available
                );
                details.add_precondition_failure_violation(
                    "INSUFFICIENT_STOCK",
                    &shortfall.subject,
                    description,
                );
            }
            Status::with_error_details(Code::FailedPrecondition, error.to_string(), details)
        }
        Error::AlreadyExists(_) => Status::already_exists(error.to_string()),
        Error::ResourceExhausted(_) => Status::resource_exhausted(error.to_string()),
        Error::Unavailable(_) => Status::unavailable(error.to_string()),
        Error::DeadlineExceeded => Status::deadline_exceeded(error.to_string()),
    }
}
