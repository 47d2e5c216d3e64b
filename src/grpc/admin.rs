//! `promised.v1.Admin`: network configuration and stats.

use tonic::{Request, Response, Status};

use super::convert::{
    audit_page, audit_query, convert_list, dead_letter_ids, dead_letter_query, dead_letters,
    history_limit, position_history, safety_entries, stats,
};
use super::pb::{self, admin_server::Admin};
use super::status::answer;
use super::{caller, Handlers};
use crate::metrics::Rpc;
use crate::normalize::SourceMapping;

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
        let caller = caller(&request)?;
        answer(async {
            let nodes = convert_list(request.into_inner().nodes, "nodes")?;
            let upserted = count(nodes.len());
            self.0.app.upsert_nodes(&caller, nodes).await?;
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
        let caller = caller(&request)?;
        answer(async {
            let groups = convert_list(request.into_inner().groups, "groups")?;
            let upserted = count(groups.len());
            self.0.app.upsert_groups(&caller, groups).await?;
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
        let caller = caller(&request)?;
        answer(async {
            let sources = convert_list(request.into_inner().sources, "sources")?;
            let upserted = count(sources.len());
            self.0.app.upsert_sources(&caller, sources).await?;
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
        let caller = caller(&request)?;
        answer(async {
            let levels = convert_list(request.into_inner().service_levels, "service_levels")?;
            let upserted = count(levels.len());
            self.0.app.upsert_service_levels(&caller, levels).await?;
            Ok(pb::UpsertServiceLevelsResponse { upserted })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn upsert_items(
        &self,
        request: Request<pb::UpsertItemsRequest>,
    ) -> Result<Response<pb::UpsertItemsResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpsertItems);
        let caller = caller(&request)?;
        answer(async {
            let items = convert_list(request.into_inner().items, "items")?;
            let upserted = count(items.len());
            self.0.app.upsert_items(&caller, items).await?;
            Ok(pb::UpsertItemsResponse { upserted })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn upsert_postal_codes(
        &self,
        request: Request<pb::UpsertPostalCodesRequest>,
    ) -> Result<Response<pb::UpsertPostalCodesResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpsertPostalCodes);
        let caller = caller(&request)?;
        answer(async {
            let codes = convert_list(request.into_inner().postal_codes, "postal_codes")?;
            let upserted = count(codes.len());
            self.0.app.upsert_postal_codes(&caller, codes).await?;
            Ok(pb::UpsertPostalCodesResponse { upserted })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn upsert_mappings(
        &self,
        request: Request<pb::UpsertMappingsRequest>,
    ) -> Result<Response<pb::UpsertMappingsResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::UpsertMappings);
        let caller = caller(&request)?;
        answer(async {
            let mappings: Vec<SourceMapping> = request
                .into_inner()
                .mappings
                .into_iter()
                .map(SourceMapping::from)
                .collect();
            let upserted = count(mappings.len());
            self.0.app.upsert_mappings(&caller, mappings).await?;
            Ok(pb::UpsertMappingsResponse { upserted })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn set_safety_stock(
        &self,
        request: Request<pb::SetSafetyStockRequest>,
    ) -> Result<Response<pb::SetSafetyStockResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::SetSafetyStock);
        let caller = caller(&request)?;
        answer(async {
            let entries = safety_entries(request.into_inner());
            self.0.app.set_safety_stock(&caller, &entries).await?;
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
        let caller = caller(&request)?;
        answer(async {
            let report = self
                .0
                .app
                .check_invariants(&caller, request.into_inner().repair)
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

    #[tracing::instrument(skip_all)]
    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::ListAudit);
        answer(async {
            let query = audit_query(request.into_inner())?;
            Ok(audit_page(self.0.app.audit_trail(&query).await?))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn get_position_history(
        &self,
        request: Request<pb::GetPositionHistoryRequest>,
    ) -> Result<Response<pb::PositionHistory>, Status> {
        let _timer = self.0.rpc.time(Rpc::GetPositionHistory);
        answer(async {
            let request = request.into_inner();
            let limit = history_limit(&request)?;
            let (changes, scanned) = self
                .0
                .app
                .position_history(&request.sku, &request.node_id, limit)
                .await?;
            Ok(position_history(changes, scanned))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::ListDeadLetters);
        answer(async {
            let (sink, after, limit) = dead_letter_query(request.into_inner())?;
            let (letters, total) = self
                .0
                .app
                .dead_letters(&sink, after.as_deref(), limit)
                .await?;
            Ok(dead_letters(letters, total))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_dead_letters(
        &self,
        request: Request<pb::DeleteDeadLettersRequest>,
    ) -> Result<Response<pb::DeleteDeadLettersResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::DeleteDeadLetters);
        answer(async {
            let (sink, ids) = dead_letter_ids(request.into_inner())?;
            let deleted = self.0.app.delete_dead_letters(&sink, &ids).await?;
            Ok(pb::DeleteDeadLettersResponse { deleted })
        })
        .await
    }
}
