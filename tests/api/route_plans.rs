//! Routing plans over gRPC on the routing network and costs of [`crate::routing`]: lines split
//! across nodes, runners-up, every node accounted for, one meaning of cost for routed and
//! promised shipments, and what a wave's totals serve.

use promised::grpc::pb;
use promised::grpc::pb::promising_client::PromisingClient;
use promised::grpc::pb::routing_client::RoutingClient;

use crate::routing::{nodes, order, reason, route, stocked};

/// (node, quantity of `sku`) of each shipment of the plan.
fn shipped(response: &pb::RouteResponse, sku: &str) -> Vec<(String, i64)> {
    let plan = response.plan.as_ref().expect("a plan");
    plan.shipments
        .iter()
        .map(|s| {
            let quantity = s.lines.iter().filter(|l| l.sku == sku).map(|l| l.quantity);
            (s.node_id.clone(), quantity.sum())
        })
        .collect()
}

/// The order under `constraints`.
fn constrained(
    id: &str,
    lines: &[(&str, i64)],
    constraints: pb::RouteConstraints,
) -> pb::RouteRequest {
    pb::RouteRequest {
        constraints: Some(constraints),
        ..order(id, lines)
    }
}

fn split_order(id: &str, lines: &[(&str, i64)], max_packages: u32) -> pb::RouteRequest {
    let split = pb::RouteConstraints {
        split_lines: true,
        max_packages,
        ..Default::default()
    };
    constrained(id, lines, split)
}

/// Ships in one package.
fn complete() -> pb::RouteConstraints {
    pb::RouteConstraints {
        ship_complete: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_line_splits_across_nodes_and_its_shipments_add_up_to_the_plan() {
    let app = stocked(&[("X", "NYC", 6), ("X", "NJ", 6)]).await;
    // Two lines of one SKU are one line of 10.
    let lines = [("X", 6), ("X", 4)];
    let whole = route(&app, order("O-1", &lines)).await;
    assert!(whole.plan.is_none());
    let short = "has only 6 of the 10 of X, and lines do not split";
    assert_eq!(
        (reason(&whole, "NYC"), reason(&whole, "NJ")),
        (short, short)
    );

    let split = route(&app, split_order("O-2", &lines, 2)).await;
    assert_eq!(shipped(&split, "X"), [("NYC".into(), 6), ("NJ".into(), 4)]);
    let plan = split.plan.as_ref().expect("plan");
    let costs: f64 = plan.shipments.iter().map(|s| s.cost).sum();
    assert!((costs - plan.total_cost).abs() < 1e-9, "{plan:?}");
    for shipment in &plan.shipments {
        let terms = shipment.cost_breakdown.expect("terms");
        let sum = terms.shipping + terms.packages + terms.priority + terms.capacity;
        assert!((sum - shipment.cost).abs() < 1e-9, "{shipment:?}");
        assert!(
            (terms.packages - 1.5).abs() < 1e-9,
            "half the one penalty each"
        );
    }

    let one = route(&app, split_order("O-3", &lines, 1)).await;
    assert!(one.plan.is_none());
    assert_eq!(
        reason(&one, "NYC"),
        "has 6 of the 10 of X and max_packages is 1"
    );
}

#[tokio::test]
async fn runners_up_are_the_next_cheapest_distinct_plans_that_need_every_node() {
    let app = stocked(&[
        ("A", "NYC", 5),
        ("B", "NYC", 5),
        ("A", "NJ", 5),
        ("B", "LAX", 5),
        ("A", "CHI", 5),
        ("B", "CHI", 5),
    ])
    .await;
    let mut request = order("O-1", &[("A", 1), ("B", 1)]);
    request.alternatives = 8;
    let response = route(&app, request).await;
    assert_eq!(nodes(&response), ["NYC"]);
    let plans: Vec<Vec<&str>> = response
        .alternatives
        .iter()
        .map(|p| p.shipments.iter().map(|s| s.node_id.as_str()).collect())
        .collect();
    // NYC with another node would ship the same as NYC alone: never a runner-up.
    assert_eq!(plans, [vec!["CHI"], vec!["NJ", "LAX"]]);
    let costs: Vec<f64> = response.alternatives.iter().map(|p| p.total_cost).collect();
    assert!(costs[0] < costs[1], "{costs:?}");
    assert!(response.plan.as_ref().expect("plan").total_cost < costs[0]);
    let dearer = "dearer: in no plan as cheap as the 3 answered";
    for node in ["DC-EAST", "DC-WEST"] {
        assert_eq!(reason(&response, node), "no stock for any line");
    }
    assert!(!response.excluded.iter().any(|e| e.reason == dearer));
}

#[tokio::test]
async fn every_node_is_planned_or_excluded_with_the_constraint_that_keeps_it_out() {
    let app = stocked(&[
        ("A", "NYC", 5),
        ("B", "NYC", 5),
        ("B", "NJ", 5),
        ("C", "LAX", 5),
        ("C", "CHI", 5),
    ])
    .await;
    let complete = constrained("O-1", &[("A", 1), ("B", 1)], complete());
    let response = route(&app, complete).await;
    assert_eq!(nodes(&response), ["NYC"]);
    assert_eq!(
        reason(&response, "NJ"),
        "lacks A and the order ships complete"
    );

    let two = pb::RouteConstraints {
        max_packages: 2,
        ..Default::default()
    };
    let mut two = constrained("O-2", &[("A", 1), ("B", 1), ("C", 1)], two);
    two.alternatives = 4;
    let response = route(&app, two).await;
    assert_eq!(nodes(&response), ["CHI", "NYC"]);
    assert_eq!(
        reason(&response, "NJ"),
        "cannot meet max_packages: no plan of at most 2 packages ships from it"
    );
    let network = ["NYC", "NJ", "LAX", "CHI", "DC-EAST", "DC-WEST"];
    let planned = |node: &str| {
        response
            .plan
            .iter()
            .chain(&response.alternatives)
            .any(|p| p.shipments.iter().any(|s| s.node_id == node))
    };
    for node in network {
        let explained = response
            .excluded
            .iter()
            .filter(|e| e.node_id == node)
            .count();
        assert_eq!(
            usize::from(planned(node)) + explained,
            1,
            "{node}: {response:?}"
        );
    }
}

#[tokio::test]
async fn a_wave_says_how_many_orders_each_total_serves() {
    let app = stocked(&[("A", "NYC", 1), ("A", "LAX", 1), ("B", "NYC", 1)]).await;
    let complete = constrained("O-2", &[("A", 1), ("B", 1)], complete());
    let wave = pb::RouteOrdersRequest {
        orders: vec![order("O-1", &[("A", 1)]), complete],
    };
    let response = RoutingClient::new(app.channel.clone())
        .route_orders(wave)
        .await
        .expect("routed")
        .into_inner();
    // One by one, O-1 takes NYC's A and O-2 cannot ship complete; together both ship, dearer.
    assert_eq!((response.orders_served, response.one_by_one_served), (2, 1));
    assert!(
        response.total_cost > response.one_by_one_cost,
        "{response:?}"
    );
}

#[tokio::test]
async fn a_routed_and_a_promised_shipment_cost_the_same() {
    let app = stocked(&[("A", "NJ", 5)]).await;
    let routed = route(&app, order("O-1", &[("A", 2)])).await;
    let routed = &routed.plan.expect("plan").shipments[0];
    let promised = pb::PromiseRequest {
        lines: vec![pb::PromiseLine {
            sku: "A".into(),
            quantity: 2,
        }],
        destination: order("O-1", &[]).destination,
        service_levels: vec!["GROUND".into()],
        ..Default::default()
    };
    let promised = PromisingClient::new(app.channel.clone())
        .promise_order(promised)
        .await
        .expect("promised")
        .into_inner();
    let option = &promised.options[0];
    assert_eq!(option.shipments[0].node_id, routed.node_id);
    assert!(
        (option.shipments[0].cost - routed.cost).abs() < 1e-9,
        "{option:?} {routed:?}"
    );
    assert_eq!(option.shipments[0].cost_breakdown, routed.cost_breakdown);
    assert!((option.cost - routed.cost).abs() < 1e-9);
}

#[tokio::test]
async fn a_split_plan_is_held_at_each_node_for_its_part() {
    let app = stocked(&[("X", "NYC", 6), ("X", "NJ", 6)]).await;
    let mut request = split_order("O-1", &[("X", 10)], 0);
    (request.reserve, request.reservation_id) = (true, "R-1".into());
    let response = route(&app, request).await;
    let held = response.reservation.expect("held");
    let lines: Vec<(&str, i64)> = held
        .lines
        .iter()
        .map(|l| (l.node_id.as_str(), l.quantity))
        .collect();
    assert_eq!(lines, [("NYC", 6), ("NJ", 4)]);
    let again = route(&app, split_order("O-2", &[("X", 3)], 0)).await;
    assert!(again.plan.is_none(), "2 left at NJ: {again:?}");
}
