//! `promised.v1.Promising`.

use tonic::{Request, Response, Status};

use super::convert::{promise_request, promise_response};
use super::pb::{self, promising_server::Promising};
use super::status::answer;
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
        let caller = caller(&request);
        answer(async {
            let deadline = self.0.deadline(request.metadata());
            let request = promise_request(request.into_inner())?;
            Ok(promise_response(
                self.0.app.promise(&caller, &request, &deadline).await?,
            ))
        })
        .await
    }
}
