//! The HTTP/JSON edge over real HTTP on loopback: every route answers, in the proto3 JSON
//! mapping, the same as the gRPC call it stands for; each class of refusal has its HTTP
//! status and a `google.rpc.Status` body with the gRPC details.

use promised::config::ServeArgs;
use promised::grpc::pb;
use promised::grpc::pb::reservations_client::ReservationsClient;
use promised::http::json;
use serde_json::{json, Value};

use crate::durability::durable;
use crate::helpers::{set_on_hand, spawn_app, spawn_app_with, TestApp, START_MS};
use crate::http_client::{Http, Reply};
use crate::redis::RedisServer;

const AS_OF: &str = "2026-03-02T15:00:00Z";

/// The service with 10 of SKU-1 at DC-EAST and 4 at DC-WEST, fed over gRPC.
async fn stocked(args: ServeArgs) -> (TestApp, Http) {
    let mut app = spawn_app_with(args).await;
    let east = vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)];
    app.apply("WMS-EAST", 1, east).await;
    let west = vec![set_on_hand("SKU-1", "DC-WEST", 4, START_MS)];
    app.apply("WMS-WEST", 1, west).await;
    let http = Http::new(app.http_addr);
    (app, http)
}

fn ok(reply: Reply) -> Value {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.body
}

/// The ground service level and one postal code, over HTTP.
async fn with_service_level(http: &Http) {
    let level = json!({"serviceLevels": [{"name": "GROUND", "baseCost": 5.0, "costPerKm": 0.01,
        "transit": [{"maxKm": 500.0, "days": 1}, {"maxKm": 6000.0, "days": 5}]}]});
    assert_eq!(
        ok(http.post("/v1/service-levels:upsert", &level).await)["upserted"],
        1
    );
    let codes = json!({"postalCodes": [{"postalCode": "10001", "country": "US", "lat": 40.75, "lon": -74.0}]});
    assert_eq!(
        ok(http.post("/v1/postal-codes:upsert", &codes).await)["upserted"],
        1
    );
}

#[tokio::test]
async fn availability_of_one_sku_is_a_get_with_64_bit_integers_as_strings() {
    let (_app, http) = stocked(ServeArgs::default()).await;
    let body = ok(http
        .get("/v1/skus/SKU-1/availability?node_ids=DC-EAST")
        .await);
    let item = &body["items"][0];
    assert_eq!(item["sku"], "SKU-1");
    assert_eq!(item["nodes"][0]["nodeId"], "DC-EAST");
    assert_eq!(item["nodes"][0]["atp"], "10", "int64 as a string");
    let query = json!({"skus": ["SKU-1"], "groupIds": ["ALL-DCS"]});
    let body = ok(http.post("/v1/availability:query", &query).await);
    assert_eq!(body["items"][0]["groups"][0]["atp"], "14");
    let explain = json!({"sku": "SKU-1", "nodeId": "DC-EAST"});
    assert_eq!(
        ok(http.post("/v1/availability:explain", &explain).await)["atp"],
        "10"
    );
}

#[tokio::test]
async fn the_same_request_over_grpc_and_http_gets_the_same_answer() {
    let (mut app, http) = stocked(ServeArgs::default()).await;
    let request = pb::AvailabilityRequest {
        skus: vec!["SKU-1".into()],
        group_ids: vec!["ALL-DCS".into()],
        ..Default::default()
    };
    let over_grpc = app.availability(request).await;
    let method = json::method("/promised.v1.Availability/GetAvailability").expect("in the API");
    let rendered = json::render(method.output(), &over_grpc).expect("renders");
    let expected: Value = serde_json::from_slice(&rendered).expect("JSON");
    let over_http = ok(http
        .get("/v1/skus/SKU-1/availability?group_ids=ALL-DCS")
        .await);
    assert_eq!(over_http, expected);

    let hold = json!({"reservationId": "same-1", "lines": [{"sku": "SKU-1", "nodeId": "DC-EAST", "quantity": "2"}]});
    ok(http.post("/v1/reservations", &hold).await);
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let get = pb::GetReservationRequest {
        reservation_id: "same-1".into(),
    };
    let held = reservations.get(get).await.expect("held").into_inner();
    let method = json::method("/promised.v1.Reservations/Get").expect("in the API");
    let expected: Value =
        serde_json::from_slice(&json::render(method.output(), &held).expect("renders"))
            .expect("JSON");
    assert_eq!(ok(http.get("/v1/reservations/same-1").await), expected);
}

#[tokio::test]
async fn a_reservation_lives_its_whole_life_over_http() {
    let (_app, http) = stocked(ServeArgs::default()).await;
    let line =
        |quantity: &str| json!([{"sku": "SKU-1", "nodeId": "DC-EAST", "quantity": quantity}]);
    let hold = json!({"reservationId": "r-1", "lines": line("3"), "ttlSeconds": 600});
    let held = ok(http.post("/v1/reservations", &hold).await);
    assert_eq!(held["state"], "RESERVATION_STATE_HELD", "enums by name");
    assert_eq!(
        ok(http.post("/v1/reservations", &hold).await),
        held,
        "same id, same answer"
    );
    let bigger = json!({"lines": line("4")});
    let update = http
        .send(
            "PUT",
            "/v1/reservations/r-1",
            &[("content-type", "application/json")],
            Some(bigger.to_string().as_bytes()),
        )
        .await;
    assert_eq!(ok(update)["lines"][0]["quantity"], "4");
    ok(http
        .post("/v1/reservations/r-1:extend", &json!({"ttlSeconds": 900}))
        .await);
    let got = ok(http.get("/v1/reservations/r-1").await);
    assert_eq!(got["reservationId"], "r-1");
    let committed = ok(http
        .post("/v1/reservations/r-1:commit", &json!({"orderId": "o-1"}))
        .await);
    assert_eq!(committed["orderId"], "o-1");
    let other = json!({"reservationId": "r-2", "lines": line("1")});
    ok(http.post("/v1/reservations", &other).await);
    let released = ok(http
        .send("POST", "/v1/reservations/r-2:release", &[], None)
        .await);
    assert_eq!(released["state"], "RESERVATION_STATE_RELEASED");
}

#[tokio::test]
async fn insufficient_stock_is_412_with_the_precondition_failure() {
    let (_app, http) = stocked(ServeArgs::default()).await;
    let hold = json!({"reservationId": "r-big", "lines": [{"sku": "SKU-1", "nodeId": "DC-EAST", "quantity": "11"}]});
    let reply = http.post("/v1/reservations", &hold).await;
    assert_eq!(reply.status, 412, "{reply:?}");
    assert_eq!(reply.code(), 9, "FAILED_PRECONDITION");
    let violation = &reply.detail("PreconditionFailure")["violations"][0];
    assert_eq!(violation["type"], "INSUFFICIENT_STOCK");
    let missing = http.get("/v1/reservations/r-big").await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, 5),
        "refused means nothing changed"
    );
}

#[tokio::test]
async fn promises_and_routes_answer_over_http() {
    let (_app, http) = stocked(ServeArgs::default()).await;
    with_service_level(&http).await;
    let destination = json!({"postalCode": "10001", "country": "US"});
    let lines = json!([{"sku": "SKU-1", "quantity": "2"}]);
    let promise = json!({"lines": lines, "destination": destination, "now": AS_OF});
    let promised = ok(http.post("/v1/promises", &promise).await);
    assert_eq!(promised["options"][0]["feasible"], true, "{promised}");
    let order = json!({"orderId": "o-9", "lines": lines, "destination": destination,
        "serviceLevel": "GROUND", "now": AS_OF});
    let routed = ok(http.post("/v1/routes", &order).await);
    assert_eq!(routed["orderId"], "o-9", "{routed}");
    let wave = ok(http
        .post("/v1/routes:batch", &json!({"orders": [order]}))
        .await);
    assert_eq!(wave["orders"].as_array().map(Vec::len), Some(1), "{wave}");
}

#[tokio::test]
async fn admin_and_insight_routes_answer_over_http() {
    let redis = RedisServer::start();
    let (_app, http) = stocked(durable(&redis, "http-admin")).await;
    let node = json!({"id": "DC-SOUTH", "kind": "NODE_KIND_DC", "lat": 33.7, "lon": -84.4,
        "timeZone": "America/New_York", "groupIds": ["ALL-DCS"]});
    assert_eq!(
        ok(http
            .post("/v1/nodes:upsert", &json!({"nodes": [node]}))
            .await)["upserted"],
        1
    );
    let group = json!({"groups": [{"id": "SOUTH"}]});
    assert_eq!(
        ok(http.post("/v1/groups:upsert", &group).await)["upserted"],
        1
    );
    let source = json!({"sources": [{"id": "WMS-SOUTH", "kind": "SOURCE_KIND_WMS",
        "ownedNodeIds": ["DC-SOUTH"], "ownedSupplyTypes": ["SUPPLY_TYPE_ON_HAND"]}]});
    assert_eq!(
        ok(http.post("/v1/sources:upsert", &source).await)["upserted"],
        1
    );
    let safety = json!({"entries": [{"sku": "SKU-1", "nodeId": "DC-EAST", "quantity": "1"}]});
    assert_eq!(
        ok(http.post("/v1/safety-stock:set", &safety).await)["updated"],
        1
    );
    assert!(ok(http.get("/v1/stats").await).is_object());
    let report = ok(http.post("/v1/invariants:check", &json!({})).await);
    assert_eq!(report["drift"], Value::Null, "zero is left out");
    let audit = ok(http.post("/v1/audit:query", &json!({"limit": 100})).await);
    assert!(
        !audit["entries"].as_array().expect("entries").is_empty(),
        "{audit}"
    );
    let history = ok(http
        .get("/v1/skus/SKU-1/nodes/DC-EAST/history?limit=10")
        .await);
    assert!(history["changes"].is_array(), "{history}");
    let rejections = ok(http.get("/v1/rejections?source_id=WMS-EAST").await);
    assert!(rejections.is_object(), "{rejections}");
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field_or_the_byte() {
    let (_app, http) = stocked(ServeArgs::default()).await;
    let reply = http
        .post_text(
            "/v1/reservations",
            "{\"reservationId\": \"r\",\n \"lines\": [}",
            &[],
        )
        .await;
    assert_eq!((reply.status, reply.code()), (400, 3), "{reply:?}");
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("line 2") && message.contains("byte"),
        "{message}"
    );
    let unknown = http
        .post(
            "/v1/reservations",
            &json!({"reservationId": "r", "colour": "red"}),
        )
        .await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("colour"),
        "{unknown:?}"
    );
    let zero = json!({"reservationId": "r", "lines": [{"sku": "SKU-1", "nodeId": "DC-EAST", "quantity": "0"}]});
    let reply = http.post("/v1/reservations", &zero).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    let field = &reply.detail("BadRequest")["fieldViolations"][0]["field"];
    assert!(
        field.as_str().unwrap_or_default().starts_with("lines[0]"),
        "{reply:?}"
    );
    let bad_query = http.get("/v1/skus/SKU-1/availability?quantity=many").await;
    assert_eq!(bad_query.status, 400, "{bad_query:?}");
}

#[tokio::test]
async fn wrong_type_size_route_and_method_have_their_statuses() {
    let app = spawn_app_with(ServeArgs {
        max_message_bytes: Some("4096".into()),
        ..ServeArgs::default()
    })
    .await;
    let http = Http::new(app.http_addr);
    let text = http
        .send(
            "POST",
            "/v1/reservations",
            &[("content-type", "text/plain")],
            Some(b"{}"),
        )
        .await;
    assert_eq!(text.status, 415, "{text:?}");
    let big = format!("{{\"reservationId\": \"{}\"}}", "x".repeat(5000));
    let reply = http.post_text("/v1/reservations", &big, &[]).await;
    assert_eq!((reply.status, reply.code()), (413, 8), "{reply:?}");
    let nowhere = http.get("/v1/nowhere").await;
    assert_eq!((nowhere.status, nowhere.code()), (404, 5), "{nowhere:?}");
    let no_verb = http
        .send("POST", "/v1/reservations/r-1:explode", &[], None)
        .await;
    assert_eq!(no_verb.status, 404, "{no_verb:?}");
    let wrong = http.send("DELETE", "/v1/reservations", &[], None).await;
    assert_eq!(wrong.status, 405, "{wrong:?}");
    assert_eq!(wrong.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn the_openapi_document_is_served_as_committed() {
    let app = spawn_app().await;
    let served = ok(Http::new(app.http_addr).get("/openapi.json").await);
    let committed: Value =
        serde_json::from_str(include_str!("../../api/openapi.json")).expect("valid JSON");
    assert_eq!(served, committed);
    assert_eq!(served["openapi"], "3.1.0");
    assert!(served["paths"]["/v1/sources/{source_id}/batches"]["post"].is_object());
}

#[tokio::test]
async fn a_request_id_is_returned_and_recorded() {
    let (_app, http) = stocked(ServeArgs::default()).await;
    let reply = http
        .send("GET", "/v1/stats", &[("x-request-id", "req-77")], None)
        .await;
    assert_eq!(reply.header("x-request-id"), Some("req-77"));
}
