//! Integration tests: the real service over gRPC on loopback.

mod availability;
mod helpers;
mod ingest;
mod operations;
mod validation;
