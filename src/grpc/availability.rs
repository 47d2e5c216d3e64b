//! `promised.v1.Availability`.

use tonic::{Request, Response, Status};

use super::convert::availability_response;
use super::pb::{self, availability_server::Availability};
use super::status::answer;
use super::Handlers;
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
}
