//! Full-sync and normalization messages. The core checks their fields (it names each one), so
//! these are plain moves; an unspecified supply type or a missing as-of stays `None` for the
//! core to refuse.

use super::{rejection, supply_type, timestamp, timestamp_ms};
use crate::grpc::pb;
use crate::normalize::{SourceMapping, UnitFactor};
use crate::sync::{
    Opened, PartOutcome, SyncBegin, SyncCommit, SyncOutcome, SyncPart, SyncPosition,
};

impl From<pb::BeginSyncRequest> for SyncBegin {
    fn from(request: pb::BeginSyncRequest) -> Self {
        SyncBegin {
            source_id: request.source_id,
            sync_id: request.sync_id,
            supply_type: supply_type(request.supply_type),
            node_ids: request.node_ids,
            as_of_ms: request.as_of.as_ref().map(timestamp_ms),
        }
    }
}

impl From<pb::SyncPartRequest> for SyncPart {
    fn from(request: pb::SyncPartRequest) -> Self {
        let positions = request.positions.into_iter().map(|p| SyncPosition {
            sku: p.sku,
            node_id: p.node_id,
            quantity: p.quantity,
            reference: p.reference,
            eta: p.eta,
        });
        SyncPart {
            source_id: request.source_id,
            sync_id: request.sync_id,
            positions: positions.collect(),
        }
    }
}

impl From<pb::CommitSyncRequest> for SyncCommit {
    fn from(request: pb::CommitSyncRequest) -> Self {
        SyncCommit {
            source_id: request.source_id,
            sync_id: request.sync_id,
            force: request.force,
        }
    }
}

/// Plain moves: the network checks the tables and names each field.
impl From<pb::SourceMapping> for SourceMapping {
    fn from(mapping: pb::SourceMapping) -> Self {
        let factor = |u: pb::UnitFactor| {
            let factor = UnitFactor {
                eaches: u.eaches,
                units: u.units,
            };
            (u.sku, factor)
        };
        SourceMapping {
            source_id: mapping.source_id,
            items: mapping.items.into_iter().map(|i| (i.code, i.sku)).collect(),
            locations: mapping
                .locations
                .into_iter()
                .map(|l| (l.code, l.node_id))
                .collect(),
            units: mapping.units.into_iter().map(factor).collect(),
        }
    }
}

pub fn opened(opened: Opened) -> pb::BeginSyncResponse {
    pb::BeginSyncResponse {
        sync_id: opened.sync_id,
        expires_at: Some(timestamp(opened.expires_at_ms)),
    }
}

pub fn part_outcome(outcome: PartOutcome) -> pb::SyncPartResponse {
    pb::SyncPartResponse {
        staged: outcome.staged,
        rejections: outcome.rejections.into_iter().map(rejection).collect(),
        total_staged: outcome.total_staged,
    }
}

pub fn sync_ack(outcome: SyncOutcome) -> pb::SyncAck {
    pb::SyncAck {
        source_id: outcome.source_id,
        sync_id: outcome.sync_id,
        set: outcome.set,
        zeroed: outcome.zeroed,
        unchanged: outcome.unchanged,
        duplicate: outcome.duplicate,
    }
}
