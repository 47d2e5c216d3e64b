//! `promised.v1.Routing`.

use tonic::{Request, Response, Status};

use super::convert::{route_request, route_response};
use super::pb::{self, routing_server::Routing};
use super::Handlers;
use crate::error::Error;
use crate::metrics::Rpc;

/// Orders one `RouteOrders` call may route.
const MAX_BATCH_ORDERS: usize = 1_000;

#[derive(Debug, Clone)]
pub struct RoutingService(pub Handlers);

#[tonic::async_trait]
impl Routing for RoutingService {
    #[tracing::instrument(skip_all)]
    async fn route_order(
        &self,
        request: Request<pb::RouteRequest>,
    ) -> Result<Response<pb::RouteResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::RouteOrder);
        let (request, reserve) = route_request(request.into_inner(), "")?;
        let engine = &self.0.engine;
        let routed = match reserve {
            None => crate::route::Routed {
                routing: engine.route(&request)?,
                reservation: None,
            },
            Some((id, ttl)) => {
                self.0.durability.ensure_writable()?;
                self.0
                    .durability
                    .commit(engine.route_and_reserve(&request, &id, ttl)?)
                    .await?
            }
        };
        Ok(Response::new(route_response(
            &request.order_id,
            routed.routing,
            routed.reservation,
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn route_orders(
        &self,
        request: Request<pb::RouteOrdersRequest>,
    ) -> Result<Response<pb::RouteOrdersResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::RouteOrders);
        let orders = request.into_inner().orders;
        if orders.len() > MAX_BATCH_ORDERS {
            let problem = format!("at most {MAX_BATCH_ORDERS} orders per call");
            return Err(Error::invalid("orders", problem).into());
        }
        let mut requests = Vec::with_capacity(orders.len());
        for (i, order) in orders.into_iter().enumerate() {
            let (request, reserve) = route_request(order, &format!("orders[{i}]."))?;
            if reserve.is_some() {
                return Err(Error::invalid(
                    format!("orders[{i}].reserve"),
                    "batch routing does not reserve",
                )
                .into());
            }
            requests.push(request);
        }
        let batch = self.0.engine.route_batch(&requests)?;
        let orders = requests
            .iter()
            .zip(batch.routings)
            .map(|(request, routing)| route_response(&request.order_id, routing, None))
            .collect();
        Ok(Response::new(pb::RouteOrdersResponse {
            orders,
            total_cost: batch.total_cost,
            one_by_one_cost: batch.one_by_one_cost,
        }))
    }
}
