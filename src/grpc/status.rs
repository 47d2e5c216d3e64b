//! The one table from core errors to gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
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
        }
    }
}
