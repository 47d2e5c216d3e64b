use pb::SupplyType::{InTransit, OnOrder};
use promised::config::ServeArgs;
use promised::grpc::pb;
use promised::grpc::pb::reservations_client::ReservationsClient;

use crate::helpers::*;
use crate::reservations::{line, reserve_request};

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

    let lean = pb::AvailabilityRequest {
        totals_only: true,
        ..ask(&["SKU-1"], 0)
    };
    let totals_only = app.availability(lean).await.items.remove(0);
    assert!(totals_only.nodes.is_empty(), "totals only names no node");
    assert_eq!(
        (totals_only.network_atp, totals_only.groups),
        (item.network_atp, item.groups)
    );
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

pub fn explain_request(sku: &str, node_id: &str, group_id: &str, date: &str) -> pb::ExplainRequest {
    pb::ExplainRequest {
        sku: sku.into(),
        node_id: node_id.into(),
        group_id: group_id.into(),
        as_of_date: date.into(),
    }
}

async fn explain(app: &mut TestApp, request: pb::ExplainRequest) -> pb::ExplainResponse {
    app.availability
        .explain(request)
        .await
        .expect("explained")
        .into_inner()
}

/// A node's parts, as the proto states them: `max(0, on_hand - safety_stock - stale_buffer +
/// counted_receipts - counted_demand)`, each count recomputed from the listed parts.
fn node_parts(node: &pb::NodeExplanation) -> i64 {
    let receipts: i64 = node
        .receipts
        .iter()
        .filter(|r| r.counted)
        .map(|r| r.promisable)
        .sum();
    let demand: i64 = node
        .demand
        .iter()
        .filter(|d| d.counted)
        .map(|d| d.reserved + d.allocated)
        .sum();
    assert_eq!(
        (receipts, demand),
        (node.counted_receipts, node.counted_demand)
    );
    let net = node.on_hand - node.safety_stock - node.stale_buffer + receipts - demand;
    assert_eq!(net, node.lowest_net, "{node:?}");
    net.max(0)
}

/// DC-EAST: 40 on hand, safety stock 2 of its own, 10 in transit for the 5th, 20 on order for
/// the 10th; 5 held today, 30 committed to ORDER-2 for the 6th; 4 held in EAST. DC-WEST: 15.
///
/// | DC-EAST | 2nd | 5th | 6th | 10th |
/// |---------|-----|-----|-----|------|
/// | net     | 33  | 43  | 13  | 33   |
async fn explained_stock(app: &mut TestApp) {
    app.apply(
        "WMS-EAST",
        1,
        vec![
            set_on_hand("SKU-1", "DC-EAST", 40, START_MS),
            set_receipt("SKU-1", "DC-EAST", InTransit, "ASN-1", "2026-03-05", 10),
        ],
    )
    .await;
    let po = set_receipt("SKU-1", "DC-EAST", OnOrder, "PO-1", "2026-03-10", 20);
    app.apply("ERP", 1, vec![po]).await;
    let west = set_on_hand("SKU-1", "DC-WEST", 15, START_MS);
    app.apply("WMS-WEST", 1, vec![west]).await;
    let entry = pb::SafetyStockEntry {
        sku: "SKU-1".into(),
        node_id: "DC-EAST".into(),
        quantity: 2,
    };
    app.admin
        .set_safety_stock(pb::SetSafetyStockRequest {
            entries: vec![entry],
        })
        .await
        .expect("safety stock");
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let mut later = line("SKU-1", "DC-EAST", 30);
    later.need_date = "2026-03-06".into();
    let pooled = pb::ReservationLine {
        sku: "SKU-1".into(),
        group_id: "EAST".into(),
        quantity: 4,
        ..Default::default()
    };
    for (id, held) in [
        ("cart-1", line("SKU-1", "DC-EAST", 5)),
        ("cart-2", later),
        ("cart-3", pooled),
    ] {
        let request = reserve_request(id, vec![held]);
        reservations.reserve(request).await.expect("held");
    }
    let commit = pb::CommitRequest {
        reservation_id: "cart-2".into(),
        order_id: "ORDER-2".into(),
    };
    reservations.commit(commit).await.expect("committed");
}

#[tokio::test]
async fn explain_adds_up_to_the_atp_get_availability_answers() {
    let mut app = spawn_app().await;
    explained_stock(&mut app).await;
    let item = app.availability(ask(&["SKU-1"], 0)).await.items.remove(0);

    let node = explain(&mut app, explain_request("SKU-1", "DC-EAST", "", "")).await;
    assert_eq!((node.atp, node_atp(&item, "DC-EAST")), (13, 13));
    let east = &node.nodes[0];
    assert_eq!(node_parts(east), 13);
    assert_eq!(
        (east.date.as_str(), east.lowest_net_date.as_str()),
        ("2026-03-02", "2026-03-06"),
        "the commitment on the 6th sets today's figure"
    );
    assert_eq!(east.on_hand_as_of, as_of(START_MS));
    let sources: Vec<&str> = east
        .on_hand_sources
        .iter()
        .map(|s| s.source_id.as_str())
        .collect();
    assert_eq!(sources, ["WMS-EAST"]);
    assert_eq!((east.safety_stock, east.safety_stock_override), (2, true));
    let receipts: Vec<(&str, bool)> = east
        .receipts
        .iter()
        .map(|r| (r.reference.as_str(), r.counted))
        .collect();
    assert_eq!(receipts, [("ASN-1", true), ("PO-1", false)]);
    let commitments: Vec<(&str, &str, &str, i64)> = east
        .commitments
        .iter()
        .map(|c| {
            let (id, order) = (c.reservation_id.as_str(), c.order_id.as_str());
            (id, order, c.need_date.as_str(), c.quantity)
        })
        .collect();
    assert_eq!(
        commitments,
        [
            ("cart-1", "", "2026-03-02", 5),
            ("cart-2", "ORDER-2", "2026-03-06", 30)
        ]
    );

    let group = explain(&mut app, explain_request("SKU-1", "", "EAST", "")).await;
    assert_eq!((group.atp, item.groups[0].atp), (9, 9));
    let members: i64 = group.nodes.iter().map(node_parts).sum();
    assert_eq!(members - group.pooled_reduction, group.atp);
    let pooled: Vec<(&str, i64)> = group
        .pooled_holds
        .iter()
        .map(|h| (h.group_id.as_str(), h.quantity))
        .collect();
    assert_eq!(pooled, [("EAST", 4)]);
    assert_eq!(group.pooled_commitments[0].reservation_id, "cart-3");

    let network = explain(&mut app, explain_request("SKU-1", "", "", "")).await;
    assert_eq!((network.atp, item.network_atp), (24, 24));
    let members: i64 = network.nodes.iter().map(node_parts).sum();
    assert_eq!((members, network.pooled_reduction), (28, 4));

    let later = explain(
        &mut app,
        explain_request("SKU-1", "DC-EAST", "", "2026-03-10"),
    )
    .await;
    let east = &later.nodes[0];
    assert_eq!((later.atp, node_parts(east)), (33, 33));
    assert!(east.receipts.iter().all(|r| r.counted));
}

#[tokio::test]
async fn explain_shows_a_stale_feed_excluding_its_node() {
    let mut app = spawn_app().await;
    explained_stock(&mut app).await;
    app.clock.advance_ms(301_000);
    app.apply("WMS-WEST", 0, vec![]).await;
    let node = explain(&mut app, explain_request("SKU-1", "DC-EAST", "", "")).await;
    let east = &node.nodes[0];
    assert!(east.excluded);
    assert_eq!(east.stale_source_ids, ["WMS-EAST"]);
    assert_eq!((node.atp, east.lowest_net_date.as_str()), (0, ""));
    let item = app.item("SKU-1").await;
    assert_eq!(node_atp(&item, "DC-EAST"), 0);
    assert!(node_view(&item, "DC-EAST").degraded);
}

#[tokio::test]
async fn explain_answers_an_unknown_sku_as_nothing_available() {
    let mut app = spawn_app().await;
    let node = explain(&mut app, explain_request("NEVER-SEEN", "DC-EAST", "", "")).await;
    assert_eq!((node.atp, node.nodes[0].on_hand), (0, 0));
    let network = explain(&mut app, explain_request("NEVER-SEEN", "", "", "")).await;
    assert_eq!((network.atp, network.nodes.len()), (0, 0));
}

#[tokio::test]
async fn explain_refuses_bad_input_with_the_field_at_fault() {
    let mut app = spawn_app().await;
    let long = "X".repeat(200);
    for (request, field) in [
        (explain_request("", "DC-EAST", "", ""), "sku"),
        (explain_request(&long, "DC-EAST", "", ""), "sku"),
        (explain_request("SKU-1", "DC-NOPE", "", ""), "node_id"),
        (explain_request("SKU-1", &long, "", ""), "node_id"),
        (explain_request("SKU-1", "", "NOPE", ""), "group_id"),
        (explain_request("SKU-1", "DC-EAST", "EAST", ""), "group_id"),
        (explain_request("SKU-1", "", "", "tomorrow"), "as_of_date"),
    ] {
        let status = app
            .availability
            .explain(request)
            .await
            .expect_err("refused");
        assert_bad_field(&status, field);
        assert!(status.message().len() < 300, "{status:?}");
    }
    // The same unknown node as GetAvailability reports it.
    let unknown = pb::AvailabilityRequest {
        skus: vec!["SKU-1".into()],
        node_ids: vec!["DC-NOPE".into()],
        ..Default::default()
    };
    let status = app
        .availability
        .get_availability(unknown)
        .await
        .expect_err("refused");
    assert_bad_field(&status, "node_ids[0]");
}

/// Each item's nodes rebuilt from its columns and the answer's node ids.
fn entries_from_columns(answer: &pb::AvailabilityResponse) -> Vec<Vec<pb::NodeAvailability>> {
    answer
        .items
        .iter()
        .map(|item| {
            assert!(item.nodes.is_empty(), "columns instead of entries");
            let columns = item.columns.as_ref().expect("columns");
            let date = |i: usize| columns.earliest_date.get(i).cloned().unwrap_or_default();
            (0..answer.node_ids.len())
                .map(|i| pb::NodeAvailability {
                    node_id: answer.node_ids[i].clone(),
                    atp: columns.atp[i],
                    on_hand: columns.on_hand[i],
                    reserved: columns.reserved[i],
                    allocated: columns.allocated[i],
                    safety_stock: columns.safety_stock[i],
                    inbound: columns.inbound[i],
                    earliest_date: date(i),
                    degraded: columns.degraded.contains(&(i as u32)),
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn columns_answer_every_figure_the_entries_do() {
    let mut app = spawn_app().await;
    explained_stock(&mut app).await;
    app.apply(
        "ERP",
        1,
        vec![set_receipt(
            "SKU-2",
            "DC-WEST",
            OnOrder,
            "PO-9",
            "2026-03-10",
            20,
        )],
    )
    .await;
    // WMS-EAST goes stale: its node is degraded.
    app.clock.advance_ms(301_000);
    app.apply("WMS-WEST", 0, vec![]).await;
    let skus = ["SKU-1", "SKU-2", "NEVER-SEEN"];
    let named = pb::AvailabilityRequest {
        node_ids: vec!["STORE-CHI".into(), "DC-EAST".into()],
        ..ask(&skus, 0)
    };
    for request in [ask(&skus, 0), ask(&skus, 12), named] {
        let entries = app.availability(request.clone()).await;
        assert!(entries.node_ids.is_empty() && entries.items[0].columns.is_none());
        let columns = pb::AvailabilityRequest {
            columns: true,
            ..request.clone()
        };
        let columns = app.availability(columns).await;
        let rebuilt = entries_from_columns(&columns);
        for (i, item) in entries.items.iter().enumerate() {
            assert_eq!(rebuilt[i], item.nodes, "{request:?}, {}", item.sku);
            let totals = |item: &pb::ItemAvailability| {
                let groups = item.groups.clone();
                (item.network_atp, item.network_earliest_date.clone(), groups)
            };
            assert_eq!(totals(&columns.items[i]), totals(item));
        }
        let degraded = entries.items[0].nodes.iter().filter(|n| n.degraded).count();
        assert!(degraded > 0, "a stale feed's node is among those asked");
    }
}

#[tokio::test]
async fn a_caller_holding_the_node_list_is_spared_the_ids_until_it_changes() {
    let mut app = spawn_app().await;
    explained_stock(&mut app).await;
    let columns = |known_node_list: u64| pb::AvailabilityRequest {
        columns: true,
        known_node_list,
        ..ask(&["SKU-1", "SKU-2"], 12)
    };
    let first = app.availability(columns(0)).await;
    assert!(!first.node_ids.is_empty() && first.node_list != 0);
    let list = first.node_list;

    // The list held: no ids, the same figures, which the held ids still name.
    let spared = app.availability(columns(list)).await;
    assert!(spared.node_ids.is_empty(), "{spared:?}");
    assert_eq!(spared.node_list, list);
    let held = pb::AvailabilityResponse {
        node_ids: first.node_ids.clone(),
        ..spared
    };
    assert_eq!(entries_from_columns(&held), entries_from_columns(&first));

    // Other nodes asked: named in full, under another list.
    let named = pb::AvailabilityRequest {
        node_ids: vec!["DC-WEST".into(), "DC-EAST".into()],
        ..columns(list)
    };
    let named = app.availability(named).await;
    assert_eq!(named.node_ids, ["DC-WEST", "DC-EAST"]);
    assert_ne!(named.node_list, list);

    // A node added to the network: the held list is stale, so the ids come again.
    let added = node(
        "DC-SOUTH",
        pb::NodeKind::Dc,
        "America/Chicago",
        &["ALL-DCS"],
    );
    app.admin
        .upsert_nodes(pb::UpsertNodesRequest { nodes: vec![added] })
        .await
        .expect("node");
    let changed = app.availability(columns(list)).await;
    assert_eq!(changed.node_ids.len(), first.node_ids.len() + 1);
    assert!(changed.node_ids.iter().any(|id| id == "DC-SOUTH"));
    assert_ne!(changed.node_list, list);
    let again = app.availability(columns(changed.node_list)).await;
    assert!(again.node_ids.is_empty() && again.node_list == changed.node_list);

    // Entries have no node list to hold.
    let entries = pb::AvailabilityRequest {
        columns: false,
        ..columns(list)
    };
    let status = app
        .availability
        .get_availability(entries)
        .await
        .expect_err("refused");
    assert_bad_field(&status, "known_node_list");
}
