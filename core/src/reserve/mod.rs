//! Reservations' rules: all-or-nothing holds checked against time-phased ATP, idempotent by id,
//! expiring at their TTL, committed into allocations and shipped by the feed.
//!
//! Every change locks the reservation's book shard, then the shards of every SKU it touches (in
//! ascending order, through `Index::with_locked`), checks on copies, and only then changes the
//! positions: no partial hold is ever visible, and two carts overlapping in SKUs cannot deadlock.

mod holds;

use std::sync::Arc;

use holds::{allocate, change_holds, check_holds, skus, unallocate};

use crate::domain::{echo, id_problem, Day, Qty};
use crate::engine::Engine;
use crate::error::{Error, FieldViolation, Result};
use crate::index::{Effects, Pool};
use crate::mutation::{Mutation, Record, Undo};
use crate::network::{Network, NodeIdx};
use crate::reservation::{BookShard, Line, LineRequest, Reservation, ReserveRequest, Scope, State};
use crate::view::AtpView;

/// A reservation as an answer, with the network version that names its nodes and groups.
#[derive(Debug, Clone)]
pub struct Held {
    pub reservation: Reservation,
    pub network: Arc<Network>,
}

/// Reservations expired or forgotten per sweep, so one sweep stays short.
const SWEEP_LIMIT: usize = 10_000;

/// A hold a promise or a route makes for its plan: the call's own fingerprint, which a retry
/// of the call matches, and its answer, kept with the hold to be given again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub fingerprint: u64,
    pub answer: Vec<u8>,
}

impl Engine {
    /// Holds every line or none.
    pub fn reserve(&self, request: &ReserveRequest) -> Result<Mutation<Held>> {
        self.reserve_for(request, None)
    }

    /// The reservation `reservation_id` if a call with `fingerprint` made it (a retry: answer
    /// it as it is); `None` if the id is free. An id taken by another request is refused.
    pub(crate) fn retried(&self, reservation_id: &str, fingerprint: u64) -> Result<Option<Held>> {
        check_id("reservation_id", reservation_id)?;
        let shard = self.shared.book.shard(reservation_id);
        self.settled(&shard, reservation_id)?;
        let existing = retry_of(shard.get(reservation_id), reservation_id, fingerprint)?;
        Ok(existing.map(|reservation| Held {
            reservation,
            network: self.network(),
        }))
    }

    /// [`Engine::reserve`], for a call's plan when `origin` names the call: a retry of the
    /// same call (or a concurrent twin that held first) answers the hold it made.
    pub(crate) fn reserve_for(
        &self,
        request: &ReserveRequest,
        origin: Option<Origin>,
    ) -> Result<Mutation<Held>> {
        let network = self.network();
        let view = AtpView::new(self, &network, None);
        let lines = self.resolve_lines(&view, &request.lines)?;
        let ttl_ms = self.ttl_ms(request.ttl_secs)?;
        check_id("reservation_id", &request.reservation_id)?;
        let Origin {
            fingerprint,
            answer,
        } = origin.unwrap_or_else(|| Origin {
            fingerprint: request.fingerprint(),
            answer: Vec::new(),
        });
        let mut shard = self.shared.book.shard(&request.reservation_id);
        self.settled(&shard, &request.reservation_id)?;
        let existing = shard.get(&request.reservation_id);
        if let Some(existing) = retry_of(existing, &request.reservation_id, fingerprint)? {
            return Ok(unchanged(existing, network));
        }
        let ticket = self.begin();
        let mut effects = self.effects();
        self.shared.index.with_locked(skus(&lines), |locked| {
            check_holds(locked, &view, &[], &lines)?;
            change_holds(locked, &[], &lines, effects.as_mut());
            Ok::<_, Error>(())
        })?;
        let reservation = Reservation {
            id: request.reservation_id.clone(),
            version: 1,
            state: State::Held,
            lines,
            expires_at_ms: self.now_ms().saturating_add(ttl_ms),
            order_id: String::new(),
            fingerprint,
            ended_at_ms: None,
            owner: request.owner.clone(),
            answer,
        };
        let before = shard.put_by(reservation.clone(), ticket.number());
        Ok(self.with_record(ticket, before, reservation, effects, network))
    }

    /// Sets the given lines to their new quantities (0 removes a line) all at once, or changes
    /// nothing; a hold's other lines stay as they are.
    pub fn update_reservation(&self, request: &ReserveRequest) -> Result<Mutation<Held>> {
        let network = self.network();
        let view = AtpView::new(self, &network, None);
        let changes = self.resolve_lines_allowing_zero(&view, &request.lines)?;
        let mut shard = self.shared.book.shard(&request.reservation_id);
        self.settled(&shard, &request.reservation_id)?;
        let mut reservation = held(shard.get(&request.reservation_id), &request.reservation_id)?;
        let old = reservation.lines.clone();
        let new = with_changes(&old, changes);
        if request.ttl_secs > 0 {
            reservation.expires_at_ms =
                self.now_ms().saturating_add(self.ttl_ms(request.ttl_secs)?);
        }
        let ticket = self.begin();
        let mut effects = self.effects();
        let touched: Vec<&str> = skus(&old).chain(skus(&new)).collect();
        self.shared.index.with_locked(touched, |locked| {
            check_holds(locked, &view, &old, &new)?;
            change_holds(locked, &old, &new, effects.as_mut());
            Ok::<_, Error>(())
        })?;
        reservation.lines = new;
        reservation.version += 1;
        let before = shard.put_by(reservation.clone(), ticket.number());
        Ok(self.with_record(ticket, before, reservation, effects, network))
    }

    /// Moves a hold's expiry to `ttl_secs` from now.
    pub fn extend(&self, reservation_id: &str, ttl_secs: u64) -> Result<Mutation<Held>> {
        let ttl_ms = self.ttl_ms(ttl_secs)?;
        let network = self.network();
        let mut shard = self.shared.book.shard(reservation_id);
        self.settled(&shard, reservation_id)?;
        let mut reservation = held(shard.get(reservation_id), reservation_id)?;
        let ticket = self.begin();
        reservation.expires_at_ms = self.now_ms().saturating_add(ttl_ms);
        reservation.version += 1;
        let before = shard.put_by(reservation.clone(), ticket.number());
        Ok(self.with_record(ticket, before, reservation, None, network))
    }

    /// Releases a hold, or the unshipped allocations of a committed reservation. Releasing an
    /// ended reservation answers it as it is.
    #[allow(
        clippy::expect_used,
        reason = "`end` with an always-true filter answers every reservation it finds"
    )]
    pub fn release(&self, reservation_id: &str) -> Result<Mutation<Held>> {
        self.end(reservation_id, State::Released, |_| true)
            .map(|m| m.expect("a release ends any reservation that has not ended"))
    }

    /// Expires holds whose TTL has passed and forgets ended reservations past their retention.
    /// One step of the expiry loop.
    pub fn expire_due(&self) -> Vec<Mutation<Held>> {
        let now_ms = self.now_ms();
        let mut expired = Vec::new();
        for id in self.shared.book.due(now_ms, SWEEP_LIMIT) {
            let due = |r: &Reservation| r.state == State::Held && r.expires_at_ms <= now_ms;
            match self.end(&id, State::Expired, due) {
                Ok(Some(mutation)) => expired.push(mutation),
                Ok(None) => self.forget_if_due(&id, now_ms),
                Err(_) => {}
            }
        }
        expired
    }

    fn forget_if_due(&self, id: &str, now_ms: i64) {
        let mut shard = self.shared.book.shard(id);
        let retention = self.shared.book.retention_ms;
        let due = shard.get(id).is_some_and(|r| {
            r.state.is_ended() && r.deadline(retention).is_some_and(|d| d <= now_ms)
        });
        if due {
            shard.forget(id);
        }
    }

    /// Ends a reservation in `state` if `applies` to it, giving back what it holds; `Ok(None)`
    /// if it did not apply.
    fn end(
        &self,
        id: &str,
        state: State,
        applies: impl Fn(&Reservation) -> bool,
    ) -> Result<Option<Mutation<Held>>> {
        let network = self.network();
        let mut shard = self.shared.book.shard(id);
        self.settled(&shard, id)?;
        let mut reservation = found(shard.get(id), id)?;
        if reservation.state.is_ended() {
            return Ok(Some(unchanged(reservation, network)).filter(|_| state == State::Released));
        }
        if !applies(&reservation) {
            return Ok(None);
        }
        let ticket = self.begin();
        let mut effects = self.effects();
        self.shared
            .index
            .with_locked(skus(&reservation.lines), |locked| {
                if reservation.state == State::Held {
                    change_holds(locked, &reservation.lines, &[], effects.as_mut());
                } else {
                    unallocate(locked, &reservation.lines, effects.as_mut());
                }
            });
        reservation.state = state;
        reservation.ended_at_ms = Some(self.now_ms());
        reservation.version += 1;
        let before = shard.put_by(reservation.clone(), ticket.number());
        Ok(Some(self.with_record(
            ticket,
            before,
            reservation,
            effects,
            network,
        )))
    }

    /// Who made reservation `reservation_id`, durable yet or not: owners never change while
    /// an id is remembered, so who may act on it is known before its record is durable.
    pub fn reservation_owner(&self, reservation_id: &str) -> Option<String> {
        let shard = self.shared.book.shard(reservation_id);
        shard.get(reservation_id).map(|r| r.owner.clone())
    }

    pub fn get_reservation(&self, reservation_id: &str) -> Result<Held> {
        let shard = self.shared.book.shard(reservation_id);
        self.settled(&shard, reservation_id)?;
        let reservation = found(shard.get(reservation_id), reservation_id)?;
        Ok(Held {
            reservation,
            network: self.network(),
        })
    }

    /// Turns a hold into an allocation for `order_id`; pooled lines are bound to nodes that can
    /// serve them while every other pooled hold stays covered. Committing again with the same
    /// order answers the same.
    pub fn commit(&self, reservation_id: &str, order_id: &str) -> Result<Mutation<Held>> {
        check_id("order_id", order_id)?;
        let network = self.network();
        let view = AtpView::new(self, &network, None);
        let mut shard = self.shared.book.shard(reservation_id);
        self.settled(&shard, reservation_id)?;
        let current = found(shard.get(reservation_id), reservation_id)?;
        if current.state == State::Committed && current.order_id == order_id {
            return Ok(unchanged(current, network));
        }
        let mut reservation = held(Some(&current), reservation_id)?;
        if let Some(other) = self.shared.book.reservation_of(order_id) {
            return Err(Error::AlreadyExists(format!(
                "order {order_id:?} is committed from reservation {other:?}"
            )));
        }
        let ticket = self.begin();
        let mut effects = self.effects();
        let lines = self
            .shared
            .index
            .with_locked(skus(&reservation.lines), |locked| {
                allocate(locked, &view, &reservation.lines, effects.as_mut())
            })?;
        reservation.lines = lines;
        reservation.state = State::Committed;
        reservation.order_id = order_id.to_owned();
        reservation.version += 1;
        let before = shard.put_by(reservation.clone(), ticket.number());
        Ok(self.with_record(ticket, before, reservation, effects, network))
    }

    /// Ships `quantity` of `sku` at `node` for an order: the allocation and on-hand go down
    /// together. Called by the ingest for `SHIP` updates, with the batch's effects.
    pub(crate) fn ship(
        &self,
        order_id: &str,
        sku: &str,
        node: NodeIdx,
        quantity: Qty,
        effects: Option<&mut Effects>,
        shipped: &mut Vec<(Reservation, Option<Reservation>)>,
    ) -> std::result::Result<(), crate::domain::RejectReason> {
        use crate::domain::RejectReason;
        let id = self
            .shared
            .book
            .reservation_of(order_id)
            .ok_or(RejectReason::UnknownOrder)?;
        let mut shard = self.shared.book.shard(&id);
        let mut reservation = shard.get(&id).cloned().ok_or(RejectReason::UnknownOrder)?;
        if reservation.state != State::Committed {
            return Err(RejectReason::NotAllocated);
        }
        let portions = mark_shipped(&mut reservation, sku, node, quantity)
            .ok_or(RejectReason::NotAllocated)?;
        let applied = self.shared.index.update(sku, node, effects, |position| {
            let applied = position.ship(&portions, quantity);
            (applied, applied == crate::index::Applied::Applied)
        });
        if applied != crate::index::Applied::Applied {
            return Err(RejectReason::NegativeResult);
        }
        if all_shipped(&reservation) {
            reservation.state = State::Shipped;
            reservation.ended_at_ms = Some(self.now_ms());
        }
        reservation.version += 1;
        let before = shard.put(reservation.clone());
        shipped.push((reservation, before));
        Ok(())
    }

    /// Wraps a changed reservation as the answer, with the record of the change: its new
    /// version, and `before`, the version it replaced (`None`: it is new).
    fn with_record(
        &self,
        ticket: crate::engine::Ticket<'_>,
        before: Option<Reservation>,
        reservation: Reservation,
        effects: Option<Effects>,
        network: Arc<Network>,
    ) -> Mutation<Held> {
        let image = reservation.clone();
        self.mutation(
            ticket,
            Held {
                reservation,
                network,
            },
            || Record {
                effects: effects.unwrap_or_default(),
                reservations: vec![image],
                undo: Undo {
                    reservations: vec![before],
                    ..Undo::default()
                },
                ..Record::default()
            },
        )
    }

    /// Refuses any call on reservation `id` while the change that made its current version
    /// is not durable: that version may yet be taken back (the journal refused its record),
    /// so neither an answer built on it (a retry, a read, a commit repeated) nor a change of
    /// it may be acknowledged; the caller retries once it is durable or undone.
    fn settled(&self, shard: &BookShard<'_>, id: &str) -> Result<()> {
        if self.is_in_flight(shard, id) {
            return Err(Error::Unavailable(format!(
                "reservation {} is applied but not yet durable; retry",
                echo(id)
            )));
        }
        Ok(())
    }

    fn is_in_flight(&self, shard: &BookShard<'_>, id: &str) -> bool {
        shard
            .changed_by(id)
            .is_some_and(|ticket| self.is_unsettled(ticket))
    }

    /// Whether reservation `reservation_id` has a change whose record is not durable yet: a
    /// call on it waits for the journal to store (or take back) that record first.
    pub fn reservation_in_flight(&self, reservation_id: &str) -> bool {
        self.is_in_flight(&self.shared.book.shard(reservation_id), reservation_id)
    }

    pub(crate) fn ttl_ms(&self, ttl_secs: u64) -> Result<i64> {
        let limits = &self.config().reservations;
        let ttl_secs = if ttl_secs == 0 {
            limits.default_ttl_secs
        } else {
            ttl_secs
        };
        if ttl_secs > limits.max_ttl_secs {
            let problem = format!("must be at most {} seconds", limits.max_ttl_secs);
            return Err(Error::invalid("ttl_seconds", problem));
        }
        Ok(i64::try_from(ttl_secs * 1000).unwrap_or(i64::MAX))
    }

    fn resolve_lines(&self, view: &AtpView<'_, '_>, requests: &[LineRequest]) -> Result<Vec<Line>> {
        let lines = self.resolve_lines_allowing_zero(view, requests)?;
        let zero: Vec<FieldViolation> = lines
            .iter()
            .enumerate()
            .filter(|(_, line)| line.quantity == 0)
            .map(|(i, _)| FieldViolation::new(format!("lines[{i}].quantity"), "must be positive"))
            .collect();
        if requests.is_empty() {
            return Err(Error::invalid(
                "lines",
                "a reservation needs at least one line",
            ));
        }
        if !zero.is_empty() {
            return Err(Error::InvalidArgument(zero));
        }
        Ok(lines)
    }

    /// Validates and resolves lines; quantities may be 0 (an update removing the line).
    fn resolve_lines_allowing_zero(
        &self,
        view: &AtpView<'_, '_>,
        requests: &[LineRequest],
    ) -> Result<Vec<Line>> {
        let limits = self.config();
        let mut violations = Vec::new();
        if requests.len() > limits.reservations.max_lines {
            let problem = format!("at most {} lines", limits.reservations.max_lines);
            violations.push(FieldViolation::new("lines", problem));
        }
        let max_len = limits.limits.max_field_len;
        let lines: Vec<Line> = requests
            .iter()
            .enumerate()
            .filter_map(|(i, request)| resolve_line(view, i, request, max_len, &mut violations))
            .collect();
        if violations.is_empty() {
            Ok(lines)
        } else {
            Err(Error::InvalidArgument(violations))
        }
    }
}

/// Resolves request line `i`, adding what is wrong with it to `violations`; `None` if its
/// scope names nothing known.
fn resolve_line(
    view: &AtpView<'_, '_>,
    i: usize,
    request: &LineRequest,
    max_len: usize,
    violations: &mut Vec<FieldViolation>,
) -> Option<Line> {
    let field = |name: &str| format!("lines[{i}].{name}");
    if let Some(problem) = id_problem(&request.sku, max_len) {
        violations.push(FieldViolation::new(field("sku"), problem));
    }
    if !(0..=crate::index::MAX_QUANTITY).contains(&request.quantity) {
        violations.push(FieldViolation::new(
            field("quantity"),
            "must not be negative",
        ));
    }
    let Some(scope) = line_scope(view.network, request) else {
        let problem = "must name a known node, a known group, or neither (the network), not both";
        let name = if request.node_id.is_empty() {
            "group_id"
        } else {
            "node_id"
        };
        violations.push(FieldViolation::new(field(name), problem));
        return None;
    };
    let today = match scope {
        Scope::Node(node) => view.day(node),
        Scope::Pool(_) => view.first_day(),
    };
    Some(Line {
        sku: request.sku.clone(),
        scope,
        quantity: request.quantity,
        need: request.need_date.map_or(today, |date| date.max(today)),
        allocations: Vec::new(),
    })
}

/// The node, group or network a request line names, if it names one that exists.
fn line_scope(network: &Network, request: &LineRequest) -> Option<Scope> {
    match (request.node_id.as_str(), request.group_id.as_str()) {
        ("", "") => Some(Scope::Pool(Pool::Network)),
        (node, "") => network.node_idx(node).map(Scope::Node),
        ("", group) => network
            .group_idx(group)
            .map(|g| Scope::Pool(Pool::Group(g))),
        _ => None,
    }
}

/// `lines` with each change replacing the line of its SKU, scope and day; a change to 0
/// removes the line.
fn with_changes(lines: &[Line], changes: Vec<Line>) -> Vec<Line> {
    let mut new = lines.to_vec();
    for change in changes {
        let same = |line: &Line| {
            line.sku == change.sku && line.scope == change.scope && line.need == change.need
        };
        new.retain(|line| !same(line));
        if change.quantity > 0 {
            new.push(change);
        }
    }
    new
}

/// Most bytes of a reservation or order id.
const MAX_RESERVATION_ID_LEN: usize = 128;

/// A reservation's id (or an order id) in `field`: an id of at most 128 bytes.
fn check_id(field: &str, id: &str) -> Result<()> {
    match id_problem(id, MAX_RESERVATION_ID_LEN) {
        Some(problem) => Err(Error::invalid(field, problem)),
        None => Ok(()),
    }
}

/// A copy of `existing`, the reservation stored as `id`, if a request with `fingerprint` made
/// it; `None` if there is none. One made by another request is `AlreadyExists`.
fn retry_of(
    existing: Option<&Reservation>,
    id: &str,
    fingerprint: u64,
) -> Result<Option<Reservation>> {
    match existing {
        Some(existing) if existing.fingerprint != fingerprint => Err(Error::AlreadyExists(
            format!("reservation {id:?} exists with a different request"),
        )),
        existing => Ok(existing.cloned()),
    }
}

/// The reservation, if it is holding stock.
fn held(reservation: Option<&Reservation>, id: &str) -> Result<Reservation> {
    let reservation = found(reservation, id)?;
    if reservation.state != State::Held {
        return Err(Error::FailedPrecondition(format!(
            "reservation {} is {:?}, not held",
            echo(id),
            reservation.state
        )));
    }
    Ok(reservation)
}

/// A copy of the reservation looked up as `id`, or `NotFound`.
fn found(reservation: Option<&Reservation>, id: &str) -> Result<Reservation> {
    reservation
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("reservation {}", echo(id))))
}

/// The answer for a request that leaves the reservation as it is: nothing to journal.
fn unchanged(reservation: Reservation, network: Arc<Network>) -> Mutation<Held> {
    Mutation {
        result: Held {
            reservation,
            network,
        },
        record: None,
    }
}

/// Counts `quantity` of `sku` at `node` as shipped against the reservation's open allocations;
/// returns the portions shipped per need day, or `None` if the allocations fall short.
fn mark_shipped(
    reservation: &mut Reservation,
    sku: &str,
    node: NodeIdx,
    quantity: Qty,
) -> Option<Vec<(Day, Qty)>> {
    let mut portions = Vec::new();
    let mut left = quantity;
    for line in reservation.lines.iter_mut().filter(|l| l.sku == sku) {
        for allocation in line.allocations.iter_mut().filter(|a| a.node == node) {
            let take = left.min(allocation.quantity - allocation.shipped);
            if take > 0 {
                allocation.shipped += take;
                portions.push((line.need, take));
                left -= take;
            }
        }
    }
    (left <= 0).then_some(portions)
}

/// Whether every allocation of the reservation has shipped in full.
fn all_shipped(reservation: &Reservation) -> bool {
    reservation
        .lines
        .iter()
        .flat_map(|l| &l.allocations)
        .all(|a| a.shipped == a.quantity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::engine::EngineConfig;
    use crate::test_support::{engine, hold, node, reserve, stock, wms};

    /// Today's ATP of `sku` at the node `node`, as a query reports it.
    fn atp(engine: &Engine, sku: &str, node: NodeIdx) -> Qty {
        engine.index().read(sku, |entry| {
            let network = engine.network();
            let view = AtpView::new(engine, &network, None);
            entry
                .and_then(|e| e.positions().iter().find(|p| p.node() == node))
                .map_or(0, |p| view.atp(p))
        })
    }

    #[test]
    fn a_node_hold_lowers_that_nodes_atp_and_release_gives_it_back() {
        let engine = engine(&["A", "B"]);
        stock(&engine, 1, "SKU", &[("A", 10)]);
        reserve(&engine, &hold("R", &[("SKU", "A", 4)]));
        assert_eq!(atp(&engine, "SKU", 0), 6);
        let released = engine.release("R").expect("released").result;
        assert_eq!(released.reservation.state, State::Released);
        assert_eq!(atp(&engine, "SKU", 0), 10);
    }

    #[test]
    fn the_stats_count_live_holds_and_committed_reservations_but_not_ended_ones() {
        let engine = engine(&["A"]);
        stock(&engine, 1, "SKU", &[("A", 10)]);
        for id in ["H1", "H2", "C", "R"] {
            reserve(&engine, &hold(id, &[("SKU", "A", 1)]));
        }
        let _ = engine.commit("C", "ORDER-1").expect("committed");
        let _ = engine.release("R").expect("released");
        let stats = engine.stats();
        assert_eq!(
            (stats.held_reservations, stats.committed_reservations),
            (2, 1)
        );
        assert_eq!(stats.ended_reservations, 1);
    }

    #[test]
    fn ended_reservations_are_counted_until_their_retention_passes() {
        let clock = ManualClock::new(1_000);
        let config = EngineConfig::default();
        let retention_ms = i64::try_from(config.reservations.retention_secs * 1000).expect("ms");
        let engine = Engine::new(config, Arc::new(clock.clone()));
        let _ = engine.upsert_nodes(vec![node("A")]).expect("nodes");
        let _ = engine.upsert_sources(vec![wms()]).expect("source");
        stock(&engine, 1, "SKU", &[("A", 10)]);
        let counts = |engine: &Engine| {
            let stats = engine.stats();
            let live = (stats.held_reservations, stats.committed_reservations);
            (live, stats.ended_reservations)
        };
        for id in ["H", "R1", "R2"] {
            reserve(&engine, &hold(id, &[("SKU", "A", 1)]));
        }
        let _ = engine.release("R1").expect("released");
        assert_eq!(counts(&engine), ((2, 0), 1));
        // Released again: the same reservation, counted once.
        let _ = engine.release("R1").expect("released again");
        let _ = engine.release("R2").expect("released");
        assert_eq!(counts(&engine), ((1, 0), 2));
        clock.advance_ms(retention_ms - 1);
        let _ = engine.expire_due();
        assert_eq!(
            counts(&engine),
            ((0, 0), 3),
            "the hold expired, nothing forgotten"
        );
        clock.advance_ms(1);
        let _ = engine.expire_due();
        assert_eq!(counts(&engine), ((0, 0), 1), "the released ones forgotten");
    }

    #[test]
    fn a_reservation_short_on_one_line_holds_none_of_its_lines() {
        let engine = engine(&["A", "B"]);
        stock(&engine, 1, "SKU", &[("A", 10), ("B", 5)]);
        let request = hold("R", &[("SKU", "A", 4), ("SKU", "B", 6)]);
        let Err(Error::InsufficientStock(shortfalls)) = engine.reserve(&request) else {
            panic!("B has only 5");
        };
        assert_eq!(shortfalls.len(), 2);
        assert_eq!(shortfalls[1].requested, 6);
        assert_eq!(shortfalls[1].available, 5);
        assert_eq!(atp(&engine, "SKU", 0), 10, "nothing held at A");
        assert!(engine.get_reservation("R").is_err());
    }

    #[test]
    fn a_retried_reserve_answers_the_existing_hold_and_a_different_one_conflicts() {
        let engine = engine(&["A"]);
        stock(&engine, 1, "SKU", &[("A", 10)]);
        reserve(&engine, &hold("R", &[("SKU", "A", 4)]));
        let retry = engine
            .reserve(&hold("R", &[("SKU", "A", 4)]))
            .expect("same");
        assert!(retry.record.is_none());
        assert_eq!(retry.result.reservation.version, 1);
        assert_eq!(atp(&engine, "SKU", 0), 6, "held once");
        let other = engine.reserve(&hold("R", &[("SKU", "A", 5)]));
        assert!(matches!(other, Err(Error::AlreadyExists(_))));
    }

    /// Two copies of one holding call racing: the one that holds second finds the first's
    /// hold and is given its answer; `Reserve` under that id is another request.
    #[test]
    fn a_hold_made_for_a_call_answers_its_twin_with_the_first_answer() {
        let engine = engine(&["A"]);
        stock(&engine, 1, "SKU", &[("A", 1)]);
        let origin = |answer: &[u8]| Origin {
            fingerprint: 7,
            answer: answer.to_vec(),
        };
        let request = hold("R", &[("SKU", "A", 1)]);
        let first = engine.reserve_for(&request, Some(origin(b"first")));
        assert_eq!(first.expect("held").result.reservation.answer, b"first");
        let twin = engine
            .reserve_for(&request, Some(origin(b"second")))
            .expect("the twin finds the hold, though no stock is left");
        assert!(twin.record.is_none(), "nothing changed");
        assert_eq!(twin.result.reservation.answer, b"first");
        assert!(engine.retried("R", 7).expect("the call's id").is_some());
        assert!(matches!(
            engine.retried("R", 8),
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            engine.reserve(&request),
            Err(Error::AlreadyExists(_))
        ));
        assert!(engine.retried("FREE", 7).expect("free").is_none());
    }

    #[test]
    fn commit_binds_a_network_hold_to_nodes_with_stock() {
        let engine = engine(&["A", "B"]);
        stock(&engine, 1, "SKU", &[("A", 10), ("B", 5)]);
        reserve(&engine, &hold("R", &[("SKU", "", 12)]));
        let committed = engine.commit("R", "ORDER-1").expect("committed").result;
        let line = &committed.reservation.lines[0];
        let placed: Qty = line.allocations.iter().map(|a| a.quantity).sum();
        assert_eq!(placed, 12);
        assert_eq!(atp(&engine, "SKU", 0) + atp(&engine, "SKU", 1), 3);
        let again = engine.commit("R", "ORDER-1").expect("same order");
        assert!(again.record.is_none());
    }

    #[test]
    fn the_book_finds_a_skus_live_reservations_until_they_end() {
        let engine = engine(&["A", "B"]);
        stock(&engine, 1, "SKU", &[("A", 10), ("B", 5)]);
        stock(&engine, 2, "OTHER", &[("A", 10)]);
        reserve(&engine, &hold("R1", &[("SKU", "A", 2), ("OTHER", "A", 1)]));
        reserve(&engine, &hold("R2", &[("SKU", "", 3)]));
        reserve(&engine, &hold("R3", &[("OTHER", "A", 1)]));
        let live = |sku: &str| {
            let mut ids = Vec::new();
            engine.shared.book.visit_live(sku, |r| {
                ids.push(r.id.clone());
                true
            });
            ids.sort();
            ids
        };
        assert_eq!(live("SKU"), ["R1", "R2"]);
        assert_eq!(live("OTHER"), ["R1", "R3"]);
        let _ = engine.commit("R2", "ORDER-2").expect("committed");
        assert_eq!(live("SKU"), ["R1", "R2"], "an allocation is live");
        let _ = engine.release("R1").expect("released");
        assert_eq!(
            (live("SKU"), live("OTHER")),
            (vec!["R2".to_owned()], vec!["R3".to_owned()])
        );
        // A hold whose creation is taken back is forgotten outright.
        engine.shared.book.shard("R3").forget("R3");
        assert!(live("OTHER").is_empty());
        let mut visited = 0;
        engine.shared.book.visit_live("SKU", |_| {
            visited += 1;
            false
        });
        assert_eq!(visited, 1, "visiting stops when told");
    }

    #[test]
    fn mark_shipped_fails_when_open_allocations_fall_short() {
        let engine = engine(&["A"]);
        stock(&engine, 1, "SKU", &[("A", 10)]);
        reserve(&engine, &hold("R", &[("SKU", "A", 4)]));
        let mut reservation = engine
            .commit("R", "O")
            .expect("committed")
            .result
            .reservation;
        let need = reservation.lines[0].need;
        assert_eq!(
            mark_shipped(&mut reservation, "SKU", 0, 3),
            Some(vec![(need, 3)])
        );
        assert!(!all_shipped(&reservation));
        // `ship` drops the copy it marked when the allocations fall short.
        let mut copy = reservation.clone();
        assert_eq!(mark_shipped(&mut copy, "SKU", 0, 2), None, "only 1 left");
        assert_eq!(
            mark_shipped(&mut reservation, "SKU", 0, 1),
            Some(vec![(need, 1)])
        );
        assert!(all_shipped(&reservation));
    }
}
