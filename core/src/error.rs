//! The errors a caller can act on. The gRPC layer maps each variant to one status code; internal
//! detail stays in logs.

/// One invalid field of a request, named by its path (e.g. `nodes[2].time_zone`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The request is malformed; each violation names a field.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// A named entity does not exist, e.g. `source "WMS-EAST"`.
    #[error("{0} not found")]
    NotFound(String),
    /// The system is not in a state that allows the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Not enough stock for these lines; nothing was held.
    #[error("insufficient stock: {}", describe_shortfalls(.0))]
    InsufficientStock(Vec<Shortfall>),
    /// The id is taken by a different request.
    #[error("{0}")]
    AlreadyExists(String),
    /// A limit was hit; retry later or send less.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The durable store cannot take the mutation now; nothing was acknowledged. Retry.
    #[error("{0}")]
    Unavailable(String),
    /// The request's deadline passed before its work was done; nothing was changed.
    #[error("the deadline passed before the work was done; nothing was changed")]
    DeadlineExceeded,
}

impl Error {
    /// A single invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

/// A line that cannot be held, and how much could be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// `sku@node`, `sku@group` or `sku@network`.
    pub subject: String,
    pub requested: i64,
    pub available: i64,
}

fn describe_shortfalls(shortfalls: &[Shortfall]) -> String {
    shortfalls
        .iter()
        .map(|s| {
            format!(
                "{} requested {} available {}",
                s.subject, s.requested, s.available
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
