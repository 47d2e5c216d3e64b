//! Transport security: TLS on both listeners, certificates replaced without a restart, client
//! certificates as credentials (mutual TLS), and Redis over TLS with an ACL user.

use std::collections::HashMap;
use std::sync::Arc;

use promised::clock::ManualClock;
use promised::config::{Config, ServeArgs};
use promised::grpc::pb;
use promised::grpc::pb::supply_client::SupplyClient;
use promised::server::Application;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tonic::transport::Identity;
use tonic::Code;

use crate::helpers::{batch, node_atp, set_on_hand, spawn_app_with, START_MS};
use crate::redis::RedisServer;
use crate::security::{certificate_channel, tls_endpoint, Ca, Security, SERVER_NAME};

/// Whether a new TLS connection trusting only `ca_pem` is accepted, and answers.
async fn connects_trusting(addr: std::net::SocketAddr, ca_pem: &str) -> bool {
    let Ok(channel) = tls_endpoint(addr, ca_pem, None).connect().await else {
        return false;
    };
    use tonic_health::pb::health_client::HealthClient;
    let check = tonic_health::pb::HealthCheckRequest::default();
    HealthClient::new(channel).check(check).await.is_ok()
}

#[tokio::test]
async fn a_replaced_certificate_is_served_to_new_connections_without_a_restart() {
    let security = Security::new();
    let app = security.spawn().await;
    assert!(connects_trusting(app.grpc_addr, &security.ca.pem()).await);
    let renewed_by = Ca::new("the next CA");
    let renewed = renewed_by.issue(SERVER_NAME, &[SERVER_NAME]);
    security.dir.replace("server.key", &renewed.key);
    security.dir.replace("server.pem", &renewed.cert);
    assert!(
        connects_trusting(app.grpc_addr, &renewed_by.pem()).await,
        "a new connection sees the new certificate"
    );
    assert!(
        !connects_trusting(app.grpc_addr, &security.ca.pem()).await,
        "the old certificate is no longer served"
    );
    // The connection made before the change goes on.
    let mut admin = app.admin.clone();
    admin
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("old connection still serves");
}

#[tokio::test]
async fn a_replacement_that_does_not_load_leaves_the_previous_certificate_in_use() {
    let security = Security::new();
    let app = security.spawn().await;
    let other = Ca::new("other").issue(SERVER_NAME, &[SERVER_NAME]);
    // A certificate whose key is not the one beside it.
    security.dir.replace("server.pem", &other.cert);
    assert!(
        connects_trusting(app.grpc_addr, &security.ca.pem()).await,
        "still the previous certificate"
    );
}

/// A TLS connection to `addr`, trusting `ca_pem`.
pub async fn tls_to(
    addr: std::net::SocketAddr,
    ca_pem: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.expect("CA pem")).expect("CA");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let name = ServerName::try_from(SERVER_NAME).expect("name");
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// `GET /metrics` over TLS, trusting `ca_pem`: the response head and body.
async fn scrape_over_tls(addr: std::net::SocketAddr, ca_pem: &str) -> String {
    let mut tls = tls_to(addr, ca_pem).await;
    tls.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    tls.read_to_string(&mut response).await.expect("response");
    response
}

#[tokio::test]
async fn metrics_are_served_over_tls_too() {
    let security = Security::new();
    let app = security.spawn().await;
    let response = scrape_over_tls(app.metrics_addr, &security.ca.pem()).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    let plain = tokio::net::TcpStream::connect(app.metrics_addr).await;
    let mut plain = plain.expect("connects");
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        .await
        .expect("sent");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "no metrics in plaintext"
    );
}

#[tokio::test]
async fn a_client_certificate_is_the_credential_it_is_registered_as() {
    let security = Security::new();
    let mut app = security.spawn().await;
    let ca = security.ca.pem();
    // By common name.
    let east = security.ca.issue("wms-east.feeds.test", &[]);
    let mut feed = SupplyClient::new(certificate_channel(&app, &ca, &east).await);
    let update = || vec![set_on_hand("SKU-1", "DC-EAST", 4, START_MS)];
    feed.apply_batch(batch("WMS-EAST", 1, update()))
        .await
        .expect("its own source");
    let other = feed.apply_batch(batch(
        "WMS-WEST",
        1,
        vec![set_on_hand("SKU-1", "DC-WEST", 4, START_MS)],
    ));
    assert_eq!(
        other.await.expect_err("another source").code(),
        Code::PermissionDenied
    );
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-WEST"), 0);
    // By subject alternative name.
    let pos = security.ca.issue("a store", &["pos.feeds.test"]);
    let mut store = SupplyClient::new(certificate_channel(&app, &ca, &pos).await);
    store
        .apply_batch(batch(
            "POS",
            1,
            vec![set_on_hand("SKU-1", "STORE-CHI", 2, START_MS)],
        ))
        .await
        .expect("registered by its SAN");
    // Trusted, but not registered.
    let stranger = security.ca.issue("stranger.test", &[]);
    let mut unknown = SupplyClient::new(certificate_channel(&app, &ca, &stranger).await);
    let refused = unknown.apply_batch(batch("WMS-EAST", 2, update())).await;
    assert_eq!(
        refused.expect_err("unregistered").code(),
        Code::Unauthenticated
    );
    // Registered name, but from a CA the service does not trust: no connection at all.
    let forged = Ca::new("rogue").issue("wms-east.feeds.test", &[]);
    let identity = Identity::from_pem(&forged.cert, &forged.key);
    let rogue = tls_endpoint(app.grpc_addr, &ca, Some(identity))
        .connect()
        .await;
    let refused = match rogue {
        Err(_) => true,
        Ok(channel) => SupplyClient::new(channel)
            .apply_batch(batch("WMS-EAST", 2, update()))
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from another CA is refused");
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-EAST"), 4);
}

/// The flags of a service journaling to `redis` over TLS as `promised`, its password in a file.
fn durable_over_tls(security: &Security, redis: &RedisServer, password: &str) -> ServeArgs {
    let password_file = security
        .dir
        .replace("redis-password", &format!("{password}\n"));
    ServeArgs {
        redis_url: Some(redis.url()),
        redis_username: Some("promised".into()),
        redis_password_file: Some(password_file.display().to_string()),
        redis_ca: Some(
            security
                .dir
                .replace("redis-ca.pem", &security.ca.pem())
                .display()
                .to_string(),
        ),
        redis_prefix: Some("tls".into()),
        ..ServeArgs::default()
    }
}

#[tokio::test]
async fn the_journal_reaches_redis_over_tls_as_an_acl_user_and_recovers_from_it() {
    let security = Security::new();
    let redis = RedisServer::start_tls(&security.ca, "promised", "s3cret-redis");
    let mut app = spawn_app_with(durable_over_tls(&security, &redis, "s3cret-redis")).await;
    assert!(app.stats().await.redis_up);
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 6, START_MS)],
    )
    .await;
    app.shutdown().await;
    let mut recovered = spawn_app_with(durable_over_tls(&security, &redis, "s3cret-redis")).await;
    assert_eq!(node_atp(&recovered.item("SKU-1").await, "DC-EAST"), 6);
    recovered.shutdown().await;
    let args = ServeArgs {
        grpc_addr: Some("127.0.0.1:0".into()),
        metrics_addr: Some("127.0.0.1:0".into()),
        http_addr: Some("127.0.0.1:0".into()),
        insecure_no_auth: true,
        ..durable_over_tls(&security, &redis, "wrong")
    };
    let config = Config::resolve(&args, &HashMap::new()).expect("valid flags");
    let refused = Application::build(config, Arc::new(ManualClock::new(START_MS))).await;
    let error = format!(
        "{:#}",
        refused.err().expect("a wrong password does not start")
    );
    assert!(
        !error.contains("wrong"),
        "the password is not echoed: {error}"
    );
}
