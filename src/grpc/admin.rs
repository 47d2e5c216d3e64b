//! `promised.v1.Admin`: network configuration and stats.

use tonic::{Request, Response, Status};

use super::convert::{convert_list, safety_entries, stats};
use super::pb::{self, admin_server::Admin};
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
        let nodes = convert_list(request.into_inner().nodes, "nodes")?;
        let upserted = count(nodes.len());
        self.0.durability.ensure_writable()?;
        let mutation = self.0.engine.upsert_nodes(nodes)?;
        self.0.durability.commit(mutation).await?;
        Ok(Response::new(pb::UpsertNodesResponse { upserted }))
    }

    #[tracing::instrument(skip_all)]
    async fn upsert_groups(
        &self,
        request: Request<pb::UpsertGroupsRequest>,
    ) -> Result<Response<pb::UpsertGroupsResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpsertGroups);
        let groups = convert_list(request.into_inner().groups, "groups")?;
        let upserted = count(groups.len());
        self.0.durability.ensure_writable()?;
        let mutation = self.0.engine.upsert_groups(groups)?;
        self.0.durability.commit(mutation).await?;
        Ok(Response::new(pb::UpsertGroupsResponse { upserted }))
    }

    #[tracing::instrument(skip_all)]
    async fn upsert_sources(
        &self,
        request: Request<pb::UpsertSourcesRequest>,
    ) -> Result<Response<pb::UpsertSourcesResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpsertSources);
        let sources = convert_list(request.into_inner().sources, "sources")?;
        let upserted = count(sources.len());
        self.0.durability.ensure_writable()?;
        let mutation = self.0.engine.upsert_sources(sources)?;
        self.0.durability.commit(mutation).await?;
        Ok(Response::new(pb::UpsertSourcesResponse { upserted }))
    }

    #[tracing::instrument(skip_all)]
    async fn upsert_service_levels(
        &self,
        request: Request<pb::UpsertServiceLevelsRequest>,
    ) -> Result<Response<pb::UpsertServiceLevelsResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpsertServiceLevels);
        let levels = convert_list(request.into_inner().service_levels, "service_levels")?;
        let upserted = count(levels.len());
        self.0.durability.ensure_writable()?;
        let mutation = self.0.engine.upsert_service_levels(levels)?;
        self.0.durability.commit(mutation).await?;
        Ok(Response::new(pb::UpsertServiceLevelsResponse { upserted }))
    }

    #[tracing::instrument(skip_all)]
    async fn upsert_postal_codes(
        &self,
        request: Request<pb::UpsertPostalCodesRequest>,
    ) -> Result<Response<pb::UpsertPostalCodesResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpsertPostalCodes);
        let codes = convert_list(request.into_inner().postal_codes, "postal_codes")?;
        let upserted = count(codes.len());
        self.0.durability.ensure_writable()?;
        let mutation = self.0.engine.upsert_postal_codes(codes)?;
        self.0.durability.commit(mutation).await?;
        Ok(Response::new(pb::UpsertPostalCodesResponse { upserted }))
    }

    #[tracing::instrument(skip_all)]
    async fn set_safety_stock(
        &self,
        request: Request<pb::SetSafetyStockRequest>,
    ) -> Result<Response<pb::SetSafetyStockResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::SetSafetyStock);
        let entries = safety_entries(request.into_inner());
        self.0.durability.ensure_writable()?;
        let mutation = self.0.engine.set_safety_stock(&entries)?;
        self.0.durability.commit(mutation).await?;
        Ok(Response::new(pb::SetSafetyStockResponse {
            updated: count(entries.len()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        let _timer = self.0.rpc.time(Rpc::GetStats);
        let status = self.0.durability.status();
        Ok(Response::new(stats(self.0.engine.stats(), status)))
    }

    #[tracing::instrument(skip_all)]
    async fn check_invariants(
        &self,
        request: Request<pb::CheckInvariantsRequest>,
    ) -> Result<Response<pb::InvariantReport>, Status> {
        let _timer = self.0.rpc.time(Rpc::CheckInvariants);
        let repair = request.into_inner().repair;
        if repair {
            self.0.durability.ensure_writable()?;
        }
        let report = self
            .0
            .durability
            .commit(self.0.engine.audit(repair))
            .await?;
        Ok(Response::new(pb::InvariantReport {
            positions: report.positions,
            drift: report.drift,
            oversold: report.oversold,
            repaired: report.repaired,
        }))
    }
}
