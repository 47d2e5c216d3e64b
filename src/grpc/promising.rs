//! `promised.v1.Promising`.

use tonic::{Request, Response, Status};

use super::convert::{promise_request, promise_response};
use super::pb::{self, promising_server::Promising};
use super::Handlers;
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
        let request = promise_request(request.into_inner())?;
        if request.reserve.is_some() {
            self.0.durability.ensure_writable()?;
        }
        let promise = self
            .0
            .durability
            .commit(self.0.engine.promise(&request)?)
            .await?;
        Ok(Response::new(promise_response(promise)))
    }
}
