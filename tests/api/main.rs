//! Integration tests: the real service over gRPC on loopback.

mod availability;
mod crash;
mod durability;
mod helpers;
mod ingest;
mod model;
mod operations;
mod promising;
mod redis;
mod reservations;
mod routing;
mod validation;
