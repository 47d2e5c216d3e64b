//! Every bad field gets INVALID_ARGUMENT naming it, and leaves the state as it was.

use promised::config::ServeArgs;
use promised::grpc::pb;
use tonic::Code;

use crate::helpers::*;

/// A field a case expects to be named, and how the case spoils a valid message.
type Case<T> = (&'static str, Box<dyn Fn(&mut T)>);

fn valid_node() -> pb::Node {
    node("DC-NEW", pb::NodeKind::Dc, "America/Denver", &["WEST"])
}

#[tokio::test]
async fn bad_nodes_are_refused_field_by_field_and_nothing_is_applied() {
    let mut app = spawn_app().await;
    let cases: Vec<Case<pb::Node>> = vec![
        ("nodes[1].id", Box::new(|n| n.id.clear())),
        ("nodes[1].id", Box::new(|n| n.id = "N".repeat(65))),
        ("nodes[1].kind", Box::new(|n| n.kind = 0)),
        (
            "nodes[1].time_zone",
            Box::new(|n| n.time_zone = "Mars/Olympus".into()),
        ),
        ("nodes[1].lat", Box::new(|n| n.lat = 91.0)),
        ("nodes[1].lon", Box::new(|n| n.lon = -181.0)),
        (
            "nodes[1].group_ids[0]",
            Box::new(|n| n.group_ids = vec!["NOPE".into()]),
        ),
        ("nodes[1].safety_stock", Box::new(|n| n.safety_stock = -1)),
    ];
    for (field, spoil) in cases {
        let mut bad = valid_node();
        bad.id = "DC-BAD".into();
        spoil(&mut bad);
        let request = pb::UpsertNodesRequest {
            nodes: vec![valid_node(), bad],
        };
        let status = app.admin.upsert_nodes(request).await.expect_err(field);
        assert_bad_field(&status, field);
        assert_eq!(app.stats().await.nodes, 3, "{field}: no node applied");
    }
}

#[tokio::test]
async fn bad_groups_and_sources_are_refused_field_by_field() {
    let mut app = spawn_app().await;
    let group = pb::NodeGroup {
        id: String::new(),
        description: String::new(),
    };
    let status = app
        .admin
        .upsert_groups(pb::UpsertGroupsRequest {
            groups: vec![group],
        })
        .await
        .expect_err("empty group id");
    assert_bad_field(&status, "groups[0].id");

    let good = || {
        source(
            "ERP-2",
            pb::SourceKind::Erp,
            &[],
            &[pb::SupplyType::OnOrder],
            60,
        )
    };
    let cases: Vec<Case<pb::Source>> = vec![
        ("sources[0].id", Box::new(|s| s.id.clear())),
        ("sources[0].kind", Box::new(|s| s.kind = 0)),
        (
            "sources[0].owned_node_ids[1]",
            Box::new(|s| s.owned_node_ids = vec!["DC-EAST".into(), "NOPE".into()]),
        ),
        (
            "sources[0].owned_supply_types",
            Box::new(|s| s.owned_supply_types.clear()),
        ),
        (
            "sources[0].owned_supply_types[0]",
            Box::new(|s| s.owned_supply_types = vec![0]),
        ),
    ];
    for (field, spoil) in cases {
        let mut bad = good();
        spoil(&mut bad);
        let request = pb::UpsertSourcesRequest { sources: vec![bad] };
        let status = app.admin.upsert_sources(request).await.expect_err(field);
        assert_bad_field(&status, field);
        assert_eq!(app.stats().await.sources, 4, "{field}: no source applied");
    }
}

#[tokio::test]
async fn bad_safety_stock_entries_are_refused_and_none_applied() {
    let mut app = spawn_app().await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    let entry = |sku: &str, node: &str, quantity: i64| pb::SafetyStockEntry {
        sku: sku.into(),
        node_id: node.into(),
        quantity,
    };
    for (field, bad) in [
        ("entries[1].sku", entry("", "DC-EAST", 1)),
        ("entries[1].node_id", entry("SKU-1", "NOPE", 1)),
        ("entries[1].quantity", entry("SKU-1", "DC-EAST", -1)),
    ] {
        let request = pb::SetSafetyStockRequest {
            entries: vec![entry("SKU-1", "DC-EAST", 7), bad],
        };
        let status = app.admin.set_safety_stock(request).await.expect_err(field);
        assert_bad_field(&status, field);
        assert_eq!(
            node_atp(&app.item("SKU-1").await, "DC-EAST"),
            10,
            "{field}: nothing applied"
        );
    }
}

#[tokio::test]
async fn bad_batches_are_refused_whole() {
    let mut app = spawn_app_with(ServeArgs {
        max_batch_updates: Some("2".into()),
        ..Default::default()
    })
    .await;
    let update = || set_on_hand("SKU-1", "DC-EAST", 10, START_MS);
    let status = app
        .supply
        .apply_batch(batch("WMS-EAST", 1, vec![update(), update(), update()]))
        .await
        .expect_err("too many updates");
    assert_bad_field(&status, "updates");
    let status = app
        .supply
        .apply_batch(batch("WMS-EAST", 0, vec![update()]))
        .await
        .expect_err("no sequence");
    assert_bad_field(&status, "seq");
    let status = app
        .supply
        .apply_batch(batch("NOBODY", 1, vec![update()]))
        .await
        .expect_err("unknown source");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(app.stats().await.positions, 0);
    // The refused sequence 1 was not consumed.
    assert_eq!(app.apply("WMS-EAST", 1, vec![update()]).await.applied, 1);
}

#[tokio::test]
async fn bad_availability_requests_name_the_field() {
    let mut app = spawn_app().await;
    let base = || pb::AvailabilityRequest {
        skus: vec!["SKU-1".into()],
        ..Default::default()
    };
    let cases: Vec<(&str, pb::AvailabilityRequest)> = vec![
        (
            "skus",
            pb::AvailabilityRequest {
                skus: vec![],
                ..base()
            },
        ),
        (
            "skus[1]",
            pb::AvailabilityRequest {
                skus: vec!["A".into(), String::new()],
                ..base()
            },
        ),
        (
            "skus[0]",
            pb::AvailabilityRequest {
                skus: vec!["S".repeat(129)],
                ..base()
            },
        ),
        (
            "node_ids[0]",
            pb::AvailabilityRequest {
                node_ids: vec!["NOPE".into()],
                ..base()
            },
        ),
        (
            "group_ids[0]",
            pb::AvailabilityRequest {
                group_ids: vec!["NOPE".into()],
                ..base()
            },
        ),
        (
            "as_of_date",
            pb::AvailabilityRequest {
                as_of_date: "tomorrow".into(),
                ..base()
            },
        ),
        (
            "quantity",
            pb::AvailabilityRequest {
                quantity: -3,
                ..base()
            },
        ),
        (
            "totals_only",
            pb::AvailabilityRequest {
                totals_only: true,
                node_ids: vec!["DC-EAST".into()],
                ..base()
            },
        ),
    ];
    for (field, request) in cases {
        let status = app
            .availability
            .get_availability(request)
            .await
            .expect_err(field);
        assert_bad_field(&status, field);
    }
}

/// Sends `message` to `path` as if it were that method's request, the way a client with a
/// different or broken schema would.
async fn send_as<M: prost::Message + Default + 'static>(
    app: &TestApp,
    path: &'static str,
    message: M,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.expect("ready");
    let codec = tonic_prost::ProstCodec::<M, pb::Reservation>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(message), path, codec)
        .await
        .expect_err("the message does not decode")
}

#[tokio::test]
async fn a_message_that_does_not_decode_is_invalid_argument_not_internal() {
    let app = spawn_app().await;
    // Field 1 of GetReservationRequest is a string; CheckInvariantsRequest sends a varint.
    let garbled = pb::CheckInvariantsRequest { repair: true };
    let status = send_as(&app, "/promised.v1.Reservations/Get", garbled).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_resource_exhausted() {
    let args = ServeArgs {
        max_message_bytes: Some("1024".into()),
        ..ServeArgs::default()
    };
    let mut app = spawn_app_with(args).await;
    let request = pb::AvailabilityRequest {
        skus: (0..200).map(|i| format!("SKU-{i:06}")).collect(),
        ..Default::default()
    };
    let status = app
        .availability
        .get_availability(request)
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

#[tokio::test]
async fn an_unreadable_feed_frame_ends_the_stream_with_invalid_argument() {
    let app = spawn_app().await;
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.expect("ready");
    // Field 1 of SupplyBatch is the source id, a string; this frame sends a varint there.
    let frames = tokio_stream::iter(vec![pb::CheckInvariantsRequest { repair: true }]);
    let codec = tonic_prost::ProstCodec::<pb::CheckInvariantsRequest, pb::SupplyAck>::default();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/promised.v1.Supply/StreamUpdates");
    let mut acks = grpc
        .streaming(tonic::Request::new(frames), path, codec)
        .await
        .expect("the stream opens")
        .into_inner();
    let status = acks.message().await.expect_err("the frame is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}
