//! The network: nodes, groups and sources, with the lookups the hot paths need precomputed.
//!
//! A [`Network`] is immutable; an upsert builds a new one and the engine swaps it in, so readers
//! never wait for configuration changes. Node indices are stable: a node keeps its index when it
//! is replaced, and nodes are never removed, so positions can refer to nodes by index.

mod codec;
mod items;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use chrono_tz::Tz;

use crate::clock::UnixMillis;
use crate::domain::{
    echo, id_problem, is_country_code, Day, Node, NodeGroup, NodeKind, ServiceLevel, Source,
    SupplyType,
};
use crate::error::{Error, FieldViolation, Result};
use crate::normalize::{Normalizer, SourceMapping};
use crate::rate_card::ItemAttributes;

/// Index of a node in the network; stable for the life of the process.
pub type NodeIdx = u32;

/// Longest id (node, group, source) accepted.
pub const MAX_ID_LEN: usize = 64;

/// Most processing days a node may take: beyond it a promise would search years ahead.
pub const MAX_PROCESSING_DAYS: u32 = 60;

/// Most transit days of a distance band.
pub const MAX_TRANSIT_DAYS: u32 = 60;

/// Highest cost (per package, or per kilometre) a service level may state.
pub const MAX_COST: f64 = 1_000_000.0;

/// The sequence state of one source's feed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeqState {
    /// Highest batch sequence applied.
    pub last_seq: u64,
    /// Sequences applied in memory whose journal write is not confirmed yet.
    pub pending: BTreeSet<u64>,
    /// Broker stream sequence of the last batch applied from a broker feed (0: none), the
    /// position its consumer resumes after.
    pub broker_seq: u64,
}

impl SeqState {
    /// Highest sequence at or below which every applied batch survives a crash of the process.
    pub fn durable_seq(&self) -> u64 {
        self.pending
            .first()
            .map_or(self.last_seq, |first| first - 1)
    }
}

/// Runtime state of a source's feed, shared across network versions so that replacing a
/// source's definition keeps its sequence and freshness.
#[derive(Debug)]
pub struct FeedState {
    /// Held while a batch is checked and applied, which serialises a source's batches.
    pub seq: Mutex<SeqState>,
    last_heard_ms: AtomicI64,
}

impl FeedState {
    fn new(now_ms: UnixMillis) -> Self {
        Self {
            seq: Mutex::new(SeqState::default()),
            last_heard_ms: AtomicI64::new(now_ms),
        }
    }

    pub fn heard(&self, now_ms: UnixMillis) {
        self.last_heard_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub fn last_heard_ms(&self) -> UnixMillis {
        self.last_heard_ms.load(Ordering::Relaxed)
    }

    /// `(last_seq, durable_seq)`. A poisoned lock still holds consistent numbers (nothing
    /// panics between its writes), so it is read through.
    pub fn seqs(&self) -> (u64, u64) {
        let state = self
            .seq
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (state.last_seq, state.durable_seq())
    }
}

/// A source with its ownership resolved to node indices.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    pub def: Source,
    /// Sorted owned node indices; `None` owns every node.
    owned_nodes: Option<Vec<NodeIdx>>,
    /// Bit `SupplyType::index()` is set for each owned type.
    owned_types: u8,
    pub feed: Arc<FeedState>,
}

impl SourceEntry {
    pub fn owns(&self, node: NodeIdx, supply_type: SupplyType) -> bool {
        self.owned_types & (1 << supply_type.index()) != 0
            && self
                .owned_nodes
                .as_ref()
                .is_none_or(|nodes| nodes.binary_search(&node).is_ok())
    }

    fn owns_any_at(&self, node: NodeIdx) -> bool {
        self.owned_nodes
            .as_ref()
            .is_none_or(|nodes| nodes.binary_search(&node).is_ok())
    }

    pub fn is_stale(&self, now_ms: UnixMillis) -> bool {
        self.def
            .stale_after_ms
            .is_some_and(|limit| now_ms.saturating_sub(self.feed.last_heard_ms()) > limit)
    }
}

/// Which nodes are degraded because a source owning supply there is stale.
#[derive(Debug, Clone, Default)]
pub struct Degraded(Option<Vec<bool>>);

impl Degraded {
    pub fn contains(&self, node: NodeIdx) -> bool {
        self.0
            .as_ref()
            .is_some_and(|nodes| nodes.get(node as usize).copied().unwrap_or(false))
    }

    pub fn count(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |nodes| nodes.iter().filter(|d| **d).count())
    }
}

/// One immutable version of the network configuration.
#[derive(Debug, Default)]
pub struct Network {
    /// Counts changes; journaled network versions replay in this order.
    version: u64,
    nodes: Vec<Node>,
    node_by_id: HashMap<String, NodeIdx>,
    groups: Vec<NodeGroup>,
    group_by_id: HashMap<String, usize>,
    /// Member node indices per group, ascending.
    group_members: Vec<Vec<NodeIdx>>,
    sources: Vec<SourceEntry>,
    source_by_id: HashMap<String, usize>,
    /// Per node, the sources owning any supply there.
    node_sources: Vec<Vec<usize>>,
    /// Distinct time zones, and each node's index into them, so "today" is computed once per
    /// zone rather than once per node.
    zones: Vec<Tz>,
    node_zone: Vec<u16>,
    /// Carrier service levels, by name.
    service_levels: Vec<ServiceLevel>,
    /// (country, postal code) to (lat, lon), for destinations given by postal code.
    postal_codes: HashMap<(String, String), (f64, f64)>,
    /// Each source's codes and units, by source id (ordered, so it encodes one way).
    mappings: BTreeMap<String, Arc<Normalizer>>,
    /// What each SKU weighs and measures, by SKU (ordered, so it encodes one way).
    items: BTreeMap<String, ItemAttributes>,
}

impl Network {
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, idx: NodeIdx) -> &Node {
        &self.nodes[idx as usize]
    }

    pub fn node_idx(&self, id: &str) -> Option<NodeIdx> {
        self.node_by_id.get(id).copied()
    }

    pub fn groups(&self) -> &[NodeGroup] {
        &self.groups
    }

    /// A group's index, stable while the process runs and across recovery.
    pub fn group_idx(&self, id: &str) -> Option<u32> {
        self.group_by_id.get(id).map(|&g| g as u32)
    }

    pub fn group(&self, idx: u32) -> Option<&NodeGroup> {
        self.groups.get(idx as usize)
    }

    pub fn is_member(&self, group: u32, node: NodeIdx) -> bool {
        self.group_members
            .get(group as usize)
            .is_some_and(|members| members.binary_search(&node).is_ok())
    }

    pub fn group_members(&self, id: &str) -> Option<&[NodeIdx]> {
        self.group_by_id
            .get(id)
            .map(|&g| self.group_members[g].as_slice())
    }

    pub fn sources(&self) -> &[SourceEntry] {
        &self.sources
    }

    pub fn source(&self, id: &str) -> Option<&SourceEntry> {
        self.source_by_id.get(id).map(|&s| &self.sources[s])
    }

    /// The sources owning any supply at `node`: the feeds whose staleness degrades it.
    pub fn owners(&self, node: NodeIdx) -> impl Iterator<Item = &SourceEntry> {
        let owners = self.node_sources.get(node as usize).into_iter().flatten();
        owners.map(|&s| &self.sources[s])
    }

    /// Today in each of the network's time zones, indexed as [`Network::zone_of`] answers;
    /// from the thread's cache while `now_ms` is in the span those days all hold for.
    pub fn today_per_zone(&self, now_ms: UnixMillis) -> Arc<[Day]> {
        days_in(&self.zones, now_ms)
    }

    /// The index of the node's time zone among the network's.
    pub fn zone_of(&self, node: NodeIdx) -> usize {
        usize::from(self.node_zone[node as usize])
    }

    /// The nodes degraded at `now_ms`. Cheap when no source is stale, the usual case.
    pub fn degraded(&self, now_ms: UnixMillis) -> Degraded {
        if !self.sources.iter().any(|s| s.is_stale(now_ms)) {
            return Degraded(None);
        }
        let stale: Vec<bool> = self.sources.iter().map(|s| s.is_stale(now_ms)).collect();
        Degraded(Some(
            self.node_sources
                .iter()
                .map(|owners| owners.iter().any(|&s| stale[s]))
                .collect(),
        ))
    }

    /// A new network with `nodes` created or replaced by id.
    pub fn with_nodes(&self, nodes: Vec<Node>) -> Result<Network> {
        let mut violations = Vec::new();
        check_unique(
            "nodes",
            "id",
            nodes.iter().map(|n| n.id.as_str()),
            &mut violations,
        );
        let mut all = self.nodes.clone();
        let mut index = self.node_by_id.clone();
        let mut upserted = Vec::with_capacity(nodes.len());
        for (i, node) in nodes.into_iter().enumerate() {
            check_node(i, &node, &self.group_by_id, &mut violations);
            let idx = *index.entry(node.id.clone()).or_insert(all.len() as NodeIdx);
            upserted.push(idx);
            match all.get_mut(idx as usize) {
                Some(existing) => *existing = node,
                None => all.push(node),
            }
        }
        for (i, &idx) in upserted.iter().enumerate() {
            check_transfers(i, &all[idx as usize], &all, &index, &mut violations);
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let sources = self.sources.iter().map(|s| (s.def.clone(), s.feed.clone()));
        Network::build(self.version + 1, all, self.groups.clone(), sources)
            .map(|n| n.carrying(self))
    }

    /// A new network with `groups` created or replaced by id.
    pub fn with_groups(&self, groups: Vec<NodeGroup>) -> Result<Network> {
        let mut violations = Vec::new();
        check_unique(
            "groups",
            "id",
            groups.iter().map(|g| g.id.as_str()),
            &mut violations,
        );
        let mut all = self.groups.clone();
        for (i, group) in groups.into_iter().enumerate() {
            check_id(&format!("groups[{i}].id"), &group.id, &mut violations);
            match all.iter_mut().find(|g| g.id == group.id) {
                Some(existing) => *existing = group,
                None => all.push(group),
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let sources = self.sources.iter().map(|s| (s.def.clone(), s.feed.clone()));
        Network::build(self.version + 1, self.nodes.clone(), all, sources).map(|n| n.carrying(self))
    }

    /// A new network with `sources` created or replaced by id; a replaced source keeps its feed
    /// state (sequence, last heard), a new one counts as heard at `now_ms`.
    pub fn with_sources(&self, sources: Vec<Source>, now_ms: UnixMillis) -> Result<Network> {
        let mut violations = Vec::new();
        let mut all: Vec<(Source, Arc<FeedState>)> = self
            .sources
            .iter()
            .map(|s| (s.def.clone(), s.feed.clone()))
            .collect();
        check_unique(
            "sources",
            "id",
            sources.iter().map(|s| s.id.as_str()),
            &mut violations,
        );
        for (i, source) in sources.into_iter().enumerate() {
            self.check_source(i, &source, &mut violations);
            match all.iter_mut().find(|(s, _)| s.id == source.id) {
                Some(existing) => existing.0 = source,
                None => all.push((source, Arc::new(FeedState::new(now_ms)))),
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        Network::build(
            self.version + 1,
            self.nodes.clone(),
            self.groups.clone(),
            all,
        )
        .map(|n| n.carrying(self))
    }

    /// Takes the carrier, postal and normalization configuration of `from`.
    fn carrying(mut self, from: &Network) -> Network {
        self.service_levels = from.service_levels.clone();
        self.postal_codes = from.postal_codes.clone();
        self.mappings = from.mappings.clone();
        self.items = from.items.clone();
        self
    }

    /// How `source_id` names items, locations and units, if it has tables.
    pub fn mapping(&self, source_id: &str) -> Option<&Normalizer> {
        self.mappings.get(source_id).map(|m| &**m)
    }

    pub fn mappings(&self) -> impl Iterator<Item = &Normalizer> {
        self.mappings.values().map(|m| &**m)
    }

    /// A new network with each source's tables replaced whole by `mappings`; each names a
    /// known source, and each location code a known node.
    pub fn with_mappings(&self, mappings: Vec<SourceMapping>) -> Result<Network> {
        let mut violations = Vec::new();
        check_unique(
            "mappings",
            "source_id",
            mappings.iter().map(|m| m.source_id.as_str()),
            &mut violations,
        );
        for (i, mapping) in mappings.iter().enumerate() {
            let at = format!("mappings[{i}]");
            if self.source(&mapping.source_id).is_none() {
                violations.push(FieldViolation::new(
                    format!("{at}.source_id"),
                    "unknown source",
                ));
            }
            for (j, (_, node)) in mapping.locations.iter().enumerate() {
                if self.node_idx(node).is_none() {
                    let field = format!("{at}.locations[{j}].node_id");
                    violations.push(FieldViolation::new(field, format!("unknown node {node:?}")));
                }
            }
            mapping.check(&at, &mut violations);
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        self.with_mappings_as_stored(mappings)
    }

    /// Installs mappings without checking them, as a stored network is read back.
    fn with_mappings_as_stored(&self, mappings: Vec<SourceMapping>) -> Result<Network> {
        let mut next = self.rebuilt()?;
        for mapping in mappings {
            let compiled = Arc::new(mapping.compile());
            next.mappings.insert(mapping.source_id, compiled);
        }
        Ok(next)
    }

    pub fn service_levels(&self) -> &[ServiceLevel] {
        &self.service_levels
    }

    /// A destination's coordinates by postal code.
    pub fn locate(&self, country: &str, postal_code: &str) -> Option<(f64, f64)> {
        self.postal_codes
            .get(&(country.to_owned(), postal_code.to_owned()))
            .copied()
    }

    /// A new network with `levels` created or replaced by name.
    pub fn with_service_levels(&self, levels: Vec<ServiceLevel>) -> Result<Network> {
        let mut violations = Vec::new();
        let names = levels.iter().map(|l| l.name.as_str());
        check_unique("service_levels", "name", names, &mut violations);
        let mut all = self.service_levels.clone();
        for (i, level) in levels.into_iter().enumerate() {
            check_level(i, &level, &mut violations);
            match all.iter_mut().find(|l| l.name == level.name) {
                Some(existing) => *existing = level,
                None => all.push(level),
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let mut next = self.rebuilt()?;
        next.service_levels = all;
        Ok(next)
    }

    /// A new network with postal code locations added or replaced; each code must be named and
    /// its coordinates on the globe, whichever edge sends it.
    pub fn with_postal_codes(&self, codes: Vec<((String, String), (f64, f64))>) -> Result<Network> {
        let mut violations = Vec::new();
        for (i, ((_, code), (lat, lon))) in codes.iter().enumerate() {
            if code.is_empty() {
                let field = format!("postal_codes[{i}].postal_code");
                violations.push(FieldViolation::new(field, "must not be empty"));
            }
            if !(-90.0..=90.0).contains(lat) || !(-180.0..=180.0).contains(lon) {
                let problem = "coordinates must be within [-90, 90] and [-180, 180]";
                violations.push(FieldViolation::new(
                    format!("postal_codes[{i}].lat"),
                    problem,
                ));
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        self.with_postal_codes_as_stored(codes)
    }

    /// Adds postal codes without checking them: a stored network is read back as it was
    /// written, and versions before the check above took any coordinates from a network file.
    fn with_postal_codes_as_stored(
        &self,
        codes: Vec<((String, String), (f64, f64))>,
    ) -> Result<Network> {
        let mut next = self.rebuilt()?;
        next.postal_codes.extend(codes);
        Ok(next)
    }

    /// The same configuration as a new version.
    fn rebuilt(&self) -> Result<Network> {
        let sources = self.sources.iter().map(|s| (s.def.clone(), s.feed.clone()));
        Network::build(
            self.version + 1,
            self.nodes.clone(),
            self.groups.clone(),
            sources,
        )
        .map(|n| n.carrying(self))
    }

    fn check_source(&self, i: usize, source: &Source, violations: &mut Vec<FieldViolation>) {
        check_id(&format!("sources[{i}].id"), &source.id, violations);
        for (j, node_id) in source.owned_node_ids.iter().enumerate() {
            if !self.node_by_id.contains_key(node_id) {
                violations.push(FieldViolation::new(
                    format!("sources[{i}].owned_node_ids[{j}]"),
                    format!("unknown node {node_id:?}"),
                ));
            }
        }
        if source.owned_supply_types.is_empty() {
            violations.push(FieldViolation::new(
                format!("sources[{i}].owned_supply_types"),
                "a source must own at least one supply type",
            ));
        }
    }

    fn build(
        version: u64,
        nodes: Vec<Node>,
        groups: Vec<NodeGroup>,
        sources: impl IntoIterator<Item = (Source, Arc<FeedState>)>,
    ) -> Result<Network> {
        let node_by_id: HashMap<String, NodeIdx> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i as NodeIdx))
            .collect();
        let group_by_id: HashMap<String, usize> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.id.clone(), i))
            .collect();
        let mut group_members = vec![Vec::new(); groups.len()];
        let mut zones: Vec<Tz> = Vec::new();
        let mut node_zone = Vec::with_capacity(nodes.len());
        for (idx, node) in nodes.iter().enumerate() {
            for group in &node.group_ids {
                if let Some(&g) = group_by_id.get(group) {
                    group_members[g].push(idx as NodeIdx);
                }
            }
            let zone = match zones.iter().position(|z| *z == node.time_zone) {
                Some(z) => z,
                None => {
                    zones.push(node.time_zone);
                    zones.len() - 1
                }
            };
            node_zone.push(zone as u16);
        }
        let sources: Vec<SourceEntry> = sources
            .into_iter()
            .map(|(def, feed)| resolve_source(def, feed, &node_by_id))
            .collect();
        let source_by_id = sources
            .iter()
            .enumerate()
            .map(|(i, s)| (s.def.id.clone(), i))
            .collect();
        let node_sources = (0..nodes.len() as NodeIdx)
            .map(|node| {
                (0..sources.len())
                    .filter(|&s| sources[s].owns_any_at(node))
                    .collect()
            })
            .collect();
        Ok(Network {
            version,
            nodes,
            node_by_id,
            groups,
            group_by_id,
            group_members,
            sources,
            source_by_id,
            node_sources,
            zones,
            node_zone,
            service_levels: Vec::new(),
            postal_codes: HashMap::new(),
            mappings: BTreeMap::new(),
            items: BTreeMap::new(),
        })
    }
}

/// The current day in each of a network's zones and the UTC span in which they all hold, as
/// this thread last computed them.
struct ZoneDays {
    zones: Vec<Tz>,
    from: UnixMillis,
    until: UnixMillis,
    days: Arc<[Day]>,
}

impl ZoneDays {
    fn holds(&self, zones: &[Tz], now_ms: UnixMillis) -> bool {
        (self.from..self.until).contains(&now_ms) && self.zones == zones
    }
}

thread_local! {
    /// Converting an instant to a local date walks the zone's transition table; a day lasts
    /// 23 to 25 hours, so each thread remembers the days of the zones it last answered for
    /// (one network's, in a running service).
    static ZONE_DAYS: std::cell::RefCell<Option<ZoneDays>> = const { std::cell::RefCell::new(None) };
}

/// Today in each of `zones` at `now_ms`, from the thread's cache while it holds.
fn days_in(zones: &[Tz], now_ms: UnixMillis) -> Arc<[Day]> {
    ZONE_DAYS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(known) = cache.as_ref().filter(|known| known.holds(zones, now_ms)) {
            return Arc::clone(&known.days);
        }
        let mut span = Some((UnixMillis::MIN, UnixMillis::MAX));
        let days: Arc<[Day]> = zones
            .iter()
            .map(|&zone| {
                let day = Day::in_zone(zone, now_ms);
                span = span
                    .zip(day_span(zone, day))
                    .map(|((from, until), (start, end))| (from.max(start), until.min(end)));
                day
            })
            .collect();
        *cache = span.map(|(from, until)| ZoneDays {
            zones: zones.to_vec(),
            from,
            until,
            days: Arc::clone(&days),
        });
        days
    })
}

/// The UTC milliseconds at which local `day` starts and the next one starts in `zone`; `None`
/// where a midnight does not exist or is ambiguous (then nothing is cached).
fn day_span(zone: Tz, day: Day) -> Option<(UnixMillis, UnixMillis)> {
    use chrono::TimeZone;
    let midnight = |d: Day| -> Option<UnixMillis> {
        let local = d.to_date()?.and_hms_opt(0, 0, 0)?;
        Some(
            zone.from_local_datetime(&local)
                .single()?
                .timestamp_millis(),
        )
    };
    Some((midnight(day)?, midnight(day.plus(1))?))
}

fn resolve_source(
    def: Source,
    feed: Arc<FeedState>,
    node_by_id: &HashMap<String, NodeIdx>,
) -> SourceEntry {
    let owned_nodes = (!def.owned_node_ids.is_empty()).then(|| {
        let mut nodes: Vec<NodeIdx> = def
            .owned_node_ids
            .iter()
            .filter_map(|id| node_by_id.get(id).copied())
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    });
    let owned_types = def
        .owned_supply_types
        .iter()
        .fold(0u8, |mask, t| mask | (1 << t.index()));
    SourceEntry {
        def,
        owned_nodes,
        owned_types,
        feed,
    }
}

fn check_id(field: &str, id: &str, violations: &mut Vec<FieldViolation>) {
    if let Some(problem) = id_problem(id, MAX_ID_LEN) {
        violations.push(FieldViolation::new(field, problem));
    }
}

/// Refuses a request that names one id twice: which of the two should win is not the
/// service's guess to make.
fn check_unique<'a>(
    list: &str,
    key: &str,
    ids: impl Iterator<Item = &'a str>,
    violations: &mut Vec<FieldViolation>,
) {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, id) in ids.enumerate() {
        if let Some(earlier) = first.insert(id, i) {
            let problem = format!("{} appears twice, at {list}[{earlier}] too", echo(id));
            violations.push(FieldViolation::new(format!("{list}[{i}].{key}"), problem));
        }
    }
}

/// A service level's distance bands, costs and calendar.
fn check_level(i: usize, level: &ServiceLevel, violations: &mut Vec<FieldViolation>) {
    let field = |name: &str| format!("service_levels[{i}].{name}");
    check_id(&field("name"), &level.name, violations);
    let ascending = level.transit.windows(2).all(|w| w[0].0 < w[1].0);
    if level.transit.is_empty() || !ascending {
        let problem = "needs distance bands in ascending order of distance";
        violations.push(FieldViolation::new(field("transit"), problem));
    }
    for (j, &(max_km, days)) in level.transit.iter().enumerate() {
        if !(max_km.is_finite() && max_km > 0.0) {
            let problem = "a band's distance must be a positive number of kilometres";
            violations.push(FieldViolation::new(
                field(&format!("transit[{j}].max_km")),
                problem,
            ));
        }
        if days > MAX_TRANSIT_DAYS {
            let problem = format!("at most {MAX_TRANSIT_DAYS} transit days");
            violations.push(FieldViolation::new(
                field(&format!("transit[{j}].days")),
                problem,
            ));
        }
    }
    for (name, cost) in [
        ("base_cost", level.base_cost),
        ("cost_per_km", level.cost_per_km),
    ] {
        if !(cost.is_finite() && (0.0..=MAX_COST).contains(&cost)) {
            let problem = format!("must be a number from 0 to {MAX_COST}");
            violations.push(FieldViolation::new(field(name), problem));
        }
    }
    if level.calendar.open_weekdays == 0 {
        let problem = "the carrier must move on at least one weekday";
        violations.push(FieldViolation::new(field("pickup_days"), problem));
    }
    if let Some(card) = &level.rate_card {
        card.check(&field("rate_card"), violations);
    }
}

fn check_node(
    i: usize,
    node: &Node,
    groups: &HashMap<String, usize>,
    violations: &mut Vec<FieldViolation>,
) {
    check_id(&format!("nodes[{i}].id"), &node.id, violations);
    if !(-90.0..=90.0).contains(&node.lat) {
        violations.push(FieldViolation::new(
            format!("nodes[{i}].lat"),
            "latitude must be within [-90, 90]",
        ));
    }
    if !(-180.0..=180.0).contains(&node.lon) {
        violations.push(FieldViolation::new(
            format!("nodes[{i}].lon"),
            "longitude must be within [-180, 180]",
        ));
    }
    if node.safety_stock < 0 {
        violations.push(FieldViolation::new(
            format!("nodes[{i}].safety_stock"),
            "must not be negative",
        ));
    }
    if !node.country.is_empty() && !is_country_code(&node.country) {
        violations.push(FieldViolation::new(
            format!("nodes[{i}].country"),
            "an ISO 3166-1 alpha-2 code, such as US",
        ));
    }
    if node.pickup.is_some() && node.kind != NodeKind::Store {
        let problem = "only a STORE offers pickup";
        violations.push(FieldViolation::new(format!("nodes[{i}].pickup"), problem));
    }
    if node.fulfilment.processing_days > MAX_PROCESSING_DAYS {
        violations.push(FieldViolation::new(
            format!("nodes[{i}].processing_days"),
            format!("at most {MAX_PROCESSING_DAYS} days"),
        ));
    }
    for (j, group) in node.group_ids.iter().enumerate() {
        if !groups.contains_key(group) {
            violations.push(FieldViolation::new(
                format!("nodes[{i}].group_ids[{j}]"),
                format!("unknown group {group:?}"),
            ));
        }
    }
}

/// Each node transferring to store `node` (upserted `i`-th) must be a known node that is not
/// a store: transfers come from where stock ships.
fn check_transfers(
    i: usize,
    node: &Node,
    nodes: &[Node],
    index: &HashMap<String, NodeIdx>,
    violations: &mut Vec<FieldViolation>,
) {
    let transfers = node.pickup.iter().flat_map(|p| p.transfers.iter());
    for (j, (from, _)) in transfers.enumerate() {
        let field = format!("nodes[{i}].pickup.transfers[{j}].from_node_id");
        match index.get(from).map(|&idx| nodes[idx as usize].kind) {
            None => violations.push(FieldViolation::new(
                field,
                format!("unknown node {}", echo(from)),
            )),
            Some(NodeKind::Store) => violations.push(FieldViolation::new(
                field,
                "a store does not transfer to a store",
            )),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The per-thread cache of the zones' days answers exactly as converting the instant,
        /// across DST changes, half-hour zones, clocks moving backwards and two networks'
        /// zones asked in turn.
        #[test]
        fn cached_days_match_direct_conversion(instants in prop::collection::vec(1_700_000_000_000i64..1_900_000_000_000, 1..50)) {
            let zones = [
                chrono_tz::America::New_York,
                chrono_tz::America::Los_Angeles,
                chrono_tz::America::Phoenix,
                chrono_tz::Australia::Lord_Howe,
                chrono_tz::America::Sao_Paulo,
                chrono_tz::UTC,
            ];
            let direct = |zones: &[Tz], now_ms| -> Vec<Day> {
                zones.iter().map(|&zone| Day::in_zone(zone, now_ms)).collect()
            };
            for now_ms in instants {
                for other in [&zones[..3], &zones[3..]] {
                    prop_assert_eq!(&days_in(other, now_ms)[..], direct(other, now_ms));
                }
                for zone in zones {
                    // Around the start of the zone's next local day as well.
                    let next = Day::in_zone(zone, now_ms).plus(1);
                    if let Some((start, _)) = day_span(zone, next) {
                        for at in [start - 1, start] {
                            prop_assert_eq!(&days_in(&zones, at)[..], direct(&zones, at));
                        }
                    }
                }
            }
        }
    }
}
