//! ATP of one position against a worked example and against a plain transcription of the
//! DESIGN.md formula over random supply and demand histories.

use proptest::prelude::*;

use super::{AtpPolicy, Change, ChangeKind, Position};
use crate::domain::{Day, Qty, SupplyType};

fn receipt(
    position: &mut Position,
    supply_type: SupplyType,
    reference: &str,
    eta: i32,
    quantity: Qty,
) {
    let change = Change {
        supply_type,
        kind: ChangeKind::Set { as_of_ms: 0 },
        quantity,
        reference,
        eta: Some(Day(eta)),
    };
    assert_eq!(position.apply(&change), super::Applied::Applied);
}

fn on_hand(position: &mut Position, quantity: Qty) {
    let change = Change {
        supply_type: SupplyType::OnHand,
        kind: ChangeKind::Set { as_of_ms: 0 },
        quantity,
        reference: "",
        eta: None,
    };
    assert_eq!(position.apply(&change), super::Applied::Applied);
}

/// Cumulative ATP with look-ahead, laid out as the period tables of operations-management
/// texts (e.g. the master-schedule ATP rows of Vollmann et al., *Manufacturing Planning and
/// Control*): 50 on hand, scheduled receipts of 100 on days 3 and 6, and customer orders of
/// 30, 10, 60, 40, 70, 20 due on days 1, 2, 3, 4, 6, 7.
///
/// | day            | 0  | 1  | 2  | 3  | 4  | 5  | 6  | 7  |
/// |----------------|----|----|----|----|----|----|----|----|
/// | receipts       |    |    |    | 100|    |    | 100|    |
/// | orders         |    | 30 | 10 | 60 | 40 |    | 70 | 20 |
/// | net            | 50 | 20 | 10 | 50 | 10 | 10 | 40 | 20 |
/// | ATP (min ahead)| 10 | 10 | 10 | 10 | 10 | 10 | 20 | 20 |
///
/// With 50 on the shelf only 10 can be promised today: 40 more would starve the orders due on
/// days 2 and 4, which the day-3 receipt cannot fully cover.
#[test]
fn worked_example_of_cumulative_atp_with_look_ahead() {
    let policy = AtpPolicy::default();
    let mut position = Position::new(0);
    on_hand(&mut position, 50);
    receipt(&mut position, SupplyType::OnOrder, "MPS-3", 3, 100);
    receipt(&mut position, SupplyType::OnOrder, "MPS-6", 6, 100);
    for (day, quantity) in [(1, 30), (2, 10), (3, 60), (4, 40), (6, 70), (7, 20)] {
        position.add_demand(Day(day), 0, quantity);
    }
    let atp: Vec<Qty> = (0..=7).map(|d| position.atp(Day(d), 0, &policy)).collect();
    assert_eq!(atp, [10, 10, 10, 10, 10, 10, 20, 20]);
    // The first day the lowest net is reached sets the figure: day 2 (also reached on 4 and 5).
    assert_eq!(position.lowest(Day(0), 0, &policy), (Day(2), 10));
    assert_eq!(position.lowest(Day(6), 0, &policy), (Day(7), 20));
    assert_eq!(position.earliest(Day(0), 10, 0, &policy), Some(Day(0)));
    assert_eq!(position.earliest(Day(0), 15, 0, &policy), Some(Day(6)));
    assert_eq!(position.earliest(Day(0), 21, 0, &policy), None);
    assert_eq!(
        position.atp_profile(Day(0), 0, &policy),
        [
            (Day(0), 10),
            (Day(1), 10),
            (Day(2), 10),
            (Day(3), 10),
            (Day(4), 10),
            (Day(6), 20),
            (Day(7), 20)
        ]
    );
}

#[test]
fn safety_stock_and_promisable_fraction_reduce_atp() {
    let policy = AtpPolicy {
        promisable_permille: [1000, 1000, 400],
    };
    let mut position = Position::new(0);
    on_hand(&mut position, 20);
    receipt(&mut position, SupplyType::OnOrder, "PO-1", 5, 100);
    assert_eq!(position.atp(Day(0), 5, &policy), 15);
    // Only 40 of the 100 on order count.
    assert_eq!(position.atp(Day(5), 5, &policy), 55);
    assert_eq!(position.earliest(Day(0), 50, 5, &policy), Some(Day(5)));
}

/// One random history: on-hand, receipts and demand on days `0..HORIZON`.
#[derive(Debug, Clone)]
struct History {
    on_hand: Qty,
    safety: Qty,
    receipts: Vec<(bool, i32, Qty)>,
    demand: Vec<(i32, Qty, Qty)>,
    on_order_permille: u32,
}

const HORIZON: i32 = 30;

fn history() -> impl Strategy<Value = History> {
    (
        0..200i64,
        0..20i64,
        prop::collection::vec((any::<bool>(), 0..HORIZON, 1..100i64), 0..6),
        prop::collection::vec((0..HORIZON, 0..50i64, 0..50i64), 0..8),
        prop::sample::select(vec![0u32, 400, 1000]),
    )
        .prop_map(
            |(on_hand, safety, receipts, demand, on_order_permille)| History {
                on_hand,
                safety,
                receipts,
                demand,
                on_order_permille,
            },
        )
}

impl History {
    fn policy(&self) -> AtpPolicy {
        AtpPolicy {
            promisable_permille: [1000, 1000, self.on_order_permille],
        }
    }

    fn position(&self) -> Position {
        let mut position = Position::new(0);
        on_hand(&mut position, self.on_hand);
        for (i, &(in_transit, eta, quantity)) in self.receipts.iter().enumerate() {
            let supply_type = if in_transit {
                SupplyType::InTransit
            } else {
                SupplyType::OnOrder
            };
            receipt(
                &mut position,
                supply_type,
                &format!("REF-{i}"),
                eta,
                quantity,
            );
        }
        for &(day, reserved, allocated) in &self.demand {
            position.add_demand(Day(day), reserved, allocated);
        }
        position
    }

    /// `net(d)` straight from the formula, summing everything due by `d`.
    fn net(&self, d: i32) -> Qty {
        let receipts: Qty = self
            .receipts
            .iter()
            .filter(|r| r.1 <= d)
            .map(|&(in_transit, _, q)| {
                if in_transit {
                    q
                } else {
                    q * Qty::from(self.on_order_permille) / 1000
                }
            })
            .sum();
        let demand: Qty = self
            .demand
            .iter()
            .filter(|x| x.0 <= d)
            .map(|x| x.1 + x.2)
            .sum();
        self.on_hand - self.safety + receipts - demand
    }

    /// `ATP(d) = max(0, min over d' >= d of net(d'))`; nothing changes after the horizon.
    fn atp(&self, d: i32) -> Qty {
        (d..=HORIZON).map(|x| self.net(x)).min().unwrap_or(0).max(0)
    }
}

proptest! {
    #[test]
    fn atp_matches_the_formula(history in history(), day in 0..HORIZON, quantity in 1..300i64) {
        let position = history.position();
        let policy = history.policy();
        prop_assert_eq!(position.atp(Day(day), history.safety, &policy), history.atp(day));
        let expected = (day..=HORIZON).find(|&d| history.atp(d) >= quantity).map(Day);
        prop_assert_eq!(position.earliest(Day(day), quantity, history.safety, &policy), expected);
        // The query reads a node's earliest day off its step function, built once for the
        // totals too: the first step with enough.
        let steps = position.atp_profile(Day(day), history.safety, &policy);
        let first = steps.iter().find(|step| step.1 >= quantity).map(|step| step.0);
        prop_assert_eq!(first, expected);
    }

    #[test]
    fn atp_never_decreases_with_the_date(history in history()) {
        let position = history.position();
        let policy = history.policy();
        let atp: Vec<Qty> = (0..=HORIZON).map(|d| position.atp(Day(d), history.safety, &policy)).collect();
        prop_assert!(atp.windows(2).all(|w| w[0] <= w[1]), "{:?}", atp);
    }
}

fn set_receipt_as_of(position: &mut Position, quantity: Qty, as_of_ms: i64) -> super::Applied {
    position.apply(&Change {
        supply_type: SupplyType::InTransit,
        kind: ChangeKind::Set { as_of_ms },
        quantity,
        reference: "ASN-1",
        eta: Some(Day(3)),
    })
}

#[test]
fn an_older_set_of_a_dated_receipt_is_stale_and_changes_nothing() {
    let policy = AtpPolicy::default();
    let mut position = Position::new(0);
    assert_eq!(
        set_receipt_as_of(&mut position, 40, 2_000),
        super::Applied::Applied
    );
    assert_eq!(
        set_receipt_as_of(&mut position, 5, 1_000),
        super::Applied::Stale,
        "a SET older than the receipt's last SET"
    );
    assert_eq!(position.atp(Day(3), 0, &policy), 40);
    assert_eq!(
        set_receipt_as_of(&mut position, 25, 3_000),
        super::Applied::Applied
    );
    assert_eq!(position.atp(Day(3), 0, &policy), 25);
}

#[test]
fn a_shipment_never_takes_on_hand_below_zero() {
    let policy = AtpPolicy::default();
    let mut position = Position::new(0);
    on_hand(&mut position, 2);
    position.add_demand(Day(0), 0, 5);
    assert_eq!(
        position.ship(&[(Day(0), 5)], 5),
        super::Applied::NegativeResult
    );
    assert_eq!(position.totals().on_hand, 2, "nothing shipped");
    assert_eq!(position.atp(Day(0), 0, &policy), 0);
    assert_eq!(position.ship(&[(Day(0), 2)], 2), super::Applied::Applied);
    assert_eq!(position.totals().on_hand, 0);
}

#[test]
fn a_safety_override_of_one_is_an_override() {
    let mut position = Position::new(0);
    assert_eq!(position.safety(5), 5, "the node default");
    position.set_safety_override(1);
    assert_eq!(position.safety(5), 1);
    position.set_safety_override(0);
    assert_eq!(position.safety(5), 0, "zero is an override too");
}

#[test]
fn an_adjustment_beyond_the_quantity_limit_is_refused() {
    let mut position = Position::new(0);
    on_hand(&mut position, super::MAX_QUANTITY - 1);
    let adjust = |quantity| Change {
        supply_type: SupplyType::OnHand,
        kind: ChangeKind::Adjust,
        quantity,
        reference: "",
        eta: None,
    };
    assert_eq!(position.apply(&adjust(2)), super::Applied::TooLarge);
    assert_eq!(
        position.totals().on_hand,
        super::MAX_QUANTITY - 1,
        "unchanged"
    );
    assert_eq!(
        position.apply(&adjust(1)),
        super::Applied::Applied,
        "up to the limit"
    );
}
