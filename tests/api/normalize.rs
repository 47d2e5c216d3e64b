//! Normalization over gRPC: a source's own item codes, GTINs, location codes and units, and
//! the rejections of what its tables do not map.

use promised::grpc::pb;

use crate::durability::durable;
use crate::helpers::*;
use crate::operations::scrape;
use crate::redis::RedisServer;
use crate::sync::logged_rejections;

const GTIN: &str = "00012345678905";

fn item(code: &str, sku: &str) -> pb::ItemCode {
    pb::ItemCode {
        code: code.into(),
        sku: sku.into(),
    }
}

fn location(code: &str, node_id: &str) -> pb::LocationCode {
    pb::LocationCode {
        code: code.into(),
        node_id: node_id.into(),
    }
}

fn unit(sku: &str, eaches: u32, units: u32) -> pb::UnitFactor {
    pb::UnitFactor {
        sku: sku.into(),
        eaches,
        units,
    }
}

/// WMS-EAST names SKU-1 `ITEM-9` and counts it in cases of 12, names SKU-2 by its GTIN and
/// counts singles of it where SKU-2 is a pair, and calls DC-EAST `WH1`.
fn east_tables() -> pb::SourceMapping {
    pb::SourceMapping {
        source_id: "WMS-EAST".into(),
        items: vec![item("ITEM-9", "SKU-1"), item(GTIN, "SKU-2")],
        locations: vec![location("WH1", "DC-EAST")],
        units: vec![unit("SKU-1", 12, 1), unit("SKU-2", 1, 2)],
    }
}

async fn map(app: &mut TestApp, mappings: Vec<pb::SourceMapping>) -> Result<(), tonic::Status> {
    let request = pb::UpsertMappingsRequest { mappings };
    app.admin.upsert_mappings(request).await.map(|_| ())
}

fn on_hand_of(item: &pb::ItemAvailability) -> i64 {
    node_view(item, "DC-EAST").on_hand
}

#[tokio::test]
async fn a_feed_in_its_own_codes_and_cases_lands_as_skus_nodes_and_eaches() {
    let mut app = spawn_app().await;
    map(&mut app, vec![east_tables()]).await.expect("mapped");
    let ack = app
        .apply(
            "WMS-EAST",
            1,
            vec![
                set_on_hand("ITEM-9", "WH1", 3, START_MS),
                set_on_hand(GTIN, "WH1", 8, START_MS),
                set_on_hand("SKU-1", "WH1", 1, START_MS),
                set_on_hand("ITEM-9", "DC-EAST", 1, START_MS),
                adjust_on_hand(GTIN, "WH1", 7),
                adjust_on_hand("ITEM-9", "WH1", -1),
            ],
        )
        .await;
    use pb::RejectReason::{UnitNotConvertible, UnknownLocationCode, UnknownSkuCode};
    let reasons: Vec<(u32, i32)> = ack.rejections.iter().map(|r| (r.index, r.reason)).collect();
    let expected = [
        (2, UnknownSkuCode),
        (3, UnknownLocationCode),
        (4, UnitNotConvertible),
    ];
    assert_eq!(reasons, expected.map(|(i, r)| (i, r as i32)));
    assert_eq!(ack.applied, 3, "the rest of the batch applies");
    assert_eq!(on_hand_of(&app.item("SKU-1").await), 36 - 12);
    assert_eq!(on_hand_of(&app.item("SKU-2").await), 4);
    let logged = logged_rejections(&mut app.supply, "WMS-EAST").await;
    assert_eq!(logged.len(), 3);
    let metrics = scrape(&app).await;
    for reason in [
        "unknown_sku_code",
        "unknown_location_code",
        "unit_not_convertible",
    ] {
        let label = format!("outcome=\"rejected\",reason=\"{reason}\"");
        assert!(metrics.contains(&label), "{label} missing from the metrics");
    }
}

#[tokio::test]
async fn a_full_sync_in_the_sources_codes_is_normalized_before_it_is_staged() {
    let mut app = spawn_app().await;
    map(&mut app, vec![east_tables()]).await.expect("mapped");
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand(GTIN, "WH1", 20, START_MS - 1)],
    )
    .await;
    let begin = pb::BeginSyncRequest {
        source_id: "WMS-EAST".into(),
        sync_id: "codes".into(),
        supply_type: pb::SupplyType::OnHand.into(),
        node_ids: vec!["DC-EAST".into()],
        as_of: as_of(START_MS),
    };
    app.supply.begin_sync(begin).await.expect("open");
    let position = |sku: &str, node: &str, quantity| pb::SyncPosition {
        sku: sku.into(),
        node_id: node.into(),
        quantity,
        ..Default::default()
    };
    let part = pb::SyncPartRequest {
        source_id: "WMS-EAST".into(),
        sync_id: "codes".into(),
        positions: vec![
            position("ITEM-9", "WH1", 2),
            position(GTIN, "WH1", 3),
            position("ITEM-7", "WH1", 1),
        ],
    };
    let staged = app
        .supply
        .sync_part(part)
        .await
        .expect("staged")
        .into_inner();
    let reasons: Vec<i32> = staged.rejections.iter().map(|r| r.reason).collect();
    use pb::RejectReason::{UnitNotConvertible, UnknownSkuCode};
    assert_eq!(reasons, [UnitNotConvertible as i32, UnknownSkuCode as i32]);
    let commit = pb::CommitSyncRequest {
        source_id: "WMS-EAST".into(),
        sync_id: "codes".into(),
        force: true,
    };
    let ack = app
        .supply
        .commit_sync(commit)
        .await
        .expect("committed")
        .into_inner();
    assert_eq!((ack.set, ack.zeroed), (1, 1));
    assert_eq!(on_hand_of(&app.item("SKU-1").await), 24);
    assert_eq!(on_hand_of(&app.item("SKU-2").await), 0);
}

#[tokio::test]
async fn a_mapping_naming_an_unknown_node_or_source_is_refused_by_field_and_changes_nothing() {
    let mut app = spawn_app().await;
    let mut bad = east_tables();
    bad.locations.push(location("WH9", "DC-NOWHERE"));
    bad.units.push(unit("SKU-3", 0, 1));
    let stranger = pb::SourceMapping {
        source_id: "NOBODY".into(),
        ..Default::default()
    };
    let status = map(&mut app, vec![bad, stranger])
        .await
        .expect_err("refused");
    assert_bad_field(&status, "mappings[0].locations[1].node_id");
    assert_bad_field(&status, "mappings[0].units[2]");
    assert_bad_field(&status, "mappings[1].source_id");
    let mut repeated = east_tables();
    repeated.items.push(item("ITEM-9", "SKU-3"));
    let status = map(&mut app, vec![repeated]).await.expect_err("refused");
    assert_bad_field(&status, "mappings[0].items[2]");
    let ack = app
        .apply(
            "WMS-EAST",
            1,
            vec![set_on_hand("SKU-1", "DC-EAST", 5, START_MS)],
        )
        .await;
    assert!(
        ack.rejections.is_empty(),
        "no tables were installed: {ack:?}"
    );
}

#[tokio::test]
async fn tables_survive_a_restart_and_emptying_them_takes_ids_as_sent() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "mappings")).await;
    map(&mut app, vec![east_tables()]).await.expect("mapped");
    app.shutdown().await;
    let mut app = spawn_app_with(durable(&redis, "mappings")).await;
    let ack = app
        .apply(
            "WMS-EAST",
            1,
            vec![set_on_hand("ITEM-9", "WH1", 1, START_MS)],
        )
        .await;
    assert_eq!(ack.applied, 1, "{ack:?}");
    assert_eq!(on_hand_of(&app.item("SKU-1").await), 12);
    let emptied = pb::SourceMapping {
        source_id: "WMS-EAST".into(),
        ..Default::default()
    };
    map(&mut app, vec![emptied]).await.expect("emptied");
    let ack = app
        .apply(
            "WMS-EAST",
            2,
            vec![set_on_hand("SKU-1", "DC-EAST", 2, START_MS)],
        )
        .await;
    assert_eq!(ack.applied, 1, "{ack:?}");
    let code = app
        .apply(
            "WMS-EAST",
            3,
            vec![set_on_hand("ITEM-9", "WH1", 2, START_MS)],
        )
        .await;
    assert_eq!(
        code.rejections[0].reason,
        pb::RejectReason::UnknownNode as i32
    );
}
