//! Fixtures of the security tests: a certificate authority made for the test (rcgen), server
//! and client certificates, JWTs from a test issuer, a credentials file, and the service
//! serving TLS with authentication on, its helper clients connected as an operator by client
//! certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use promised::config::ServeArgs;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use serde::Serialize;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Request;

use crate::helpers::{spawn_app_via, TestApp, START_MS};

pub const ISSUER: &str = "https://login.test/";
pub const AUDIENCE: &str = "promised";
/// Leeway of the test credentials file.
pub const LEEWAY_SECS: i64 = 30;
/// The name the server's certificate is issued for.
pub const SERVER_NAME: &str = "localhost";

/// Every scope the operator's client certificate holds.
pub const OPERATOR_SCOPES: [&str; 11] = [
    "availability:read",
    "promise",
    "reserve",
    "route",
    "admin:network",
    "admin:repair",
    "insights:read",
    "supply:write:WMS-EAST",
    "supply:write:WMS-WEST",
    "supply:write:POS",
    "supply:write:ERP",
];

/// A directory of the test's own, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("promised-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `name` the way certificate tooling does: aside, then renamed over.
    pub fn replace(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        let aside = self.path(&format!(".{name}.new"));
        std::fs::write(&aside, contents).expect("write");
        std::fs::rename(&aside, &path).expect("rename");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate authority of the test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate with subject `common_name` and these DNS subject alternative names.
    pub fn issue(&self, common_name: &str, alt_names: &[&str]) -> Issued {
        let names: Vec<String> = alt_names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("names");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A token issuer: its signing key, the header its tokens carry (algorithm, `kid`), and its
/// public key as the service reads it, in a PEM file or as a JWKS member.
pub struct TokenIssuer {
    key: EncodingKey,
    header: Header,
    pub public_pem: String,
    pub jwk: serde_json::Value,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    exp: i64,
    scope: String,
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TokenIssuer {
    /// ES256 without a `kid`: the issuer the credentials file of [`Security::new`] trusts.
    pub fn new() -> Self {
        Self::es256(None)
    }

    /// A new P-256 key; its tokens name `kid` if given.
    pub fn es256(kid: Option<&str>) -> Self {
        let pair = KeyPair::generate().expect("key");
        // An uncompressed point: 0x04, then x and y.
        let point = pair.public_key_raw();
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid,
            "x": base64url(&point[1..33]), "y": base64url(&point[33..65])});
        Self {
            key: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("ES256 key"),
            header: Header {
                kid: kid.map(str::to_owned),
                ..Header::new(Algorithm::ES256)
            },
            public_pem: pair.public_key_pem(),
            jwk,
        }
    }

    /// A new 2048-bit RSA key; its tokens name `kid` if given.
    pub fn rs256(kid: Option<&str>) -> Self {
        use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
        use rsa::traits::PublicKeyParts;
        let private = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).expect("RSA key");
        let public = private.to_public_key();
        let private_pem = private.to_pkcs1_pem(LineEnding::LF).expect("PEM");
        let jwk = serde_json::json!({"kty": "RSA", "alg": "RS256", "kid": kid,
            "n": base64url(&public.n_bytes()), "e": base64url(&public.e_bytes())});
        Self {
            key: EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("RS256 key"),
            header: Header {
                kid: kid.map(str::to_owned),
                ..Header::new(Algorithm::RS256)
            },
            public_pem: public.to_pkcs1_pem(LineEnding::LF).expect("PEM"),
            jwk,
        }
    }

    /// A token for `sub` with `scopes`, expiring at `exp_ms` (server clock), for `aud`.
    pub fn token_for(&self, sub: &str, scopes: &[&str], exp_ms: i64, aud: &str) -> String {
        let claims = Claims {
            iss: ISSUER,
            aud,
            sub,
            exp: exp_ms / 1000,
            scope: scopes.join(" "),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key).expect("signed")
    }

    /// A token good for an hour of the test clock.
    pub fn token(&self, sub: &str, scopes: &[&str]) -> String {
        self.token_for(sub, scopes, START_MS + 3_600_000, AUDIENCE)
    }
}

/// The PKI, the token issuer and the credentials file of one secure service.
pub struct Security {
    pub dir: TempDir,
    pub ca: Ca,
    pub issuer: TokenIssuer,
    pub operator: Issued,
}

impl Security {
    pub fn new() -> Self {
        let dir = TempDir::new("security");
        let ca = Ca::new("promised test CA");
        let server = ca.issue(SERVER_NAME, &[SERVER_NAME, "127.0.0.1"]);
        dir.replace("server.pem", &server.cert);
        dir.replace("server.key", &server.key);
        dir.replace("clients-ca.pem", &ca.pem());
        let issuer = TokenIssuer::new();
        dir.replace("jwt.pub.pem", &issuer.public_pem);
        let operator = ca.issue("operator.test", &[]);
        let security = Self {
            dir,
            ca,
            issuer,
            operator,
        };
        security.trust_jwt_key(r#"es256_public_key_file = "jwt.pub.pem""#);
        security
    }

    /// Writes the credentials file with `key`, the `[jwt]` line naming the token signing
    /// key(s) (a file in [`Security::dir`]), and the client certificates of the tests.
    pub fn trust_jwt_key(&self, key: &str) {
        let quoted = |scopes: &[&str]| {
            let quoted: Vec<String> = scopes.iter().map(|s| format!("{s:?}")).collect();
            quoted.join(", ")
        };
        let credentials = format!(
            r#"
[jwt]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
leeway_secs = {LEEWAY_SECS}
{key}

[[client]]
id = "operator"
subject = "operator.test"
scopes = [{operator}]

[[client]]
id = "wms-east"
subject = "wms-east.feeds.test"
scopes = ["supply:write:WMS-EAST"]

[[client]]
id = "pos"
subject = "pos.feeds.test"
scopes = ["supply:write:POS"]
"#,
            operator = quoted(&OPERATOR_SCOPES)
        );
        self.dir.replace("credentials.toml", &credentials);
    }

    /// The flags of a service with TLS, mutual TLS and this credentials file.
    pub fn args(&self) -> ServeArgs {
        let path = |name: &str| Some(self.dir.path(name).display().to_string());
        ServeArgs {
            tls_cert: path("server.pem"),
            tls_key: path("server.key"),
            tls_client_ca: path("clients-ca.pem"),
            credentials: path("credentials.toml"),
            ..ServeArgs::default()
        }
    }

    /// The service, its helper clients connected as the operator.
    pub async fn spawn(&self) -> TestApp {
        self.spawn_with(self.args()).await
    }

    pub async fn spawn_with(&self, args: ServeArgs) -> TestApp {
        let ca = self.ca.pem();
        let operator = Identity::from_pem(&self.operator.cert, &self.operator.key);
        spawn_app_via(args, move |addr| tls_endpoint(addr, &ca, Some(operator))).await
    }
}

/// An endpoint over TLS to the service at `addr`, trusting `ca_pem`, presenting `identity`.
pub fn tls_endpoint(addr: SocketAddr, ca_pem: &str, identity: Option<Identity>) -> Endpoint {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(SERVER_NAME);
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("valid uri")
        .tls_config(tls)
        .expect("TLS config")
}

/// A channel over TLS without a client certificate: callers say who they are by token.
pub async fn token_channel(app: &TestApp, security: &Security) -> Channel {
    tls_endpoint(app.grpc_addr, &security.ca.pem(), None)
        .connect()
        .await
        .expect("TLS connects")
}

/// A channel presenting a client certificate `issued`.
pub async fn certificate_channel(app: &TestApp, ca_pem: &str, issued: &Issued) -> Channel {
    let identity = Identity::from_pem(&issued.cert, &issued.key);
    tls_endpoint(app.grpc_addr, ca_pem, Some(identity))
        .connect()
        .await
        .expect("mutual TLS connects")
}

/// `message` with `authorization: Bearer <token>`, if there is a token.
pub fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    request
}
