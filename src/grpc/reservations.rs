//! `promised.v1.Reservations`.

use tonic::{Request, Response, Status};

use super::convert::{reservation, reserve_request};
use super::pb::{self, reservations_server::Reservations};
use super::status::answer;
use super::{caller, Handlers};
use crate::metrics::Rpc;

#[derive(Debug, Clone)]
pub struct ReservationService(pub Handlers);

#[tonic::async_trait]
impl Reservations for ReservationService {
    #[tracing::instrument(skip_all)]
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::Reserve);
        let caller = caller(&request);
        answer(async {
            let request = reserve_request(request.into_inner())?;
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
        let caller = caller(&request);
        answer(async {
            let request = reserve_request(request.into_inner())?;
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
        let caller = caller(&request);
        let request = request.into_inner();
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
        let caller = caller(&request);
        let id = request.into_inner().reservation_id;
        answer(async { Ok(reservation(self.0.app.release(&caller, &id).await?)) }).await
    }

    #[tracing::instrument(skip_all)]
    async fn get(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::GetReservation);
        let id = request.into_inner().reservation_id;
        answer(async { Ok(reservation(self.0.app.get_reservation(&id)?)) }).await
    }

    #[tracing::instrument(skip_all)]
    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::Commit);
        let caller = caller(&request);
        let request = request.into_inner();
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
