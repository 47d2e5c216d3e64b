//! `promised.v1.Admin`: network configuration and stats.

use tonic::{Request, Response, Status};

use super::convert::{convert_list, safety_entries, stats};
use super::pb::{self, admin_server::Admin};
use super::status::answer;
use super::Handlers;
use crate::metrics::Rpc;

#[derive(Debug, Clone)]
pub struct AdminService(pub Handlers);

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[tonic::async_trait]
impl Admin for AdminService {
    #[tracing::instrument(skip_all)]
    async fn upsert_nodes(
        &self,
        request: Request<pb::UpsertNodesRequest>,
    ) -> Result<Response<pb::UpsertNodesResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpsertNodes);
        answer(async {
            let nodes = convert_list(request.into_inner().nodes, "nodes")?;
            let upserted = count(nodes.len());
            self.0.app.upsert_nodes(nodes).await?;
            Ok(pb::UpsertNodesResponse { upserted })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn upsert_groups(
        &self,
        request: Request<pb::UpsertGroupsRequest>,
    ) -> Result<Response<pb::UpsertGroupsResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpsertGroups);
        answer(async {
            let groups = convert_list(request.into_inner().groups, "groups")?;
            let upserted = count(groups.len());
            self.0.app.upsert_groups(groups).await?;
            Ok(pb::UpsertGroupsResponse { upserted })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn upsert_sources(
        &self,
        request: Request<pb::UpsertSourcesRequest>,
    ) -> Result<Response<pb::UpsertSourcesResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpsertSources);
        answer(async {
            let sources = convert_list(request.into_inner().sources, "sources")?;
            let upserted = count(sources.len());
            self.0.app.upsert_sources(sources).await?;
            Ok(pb::UpsertSourcesResponse { upserted })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn upsert_service_levels(
        &self,
        request: Request<pb::UpsertServiceLevelsRequest>,
    ) -> Result<Response<pb::UpsertServiceLevelsResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpsertServiceLevels);
        answer(async {
            let levels = convert_list(request.into_inner().service_levels, "service_levels")?;
            let upserted = count(levels.len());
            self.0.app.upsert_service_levels(levels).await?;
            Ok(pb::UpsertServiceLevelsResponse { upserted })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn upsert_postal_codes(
        &self,
        request: Request<pb::UpsertPostalCodesRequest>,
    ) -> Result<Response<pb::UpsertPostalCodesResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpsertPostalCodes);
        answer(async {
            let codes = convert_list(request.into_inner().postal_codes, "postal_codes")?;
            let upserted = count(codes.len());
            self.0.app.upsert_postal_codes(codes).await?;
            Ok(pb::UpsertPostalCodesResponse { upserted })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn set_safety_stock(
        &self,
        request: Request<pb::SetSafetyStockRequest>,
    ) -> Result<Response<pb::SetSafetyStockResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::SetSafetyStock);
        answer(async {
            let entries = safety_entries(request.into_inner());
            self.0.app.set_safety_stock(&entries).await?;
            Ok(pb::SetSafetyStockResponse {
                updated: count(entries.len()),
            })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        let _timer = self.0.rpc.time(Rpc::GetStats);
        let (engine, durability) = self.0.app.stats();
        Ok(Response::new(stats(engine, durability)))
    }

    #[tracing::instrument(skip_all)]
    async fn check_invariants(
        &self,
        request: Request<pb::CheckInvariantsRequest>,
    ) -> Result<Response<pb::InvariantReport>, Status> {
        let _timer = self.0.rpc.time(Rpc::CheckInvariants);
        answer(async {
            let report = self
                .0
                .app
                .check_invariants(request.into_inner().repair)
                .await?;
            Ok(pb::InvariantReport {
                positions: report.positions,
                drift: report.drift,
                oversold: report.oversold,
                repaired: report.repaired,
            })
        })
        .await
    }
}
