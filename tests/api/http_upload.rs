//! Supply CSV uploads over HTTP: imported as they stream in, through the Supply adapter, the
//! answer a summary of applied and rejected lines; a bad file is refused before any row.

use promised::config::ServeArgs;
use serde_json::json;

use crate::helpers::*;
use crate::http_client::Http;
use crate::import::{east_codes, AT, HEADER};

const CSV: [(&str, &str); 1] = [("content-type", "text/csv")];

fn on_hand(item: &promised::grpc::pb::ItemAvailability) -> i64 {
    node_view(item, "DC-EAST").on_hand
}

#[tokio::test]
async fn an_uploaded_full_sync_applies_and_answers_its_summary() {
    let mut app = spawn_app().await;
    let before = vec![set_on_hand("SKU-2", "DC-EAST", 9, START_MS - 1000)];
    app.apply("WMS-EAST", 1, before).await;
    east_codes(&mut app).await;
    let body = format!("{HEADER}ITEM-9,WH1,on_hand,2,,,{AT}\nITEM-9,WH9,on_hand,1,,,{AT}\n");
    let http = Http::new(app.http_addr);
    // It would zero one of two positions: past the wipe guard's half, hence `force`.
    let path = "/v1/sources/WMS-EAST/files?full=true&force=true";
    let reply = http.send("POST", path, &CSV, Some(body.as_bytes())).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let expected = json!({
        "rows": 2, "applied": 1, "stale": 0, "rejected": 1,
        "rejections": [{"line": 3, "field": "UNKNOWN_LOCATION_CODE",
                        "detail": reply.body["rejections"][0]["detail"]}],
        "syncs": [{"syncId": "csv-on_hand-1772463600000", "set": 1, "zeroed": 1, "unchanged": 0}],
    });
    assert_eq!(reply.body, expected);
    assert_eq!(on_hand(&app.item("SKU-1").await), 24);
    assert_eq!(on_hand(&app.item("SKU-2").await), 0);
}

#[tokio::test]
async fn an_upload_larger_than_a_json_body_streams_through() {
    let args = ServeArgs {
        max_message_bytes: Some("4096".into()),
        ..ServeArgs::default()
    };
    let app = spawn_app_with(args).await;
    let mut body = String::from(HEADER);
    for i in 0..2_000 {
        body.push_str(&format!("SKU-{i},DC-EAST,on_hand,{},,,{AT}\n", i % 7));
    }
    assert!(body.len() > 10 * 4096);
    let http = Http::new(app.http_addr);
    let reply = http
        .send(
            "POST",
            "/v1/sources/WMS-EAST/files",
            &CSV,
            Some(body.as_bytes()),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        (reply.body["rows"].as_u64(), reply.body["applied"].as_u64()),
        (Some(2000), Some(2000))
    );
}

#[tokio::test]
async fn a_bad_upload_is_refused_and_changes_nothing() {
    let mut app = spawn_app().await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 7, START_MS)],
    )
    .await;
    let http = Http::new(app.http_addr);
    let path = "/v1/sources/WMS-EAST/files?full=true";
    let missing = format!("sku,node,supply type,as of\nSKU-1,DC-EAST,on_hand,{AT}\n");
    let reply = http
        .send("POST", path, &CSV, Some(missing.as_bytes()))
        .await;
    assert_eq!((reply.status, reply.code()), (400, 3), "{:?}", reply.body);
    let violation = &reply.detail("BadRequest")["fieldViolations"][0];
    assert_eq!(violation["field"], "quantity", "{:?}", reply.body);
    let json_body = http.post_text(path, &missing, &[]).await;
    assert_eq!(json_body.status, 415, "{:?}", json_body.body);
    let unknown = http
        .send(
            "POST",
            "/v1/sources/WMS-EAST/files?wipe=1",
            &CSV,
            Some(missing.as_bytes()),
        )
        .await;
    assert_eq!(unknown.status, 400, "{:?}", unknown.body);
    assert_eq!(on_hand(&app.item("SKU-1").await), 7);
}
