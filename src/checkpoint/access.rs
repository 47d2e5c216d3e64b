//! How the service reaches Redis beyond its URL: an ACL user and password (from a file or the
//! environment, never the command line or the URL), and for `rediss://` the CA to verify the
//! server with (the system's roots without one).

use std::fmt;
use std::path::PathBuf;

use anyhow::Context;
use redis::IntoConnectionInfo;

/// A secret that never appears in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisAccess {
    /// Redis 6 ACL user; `None` is the default user.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM CA certificate(s) a `rediss://` server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
}

/// The Redis client for `url` with `access`.
pub fn client(url: &str, access: &RedisAccess) -> anyhow::Result<redis::Client> {
    let info = url
        .into_connection_info()
        .with_context(|| format!("invalid Redis URL {url}"))?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &access.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &access.password {
        settings = settings.set_password(&password.0);
    }
    let info = info.set_redis_settings(settings);
    let Some(ca_file) = &access.ca_file else {
        return redis::Client::open(info).context("Redis client");
    };
    crate::tls::provider();
    let root_cert = std::fs::read(ca_file)
        .with_context(|| format!("cannot read Redis CA {}", ca_file.display()))?;
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    };
    redis::Client::build_with_tls(info, certificates).context("Redis TLS client")
}
