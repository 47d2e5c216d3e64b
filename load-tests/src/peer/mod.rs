//! The peers: what a team would build instead of promised, a small stock service over Redis
//! ([`redis`]) or PostgreSQL ([`postgres`]). Both serve the same gRPC API (`peer.v1.Stock`,
//! `proto/peer.proto`) through one adapter; they differ only in their [`Store`].

pub mod postgres;
pub mod redis;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::process::{announce, parent_gone};

/// Generated from `proto/peer.proto`.
pub mod pb {
    tonic::include_proto!("peer.v1");
}

use pb::stock_server::{Stock, StockServer};

/// One line of a hold: a SKU and a positive quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub sku: String,
    pub quantity: i64,
}

/// What a reservation attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    Held,
    /// Nothing was held: these SKUs had too little.
    Short(Vec<String>),
    /// The id already holds stock.
    Duplicate,
}

/// Where a peer keeps its stock. Every operation is atomic on its own.
pub trait Store: Send + Sync + 'static {
    /// Available units per SKU, in order; unknown SKUs have 0.
    fn availability(
        &self,
        skus: &[String],
    ) -> impl Future<Output = anyhow::Result<Vec<i64>>> + Send;

    /// Holds all lines (distinct SKUs, sorted) or none.
    fn reserve(
        &self,
        id: &str,
        lines: &[Line],
    ) -> impl Future<Output = anyhow::Result<Reserved>> + Send;

    /// Gives a hold back; false if there was none.
    fn release(&self, id: &str) -> impl Future<Output = anyhow::Result<bool>> + Send;

    /// Sets SKUs' available units.
    fn load(&self, stock: &[Line]) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Merges a request's lines per SKU and sorts them by SKU (the order rows are locked in),
/// refusing empty SKUs and quantities below 1.
pub fn normalize(lines: Vec<pb::Line>) -> Result<Vec<Line>, Status> {
    if lines.is_empty() {
        return Err(Status::invalid_argument("lines: at least one"));
    }
    let mut merged: Vec<Line> = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        if line.sku.is_empty() || line.quantity < 1 {
            return Err(Status::invalid_argument(format!(
                "lines[{i}]: a SKU and a positive quantity"
            )));
        }
        match merged.iter_mut().find(|l| l.sku == line.sku) {
            Some(same) => same.quantity += line.quantity,
            None => merged.push(Line {
                sku: line.sku,
                quantity: line.quantity,
            }),
        }
    }
    merged.sort_by(|a, b| a.sku.cmp(&b.sku));
    Ok(merged)
}

/// A store failure is the peer's datastore being unavailable or failing.
fn unavailable(error: anyhow::Error) -> Status {
    Status::unavailable(format!("{error:#}"))
}

/// The gRPC adapter over a store.
struct StockService<S>(Arc<S>);

#[tonic::async_trait]
impl<S: Store> Stock for StockService<S> {
    async fn availability(
        &self,
        request: Request<pb::AvailabilityRequest>,
    ) -> Result<Response<pb::AvailabilityResponse>, Status> {
        let skus = request.into_inner().skus;
        let available = self.0.availability(&skus).await.map_err(unavailable)?;
        let items = skus
            .into_iter()
            .zip(available)
            .map(|(sku, available)| pb::SkuAvailability { sku, available })
            .collect();
        Ok(Response::new(pb::AvailabilityResponse { items }))
    }

    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        let request = request.into_inner();
        if request.reservation_id.is_empty() {
            return Err(Status::invalid_argument("reservation_id: required"));
        }
        let lines = normalize(request.lines)?;
        let reserved = self
            .0
            .reserve(&request.reservation_id, &lines)
            .await
            .map_err(unavailable)?;
        let response = match reserved {
            Reserved::Held => pb::ReserveResponse {
                ok: true,
                insufficient_skus: Vec::new(),
            },
            Reserved::Short(skus) => pb::ReserveResponse {
                ok: false,
                insufficient_skus: skus,
            },
            Reserved::Duplicate => {
                return Err(Status::already_exists(format!(
                    "reservation {:?} already holds stock",
                    request.reservation_id
                )))
            }
        };
        Ok(Response::new(response))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let id = request.into_inner().reservation_id;
        let released = self.0.release(&id).await.map_err(unavailable)?;
        Ok(Response::new(pb::ReleaseResponse { released }))
    }

    async fn load(
        &self,
        request: Request<pb::LoadRequest>,
    ) -> Result<Response<pb::LoadResponse>, Status> {
        let stock: Vec<Line> = request
            .into_inner()
            .stock
            .into_iter()
            .map(|line| Line {
                sku: line.sku,
                quantity: line.quantity,
            })
            .collect();
        self.0.load(&stock).await.map_err(unavailable)?;
        Ok(Response::new(pb::LoadResponse {
            loaded: stock.len() as u32,
        }))
    }
}

/// Serves `store` on a free loopback port, announces it to the parent, and stops when the
/// parent goes away.
pub async fn serve(store: impl Store) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    announce(listener.local_addr()?);
    // With a custom incoming stream tonic does not set TCP_NODELAY itself; without it, a
    // response written in several segments waits for the client's delayed ACK (Nagle).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(StockServer::new(StockService(Arc::new(store))))
        .serve_with_incoming_shutdown(incoming, parent_gone())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: i64) -> pb::Line {
        pb::Line {
            sku: sku.into(),
            quantity,
        }
    }

    #[test]
    fn lines_are_merged_per_sku_and_sorted() {
        let lines = normalize(vec![line("B", 1), line("A", 2), line("B", 3)]).expect("valid");
        let merged: Vec<(&str, i64)> = lines.iter().map(|l| (l.sku.as_str(), l.quantity)).collect();
        assert_eq!(merged, [("A", 2), ("B", 4)]);
    }

    #[test]
    fn empty_and_non_positive_lines_are_refused() {
        assert!(normalize(vec![]).is_err());
        assert!(normalize(vec![line("A", 0)]).is_err());
        assert!(normalize(vec![line("", 1)]).is_err());
    }
}
