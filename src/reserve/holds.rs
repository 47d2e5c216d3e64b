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

fn subject(view: &AtpView<'_>, line: &Line) -> String {
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
    view: &AtpView<'_>,
    old: &[Line],
    new: &[Line],
) -> Result<()> {
    let mut shortfalls = Vec::new();
    let old_by_sku = by_sku(old);
    for (sku, lines) in by_sku(new) {
        let entry = locked.get(sku);
        let mut positions: Vec<Position> = entry.map_or_else(Vec::new, |e| e.positions().to_vec());
        let mut pools: Vec<PoolHold> = entry.map_or_else(Vec::new, |e| e.pools().to_vec());
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
            for line in lines {
                let available = match line.scope {
                    Scope::Node(node) => {
                        view.node_headroom(&before, &pools_before, node, line.need)
                    }
                    Scope::Pool(pool) => view.pool_headroom(&before, &pools_before, pool),
                };
                shortfalls.push(Shortfall {
                    subject: subject(view, line),
                    requested: line.quantity,
                    available,
                });
            }
        }
    }
    if shortfalls.is_empty() {
        Ok(())
    } else {
        Err(Error::InsufficientStock(shortfalls))
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
    view: &AtpView<'_>,
    lines: &[Line],
    mut effects: Option<&mut Effects>,
) -> Result<Vec<Line>> {
    let mut bound: Vec<Line> = Vec::with_capacity(lines.len());
    let mut pools_after: BTreeMap<&str, Vec<PoolHold>> = BTreeMap::new();
    for (sku, sku_lines) in by_sku(lines) {
        let entry = locked.get(sku);
        let positions: Vec<Position> = entry.map_or_else(Vec::new, |e| e.positions().to_vec());
        let mut others: Vec<PoolHold> = entry.map_or_else(Vec::new, |e| e.pools().to_vec());
        let pooled: Vec<&Line> = sku_lines
            .iter()
            .copied()
            .filter(|l| matches!(l.scope, Scope::Pool(_)))
            .collect();
        for line in &pooled {
            if let Scope::Pool(pool) = line.scope {
                add_pool_hold(&mut others, pool, line.need, -line.quantity);
            }
        }
        let own: Vec<(Pool, Qty)> = pooled
            .iter()
            .filter_map(|l| match l.scope {
                Scope::Pool(pool) => Some((pool, l.quantity)),
                Scope::Node(_) => None,
            })
            .collect();
        let assignment = view.assign(&positions, &others, &own).ok_or_else(|| {
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
        })?;
        for line in sku_lines
            .iter()
            .filter(|l| matches!(l.scope, Scope::Node(_)))
        {
            let Scope::Node(node) = line.scope else {
                continue;
            };
            bound.push(Line {
                allocations: vec![Allocation {
                    node,
                    quantity: line.quantity,
                    shipped: 0,
                }],
                ..(*line).clone()
            });
        }
        for (line, nodes) in pooled.iter().zip(assignment) {
            let allocations = nodes
                .into_iter()
                .map(|(node, quantity)| Allocation {
                    node,
                    quantity,
                    shipped: 0,
                })
                .collect();
            bound.push(Line {
                allocations,
                ..(*line).clone()
            });
        }
        pools_after.insert(sku, others);
    }
    for line in &bound {
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
    for (sku, pools) in pools_after {
        locked.set_pools(sku, pools, effects.as_deref_mut());
    }
    Ok(bound)
}
