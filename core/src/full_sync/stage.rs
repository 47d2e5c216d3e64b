//! A full sync's begin and parts: checked against the source's ownership and the staging
//! bounds, then held in the [`crate::sync`] staging until the commit.

use std::collections::HashMap;

use crate::clock::UnixMillis;
use crate::domain::{id_problem, RejectReason, SupplyType, SupplyUpdate, UpdateOp};
use crate::engine::Engine;
use crate::error::{Error, FieldViolation, Result};
use crate::ingest::{normalized, Valid};
use crate::network::{Network, NodeIdx, SourceEntry, MAX_ID_LEN};
use crate::sync::{OpenSync, Opened, PartOutcome, Staged, SyncBegin, SyncPart, SyncPosition};

impl Engine {
    /// Opens a sync. Beginning an open sync again with the same request answers the same;
    /// with another, `ALREADY_EXISTS`. A sync no newer than the source's last committed one
    /// of the type is refused as stale.
    pub fn begin_sync(&self, begin: &SyncBegin) -> Result<Opened> {
        let network = self.network();
        let source = network
            .source(&begin.source_id)
            .ok_or_else(|| Error::NotFound(format!("source {:?}", begin.source_id)))?;
        let (supply_type, as_of_ms, covers) = self.check_begin(&network, source, begin)?;
        self.check_not_stale(&begin.source_id, supply_type, as_of_ms)?;
        let now_ms = self.now_ms();
        let expires_at_ms = now_ms.saturating_add(self.sync_ttl_ms());
        let limits = &self.shared.config.sync;
        let mut state = self.shared.staging.lock();
        let key = (begin.source_id.clone(), begin.sync_id.clone());
        if let Some(open) = state
            .open
            .get_mut(&key)
            .filter(|s| now_ms < s.expires_at_ms)
        {
            if open.begin != *begin {
                return Err(Error::AlreadyExists(format!(
                    "sync {:?} is open with another scope or as-of",
                    begin.sync_id
                )));
            }
            open.expires_at_ms = expires_at_ms;
            return Ok(opened(begin, expires_at_ms));
        }
        state.take(&key.0, &key.1, now_ms);
        if state.open.len() >= limits.max_open {
            return Err(Error::ResourceExhausted(format!(
                "{} syncs are open, the limit (--max-open-syncs)",
                limits.max_open
            )));
        }
        let sync = OpenSync {
            begin: begin.clone(),
            supply_type,
            as_of_ms,
            covers,
            expires_at_ms,
            positions: HashMap::new(),
            staged: 0,
        };
        state.open.insert(key, sync);
        Ok(opened(begin, expires_at_ms))
    }

    /// Checks a begin; returns its supply type, as-of and the nodes it covers.
    fn check_begin(
        &self,
        network: &Network,
        source: &SourceEntry,
        begin: &SyncBegin,
    ) -> Result<(SupplyType, UnixMillis, Vec<bool>)> {
        let mut violations = Vec::new();
        if let Some(problem) = id_problem(&begin.sync_id, MAX_ID_LEN) {
            violations.push(FieldViolation::new("sync_id", problem));
        }
        let Some(supply_type) = begin.supply_type else {
            violations.push(FieldViolation::new("supply_type", "is unspecified"));
            return Err(Error::InvalidArgument(violations));
        };
        let mut covers = vec![false; network.nodes().len()];
        for (i, id) in begin.node_ids.iter().enumerate() {
            match network.node_idx(id) {
                Some(node) if source.owns(node, supply_type) => covers[node as usize] = true,
                Some(_) => violations.push(FieldViolation::new(
                    format!("node_ids[{i}]"),
                    format!("the source does not own {supply_type:?} at this node"),
                )),
                None => violations.push(FieldViolation::new(
                    format!("node_ids[{i}]"),
                    "unknown node",
                )),
            }
        }
        if begin.node_ids.is_empty() {
            for (node, covered) in covers.iter_mut().enumerate() {
                *covered = source.owns(node as NodeIdx, supply_type);
            }
        }
        let as_of_ms = match begin.as_of_ms {
            None => {
                violations.push(FieldViolation::new("as_of", "is required"));
                0
            }
            Some(as_of_ms) if as_of_ms > self.latest_as_of_ms() => {
                violations.push(FieldViolation::new(
                    "as_of",
                    "is further ahead of the server clock than the allowed skew",
                ));
                as_of_ms
            }
            Some(as_of_ms) => as_of_ms,
        };
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        Ok((supply_type, as_of_ms, covers))
    }

    /// Refuses a sync older than the source's last committed one of the type.
    pub(crate) fn check_not_stale(
        &self,
        source_id: &str,
        supply_type: SupplyType,
        as_of_ms: UnixMillis,
    ) -> Result<()> {
        match self.shared.sync_marks.get(source_id, supply_type) {
            Some(mark) if as_of_ms < mark.as_of_ms => Err(Error::FailedPrecondition(format!(
                "stale sync: as of {as_of_ms} ms, older than sync {:?} committed as of {} ms",
                mark.sync_id, mark.as_of_ms
            ))),
            _ => Ok(()),
        }
    }

    /// Stages a part's positions. Each is checked as a SET of the sync's supply type would be;
    /// a position outside the sync's nodes or failing a check is rejected alone, with its
    /// reason, and the rest are staged. Past the staging bound nothing of the part is staged.
    pub fn stage_sync_part(&self, part: &SyncPart) -> Result<PartOutcome> {
        let max_positions = self.shared.config.limits.max_batch_updates;
        if part.positions.len() > max_positions {
            return Err(Error::invalid(
                "positions",
                format!(
                    "{} positions exceed the limit of {max_positions} per part",
                    part.positions.len()
                ),
            ));
        }
        let network = self.network();
        let source = network
            .source(&part.source_id)
            .ok_or_else(|| Error::NotFound(format!("source {:?}", part.source_id)))?;
        let now_ms = self.now_ms();
        let latest_as_of_ms = self.latest_as_of_ms();
        let mut guard = self.shared.staging.lock();
        let state = &mut *guard;
        let key = (part.source_id.clone(), part.sync_id.clone());
        let sync = state
            .open
            .get_mut(&key)
            .filter(|s| now_ms < s.expires_at_ms)
            .ok_or_else(|| unknown_sync(&part.sync_id))?;
        // A sync whose commit was refused comes back with its positions even if others took
        // the room meanwhile: the staged count may stand above the bound for a while.
        let room = (self.shared.config.sync.max_staged_positions).saturating_sub(state.staged);
        if part.positions.len() > room {
            return Err(Error::ResourceExhausted(format!(
                "staging {} positions would pass the {} staged across open syncs \
                 (--max-staged-sync-positions); commit or let syncs expire first",
                part.positions.len(),
                self.shared.config.sync.max_staged_positions
            )));
        }
        let mut outcome = PartOutcome::default();
        for (i, position) in part.positions.iter().enumerate() {
            let update = as_update(sync, position);
            match self.check_position(&network, source, sync, &update, latest_as_of_ms) {
                Ok((sku, staged)) => {
                    state.staged += usize::from(sync.stage(&sku, staged));
                    outcome.staged += 1;
                }
                Err((reason, detail)) => outcome
                    .rejections
                    .push(crate::ingest::rejection(i, &update, reason, detail)),
            }
        }
        sync.expires_at_ms = now_ms.saturating_add(self.sync_ttl_ms());
        outcome.total_staged = sync.staged as u64;
        drop(guard);
        self.shared
            .rejections
            .record(&part.source_id, 0, now_ms, &outcome.rejections);
        Ok(outcome)
    }

    /// One position of a part in promised's codes and units, checked as the SET it stands for
    /// and within the sync's nodes; its SKU and what to stage.
    fn check_position(
        &self,
        network: &Network,
        source: &SourceEntry,
        sync: &OpenSync,
        update: &SupplyUpdate,
        latest_as_of_ms: UnixMillis,
    ) -> Result<(String, Staged), (RejectReason, String)> {
        let update = &*normalized(network, source, update)?;
        let (node, change) = match self.validate(network, source, update, latest_as_of_ms)? {
            Valid::Change(node, change) => (node, change),
            Valid::Ship(..) => {
                return Err((RejectReason::InvalidOp, "a sync sets, never ships".into()))
            }
        };
        if !sync.covers[node as usize] {
            return Err((
                RejectReason::NotOwned,
                format!("node {:?} is not among the sync's nodes", update.node_id),
            ));
        }
        let staged = Staged {
            node,
            reference: change.reference.into(),
            quantity: change.quantity,
            eta: change.eta,
        };
        Ok((update.sku.clone(), staged))
    }

    /// Drops every open sync idle past its expiry, changing nothing else; returns how many.
    pub fn expire_syncs(&self) -> usize {
        self.shared.staging.expire(self.now_ms())
    }

    /// Syncs open now.
    pub fn open_syncs(&self) -> usize {
        self.shared.staging.open_count()
    }

    fn sync_ttl_ms(&self) -> i64 {
        i64::try_from(self.shared.config.sync.ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// The SET a sync's position stands for.
fn as_update(sync: &OpenSync, position: &SyncPosition) -> SupplyUpdate {
    SupplyUpdate {
        sku: position.sku.clone(),
        node_id: position.node_id.clone(),
        supply_type: Some(sync.supply_type),
        op: Some(UpdateOp::Set {
            as_of_ms: Some(sync.as_of_ms),
        }),
        quantity: position.quantity,
        reference: position.reference.clone(),
        eta: position.eta.clone(),
    }
}

fn opened(begin: &SyncBegin, expires_at_ms: UnixMillis) -> Opened {
    Opened {
        sync_id: begin.sync_id.clone(),
        expires_at_ms,
    }
}

pub(crate) fn unknown_sync(sync_id: &str) -> Error {
    Error::NotFound(format!(
        "open sync {:?} (never begun, committed, or expired)",
        crate::domain::echo(sync_id)
    ))
}
