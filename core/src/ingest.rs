//! Supply ingest: a source's batch is checked against its sequence, each update is put in
//! promised's codes and units by the source's [`crate::normalize`] tables, then validated
//! against the source's ownership and the limits, and the valid ones are applied to the index.
//! Invalid updates are rejected one by one, with a reason, into the bounded
//! [`crate::rejections`] log.

use std::borrow::Cow;
use std::sync::PoisonError;

use crate::clock::UnixMillis;
use crate::domain::{
    id_problem, BatchOutcome, Day, RejectReason, Rejection, SupplyBatch, SupplyType, SupplyUpdate,
    UpdateOp,
};
use crate::engine::{Engine, Ticket};
use crate::error::{Error, Result};
use crate::index::{Applied, Change, ChangeKind, Effects, MAX_QUANTITY};
use crate::mutation::{Mutation, Record, Undo};
use crate::network::{Network, NodeIdx, SeqState, SourceEntry};
use crate::normalize::Unmapped;
use crate::rejections::LoggedRejection;
use crate::reservation::Reservation;

impl Engine {
    /// Applies one batch of a source's feed. Batch-level problems (unknown source, too many
    /// updates, no sequence) fail the whole batch; update-level problems reject that update only.
    /// When journaling, the returned record must be made durable before the feed is answered.
    pub fn apply_batch(&self, batch: &SupplyBatch) -> Result<Mutation<BatchOutcome>> {
        self.apply_batch_at(batch, None)
    }

    /// Applies a batch a broker feed read at stream sequence `broker_seq`, as
    /// [`Engine::apply_batch`] does; the position is recorded with the batch's effects, and a
    /// message at or before the source's recorded position is a duplicate, so a message
    /// redelivered after a crash is not applied twice.
    pub fn apply_broker_batch(
        &self,
        batch: &SupplyBatch,
        broker_seq: u64,
    ) -> Result<Mutation<BatchOutcome>> {
        self.apply_batch_at(batch, Some(broker_seq))
    }

    /// The broker position of a source's last applied batch (0: none), where its broker
    /// feed resumes; `None` for an unknown source.
    pub fn broker_seq(&self, source_id: &str) -> Option<u64> {
        self.network().source(source_id).map(|source| {
            source
                .feed
                .seq
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .broker_seq
        })
    }

    fn apply_batch_at(
        &self,
        batch: &SupplyBatch,
        broker_seq: Option<u64>,
    ) -> Result<Mutation<BatchOutcome>> {
        let network = self.network();
        let source = network
            .source(&batch.source_id)
            .ok_or_else(|| Error::NotFound(format!("source {:?}", echo(&batch.source_id))))?;
        self.check_batch(batch)?;
        let now_ms = self.now_ms();
        if batch.updates.is_empty() {
            source.feed.heard(now_ms);
            return Ok(heartbeat(batch, source));
        }
        let mut seq = source
            .feed
            .seq
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        source.feed.heard(now_ms);
        let replayed = broker_seq.is_some_and(|at| at <= seq.broker_seq);
        if replayed || batch.seq <= seq.last_seq {
            return already_applied(batch, &seq, replayed);
        }
        self.check_gap(batch.seq, seq.last_seq)?;
        let ticket = self.begin();
        let latest_as_of_ms = self.latest_as_of_ms();
        let mut work = BatchWork::new(batch, self.effects(), latest_as_of_ms);
        work.broker_seq = broker_seq;
        for (i, update) in batch.updates.iter().enumerate() {
            self.apply_update(&network, source, i, update, &mut work);
        }
        let before = (seq.last_seq, broker_seq.map(|_| seq.broker_seq));
        if let Some(at) = broker_seq {
            seq.broker_seq = at;
        }
        work.outcome.durable_seq = self.advance(&mut seq, batch.seq);
        drop(seq);
        Ok(self.finish_batch(batch, ticket, now_ms, work, before))
    }

    /// The latest `as_of` a SET may carry now: the server clock plus the allowed skew.
    pub(crate) fn latest_as_of_ms(&self) -> UnixMillis {
        let skew_ms = self
            .shared
            .config
            .limits
            .max_clock_skew_secs
            .saturating_mul(1000);
        let skew_ms = i64::try_from(skew_ms).unwrap_or(i64::MAX);
        self.now_ms().saturating_add(skew_ms)
    }

    /// Records `applied` as the source's last sequence, pending until durable when journaling;
    /// returns the durable sequence.
    fn advance(&self, seq: &mut SeqState, applied: u64) -> u64 {
        seq.last_seq = applied;
        if self.is_journaling() {
            seq.pending.insert(applied);
        }
        seq.durable_seq()
    }

    /// Fails a batch whose sequence jumps further past the last applied one than allowed.
    fn check_gap(&self, seq: u64, last_seq: u64) -> Result<()> {
        let max_gap = self.shared.config.limits.max_seq_gap;
        if seq - last_seq > max_gap {
            return Err(Error::FailedPrecondition(format!(
                "batch {seq} jumps {} past the last applied batch {last_seq}; the limit is \
                 {max_gap} (--max-seq-gap)",
                seq - last_seq
            )));
        }
        Ok(())
    }

    /// Fails the whole batch when it is too large, or carries updates without a sequence.
    fn check_batch(&self, batch: &SupplyBatch) -> Result<()> {
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
        if !batch.updates.is_empty() && batch.seq == 0 {
            return Err(Error::invalid(
                "seq",
                "a batch with updates needs a sequence of at least 1",
            ));
        }
        Ok(())
    }

    /// Validates one update and applies it, counting it in the outcome or rejecting it.
    fn apply_update(
        &self,
        network: &Network,
        source: &SourceEntry,
        i: usize,
        update: &SupplyUpdate,
        work: &mut BatchWork,
    ) {
        let update = match normalized(network, source, update) {
            Ok(update) => update,
            Err((reason, detail)) => return work.reject(i, update, reason, detail),
        };
        let update = &*update;
        match self.validate(network, source, update, work.latest_as_of_ms) {
            Ok(Valid::Change(node, change)) => self.apply_change(i, update, node, &change, work),
            Ok(Valid::Ship(node, order_id)) => self.apply_ship(i, update, node, order_id, work),
            Err((reason, detail)) => work.reject(i, update, reason, detail),
        }
    }

    /// Applies a validated change to its position; the index may still refuse it.
    fn apply_change(
        &self,
        i: usize,
        update: &SupplyUpdate,
        node: NodeIdx,
        change: &Change<'_>,
        work: &mut BatchWork,
    ) {
        let applied =
            self.shared
                .index
                .update(&update.sku, node, work.effects.as_mut(), |position| {
                    let applied = position.apply(change);
                    (applied, applied == Applied::Applied)
                });
        match refusal(applied) {
            None if applied == Applied::Stale => work.outcome.stale += 1,
            None => {
                work.outcome.applied += 1;
                if let ChangeKind::Set { as_of_ms } = change.kind {
                    work.newest_as_of_ms = work.newest_as_of_ms.max(Some(as_of_ms));
                }
            }
            Some((reason, detail)) => work.reject(i, update, reason, detail.to_owned()),
        }
    }

    /// Ships a validated `SHIP` update against its order's allocation.
    fn apply_ship(
        &self,
        i: usize,
        update: &SupplyUpdate,
        node: NodeIdx,
        order_id: &str,
        work: &mut BatchWork,
    ) {
        let quantity = update.quantity;
        let shipped = self.ship(
            order_id,
            &update.sku,
            node,
            quantity,
            work.effects.as_mut(),
            &mut work.shipped,
        );
        match shipped {
            Ok(()) => work.outcome.applied += 1,
            Err(reason) => {
                let detail =
                    format!("order {order_id:?} has no open allocation of {quantity} here");
                work.reject(i, update, reason, detail);
            }
        }
    }

    /// Logs the batch's rejections and wraps its outcome with the record to journal;
    /// `before` is the source's sequence and (for a broker feed's batch) its broker position
    /// before the batch.
    fn finish_batch(
        &self,
        batch: &SupplyBatch,
        ticket: Ticket<'_>,
        now_ms: UnixMillis,
        work: BatchWork,
        before: (u64, Option<u64>),
    ) -> Mutation<BatchOutcome> {
        let BatchWork {
            mut outcome,
            effects,
            shipped,
            newest_as_of_ms,
            latest_as_of_ms: _,
            broker_seq,
        } = work;
        self.shared
            .rejections
            .record(&batch.source_id, batch.seq, now_ms, &outcome.rejections);
        outcome.lag_ms = newest_as_of_ms.map(|as_of| now_ms - as_of);
        let (reservations, replaced) = shipped.into_iter().unzip();
        self.mutation(ticket, outcome, || Record {
            source_seq: Some((batch.source_id.clone(), batch.seq)),
            broker_seq,
            effects: effects.unwrap_or_default(),
            reservations,
            undo: Undo {
                reservations: replaced,
                last_seq: Some(before.0),
                broker_seq: before.1,
                ..Undo::default()
            },
            ..Record::default()
        })
    }

    /// The most recent rejections, newest first.
    pub fn rejections(&self, source_id: Option<&str>, limit: usize) -> (Vec<LoggedRejection>, u64) {
        let log = &self.shared.rejections;
        (log.recent(source_id, limit), log.total())
    }

    /// Checks one update against the source's ownership and the limits.
    pub(crate) fn validate<'u>(
        &self,
        network: &Network,
        source: &SourceEntry,
        update: &'u SupplyUpdate,
        latest_as_of_ms: UnixMillis,
    ) -> Result<Valid<'u>, (RejectReason, String)> {
        let max_len = self.shared.config.limits.max_field_len;
        check_field_lengths(update, max_len)?;
        let node = network.node_idx(&update.node_id).ok_or_else(|| {
            (
                RejectReason::UnknownNode,
                format!("unknown node {:?}", echo(&update.node_id)),
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
        check_owned(source, node, supply_type, update)?;
        check_quantity(update)?;
        let kind = match op {
            UpdateOp::Ship { order_id } => {
                return validate_ship(supply_type, node, order_id, update, max_len)
            }
            UpdateOp::Set { as_of_ms } => set_kind(*as_of_ms, update, latest_as_of_ms)?,
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

/// What a batch's updates have done so far, gathered while they are applied.
struct BatchWork {
    outcome: BatchOutcome,
    effects: Option<Effects>,
    /// Reservations changed by `SHIP` updates, journaled with the batch, each with the version
    /// it replaced.
    shipped: Vec<(Reservation, Option<Reservation>)>,
    newest_as_of_ms: Option<UnixMillis>,
    /// The latest `as_of` a SET of this batch may carry: the server clock plus the skew.
    latest_as_of_ms: UnixMillis,
    /// The broker stream sequence of the message that carried the batch, if a broker feed's.
    broker_seq: Option<u64>,
}

impl BatchWork {
    /// Starts the work of a batch that passed the batch-level checks.
    fn new(batch: &SupplyBatch, effects: Option<Effects>, latest_as_of_ms: UnixMillis) -> Self {
        Self {
            outcome: BatchOutcome {
                source_id: batch.source_id.clone(),
                seq: batch.seq,
                ..BatchOutcome::default()
            },
            effects,
            shipped: Vec::new(),
            newest_as_of_ms: None,
            latest_as_of_ms,
            broker_seq: None,
        }
    }

    /// Records the rejection of update `i`.
    fn reject(&mut self, i: usize, update: &SupplyUpdate, reason: RejectReason, detail: String) {
        self.outcome
            .rejections
            .push(rejection(i, update, reason, detail));
    }
}

/// The answer to an empty batch, which only says that the source is alive.
fn heartbeat(batch: &SupplyBatch, source: &SourceEntry) -> Mutation<BatchOutcome> {
    let heartbeat = BatchOutcome {
        source_id: batch.source_id.clone(),
        seq: batch.seq,
        durable_seq: source.feed.seqs().1,
        ..BatchOutcome::default()
    };
    Mutation {
        result: heartbeat,
        record: None,
    }
}

/// The answer to a batch whose sequence was already applied, or (`replayed`) whose broker
/// message was.
fn already_applied(
    batch: &SupplyBatch,
    seq: &SeqState,
    replayed: bool,
) -> Result<Mutation<BatchOutcome>> {
    // Which batch a replayed message carried is not known here: while any is in flight, it
    // may be that one.
    let in_flight = if replayed {
        !seq.pending.is_empty()
    } else {
        seq.pending.contains(&batch.seq)
    };
    if in_flight {
        // Applied, but its journal write has not been confirmed: acknowledging it as a
        // duplicate could acknowledge something a crash would lose.
        return Err(Error::Unavailable(format!(
            "batch {} is applied but not yet durable; retry",
            batch.seq
        )));
    }
    let outcome = BatchOutcome {
        source_id: batch.source_id.clone(),
        seq: batch.seq,
        duplicate: true,
        durable_seq: seq.durable_seq(),
        ..BatchOutcome::default()
    };
    Ok(Mutation {
        result: outcome,
        record: None,
    })
}

/// `update` in promised's codes and units, by the source's tables (as sent when it has none).
pub(crate) fn normalized<'u>(
    network: &Network,
    source: &SourceEntry,
    update: &'u SupplyUpdate,
) -> Result<Cow<'u, SupplyUpdate>, Unmapped> {
    match network.mapping(&source.def.id) {
        Some(mapping) => mapping.normalize(update),
        None => Ok(Cow::Borrowed(update)),
    }
}

/// Rejects an update whose SKU is empty or whose text fields exceed `max_len` bytes.
fn check_field_lengths(
    update: &SupplyUpdate,
    max_len: usize,
) -> Result<(), (RejectReason, String)> {
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
    let invalid = |field: &str, value: &str| {
        id_problem(value, max_len)
            .map(|problem| (RejectReason::InvalidId, format!("{field} {problem}")))
    };
    if let Some(rejection) = invalid("sku", &update.sku) {
        return Err(rejection);
    }
    if !update.reference.is_empty() {
        if let Some(rejection) = invalid("reference", &update.reference) {
            return Err(rejection);
        }
    }
    Ok(())
}

/// Rejects an update for supply the source does not own at the node.
fn check_owned(
    source: &SourceEntry,
    node: NodeIdx,
    supply_type: SupplyType,
    update: &SupplyUpdate,
) -> Result<(), (RejectReason, String)> {
    if source.owns(node, supply_type) {
        return Ok(());
    }
    Err((
        RejectReason::NotOwned,
        format!(
            "source {:?} does not own {supply_type:?} at {:?}",
            source.def.id, update.node_id
        ),
    ))
}

/// Rejects a quantity whose magnitude exceeds the index's limit.
fn check_quantity(update: &SupplyUpdate) -> Result<(), (RejectReason, String)> {
    if update.quantity.unsigned_abs() > MAX_QUANTITY.unsigned_abs() {
        return Err((
            RejectReason::OversizedField,
            format!("quantity exceeds {MAX_QUANTITY}"),
        ));
    }
    Ok(())
}

/// The change kind of a SET, which must be non-negative and carry its `as_of`.
fn set_kind(
    as_of_ms: Option<i64>,
    update: &SupplyUpdate,
    latest_as_of_ms: UnixMillis,
) -> Result<ChangeKind, (RejectReason, String)> {
    if update.quantity < 0 {
        return Err((
            RejectReason::NegativeQuantity,
            "a SET must not be negative".into(),
        ));
    }
    let as_of_ms = as_of_ms.ok_or((RejectReason::MissingAsOf, "a SET needs as_of".into()))?;
    if as_of_ms > latest_as_of_ms {
        return Err((
            RejectReason::AsOfInFuture,
            "as_of is further ahead of the server clock than the allowed skew".into(),
        ));
    }
    Ok(ChangeKind::Set { as_of_ms })
}

/// An update that passed validation.
pub(crate) enum Valid<'u> {
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
        return undated(update);
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

/// Rejects a reference or ETA on undated (on-hand) supply.
fn undated(update: &SupplyUpdate) -> Result<Option<Day>, (RejectReason, String)> {
    if !update.reference.is_empty() || !update.eta.is_empty() {
        return Err((
            RejectReason::UnexpectedReference,
            "ON_HAND supply takes no reference or eta".into(),
        ));
    }
    Ok(None)
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

pub(crate) fn rejection(
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
    use crate::engine::EngineConfig;
    use crate::index::Index;

    fn journaled_engine() -> Engine {
        let engine = Engine::journaled(
            EngineConfig::default(),
            Arc::new(ManualClock::new(1_000)),
            Network::default(),
            Index::new(4),
        );
        let node = crate::test_support::node("DC");
        let _ = engine.upsert_nodes(vec![node]).expect("node");
        let _ = engine
            .upsert_sources(vec![crate::test_support::wms()])
            .expect("source");
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

    #[test]
    fn a_broker_message_at_or_before_the_recorded_position_is_not_applied_again() {
        let engine = journaled_engine();
        let first = engine.apply_broker_batch(&adjust(1), 7).expect("applies");
        let record = first.record.as_ref().expect("a record");
        assert_eq!(
            record.broker_seq,
            Some(7),
            "the position goes with the effects"
        );
        assert_eq!(engine.broker_seq("WMS"), Some(7));
        engine.mark_durable("WMS", 1);
        // The same message again, or an older one, even with a sequence not applied yet.
        for (seq, at) in [(1, 7), (2, 7), (2, 3)] {
            let again = engine
                .apply_broker_batch(&adjust(seq), at)
                .expect("answers");
            assert!(again.result.duplicate, "message {at} carrying batch {seq}");
            assert!(again.record.is_none(), "nothing applied twice");
        }
        let next = engine.apply_broker_batch(&adjust(2), 9).expect("applies");
        assert_eq!(next.record.expect("a record").broker_seq, Some(9));
        assert_eq!(engine.broker_seq("WMS"), Some(9));
    }

    #[test]
    fn a_replayed_broker_message_waits_while_a_batch_is_not_durable() {
        let engine = journaled_engine();
        let _ = engine.apply_broker_batch(&adjust(1), 7).expect("applies");
        assert!(
            matches!(
                engine.apply_broker_batch(&adjust(1), 7),
                Err(Error::Unavailable(_))
            ),
            "its first copy may still be lost: no acknowledgement"
        );
    }

    #[test]
    fn undoing_a_broker_batch_puts_its_position_back() {
        let engine = journaled_engine();
        let first = engine.apply_broker_batch(&adjust(1), 7).expect("applies");
        engine.mark_durable("WMS", 1);
        let (_, record) = first.into_parts();
        engine.settle(record.and_then(|r| r.ticket).expect("a ticket"));
        let second = engine.apply_broker_batch(&adjust(2), 9).expect("applies");
        let (_, record) = second.into_parts();
        engine.undo(record.into_iter().collect());
        assert_eq!(engine.broker_seq("WMS"), Some(7));
        let again = engine.apply_broker_batch(&adjust(2), 9).expect("applies");
        assert!(
            !again.result.duplicate,
            "the message taken back applies again"
        );
    }
}
