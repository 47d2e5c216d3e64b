//! `promised.v1.Availability`.

use tonic::{Request, Response, Status};

use super::convert::{availability_response, explain_response};
use super::pb::{self, availability_server::Availability};
use super::status::answer;
use super::Handlers;
use crate::explain::ExplainQuery;
use crate::metrics::Rpc;
use crate::query::AvailabilityQuery;

#[derive(Debug, Clone)]
pub struct AvailabilityService(pub Handlers);

#[tonic::async_trait]
impl Availability for AvailabilityService {
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
