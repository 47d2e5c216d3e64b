//! Supply batches as webhook deliveries: a retry with the same `Idempotency-Key` answers the
//! original result and applies nothing again; a source with a secret in the network file
//! takes only deliveries signed with it; a feed credential may post only its own source's
//! batches, over TLS like gRPC; and every route refuses a caller without its method's scope.

use promised::config::ServeArgs;
use promised::http::sign;
use serde_json::{json, Value};

use crate::helpers::{node_atp, spawn_app, spawn_app_with};
use crate::http_client::{exchange, Http};
use crate::security::{Security, TempDir};
use crate::transport::tls_to;

const BATCHES: &str = "/v1/sources/WMS-EAST/batches";

fn adjust(delta: i64) -> Value {
    json!({"updates": [{"sku": "SKU-1", "nodeId": "DC-EAST", "supplyType": "SUPPLY_TYPE_ON_HAND",
        "op": "UPDATE_OP_ADJUST", "quantity": delta.to_string()}]})
}

#[tokio::test]
async fn a_redelivery_answers_the_original_result_and_applies_once() {
    let mut app = spawn_app().await;
    let http = Http::new(app.http_addr);
    let body = adjust(5).to_string();
    let key = [("idempotency-key", "41")];
    let first = http.post_text(BATCHES, &body, &key).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(
        first.body["seq"], "41",
        "a numeric key is the batch's sequence"
    );
    assert_eq!(first.body["applied"], 1);
    let again = http.post_text(BATCHES, &body, &key).await;
    assert_eq!(
        (again.status, &again.raw),
        (200, &first.raw),
        "the original answer"
    );
    assert_eq!(
        node_atp(&app.item("SKU-1").await, "DC-EAST"),
        5,
        "applied once"
    );

    let other = http.post_text(BATCHES, &adjust(7).to_string(), &key).await;
    assert_eq!((other.status, other.code()), (412, 9), "{other:?}");
    let next = http
        .post_text(
            BATCHES,
            &adjust(1).to_string(),
            &[("idempotency-key", "42")],
        )
        .await;
    assert_eq!(next.body["applied"], 1, "{next:?}");
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-EAST"), 6);
}

#[tokio::test]
async fn a_delivery_without_a_sequence_or_a_numeric_key_is_refused() {
    let mut app = spawn_app().await;
    let http = Http::new(app.http_addr);
    let reply = http
        .post_text(
            BATCHES,
            &adjust(5).to_string(),
            &[("idempotency-key", "abc")],
        )
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(
        reply.detail("BadRequest")["fieldViolations"][0]["field"],
        "seq"
    );
    let sequenced = json!({"seq": "3", "updates": adjust(2)["updates"]});
    let reply = http
        .post_text(
            BATCHES,
            &sequenced.to_string(),
            &[("idempotency-key", "abc")],
        )
        .await;
    assert_eq!(reply.body["seq"], "3", "{reply:?}");
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-EAST"), 2);
}

const SIGNED_NETWORK: &str = r#"
[[groups]]
id = "SOUTH"

[[nodes]]
id = "DC-SOUTH"
kind = "DC"
lat = 33.7
lon = -84.4
time_zone = "America/New_York"
group_ids = ["SOUTH"]

[[sources]]
id = "WMS-SOUTH"
kind = "WMS"
owned_node_ids = ["DC-SOUTH"]
owned_supply_types = ["ON_HAND"]
webhook_secret_file = "south.secret"
"#;

const SECRET: &str = "a-shared-secret-of-the-south-wms";

#[tokio::test]
async fn a_source_with_a_secret_takes_only_signed_deliveries() {
    let dir = TempDir::new("webhooks");
    dir.replace("south.secret", &format!("{SECRET}\n"));
    let network = dir.replace("network.toml", SIGNED_NETWORK);
    let mut app = spawn_app_with(ServeArgs {
        network: Some(network.display().to_string()),
        ..ServeArgs::default()
    })
    .await;
    let http = Http::new(app.http_addr);
    let path = "/v1/sources/WMS-SOUTH/batches";
    let body = json!({"seq": "1", "updates": [{"sku": "SKU-1", "nodeId": "DC-SOUTH",
        "supplyType": "SUPPLY_TYPE_ON_HAND", "op": "UPDATE_OP_ADJUST", "quantity": "3"}]})
    .to_string();
    let unsigned = http.post_text(path, &body, &[]).await;
    assert_eq!(
        (unsigned.status, unsigned.code()),
        (401, 16),
        "{unsigned:?}"
    );
    let forged = sign(b"another secret entirely, guessed", body.as_bytes());
    let forged = http
        .post_text(path, &body, &[("x-promised-signature", &forged)])
        .await;
    assert_eq!(forged.status, 401, "{forged:?}");
    assert_eq!(
        node_atp(&app.item("SKU-1").await, "DC-SOUTH"),
        0,
        "nothing changed"
    );
    let signature = sign(SECRET.as_bytes(), body.as_bytes());
    let signed = http
        .post_text(path, &body, &[("x-promised-signature", &signature)])
        .await;
    assert_eq!(signed.body["applied"], 1, "{signed:?}");
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-SOUTH"), 3);
    let unsigned_elsewhere = http
        .post_text(BATCHES, &adjust(1).to_string(), &[("idempotency-key", "1")])
        .await;
    assert_eq!(
        unsigned_elsewhere.status, 200,
        "a source without a secret signs nothing"
    );
}

#[tokio::test]
async fn a_feed_credential_posts_only_its_own_source_over_tls() {
    let security = Security::new();
    let mut app = security.spawn().await;
    let ca = security.ca.pem();
    let token = security
        .issuer
        .token("wms-east", &["supply:write:WMS-EAST"]);
    let http = Http::new(app.http_addr).with_token(&token);
    let body = adjust(4).to_string();
    let json = [
        ("content-type", "application/json"),
        ("idempotency-key", "1"),
    ];
    let own = http.request("POST", BATCHES, &json, Some(body.as_bytes()));
    let reply = exchange(tls_to(app.http_addr, &ca).await, &own).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let pos = http.request(
        "POST",
        "/v1/sources/POS/batches",
        &json,
        Some(body.as_bytes()),
    );
    let reply = exchange(tls_to(app.http_addr, &ca).await, &pos).await;
    assert_eq!((reply.status, reply.code()), (403, 7), "{reply:?}");
    let read = http.request("GET", "/v1/skus/SKU-1/availability", &[], None);
    let reply = exchange(tls_to(app.http_addr, &ca).await, &read).await;
    assert_eq!(reply.status, 403, "a feed may not read: {reply:?}");
    let anonymous = Http::new(app.http_addr).request("GET", "/v1/stats", &[], None);
    let reply = exchange(tls_to(app.http_addr, &ca).await, &anonymous).await;
    assert_eq!((reply.status, reply.code()), (401, 16), "{reply:?}");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-EAST"), 4);
}

/// Every route of the table admits its caller as its gRPC method does: no credential is 401,
/// a credential without the method's scope 403, before anything is read or changed.
#[tokio::test]
async fn every_route_refuses_callers_without_its_scope() {
    let security = Security::new();
    let app = security.spawn().await;
    let ca = security.ca.pem();
    let scopeless = security.issuer.token("nobody", &[]);
    for route in promised::http::routes::table() {
        let path = route
            .path
            .split('/')
            .map(|segment| match segment.split_once('}') {
                Some((_, verb)) if segment.starts_with('{') => format!("x{verb}"),
                _ => segment.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let json = [("content-type", "application/json")];
        for (caller, status) in [
            (Http::new(app.http_addr), 401),
            (Http::new(app.http_addr).with_token(&scopeless), 403),
        ] {
            let request = caller.request(route.method.as_str(), &path, &json, Some(b"{}"));
            let reply = exchange(tls_to(app.http_addr, &ca).await, &request).await;
            assert_eq!(reply.status, status, "{route:?}: {reply:?}");
        }
    }
}
