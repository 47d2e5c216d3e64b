//! `promised.v1.Availability`.

use tonic::{Request, Response, Status};

use super::convert::{availability_change, availability_response, explain_response};
use super::pb::{self, availability_server::Availability};
use super::status::{answer, status};
use super::watch::{refused, resume_token, Watch};
use super::Handlers;
use crate::explain::ExplainQuery;
use crate::metrics::Rpc;
use crate::query::AvailabilityQuery;
use crate::watch::{AvailabilityChange, WatchFilter};

#[derive(Debug, Clone)]
pub struct AvailabilityService(pub Handlers);

#[tonic::async_trait]
impl Availability for AvailabilityService {
    type WatchAvailabilityStream = Watch<AvailabilityChange, pb::AvailabilityChange>;

    /// Needs scope `availability:read`.
    #[tracing::instrument(skip_all)]
    async fn watch_availability(
        &self,
        request: Request<pb::WatchAvailabilityRequest>,
    ) -> Result<Response<Self::WatchAvailabilityStream>, Status> {
        let request = request.into_inner();
        let engine = self.0.app.engine();
        let filter =
            WatchFilter::resolve(engine, request.skus, request.node_ids, request.group_ids)
                .map_err(status)?;
        let token = resume_token(&request.resume_token).map_err(status)?;
        let permit = self.0.watcher()?;
        let following = self
            .0
            .app
            .watch_availability(filter, token, self.0.watch_buffer)
            .await
            .map_err(|e| refused(e, token, self.0.app.durability().status().mode == "redis"))?;
        Ok(Response::new(Watch::new(
            &self.0,
            following,
            permit,
            availability_change,
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn get_availability(
        &self,
        request: Request<pb::AvailabilityRequest>,
    ) -> Result<Response<pb::AvailabilityResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::GetAvailability);
        answer(async {
            let query = AvailabilityQuery::try_from(request.into_inner())?;
            Ok(availability_response(self.0.app.availability(&query)?))
        })
        .await
    }

    /// Needs scope `insights:read`.
    #[tracing::instrument(skip_all)]
    async fn explain(
        &self,
        request: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::Explain);
        answer(async {
            let query = ExplainQuery::try_from(request.into_inner())?;
            Ok(explain_response(self.0.app.explain(&query)?))
        })
        .await
    }
}
