//! The credentials file (TOML):
//!
//! ```toml
//! [jwt]                       # optional: bearer JWTs
//! issuer = "https://login.example.com/"
//! audience = "promised"
//! leeway_secs = 60
//! jwks_file = "jwks.json"     # or hs256_secret_file, rs256_public_key_file, es256_public_key_file
//!
//! [[api_key]]                 # static keys, stored as the SHA-256 (hex) of the key
//! id = "checkout-web"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! scopes = ["availability:read", "promise", "reserve"]
//!
//! [[client]]                  # client certificates (mTLS), by subject CN or SAN
//! id = "wms-a"
//! subject = "wms-a.feeds.example.com"
//! scopes = ["supply:write:WMS-A"]
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

use crate::clock::Clock;

use super::jwt::{JwtSection, JwtVerifier};
use super::{Authenticator, Digest, Identity, Scope, TokenCache, TOKEN_CACHE_ENTRIES};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    jwt: Option<JwtSection>,
    #[serde(default)]
    api_key: Vec<ApiKey>,
    #[serde(default)]
    client: Vec<Client>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKey {
    id: String,
    /// SHA-256 of the key, 64 hex digits.
    sha256: String,
    scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Client {
    id: String,
    /// A subject common name or subject alternative name of the certificate.
    subject: String,
    scopes: Vec<String>,
}

pub fn load(path: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Authenticator> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read credentials file {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base, clock).with_context(|| format!("credentials file {}", path.display()))
}

fn parse(text: &str, base: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Authenticator> {
    let file: CredentialsFile = toml::from_str(text)?;
    let mut api_keys = HashMap::new();
    for key in file.api_key {
        let caller = Identity::new(&key.id, scopes(&key.id, &key.scopes)?);
        let digest = hex_digest(&key.sha256).with_context(|| format!("api_key {:?}", key.id))?;
        if api_keys.insert(digest, caller).is_some() {
            bail!("api_key {:?}: the same key is listed twice", key.id);
        }
    }
    let mut clients = HashMap::new();
    for client in file.client {
        let caller = Identity::new(&client.id, scopes(&client.id, &client.scopes)?);
        if clients.insert(client.subject.clone(), caller).is_some() {
            bail!("client subject {:?} is listed twice", client.subject);
        }
    }
    let jwt = file
        .jwt
        .map(|section| JwtVerifier::load(&section, base).context("[jwt]"))
        .transpose()?;
    if api_keys.is_empty() && clients.is_empty() && jwt.is_none() {
        bail!("no credentials: add [jwt], [[api_key]] or [[client]] entries");
    }
    Ok(Authenticator {
        api_keys,
        clients,
        jwt,
        cache: TokenCache::new(TOKEN_CACHE_ENTRIES),
        clock,
    })
}

fn scopes(id: &str, names: &[String]) -> anyhow::Result<Vec<Scope>> {
    names
        .iter()
        .map(|name| name.parse().with_context(|| format!("credential {id:?}")))
        .collect()
}

/// 64 hex digits to 32 bytes.
fn hex_digest(text: &str) -> anyhow::Result<Digest> {
    let bad = || anyhow!("sha256 must be 64 hex digits");
    let text = text.as_bytes();
    if text.len() != 64 {
        return Err(bad());
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(text.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{digest, Refusal};
    use crate::clock::ManualClock;

    fn parsed(text: &str) -> anyhow::Result<Authenticator> {
        parse(text, Path::new("."), Arc::new(ManualClock::new(0)))
    }

    #[test]
    fn an_api_key_is_known_by_its_sha256() {
        let sha = digest(b"s3cret").map(|b| format!("{b:02x}")).concat();
        let text =
            format!("[[api_key]]\nid = \"checkout\"\nsha256 = \"{sha}\"\nscopes = [\"reserve\"]\n");
        let auth = parsed(&text).expect("valid file");
        let caller = auth.bearer("s3cret").expect("known key");
        assert_eq!(caller.id(), "checkout");
        assert!(caller.has(&Scope::Reserve));
        assert_eq!(auth.bearer("s3cret2"), Err(Refusal::Unknown));
    }

    #[test]
    fn mistakes_in_the_file_are_refused_at_start() {
        let sha = "ab".repeat(32);
        for (text, problem) in [
            (String::new(), "no credentials"),
            (
                format!("[[api_key]]\nid = \"a\"\nsha256 = \"{sha}\"\nscopes = [\"admin:*\"]\n"),
                "unknown scope",
            ),
            (
                "[[api_key]]\nid = \"a\"\nsha256 = \"abc\"\nscopes = []\n".into(),
                "64 hex digits",
            ),
            (
                "[[client]]\nid = \"a\"\nsubject = \"x\"\nscopes = []\n[[client]]\nid = \"b\"\nsubject = \"x\"\nscopes = []\n".into(),
                "listed twice",
            ),
            ("[jwt]\nissuer = \"i\"\naudience = \"a\"\n".into(), "exactly one of"),
            ("[[api_keys]]\n".into(), "unknown field"),
        ] {
            let error = parsed(&text).expect_err(problem);
            assert!(format!("{error:#}").contains(problem), "{error:#}");
        }
    }
}
