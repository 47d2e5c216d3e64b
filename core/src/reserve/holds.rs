//! The stock side of reservations: checking lines against ATP and pooled coverage on copies,
//! then changing the locked positions. Pure functions over one `Locked` set of shards.

use std::collections::BTreeMap;

use crate::domain::Qty;
use crate::error::{Error, Result, Shortfall};
use crate::index::{add_pool_hold, Effects, Locked, Pool, PoolHold, Position};
use crate::network::NodeIdx;
use crate::reservation::{Allocation, Line, Scope};
use crate::view::AtpView;

pub(super) fn skus(lines: &[Line]) -> impl Iterator<Item = &str> {
    lines.iter().map(|line| line.sku.as_str())
}

/// Lines grouped by SKU.
fn by_sku(lines: &[Line]) -> BTreeMap<&str, Vec<&Line>> {
    let mut grouped: BTreeMap<&str, Vec<&Line>> = BTreeMap::new();
    for line in lines {
        grouped.entry(&line.sku).or_default().push(line);
    }
    grouped
}

fn subject(view: &AtpView<'_, '_>, line: &Line) -> String {
    let place = match line.scope {
        Scope::Node(node) => view.network.node(node).id.clone(),
        Scope::Pool(Pool::Group(group)) => view
            .network
            .group(group)
            .map_or_else(String::new, |g| g.id.clone()),
        Scope::Pool(Pool::Network) => "network".to_owned(),
    };
    format!("{}@{place}", line.sku)
}

/// Checks, on copies, that replacing the holds of `old` lines by `new` ones keeps every node's
/// ATP non-negative on each line's day and every pooled hold covered.
pub(super) fn check_holds(
    locked: &Locked<'_>,
    view: &AtpView<'_, '_>,
    old: &[Line],
    new: &[Line],
) -> Result<()> {
    let mut shortfalls = Vec::new();
    let old_by_sku = by_sku(old);
    for (sku, lines) in by_sku(new) {
        let (mut positions, mut pools) = copies(locked, sku);
        for line in old_by_sku.get(sku).into_iter().flatten() {
            hold_on_copy(&mut positions, &mut pools, line, -1);
        }
        let (before, pools_before) = (positions.clone(), pools.clone());
        let mut short = false;
        for line in &lines {
            if let Scope::Node(node) = line.scope {
                let at = slot(&mut positions, node);
                if view.atp_on(&positions[at], line.need) < line.quantity {
                    short = true;
                }
            }
            hold_on_copy(&mut positions, &mut pools, line, 1);
        }
        if short || !view.coverable(&positions, &pools) {
            shortfalls.extend(lines.into_iter().map(|line| Shortfall {
                subject: subject(view, line),
                requested: line.quantity,
                available: headroom(view, &before, &pools_before, line),
            }));
        }
    }
    if shortfalls.is_empty() {
        Ok(())
    } else {
        Err(Error::InsufficientStock(shortfalls))
    }
}

/// Copies of a SKU's positions and pooled holds, to try changes on.
fn copies(locked: &Locked<'_>, sku: &str) -> (Vec<Position>, Vec<PoolHold>) {
    let entry = locked.get(sku);
    (
        entry.map_or_else(Vec::new, |e| e.positions().to_vec()),
        entry.map_or_else(Vec::new, |e| e.pools().to_vec()),
    )
}

/// How much of a line's scope could still be held, given positions and pools without it.
fn headroom(
    view: &AtpView<'_, '_>,
    positions: &[Position],
    pools: &[PoolHold],
    line: &Line,
) -> Qty {
    match line.scope {
        Scope::Node(node) => view.node_headroom(positions, pools, node, line.need),
        Scope::Pool(pool) => view.pool_headroom(positions, pools, pool, line.need),
    }
}

/// The index of the copy's position at `node`, inserting an empty one if needed.
fn slot(positions: &mut Vec<Position>, node: NodeIdx) -> usize {
    match positions.binary_search_by_key(&node, Position::node) {
        Ok(at) => at,
        Err(at) => {
            positions.insert(at, Position::new(node));
            at
        }
    }
}

/// Adds (`sign` 1) or removes (-1) a line's hold on copies of a SKU's positions and pools.
fn hold_on_copy(positions: &mut Vec<Position>, pools: &mut Vec<PoolHold>, line: &Line, sign: Qty) {
    match line.scope {
        Scope::Node(node) => {
            let at = slot(positions, node);
            positions[at].add_demand(line.need, sign * line.quantity, 0);
        }
        Scope::Pool(pool) => add_pool_hold(pools, pool, line.need, sign * line.quantity),
    }
}

/// Replaces the holds of `old` lines by those of `new` ones in the index.
pub(super) fn change_holds(
    locked: &mut Locked<'_>,
    old: &[Line],
    new: &[Line],
    mut effects: Option<&mut Effects>,
) {
    let signed = old
        .iter()
        .map(|l| (l, -1))
        .chain(new.iter().map(|l| (l, 1)));
    let mut pools: BTreeMap<&str, Vec<PoolHold>> = BTreeMap::new();
    for (line, sign) in signed {
        match line.scope {
            Scope::Node(node) => {
                locked.update(&line.sku, node, effects.as_deref_mut(), |position| {
                    position.add_demand(line.need, sign * line.quantity, 0);
                    ((), true)
                });
            }
            Scope::Pool(pool) => {
                let held = pools.entry(&line.sku).or_insert_with(|| {
                    locked
                        .get(&line.sku)
                        .map_or_else(Vec::new, |e| e.pools().to_vec())
                });
                add_pool_hold(held, pool, line.need, sign * line.quantity);
            }
        }
    }
    for (sku, held) in pools {
        locked.set_pools(sku, held, effects.as_deref_mut());
    }
}

/// Gives back a committed reservation's unshipped allocations.
pub(super) fn unallocate(
    locked: &mut Locked<'_>,
    lines: &[Line],
    mut effects: Option<&mut Effects>,
) {
    for line in lines {
        for allocation in &line.allocations {
            let open = allocation.quantity - allocation.shipped;
            locked.update(
                &line.sku,
                allocation.node,
                effects.as_deref_mut(),
                |position| {
                    position.add_demand(line.need, 0, -open);
                    ((), open != 0)
                },
            );
        }
    }
}

/// Turns held lines into allocations: node lines where they are, pooled lines on the nodes a
/// max-flow assignment picks while every other pooled hold stays covered.
pub(super) fn allocate(
    locked: &mut Locked<'_>,
    view: &AtpView<'_, '_>,
    lines: &[Line],
    mut effects: Option<&mut Effects>,
) -> Result<Vec<Line>> {
    let mut bound: Vec<Line> = Vec::with_capacity(lines.len());
    let mut pools_after: BTreeMap<&str, Vec<PoolHold>> = BTreeMap::new();
    for (sku, sku_lines) in by_sku(lines) {
        let others = bind_sku(locked, view, sku, &sku_lines, &mut bound)?;
        pools_after.insert(sku, others);
    }
    for line in &bound {
        hold_to_allocations(locked, line, effects.as_deref_mut());
    }
    for (sku, pools) in pools_after {
        locked.set_pools(sku, pools, effects.as_deref_mut());
    }
    Ok(bound)
}

/// Binds one SKU's lines to nodes into `bound`; returns the SKU's pooled holds without the
/// pooled lines just bound.
fn bind_sku(
    locked: &Locked<'_>,
    view: &AtpView<'_, '_>,
    sku: &str,
    sku_lines: &[&Line],
    bound: &mut Vec<Line>,
) -> Result<Vec<PoolHold>> {
    let (positions, mut others) = copies(locked, sku);
    let (pooled, own) = take_pooled(sku_lines, &mut others);
    let assignment = view
        .assign(&positions, &others, &own)
        .ok_or_else(|| unassignable(view, &pooled))?;
    for line in sku_lines {
        if let Scope::Node(node) = line.scope {
            bound.push(allocated(line, vec![(node, line.quantity)]));
        }
    }
    for (line, nodes) in pooled.iter().zip(assignment) {
        bound.push(allocated(line, nodes));
    }
    Ok(others)
}

/// The pooled lines among `sku_lines` with their (pool, quantity), their holds taken out of
/// `pools`.
fn take_pooled<'l>(
    sku_lines: &[&'l Line],
    pools: &mut Vec<PoolHold>,
) -> (Vec<&'l Line>, Vec<(Pool, Qty)>) {
    let mut pooled = Vec::new();
    let mut own = Vec::new();
    for &line in sku_lines {
        if let Scope::Pool(pool) = line.scope {
            add_pool_hold(pools, pool, line.need, -line.quantity);
            pooled.push(line);
            own.push((pool, line.quantity));
        }
    }
    (pooled, own)
}

/// The shortfall of pooled lines no assignment can place: nothing of theirs is available.
fn unassignable(view: &AtpView<'_, '_>, pooled: &[&Line]) -> Error {
    Error::InsufficientStock(
        pooled
            .iter()
            .map(|line| Shortfall {
                subject: subject(view, line),
                requested: line.quantity,
                available: 0,
            })
            .collect(),
    )
}

/// A copy of `line` with unshipped allocations of `(node, quantity)`.
fn allocated(line: &Line, nodes: Vec<(NodeIdx, Qty)>) -> Line {
    let allocations = nodes
        .into_iter()
        .map(|(node, quantity)| Allocation {
            node,
            quantity,
            shipped: 0,
        })
        .collect();
    Line {
        allocations,
        ..line.clone()
    }
}

/// Moves a bound line's quantity from held to allocated at each of its nodes; a pooled line's
/// hold lives in the pools, not on the positions.
fn hold_to_allocations(locked: &mut Locked<'_>, line: &Line, mut effects: Option<&mut Effects>) {
    for allocation in &line.allocations {
        let held = if matches!(line.scope, Scope::Node(_)) {
            allocation.quantity
        } else {
            0
        };
        locked.update(
            &line.sku,
            allocation.node,
            effects.as_deref_mut(),
            |position| {
                position.add_demand(line.need, -held, allocation.quantity);
                ((), true)
            },
        );
    }
}
