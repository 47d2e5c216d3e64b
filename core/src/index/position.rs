//! One (sku, node) position: typed supply, dated demand, safety stock, and time-phased ATP.
//!
//! With `net(d) = on_hand - safety + receipts(eta <= d) - demand(need <= d)`,
//! `ATP(d) = max(0, min over d' >= d of net(d'))`: a promise for day `d` never takes units that a
//! later commitment already counts on. `net` only changes on receipt and demand days, so the
//! minimum is taken over `d` and those days, walked in order without allocating.

use crate::codec::{CodecError, Decoded, Reader, Writer};
use crate::domain::{Day, Qty, SupplyType};
use crate::network::NodeIdx;

/// The largest quantity a position, a pooled hold or a reservation stores in any field;
/// updates and requests that would exceed it are rejected and decoders refuse it, which
/// keeps every sum of them far from `i64` overflow.
pub const MAX_QUANTITY: Qty = 1_000_000_000_000;

/// Marks "no per-position override" in [`Position::safety_override`].
const NO_OVERRIDE: Qty = -1;

/// How much of each supply type counts towards ATP, in thousandths (e.g. 400 = only 40% of
/// open purchase orders are promised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtpPolicy {
    pub promisable_permille: [u32; 3],
}

impl Default for AtpPolicy {
    fn default() -> Self {
        Self {
            promisable_permille: [1000; 3],
        }
    }
}

impl AtpPolicy {
    /// The part of `quantity` of `supply_type` that counts towards ATP (rounded down).
    pub fn promisable(&self, supply_type: SupplyType, quantity: Qty) -> Qty {
        quantity * Qty::from(self.promisable_permille[supply_type.index()]) / 1000
    }
}

/// A validated change to one position.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub supply_type: SupplyType,
    pub kind: ChangeKind,
    pub quantity: Qty,
    /// The receipt's PO/ASN line; empty for on-hand.
    pub reference: &'a str,
    /// New arrival date of a receipt, if the update carried one.
    pub eta: Option<Day>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Set { as_of_ms: i64 },
    Adjust,
}

/// What applying a [`Change`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// A SET older than the last SET of the same supply; nothing changed.
    Stale,
    /// An ADJUST would have taken the quantity below zero; nothing changed.
    NegativeResult,
    /// The result would exceed [`MAX_QUANTITY`]; nothing changed.
    TooLarge,
    /// A new receipt needs an arrival date; nothing changed.
    MissingEta,
}

/// A dated receipt (in-transit ASN line or open PO line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The PO or ASN line.
    pub reference: Box<str>,
    pub supply_type: SupplyType,
    pub eta: Day,
    pub quantity: Qty,
    /// Source time of the last SET of this receipt (stale-SET watermark).
    pub as_of_ms: i64,
}

/// Demand due on one day, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatedDemand {
    pub day: Day,
    /// Held by reservations that have not been committed.
    pub reserved: Qty,
    /// Committed to orders that have not shipped.
    pub allocated: Qty,
}

/// The parts of a position that most positions never have; boxed so a plain on-hand position
/// stays small.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Dated {
    /// Ascending by ETA.
    receipts: Vec<Receipt>,
    /// Latest source time at which a receipt was removed by a SET, so that an older SET cannot
    /// bring it back.
    removed_as_of_ms: i64,
    /// Ascending by day, one entry per day.
    demand: Vec<DatedDemand>,
}

/// Supply and demand of one SKU at one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    node: NodeIdx,
    on_hand: Qty,
    /// Source time of the last on-hand SET (stale-SET watermark).
    on_hand_as_of_ms: i64,
    /// Per-position safety stock, or [`NO_OVERRIDE`] to use the node default.
    safety_override: Qty,
    dated: Option<Box<Dated>>,
}

/// The figures an availability answer reports for a position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub on_hand: Qty,
    pub reserved: Qty,
    pub allocated: Qty,
    /// Open receipts, before any promisable fraction.
    pub inbound: Qty,
}

impl Position {
    pub fn new(node: NodeIdx) -> Self {
        Self {
            node,
            on_hand: 0,
            on_hand_as_of_ms: i64::MIN,
            safety_override: NO_OVERRIDE,
            dated: None,
        }
    }

    pub fn node(&self) -> NodeIdx {
        self.node
    }

    /// Safety stock in force: the override, else the node default.
    pub fn safety(&self, node_default: Qty) -> Qty {
        self.safety_override().unwrap_or(node_default)
    }

    /// The per-position safety stock, if one was set.
    pub fn safety_override(&self) -> Option<Qty> {
        (self.safety_override != NO_OVERRIDE).then_some(self.safety_override)
    }

    /// Source time of the last on-hand SET; `None` if on-hand was only ever adjusted.
    pub fn on_hand_as_of_ms(&self) -> Option<i64> {
        (self.on_hand_as_of_ms != i64::MIN).then_some(self.on_hand_as_of_ms)
    }

    pub fn set_safety_override(&mut self, quantity: Qty) {
        self.safety_override = quantity.max(0);
    }

    pub fn totals(&self) -> Totals {
        let mut totals = Totals {
            on_hand: self.on_hand,
            ..Totals::default()
        };
        if let Some(dated) = &self.dated {
            totals.inbound = dated.receipts.iter().map(|r| r.quantity).sum();
            for demand in &dated.demand {
                totals.reserved += demand.reserved;
                totals.allocated += demand.allocated;
            }
        }
        totals
    }

    /// Applies a supply change; on anything but [`Applied::Applied`] the position is unchanged.
    pub fn apply(&mut self, change: &Change<'_>) -> Applied {
        if change.supply_type.is_dated() {
            self.apply_receipt(change)
        } else {
            self.apply_on_hand(change)
        }
    }

    fn apply_on_hand(&mut self, change: &Change<'_>) -> Applied {
        match change.kind {
            ChangeKind::Set { as_of_ms } => {
                if as_of_ms < self.on_hand_as_of_ms {
                    return Applied::Stale;
                }
                self.on_hand = change.quantity;
                self.on_hand_as_of_ms = as_of_ms;
            }
            ChangeKind::Adjust => match checked_result(self.on_hand, change.quantity) {
                Ok(result) => self.on_hand = result,
                Err(refusal) => return refusal,
            },
        }
        Applied::Applied
    }

    fn apply_receipt(&mut self, change: &Change<'_>) -> Applied {
        let dated = self.dated.get_or_insert_with(Box::default);
        let found = dated
            .receipts
            .iter()
            .position(|r| r.supply_type == change.supply_type && *r.reference == *change.reference);
        let outcome = match (change.kind, found) {
            (ChangeKind::Set { as_of_ms }, Some(i)) => {
                if as_of_ms < dated.receipts[i].as_of_ms {
                    return Applied::Stale;
                }
                if change.quantity == 0 {
                    dated.receipts.remove(i);
                    dated.removed_as_of_ms = dated.removed_as_of_ms.max(as_of_ms);
                } else {
                    let receipt = &mut dated.receipts[i];
                    receipt.quantity = change.quantity;
                    receipt.as_of_ms = as_of_ms;
                    receipt.eta = change.eta.unwrap_or(receipt.eta);
                }
                Applied::Applied
            }
            (ChangeKind::Set { as_of_ms }, None) => {
                if as_of_ms < dated.removed_as_of_ms {
                    return Applied::Stale;
                }
                if change.quantity == 0 {
                    dated.removed_as_of_ms = dated.removed_as_of_ms.max(as_of_ms);
                    Applied::Applied
                } else {
                    insert_receipt(dated, change, as_of_ms)
                }
            }
            (ChangeKind::Adjust, Some(i)) => {
                match checked_result(dated.receipts[i].quantity, change.quantity) {
                    Ok(0) => {
                        dated.receipts.remove(i);
                    }
                    Ok(result) => {
                        let receipt = &mut dated.receipts[i];
                        receipt.quantity = result;
                        receipt.eta = change.eta.unwrap_or(receipt.eta);
                    }
                    Err(refusal) => return refusal,
                }
                Applied::Applied
            }
            (ChangeKind::Adjust, None) => match checked_result(0, change.quantity) {
                Ok(0) => Applied::Applied,
                Ok(_) => insert_receipt(dated, change, i64::MIN),
                Err(refusal) => refusal,
            },
        };
        dated.receipts.sort_by_key(|r| r.eta);
        outcome
    }

    /// Adds (or with negative deltas, removes) demand due on `day`.
    pub fn add_demand(&mut self, day: Day, reserved: Qty, allocated: Qty) {
        let dated = self.dated.get_or_insert_with(Box::default);
        let at = match dated.demand.binary_search_by_key(&day, |d| d.day) {
            Ok(at) => at,
            Err(at) => {
                let empty = DatedDemand {
                    day,
                    reserved: 0,
                    allocated: 0,
                };
                dated.demand.insert(at, empty);
                at
            }
        };
        let entry = &mut dated.demand[at];
        entry.reserved += reserved;
        entry.allocated += allocated;
        if entry.reserved == 0 && entry.allocated == 0 {
            dated.demand.remove(at);
        }
    }

    /// Ships `quantity` of an allocation: takes `portions` (day, quantity) off the allocated
    /// demand and the whole quantity off on-hand, or changes nothing if on-hand is short.
    pub fn ship(&mut self, portions: &[(Day, Qty)], quantity: Qty) -> Applied {
        if self.on_hand < quantity {
            return Applied::NegativeResult;
        }
        self.on_hand -= quantity;
        for &(day, portion) in portions {
            self.add_demand(day, 0, -portion);
        }
        Applied::Applied
    }

    /// `net(from)` followed by `net(e)` for each later event day `e`, ascending.
    fn net_steps<'a>(&'a self, from: Day, safety: Qty, policy: &'a AtpPolicy) -> NetSteps<'a> {
        let (receipts, demand): (&[Receipt], &[DatedDemand]) = match &self.dated {
            Some(dated) => (&dated.receipts, &dated.demand),
            None => (&[], &[]),
        };
        let due_receipts = receipts.partition_point(|r| r.eta <= from);
        let due_demand = demand.partition_point(|d| d.day <= from);
        let net = self.on_hand - safety
            + receipts[..due_receipts]
                .iter()
                .map(|r| policy.promisable(r.supply_type, r.quantity))
                .sum::<Qty>()
            - demand[..due_demand]
                .iter()
                .map(|d| d.reserved + d.allocated)
                .sum::<Qty>();
        NetSteps {
            policy,
            receipts: &receipts[due_receipts..],
            demand: &demand[due_demand..],
            first: Some(from),
            net,
        }
    }

    /// Available to promise on `day`, with look-ahead.
    pub fn atp(&self, day: Day, safety: Qty, policy: &AtpPolicy) -> Qty {
        self.lowest_net(day, safety, policy).max(0)
    }

    /// The lowest net position from `day` on; below zero, commitments exceed supply (oversold,
    /// as when a feed lowers on-hand under existing holds).
    pub fn lowest_net(&self, day: Day, safety: Qty, policy: &AtpPolicy) -> Qty {
        self.lowest(day, safety, policy).1
    }

    /// The lowest net position from `day` on, and the first day it is reached: the day whose
    /// receipts and demand due by then set ATP on `day`.
    pub fn lowest(&self, day: Day, safety: Qty, policy: &AtpPolicy) -> (Day, Qty) {
        if self.dated.is_none() {
            // On-hand only: the net position is the same on every day.
            return (day, self.on_hand - safety);
        }
        self.net_steps(day, safety, policy)
            .reduce(|low, step| if step.1 < low.1 { step } else { low })
            .unwrap_or((day, 0))
    }

    /// Dated receipts, ascending by ETA.
    pub fn receipts(&self) -> &[Receipt] {
        self.dated.as_ref().map_or(&[], |dated| &dated.receipts)
    }

    /// Demand by day, ascending.
    pub fn demand(&self) -> &[DatedDemand] {
        self.dated.as_ref().map_or(&[], |dated| &dated.demand)
    }

    /// Replaces the demand (the audit's repair).
    pub fn set_demand(&mut self, demand: Vec<DatedDemand>) {
        self.dated.get_or_insert_with(Box::default).demand = demand;
    }

    /// ATP as a step function from `from`: `(day, atp)` pairs ascending by day and by ATP, the
    /// first at `from`; ATP holds from each day until the next.
    pub fn atp_profile(&self, from: Day, safety: Qty, policy: &AtpPolicy) -> Vec<(Day, Qty)> {
        let mut steps = Vec::new();
        self.push_atp_profile(from, safety, policy, &mut steps);
        steps
    }

    /// Appends [`Position::atp_profile`] to `steps`.
    pub fn push_atp_profile(
        &self,
        from: Day,
        safety: Qty,
        policy: &AtpPolicy,
        steps: &mut Vec<(Day, Qty)>,
    ) {
        let start = steps.len();
        steps.extend(self.net_steps(from, safety, policy));
        let mut lowest = Qty::MAX;
        for step in steps[start..].iter_mut().rev() {
            lowest = lowest.min(step.1);
            step.1 = lowest.max(0);
        }
    }

    /// First day at or after `from` with `ATP >= quantity`. Allocation-free: ATP only changes
    /// on event days, and a position has a handful, so each is checked directly.
    pub fn earliest(
        &self,
        from: Day,
        quantity: Qty,
        safety: Qty,
        policy: &AtpPolicy,
    ) -> Option<Day> {
        self.net_steps(from, safety, policy)
            .map(|(day, _)| day)
            .find(|&day| self.atp(day, safety, policy) >= quantity)
    }
}

impl Position {
    /// Appends the whole position (the journal's and snapshots' unit of state).
    pub fn encode(&self, w: &mut Writer) {
        w.var(u64::from(self.node));
        w.ivar(self.on_hand);
        w.ivar(self.on_hand_as_of_ms);
        w.ivar(self.safety_override);
        let Some(dated) = &self.dated else {
            w.u8(0);
            return;
        };
        w.u8(1);
        w.len(dated.receipts.len());
        for receipt in &dated.receipts {
            w.str(&receipt.reference);
            w.u8(receipt.supply_type.index() as u8);
            w.ivar(i64::from(receipt.eta.0));
            w.ivar(receipt.quantity);
            w.ivar(receipt.as_of_ms);
        }
        w.ivar(dated.removed_as_of_ms);
        w.len(dated.demand.len());
        for demand in &dated.demand {
            w.ivar(i64::from(demand.day.0));
            w.ivar(demand.reserved);
            w.ivar(demand.allocated);
        }
    }

    /// Reads a position [`Position::encode`] wrote. What a position never holds is refused:
    /// a quantity beyond [`MAX_QUANTITY`] either way (sums of them would overflow), receipts
    /// out of ETA order or demand out of day order (ATP walks both in order).
    pub fn decode(r: &mut Reader<'_>) -> Decoded<Position> {
        let node = NodeIdx::try_from(r.var()?).map_err(|_| CodecError("node index"))?;
        let mut position = Position {
            node,
            on_hand: quantity(r)?,
            on_hand_as_of_ms: r.ivar()?,
            safety_override: quantity(r)?,
            dated: None,
        };
        if r.u8()? == 0 {
            return Ok(position);
        }
        let day = |r: &mut Reader<'_>| -> Decoded<Day> {
            i32::try_from(r.ivar()?)
                .map(Day)
                .map_err(|_| CodecError("day"))
        };
        let mut dated = Dated::default();
        for _ in 0..r.len()? {
            let reference = r.str()?.into();
            let supply_type = *SupplyType::ALL
                .get(usize::from(r.u8()?))
                .ok_or(CodecError("supply type"))?;
            dated.receipts.push(Receipt {
                reference,
                supply_type,
                eta: day(r)?,
                quantity: quantity(r)?,
                as_of_ms: r.ivar()?,
            });
        }
        if !dated.receipts.windows(2).all(|w| w[0].eta <= w[1].eta) {
            return Err(CodecError("receipts out of ETA order"));
        }
        dated.removed_as_of_ms = r.ivar()?;
        for _ in 0..r.len()? {
            dated.demand.push(DatedDemand {
                day: day(r)?,
                reserved: quantity(r)?,
                allocated: quantity(r)?,
            });
        }
        if !dated.demand.windows(2).all(|w| w[0].day < w[1].day) {
            return Err(CodecError("demand out of day order"));
        }
        position.dated = Some(Box::new(dated));
        Ok(position)
    }
}

/// A stored quantity, within [`MAX_QUANTITY`] either way.
fn quantity(r: &mut Reader<'_>) -> Decoded<Qty> {
    let quantity = r.ivar()?;
    if quantity.unsigned_abs() > MAX_QUANTITY.unsigned_abs() {
        return Err(CodecError("quantity beyond the limit"));
    }
    Ok(quantity)
}

fn insert_receipt(dated: &mut Dated, change: &Change<'_>, as_of_ms: i64) -> Applied {
    let Some(eta) = change.eta else {
        return Applied::MissingEta;
    };
    dated.receipts.push(Receipt {
        reference: change.reference.into(),
        supply_type: change.supply_type,
        eta,
        quantity: change.quantity,
        as_of_ms,
    });
    Applied::Applied
}

/// `current + delta`, refused if below zero or above [`MAX_QUANTITY`].
fn checked_result(current: Qty, delta: Qty) -> Result<Qty, Applied> {
    match current.checked_add(delta) {
        Some(result) if result < 0 => Err(Applied::NegativeResult),
        Some(result) if result <= MAX_QUANTITY => Ok(result),
        _ => Err(Applied::TooLarge),
    }
}

/// Iterator over `(day, net)` at `from` and at each later event day.
struct NetSteps<'a> {
    policy: &'a AtpPolicy,
    receipts: &'a [Receipt],
    demand: &'a [DatedDemand],
    /// `Some(from)` until the first step has been yielded.
    first: Option<Day>,
    net: Qty,
}

impl Iterator for NetSteps<'_> {
    type Item = (Day, Qty);

    fn next(&mut self) -> Option<(Day, Qty)> {
        if let Some(from) = self.first.take() {
            return Some((from, self.net));
        }
        let day = match (self.receipts.first(), self.demand.first()) {
            (None, None) => return None,
            (Some(r), None) => r.eta,
            (None, Some(d)) => d.day,
            (Some(r), Some(d)) => r.eta.min(d.day),
        };
        while let Some((r, rest)) = self.receipts.split_first().filter(|(r, _)| r.eta == day) {
            self.net += self.policy.promisable(r.supply_type, r.quantity);
            self.receipts = rest;
        }
        while let Some((d, rest)) = self.demand.split_first().filter(|(d, _)| d.day == day) {
            self.net -= d.reserved + d.allocated;
            self.demand = rest;
        }
        Some((day, self.net))
    }
}
