//! The one table from gRPC codes to HTTP statuses, and the body every refusal carries: the
//! `google.rpc.Status` JSON shape (`code`, `message`, `details`) with the same `BadRequest`
//! and `PreconditionFailure` details a gRPC caller gets, so one client library reads both.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// An INVALID_ARGUMENT naming the field at fault, as the gRPC edge answers one.
pub fn invalid(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    let details = ErrorDetails::with_bad_request_violation(field, description.clone());
    Status::with_error_details(Code::InvalidArgument, description, details)
}

/// The HTTP status of a gRPC code (the mapping `google.rpc.Code` documents).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A refusal with an HTTP status of its own (413, 415, 404, 405) and the nearest code.
pub fn refusal(http: StatusCode, code: Code, message: impl Into<String>) -> Response {
    respond(http, &Status::new(code, message))
}

/// The answer to a call that failed.
pub fn answer(status: &Status) -> Response {
    respond(http_status(status.code()), status)
}

/// The `google.rpc.Status` JSON of `status`.
pub fn body(status: &Status) -> Value {
    json!({
        "code": status.code() as i32,
        "message": status.message(),
        "details": details(status),
    })
}

fn respond(http: StatusCode, status: &Status) -> Response {
    let mut response = (http, body(status).to_string()).into_response();
    let json = HeaderValue::from_static("application/json");
    response.headers_mut().insert(header::CONTENT_TYPE, json);
    if http == StatusCode::UNAUTHORIZED {
        let challenge = HeaderValue::from_static("Bearer");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

/// The details a gRPC caller would decode from the status, in their JSON mapping.
fn details(status: &Status) -> Vec<Value> {
    let details = status.get_error_details();
    let mut out = Vec::new();
    if let Some(bad) = details.bad_request() {
        let violations: Vec<Value> = bad
            .field_violations
            .iter()
            .map(|v| json!({"field": v.field, "description": v.description}))
            .collect();
        out.push(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": violations,
        }));
    }
    if let Some(failure) = details.precondition_failure() {
        let violations: Vec<Value> = failure
            .violations
            .iter()
            .map(|v| json!({"type": v.r#type, "subject": v.subject, "description": v.description}))
            .collect();
        out.push(json!({
            "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
            "violations": violations,
        }));
    }
    if let Some(info) = details.error_info() {
        out.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": info.reason,
            "domain": info.domain,
            "metadata": info.metadata,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_error_has_its_own_status() {
        let table = [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::FailedPrecondition, 412),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
        ];
        for (code, http) in table {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn field_violations_keep_their_field() {
        let status = invalid("lines[0].quantity", "must be positive");
        let [detail] = details(&status).try_into().expect("one detail");
        assert_eq!(detail["fieldViolations"][0]["field"], "lines[0].quantity");
    }
}
