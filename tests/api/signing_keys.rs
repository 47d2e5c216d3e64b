//! JWTs signed with RS256 and ES256 keys made in the test, verified by the service over TLS:
//! an RS256 key file, and a JWKS holding an RSA and an EC key (each token's `kid` picks its
//! key). The credential a token names is the one the service acts for.

use promised::grpc::pb;
use promised::grpc::pb::availability_client::AvailabilityClient;
use promised::grpc::pb::reservations_client::ReservationsClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{set_on_hand, TestApp, START_MS};
use crate::security::{token_channel, with_token, Security, TokenIssuer};

async fn read(channel: &Channel, token: &str) -> Result<(), Status> {
    let request = pb::AvailabilityRequest {
        skus: vec!["SKU-1".into()],
        ..Default::default()
    };
    let mut availability = AvailabilityClient::new(channel.clone());
    availability
        .get_availability(with_token(request, Some(token)))
        .await
        .map(drop)
}

fn refused(result: Result<(), Status>, what: &str) {
    match result {
        Err(status) if status.code() == Code::Unauthenticated => {}
        other => panic!("{what}: expected UNAUTHENTICATED, got {other:?}"),
    }
}

/// Holds 1 of SKU-1 under `id` with `token`, and answers the reservation's recorded owner.
async fn hold_as(app: &TestApp, channel: &Channel, token: &str, id: &str) -> String {
    let request = crate::reservations::reserve_request(
        id,
        vec![crate::reservations::line("SKU-1", "DC-EAST", 1)],
    );
    ReservationsClient::new(channel.clone())
        .reserve(with_token(request, Some(token)))
        .await
        .expect("held");
    app.engine
        .get_reservation(id)
        .expect("held")
        .reservation
        .owner
}

/// The service trusting what `security`'s credentials file says, with 5 of SKU-1 at DC-EAST,
/// and a channel on which callers say who they are by token.
async fn stocked(security: &Security) -> (TestApp, Channel) {
    let mut app = security.spawn().await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 5, START_MS)],
    )
    .await;
    let channel = token_channel(&app, security).await;
    (app, channel)
}

#[tokio::test]
async fn an_rs256_token_is_verified_against_the_configured_public_key_file() {
    let security = Security::new();
    let rsa = TokenIssuer::rs256(None);
    security.dir.replace("rsa.pub.pem", &rsa.public_pem);
    security.trust_jwt_key(r#"rs256_public_key_file = "rsa.pub.pem""#);
    let (app, channel) = stocked(&security).await;
    read(&channel, &rsa.token("reader", &["availability:read"]))
        .await
        .expect("an RS256 token of the configured key");
    let owner = hold_as(&app, &channel, &rsa.token("oms", &["reserve"]), "r-rsa").await;
    assert_eq!(owner, "oms", "the token's subject made it");
    let other = TokenIssuer::rs256(None);
    let forged = other.token("reader", &["availability:read"]);
    refused(read(&channel, &forged).await, "another RSA key");
    let es256 = security.issuer.token("reader", &["availability:read"]);
    refused(read(&channel, &es256).await, "an ES256 token");
}

#[tokio::test]
async fn jwks_rsa_and_ec_keys_each_verify_the_tokens_naming_their_kid() {
    let security = Security::new();
    let rsa = TokenIssuer::rs256(Some("rsa-1"));
    let ec = TokenIssuer::es256(Some("ec-1"));
    let jwks = serde_json::json!({"keys": [rsa.jwk, ec.jwk]});
    security.dir.replace("jwks.json", &jwks.to_string());
    security.trust_jwt_key(r#"jwks_file = "jwks.json""#);
    let (app, channel) = stocked(&security).await;
    for (issuer, sub, id) in [(&rsa, "oms-rsa", "r-1"), (&ec, "oms-ec", "r-2")] {
        read(&channel, &issuer.token("reader", &["availability:read"]))
            .await
            .unwrap_or_else(|status| panic!("{sub}: {status:?}"));
        assert_eq!(
            hold_as(&app, &channel, &issuer.token(sub, &["reserve"]), id).await,
            sub
        );
    }
    // Signed by a key of the right kind that the JWKS does not hold, under its kid.
    let forged = TokenIssuer::es256(Some("ec-1")).token("reader", &["availability:read"]);
    refused(read(&channel, &forged).await, "another EC key under ec-1");
    let unknown = TokenIssuer::rs256(Some("rsa-2")).token("reader", &["availability:read"]);
    refused(
        read(&channel, &unknown).await,
        "a kid the JWKS does not hold",
    );
    let unnamed = TokenIssuer::es256(None).token("reader", &["availability:read"]);
    refused(read(&channel, &unnamed).await, "no kid, two keys");
}
