use promised::grpc::pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn ingested_supply_is_queryable() {
    let mut app = spawn_app().await;
    let ack = app
        .apply(
            "WMS-EAST",
            1,
            vec![set_on_hand("SKU-1", "DC-EAST", 40, START_MS)],
        )
        .await;
    assert_eq!(
        (ack.seq, ack.applied, ack.rejected, ack.durable_seq),
        (1, 1, 0, 1)
    );
    let item = app.item("SKU-1").await;
    assert_eq!(node_view(&item, "DC-EAST").on_hand, 40);
    assert_eq!(node_atp(&item, "DC-EAST"), 40);
    assert_eq!(node_atp(&item, "DC-WEST"), 0);
    assert_eq!(item.network_atp, 40);
}

#[tokio::test]
async fn duplicate_batch_is_acknowledged_but_not_reapplied() {
    let mut app = spawn_app().await;
    let delta = || vec![adjust_on_hand("SKU-1", "DC-EAST", 5)];
    app.apply("WMS-EAST", 7, delta()).await;
    let again = app.apply("WMS-EAST", 7, delta()).await;
    assert!(again.duplicate);
    assert_eq!((again.applied, again.durable_seq), (0, 7));
    let older = app.apply("WMS-EAST", 3, delta()).await;
    assert!(older.duplicate);
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-EAST"), 5);
    // A gap in sequences is allowed; the next higher sequence applies.
    assert!(!app.apply("WMS-EAST", 9, delta()).await.duplicate);
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-EAST"), 10);
}

#[tokio::test]
async fn older_set_is_ignored_as_stale() {
    let mut app = spawn_app().await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 30, START_MS)],
    )
    .await;
    let ack = app
        .apply(
            "WMS-EAST",
            2,
            vec![set_on_hand("SKU-1", "DC-EAST", 99, START_MS - 1_000)],
        )
        .await;
    assert_eq!((ack.applied, ack.stale), (0, 1));
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-EAST"), 30);
    // A delta after the SET still applies on top of it; a newer SET replaces both.
    app.apply("WMS-EAST", 3, vec![adjust_on_hand("SKU-1", "DC-EAST", -4)])
        .await;
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-EAST"), 26);
    app.apply(
        "WMS-EAST",
        4,
        vec![set_on_hand("SKU-1", "DC-EAST", 12, START_MS + 1)],
    )
    .await;
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-EAST"), 12);
}

#[tokio::test]
async fn invalid_updates_are_rejected_with_reasons_while_the_rest_applies() {
    use pb::RejectReason as R;
    let mut app = spawn_app().await;
    let mut missing_eta = set_receipt(
        "SKU-1",
        "DC-EAST",
        pb::SupplyType::InTransit,
        "ASN-1",
        "",
        5,
    );
    missing_eta.eta.clear();
    let mut no_as_of = set_on_hand("SKU-1", "DC-EAST", 5, START_MS);
    no_as_of.as_of = None;
    let mut no_type = set_on_hand("SKU-1", "DC-EAST", 5, START_MS);
    no_type.supply_type = 0;
    let cases = vec![
        (set_on_hand("SKU-1", "DC-WEST", 5, START_MS), R::NotOwned),
        (set_on_hand("SKU-1", "NOWHERE", 5, START_MS), R::UnknownNode),
        (
            set_on_hand("SKU-1", "DC-EAST", -5, START_MS),
            R::NegativeQuantity,
        ),
        (adjust_on_hand("SKU-2", "DC-EAST", -1), R::NegativeResult),
        (
            set_on_hand(&"X".repeat(129), "DC-EAST", 5, START_MS),
            R::OversizedField,
        ),
        (
            set_on_hand("SKU-1", "DC-EAST", 2_000_000_000_000, START_MS),
            R::OversizedField,
        ),
        (set_on_hand("", "DC-EAST", 5, START_MS), R::MissingSku),
        (
            set_receipt(
                "SKU-1",
                "DC-EAST",
                pb::SupplyType::InTransit,
                "",
                "2026-03-05",
                5,
            ),
            R::MissingReference,
        ),
        (missing_eta, R::MissingEta),
        (
            set_receipt(
                "SKU-1",
                "DC-EAST",
                pb::SupplyType::InTransit,
                "ASN-1",
                "03/05/2026",
                5,
            ),
            R::InvalidEta,
        ),
        (no_as_of, R::MissingAsOf),
        (no_type, R::InvalidSupplyType),
        (
            set_receipt(
                "SKU-1",
                "DC-EAST",
                pb::SupplyType::OnOrder,
                "PO-1",
                "2026-03-09",
                5,
            ),
            R::NotOwned,
        ),
    ];
    let mut updates: Vec<pb::SupplyUpdate> = cases.iter().map(|(u, _)| u.clone()).collect();
    updates.push(set_on_hand("SKU-1", "DC-EAST", 17, START_MS));
    let ack = app.apply("WMS-EAST", 1, updates).await;
    assert_eq!(ack.applied, 1);
    assert_eq!(ack.rejected as usize, cases.len());
    for (i, (_, reason)) in cases.iter().enumerate() {
        let rejection = &ack.rejections[i];
        assert_eq!(
            (rejection.index as usize, rejection.reason()),
            (i, *reason),
            "{rejection:?}"
        );
        assert!(!rejection.detail.is_empty());
    }
    let item = app.item("SKU-1").await;
    assert_eq!(node_atp(&item, "DC-EAST"), 17);
    assert_eq!(node_view(&item, "DC-EAST").inbound, 0);
    assert_eq!(
        app.stats().await.positions,
        1,
        "rejected updates leave no positions behind"
    );
}

#[tokio::test]
async fn rejections_are_listed_newest_first_per_source() {
    let mut app = spawn_app().await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("A", "DC-WEST", 1, START_MS)],
    )
    .await;
    app.apply("POS", 1, vec![set_on_hand("B", "NOWHERE", 1, START_MS)])
        .await;
    app.apply(
        "WMS-EAST",
        2,
        vec![set_on_hand("C", "DC-WEST", 1, START_MS)],
    )
    .await;
    let listed = |source: &str| pb::ListRejectionsRequest {
        source_id: source.into(),
        limit: 0,
    };
    let all = app
        .supply
        .list_rejections(listed(""))
        .await
        .expect("list")
        .into_inner();
    let skus: Vec<&str> = all
        .rejections
        .iter()
        .filter_map(|r| r.rejection.as_ref().map(|r| r.sku.as_str()))
        .collect();
    assert_eq!(skus, ["C", "B", "A"]);
    assert_eq!(all.total, 3);
    let wms = app
        .supply
        .list_rejections(listed("WMS-EAST"))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(wms.rejections.len(), 2);
    assert_eq!(wms.rejections[0].seq, 2);
}

#[tokio::test]
async fn rejection_log_is_bounded() {
    let args = promised::config::ServeArgs {
        rejection_log_len: Some("2".into()),
        ..Default::default()
    };
    let mut app = spawn_app_with(args).await;
    let bad = (0..5)
        .map(|i| set_on_hand(&format!("S{i}"), "NOWHERE", 1, START_MS))
        .collect();
    app.apply("POS", 1, bad).await;
    let request = pb::ListRejectionsRequest {
        source_id: String::new(),
        limit: 100,
    };
    let listed = app
        .supply
        .list_rejections(request)
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.rejections.len(), 2);
    assert_eq!(listed.total, 5);
}

#[tokio::test]
async fn dated_receipts_are_keyed_by_reference() {
    let mut app = spawn_app().await;
    use pb::SupplyType::InTransit;
    app.apply(
        "WMS-EAST",
        1,
        vec![
            set_receipt("SKU-1", "DC-EAST", InTransit, "ASN-1", "2026-03-04", 10),
            set_receipt("SKU-1", "DC-EAST", InTransit, "ASN-2", "2026-03-06", 5),
        ],
    )
    .await;
    assert_eq!(node_view(&app.item("SKU-1").await, "DC-EAST").inbound, 15);
    // Re-sending a reference replaces it; zero removes it.
    app.apply(
        "WMS-EAST",
        2,
        vec![
            set_receipt("SKU-1", "DC-EAST", InTransit, "ASN-1", "2026-03-05", 8),
            set_receipt("SKU-1", "DC-EAST", InTransit, "ASN-2", "", 0),
        ],
    )
    .await;
    assert_eq!(node_view(&app.item("SKU-1").await, "DC-EAST").inbound, 8);
}

#[tokio::test]
async fn feed_stream_acknowledges_each_batch_in_order() {
    let app = spawn_app().await;
    let (batches, outbound) = mpsc::channel(16);
    let mut supply = app.supply.clone();
    let mut acks = supply
        .stream_updates(ReceiverStream::new(outbound))
        .await
        .expect("stream opens")
        .into_inner();
    for seq in 1..=5u64 {
        let update = adjust_on_hand("SKU-1", "DC-EAST", 2);
        batches
            .send(batch("WMS-EAST", seq, vec![update]))
            .await
            .expect("send");
    }
    batches
        .send(batch(
            "WMS-EAST",
            3,
            vec![adjust_on_hand("SKU-1", "DC-EAST", 2)],
        ))
        .await
        .expect("send");
    batches
        .send(batch("WMS-EAST", 0, vec![]))
        .await
        .expect("heartbeat");
    let mut seen = Vec::new();
    for _ in 0..7 {
        let ack = acks.message().await.expect("ack").expect("stream open");
        seen.push((ack.seq, ack.duplicate, ack.durable_seq));
    }
    assert_eq!(
        seen,
        [
            (1, false, 1),
            (2, false, 2),
            (3, false, 3),
            (4, false, 4),
            (5, false, 5),
            (3, true, 5),
            (0, false, 5)
        ]
    );
    drop(batches);
    assert!(acks.message().await.expect("clean end").is_none());
    let mut app = app;
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-EAST"), 10);
}

#[tokio::test]
async fn feed_stream_for_an_unknown_source_ends_with_not_found() {
    let app = spawn_app().await;
    let (batches, outbound) = mpsc::channel(1);
    let mut supply = app.supply.clone();
    let mut acks = supply
        .stream_updates(ReceiverStream::new(outbound))
        .await
        .expect("stream opens")
        .into_inner();
    batches
        .send(batch("NOBODY", 1, vec![adjust_on_hand("S", "DC-EAST", 1)]))
        .await
        .expect("send");
    let status = acks.message().await.expect_err("stream fails");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn feed_streams_beyond_the_limit_are_refused() {
    let args = promised::config::ServeArgs {
        max_feed_streams: Some("1".into()),
        ..Default::default()
    };
    let app = spawn_app_with(args).await;
    let (_first_batches, first) = mpsc::channel::<pb::SupplyBatch>(1);
    let mut supply = app.supply.clone();
    let _open = supply
        .stream_updates(ReceiverStream::new(first))
        .await
        .expect("first stream");
    let (_second_batches, second) = mpsc::channel::<pb::SupplyBatch>(1);
    let status = supply
        .stream_updates(ReceiverStream::new(second))
        .await
        .expect_err("second stream refused");
    assert_eq!(status.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn silent_source_degrades_its_nodes_until_heard_again() {
    let mut app = spawn_app().await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 40, START_MS)],
    )
    .await;
    app.apply(
        "POS",
        1,
        vec![set_on_hand("SKU-1", "STORE-CHI", 6, START_MS)],
    )
    .await;
    // POS goes stale after 120 s; keep the WMS alive with heartbeats.
    app.clock.advance_ms(200_000);
    app.apply("WMS-EAST", 0, vec![]).await;
    let item = app.item("SKU-1").await;
    let store = node_view(&item, "STORE-CHI");
    assert!(store.degraded);
    assert_eq!(store.atp, 0, "the default policy excludes degraded nodes");
    assert_eq!(store.on_hand, 6, "the figures are still reported");
    assert!(!node_view(&item, "DC-EAST").degraded);
    assert_eq!(item.network_atp, 40);
    let stats = app.stats().await;
    assert_eq!(stats.degraded_nodes, 1);
    let pos = stats
        .source_stats
        .iter()
        .find(|s| s.source_id == "POS")
        .expect("POS stats");
    assert!(pos.stale && pos.age_seconds >= 200.0);
    // A heartbeat brings the store back.
    app.apply("POS", 0, vec![]).await;
    let item = app.item("SKU-1").await;
    assert!(!node_view(&item, "STORE-CHI").degraded);
    assert_eq!(item.network_atp, 46);
}

#[tokio::test]
async fn buffer_policy_holds_back_a_share_of_a_degraded_node() {
    let args = promised::config::ServeArgs {
        stale_policy: Some("buffer:25".into()),
        ..Default::default()
    };
    let mut app = spawn_app_with(args).await;
    app.apply(
        "POS",
        1,
        vec![set_on_hand("SKU-1", "STORE-CHI", 10, START_MS)],
    )
    .await;
    app.clock.advance_ms(121_000);
    let item = app.item("SKU-1").await;
    let store = node_view(&item, "STORE-CHI");
    assert!(store.degraded);
    // 25% of 10 rounded up = 3 held back.
    assert_eq!((store.atp, store.safety_stock), (7, 3));
}
