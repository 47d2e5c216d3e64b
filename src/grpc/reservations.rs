//! `promised.v1.Reservations`: every call needs `reserve`, and only a reservation's owner (or
//! an operator) may read or change it.

use tonic::{Request, Response, Status};

use super::auth::check_owner;
use super::convert::{order_change, reservation, reserve_request};
use super::pb::{self, reservations_server::Reservations};
use super::status::{answer, status};
use super::watch::{refused, resume_token, Watch};
use super::{caller, Handlers};
use crate::app::Caller;
use crate::metrics::Rpc;
use crate::watch::OrderChange;

#[derive(Debug, Clone)]
pub struct ReservationService(pub Handlers);

impl ReservationService {
    /// The request's message and caller, once the caller may act on the reservation `id_of`
    /// names.
    fn owned<T>(
        &self,
        request: Request<T>,
        id_of: impl Fn(&T) -> &str,
    ) -> Result<(T, Caller), Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        check_owner(&self.0.app, &caller, id_of(&message))?;
        Ok((message, caller))
    }
}

#[tonic::async_trait]
impl Reservations for ReservationService {
    type WatchOrdersStream = Watch<OrderChange, pb::OrderChange>;

    /// Needs scope `insights:read`: it shows every caller's reservations.
    #[tracing::instrument(skip_all)]
    async fn watch_orders(
        &self,
        request: Request<pb::WatchOrdersRequest>,
    ) -> Result<Response<Self::WatchOrdersStream>, Status> {
        let token = resume_token(&request.into_inner().resume_token).map_err(status)?;
        let permit = self.0.watcher()?;
        let app = self.0.app.clone();
        let following = app
            .watch_orders(token, self.0.watch_buffer)
            .await
            .map_err(|e| refused(e, token, app.durability().status().mode == "redis"))?;
        let convert = move |token, change| order_change(token, change, &app.engine().network());
        Ok(Response::new(Watch::new(
            &self.0, following, permit, convert,
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::Reserve);
        let (request, caller) = self.owned(request, |r| &r.reservation_id)?;
        answer(async {
            let request = reserve_request(request, caller.owner())?;
            Ok(reservation(self.0.app.reserve(&caller, &request).await?))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn update(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpdateReservation);
        let (request, caller) = self.owned(request, |r| &r.reservation_id)?;
        answer(async {
            let request = reserve_request(request, caller.owner())?;
            Ok(reservation(
                self.0.app.update_reservation(&caller, &request).await?,
            ))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn extend(
        &self,
        request: Request<pb::ExtendRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::Extend);
        let (request, caller) = self.owned(request, |r| &r.reservation_id)?;
        let ttl_secs = u64::from(request.ttl_seconds);
        answer(async {
            let held = self
                .0
                .app
                .extend(&caller, &request.reservation_id, ttl_secs)
                .await?;
            Ok(reservation(held))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::Release);
        let (request, caller) = self.owned(request, |r| &r.reservation_id)?;
        let id = request.reservation_id;
        answer(async { Ok(reservation(self.0.app.release(&caller, &id).await?)) }).await
    }

    #[tracing::instrument(skip_all)]
    async fn get(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::GetReservation);
        let (request, _) = self.owned(request, |r| &r.reservation_id)?;
        let id = request.reservation_id;
        answer(async { Ok(reservation(self.0.app.get_reservation(&id).await?)) }).await
    }

    #[tracing::instrument(skip_all)]
    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::Commit);
        let (request, caller) = self.owned(request, |r| &r.reservation_id)?;
        answer(async {
            let held = self
                .0
                .app
                .commit_reservation(&caller, &request.reservation_id, &request.order_id)
                .await?;
            Ok(reservation(held))
        })
        .await
    }
}
