use pb::SupplyType::{InTransit, OnOrder};
use promised::config::ServeArgs;
use promised::grpc::pb;

use crate::helpers::*;

fn ask(skus: &[&str], quantity: i64) -> pb::AvailabilityRequest {
    pb::AvailabilityRequest {
        skus: skus.iter().map(|s| s.to_string()).collect(),
        group_ids: vec!["EAST".into(), "ALL-DCS".into()],
        quantity,
        ..Default::default()
    }
}

#[tokio::test]
async fn receipts_move_the_earliest_date() {
    let mut app = spawn_app().await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 5, START_MS)],
    )
    .await;
    app.apply(
        "WMS-EAST",
        2,
        vec![set_receipt(
            "SKU-1",
            "DC-EAST",
            InTransit,
            "ASN-1",
            "2026-03-05",
            10,
        )],
    )
    .await;
    app.apply(
        "ERP",
        1,
        vec![set_receipt(
            "SKU-1",
            "DC-WEST",
            OnOrder,
            "PO-1",
            "2026-03-10",
            20,
        )],
    )
    .await;

    let item = app.availability(ask(&["SKU-1"], 12)).await.items.remove(0);
    assert_eq!(
        node_atp(&item, "DC-EAST"),
        5,
        "receipts are not available today"
    );
    assert_eq!(node_view(&item, "DC-EAST").inbound, 10);
    assert_eq!(node_view(&item, "DC-EAST").earliest_date, "2026-03-05");
    assert_eq!(node_view(&item, "DC-WEST").earliest_date, "2026-03-10");
    assert_eq!(node_view(&item, "STORE-CHI").earliest_date, "");
    assert_eq!(item.network_earliest_date, "2026-03-05");

    let item = app.availability(ask(&["SKU-1"], 30)).await.items.remove(0);
    assert_eq!(
        item.network_earliest_date, "2026-03-10",
        "needs both DCs' receipts"
    );
    let east = &item.groups[0];
    assert_eq!(
        (
            east.group_id.as_str(),
            east.atp,
            east.earliest_date.as_str()
        ),
        ("EAST", 5, "")
    );

    // An earlier receipt moves the node's date forward.
    app.apply(
        "WMS-EAST",
        3,
        vec![set_receipt(
            "SKU-1",
            "DC-EAST",
            InTransit,
            "ASN-2",
            "2026-03-03",
            10,
        )],
    )
    .await;
    let item = app.availability(ask(&["SKU-1"], 12)).await.items.remove(0);
    assert_eq!(node_view(&item, "DC-EAST").earliest_date, "2026-03-03");
}

#[tokio::test]
async fn a_future_date_counts_receipts_due_by_then() {
    let mut app = spawn_app().await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 5, START_MS)],
    )
    .await;
    app.apply(
        "ERP",
        1,
        vec![set_receipt(
            "SKU-1",
            "DC-EAST",
            OnOrder,
            "PO-1",
            "2026-03-10",
            20,
        )],
    )
    .await;
    let at = |date: &str| pb::AvailabilityRequest {
        skus: vec!["SKU-1".into()],
        node_ids: vec!["DC-EAST".into()],
        as_of_date: date.into(),
        ..Default::default()
    };
    let atp = |response: pb::AvailabilityResponse| response.items[0].nodes[0].atp;
    assert_eq!(atp(app.availability(at("2026-03-09")).await), 5);
    assert_eq!(atp(app.availability(at("2026-03-10")).await), 25);
    assert_eq!(
        atp(app.availability(at("2020-01-01")).await),
        5,
        "past dates answer as today"
    );
}

#[tokio::test]
async fn group_and_network_totals_add_up_nodes() {
    let mut app = spawn_app().await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    app.apply(
        "WMS-WEST",
        1,
        vec![set_on_hand("SKU-1", "DC-WEST", 20, START_MS)],
    )
    .await;
    app.apply(
        "POS",
        1,
        vec![set_on_hand("SKU-1", "STORE-CHI", 3, START_MS)],
    )
    .await;
    let item = app.availability(ask(&["SKU-1"], 0)).await.items.remove(0);
    assert_eq!(item.network_atp, 33);
    let totals: Vec<(&str, i64)> = item
        .groups
        .iter()
        .map(|g| (g.group_id.as_str(), g.atp))
        .collect();
    assert_eq!(totals, [("EAST", 13), ("ALL-DCS", 30)]);
}

#[tokio::test]
async fn unknown_skus_answer_zero_availability() {
    let mut app = spawn_app().await;
    let response = app.availability(ask(&["NEVER-SEEN"], 1)).await;
    let item = &response.items[0];
    assert_eq!(item.nodes.len(), 3);
    assert!(item
        .nodes
        .iter()
        .all(|n| n.atp == 0 && n.earliest_date.is_empty()));
    assert_eq!(
        (item.network_atp, item.network_earliest_date.as_str()),
        (0, "")
    );
}

#[tokio::test]
async fn safety_stock_holds_back_units_per_node_and_per_position() {
    let mut app = spawn_app().await;
    let mut dc = node(
        "DC-EAST",
        pb::NodeKind::Dc,
        "America/New_York",
        &["EAST", "ALL-DCS"],
    );
    dc.safety_stock = 4;
    app.admin
        .upsert_nodes(pb::UpsertNodesRequest { nodes: vec![dc] })
        .await
        .expect("node");
    app.apply(
        "WMS-EAST",
        1,
        vec![
            set_on_hand("SKU-1", "DC-EAST", 10, START_MS),
            set_on_hand("SKU-2", "DC-EAST", 10, START_MS),
        ],
    )
    .await;
    let entry = pb::SafetyStockEntry {
        sku: "SKU-2".into(),
        node_id: "DC-EAST".into(),
        quantity: 9,
    };
    app.admin
        .set_safety_stock(pb::SetSafetyStockRequest {
            entries: vec![entry],
        })
        .await
        .expect("safety stock");
    let one = app.item("SKU-1").await;
    assert_eq!(
        (
            node_atp(&one, "DC-EAST"),
            node_view(&one, "DC-EAST").safety_stock
        ),
        (6, 4)
    );
    let two = app.item("SKU-2").await;
    assert_eq!(
        (
            node_atp(&two, "DC-EAST"),
            node_view(&two, "DC-EAST").safety_stock
        ),
        (1, 9)
    );
}

#[tokio::test]
async fn one_call_answers_a_thousand_item_node_pairs_and_refuses_more_than_the_limit() {
    let mut app = spawn_app_with(ServeArgs {
        max_pairs: Some("1000".into()),
        ..Default::default()
    })
    .await;
    let updates = (0..400)
        .map(|i| set_on_hand(&format!("SKU-{i}"), "DC-EAST", i, START_MS))
        .collect();
    app.apply("WMS-EAST", 1, updates).await;
    let skus: Vec<String> = (0..333).map(|i| format!("SKU-{i}")).collect();
    let request = pb::AvailabilityRequest {
        skus: skus.clone(),
        ..Default::default()
    };
    let response = app.availability(request).await;
    assert_eq!(response.items.len(), 333);
    assert_eq!(
        response.items.iter().map(|i| i.nodes.len()).sum::<usize>(),
        999
    );
    assert_eq!(node_atp(&response.items[332], "DC-EAST"), 332);

    let too_many = pb::AvailabilityRequest {
        skus: (0..334).map(|i| format!("SKU-{i}")).collect(),
        ..Default::default()
    };
    let status = app
        .availability
        .get_availability(too_many)
        .await
        .expect_err("over the limit");
    assert_bad_field(&status, "skus");
}

#[tokio::test]
async fn today_is_taken_in_each_nodes_time_zone() {
    let mut app = spawn_app().await;
    // 04:30 UTC on the 3rd is 23:30 on the 2nd in New York and 20:30 in Los Angeles; an hour
    // later New York is on the 3rd while Los Angeles is still on the 2nd.
    app.clock.set_ms(START_MS + 13 * 3_600_000 + 30 * 60_000);
    app.apply(
        "WMS-EAST",
        1,
        vec![set_receipt(
            "SKU-1",
            "DC-EAST",
            InTransit,
            "ASN-1",
            "2026-03-03",
            10,
        )],
    )
    .await;
    app.apply(
        "ERP",
        1,
        vec![set_receipt(
            "SKU-1",
            "DC-WEST",
            OnOrder,
            "PO-1",
            "2026-03-03",
            10,
        )],
    )
    .await;
    app.apply("WMS-WEST", 0, vec![]).await;
    let item = app.item("SKU-1").await;
    assert!(item.nodes.iter().take(2).all(|n| !n.degraded), "{item:?}");
    assert_eq!(
        (node_atp(&item, "DC-EAST"), node_atp(&item, "DC-WEST")),
        (0, 0)
    );
    app.clock.advance_ms(3_600_000);
    app.apply("WMS-EAST", 0, vec![]).await;
    app.apply("WMS-WEST", 0, vec![]).await;
    let item = app.item("SKU-1").await;
    assert_eq!(
        (node_atp(&item, "DC-EAST"), node_atp(&item, "DC-WEST")),
        (10, 0)
    );
}
