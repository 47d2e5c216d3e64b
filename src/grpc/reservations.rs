//! `promised.v1.Reservations`.

use tonic::{Request, Response, Status};

use super::convert::{reservation, reserve_request};
use super::pb::{self, reservations_server::Reservations};
use super::Handlers;
use crate::metrics::Rpc;
use crate::mutation::Mutation;
use crate::reserve::Held;

#[derive(Debug, Clone)]
pub struct ReservationService(pub Handlers);

impl ReservationService {
    /// Makes a reservation change durable before answering it.
    async fn answer(&self, mutation: Mutation<Held>) -> Result<Response<pb::Reservation>, Status> {
        let held = self.0.durability.commit(mutation).await?;
        Ok(Response::new(reservation(held)))
    }
}

#[tonic::async_trait]
impl Reservations for ReservationService {
    #[tracing::instrument(skip_all)]
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::Reserve);
        let request = reserve_request(request.into_inner())?;
        self.0.durability.ensure_writable()?;
        self.answer(self.0.engine.reserve(&request)?).await
    }

    #[tracing::instrument(skip_all)]
    async fn update(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpdateReservation);
        let request = reserve_request(request.into_inner())?;
        self.0.durability.ensure_writable()?;
        self.answer(self.0.engine.update_reservation(&request)?)
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn extend(
        &self,
        request: Request<pb::ExtendRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::Extend);
        let request = request.into_inner();
        self.0.durability.ensure_writable()?;
        let mutation = self
            .0
            .engine
            .extend(&request.reservation_id, u64::from(request.ttl_seconds))?;
        self.answer(mutation).await
    }

    #[tracing::instrument(skip_all)]
    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::Release);
        self.0.durability.ensure_writable()?;
        self.answer(
            self.0
                .engine
                .release(&request.into_inner().reservation_id)?,
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn get(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::GetReservation);
        let held = self
            .0
            .engine
            .get_reservation(&request.into_inner().reservation_id)?;
        Ok(Response::new(reservation(held)))
    }

    #[tracing::instrument(skip_all)]
    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let _timer = self.0.rpc.time(Rpc::Commit);
        let request = request.into_inner();
        self.0.durability.ensure_writable()?;
        self.answer(
            self.0
                .engine
                .commit(&request.reservation_id, &request.order_id)?,
        )
        .await
    }
}
