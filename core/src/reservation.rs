//! Reservations: the book of holds and allocations, by id, with their deadlines and orders.
//! Plain data and locking; the rules that change stock live in `reserve`.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::clock::UnixMillis;
use crate::codec::{CodecError, Decoded, Reader, Writer};
use crate::delivery::Shipment;
use crate::domain::{Day, Qty};
use crate::index::{Pool, MAX_QUANTITY};
use crate::network::{Network, NodeIdx};

/// A line as a caller asks for it: at a node, in a group, or (both empty) anywhere in the network.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LineRequest {
    pub sku: String,
    pub node_id: String,
    pub group_id: String,
    pub quantity: Qty,
    /// `None` is today.
    pub need_date: Option<Day>,
}

/// `Reserve` (and, with the lines to set, `Update`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReserveRequest {
    pub reservation_id: String,
    pub lines: Vec<LineRequest>,
    /// 0 takes the default.
    pub ttl_secs: u64,
    /// The credential asking; a new reservation records it as its owner. Not part of the
    /// fingerprint: who may act on a reservation is the edge's question, not the request's.
    pub owner: String,
}

/// The seed of every request fingerprint: fixed, since fingerprints are stored.
const FINGERPRINT_SEED: u64 = 0x7265_7365_7276_6521;

impl ReserveRequest {
    /// Identifies the request's content, so a retry can be told from a different request with
    /// the same id.
    pub fn fingerprint(&self) -> u64 {
        let mut hasher = foldhash::fast::FixedState::with_seed(FINGERPRINT_SEED).build_hasher();
        self.lines.hash(&mut hasher);
        self.ttl_secs.hash(&mut hasher);
        hasher.finish()
    }
}

/// The fingerprint of a promise or route that holds its plan, from its encoded request (led
/// by a byte naming the call, so no two kinds of call share one).
pub(crate) fn fingerprint(request: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(FINGERPRINT_SEED).hash_one(request)
}

/// A promise's or a route's plan held as a reservation: under this id, for this long, owned
/// by this credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub reservation_id: String,
    /// 0 takes the default.
    pub ttl_secs: u64,
    pub owner: String,
}

impl Hold {
    /// The hold of a plan's `shipments`: each one's lines at its node, needed by its ship date.
    pub(crate) fn of_shipments(&self, network: &Network, shipments: &[Shipment]) -> ReserveRequest {
        let lines = shipments
            .iter()
            .flat_map(|shipment| {
                let node_id = &network.node(shipment.node).id;
                shipment
                    .lines
                    .iter()
                    .map(move |(sku, quantity)| LineRequest {
                        sku: sku.clone(),
                        node_id: node_id.clone(),
                        group_id: String::new(),
                        quantity: *quantity,
                        need_date: Some(shipment.ship_date),
                    })
            })
            .collect();
        ReserveRequest {
            reservation_id: self.reservation_id.clone(),
            lines,
            ttl_secs: self.ttl_secs,
            owner: self.owner.clone(),
        }
    }
}

/// Where a line holds stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Node(NodeIdx),
    Pool(Pool),
}

/// Committed quantity of a line at one node, and how much of it has shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub node: NodeIdx,
    pub quantity: Qty,
    pub shipped: Qty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub sku: String,
    pub scope: Scope,
    pub quantity: Qty,
    pub need: Day,
    /// Empty until committed.
    pub allocations: Vec<Allocation>,
}

impl Line {
    /// What the line of a reservation in `state` takes from stock on its need day, by place:
    /// held, its whole quantity where it holds; committed, what is not yet shipped at each
    /// node it is allocated at; ended, nothing.
    pub fn demand(&self, state: State) -> Vec<(Scope, Qty)> {
        match state {
            State::Held => vec![(self.scope, self.quantity)],
            State::Committed => self
                .allocations
                .iter()
                .map(|a| (Scope::Node(a.node), a.quantity - a.shipped))
                .filter(|&(_, open)| open != 0)
                .collect(),
            State::Released | State::Expired | State::Shipped => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Holding stock until it expires, is released, or is committed.
    Held,
    /// Allocated to an order until shipped or released.
    Committed,
    Released,
    Expired,
    /// Every allocated unit has shipped.
    Shipped,
}

impl State {
    pub fn is_ended(self) -> bool {
        matches!(self, Self::Released | Self::Expired | Self::Shipped)
    }

    const ALL: [State; 5] = [
        Self::Held,
        Self::Committed,
        Self::Released,
        Self::Expired,
        Self::Shipped,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: String,
    /// Counts changes; recovery keeps the highest version of each reservation.
    pub version: u64,
    pub state: State,
    pub lines: Vec<Line>,
    pub expires_at_ms: UnixMillis,
    /// Set by commit.
    pub order_id: String,
    /// Of the request that created (or last updated) it; see [`ReserveRequest::fingerprint`].
    pub fingerprint: u64,
    /// When it ended; the id is remembered until this plus the retention.
    pub ended_at_ms: Option<UnixMillis>,
    /// The credential that made it: only it (or an operator) may change it. Empty when it was
    /// made without authentication, or before owners were recorded.
    pub owner: String,
    /// What the call that made it answered, when that call was a promise or a route holding
    /// its plan, encoded by that call (empty for `Reserve`): the same call again answers it
    /// again, also after a restart.
    pub answer: Vec<u8>,
}

/// How a stored reservation is laid out: journal records before version 3 and snapshots
/// before format 2 hold no owner; before version 4 and format 3, no answer. Every build
/// writes the newest layout and reads them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layout {
    Ownerless,
    Owned,
    Answered,
}

impl Reservation {
    /// When the book must next look at it: expiry while held, forgetting once ended.
    pub fn deadline(&self, retention_ms: i64) -> Option<UnixMillis> {
        match self.state {
            State::Held => Some(self.expires_at_ms),
            State::Committed => None,
            _ => self
                .ended_at_ms
                .map(|ended| ended.saturating_add(retention_ms)),
        }
    }

    /// The (node, day) slots of daily capacity the order takes: once committed, also after it
    /// shipped; none once released.
    pub fn shipping_days(&self) -> Vec<(NodeIdx, Day)> {
        if !matches!(self.state, State::Committed | State::Shipped) {
            return Vec::new();
        }
        let mut slots: Vec<(NodeIdx, Day)> = self
            .lines
            .iter()
            .flat_map(|line| line.allocations.iter().map(move |a| (a.node, line.need)))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        slots
    }

    pub fn encode(&self, w: &mut Writer) {
        w.str(&self.id);
        w.var(self.version);
        w.u8(self.state as u8);
        w.ivar(self.expires_at_ms);
        w.str(&self.order_id);
        w.var(self.fingerprint);
        w.ivar(self.ended_at_ms.unwrap_or(i64::MIN));
        w.len(self.lines.len());
        for line in &self.lines {
            w.str(&line.sku);
            match line.scope {
                Scope::Node(node) => {
                    w.u8(0);
                    w.var(u64::from(node));
                }
                Scope::Pool(Pool::Group(group)) => {
                    w.u8(1);
                    w.var(u64::from(group));
                }
                Scope::Pool(Pool::Network) => w.u8(2),
            }
            w.ivar(line.quantity);
            w.ivar(i64::from(line.need.0));
            w.len(line.allocations.len());
            for allocation in &line.allocations {
                w.var(u64::from(allocation.node));
                w.ivar(allocation.quantity);
                w.ivar(allocation.shipped);
            }
        }
        w.str(&self.owner);
        w.bytes(&self.answer);
    }

    /// Reads a reservation [`Reservation::encode`] wrote.
    pub fn decode(r: &mut Reader<'_>) -> Decoded<Reservation> {
        Self::decode_layout(r, Layout::Answered)
    }

    /// Reads a reservation stored in `layout`. Quantities no request can make are refused: a
    /// line's or an allocation's beyond `0..=MAX_QUANTITY`, or more shipped than allocated
    /// (the audit adds them up, and sums of such values overflow).
    pub fn decode_layout(r: &mut Reader<'_>, layout: Layout) -> Decoded<Reservation> {
        let index = |value: u64| u32::try_from(value).map_err(|_| CodecError("index"));
        let quantity = |r: &mut Reader<'_>| {
            let quantity = r.ivar()?;
            if !(0..=MAX_QUANTITY).contains(&quantity) {
                return Err(CodecError("quantity beyond the limit"));
            }
            Ok(quantity)
        };
        let id = r.str()?.to_owned();
        let version = r.var()?;
        let state = *State::ALL
            .get(usize::from(r.u8()?))
            .ok_or(CodecError("state"))?;
        let expires_at_ms = r.ivar()?;
        let order_id = r.str()?.to_owned();
        let fingerprint = r.var()?;
        let ended_at_ms = Some(r.ivar()?).filter(|ms| *ms != i64::MIN);
        let mut lines = Vec::new();
        for _ in 0..r.len()? {
            let sku = r.str()?.to_owned();
            let scope = match r.u8()? {
                0 => Scope::Node(index(r.var()?)?),
                1 => Scope::Pool(Pool::Group(index(r.var()?)?)),
                2 => Scope::Pool(Pool::Network),
                _ => return Err(CodecError("scope")),
            };
            let line_quantity = quantity(r)?;
            let need = Day(i32::try_from(r.ivar()?).map_err(|_| CodecError("day"))?);
            let allocations = (0..r.len()?)
                .map(|_| {
                    let allocation = Allocation {
                        node: index(r.var()?)?,
                        quantity: quantity(r)?,
                        shipped: quantity(r)?,
                    };
                    if allocation.shipped > allocation.quantity {
                        return Err(CodecError("more shipped than allocated"));
                    }
                    Ok(allocation)
                })
                .collect::<Decoded<_>>()?;
            lines.push(Line {
                sku,
                scope,
                quantity: line_quantity,
                need,
                allocations,
            });
        }
        let owner = match layout {
            Layout::Ownerless => String::new(),
            Layout::Owned | Layout::Answered => r.str()?.to_owned(),
        };
        let answer = match layout {
            Layout::Ownerless | Layout::Owned => Vec::new(),
            Layout::Answered => r.bytes()?.to_vec(),
        };
        Ok(Reservation {
            id,
            version,
            state,
            lines,
            expires_at_ms,
            order_id,
            fingerprint,
            ended_at_ms,
            owner,
            answer,
        })
    }
}

/// One shard of the book.
#[derive(Debug, Default)]
struct Shard {
    by_id: HashMap<String, Reservation>,
    /// Per SKU, the ids of this shard's live (held or committed) reservations with a line of
    /// it, so that the holds on one SKU are found without reading the whole book.
    live_by_sku: HashMap<Box<str>, BTreeSet<String>>,
    /// Per id, the number of the mutation that stored its current version (see
    /// [`BookShard::put_by`]); not kept across restarts, where everything loaded is durable.
    changed_by: HashMap<String, u64>,
    /// How many of `by_id` are in each state, by `State as usize`: counted as they change,
    /// so the stats never read the book.
    counts: Counts,
}

/// Reservations per state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts([u64; State::ALL.len()]);

impl Counts {
    pub fn of(&self, state: State) -> u64 {
        self.0[state as usize]
    }

    /// Released, expired and shipped: ended, remembered until their retention passes.
    pub fn ended(&self) -> u64 {
        State::ALL
            .iter()
            .filter(|state| state.is_ended())
            .map(|&state| self.of(state))
            .sum()
    }

    fn add(&mut self, state: State) {
        self.0[state as usize] += 1;
    }

    fn remove(&mut self, state: State) {
        self.0[state as usize] -= 1;
    }
}

impl Shard {
    /// Moves `id` in the per-SKU index from the SKUs its stored version holds to those
    /// `after` holds (none: it is being forgotten).
    fn relink(&mut self, id: &str, after: Option<&Reservation>) {
        let old = self.by_id.get(id).map(live_skus).unwrap_or_default();
        let new = after.map(live_skus).unwrap_or_default();
        for sku in old.iter().filter(|sku| !new.contains(sku)) {
            if let Some(ids) = self.live_by_sku.get_mut(*sku) {
                ids.remove(id);
                if ids.is_empty() {
                    self.live_by_sku.remove(*sku);
                }
            }
        }
        for sku in new.iter().filter(|sku| !old.contains(sku)) {
            self.live_by_sku
                .entry((*sku).into())
                .or_default()
                .insert(id.to_owned());
        }
    }
}

/// The SKUs a reservation holds or has allocated; none once it has ended.
fn live_skus(reservation: &Reservation) -> Vec<&str> {
    if reservation.state.is_ended() {
        return Vec::new();
    }
    let mut skus: Vec<&str> = reservation.lines.iter().map(|l| l.sku.as_str()).collect();
    skus.sort_unstable();
    skus.dedup();
    skus
}

/// All reservations, sharded by id. Lock order: one book shard, then index shards (through
/// `Index::with_locked`), then the deadline and order indexes, which are leaves. A reader of
/// one SKU's reservations ([`Book::visit_live`]) takes one book shard at a time and nothing
/// else.
#[derive(Debug)]
pub struct Book {
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
    /// (deadline, id), ascending: the next expiries and forgettings without scanning the book.
    deadlines: Mutex<BTreeSet<(UnixMillis, String)>>,
    /// Order id to reservation id, for shipments.
    orders: Mutex<HashMap<String, String>>,
    /// Orders committed to ship from a node on a day, against its daily capacity.
    capacity: Mutex<HashMap<(NodeIdx, Day), u32>>,
    /// How long an ended reservation's id is remembered.
    pub retention_ms: i64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Book {
    pub fn new(shards: usize, retention_ms: i64) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            deadlines: Mutex::default(),
            orders: Mutex::default(),
            capacity: Mutex::default(),
            retention_ms,
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Locks the shard holding `id`.
    pub fn shard(&self, id: &str) -> BookShard<'_> {
        let at = (self.hasher.hash_one(id) as usize) % self.shards.len();
        BookShard {
            book: self,
            map: lock(&self.shards[at]),
        }
    }

    /// Locks shard number `at` (for snapshots and audits).
    pub fn shard_at(&self, at: usize) -> BookShard<'_> {
        BookShard {
            book: self,
            map: lock(&self.shards[at]),
        }
    }

    /// Every shard, locked in order: nothing in the book changes until they are dropped.
    pub fn lock_all(&self) -> Vec<BookShard<'_>> {
        (0..self.shards.len()).map(|at| self.shard_at(at)).collect()
    }

    /// The reservation an order was committed from.
    pub fn reservation_of(&self, order_id: &str) -> Option<String> {
        lock(&self.orders).get(order_id).cloned()
    }

    /// Orders committed to ship from `node` on `day`.
    pub fn orders_on(&self, node: NodeIdx, day: Day) -> u32 {
        lock(&self.capacity).get(&(node, day)).copied().unwrap_or(0)
    }

    /// Calls `visit` on each live reservation with a line of `sku`, one book shard at a time,
    /// until it returns `false`. What one shard holds is seen as of one instant; the shards
    /// are not locked together, so a change made meanwhile may or may not be seen.
    pub fn visit_live(&self, sku: &str, mut visit: impl FnMut(&Reservation) -> bool) {
        for shard in self.shards.iter() {
            let shard = lock(shard);
            let ids = shard.live_by_sku.get(sku).into_iter().flatten();
            for reservation in ids.filter_map(|id| shard.by_id.get(id)) {
                if !visit(reservation) {
                    return;
                }
            }
        }
    }

    /// Reservations per state, one book shard at a time (as [`Book::visit_live`], each
    /// shard as of one instant).
    pub fn counts(&self) -> Counts {
        let mut total = Counts::default();
        for shard in self.shards.iter() {
            let counts = lock(shard).counts;
            for (sum, count) in total.0.iter_mut().zip(counts.0) {
                *sum += count;
            }
        }
        total
    }

    /// Ids whose deadline is at or before `now_ms`, earliest first.
    pub fn due(&self, now_ms: UnixMillis, limit: usize) -> Vec<String> {
        lock(&self.deadlines)
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect()
    }
}

/// One locked book shard.
pub struct BookShard<'a> {
    book: &'a Book,
    map: MutexGuard<'a, Shard>,
}

impl BookShard<'_> {
    pub fn get(&self, id: &str) -> Option<&Reservation> {
        self.map.by_id.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Reservation> {
        self.map.by_id.values()
    }

    /// Stores a new version, keeping the SKU, deadline, order and capacity indexes in step;
    /// returns the version it replaced.
    pub fn put(&mut self, reservation: Reservation) -> Option<Reservation> {
        let retention = self.book.retention_ms;
        self.map.relink(&reservation.id, Some(&reservation));
        let old = self
            .map
            .by_id
            .get(&reservation.id)
            .and_then(|r| r.deadline(retention));
        let new = reservation.deadline(retention);
        if old != new {
            let mut deadlines = lock(&self.book.deadlines);
            if let Some(old) = old {
                deadlines.remove(&(old, reservation.id.clone()));
            }
            if let Some(new) = new {
                deadlines.insert((new, reservation.id.clone()));
            }
        }
        let old_order = self
            .map
            .by_id
            .get(&reservation.id)
            .map(|r| r.order_id.as_str())
            .filter(|order| !order.is_empty() && *order != reservation.order_id);
        if let Some(old_order) = old_order {
            lock(&self.book.orders).remove(old_order);
        }
        if !reservation.order_id.is_empty() {
            lock(&self.book.orders).insert(reservation.order_id.clone(), reservation.id.clone());
        }
        let before = self
            .map
            .by_id
            .get(&reservation.id)
            .map(Reservation::shipping_days)
            .unwrap_or_default();
        let after = reservation.shipping_days();
        if before != after {
            let mut capacity = lock(&self.book.capacity);
            for slot in before {
                if let Some(count) = capacity.get_mut(&slot) {
                    *count = count.saturating_sub(1);
                }
            }
            for slot in after {
                *capacity.entry(slot).or_default() += 1;
            }
        }
        self.map.counts.add(reservation.state);
        let replaced = self.map.by_id.insert(reservation.id.clone(), reservation);
        if let Some(replaced) = &replaced {
            self.map.counts.remove(replaced.state);
        }
        replaced
    }

    /// [`BookShard::put`] for the mutation numbered `ticket` (`None`: one the engine does not
    /// journal), remembered until the next change: while that mutation is not durable, the
    /// version may still be taken back, and nothing may be answered on it.
    pub fn put_by(&mut self, reservation: Reservation, ticket: Option<u64>) -> Option<Reservation> {
        match ticket {
            Some(ticket) => self.map.changed_by.insert(reservation.id.clone(), ticket),
            None => self.map.changed_by.remove(&reservation.id),
        };
        self.put(reservation)
    }

    /// The number of the mutation that stored `id`'s current version, if one numbered it.
    pub fn changed_by(&self, id: &str) -> Option<u64> {
        self.map.changed_by.get(id).copied()
    }

    /// Forgets a reservation: an ended one whose retention has passed, or a new hold whose
    /// creation is taken back (a hold counts no orders per day).
    pub fn forget(&mut self, id: &str) {
        self.map.relink(id, None);
        self.map.changed_by.remove(id);
        if let Some(reservation) = self.map.by_id.remove(id) {
            self.map.counts.remove(reservation.state);
            if let Some(deadline) = reservation.deadline(self.book.retention_ms) {
                lock(&self.book.deadlines).remove(&(deadline, reservation.id.clone()));
            }
            if !reservation.order_id.is_empty() {
                lock(&self.book.orders).remove(&reservation.order_id);
            }
        }
    }
}
