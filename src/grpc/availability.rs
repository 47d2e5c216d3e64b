//! `promised.v1.Availability`.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert::{
    availability_change, availability_response, band_change, explain_response, stock_bands,
    NodeLayout,
};
use super::pb::{self, availability_server::Availability};
use super::status::{answer, status};
use super::watch::{band_token, refused, resume_token, Watch};
use super::Handlers;
use crate::band::Bands;
use crate::explain::ExplainQuery;
use crate::metrics::Rpc;
use crate::query::AvailabilityQuery;
use crate::watch::bands::BandToken;
use crate::watch::WatchFilter;

/// A watch's messages, of changes or of band crossings.
pub type AvailabilityWatch =
    Pin<Box<dyn Stream<Item = Result<pb::AvailabilityChange, Status>> + Send>>;

#[derive(Debug, Clone)]
pub struct AvailabilityService(pub Handlers);

impl AvailabilityService {
    /// A watch of band crossings, resumed after `token` (from now when empty); its tokens
    /// name its anchor.
    async fn band_watch(
        &self,
        filter: WatchFilter,
        bands: Bands,
        token: &str,
        durable: bool,
    ) -> Result<AvailabilityWatch, Status> {
        let resume = band_token(token).map_err(status)?;
        let permit = self.0.watcher()?;
        let following = self
            .0
            .app
            .watch_bands(filter, bands, resume, self.0.watch_buffer)
            .await
            .map_err(|e| refused(e, resume.map(|r| r.anchor), durable))?;
        let anchor = following.start;
        // A watch ended while it still replays has delivered everything up to the token it
        // resumed from.
        let replayed = resume.map(|r| r.last).unwrap_or(anchor);
        let watch = Watch::new(&self.0, following, permit, move |last, change| {
            band_change(BandToken { anchor, last }, change)
        })
        .with_tokens(move |last| {
            let last = last.max(replayed);
            BandToken { anchor, last }.to_string()
        });
        Ok(Box::pin(watch))
    }
}

#[tonic::async_trait]
impl Availability for AvailabilityService {
    type WatchAvailabilityStream = AvailabilityWatch;

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
        let durable = self.0.app.durability().status().mode == "redis";
        let watch: AvailabilityWatch = match request.bands {
            None => {
                let token = resume_token(&request.resume_token).map_err(status)?;
                let permit = self.0.watcher()?;
                let following = self
                    .0
                    .app
                    .watch_availability(filter, token, self.0.watch_buffer)
                    .await
                    .map_err(|e| refused(e, token, durable))?;
                Box::pin(Watch::new(&self.0, following, permit, availability_change))
            }
            Some(bands) => {
                let bands = stock_bands(bands).map_err(status)?;
                self.band_watch(filter, bands, &request.resume_token, durable)
                    .await?
            }
        };
        Ok(Response::new(watch))
    }

    #[tracing::instrument(skip_all)]
    async fn get_availability(
        &self,
        request: Request<pb::AvailabilityRequest>,
    ) -> Result<Response<pb::AvailabilityResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::GetAvailability);
        answer(async {
            let request = request.into_inner();
            let layout = NodeLayout::asked(&request)?;
            let query = AvailabilityQuery::try_from(request)?;
            Ok(availability_response(
                self.0.app.availability(&query)?,
                layout,
            ))
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
