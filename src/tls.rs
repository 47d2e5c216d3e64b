//! Server TLS (rustls, ring) for the gRPC and metrics listeners, from PEM files: a certificate
//! chain, its private key and, for mutual TLS, a client CA. The files are checked before each
//! handshake (one `stat` each) and reloaded when one changed, so a renewed certificate is
//! served to the next connection without a restart; a replacement that does not load (a key
//! that does not match, a half-written file) is logged and the previous one stays in use.
//! Replace the files atomically (write aside, rename over), as cert-manager and Kubernetes
//! secret mounts do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use anyhow::{anyhow, Context};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// ALPN protocols: gRPC speaks HTTP/2, the metrics responder HTTP/1.1.
pub const ALPN_GRPC: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Where the listener's certificate, key and (for mutual TLS) client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// With a client CA, clients may present a certificate, which must chain to it; the
    /// credential it names is then the caller (see `auth`). Clients without one may still
    /// authenticate with a bearer token.
    pub client_ca: Option<PathBuf>,
}

/// A listener's TLS configuration, reloaded when its files change.
pub struct Tls {
    files: TlsFiles,
    alpn: Vec<Vec<u8>>,
    current: Mutex<Loaded>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

struct Loaded {
    /// What the files looked like when last loaded (or last tried).
    stamps: Vec<Stamp>,
    acceptor: TlsAcceptor,
}

/// A file's identity and version: a replaced or rewritten file changes at least one.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
    #[cfg(not(unix))]
    let inode = 0;
    Some((metadata.modified().ok()?, metadata.len(), inode))
}

/// The process's TLS provider (ring), installed as rustls's default too, so that the Redis
/// client's TLS uses the same one.
pub fn provider() -> Arc<CryptoProvider> {
    let provider = Arc::new(ring::default_provider());
    // Only the first install counts; later ones (tests start many services) are the same.
    let _ = CryptoProvider::install_default((*provider).clone());
    provider
}

impl Tls {
    /// Loads the files now: a configuration that does not load stops the start.
    pub fn load(files: TlsFiles, alpn: &[&[u8]]) -> anyhow::Result<Self> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let stamps = stamps(&files);
        let acceptor = acceptor(&files, &alpn)?;
        Ok(Self {
            files,
            alpn,
            current: Mutex::new(Loaded { stamps, acceptor }),
        })
    }

    /// The acceptor for the next handshake, reloaded first if a file changed.
    pub fn acceptor(&self) -> TlsAcceptor {
        let stamps = stamps(&self.files);
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.stamps != stamps {
            match acceptor(&self.files, &self.alpn) {
                Ok(acceptor) => {
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    current.acceptor = acceptor;
                }
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "TLS files changed but do not load; serving the previous certificate"
                ),
            }
            // Tried once per change: a bad replacement is not retried on every handshake.
            current.stamps = stamps;
        }
        current.acceptor.clone()
    }
}

fn stamps(files: &TlsFiles) -> Vec<Stamp> {
    let mut paths = vec![files.cert.as_path(), files.key.as_path()];
    paths.extend(files.client_ca.as_deref());
    paths.into_iter().map(stamp).collect()
}

fn acceptor(files: &TlsFiles, alpn: &[Vec<u8>]) -> anyhow::Result<TlsAcceptor> {
    let provider = provider();
    let chain = certificates(&files.cert)?;
    let key = std::fs::read(&files.key)
        .with_context(|| format!("cannot read {}", files.key.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| anyhow!("{}: no private key: {e}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(path)? {
                roots
                    .add(ca)
                    .with_context(|| format!("{}: not a CA certificate", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .allow_unauthenticated()
                .build()
                .context("client CA")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .with_context(|| format!("{} with {}", files.cert.display(), files.key.display()))?;
    config.alpn_protocols = alpn.to_vec();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Every certificate of a PEM file; none is an error.
fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(anyhow!("{}: no certificate", path.display()));
    }
    Ok(chain)
}
