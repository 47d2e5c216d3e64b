//! `promised.v1.Promising`.

use tonic::{Request, Response, Status};

use super::auth::check_hold;
use super::convert::{promise_request, promise_response};
use super::pb::{self, promising_server::Promising};
use super::status::{answer, status};
use super::{caller, Handlers};
use crate::metrics::Rpc;

#[derive(Debug, Clone)]
pub struct PromisingService(pub Handlers);

#[tonic::async_trait]
impl Promising for PromisingService {
    #[tracing::instrument(skip_all)]
    async fn promise_order(
        &self,
        request: Request<pb::PromiseRequest>,
    ) -> Result<Response<pb::PromiseResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::PromiseOrder);
        let caller = caller(&request)?;
        let deadline = self.0.deadline(request.metadata());
        let request = promise_request(request.into_inner(), caller.owner()).map_err(status)?;
        if let Some(hold) = &request.reserve {
            check_hold(&self.0.app, &caller, &hold.reservation_id)?;
        }
        answer(async {
            Ok(promise_response(
                self.0.app.promise(&caller, &request, &deadline).await?,
            ))
        })
        .await
    }
}
