//! Supply ingest: a source's batch is checked against its sequence, each update is validated
//! against the source's ownership and the limits, and the valid ones are applied to the index.
//! Invalid updates are rejected one by one, with a reason, into a bounded log.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::clock::UnixMillis;
use crate::domain::{
    BatchOutcome, Day, RejectReason, Rejection, SupplyBatch, SupplyType, SupplyUpdate, UpdateOp,
};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::index::{Applied, Change, ChangeKind, MAX_QUANTITY};
use crate::mutation::{Mutation, Record};
use crate::network::{Network, NodeIdx, SourceEntry};

/// A rejection as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRejection {
    pub source_id: String,
    pub seq: u64,
    pub at_ms: UnixMillis,
    pub rejection: Rejection,
}

/// The most recent rejections, bounded; older ones fall off the end.
#[derive(Debug)]
pub struct RejectionLog {
    entries: Mutex<VecDeque<LoggedRejection>>,
    capacity: usize,
    /// Rejections ever logged, including those no longer held.
    total: AtomicU64,
}

impl RejectionLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
            total: AtomicU64::new(0),
        }
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn record(&self, source_id: &str, seq: u64, at_ms: UnixMillis, rejections: &[Rejection]) {
        if rejections.is_empty() {
            return;
        }
        self.total
            .fetch_add(rejections.len() as u64, Ordering::Relaxed);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for rejection in rejections {
            if entries.len() == self.capacity {
                entries.pop_front();
            }
            if self.capacity > 0 {
                entries.push_back(LoggedRejection {
                    source_id: source_id.to_owned(),
                    seq,
                    at_ms,
                    rejection: rejection.clone(),
                });
            }
        }
    }

    /// Up to `limit` rejections, newest first, optionally of one source only.
    pub fn recent(&self, source_id: Option<&str>, limit: usize) -> Vec<LoggedRejection> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .rev()
            .filter(|logged| source_id.is_none_or(|id| logged.source_id == id))
            .take(limit)
            .cloned()
            .collect()
    }
}

impl Engine {
    /// Applies one batch of a source's feed. Batch-level problems (unknown source, too many
    /// updates, no sequence) fail the whole batch; update-level problems reject that update only.
    /// When journaling, the returned record must be made durable before the feed is answered.
    pub fn apply_batch(&self, batch: &SupplyBatch) -> Result<Mutation<BatchOutcome>> {
        let network = self.network();
        let source = network
            .source(&batch.source_id)
            .ok_or_else(|| Error::NotFound(format!("source {:?}", batch.source_id)))?;
        let max_updates = self.shared.config.limits.max_batch_updates;
        if batch.updates.len() > max_updates {
            return Err(Error::invalid(
                "updates",
                format!(
                    "{} updates exceed the limit of {max_updates} per batch",
                    batch.updates.len()
                ),
            ));
        }
        let now_ms = self.now_ms();
        let metrics = &self.shared.ingest_metrics;
        if batch.updates.is_empty() {
            source.feed.heard(now_ms);
            metrics.heartbeat();
            let heartbeat = BatchOutcome {
                source_id: batch.source_id.clone(),
                seq: batch.seq,
                durable_seq: source.feed.seqs().1,
                ..BatchOutcome::default()
            };
            return Ok(Mutation {
                result: heartbeat,
                record: None,
            });
        }
        if batch.seq == 0 {
            return Err(Error::invalid(
                "seq",
                "a batch with updates needs a sequence of at least 1",
            ));
        }
        let mut seq = source
            .feed
            .seq
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        source.feed.heard(now_ms);
        let mut outcome = BatchOutcome {
            source_id: batch.source_id.clone(),
            seq: batch.seq,
            ..BatchOutcome::default()
        };
        if batch.seq <= seq.last_seq {
            if seq.pending.contains(&batch.seq) {
                // Applied, but its journal write has not been confirmed: acknowledging it as a
                // duplicate could acknowledge something a crash would lose.
                return Err(Error::Unavailable(format!(
                    "batch {} is applied but not yet durable; retry",
                    batch.seq
                )));
            }
            outcome.duplicate = true;
            outcome.durable_seq = seq.durable_seq();
            metrics.duplicate();
            return Ok(Mutation {
                result: outcome,
                record: None,
            });
        }
        let ticket = self.begin();
        let mut effects = self.effects();
        let mut shipped = Vec::new();
        let mut newest_as_of_ms = None;
        for (i, update) in batch.updates.iter().enumerate() {
            let (node, change) = match self.validate(&network, source, update) {
                Ok(Valid::Change(node, change)) => (node, change),
                Ok(Valid::Ship(node, order_id)) => {
                    let quantity = update.quantity;
                    match self.ship(
                        order_id,
                        &update.sku,
                        node,
                        quantity,
                        effects.as_mut(),
                        &mut shipped,
                    ) {
                        Ok(()) => outcome.applied += 1,
                        Err(reason) => {
                            let detail = format!(
                                "order {order_id:?} has no open allocation of {quantity} here"
                            );
                            outcome
                                .rejections
                                .push(rejection(i, update, reason, detail));
                        }
                    }
                    continue;
                }
                Err((reason, detail)) => {
                    outcome
                        .rejections
                        .push(rejection(i, update, reason, detail));
                    continue;
                }
            };
            let applied =
                self.shared
                    .index
                    .update(&update.sku, node, effects.as_mut(), |position| {
                        let applied = position.apply(&change);
                        (applied, applied == Applied::Applied)
                    });
            match refusal(applied) {
                None if applied == Applied::Stale => outcome.stale += 1,
                None => {
                    outcome.applied += 1;
                    if let ChangeKind::Set { as_of_ms } = change.kind {
                        newest_as_of_ms = newest_as_of_ms.max(Some(as_of_ms));
                    }
                }
                Some((reason, detail)) => {
                    outcome
                        .rejections
                        .push(rejection(i, update, reason, detail.to_owned()));
                }
            }
        }
        seq.last_seq = batch.seq;
        if self.is_journaling() {
            seq.pending.insert(batch.seq);
        }
        outcome.durable_seq = seq.durable_seq();
        drop(seq);
        self.shared
            .rejections
            .record(&batch.source_id, batch.seq, now_ms, &outcome.rejections);
        metrics.batch(&outcome, newest_as_of_ms.map(|as_of| now_ms - as_of));
        Ok(self.mutation(ticket, outcome, || Record {
            source_seq: Some((batch.source_id.clone(), batch.seq)),
            effects: effects.unwrap_or_default(),
            reservations: shipped,
            ..Record::default()
        }))
    }

    /// The most recent rejections, newest first.
    pub fn rejections(&self, source_id: Option<&str>, limit: usize) -> (Vec<LoggedRejection>, u64) {
        let log = &self.shared.rejections;
        (log.recent(source_id, limit), log.total())
    }

    /// Checks one update against the source's ownership and the limits.
    fn validate<'u>(
        &self,
        network: &Network,
        source: &SourceEntry,
        update: &'u SupplyUpdate,
    ) -> Result<Valid<'u>, (RejectReason, String)> {
        let max_len = self.shared.config.limits.max_field_len;
        let oversized = |field: &str| {
            (
                RejectReason::OversizedField,
                format!("{field} is longer than {max_len} bytes"),
            )
        };
        if update.sku.is_empty() {
            return Err((RejectReason::MissingSku, "sku is empty".into()));
        }
        if update.sku.len() > max_len {
            return Err(oversized("sku"));
        }
        if update.reference.len() > max_len {
            return Err(oversized("reference"));
        }
        let node = network.node_idx(&update.node_id).ok_or_else(|| {
            (
                RejectReason::UnknownNode,
                format!("unknown node {:?}", update.node_id),
            )
        })?;
        let supply_type = update.supply_type.ok_or((
            RejectReason::InvalidSupplyType,
            "supply_type is unspecified".into(),
        ))?;
        let op = update
            .op
            .as_ref()
            .ok_or((RejectReason::InvalidOp, "op is unspecified".into()))?;
        if !source.owns(node, supply_type) {
            return Err((
                RejectReason::NotOwned,
                format!(
                    "source {:?} does not own {supply_type:?} at {:?}",
                    source.def.id, update.node_id
                ),
            ));
        }
        if update.quantity.unsigned_abs() > MAX_QUANTITY.unsigned_abs() {
            return Err((
                RejectReason::OversizedField,
                format!("quantity exceeds {MAX_QUANTITY}"),
            ));
        }
        let kind = match op {
            UpdateOp::Ship { order_id } => {
                return validate_ship(supply_type, node, order_id, update, max_len)
            }
            UpdateOp::Set { as_of_ms } => {
                if update.quantity < 0 {
                    return Err((
                        RejectReason::NegativeQuantity,
                        "a SET must not be negative".into(),
                    ));
                }
                let as_of_ms =
                    as_of_ms.ok_or((RejectReason::MissingAsOf, "a SET needs as_of".into()))?;
                ChangeKind::Set { as_of_ms }
            }
            UpdateOp::Adjust => ChangeKind::Adjust,
        };
        let eta = validate_dating(supply_type.is_dated(), kind, update)?;
        let change = Change {
            supply_type,
            kind,
            quantity: update.quantity,
            reference: &update.reference,
            eta,
        };
        Ok(Valid::Change(node, change))
    }
}

/// An update that passed validation.
enum Valid<'u> {
    Change(NodeIdx, Change<'u>),
    /// A shipment for an order.
    Ship(NodeIdx, &'u str),
}

fn validate_ship<'u>(
    supply_type: SupplyType,
    node: NodeIdx,
    order_id: &'u str,
    update: &SupplyUpdate,
    max_len: usize,
) -> Result<Valid<'u>, (RejectReason, String)> {
    if supply_type != SupplyType::OnHand {
        return Err((
            RejectReason::InvalidSupplyType,
            "a SHIP takes ON_HAND supply".into(),
        ));
    }
    if update.quantity <= 0 {
        return Err((
            RejectReason::NegativeQuantity,
            "a SHIP ships a positive quantity".into(),
        ));
    }
    if order_id.is_empty() || order_id.len() > max_len {
        return Err((
            RejectReason::UnknownOrder,
            format!("a SHIP needs an order_id of 1 to {max_len} bytes"),
        ));
    }
    Ok(Valid::Ship(node, order_id))
}

/// Checks reference and ETA against the supply type; returns the parsed ETA.
fn validate_dating(
    dated: bool,
    kind: ChangeKind,
    update: &SupplyUpdate,
) -> Result<Option<Day>, (RejectReason, String)> {
    if !dated {
        if !update.reference.is_empty() || !update.eta.is_empty() {
            return Err((
                RejectReason::UnexpectedReference,
                "ON_HAND supply takes no reference or eta".into(),
            ));
        }
        return Ok(None);
    }
    if update.reference.is_empty() {
        return Err((
            RejectReason::MissingReference,
            "dated supply needs the PO/ASN line as reference".into(),
        ));
    }
    if update.eta.is_empty() {
        let creates = matches!(kind, ChangeKind::Set { .. }) && update.quantity > 0;
        if creates {
            return Err((RejectReason::MissingEta, "a dated SET needs an eta".into()));
        }
        return Ok(None);
    }
    Day::parse(&update.eta).map(Some).ok_or_else(|| {
        (
            RejectReason::InvalidEta,
            format!("eta {:?} is not a YYYY-MM-DD date", update.eta),
        )
    })
}

/// The rejection reason for an index refusal; `None` if the change was applied or stale.
fn refusal(applied: Applied) -> Option<(RejectReason, &'static str)> {
    match applied {
        Applied::Applied | Applied::Stale => None,
        Applied::NegativeResult => Some((
            RejectReason::NegativeResult,
            "the adjustment would take the quantity below zero",
        )),
        Applied::TooLarge => Some((
            RejectReason::OversizedField,
            "the adjustment would take the quantity above the limit",
        )),
        Applied::MissingEta => Some((RejectReason::MissingEta, "a new receipt needs an eta")),
    }
}

/// Longest SKU or node id a rejection echoes back; an oversized field is cut, not copied whole.
const ECHO_LEN: usize = 128;

fn rejection(
    index: usize,
    update: &SupplyUpdate,
    reason: RejectReason,
    detail: String,
) -> Rejection {
    Rejection {
        index: index as u32,
        sku: echo(&update.sku),
        node_id: echo(&update.node_id),
        reason,
        detail,
    }
}

fn echo(field: &str) -> String {
    let mut end = field.len().min(ECHO_LEN);
    while !field.is_char_boundary(end) {
        end -= 1;
    }
    field[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::{Node, NodeKind, Source, SourceKind};
    use crate::engine::EngineConfig;
    use crate::index::Index;

    fn journaled_engine() -> Engine {
        let engine = Engine::journaled(
            EngineConfig::default(),
            Arc::new(ManualClock::new(1_000)),
            Network::default(),
            Index::new(4),
        );
        let node = Node {
            id: "DC".into(),
            kind: NodeKind::Dc,
            lat: 0.0,
            lon: 0.0,
            postal_code: String::new(),
            country: "US".into(),
            time_zone: chrono_tz::UTC,
            priority: 0,
            group_ids: Vec::new(),
            safety_stock: 0,
            fulfilment: Default::default(),
        };
        engine.upsert_nodes(vec![node]).expect("node");
        let source = Source {
            id: "WMS".into(),
            kind: SourceKind::Wms,
            owned_node_ids: Vec::new(),
            owned_supply_types: vec![SupplyType::OnHand],
            stale_after_ms: None,
        };
        engine.upsert_sources(vec![source]).expect("source");
        engine
    }

    fn adjust(seq: u64) -> SupplyBatch {
        let update = SupplyUpdate {
            sku: "SKU-1".into(),
            node_id: "DC".into(),
            supply_type: Some(SupplyType::OnHand),
            op: Some(UpdateOp::Adjust),
            quantity: 3,
            reference: String::new(),
            eta: String::new(),
        };
        SupplyBatch {
            source_id: "WMS".into(),
            seq,
            updates: vec![update],
        }
    }

    #[test]
    fn a_resent_batch_is_a_duplicate_only_once_its_first_copy_is_durable() {
        let engine = journaled_engine();
        let first = engine.apply_batch(&adjust(1)).expect("applies");
        assert!(first.record.is_some(), "journaling engines return a record");
        assert!(
            matches!(engine.apply_batch(&adjust(1)), Err(Error::Unavailable(_))),
            "the first copy is not durable yet: no acknowledgement"
        );
        engine.mark_durable("WMS", 1);
        let again = engine.apply_batch(&adjust(1)).expect("acknowledged");
        assert!(again.result.duplicate);
        assert!(again.record.is_none(), "nothing applied twice");
        assert_eq!(again.result.durable_seq, 1);
    }
}
