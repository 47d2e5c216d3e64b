//! The gRPC layer: generated protobuf types, conversions, status mapping and the service
//! adapters. Nothing outside this module and the HTTP edge (which calls these adapters)
//! names a protobuf type.

mod admin;
mod auth;
mod availability;
pub mod client;
mod consistency;
mod convert;
pub mod import;
mod promising;
mod request_id;
mod reservations;
mod routing;
mod serve;
mod status;
mod supply;
mod timeout;
mod trace_context;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;

use crate::app::{App, Caller};
use crate::clock::MonotonicClock;
use crate::consistency::Consistency;
use crate::deadline::Deadline;
use crate::metrics::RpcMetrics;

/// Generated messages, clients and servers of `promised.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("promised.v1");

    /// Encoded descriptors of every `promised.v1` file, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/promised_descriptor.bin"));
}

pub use admin::AdminService;
pub use auth::{need, AuthLayer, Authentication};
pub use availability::AvailabilityService;
pub use consistency::{token_header, ConsistencyLayer};
/// The watch messages, which the outbound sinks also render as their events' data.
pub(crate) use convert::{availability_change, order_change};
pub use promising::PromisingService;
pub use request_id::RequestIdLayer;
pub use reservations::ReservationService;
pub use routing::RoutingService;
pub use serve::{caller_statuses, report_store_health, routes, stop_serving};
pub use supply::{FeedOwners, SupplyService};

/// What every service adapter shares.
#[derive(Debug, Clone)]
pub struct Handlers {
    /// The one writer: every call goes through it.
    pub app: App,
    pub rpc: Arc<RpcMetrics>,
    /// Permits for concurrent feed streams; an extra stream is refused, not queued.
    pub feed_streams: Arc<Semaphore>,
    /// Cancelled at shutdown, which ends open feed streams.
    pub shutdown: CancellationToken,
    /// A feed stream silent this long is ended.
    pub feed_idle: Duration,
    /// Which open stream feeds each source.
    pub feed_owners: Arc<FeedOwners>,
    /// Longest a promise or route may work, whatever its caller's timeout.
    pub max_work: Duration,
    /// Measures how long calls work.
    pub work_clock: MonotonicClock,
    /// Permits for open watches; one more is refused, not queued.
    pub watchers: Arc<Semaphore>,
    /// How many permits `watchers` started with, for the refusal.
    pub max_watchers: usize,
    /// Messages one watch may have waiting for its client before it is ended as behind.
    pub watch_buffer: usize,
    /// Gives answers their consistency tokens and holds calls until theirs is reached.
    pub consistency: Consistency,
}

impl Handlers {
    /// When a call's work must stop: its caller's timeout from now, at most `max_work`.
    fn deadline(&self, metadata: &MetadataMap) -> Deadline<'_> {
        let budget = timeout::work_budget(metadata, self.max_work);
        Deadline::after(&self.work_clock, budget)
    }
}

/// Who makes a call: the identity the auth layer admitted and the call's request id. Owner and
/// feed checks ask it; every change it makes records it for the audit trail.
fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
    Ok(Caller::new(
        auth::identity(request)?,
        request_id::of(request),
    ))
}
