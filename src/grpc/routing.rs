//! `promised.v1.Routing`.

use tonic::{Request, Response, Status};

use super::auth::check_hold;
use super::convert::{route_request, route_response};
use super::pb::{self, routing_server::Routing};
use super::status::{answer, status};
use super::{caller, Handlers};
use crate::error::Error;
use crate::metrics::Rpc;
use crate::route::{HeldWave, WaveOrder};

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
        let caller = caller(&request)?;
        let deadline = self.0.deadline(request.metadata());
        let (request, reserve) =
            route_request(request.into_inner(), "", caller.owner()).map_err(status)?;
        if let Some(hold) = &reserve {
            check_hold(&self.0.app, &caller, &hold.reservation_id)?;
        }
        answer(async {
            let routed = self
                .0
                .app
                .route(&caller, &request, reserve.as_ref(), &deadline)
                .await?;
            Ok(route_response(
                &request.order_id,
                routed.routing,
                routed.reservation,
            ))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn route_orders(
        &self,
        request: Request<pb::RouteOrdersRequest>,
    ) -> Result<Response<pb::RouteOrdersResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::RouteOrders);
        let caller = caller(&request)?;
        let deadline = self.0.deadline(request.metadata());
        let orders = wave(request.into_inner().orders, caller.owner()).map_err(status)?;
        for hold in orders.iter().filter_map(|order| order.hold.as_ref()) {
            check_hold(&self.0.app, &caller, &hold.reservation_id)?;
        }
        answer(async {
            let HeldWave {
                routing,
                reservations,
            } = self.0.app.route_wave(&caller, &orders, &deadline).await?;
            let responses = orders
                .iter()
                .zip(routing.routings)
                .zip(reservations)
                .map(|((order, routing), held)| {
                    route_response(&order.request.order_id, routing, held)
                })
                .collect();
            Ok(pb::RouteOrdersResponse {
                orders: responses,
                total_cost: routing.total_cost,
                one_by_one_cost: routing.one_by_one_cost,
                orders_served: routing.served as u32,
                one_by_one_served: routing.one_by_one_served as u32,
            })
        })
        .await
    }
}

/// The orders of a wave, bounded; an order that reserves holds for `owner`.
fn wave(orders: Vec<pb::RouteRequest>, owner: &str) -> Result<Vec<WaveOrder>, Error> {
    if orders.len() > MAX_BATCH_ORDERS {
        let problem = format!("at most {MAX_BATCH_ORDERS} orders per call");
        return Err(Error::invalid("orders", problem));
    }
    let mut wave = Vec::with_capacity(orders.len());
    for (i, order) in orders.into_iter().enumerate() {
        let (request, hold) = route_request(order, &format!("orders[{i}]."), owner)?;
        wave.push(WaveOrder { request, hold });
    }
    Ok(wave)
}
